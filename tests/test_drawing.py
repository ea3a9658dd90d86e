"""Drawings: every label readable, measured on the rendered figure.

The boxes are matplotlib's own extents of the drawn text (and of the card around it),
taken after a full draw with the Agg renderer, not the positions the layout code chose.
"""

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from strategies import dags

import adjoint
from adjoint.examples import fan_out, lecture_dag, two_layer_net, warm_up
from adjoint.teaching.drawing import _edge_labels

ROOT = Path(__file__).resolve().parent.parent
LECTURE = {
    "from_expr": lambda: (
        adjoint.Graph.from_expr("sin(x*y) + x*y + exp(x)*y"),
        {"x": 1.5, "y": -2.0},
    ),
    # edges lined up with a node in between (issue 20): z1 -> z3 past z2, z1 -> z5
    "lined_up": lambda: (adjoint.Graph.from_expr("sin(x*y) + x*y"), {"x": 1.5, "y": -2.0}),
    "fan_out_past": lambda: (
        adjoint.Graph.from_expr("exp(x)*sin(y) + x*y"),
        {"x": 0.5, "y": 1.0},
    ),
    "warm_up": warm_up,
    "lecture_dag": lecture_dag,
    "fan_out": fan_out,
    "two_layer_net": two_layer_net,
}


def _point(g, point):
    return {s: point.get(str(s), point.get(s)) for s in g.inputs + g.constants}


