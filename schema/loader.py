"""YAML -> RunnersFile, with every problem located as FILE:LINE:COL: path: message.

The loader builds plain data from PyYAML's node tree itself, remembering where
each key and item stands, so a pydantic error `loc` maps back to a line. Keys
merged in from `defaults` point at the defaults line they came from. Nothing
here raises anything but `LoadError` for bad input.
"""

from __future__ import annotations

import copy
import difflib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import yaml
from pydantic import BaseModel, ValidationError

from schema.models import Loc, RunnersFile, cross_pool_problems, format_loc

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 1,000 pools in ms
Position = tuple[int, int]  # 1-based line, column


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class LoadError(Exception):
    """runners.yaml is not valid; `problems` lists every located problem."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(set(problems))
        super().__init__("\n".join(str(p) for p in self.problems))


def load_file(path: str | Path) -> RunnersFile:
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LoadError([Problem(name, 1, 1, "", f"cannot read file: {exc}")]) from None
    return load_text(text, name)


def load_text(text: str, file: str = "runners.yaml") -> RunnersFile:
    data, positions = _parse(text, file)
    data, origins = _merge_defaults(data)
    locator = _Locator(file, data, positions, origins)
    try:
        runners = RunnersFile.model_validate(data, context={"defer_cross_pool": True})
    except ValidationError as exc:
        raise LoadError([locator.problem(e["loc"], _message(e)) for e in exc.errors()]) from None
    problems = [locator.problem(loc, message) for loc, message in cross_pool_problems(runners)]
    if problems:
        raise LoadError(problems)
    return runners


# --- YAML with positions ------------------------------------------------------------


def _parse(text: str, file: str) -> tuple[Any, dict[Loc, Position]]:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise LoadError([Problem(file, 1, 1, "", "the file is empty; it needs version, github and pools")])
        positions: dict[Loc, Position] = {(): _pos(node)}
        data = _build(loader, node, (), positions, file)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise LoadError([Problem(file, line, column, "", f"YAML syntax: {exc.problem or exc}")]) from None
    except yaml.YAMLError as exc:
        raise LoadError([Problem(file, 1, 1, "", f"YAML: {exc}")]) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
        raise LoadError([Problem(file, *positions[()], "", f"the top level must be a mapping, not {kind}")])
    return data, positions


def _pos(node: yaml.Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _build(loader: Any, node: yaml.Node, path: Loc, positions: dict[Loc, Position], file: str) -> Any:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves `<<: *anchor` merge keys
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) or key is None:
                raise LoadError([Problem(file, *_pos(key_node), format_loc(path), "keys must be plain scalars")])
            if key in result:
                raise LoadError(
                    [Problem(file, *_pos(key_node), format_loc((*path, str(key))), f"duplicate key {key!r}")]
                )
            child: Loc = (*path, key if isinstance(key, (str, int)) else str(key))
            key_loc: Loc = (*child, "[key]")  # named: mypy reads x[(*a, b)] as 3.11-only syntax
            positions[key_loc] = _pos(key_node)
            # Point scalars at their value, collections at their key line.
            positions[child] = _pos(value_node if isinstance(value_node, yaml.ScalarNode) else key_node)
            result[key] = _build(loader, value_node, child, positions, file)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item_node in enumerate(node.value):
            item_loc: Loc = (*path, index)
            positions[item_loc] = _pos(item_node)
            items.append(_build(loader, item_node, item_loc, positions, file))
        return items
    return loader.construct_object(node, deep=True)


# --- defaults ----------------------------------------------------------------------


def _merge_defaults(data: dict[Any, Any]) -> tuple[dict[Any, Any], dict[Loc, Loc]]:
    """Copy `defaults` into each pool that lacks a key; tags merge key by key.

    Returns the merged data and, for every merged key, where it really came from.
    Malformed shapes are left alone for pydantic to report.
    """
    defaults, pools = data.get("defaults"), data.get("pools")
    origins: dict[Loc, Loc] = {}
    if not isinstance(defaults, dict) or not isinstance(pools, list):
        return data, origins
    merged_pools = []
    for i, pool in enumerate(pools):
        if not isinstance(pool, dict):
            merged_pools.append(pool)
            continue
        merged = dict(pool)
        for key, value in defaults.items():
            if key not in merged:
                merged[key] = copy.deepcopy(value)
                origins[("pools", i, key)] = ("defaults", key)
            elif key == "tags" and isinstance(value, dict) and isinstance(merged[key], dict):
                merged[key] = {**value, **merged[key]}
                for tag in value.keys() - pool[key].keys():
                    origins[("pools", i, "tags", tag)] = ("defaults", "tags", tag)
        merged_pools.append(merged)
    return {**data, "pools": merged_pools}, origins


# --- locating pydantic errors --------------------------------------------------------


class _Locator:
    def __init__(self, file: str, data: Any, positions: dict[Loc, Position], origins: dict[Loc, Loc]) -> None:
        self.file, self.data, self.positions, self.origins = file, data, positions, origins

    def problem(self, loc: tuple[Any, ...], message: str) -> Problem:
        path = self._origin(self._data_path(loc))
        shown = path[:-1] if path[-1:] == ("[key]",) else path
        for end in range(len(path), -1, -1):
            position = self.positions.get(path[:end])
            if position:
                return Problem(self.file, *position, format_loc(shown), message)
        return Problem(self.file, 1, 1, format_loc(shown), message)

    def _data_path(self, loc: tuple[Any, ...]) -> Loc:
        """Drop the discriminator tag pydantic puts in a union member's loc."""
        path: list[str | int] = []
        node = self.data
        for part in loc:
            if part == "[key]":  # pydantic's marker for a bad dict key: locate the key itself
                path.append(part)
                break
            if isinstance(node, dict) and part not in node and part == node.get("provider"):
                continue
            path.append(part)
            node = (
                node.get(part)
                if isinstance(node, dict)
                else (node[part] if isinstance(node, list) and isinstance(part, int) and part < len(node) else None)
            )
        return tuple(path)

    def _origin(self, path: Loc) -> Loc:
        for end in range(len(path), 0, -1):
            origin = self.origins.get(path[:end])
            if origin:
                return origin + path[end:]
        return path


