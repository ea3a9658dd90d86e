"""Drawing the computation graph, the lecture's Figure 1: with matplotlib through
networkx, or as Graphviz DOT text. Nodes are laid out in layers from left to right
(a node's layer is its longest distance from an input); with a solution, each node
shows its value z and multiplier lambda, and each edge its local partial, placed where
it overlaps no other label.
"""

from __future__ import annotations

import textwrap

import numpy as np
import sympy as sp

from ..core.display import number, text
from ..system.lagrangian import stationarity

__all__ = ["draw", "layers", "to_dot"]

_UNDEFINED = "#d62828"  # the rim of a node with no number here
_COLOURS = {"input": "#8ecae6", "constant": "#dddddd", "defined": "#ffd166", "output": "#ef476f"}


def layers(graph) -> dict:
    """``{node: layer}``: 0 for inputs and constants, else 1 + the deepest reader."""
    layer = {s: 0 for s in graph.inputs + graph.constants}
    for z in graph.defined:  # topological order
        block = graph.node(z).block or (z,)
        if z in layer:  # placed with its implicit block
            continue
        # an implicit block is one column: after everything it reads from outside
        reads = {r for b in block for r in graph.node(b).reads if r not in block}
        for b in block:
            layer[b] = 1 + max((layer[r] for r in reads), default=0)
    return layer


def _label(graph, z, solution) -> str:
    lines = [str(z)]
    if solution is not None:
        lines.append(f"z = {_short(solution.values[z])}")
        if z in solution.adjoints:
            lines.append(f"λ = {_short(solution.adjoints[z])}")
        if z in solution.undefined:
            lines += textwrap.wrap(solution.undefined[z], 30)
        for k in solution.kinks:
            if k.node == z:
                taken = "nan" if k.taken == "nan" else "one-sided value taken"
                lines += textwrap.wrap(f"kink{k.where()}: d/d{k.argument} {taken}", 30)
    return "\n".join(lines)


def _short(value) -> str:
    if isinstance(value, np.ndarray) and value.ndim:
        return f"[{value.shape[0]}×{value.shape[1]}]"
    return number(value, 4)


def _edge_labels(graph) -> dict:
    """``{(j, i): text of df_i/dz_j}`` (for matrix nodes, the pullback of lambda_i)."""
    labels = {}
    for c in stationarity(graph).backward_conditions:
        if getattr(c, "implicit", False):
            for z, contributions in zip(c.nodes, c.contributions):
                for t in contributions:
                    labels[(z, t.reader)] = _short_label(t.label)
            if not c.forward.matrix:  # inside a block: -dr_i/dz_j, where i reads j
                for r, i in zip(c.forward.residuals, c.nodes):
                    for j in c.nodes:
                        if j != i and j in graph.node(i).reads:
                            labels[(j, i)] = _short_label(text(-sp.diff(r, j)))
            continue
        for t in c.contributions:
            labels[(c.wrt, t.reader)] = _short_label(t.label)
    return labels


def _short_label(label: str) -> str:
    return label if len(label) <= 24 else label[:21] + "..."


def _kind(graph, z) -> str:
    if z == graph.output:
        return "output"
    return graph.node(z).kind


