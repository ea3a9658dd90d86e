import os
from datetime import timedelta

import pytest
import rendering
from hypothesis import HealthCheck, Phase, settings

# sympy is slow per example; correctness, not speed, is under test here.
settings.register_profile(
    "default",
    deadline=None,
    max_examples=30,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=300)
# Under CI the draw is fixed: a submission's result does not depend on luck, no example
# database carries state between runs, a deadline stops a runaway example, and the
# "explain" phase (which traces a failing example line by line, for many minutes on
# Python 3.11) is left out.
settings.register_profile(
    "ci",
    parent=settings.get_profile("default"),
    derandomize=True,
    database=None,
    deadline=timedelta(seconds=60),
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    print_blob=True,
)
_ci = os.environ.get("CI", "").lower() not in ("", "0", "false")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if _ci else "default"))


@pytest.fixture(scope="session")
def katex():
    """KaTeX in one node process for the session; npm installs it on first use. Without
    node or npm the LaTeX tests are skipped, except under CI, where that fails."""
    try:
        prefix = rendering.install()
    except rendering.Unavailable as exc:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"CI is set, so the LaTeX output must be rendered: {exc}")
        pytest.skip(f"{exc}; the tests of LaTeX output are skipped")
    renderer = rendering.KaTeX(prefix)
    yield renderer
    renderer.close()
