"""The DAG's graph laid out left to right, computed here and drawn as inline SVG.

Each task goes in the column of its longest chain of upstream tasks, so every edge points
right; within a column tasks keep their definition order. Edges are cubic curves from the
right side of a task to the left side of its downstream task. Pure: no I/O, no browser code.
"""

from __future__ import annotations

from dataclasses import dataclass

from drayman.spec import DagSpec
from drayman.web.pages.grid import task_order

NODE_W = 170
NODE_H = 30
GAP_X = 60
GAP_Y = 14
PAD = 8
LABEL_CHARS = 22


@dataclass(frozen=True)
class Node:
    task_id: str
    label: str  # shortened to fit the box; the full id goes into the tooltip
    x: int
    y: int
    mapped: bool


@dataclass(frozen=True)
class Edge:
    path: str  # SVG path data


@dataclass(frozen=True)
class Layout:
    nodes: list[Node]
    edges: list[Edge]
    width: int
    height: int
    node_w: int = NODE_W
    node_h: int = NODE_H


def layers(spec: DagSpec) -> dict[str, int]:
    """Task id -> its column: the length of its longest chain of upstream tasks."""
    depth: dict[str, int] = {}
    for task_id in task_order(spec):  # upstream first, so every upstream depth is known
        ups = [depth[u] for u in spec.tasks[task_id].upstream if u in depth]
        depth[task_id] = 1 + max(ups, default=-1)
    return depth


def layout(spec: DagSpec) -> Layout:
    """Where every task and edge goes."""
    columns: dict[int, list[str]] = {}
    for task_id, column in layers(spec).items():
        columns.setdefault(column, []).append(task_id)
    nodes: dict[str, Node] = {}
    for column, task_ids in columns.items():
        for row, task_id in enumerate(task_ids):
            nodes[task_id] = Node(
                task_id=task_id,
                label=shorten(task_id),
                x=PAD + column * (NODE_W + GAP_X),
                y=PAD + row * (NODE_H + GAP_Y),
                mapped=spec.tasks[task_id].is_mapped,
            )
    edges = [
        _edge(nodes[up], nodes[task.task_id])
        for task in spec.tasks.values()
        for up in task.upstream
        if up in nodes
    ]
    width = PAD * 2 + max((n.x for n in nodes.values()), default=0) + NODE_W
    height = PAD * 2 + max((n.y for n in nodes.values()), default=0) + NODE_H
    return Layout(list(nodes.values()), edges, width, height)


def _edge(start: Node, end: Node) -> Edge:
    x1, y1 = start.x + NODE_W, start.y + NODE_H // 2
    x2, y2 = end.x, end.y + NODE_H // 2
    bend = (x2 - x1) // 2
    return Edge(f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}")


def shorten(text: str, limit: int = LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
