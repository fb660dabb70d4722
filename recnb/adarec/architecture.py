"""A searched architecture as a plain JSON value, and the DARTS rule that derives it.

The value rebuilds the student without any supernet code and without alphas::

    {"format": "recnb-architecture/1",
     "cells": [ {"nodes": [ [{"op": "conv_k3", "input": 1}, {"op": "skip", "input": 0}],
                            ... one list of kept edges per intermediate node ... ]},
                ... one entry per cell ... ],
     "meta": {"scene": "ml-100k", "beta": 0.1, ...}}

Inside a cell, input ``0`` is the output of the cell two below (the embedding stands in
below the first cell), ``1`` the cell just below, and ``2 + i`` intermediate node ``i``.
This module is the one reader/writer of that format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recnb.adarec.ops import OPS, PARAMETER_FREE, PRIMITIVES, op_flops, op_params
from recnb.errors import ConfigError

FORMAT = "recnb-architecture/1"


@dataclass(frozen=True)
class Edge:
    op: str
    input: int


@dataclass
class Architecture:
    """``cells[c][n]`` is the list of kept edges into intermediate node ``n`` of cell ``c``."""

    cells: list  # list[list[list[Edge]]]
    meta: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ shape
    @property
    def num_cells(self) -> int:
        return len(self.cells)

    def edges(self) -> list[dict]:
        """One row per kept edge (``cell, node, input, op``), ready for a DataFrame or a
        drawing: inputs ``0``/``1`` are the cell's two inputs, ``2 + i`` node ``i``."""
        return [
            {"cell": c, "node": n, "input": e.input, "op": e.op}
            for c, cell in enumerate(self.cells)
            for n, node in enumerate(cell)
            for e in node
        ]

    def op_counts(self) -> dict:
        counts: dict = {}
        for e in self.edges():
            counts[e["op"]] = counts.get(e["op"], 0) + 1
        return counts

    def params(self, width: int) -> int:
        """Parameters of the cells alone (no embedding, norms or output layer)."""
        return sum(op_params(e["op"], width) for e in self.edges())

    def flops_per_position(self, width: int, seq_len: int = 50) -> float:
        return sum(op_flops(e["op"], width, seq_len) for e in self.edges())

    def signature(self) -> str:
        """A compact text form; two architectures are the same iff their signatures are."""
        return " | ".join(
            "; ".join(",".join(f"{e.op}<{e.input}" for e in node) for node in cell) for cell in self.cells
        )

    def without_skip_cells(self) -> Architecture:
        """Drop cells whose every kept edge is ``skip`` (their output is a rescaled input):
        the minimal-depth variant. At least one cell is kept."""
        kept = [cell for cell in self.cells if any(e.op != "skip" for node in cell for e in node)]
        return Architecture(kept or self.cells[:1], dict(self.meta, pruned_skip_cells=len(self.cells) - len(kept)))

    def __eq__(self, other) -> bool:
        return isinstance(other, Architecture) and self.signature() == other.signature()

    # ------------------------------------------------------------------ (de)serialise
    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "cells": [{"nodes": [[{"op": e.op, "input": e.input} for e in node] for node in cell]} for cell in self.cells],
            "meta": self.meta,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, d, where: str = "architecture") -> Architecture:
        """Validate and build; every problem names the offending field."""
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: expected a JSON object, got {type(d).__name__}")
        if "format" in d and d["format"] != FORMAT:
            raise ConfigError(f"{where}.format: expected {FORMAT!r}, got {d['format']!r}")
        unknown = sorted(set(d) - {"format", "cells", "meta"})
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; known: cells, format, meta")
        cells = d.get("cells")
        if not isinstance(cells, list) or not cells:
            raise ConfigError(f"{where}.cells: expected a non-empty list of cells")
        out = []
        for c, cell in enumerate(cells):
            at = f"{where}.cells[{c}]"
            if not isinstance(cell, dict) or not isinstance(cell.get("nodes"), list) or not cell["nodes"]:
                raise ConfigError(f"{at}.nodes: expected a non-empty list of nodes")
            nodes = []
            for n, node in enumerate(cell["nodes"]):
                if not isinstance(node, list) or not node:
                    raise ConfigError(f"{at}.nodes[{n}]: expected a non-empty list of edges")
                edges = []
                for k, e in enumerate(node):
                    ea = f"{at}.nodes[{n}][{k}]"
                    if not isinstance(e, dict) or set(e) != {"op", "input"}:
                        raise ConfigError(f"{ea}: expected an object with exactly the fields 'op' and 'input'")
                    if not isinstance(e["op"], str) or e["op"] not in OPS:
                        raise ConfigError(f"{ea}.op: unknown op {e['op']!r}; known ops: {', '.join(PRIMITIVES)}")
                    inp = e["input"]
                    if isinstance(inp, bool) or not isinstance(inp, int) or not 0 <= inp < 2 + n:
                        raise ConfigError(f"{ea}.input: node {n} can read inputs 0..{1 + n}, got {inp!r}")
                    edges.append(Edge(e["op"], inp))
                nodes.append(edges)
            out.append(nodes)
        meta = d.get("meta", {})
        if not isinstance(meta, dict):
            raise ConfigError(f"{where}.meta: expected an object")
        return cls(out, dict(meta))

    @classmethod
    def from_json(cls, text: str, where: str = "architecture") -> Architecture:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where}: malformed JSON at line {exc.lineno} column {exc.colno} ({exc.msg})") from None
        return cls.from_dict(d, where)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Architecture:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"architecture {path}: no such file")
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, IsADirectoryError) as exc:
            raise ConfigError(f"architecture {path}: not a JSON text file ({type(exc).__name__})") from None
        return cls.from_json(text, where=str(path))


