"""Safe YAML loading that remembers where every value came from.

Only `yaml.SafeLoader` is used. While turning nodes into plain Python values we record
the line and column of every mapping key and sequence item, so that a validation
error deep inside the storyboard can point at the exact place in the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import Issue, StoryboardError

FieldPath = tuple[str | int, ...]

MAX_DEPTH = 64
MAX_NODES = 200_000
_STOP = MAX_NODES * 2
_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


@dataclass
class Located:
    """A parsed YAML document and the position of each field path in it."""

    file: Path
    value: Any
    positions: dict[FieldPath, tuple[int, int]] = field(default_factory=dict)

    def where(self, path: FieldPath) -> tuple[int | None, int | None]:
        """Line and column (1-based) of a path, or of its nearest located parent."""
        for n in range(len(path), -1, -1):
            if path[:n] in self.positions:
                return self.positions[path[:n]]
        return None, None

    def issue(self, path: FieldPath, message: str) -> Issue:
        line, column = self.where(path)
        return Issue(self.file, line, column, format_path(path), message)


def shown(value: Any, limit: int = 40) -> str:
    """A value as a message quotes it, at most `limit` characters long."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**15:
        # str() of a huge int is slow, and refused past 4300 digits.
        digits = int(value.bit_length() * 0.30103) + 1
        return f"{'-' if value < 0 else ''}(a {digits}-digit number)"
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def spelled(value: Any) -> str:
    """A wrong value as YAML spells it, for "got ..." in messages: ``true``, ``'3'``,
    ``a list``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return "a mapping" if isinstance(value, dict) else "a list"
    if isinstance(value, str):
        return f"'{shown(value)}'"
    return "nothing" if value is None else shown(value)


def format_path(path: FieldPath) -> str:
    """``("shots", 2, "text")`` -> ``shots[2].text``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def load_yaml(text: str, file: Path) -> Located:
    """Parses one YAML document with positions.

    Raises:
        StoryboardError: the text is not YAML, holds several documents, uses tags,
            repeats a key, or nests absurdly deep.
    """
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except _TooDeep as exc:
        raise StoryboardError([Issue(file, exc.mark.line + 1, exc.mark.column + 1, "", _TOO_DEEP)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        what = exc.problem or exc.context or "invalid YAML"
        raise StoryboardError([Issue(file, line, column, "", f"YAML syntax error: {what}")]) from None
    except yaml.YAMLError as exc:
        raise StoryboardError([Issue(file, None, None, "", f"YAML error: {exc}")]) from None
    except (ValueError, UnicodeError, RecursionError) as exc:
        raise StoryboardError([Issue(file, None, None, "", f"cannot read YAML: {exc}")]) from None
    nodes = [n for n in nodes if n is not None]
    if not nodes:
        raise StoryboardError([Issue(file, 1, 1, "", "the storyboard is empty")])
    if len(nodes) > 1:
        mark = nodes[1].start_mark
        raise StoryboardError(
            [Issue(file, mark.line + 1, mark.column + 1, "", "expected one YAML document, found several")]
        )
    located = Located(file, None)
    issues: list[Issue] = []
    counter = [0]
    located.value = _convert(nodes[0], (), located, issues, counter, 0)
    if issues:
        raise StoryboardError(issues)
    return located


_TOO_DEEP = f"the document nests more than {MAX_DEPTH} levels deep; a storyboard needs a few"
_TOO_LARGE = f"the document holds more than {MAX_NODES} values: too many for a storyboard"


class _TooDeep(Exception):
    def __init__(self, mark: yaml.Mark):
        self.mark = mark


class _Loader(yaml.SafeLoader):
    """SafeLoader that stops composing at `MAX_DEPTH`: PyYAML composes recursively, and
    would otherwise go on to Python's recursion limit, slowly and without a line."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _TooDeep(self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _convert(node: yaml.Node, path: FieldPath, located: Located, issues: list[Issue],
             counter: list[int], depth: int) -> Any:
    counter[0] += 1
    mark = node.start_mark
    if depth > MAX_DEPTH or counter[0] > MAX_NODES:
        if counter[0] < _STOP:
            # One issue, at the first place; its path is cut short to stay readable.
            field = format_path(path[:6]) + ("..." if len(path) > 6 else "")
            issues.append(Issue(located.file, mark.line + 1, mark.column + 1, field,
                                _TOO_DEEP if depth > MAX_DEPTH else _TOO_LARGE))
        counter[0] = _STOP  # nothing after this is converted or reported
        return None
    located.positions.setdefault(path, (mark.line + 1, mark.column + 1))
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.tag not in _PLAIN_TAGS:
        issues.append(Issue(located.file, mark.line + 1, mark.column + 1, format_path(path),
                            f"YAML tag {node.tag} is not allowed in a storyboard"))
        return None
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                issues.append(Issue(located.file, key_node.start_mark.line + 1,
                                    key_node.start_mark.column + 1, format_path(path),
                                    "YAML merge keys (<<) are not supported; write the fields out"))
                continue
            key = _convert(key_node, path, located, issues, counter, depth + 1)
            if counter[0] >= _STOP:
                return None
            if not isinstance(key, str | int | float | bool) or key is None:
                issues.append(Issue(located.file, key_node.start_mark.line + 1,
                                    key_node.start_mark.column + 1, format_path(path),
                                    "keys must be plain names"))
                continue
            key = str(key) if not isinstance(key, str) else key
            child = path + (key,)
            km = key_node.start_mark
            if key in result:
                issues.append(Issue(located.file, km.line + 1, km.column + 1, format_path(child),
                                    f"duplicate key '{key}'"))
                continue
            located.positions[child] = (km.line + 1, km.column + 1)
            result[key] = _convert(value_node, child, located, issues, counter, depth + 1)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            child = path + (index,)
            located.positions[child] = (item.start_mark.line + 1, item.start_mark.column + 1)
            items.append(_convert(item, child, located, issues, counter, depth + 1))
        return items
    if isinstance(node, yaml.ScalarNode):
        try:
            return yaml.SafeLoader("").construct_object(node, deep=True)  # type: ignore[arg-type]
        except yaml.YAMLError as exc:
            issues.append(Issue(located.file, mark.line + 1, mark.column + 1, format_path(path),
                                f"cannot read this value: {getattr(exc, 'problem', exc)}"))
            return None
        except (ValueError, OverflowError) as exc:
            issues.append(Issue(located.file, mark.line + 1, mark.column + 1, format_path(path),
                                f"cannot read this value: {exc}"))
            return None
    issues.append(Issue(located.file, mark.line + 1, mark.column + 1, format_path(path),
                        "unsupported YAML node"))
    return None
