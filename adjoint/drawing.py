"""Drawing the computation graph, the lecture's Figure 1: with matplotlib through
networkx, or as Graphviz DOT text. Nodes are laid out in layers from left to right
(a node's layer is its longest distance from an input); with a solution, each node
shows its value z and multiplier lambda, and each edge its local partial.
"""

from __future__ import annotations

import numpy as np

from .display import number, text
from .lagrangian import stationarity

__all__ = ["draw", "layers", "to_dot"]

_COLOURS = {"input": "#8ecae6", "constant": "#dddddd", "defined": "#ffd166", "output": "#ef476f"}


def layers(graph) -> dict:
    """``{node: layer}``: 0 for inputs and constants, else 1 + the deepest reader."""
    layer = {s: 0 for s in graph.inputs + graph.constants}
    for z in graph.defined:  # topological order
        layer[z] = 1 + max((layer[r] for r in graph.node(z).reads), default=0)
    return layer


def _label(graph, z, solution) -> str:
    lines = [str(z)]
    if solution is not None:
        lines.append(f"z = {_short(solution.values[z])}")
        if z in solution.adjoints:
            lines.append(f"λ = {_short(solution.adjoints[z])}")
    return "\n".join(lines)


def _short(value) -> str:
    if isinstance(value, np.ndarray) and value.ndim:
        return f"[{value.shape[0]}×{value.shape[1]}]"
    return number(value, 4)


def _edge_labels(graph) -> dict:
    """``{(j, i): text of df_i/dz_j}`` (for matrix nodes, the pullback of lambda_i)."""
    labels = {}
    for c in stationarity(graph).backward_conditions:
        for t in c.contributions:
            labels[(c.wrt, t.reader)] = t.label if len(t.label) <= 24 else t.label[:21] + "..."
    return labels


def _kind(graph, z) -> str:
    if z == graph.output:
        return "output"
    return graph.node(z).kind


def draw(graph, solution=None, ax=None, *, partials: bool = True, node_size: int = 900):
    """Draw ``graph`` with matplotlib; returns the Axes.

    With ``solution`` (from ``g.solve(...)``) nodes show their value and lambda;
    with ``partials`` the edges show the local partials df_i/dz_j.
    """
    import matplotlib.pyplot as plt
    import networkx as nx

    digraph = nx.DiGraph()
    layer = layers(graph)
    for s in graph.inputs + graph.constants + graph.defined:
        digraph.add_node(s, layer=layer[s])
    for z in graph.defined:
        digraph.add_edges_from((r, z) for r in graph.node(z).reads)
    pos = nx.multipartite_layout(digraph, subset_key="layer")
    if ax is None:
        width = 2.2 * (max(layer.values()) + 1) + 2
        height = 1.4 * max(np.bincount(list(layer.values()))) + 1
        _, ax = plt.subplots(figsize=(min(width, 24), min(height, 16)))
    nodes = list(digraph.nodes)
    nx.draw_networkx_edges(
        digraph, pos, ax=ax, arrows=True, arrowsize=14, node_size=node_size, edge_color="#555555"
    )
    nx.draw_networkx_nodes(
        digraph,
        pos,
        ax=ax,
        nodelist=nodes,
        node_size=node_size,
        node_color=[_COLOURS[_kind(graph, s)] for s in nodes],
        edgecolors="#333333",
    )
    nx.draw_networkx_labels(
        digraph, pos, ax=ax, font_size=9, font_weight="bold", labels={s: str(s) for s in nodes}
    )
    if solution is not None:  # values and multipliers under each node, on a white card
        ys = [y for _, y in pos.values()]
        drop = 0.09 * ((max(ys) - min(ys)) or 1.0)
        below = {s: (x, y - drop) for s, (x, y) in pos.items()}
        values = {s: _label(graph, s, solution).split("\n", 1)[1] for s in nodes}
        nx.draw_networkx_labels(
            digraph,
            below,
            ax=ax,
            font_size=7,
            labels=values,
            verticalalignment="top",
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "#bbbbbb", "alpha": 0.9},
        )
    if partials:
        labels = {e: lab for e, lab in _edge_labels(graph).items() if digraph.has_edge(*e)}
        nx.draw_networkx_edge_labels(
            digraph, pos, edge_labels=labels, ax=ax, font_size=7, label_pos=0.5, rotate=False
        )
    ax.margins(0.05, 0.18)  # room for the cards under the lowest nodes
    ax.set_title(f"computation graph of {graph.output} (inputs left, output right)")
    ax.set_axis_off()
    return ax


def to_dot(graph, solution=None) -> str:
    """The graph as Graphviz DOT text, laid out left to right."""

    def quote(s) -> str:
        return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'

    shapes = {"input": "ellipse", "constant": "box", "defined": "box", "output": "doublecircle"}
    lines = ["digraph adjoint {", "  rankdir=LR;", "  node [fontname=Helvetica, style=filled];"]
    for s in graph.inputs + graph.constants + graph.defined:
        kind = _kind(graph, s)
        label = _label(graph, s, solution).replace("\n", "\\n")
        if graph.node(s).kind == "defined":
            label = f"{label}\\n= {text(graph.expr(s))}" if solution is None else label
        lines.append(
            f"  {quote(s)} [label={quote(label).replace(chr(92) * 2 + 'n', chr(92) + 'n')}, "
            f"shape={shapes[kind]}, fillcolor={quote(_COLOURS[kind])}];"
        )
    partials = _edge_labels(graph)
    for z in graph.defined:
        for r in graph.node(z).reads:
            label = partials.get((r, z))
            attr = f" [label={quote(label)}]" if label else " [style=dashed]"
            lines.append(f"  {quote(r)} -> {quote(z)}{attr};")
    lines.append("}")
    return "\n".join(lines)