def draw(graph, solution=None, ax=None, *, partials: bool = True, node_size: int = 900):
    """Draw ``graph`` with matplotlib; returns the Axes.

    With ``solution`` (from ``g.solve(...)``) nodes show their value and lambda on a
    card below; with ``partials`` the edges show the local partials df_i/dz_j, each
    placed along its edge where it overlaps no other label, card or node. A partial
    that fits nowhere is listed in a key under the graph (``x → z1: y``).
    """
    graph.require_no_recurrence("g.draw")
    import matplotlib.pyplot as plt
    import networkx as nx

    layer = layers(graph)
    pos = _positions(graph, layer)
    digraph = nx.DiGraph()
    digraph.add_nodes_from(pos)
    for z in graph.defined:
        digraph.add_edges_from((r, z) for r in graph.node(z).reads)
    if ax is None:
        width = 2.2 * (max(layer.values()) + 1) + 2
        height = 1.4 * max(np.bincount(list(layer.values()))) + 1
        _, ax = plt.subplots(figsize=(min(width, 24), min(height, 16)))
    nodes = list(digraph.nodes)
    # Fixed limits, with room for the cards under the lowest nodes: edges are bent and
    # labels laid out in display space, so the data-to-display map must not move after.
    xs, ys = zip(*pos.values())
    ax.set_xlim(min(xs) - 0.5, max(xs) + 0.5)
    ax.set_ylim(min(ys) - 0.6, max(ys) + 0.45)
    shown = {s: ax.transData.transform(pos[s]) for s in nodes}
    radius = np.sqrt(node_size) / 2 * ax.figure.dpi / 72
    # Nodes of an implicit block read each other: each direction on an arc of its own.
    # Any other edge bends where its straight line would run through a node it does not
    # join (a long edge past a node in between, lined up with it).
    bend = {}
    for j, i in digraph.edges:
        if j == i:
            continue
        if digraph.has_edge(i, j):
            bend[j, i] = 0.25
        else:
            bend[j, i] = _bend(shown, j, i, radius)
    paths = {e: _curve(shown[e[0]], shown[e[1]], rad) for e, rad in bend.items()}
    for rad in sorted(set(bend.values())):
        edges = [e for e, r in bend.items() if r == rad]
        arrows = nx.draw_networkx_edges(
            digraph,
            pos,
            ax=ax,
            edgelist=edges,
            arrows=True,
            arrowsize=14,
            node_size=node_size,
            edge_color="#555555",
            connectionstyle=f"arc3,rad={rad}",
        )
        for (j, i), arrow in zip(edges, arrows):
            arrow.set_gid(f"arrow {j} -> {i}")
    nx.draw_networkx_nodes(
        digraph,
        pos,
        ax=ax,
        nodelist=nodes,
        node_size=node_size,
        node_color=[_COLOURS[_kind(graph, s)] for s in nodes],
        edgecolors="#333333",
    )
    undefined = [] if solution is None else [s for s in nodes if s in solution.undefined]
    if undefined:  # hatched, with a red rim: no number here (the card says why)
        marked = nx.draw_networkx_nodes(
            digraph,
            pos,
            ax=ax,
            nodelist=undefined,
            node_size=node_size,
            node_color=[_COLOURS[_kind(graph, s)] for s in undefined],
            edgecolors=_UNDEFINED,
            linewidths=2.0,
        )
        marked.set_hatch("///")
        marked.set_gid("undefined nodes")
    ax.set_title(f"computation graph of {graph.output} (inputs left, output right)")
    ax.set_axis_off()
    layout = _Layout(ax, node_size)
    for s in nodes:
        layout.add_disc(pos[s])
    names = nx.draw_networkx_labels(
        digraph, pos, ax=ax, font_size=9, font_weight="bold", labels={s: str(s) for s in nodes}
    )
    for s, t in names.items():
        t.set_gid(f"node {s}")
        layout.add(t)
    if solution is not None:
        for s in nodes:
            layout.card(pos[s], _label(graph, s, solution).split("\n", 1)[1], gid=f"card {s}")
    if partials:
        labels = {e: lab for e, lab in _edge_labels(graph).items() if digraph.has_edge(*e)}
        layout.edge_labels(paths, labels)
    return ax


#: Bends tried for an edge whose straight line meets another node: matplotlib's arc3
#: ``rad``, the control point's distance from the chord as a fraction of its length.
BENDS = (0.0, 0.2, -0.2, 0.3, -0.3, 0.45, -0.45, 0.6, -0.6, 0.8, -0.8)


def _curve(p, q, rad, points: int = 41) -> np.ndarray:
    """The edge from ``p`` to ``q`` (display pixels) as drawn with ``arc3,rad``: a
    quadratic Bezier whose control point is off the chord's middle by ``rad`` times the
    chord (matplotlib's ``Arc3``), sampled at ``points`` points."""
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    (dx, dy), middle = q - p, (p + q) / 2
    control = middle + rad * np.array([dy, -dx])
    s = np.linspace(0.0, 1.0, points)[:, None]
    return (1 - s) ** 2 * p + 2 * (1 - s) * s * control + s**2 * q


def _clearance(curve, centres) -> float:
    """The smallest distance from the curve to the centres, in pixels."""
    if not len(centres):
        return np.inf
    return float(np.min(np.linalg.norm(curve[:, None, :] - centres[None, :, :], axis=2)))


def _bend(shown: dict, j, i, radius: float) -> float:
    """The first bend (straight if it can) whose curve keeps clear of every node but
    its two ends, and of the value card under it: the one that keeps furthest from them
    if none does."""
    centres = np.array([c for s, c in shown.items() if s not in (j, i)]).reshape(-1, 2)
    cards = centres - np.array([0.0, 1.6 * radius])  # where a card hangs (display y is up)
    others = np.vstack([centres, cards])
    margin = radius + 4
    best, room = 0.0, -np.inf
    for rad in BENDS:
        gap = _clearance(_curve(shown[j], shown[i], rad), others)
        if gap >= margin:
            return rad
        if gap > room:
            best, room = rad, gap
    return best