def _boxes(ax):
    """``[(text object, display box)]`` of every visible label, card included."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = []
    for t in ax.texts:
        if not t.get_visible() or not t.get_text():
            continue
        box = t.get_window_extent(renderer)
        patch = t.get_bbox_patch()
        if patch is not None:
            box = type(box).union([box, patch.get_window_extent(renderer)])
        boxes.append((t, box))
    return boxes


def _node_discs(ax):
    """``[(centre, radius)]`` of the node markers, in display pixels."""
    nodes = ax.collections[-1]  # networkx draws the nodes after the edges
    centres = nodes.get_offset_transform().transform(nodes.get_offsets())
    radii = np.sqrt(nodes.get_sizes()) / 2 * ax.figure.dpi / 72
    return list(zip(centres, np.broadcast_to(radii, len(centres))))


def _disc_hits_box(centre, radius, box) -> bool:
    nearest = np.clip(centre, [box.x0, box.y0], [box.x1, box.y1])
    return np.hypot(*(nearest - centre)) < radius - 0.5


def _segment_hits_box(p, q, box) -> bool:
    """Whether the segment p-q passes through ``box`` (sampled finely)."""
    ts = np.linspace(0.0, 1.0, 400)[:, None]
    xy = p + ts * (q - p)
    return _points_hit_box(xy, box)


def _points_hit_box(xy, box) -> bool:
    inside = (xy[:, 0] > box.x0) & (xy[:, 0] < box.x1) & (xy[:, 1] > box.y0) & (xy[:, 1] < box.y1)
    return bool(inside.any())


def _arrows(ax) -> dict:
    """``{(tail, head): points of the drawn edge in display pixels}``, from the rendered
    arrows (their paths, curves flattened finely)."""
    ax.figure.canvas.draw()
    out = {}
    for patch in ax.patches:
        gid = patch.get_gid() or ""
        if gid.startswith("arrow "):
            j, i = gid[len("arrow ") :].split(" -> ")
            # the drawn arrow (its curves, then its head), in data coordinates; a point
            # about every pixel along each Bezier piece, so a thin crossing is not missed
            dense = []
            for bezier, _ in patch.get_path().iter_bezier():
                ends = ax.transData.transform(bezier.control_points[[0, -1]])
                size = np.hypot(*(ends[1] - ends[0]))
                for t in np.linspace(0, 1, 2 + 2 * int(size)):
                    dense.append(bezier(t))
            out[(j, i)] = ax.transData.transform(np.array(dense))
    return out


def _check_readable(g, solution):
    ax = g.draw(solution)
    try:
        boxes = _boxes(ax)
        collisions = [
            (a.get_text(), b.get_text())
            for k, (a, box_a) in enumerate(boxes)
            for b, box_b in boxes[k + 1 :]
            if box_a.overlaps(box_b)
        ]
        assert not collisions, collisions

        # Edge labels (gid "edge ...") sit on their own edge and cover no node marker.
        names = {t.get_gid(): t for t, _ in boxes if (t.get_gid() or "").startswith("node ")}
        centre = {
            gid[len("node ") :]: ax.transData.transform(t.get_position())
            for gid, t in names.items()
        }
        discs = _node_discs(ax)
        drawn = _arrows(ax)
        # No edge passes through a node it does not join (the arrow's head and tail
        # end at their own nodes' rims).
        for (j, i), points in drawn.items():
            for name, c in centre.items():
                if name in (j, i):
                    continue
                gap = np.min(np.linalg.norm(points - c, axis=1))
                assert gap > discs[0][1], (f"{j} -> {i} runs through {name}", gap)
        edges = {
            (str(j), str(i)): label
            for (j, i), label in _edge_labels(g).items()
            if j in g.nodes and i in g.nodes
        }
        shown = {}
        for t, box in boxes:
            gid = t.get_gid() or ""
            if gid.startswith("edge ") and gid != "edge key":
                j, i = gid[len("edge ") :].split(" -> ")
                shown[(j, i)] = t.get_text()
                assert _points_hit_box(drawn[(j, i)], box), (gid, t.get_text())
                hits = [c for c, r in discs if _disc_hits_box(c, r, box)]
                assert not hits, (gid, t.get_text())
        key = [t.get_text() for t, _ in boxes if t.get_gid() == "edge key"]
        # Every partial is on its edge, or (when it cannot fit) in the key under the graph,
        # which lists up to 12 and counts the rest.
        listed = key[0].splitlines()[1:] if key else []
        more = re.fullmatch(r"\.\.\. and (\d+) more .*", listed[-1]) if listed else None
        missing = [
            (j, i)
            for (j, i), label in edges.items()
            if shown.get((j, i)) != label and f"{j} → {i}: {label}" not in listed
        ]
        assert len(missing) == (int(more.group(1)) if more else 0), missing
        return ax, shown, key
    finally:
        plt.close(ax.figure)


@pytest.mark.parametrize("name", list(LECTURE))
@pytest.mark.parametrize("solved", [True, False])
def test_lecture_drawings_have_no_overlapping_labels(name, solved):
    g, point = LECTURE[name]()
    solution = g.solve(_point(g, point)) if solved else None
    _, shown, key = _check_readable(g, solution)
    assert not key  # the lecture's graphs have room for every partial on its edge
    assert shown


@settings(
    max_examples=6,
    derandomize=True,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # shrinking a drawing takes minutes
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(dags(max_nodes=10, min_nodes=10))
def test_random_drawings_have_no_overlapping_labels(g):
    _check_readable(g, g.solve({x: 0.5 for x in g.inputs}))


def test_draw_into_given_axes_returns_them():
    g, point = lecture_dag()
    fig, ax = plt.subplots(figsize=(6, 3))
    try:
        assert g.draw(g.solve(point), ax=ax) is ax
    finally:
        plt.close(fig)


def _make_figures():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_figures", ROOT / "docs/make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_figures_exist_are_small_and_the_script_makes_them(tmp_path):
    shown = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (ROOT / "README.md").read_text())
    assert shown == ["docs/drawing.png", "docs/derivation.png"]
    for name in shown:
        assert (ROOT / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (ROOT / name).stat().st_size < 200_000
    made = _make_figures().main(tmp_path)
    assert [p.name for p in made] == ["drawing.png", "derivation.png"]
    for p in made:
        height, width = plt.imread(p).shape[:2]
        assert height > 200 and width > 500 and p.stat().st_size < 200_000


def test_derivation_falls_back_to_text_where_mathtext_cannot_typeset():
    from adjoint.teaching.explain import Section

    pieces = _make_figures()._pieces
    good, bad = r"\frac{\partial z_2}{\partial x} = 1", r"\begin{pmatrix} a \end{pmatrix}"
    both = Section("s", ("dz2/dx = 1", "matrix a"), (good, bad))
    assert pieces(both) == [("math", good.replace(r"\frac", r"\dfrac")), ("text", "matrix a")]
    uneven = Section("s", ("line 1", "line 2", "line 3"), (bad,))
    assert pieces(uneven) == [("text", "line 1"), ("text", "line 2"), ("text", "line 3")]


def test_a_graph_with_implicit_blocks_draws_readably():
    """A block is one column, its nodes read each other on arcs; every partial (for an
    implicit reader, -dr_i/dz_j) is on its edge or in the key."""
    g = adjoint.Graph()
    x, a = g.input("x"), g.input("a")
    u, v = g.implicit(["u", "v"], ["u - a*cos(v) - x", "v - sin(u*a)/2"])
    y = g.implicit("y", "y**3 + y - u")
    g.define("f", u**2 * v + y)
    _, shown, _ = _check_readable(g, g.solve({x: 0.3, a: 0.7}))
    assert shown[("v", "u")] == "-a*sin(v)"  # -dr_u/dv
    assert shown[("u", "y")] == "1"
    dot = g.to_dot()
    assert '"y" [label="y\\n-u + y**3 + y = 0"' in dot
