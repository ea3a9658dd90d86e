"""The adjoint command: the derivation in a terminal, one clear line on a mistake."""

import json
import math
import subprocess
import sys

import pytest

from adjoint.cli import main
from adjoint.examples import EXAMPLES


def test_demo_runs_the_lecture_examples(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "Lagrangian" in out and "Step 2" in out
    assert out.count("Theorem 16.1") == len(EXAMPLES) and "FAIL" not in out
    assert "Lambda_W1 = X.T*Lambda_H" in out  # Claim 16.2, in the two-layer net


def test_explain_at_a_point(capsys):
    assert main(["explain", "sin(x*y) + x**2", "--at", "x=1.5,y=-2"]) == 0
    out = capsys.readouterr().out
    assert "lambda_x = lambda_z1 * d(x**2)/dx + lambda_z2 * d(x*y)/dx = 2*lambda_z1*x" in out
    assert "4.97998" in out  # 2x + y cos(xy) at (1.5, -2)


def test_explain_json(capsys):
    assert main(["explain", "x*exp(y)", "--at", "x=2,y=0", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["result"]["gradient"] == {"x": 1.0, "y": 2.0}
    assert data["result"]["stationarity"]["adjoint"][0]["rhs"] == "1"
    assert not math.isnan(data["result"]["output_value"])
    assert [s["title"] for s in data["sections"]][:2] == ["The problem (5)", "The Lagrangian (6)"]


@pytest.mark.parametrize("fmt, marker", [("markdown", "$$"), ("latex", r"\paragraph")])
def test_explain_formats(capsys, fmt, marker):
    assert main(["explain", "x*exp(y)", "--format", fmt]) == 0
    out = capsys.readouterr().out
    assert marker in out and r"\lambda_{x}" in out


def test_dot_and_compile(capsys):
    assert main(["dot", "x*exp(y)", "--at", "x=2,y=0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("digraph") and "rankdir=LR" in out and '"x" -> "z2"' in out
    assert main(["compile", "x*exp(y)"]) == 0
    assert "def f_and_gradient(x, y):" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, word",
    [
        (["explain", "__import__('os').system('echo hacked')"], "__import__"),
        (["explain", "x*y", "--at", "x=1"], "y"),
        (["explain", "x*y", "--at", "x=1,y"], "name=value"),
        (["explain", "x*y", "--at", "x=1,y=abc"], "abc"),
    ],
)
def test_mistakes_print_one_line_and_exit_2(capsys, argv, word):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("adjoint: error:") and err.count("\n") == 1
    assert word in err
    assert "Traceback" not in err


def test_python_dash_m_runs_without_a_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "adjoint", "explain", "x +* y"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "syntax" in proc.stderr


@pytest.mark.parametrize(
    "at, message",
    [
        ("x=1,y=abc", "the value of y must be a real number (such as 1.5, -2 or pi/4), got 'abc'"),
        ("x=1,y=1/0", "the value of y must be a real number (such as 1.5, -2 or pi/4), got '1/0'"),
        ("x=sqrt(-1),y=1", "the value of x must be a real number"),
        ("x=1e999**2,y=1", "the value of x must be a real number"),
        ("x=1, y=2, x=3", "x is given twice"),
        ("=1,y=2", "name=value"),
    ],
)
def test_values_at_the_point_must_be_real_numbers(capsys, at, message):
    assert main(["explain", "x*y", "--at", at]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_values_at_the_point_may_be_written_as_expressions(capsys):
    assert main(["explain", "x*y", "--at", "x=pi/4, y=-2", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["result"]["gradient"] == {"x": -2.0, "y": math.pi / 4}


def test_latex_document_is_a_whole_document(capsys):
    """--format latex gave a fragment that does not compile alone."""
    assert (
        main(["explain", "sin(x*y) + x**2", "--at", "x=1.5,y=-2", "--format", "latex-document"])
        == 0
    )
    out = capsys.readouterr().out.strip()
    assert out.startswith(r"\documentclass{article}") and out.endswith(r"\end{document}")
    assert r"\usepackage{amsmath" in out and out.count(r"\begin{document}") == 1
    assert main(["explain", "sin(x*y)", "--format", "latex"]) == 0
    assert r"\documentclass" not in capsys.readouterr().out  # the body, to paste


def test_the_notebooks_extra_brings_jupyter():
    from pathlib import Path

    import tomllib

    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    extra = project["project"]["optional-dependencies"]["notebooks"]
    assert any(d.startswith("jupyterlab") for d in extra)
    assert any(d.startswith("ipykernel") for d in extra)


def test_a_reader_that_stops_early_gets_no_traceback():
    """`adjoint demo | head` ended in a BrokenPipeError traceback."""
    with subprocess.Popen(
        [sys.executable, "-m", "adjoint", "demo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as reader:
        reader.stdout.close()  # as head does, here before the demo has written anything
        err = reader.stderr.read().decode()
        assert reader.wait(timeout=120) == 0
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_assign_writes_one_assignment_per_student_that_grade_reads_back(tmp_path, capsys):
    import adjoint

    assert main(["assign", "s1234567", "ada@uni.edu", "--dir", str(tmp_path), "--size", "5"]) == 0
    printed = capsys.readouterr().out
    assert "s1234567" in printed and "ada@uni.edu" in printed
    folder = tmp_path / "s1234567"
    key = json.loads((folder / "key.json").read_text())
    assert key == adjoint.assignment("s1234567", 5).answer_key  # the id is the seed
    assert "$" in (folder / "statement.tex").read_text()
    # the key, submitted, is graded right from the files, through the command line
    submission = tmp_path / "key-as-submission.json"
    submission.write_text(json.dumps(key))
    code = main(["grade", str(submission), "--graph", str(folder / "graph.txt"), "--seed", "1"])
    out = capsys.readouterr().out
    assert code == 0 and "right" in out, out
    # two ids that make the same folder are refused, and nothing is written
    assert main(["assign", "a/b", "a_b", "--dir", str(tmp_path / "clash")]) == 2
    assert "same folder" in capsys.readouterr().err
    assert not (tmp_path / "clash").exists()
    # a folder that cannot be made is exit code 3, no traceback
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["assign", "s1", "--dir", str(blocker / "sub")]) == 3
    assert "cannot make the folder" in capsys.readouterr().err
    assert main(["assign", "s1", "--dir", str(tmp_path), "--size", "99"]) == 2
    assert "size must be" in capsys.readouterr().err
