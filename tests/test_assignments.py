"""Assignments per student, graph files, and the ``adjoint grade`` command."""

import json

import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st
from test_latex import check, latex_document

import adjoint
from adjoint.assignments import OPERATIONS, read_graph
from adjoint.cli import main


def _by_hand(g):
    """lambda_j = [j = n] + sum over readers of lambda_i * sympy's d f_i / d z_j."""
    return {
        j.name: sp.Integer(int(j == g.output))
        + sum((g.multiplier(i) * sp.diff(g.expr(i), j) for i in g.children(j)), sp.Integer(0))
        for j in g.nodes
    }


@given(st.integers(0, 10**9), st.integers(2, 8), st.integers(1, 3))
def test_assignments_have_fan_out_and_a_right_answer_key(seed, size, inputs):
    a = adjoint.assignment(seed, size=size, inputs=inputs)
    g = a.graph
    assert len(g.defined) == size and len(g.inputs) == inputs
    inner = g.defined if size >= 4 else g.nodes
    assert any(len(g.children(z)) > 1 for z in inner)  # fan-out, guaranteed
    assert all(g.children(z) for z in g.nodes if z != g.output)  # every node matters
    key = {k: sp.sympify(v, locals={s.name: s for s in g.nodes}) for k, v in a.answer_key.items()}
    assert set(key) == {z.name for z in g.nodes}
    assert a.grade(a.answer_key, points=3).ok
    # the key agrees with derivatives taken by sympy, independently of the package
    assert a.grade(_by_hand(g), points=3).ok


def test_the_same_seed_gives_the_same_assignment_and_seeds_differ():
    a, b = adjoint.assignment(3), adjoint.assignment(3)
    assert a.graph_text() == b.graph_text() and a.statement == b.statement
    texts = {adjoint.assignment(s).graph_text() for s in range(10)}
    assert len(texts) >= 8


def test_operations_can_be_chosen_and_bad_options_are_refused():
    a = adjoint.assignment(1, size=6, operations=["mul", "sin"])
    allowed = (sp.Mul, sp.sin, sp.Add)  # Add: the output gathers unread nodes
    assert all(isinstance(a.graph.expr(z), allowed) for z in a.graph.defined)
    for bad in [dict(size=1), dict(size=True), dict(inputs=9), dict(operations=["nope"])]:
        with pytest.raises(adjoint.AdjointError):
            adjoint.assignment(1, **bad)
    with pytest.raises(adjoint.AdjointError):
        adjoint.assignment(b"1")  # bytes: neither a number nor a student id
    assert set(OPERATIONS) >= {"mul", "add", "sin"}


def test_statements_render(katex):
    items = []
    for seed in range(6):
        items += latex_document(f"assignment {seed}", adjoint.assignment(seed, size=5).statement)
    check(katex, items)


def test_graph_files_round_trip_and_json_graphs():
    a = adjoint.assignment(11, size=5)
    g, weights = read_graph(a.graph_text())
    assert [(z, g.expr(z)) for z in g.defined] == [(z, a.graph.expr(z)) for z in a.graph.defined]
    assert weights == {}
    spec = {"inputs": ["x", "y"], "constraints": {"z2": "sin(z1) + x", "z1": "x*y"}}
    g, _ = read_graph(json.dumps({**spec, "weights": {"x": 2}}))
    assert [z.name for z in g.defined] == ["z1", "z2"] and g.output.name == "z2"


def test_matrix_graphs_have_graph_files_that_read_back():
    with pytest.raises(adjoint.AdjointError, match="not a declaration"):
        read_graph("inputs: W[3, 2]\nf = W\n")
    from adjoint.assignments import graph_text
    from adjoint.examples import two_layer_net

    g = two_layer_net()[0]
    again, _ = read_graph(graph_text(g))
    assert [str(z) for z in again.nodes] == [str(z) for z in g.nodes]
    assert repr(again.stationarity()) == repr(g.stationarity())


