"""The import direction in DESIGN.md, checked on every module's source (imports inside functions too)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "kbit"
PARTS = ("kernels", "sweeps", "analysis", "family", "workers", "db", "service", "cluster", "cli", "dashboard")
# modules at the top of the package that every part may import; they import only each other
LEAVES = ("kbit", "kbit.settings", "kbit.errors", "kbit.version")
# part -> kbit parts it may import (docs/DESIGN.md, "Layout")
ALLOWED_PARTS = {
    "kernels": set(),
    "sweeps": {"kernels"},
    "analysis": set(),
    "family": {"sweeps"},
    "workers": {"kernels", "sweeps", "family"},
    "db": set(),
    "service": {"sweeps", "db"},
    "cluster": {"service", "workers", "sweeps", "db"},
    "cli": {"kernels", "sweeps", "analysis", "family", "workers", "db", "service", "cluster"},
    "dashboard": {"sweeps", "db", "analysis"},
}
# where a part may import only some modules of another part: the leaves every part shares
ONLY_MODULES = {
    ("sweeps", "kernels"): {"kbit.kernels.config"},
    ("family", "sweeps"): {"kbit.sweeps.modelids"},
}
_SERVICE_LIBS = {"torch", "triton", "ray", "transformers", "lm_eval", "streamlit", "altair"}
# third-party top-level modules a part must not import
FORBIDDEN_LIBS = {
    "kernels": {"ray", "sqlalchemy", "alembic", "lm_eval", "streamlit", "altair", "transformers", "psycopg", "pandas"},
    "sweeps": _SERVICE_LIBS | {"sqlalchemy", "alembic", "psycopg", "pandas"},
    "analysis": _SERVICE_LIBS | {"sqlalchemy", "alembic", "psycopg"},
    "family": {"ray", "sqlalchemy", "alembic", "streamlit", "altair", "psycopg"},
    "workers": {"ray", "sqlalchemy", "alembic", "streamlit", "altair", "psycopg"},
    "db": _SERVICE_LIBS,
    "service": _SERVICE_LIBS,
    "cluster": {"streamlit", "altair"},
    "cli": {"streamlit", "altair"},
    "dashboard": {"torch", "triton", "ray", "transformers", "lm_eval"},
}
# single modules allowed one of their part's forbidden libraries (docs/DESIGN.md says why)
MODULE_LIBS = {"kernels/checkpoint.py": {"transformers"}}  # load_quantized builds the transformers model


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
                only = ONLY_MODULES.get((part, other))
                if only and name not in only:
                    problems.append(f"{path.relative_to(ROOT.parent)} imports {name} (only {', '.join(sorted(only))})")
            elif top in FORBIDDEN_LIBS[part] and top not in MODULE_LIBS.get(str(path.relative_to(ROOT)), ()):
                problems.append(f"{path.relative_to(ROOT.parent)} imports {name}")
    assert not problems, "import direction broken:\n" + "\n".join(problems)


def test_nothing_imports_cli_or_dashboard():
    for part in PARTS:
        for path in modules_of(part):
            for name in imported_modules(path):
                for top in ("cli", "dashboard"):
                    if part != top:
                        assert not name.startswith(f"kbit.{top}"), f"{path} imports {name}"


def test_only_cluster_imports_ray_and_only_dashboard_imports_streamlit():
    for part in PARTS:
        libs = {name.split(".")[0] for path in modules_of(part) for name in imported_modules(path)}
        assert ("ray" in libs) == (part == "cluster"), part
        assert ("streamlit" in libs) == (part == "dashboard"), part


def test_leaves_import_only_leaves():
    for name in LEAVES:
        path = ROOT.parent / (name.replace(".", "/") + ("/__init__.py" if name == "kbit" else ".py"))
        inner = {m for m in imported_modules(path) if m.split(".")[0] == "kbit"}
        assert inner <= set(LEAVES), f"{path.name} imports {sorted(inner - set(LEAVES))}"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """kbit module -> the kbit modules it imports anywhere in its source (inside functions too);
    `from kbit.x import y` counts as importing the module kbit.x.y when there is one, else kbit.x."""
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        edges = set()
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    edges.add(sub if sub in modules else node.module)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_even_through_imports_inside_functions():
    assert cycles(import_graph()) == []


def test_a_cycle_through_a_function_local_import_is_seen(tmp_path):
    pkg = tmp_path / "kbit"
    (pkg / "cli").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "cli" / "__init__.py").write_text("")
    (pkg / "cli" / "commands.py").write_text("from kbit.cli import demo\n")
    (pkg / "cli" / "demo.py").write_text("def run():\n    from kbit.cli.commands import main\n")
    assert cycles(import_graph(pkg)) == [["kbit.cli.commands", "kbit.cli.demo"]]


def test_every_module_is_in_a_part():
    loose = sorted(p.name for p in ROOT.glob("*.py") if f"kbit.{p.stem}" not in LEAVES and p.name != "__init__.py")
    folders = sorted(p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists())
    assert loose == [] and folders == sorted(PARTS), (loose, folders)


def test_no_environment_variable_is_read_outside_settings():
    """KBIT_* variables are read in kbit/settings.py only."""
    import re

    # reads: os.environ.get("KBIT_..."), os.getenv("KBIT_..."), os.environ["KBIT_..."] not followed by "="
    readers = re.compile(r"""os\.environ\.get\(\s*["']KBIT_|getenv\(\s*["']KBIT_|os\.environ\[\s*["']KBIT_\w*["']\s*\](?!\s*=)""")
    assert readers.search('home = os.environ.get("KBIT_HOME")') and readers.search('os.environ["KBIT_X"]')
    assert not readers.search('os.environ["KBIT_HOME"] = path')
    found = [str(p.relative_to(ROOT.parent)) for p in ROOT.rglob("*.py")
             if p.name != "settings.py" and readers.search(p.read_text())]
    assert found == []


def test_nothing_cites_outside_the_repository():
    repo = ROOT.parent
    files = [*ROOT.rglob("*.py"), *repo.glob("*.md"), *(repo / "docs").glob("*.md"), *(repo / "examples").glob("*")]
    outside = "/".join(("..", "shared"))  # spelled out here, not cited
    assert [str(f.relative_to(repo)) for f in files if outside in f.read_text()] == []


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
