"""README states no result RESULTS.md does not: every score, margin or interval bound in README (a
number with three or more decimals) appears in docs/RESULTS.md, which `kbit report` generates."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCORE = re.compile(r"(?<![\w.])[+-]?\d+\.\d{3,}(?![\w.])")


def scores_in(text: str) -> set[str]:
    return {m.lstrip("+-") for m in SCORE.findall(text)}


def test_every_result_number_in_readme_comes_from_results_md():
    readme = (ROOT / "README.md").read_text()
    results = (ROOT / "docs" / "RESULTS.md").read_text()
    missing = sorted(scores_in(readme) - scores_in(results))
    assert not missing, f"README states {missing}, which docs/RESULTS.md does not; cite RESULTS.md instead"


def test_the_check_sees_a_number_results_md_lacks():
    assert scores_in("by 0.0049 [0.0014, 0.0091] and -0.0120") == {"0.0049", "0.0014", "0.0091", "0.0120"}
    assert scores_in("a 3.4 GB venv, 2.59M params, version 0.4.13") == set()
