"""YAML read within limits: size, nesting depth, and nodes after alias expansion.

``yaml.safe_load`` constructs no arbitrary objects, but it has no limits. An alias is a
reference, so eight levels of nine aliases (517 bytes) are 9^8 = 43 million nodes to
whatever walks the result (a checker, a JSON encoder): tens of seconds of CPU. An alias
inside its own anchor is a cycle, and thousands of nested brackets overflow the composer's
recursion: both end in a ``RecursionError``. PyYAML offers no limits and no maintained
library adds them, so :class:`LimitedSafeLoader` is a ``SafeLoader`` that counts depth and
nodes while it composes and refuses cycles and expansions past the limits before anything
is constructed. Its errors are ``yaml.YAMLError`` s with a line and column, like any
syntax error.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_BYTES = 500_000
MAX_DEPTH = 50
MAX_NODES = 10_000  # also counted as if every alias were written out (the paper's spec has 746)


class YamlLimitError(yaml.MarkedYAMLError):
    """The document is past a limit (``problem`` says which), or refers to itself."""


class LimitedSafeLoader(yaml.SafeLoader):
    """``SafeLoader`` that stops at :data:`MAX_DEPTH` levels and :data:`MAX_NODES` nodes."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0
        self._composed = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        self._composed += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YamlLimitError(problem=f"nested deeper than {MAX_DEPTH} levels", problem_mark=self._mark())
            if self._composed > MAX_NODES:
                raise YamlLimitError(problem=f"more than {MAX_NODES} values", problem_mark=self._mark())
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def _mark(self) -> Any:
        return self.peek_event().start_mark

    def get_single_node(self) -> Any:
        node = super().get_single_node()
        if node is not None:
            _expansion_check(node)
        return node


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _expansion_check(root: yaml.Node) -> None:
    """Nodes and depth of the document as if every alias were written out; cycles refused.

    Iterative (an expanded document can be deeper than Python's stack) and linear in the
    nodes written: each is sized once, an alias reuses its anchor's size.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            children = _children(node)
            size[key] = 1 + sum(size[id(child)] for child in children)
            depth[key] = 1 + max((depth[id(child)] for child in children), default=0)
            if size[key] > MAX_NODES:
                raise YamlLimitError(
                    problem=f"more than {MAX_NODES} values once its aliases are expanded", problem_mark=node.start_mark
                )
            if depth[key] > MAX_DEPTH:
                raise YamlLimitError(
                    problem=f"nested deeper than {MAX_DEPTH} levels once its aliases are expanded",
                    problem_mark=node.start_mark,
                )
            continue
        if key in size:
            continue
        if key in on_path:
            raise YamlLimitError(problem="an alias refers to its own anchor (a cycle)", problem_mark=node.start_mark)
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in size)
    return None


def yaml_load_limited(content: str | bytes) -> Any:
    """``yaml.safe_load`` within :data:`MAX_BYTES`, :data:`MAX_DEPTH` and :data:`MAX_NODES`."""
    if len(content) > MAX_BYTES:
        raise YamlLimitError(problem=f"larger than {MAX_BYTES:,} bytes")
    return yaml.load(content, Loader=LimitedSafeLoader)  # noqa: S506 (a SafeLoader with limits)