@pytest.mark.parametrize(
    "text, words",
    [
        ("z1 = x*y\n", "no inputs"),
        ("inputs: x\nz1 = x*q\n", "q"),
        ("inputs: x\nthis is prose\n", "line 2"),
        ("inputs: x\nz = x\nweights: z=lots\n", "line 3"),
        ('{"inputs": "x"}', "list of names"),
        ("{[", "JSON"),
        ("inputs: x\na = b\nb = a\n", "cycle"),
        ("inputs: x\n" + "z = x\n" * 40000, "limit"),
    ],
)
def test_bad_graph_files_are_refused_clearly(text, words):
    with pytest.raises(adjoint.AdjointError, match=words):
        read_graph(text)


# -- the command line ------------------------------------------------------------

GRAPH = "inputs: x, y\nz1 = x*y\nz2 = sin(z1) + x   # the lecture's DAG\nweights: x=2\n"
RIGHT = {"z2": 1, "z1": "lambda_z2*cos(z1)", "x": "lambda_z1*y + lambda_z2", "y": "lambda_z1*x"}


def _files(tmp_path, submission, graph=GRAPH):
    (tmp_path / "graph.txt").write_text(graph)
    sub = tmp_path / "answers.json"
    sub.write_text(submission if isinstance(submission, str) else json.dumps(submission))
    return [str(sub), "--graph", str(tmp_path / "graph.txt")]


def test_grade_exit_codes_and_text(tmp_path, capsys):
    assert main(["grade", *_files(tmp_path, RIGHT)]) == 0
    assert "4 of 4 multipliers right (5 of 5 points)" in capsys.readouterr().out
    wrong = {**RIGHT, "x": "lambda_z1*y", "typo": "1"}
    assert main(["grade", *_files(tmp_path, wrong)]) == 1
    out = capsys.readouterr().out
    assert "misses the contribution of z2" in out and "typo is not a node" in out


def test_grade_gradescope_results_file(tmp_path):
    results = tmp_path / "results.json"
    args = [*_files(tmp_path, {**RIGHT, "y": "lamda_z1*x"}), "--format", "gradescope"]
    assert main(["grade", *args, "--output", str(results), "--seed", "4"]) == 1
    data = json.loads(results.read_text())
    assert data["score"] == sum(t["score"] for t in data["tests"]) == 4
    assert [t["status"] for t in data["tests"]] == ["passed", "passed", "passed", "failed"]
    assert "column" in data["tests"][-1]["output"]


