"""The import direction in DESIGN.md, checked on every module's source (imports inside functions too)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "kbit"
PARTS = ("kernels", "workers", "db", "cluster", "dashboard")
# part -> kbit parts it may import
ALLOWED_PARTS = {
    "kernels": set(),
    "workers": {"kernels"},
    "db": set(),
    "cluster": {"workers", "db", "kernels"},
    "dashboard": {"db"},
}
# third-party top-level modules a part must not import
FORBIDDEN_LIBS = {
    "kernels": {"ray", "sqlalchemy", "alembic", "lm_eval", "streamlit", "altair", "transformers", "psycopg"},
    "workers": {"ray", "sqlalchemy", "alembic", "streamlit", "altair", "psycopg"},
    "db": {"torch", "triton", "ray", "transformers", "lm_eval", "streamlit", "altair"},
    "cluster": {"streamlit", "altair"},
    "dashboard": {"torch", "triton", "ray", "transformers", "lm_eval"},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add(arg.value)
    return names


def modules_of(part: str):
    return sorted((ROOT / part).rglob("*.py"))


@pytest.mark.parametrize("part", PARTS)
def test_part_imports_follow_design(part):
    files = modules_of(part)
    assert files, f"kbit/{part} has no modules"
    problems = []
    for path in files:
        for name in imported_modules(path):
            top = name.split(".")[0]
            if top == "kbit":
                pieces = name.split(".")
                other = pieces[1] if len(pieces) > 1 else None
                if other in PARTS and other != part and other not in ALLOWED_PARTS[part]:
                    problems.append(f"{path.relative_to(ROOT.parent)} imports {name}")
            elif top in FORBIDDEN_LIBS[part]:
                problems.append(f"{path.relative_to(ROOT.parent)} imports {name}")
    assert not problems, "import direction broken:\n" + "\n".join(problems)


def test_nothing_imports_cluster_or_dashboard():
    for part in ("kernels", "workers", "db"):
        for path in modules_of(part):
            for name in imported_modules(path):
                assert not name.startswith(("kbit.cluster", "kbit.dashboard")), f"{path} imports {name}"


def test_checker_sees_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    import ray\n    from kbit.db import queue\n")
    assert {"ray", "kbit.db"} <= imported_modules(bad)


def test_quantconfig_imports_without_torch():
    import subprocess
    import sys

    code = (
        "import sys, builtins\n"
        "real = builtins.__import__\n"
        "def guard(name, *a, **k):\n"
        "    if name.split('.')[0] in ('torch', 'triton'):\n"
        "        raise ImportError('torch is blocked in this test')\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = guard\n"
        "from kbit.kernels import QuantConfig\n"
        "print(QuantConfig(bits=4, dtype='nf', blocksize=64).label())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "nf4-b64"