def _positions(graph, layer: dict, sweeps: int = 4) -> dict:
    """``{node: (x, y)}``: one column per layer, ordered to keep edges short and uncrossed.

    Each column is sorted by the mean height of the node's neighbours in the column
    before (then after) it, a few times over (the barycentre heuristic); ties keep the
    graph's own order, so the drawing is the same on every run.
    """
    columns: dict = {}
    for s in graph.inputs + graph.constants + graph.defined:
        columns.setdefault(layer[s], []).append(s)
    order = [columns[k] for k in sorted(columns)]
    y = {}

    def place(column):
        for k, s in enumerate(column):
            y[s] = (len(column) - 1) / 2 - k

    for column in order:
        place(column)
    reads = {z: graph.node(z).reads for z in graph.defined}
    readers: dict = {}
    for z, rs in reads.items():
        for r in rs:
            readers.setdefault(r, []).append(z)
    for _ in range(sweeps):
        for columns_, neighbours in ((order[1:], reads), (order[-2::-1], readers)):
            for column in columns_:
                mean = {s: np.mean([y[n] for n in neighbours.get(s, ())] or [y[s]]) for s in column}
                column.sort(key=lambda s: -mean[s])  # stable: ties keep their order
                place(column)
    return {s: (float(layer[s]), y[s]) for s in y}


class _Layout:
    """Labels placed one by one in display space, each where it overlaps nothing placed.

    Boxes are the rendered extents of the text plus its card; nodes count as their
    bounding squares, so no label hides a node.
    """

    #: Positions tried along an edge, as fractions from tail to head: middle first.
    ALONG = (0.5, 0.4, 0.6, 0.3, 0.7, 0.45, 0.55, 0.35, 0.65, 0.25, 0.75, 0.2, 0.8)
    GAP = 2.0  # pixels kept free around each box
    KEY_LINES = 12  # a longer key would only repeat an unreadable drawing

    def __init__(self, ax, node_size: int):
        self.ax = ax
        self.px = ax.figure.dpi / 72  # pixels per point
        self.radius = np.sqrt(node_size) / 2  # marker radius, points
        self.boxes = np.empty((0, 4))  # rows x0, y0, x1, y1 in pixels

    def add_disc(self, xy) -> None:
        x, y = self.ax.transData.transform(xy)
        r = self.radius * self.px
        self.add_box(np.array([x - r, y - r, x + r, y + r]))

    def add_box(self, box) -> None:
        self.boxes = np.vstack([self.boxes, box])

    def add(self, t) -> None:
        self.add_box(self.extent(t))

    def extent(self, t) -> np.ndarray:
        """The text's rendered extent, grown by its card's padding, as x0, y0, x1, y1."""
        box = t.get_window_extent(_renderer(self.ax.figure))
        patch = t.get_bbox_patch()
        pad = self.GAP
        if patch is not None:
            pad += patch.get_boxstyle().pad * t.get_fontsize() * self.px
        return np.array([box.x0 - pad, box.y0 - pad, box.x1 + pad, box.y1 + pad])

    def free(self, box) -> bool:
        b = self.boxes
        return not np.any(
            (box[0] < b[:, 2]) & (b[:, 0] < box[2]) & (box[1] < b[:, 3]) & (b[:, 1] < box[3])
        )

    def card(self, xy, label: str, gid: str) -> None:
        """The value card under the node, or above it if something is in the way."""
        drop = self.radius + 4  # points, from the node's centre to the card
        card = {"boxstyle": "round,pad=0.2", "fc": "white", "ec": "#bbbbbb", "alpha": 0.9}
        t = self.ax.annotate(
            _plain(label),
            xy,
            xytext=(0, -drop),
            textcoords="offset points",
            ha="center",
            va="top",
            fontsize=7,
            bbox=card,
            gid=gid,
            zorder=4,
        )
        if not self.free(self.extent(t)):
            t.set_position((0, drop))
            t.set_va("bottom")
            if not self.free(self.extent(t)):  # neither side is clear: keep it below
                t.set_position((0, -drop))
                t.set_va("top")
        self.add(t)

    def edge_labels(self, paths: dict, labels: dict) -> None:
        """Each partial on its own edge, whose drawn curve is ``paths[e]`` (points in
        display pixels, tail to head): the first free position along it, preferring ones
        that cross no other edge (a label on a crossing reads as either edge's)."""
        key = []
        # every edge's curve as segments, rows x0, y0, x1, y1
        pieces = {e: np.hstack([c[:-1], c[1:]]) for e, c in paths.items()}
        inverse = self.ax.transData.inverted()

        def length(e):
            return float(np.sum(np.linalg.norm(np.diff(paths[e], axis=0), axis=1)))

        # Short edges have the fewest positions to offer: they choose first.
        for e in sorted(labels, key=length):
            curve = paths[e]
            x0, y0 = inverse.transform(curve[0])
            t = self.ax.text(
                x0,
                y0,
                _plain(labels[e]),
                fontsize=7,
                ha="center",
                va="center",
                zorder=3,
                gid=f"edge {e[0]} -> {e[1]}",
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.9},
            )
            # The box at the tail, moved along the edge: the text's size does not change.
            at_tail = self.extent(t)
            others = [pieces[f] for f in pieces if f != e]
            others = np.vstack(others) if others else np.empty((0, 4))
            spot = None
            for crossings_allowed in (False, True):
                for s in self.ALONG:
                    point = curve[round(s * (len(curve) - 1))]
                    box = at_tail + np.tile(point - curve[0], 2)
                    if self.free(box) and (crossings_allowed or not _crosses(others, box).any()):
                        spot = point
                        break
                if spot is not None:
                    break
            if spot is None:
                t.remove()
                key.append(f"{e[0]} → {e[1]}: {labels[e]}")
            else:
                t.set_position(inverse.transform(spot))
                self.add(t)
        if key:
            self.key(sorted(key))

    def key(self, lines: list) -> None:
        """The partials that fit on no edge, listed under everything else."""
        shown = lines[: self.KEY_LINES]
        if len(lines) > len(shown):
            shown.append(f"... and {len(lines) - len(shown)} more (g.to_dot(sol) has them all)")
        bottom = self.boxes[:, 1].min() - 4 * self.px
        _, y = self.ax.transAxes.inverted().transform((0, bottom))
        t = self.ax.text(
            0.0,
            y,
            _plain("partials that did not fit on their edges:\n" + "\n".join(shown)),
            transform=self.ax.transAxes,
            fontsize=7,
            ha="left",
            va="top",
            gid="edge key",
        )
        self.add(t)


