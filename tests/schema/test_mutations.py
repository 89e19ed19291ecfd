"""Property test: any mutation of the example is either valid or a clean, located error."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schema.loader import LoadError, load_text
from schema.models import RunnersFile

EXAMPLE_TEXT = (Path(__file__).resolve().parents[2] / "runners.yaml").read_text()
EXAMPLE = yaml.safe_load(EXAMPLE_TEXT)
ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 2000),
    st.text(max_size=12),
    st.just([]),
    st.just({}),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*prefix, i))
    return found


PATHS = _paths(EXAMPLE)


def _mutate(data: Any, path: tuple[Any, ...], action: str, value: Any) -> Any:
    data = copy.deepcopy(data)
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if action == "drop":
        del parent[last]
    elif action == "retype":
        parent[last] = value
    elif action == "rename" and isinstance(parent, dict):
        parent[f"{last}x" if isinstance(last, str) else str(value)] = parent.pop(last)
    elif action == "duplicate" and isinstance(parent, list):
        parent.append(copy.deepcopy(parent[last]))
    elif action == "duplicate" and isinstance(parent, dict):
        parent[f"{last}"] = copy.deepcopy(parent[last])
    return data


def _check(text: str) -> None:
    try:
        result = load_text(text, "runners.yaml")
    except LoadError as error:
        assert error.problems
        lines = text.count("\n") + 2
        for problem in error.problems:
            assert problem.file == "runners.yaml"
            assert 1 <= problem.line <= lines and problem.column >= 1
            assert problem.message and "Traceback" not in problem.message
    else:
        assert isinstance(result, RunnersFile)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.sampled_from(PATHS),
    action=st.sampled_from(["drop", "retype", "rename", "duplicate"]),
    value=ODD_VALUES,
)
def test_mutated_example_is_valid_or_located(path: tuple[Any, ...], action: str, value: Any) -> None:
    _check(yaml.safe_dump(_mutate(EXAMPLE, path, action, value), sort_keys=False))


@settings(max_examples=100, deadline=None)
@given(line=st.integers(0, EXAMPLE_TEXT.count("\n")), how=st.sampled_from(["duplicate", "drop", "indent", "garble"]))
def test_textual_mutations_are_located(line: int, how: str) -> None:
    """Duplicated keys, broken indentation and stray characters at the YAML level."""
    lines = EXAMPLE_TEXT.splitlines()
    if line >= len(lines):
        return
    if how == "duplicate":
        lines.insert(line, lines[line])
    elif how == "drop":
        del lines[line]
    elif how == "indent":
        lines[line] = "   " + lines[line]
    else:
        lines[line] = lines[line][: len(lines[line]) // 2] + ": [{"
    _check("\n".join(lines) + "\n")
