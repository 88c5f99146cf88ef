"""Where the repository's own files are, for tests that read them; a test over every example sweep
fails loudly when the examples are not where they should be (an empty glob would pass vacuously)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
KNOWN_EXAMPLES = {"bloom.yaml", "demo.yaml", "ends.yaml", "gpt2.yaml", "gptq.yaml", "llama.yaml", "micro.yaml", "opt.yaml", "pythia.yaml",
                  "seeds.yaml"}


def example_sweeps() -> list[Path]:
    """Every examples/*.yaml; AssertionError when one of the known examples is missing."""
    paths = sorted(EXAMPLES.glob("*.yaml"))
    missing = KNOWN_EXAMPLES - {p.name for p in paths}
    assert not missing, f"examples missing from {EXAMPLES}: {', '.join(sorted(missing))}"
    return paths
