"""The README's set-up commands are the ones CI runs (its examples are doctests)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_examples_are_doctests():
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert len(blocks) >= 2
    assert all(line.startswith((">>>", "...")) for b in blocks for line in b.splitlines()[:1])


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"pip install \"\.\[test\]\" && (.+)\n", readme).group(1).strip()
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1].strip() == command
