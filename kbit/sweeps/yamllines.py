"""YAML to plain Python values, remembering the line of every value so errors can point at it.

`yaml.safe_load` forgets where things came from; here the composed node tree is walked by hand,
scalars are built by PyYAML's own SafeConstructor, and every path gets its 1-based line.
Duplicate mapping keys (which safe_load silently collapses) are reported as problems.
"""

from __future__ import annotations

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

Path = tuple  # ("grid", "bits", 2): keys and list indexes from the document root


class YamlSyntaxError(ValueError):
    """The text is not YAML; `line` is where the parser gave up."""

    def __init__(self, line: int | None, problem: str):
        self.line, self.problem = line, problem
        super().__init__(f"line {line}: {problem}" if line else problem)


def path_text(path: Path) -> str:
    """('grid', 'bits', 2) -> 'grid.bits[2]'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _refuse_aliases(text: str) -> None:
    """Sweep files hold plain values: an alias (`*name`) could expand a few hundred bytes into
    gigabytes (a chain of aliases) or loop forever (a self-reference), so none is read."""
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise YamlSyntaxError(event.start_mark.line + 1,
                                  f"YAML aliases (*{event.anchor}) are not allowed in a sweep file; write the values out")


def load_with_lines(text: str) -> tuple[object, dict[Path, int], list[tuple[int, str]]]:
    """Parse YAML text -> (value, {path: line}, [(line, duplicate-key problem), ...])."""
    try:
        _refuse_aliases(text)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise YamlSyntaxError(line, f"not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(None, f"not valid YAML: {exc}") from None
    lines: dict[Path, int] = {}
    problems: list[tuple[int, str]] = []
    if node is None:
        return None, lines, problems
    constructor = SafeConstructor()
    value = _build(node, (), lines, problems, constructor)
    return value, lines, problems


def _build(node, path: Path, lines, problems, constructor):
    lines[path] = node.start_mark.line + 1
    if isinstance(node, ScalarNode):
        return constructor.construct_object(node, deep=True)
    if isinstance(node, SequenceNode):
        return [_build(item, path + (i,), lines, problems, constructor) for i, item in enumerate(node.value)]
    if isinstance(node, MappingNode):
        out = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                problems.append((key_node.start_mark.line + 1, f"{path_text(path)}: keys must be plain words"))
                continue
            key = constructor.construct_object(key_node, deep=True)
            if key in out:
                problems.append(
                    (key_node.start_mark.line + 1, f"{path_text(path + (key,))}: given twice; keep one of them")
                )
                continue
            out[key] = _build(value_node, path + (key,), lines, problems, constructor)
        return out
    return constructor.construct_object(node, deep=True)  # pragma: no cover - PyYAML has only these three kinds
