"""The export command the Run page and the Frontier page's winners table show for a run (the
Frontier page itself, with the column, runs in test_dashboard_app.py)."""

import pandas as pd

from kbit.cli.main import build_parser
from kbit.dashboard.tables import export_command, with_export_commands


def test_the_winners_table_points_each_budget_at_the_winning_configs_nearest_run():
    runs = pd.DataFrame({"run_id": [1, 2, 3, 4], "label": ["nf4-b64", "nf4-b64", "int3-b64", "nf4-b64"],
                         "total_bits": [1e5, 1e6, 1e6, 1e7]})
    table = pd.DataFrame({"budget_bits": [1.5e5, 2e6, 5e6], "config": ["nf4-b64", "int3-b64", None]})
    out = with_export_commands(table, runs, runs["total_bits"])
    assert list(out["export"][:2]) == ["kbit export 1 --output nf4-b64-run1", "kbit export 3 --output int3-b64-run3"]
    assert out["export"].isna().iloc[2]  # no winner there: no command


def test_the_command_shown_is_one_the_cli_accepts():
    args = build_parser().parse_args(export_command(42, "nf3-b64-gptq").split()[1:])
    assert (args.command, args.run_id, args.output, args.force) == ("export", 42, "nf3-b64-gptq-run42", False)


def test_the_run_page_shows_the_export_command(monkeypatch, seeded_db):
    from tests.dashboard.test_dashboard_app import run_app

    url, _ = seeded_db
    at = run_app(monkeypatch, url, page="run", run="1")
    [code] = [c.value for c in at.code if c.value.startswith("kbit export")]
    assert code.startswith("kbit export 1 --output ") and code.endswith("-run1")