def _crosses(segments: np.ndarray, box) -> np.ndarray:
    """Which segments (rows x0, y0, x1, y1) pass through the open ``box`` (Liang-Barsky)."""
    p, d = segments[:, :2], segments[:, 2:] - segments[:, :2]
    lo, hi = np.asarray(box[:2]), np.asarray(box[2:])
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (lo - p) / d, (hi - p) / d
    # A segment parallel to an axis crosses only if it lies strictly between the sides.
    inside = (p > lo) & (p < hi)
    t_in = np.where(d == 0, np.where(inside, -np.inf, np.inf), np.minimum(t1, t2)).max(axis=1)
    t_out = np.where(d == 0, np.where(inside, np.inf, -np.inf), np.maximum(t1, t2)).min(axis=1)
    return (t_in < t_out) & (t_out > 0) & (t_in < 1)


def _renderer(fig):
    canvas = fig.canvas
    return canvas.get_renderer() if hasattr(canvas, "get_renderer") else None


def _plain(label: str) -> str:
    """``label`` with any ``$`` escaped, so matplotlib shows it rather than typesetting it."""
    return label.replace("$", r"\$")


def to_dot(graph, solution=None) -> str:
    """The graph as Graphviz DOT text, laid out left to right."""
    graph.require_no_recurrence("g.to_dot")

    def quote(s) -> str:
        return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'

    shapes = {"input": "ellipse", "constant": "box", "defined": "box", "output": "doublecircle"}
    lines = ["digraph adjoint {", "  rankdir=LR;", "  node [fontname=Helvetica, style=filled];"]
    for s in graph.inputs + graph.constants + graph.defined:
        kind = _kind(graph, s)
        label = _label(graph, s, solution).replace("\n", "\\n")
        if graph.node(s).kind == "defined" and solution is None:
            rule = (
                f"{text(graph.residual(s))} = 0"
                if graph.is_implicit(s)
                else f"= {text(graph.expr(s))}"
            )
            label = f"{label}\\n{rule}"
        mark = ""
        if solution is not None and s in solution.undefined:
            why = quote(solution.undefined[s])
            mark = f', style="filled,dashed", color={quote(_UNDEFINED)}, penwidth=2, tooltip={why}'
        lines.append(
            f"  {quote(s)} [label={quote(label).replace(chr(92) * 2 + 'n', chr(92) + 'n')}, "
            f"shape={shapes[kind]}, fillcolor={quote(_COLOURS[kind])}{mark}];"
        )
    partials = _edge_labels(graph)
    for z in graph.defined:
        for r in graph.node(z).reads:
            label = partials.get((r, z))
            attr = f" [label={quote(label)}]" if label else " [style=dashed]"
            lines.append(f"  {quote(r)} -> {quote(z)}{attr};")
    lines.append("}")
    return "\n".join(lines)
