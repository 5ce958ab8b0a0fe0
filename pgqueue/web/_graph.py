"""A workflow run's graph as SVG coordinates: nodes in layers (a node one layer below
its deepest parent), each layer ordered to keep edges short (a few sweeps placing each
node at the mean position of its neighbours), long layers wrapped onto several rows.
The template draws it: numbers and the nodes' own fields (escaped there)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: A node's box, the gaps between boxes, and the most boxes in one row.
NODE_W, NODE_H, GAP_X, GAP_Y, ROW_MAX = 150, 40, 16, 44, 12
#: Ordering sweeps (down then up, each): enough for the graphs drawn (GRAPH_MAX nodes).
SWEEPS = 4


@dataclass(frozen=True, slots=True)
class Box:
    node: Any
    x: float
    y: float

    @property
    def cx(self) -> float:
        return self.x + NODE_W / 2


def layout(nodes: Sequence[Any], edges: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """``nodes``: rows with ``job_id`` (in the order they were added); ``edges``: (parent
    job id, child job id). Returns the SVG's size, the boxes and the edges' paths."""
    ids = [n.job_id for n in nodes]
    known = set(ids)
    parents: dict[int, list[int]] = {i: [] for i in ids}
    children: dict[int, list[int]] = {i: [] for i in ids}
    for p, c in edges:
        if p in known and c in known:
            parents[c].append(p)
            children[p].append(c)
    # Layers by longest path from a root (Kahn's order: a workflow has no cycle; a node
    # left over by one anyway goes to the last layer).
    waiting = {i: len(parents[i]) for i in ids}
    depth = dict.fromkeys(ids, 0)
    ready = [i for i in ids if waiting[i] == 0]
    seen = 0
    while ready:
        i = ready.pop()
        seen += 1
        for c in children[i]:
            depth[c] = max(depth[c], depth[i] + 1)
            waiting[c] -= 1
            if waiting[c] == 0:
                ready.append(c)
    deepest = max(depth.values(), default=0)
    if seen < len(ids):
        for i in ids:
            if waiting[i] > 0:
                depth[i] = deepest + 1
    layers: list[list[int]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for i in ids:  # in the order added: the starting order of each layer
        layers[depth[i]].append(i)
    order: dict[int, float] = {}

    def renumber(layer: list[int]) -> None:
        for k, i in enumerate(layer):
            order[i] = k

    for layer in layers:
        renumber(layer)
    for sweep in range(SWEEPS):
        down = sweep % 2 == 0
        for layer in layers[1:] if down else reversed(layers[:-1]):
            near = parents if down else children

            def mean(i: int, near: dict[int, list[int]] = near) -> float:
                others = near[i]
                return sum(order[o] for o in others) / len(others) if others else order[i]

            layer.sort(key=mean)
            renumber(layer)
    width = min(ROW_MAX, max((len(layer) for layer in layers), default=1)) * (NODE_W + GAP_X)
    by_id = {n.job_id: n for n in nodes}
    boxes: dict[int, Box] = {}
    y = 8.0
    for layer in layers:
        for start in range(0, len(layer), ROW_MAX):
            row = layer[start : start + ROW_MAX]
            left = (width - len(row) * (NODE_W + GAP_X)) / 2 + GAP_X / 2
            for k, i in enumerate(row):
                boxes[i] = Box(by_id[i], round(left + k * (NODE_W + GAP_X), 1), y)
            y += NODE_H + GAP_Y
    paths = []
    for p, c in edges:
        if p in boxes and c in boxes:
            a, b = boxes[p], boxes[c]
            x1, y1, x2, y2 = a.cx, a.y + NODE_H, b.cx, b.y
            mid = (y1 + y2) / 2
            paths.append(f"M{x1:g},{y1:g} C{x1:g},{mid:g} {x2:g},{mid:g} {x2:g},{y2 - 4:g}")
    return {
        "width": max(width, NODE_W + GAP_X),
        "height": y - GAP_Y + 8 if boxes else 0,
        "boxes": [boxes[i] for i in ids],
        "paths": paths,
        "node_w": NODE_W,
        "node_h": NODE_H,
    }
