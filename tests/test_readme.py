"""The README's examples run, and its set-up commands are the ones CI runs."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) >= 2
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    x = namespace["x"]
    assert abs(namespace["sol"].gradient[x] - namespace["gradient"][0]) < 1e-12  # compiled
    assert str(namespace["g"].stationarity().gradient[0].rhs) == "X.T*Lambda_H"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"pip install \"\.\[test\]\" && (.+)\n", readme).group(1).strip()
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1].strip() == command
