"""Pure pandas over result rows (`kbit.db.queries.frontier_rows`) and per-document scores
(`kbit.db.queries.document_scores`): a metric's direction, the Pareto frontier, precisions compared
at equal bits with bootstrap intervals, the parallel-curves fit, and the paper's findings. The CLI, the
report and the dashboard take every such answer from here. Imports no torch, no ray, no database.

    frame = rows_to_frame(rows)
    points = frontier_view(frame, "bits_per_byte")
    found = findings(frame, "kbit_heldout/bits_per_byte", scores)
"""

from kbit.analysis.equalbits import Comparison, Interval, compare
from kbit.analysis.findings import FINDINGS, VERDICTS, Finding, Findings, findings, k_of, verdict_text
from kbit.analysis.frontier import frontier_view, rows_to_frame
from kbit.analysis.metrics import better_word, lower_is_better
from kbit.analysis.units import format_bits

__all__ = ["lower_is_better", "better_word", "rows_to_frame", "frontier_view", "findings", "Findings", "Finding",
           "FINDINGS", "VERDICTS", "k_of", "verdict_text", "compare", "Comparison", "Interval", "format_bits"]
