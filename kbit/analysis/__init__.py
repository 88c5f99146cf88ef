"""Pure pandas over result rows (`kbit.db.queries.frontier_rows`): a metric's direction, the
Pareto frontier, the best precision at each bit budget, and the paper's findings. The CLI, the
report and the dashboard take every such answer from here. Imports no torch, no ray, no database.

    frame = rows_to_frame(rows)
    points, budgets = frontier_view(frame, "bits_per_byte")
"""

from kbit.analysis.findings import FINDINGS, Findings, findings
from kbit.analysis.frontier import frontier_view, rows_to_frame
from kbit.analysis.metrics import better_word, lower_is_better
from kbit.analysis.units import format_bits

__all__ = ["lower_is_better", "better_word", "rows_to_frame", "frontier_view", "findings", "Findings", "FINDINGS",
           "format_bits"]