def _message(error: Any) -> str:
    kind, message = error["type"], error["msg"]
    if kind == "extra_forbidden":
        return _unknown_key(error["loc"], error.get("input"))
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_not_found":
        return "missing provider: set provider to aws or gcp"
    if kind == "union_tag_invalid":
        return f"unknown provider {error['ctx']['tag']!r}: use aws or gcp"
    if kind == "string_type":  # e.g. `idle_timeout: 30`: say what the string should look like
        description = _field_description(error["loc"])
        return message + (f": {description}" if description else "")
    if kind == "string_pattern_mismatch":
        description = _field_description(error["loc"])
        if error["loc"][-1] == "[key]":
            return f"key {error['input']!r} is not valid: {_KEY_RULES}"
        return f"{error['input']!r} is not valid" + (f": {description}" if description else "")
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


_KEY_RULES = "lower-case letters, digits, _ and -, starting with a letter, at most 63 (GCP label rules)"


def _unknown_key(loc: tuple[Any, ...], value: Any) -> str:
    key = str(loc[-1])
    model = _model_at(loc[:-1])
    if model is None:
        return f"unknown key {key!r}"
    removed: dict[str, str] = getattr(model, "removed_keys", {})
    if key in removed:  # a key an older version took: say what to write now
        shown = value if isinstance(value, int) and not isinstance(value, bool) else "N"
        return removed[key].format(value=shown)
    allowed = sorted(model.model_fields)
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key {key!r}; {hint}allowed: {', '.join(allowed)}"


def _field_description(loc: tuple[Any, ...]) -> str | None:
    for end in range(len(loc), 0, -1):
        if isinstance(loc[end - 1], int):
            continue
        model = _model_at(loc[: end - 1])
        field = model.model_fields.get(str(loc[end - 1])) if model else None
        if field is not None:
            if end < len(loc):  # inside a list or dict field: describe its items
                items = [
                    typing.get_args(c)[-1]
                    for c in _candidates(field.annotation)
                    if typing.get_origin(c) in (list, dict)
                ]
                return _annotated_description(items[0]) if items else None
            return field.description or _annotated_description(field.annotation)
    return None


def _annotated_description(annotation: Any) -> str | None:
    unions = typing.get_args(annotation) if typing.get_origin(annotation) in (Union, types.UnionType) else ()
    for candidate in unions or (annotation,):
        for meta in getattr(candidate, "__metadata__", ()):
            if getattr(meta, "description", None):
                return str(meta.description)
    return None


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that validates the mapping at `loc` (None if not a model)."""
    candidates: list[Any] = [RunnersFile]
    for part in loc:
        models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if isinstance(part, int):
            candidates = [arg for c in candidates for arg in _list_items(c)]
        elif any(_provider_tag(m) == part for m in models):
            candidates = [m for m in models if _provider_tag(m) == part]
        else:
            fields = [m.model_fields[part] for m in models if part in m.model_fields]
            candidates = [c for f in fields for c in _candidates(f.annotation)]
        candidates = [c for raw in candidates for c in _candidates(raw)]
    models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
    return models[0] if len(models) == 1 else None


def _provider_tag(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("provider")
    args = typing.get_args(field.annotation) if field else ()
    return str(args[0]) if args else None


def _candidates(annotation: Any) -> list[Any]:
    """Unwrap Annotated, Optional and Union into the concrete types they allow."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _candidates(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [c for arg in typing.get_args(annotation) for c in _candidates(arg)]
    return [annotation]


def _list_items(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) is list:
        return _candidates(typing.get_args(annotation)[0])
    return []


def locate(path: str | Path, loc: Loc) -> Position:
    """Line and column of `loc` in a (valid) file, for problems found after validation."""
    data, positions = _parse(Path(path).read_text(encoding="utf-8"), str(path))
    data, origins = _merge_defaults(data)
    found = _Locator(str(path), data, positions, origins).problem(loc, "")
    return found.line, found.column