def derive(alphas, primitives=PRIMITIVES, top_k: int = 2, meta: dict | None = None) -> Architecture:
    """The DARTS rule: for each intermediate node keep the ``top_k`` incoming edges whose
    strongest non-``zero`` op weighs most, and on each kept edge that op.

    ``alphas`` is ``(cells, edges, ops)`` (or ``(edges, ops)`` for one shared set); edges
    are ordered node by node, node ``i`` having ``2 + i`` incoming edges. Raw alphas or
    their softmax give the same architecture.
    """
    a = np.asarray(alphas, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[2] != len(primitives):
        raise ConfigError(f"alphas: expected shape (cells, edges, {len(primitives)}), got {a.shape}")
    num_nodes = nodes_for_edges(a.shape[1])
    w = np.exp(a - a.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    usable = [i for i, o in enumerate(primitives) if o != "zero"]
    cells = []
    for c in range(a.shape[0]):
        nodes, start = [], 0
        for n in range(num_nodes):
            block = w[c, start : start + 2 + n][:, usable]
            best_op = block.argmax(1)
            strength = block.max(1)
            keep = sorted(np.argsort(-strength, kind="stable")[: min(top_k, 2 + n)])
            nodes.append([Edge(primitives[usable[best_op[j]]], int(j)) for j in keep])
            start += 2 + n
        cells.append(nodes)
    return Architecture(cells, dict(meta or {}))


def nodes_for_edges(num_edges: int) -> int:
    """Number of intermediate nodes N such that 2 + 3 + ... + (N + 1) = ``num_edges``."""
    n, total = 0, 0
    while total < num_edges:
        total += 2 + n
        n += 1
    if total != num_edges:
        raise ConfigError(f"alphas: {num_edges} edges do not make a cell (2 + 3 + ... edges)")
    return n


def edges_per_cell(num_nodes: int) -> int:
    return sum(2 + n for n in range(num_nodes))


__all__ = ["FORMAT", "PARAMETER_FREE", "Architecture", "Edge", "derive", "edges_per_cell", "nodes_for_edges"]