def test_grade_json(tmp_path, capsys):
    assert main(["grade", *_files(tmp_path, RIGHT), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] and data["points"] == data["max_points"] == 5


@pytest.mark.parametrize("submission", ["[1, 2]", "{not json", "[" * 100000, '"text"'])
def test_an_unreadable_submission_still_gets_results(tmp_path, capsys, submission):
    results = tmp_path / "results.json"
    args = [*_files(tmp_path, submission), "--format", "gradescope", "--output", str(results)]
    assert main(["grade", *args]) == 2
    assert "submission" in capsys.readouterr().err
    data = json.loads(results.read_text())
    assert data["score"] == 0 and "could not be read" in data["output"]


def test_a_bad_graph_file_exits_2(tmp_path, capsys):
    assert main(["grade", *_files(tmp_path, RIGHT, graph="z = \n")]) == 2
    assert "graph file" in capsys.readouterr().err
    assert main(["grade", str(tmp_path / "none.json"), "--graph", str(tmp_path / "none")]) == 2


def test_grade_an_assignment_from_its_files(tmp_path, capsys):
    a = adjoint.assignment(21, size=5)
    files = _files(tmp_path, a.answer_key, graph=a.graph_text())
    assert main(["grade", *files]) == 0


def test_a_weight_for_a_node_that_does_not_exist_is_refused_in_the_graph_file(tmp_path, capsys):
    """`weights: z_1=5` for a node z1 was silently ignored by `adjoint grade`, where the
    Python call refuses it."""
    graph = GRAPH.replace("weights: x=2", "weights: z_1=5")
    assert main(["grade", *_files(tmp_path, RIGHT, graph)]) == 2
    err = capsys.readouterr().err
    assert "graph file" in err and "z_1 is not a node" in err


@pytest.mark.parametrize("weight", [10**400, float("inf"), -1, True, "2"])
def test_a_weight_that_is_no_finite_number_is_refused(weight):
    g, _ = adjoint.examples.lecture_dag()
    with pytest.raises(adjoint.AdjointError, match="weight of"):
        adjoint.check_adjoints(g, {"z2": 1}, weights={"x": weight})


def test_an_unwritable_output_is_the_packages_error_with_its_own_exit_code(tmp_path, capsys):
    """`--output missing-dir/out.json` ended in a traceback with exit code 1, which also
    means "some answers wrong"."""
    missing = str(tmp_path / "missing-dir" / "out.json")
    for fmt in ("text", "gradescope"):
        code = main(["grade", *_files(tmp_path, RIGHT), "--format", fmt, "--output", missing])
        assert code == 3
        err = capsys.readouterr().err
        assert "cannot write to" in err and "missing-dir" in err
    g, _ = adjoint.examples.lecture_dag()
    with pytest.raises(adjoint.WriteError, match="cannot write"):
        adjoint.check_adjoints(g, RIGHT).to_gradescope(missing)


TWO_LAYER = """
inputs: W1(d, d), W2(d, 1)
constants: X(n, d), y(n, 1)
H = X*W1
A = tanh.(H)
R = A*W2 - y
f = Trace(R.T*R)
"""


def test_the_two_layer_net_is_graded_from_text_files(tmp_path, capsys):
    """Lambda_H, Lambda_W1, Lambda_W2 from text, through the command line and the
    Gradescope route: matrix inputs with shapes in the graph file, the answers in the
    syntax the package prints."""
    g, _ = read_graph(TWO_LAYER)
    assert g.node("W1").shape == (sp.Symbol("d", integer=True, positive=True),) * 2
    right = {
        "f": "1",
        "R": "2*lambda_f*R",
        "A": "Lambda_R*W2.T",
        "H": "tanh'.(H) .* Lambda_A",
        "W1": "X.T*Lambda_H",
        "W2": "A.T*Lambda_R",
    }
    assert main(["grade", *_files(tmp_path, right, TWO_LAYER)]) == 0
    assert "6 of 6 multipliers right" in capsys.readouterr().out
    wrong = {**right, "H": "tanh.(H) .* Lambda_A", "W1": "Lambda_H*X.T", "W2": "Lambda_R*A.T"}
    out = tmp_path / "results.json"
    args = [*_files(tmp_path, wrong, TWO_LAYER), "--format", "gradescope", "--output", str(out)]
    assert main(["grade", *args]) == 1
    tests = json.loads(out.read_text())["tests"]
    failed = [t["name"].split()[-1] for t in tests if t["status"] == "failed"]
    assert failed == ["H", "W1", "W2"]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("inputs: W(d, 0)\nf = Trace(W)\n", "positive"),
        ("inputs: W(d d)\nf = Trace(W)\n", "not a declaration"),
        ("inputs: W(d, -1)\nf = Trace(W)\n", "not a declaration"),
    ],
)
def test_bad_matrix_declarations_are_refused(text, words):
    with pytest.raises(adjoint.AdjointError, match=words):
        read_graph(text)


def test_an_assignment_from_a_student_id_is_the_same_everywhere():
    """Instructors have student ids, not integers; the text is hashed with SHA-256, so
    the same id gives the same graph in every process (Python's hash would not)."""
    import subprocess
    import sys

    from adjoint.assignments import assignment, graph_text

    here = graph_text(assignment("s1234567").graph)
    code = (
        "from adjoint.assignments import assignment, graph_text; "
        "print(graph_text(assignment('s1234567').graph), end='')"
    )
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert there.stdout == here
    assert graph_text(assignment("s7654321").graph) != here
    assert graph_text(assignment(" s1234567 ").graph) == here  # stray spaces from a sheet
    for bad in ("", "   ", 1.5, None):
        with pytest.raises(adjoint.AdjointError, match="seed"):
            assignment(bad)
