"""Shared fixtures: the ``backend`` fixture and the hypothesis profile of the suite.

Every backend-facing test takes ``backend`` (a module exporting the functions in the
"Backend interface" table of ``docs/SPEC.md``) and runs once per backend. A backend that
does not import here (not built yet, numba missing) is skipped, not failed.
"""
from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from medscore._backends import BACKENDS, get_backend

# Bounded and derandomised: the whole suite must stay within a few minutes on 2 cores and
# give the same examples on every run. MEDSCORE_HYPOTHESIS=thorough for a longer search.
_COMMON = dict(
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile("medscore", max_examples=40, **_COMMON)
settings.register_profile("thorough", max_examples=400, **_COMMON)
settings.load_profile(os.environ.get("MEDSCORE_HYPOTHESIS", "medscore"))


def pytest_configure(config):
    # Hypothesis inspects mypy_extensions while it reports a failing example; under
    # "warnings as errors" that deprecation turns the report into an INTERNALERROR.
    config.addinivalue_line(
        "filterwarnings", "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")


def load_backend(name: str):
    """The backend module ``name``, or ``pytest.skip`` when it does not exist here yet."""
    try:
        module = get_backend(name)
    except ImportError as exc:
        pytest.skip(f"backend {name!r} not importable: {exc}")
    if getattr(module, "fit", None) is None:  # e.g. an empty package directory
        pytest.skip(f"backend {name!r} does not export fit() yet")
    return module


# MEDSCORE_TEST_REFERENCE_BACKEND=1 adds the reference itself as a backend: a check of the
# suite (every test must pass on it), not of medscore.
_NAMES = BACKENDS + (("reference",) if os.environ.get("MEDSCORE_TEST_REFERENCE_BACKEND") else ())


def load_any(name: str):
    if name == "reference":
        import reference

        return reference.ReferenceBackend
    return load_backend(name)


@pytest.fixture(params=_NAMES)
def backend(request):
    """Each backend module in turn (``medscore._core``, ``medscore._numba``)."""
    return load_any(request.param)


def pytest_runtest_setup(item):
    # A test parametrized with backend "numba" is skipped, not failed, where numba is missing
    # (CI runs part of the suite in an environment without it).
    params = getattr(getattr(item, "callspec", None), "params", {})
    if "numba" in (params.get("backend"), params.get("backend_name"), params.get("engine")):
        load_backend("numba")
