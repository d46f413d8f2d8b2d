"""The training benchmark's estimators (benchmarks/suites/training.py)."""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.suites.training import pass_at_k  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 9), data=st.data())
def test_pass_at_k_is_the_chance_that_k_of_n_samples_hold_a_correct_one(n, data):
    c = data.draw(st.integers(0, n))
    k = data.draw(st.integers(1, n))
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    expected = sum(any(samples[i] for i in s) for s in subsets) / len(subsets)
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)
