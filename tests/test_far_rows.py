"""Finite rows at the edges of float64 (issue 20, item 1): far rows, tiny rows, mixed scales.

A row whose squared distances overflow to inf is legal input for the batch HDBSCAN (it is
noise, with an infinite MST weight, as in ``hdbscan``). ``IncrementalHDBSCAN`` must give the
batch result for it after every update (it used to segfault in the C++ repair); a memory
that stores rows without normalising them refuses rows beyond ``1e150 / sqrt(D)``, and a
normalising memory refuses rows whose norm overflows or underflows, with a ``ValueError``
that names the row, and is then exactly as before the call.
"""
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medscore import Batch, HDBSCAN, IncrementalHDBSCAN, Memory
from medscore._backends import BACKENDS
from test_incremental import assert_equals_refit

#: Scales of rows: subnormal-producing, tiny, ordinary, float32-overflowing, and
#: float64-overflowing (squared distances beyond 1.8e308).
SCALES = (1e-300, 1e-160, 1e-20, 1.0, 1e20, 1e40, 1e100, 1e152, 1e160, 1e300)


def test_issue_reproducer_no_longer_crashes():
    # Run in a child: before the fix this killed the process with SIGSEGV.
    script = textwrap.dedent("""
        import numpy as np, medscore
        inc = medscore.IncrementalHDBSCAN(min_cluster_size=2)
        inc.insert([[0, 0], [1, 0], [0, 1]])
        inc.insert([[1e300, 0], [1, 1]])
        batch = medscore.HDBSCAN(min_cluster_size=2).fit([[0, 0], [1, 0], [0, 1], [1e300, 0], [1, 1]])
        assert np.array_equal(inc.labels_ < 0, batch.labels_ < 0)
        assert np.isinf(inc.minimum_spanning_tree_[:, 2]).sum() == 1
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-P", "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


def _rows(rng, n, dim, scales):
    """Blobs, some rows rescaled by one of ``scales``, some duplicated."""
    X = rng.normal(size=(n, dim)) + rng.integers(0, 3, size=(n, 1)) * 6.0
    scaled = rng.random(n) < 0.3
    X[scaled] *= rng.choice(scales, size=(int(scaled.sum()), 1))
    dup = rng.random(n) < 0.15
    if dup.any():
        X[dup] = X[rng.integers(0, n, size=int(dup.sum()))]
    return X


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), scales=st.lists(st.sampled_from(SCALES), min_size=1, max_size=3))
def test_incremental_with_extreme_rows_equals_a_refit(backend, seed, scales):
    rng = np.random.default_rng(seed)
    dim = int(rng.integers(1, 6))
    params = dict(min_cluster_size=int(rng.integers(2, 5)), min_samples=int(rng.integers(1, 4)))
    model = IncrementalHDBSCAN(backend=backend, knn="faiss" if backend == "numba" else "auto", **params)
    live = {}
    for _ in range(4):
        X = _rows(rng, int(rng.integers(1, 12)), dim, scales)
        for i, row in zip(model.insert(X).tolist(), X):
            live[i] = row
        assert_equals_refit(model, np.array([live[i] for i in model.ids_]), "cpp", params)
        if len(live) > 3 and rng.random() < 0.5:
            gone = rng.choice(sorted(live), size=int(rng.integers(1, len(live) // 2 + 1)), replace=False)
            model.remove(gone)
            for i in gone.tolist():
                del live[i]
            assert_equals_refit(model, np.array([live[i] for i in model.ids_]), "cpp", params)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_backends_agree_on_far_rows(backend):
    X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.2], [1e300, 0.0], [1.1, 1.3], [2e154, 0.0]])
    got = HDBSCAN(min_cluster_size=2, backend=backend).fit(X)
    want = HDBSCAN(min_cluster_size=2, backend="cpp").fit(X)
    np.testing.assert_array_equal(got.labels_, want.labels_)
    np.testing.assert_array_equal(got.minimum_spanning_tree_[:, 2], want.minimum_spanning_tree_[:, 2])
    assert got.labels_[3] == got.labels_[5] == -1
    assert np.isinf(got.minimum_spanning_tree_[:, 2]).sum() == 2


def _state_bits(memory):
    """The memory's whole state as bytes (arrays by their bits)."""
    def bits(value):
        if isinstance(value, dict):
            return {k: bits(v) for k, v in value.items()}
        if isinstance(value, np.ndarray):
            return (value.dtype.str, value.shape, value.tobytes())
        return repr(value)
    return bits(memory.state_dict())


MEMORY_BACKENDS = ("cpp", "numba")


@pytest.mark.parametrize("backend", MEMORY_BACKENDS)
@pytest.mark.parametrize("preset", [None, "paper"])
def test_memory_refuses_rows_without_a_unit_row(backend, preset):
    memory = Memory(preset=preset, backend=backend)
    rng = np.random.default_rng(0)
    memory.penalize(Batch(rng.normal(size=(6, 4)), keys=[0, 0, 0, 1, 1, 1], correct=[0] * 6))
    before = _state_bits(memory)
    for value, message in [(1e300, "row 2 has a Euclidean norm that overflows"),
                           (1e-170, "row 2 is all zeros \\(or its squares underflow\\)")]:
        X = rng.normal(size=(4, 4))
        X[2] = value
        with pytest.raises(ValueError, match=message):
            memory.penalize(Batch(X, keys=[0, 1, 0, 1], correct=[0] * 4))
        assert _state_bits(memory) == before


@pytest.mark.parametrize("backend", MEMORY_BACKENDS)
def test_unnormalised_memory_refuses_far_rows(backend):
    memory = Memory(normalize=False, backend=backend)
    rng = np.random.default_rng(1)
    memory.penalize(Batch(rng.normal(size=(6, 4)), keys=[0] * 6, correct=[0] * 6))
    before = _state_bits(memory)
    X = rng.normal(size=(3, 4))
    X[1, 2] = -2e150  # beyond 1e150 / sqrt(4)
    with pytest.raises(ValueError, match="row 1 has an entry of magnitude 2e\\+150"):
        memory.penalize(Batch(X, keys=[0] * 3, correct=[0] * 3))
    assert _state_bits(memory) == before
    X[1, 2] = -0.5e150  # the bound itself is accepted
    memory.penalize(Batch(X, keys=[0] * 3, correct=[0] * 3))
    assert memory.state_dict()["engine"]["points"].shape[0] == 9


VALUES = st.sampled_from([0.0, -0.0, 5e-324, -2.2e-308, 1e-300, 1e-160, 1e-20, 0.5, -3.0, 1e20, 1e100, 6e149,
                          -1e152, 1e200, 1e300, -1.7e308])


@pytest.mark.parametrize("backend", MEMORY_BACKENDS)
@settings(max_examples=40, deadline=None)
@given(data=st.data(), normalize=st.booleans(), paper=st.booleans(), dim=st.sampled_from([1, 2, 3, 17, 300]))
def test_penalize_with_extreme_values_succeeds_or_refuses_unchanged(backend, data, normalize, paper, dim):
    """Fuzz: rows mixing ordinary values with the extremes of float64 (subnormals, 1e+-300,
    duplicates) either give penalties (finite, >= 0) or a ValueError that leaves the memory
    exactly as it was; the memory keeps working either way."""
    memory = Memory(preset="paper" if paper else None, normalize=normalize, backend=backend)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    for step in range(3):
        n = data.draw(st.integers(1, 8))
        X = rng.normal(size=(n, dim))
        for _ in range(data.draw(st.integers(0, 4))):
            X[rng.integers(0, n), rng.integers(0, dim)] = data.draw(VALUES)
        if n > 1 and data.draw(st.booleans()):
            X[1] = X[0]  # a duplicate rollout
        keys = rng.integers(0, 3, size=n)
        correct = rng.random(n) < 0.3
        before = _state_bits(memory)
        try:
            penalties = memory.penalize(Batch(X, keys=keys, correct=correct))
        except ValueError:
            assert _state_bits(memory) == before
            continue
        assert penalties.shape == (n,) and np.isfinite(penalties).all() and (penalties >= 0).all()
    memory.penalize(Batch(rng.normal(size=(2, dim)), keys=[0, 1], correct=[False, False]))
    assert all(np.isfinite(v) for v in memory.metrics().values())
