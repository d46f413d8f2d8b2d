"""The incremental engines themselves: the C++ one and its Numba mirror hold the same state.

``tests/test_incremental.py`` checks each backend against batch refits; here the two engines
are compared with each other bit for bit after every update (neighbour lists, core distances,
MST weights, condensed tree, stable labels), the C++ engine's own contract is checked
(failed updates change nothing, pickles round-trip exactly, a damaged state is refused), and
the C++ backend is used with Numba unimportable.
"""
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import load_backend
from medscore import IncrementalHDBSCAN

FIELDS = ("ids", "points", "knn_index", "knn_dist", "core_distances", "labels", "probabilities",
          "condensed_tree", "next_id", "next_label", "size", "dim")


def engine_fields(engine):
    out = {name: np.asarray(getattr(engine, name)) for name in FIELDS}
    out["mst_weight"] = np.asarray(engine.mst)["weight"]
    return out


def assert_same_engines(a, b):
    fa, fb = engine_fields(a), engine_fields(b)
    for name in fa:
        np.testing.assert_array_equal(fa[name], fb[name], err_msg=name)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), capacity=st.sampled_from([None, 7, 40]),
       method=st.sampled_from(["eom", "leaf"]), min_samples=st.integers(1, 6))
def test_cpp_and_numba_engines_hold_identical_state(seed, capacity, method, min_samples):
    load_backend("numba")
    rng = np.random.default_rng(seed)
    dim = int(rng.integers(1, 12))
    centres = rng.normal(size=(3, dim)) * 5
    params = dict(min_cluster_size=int(rng.integers(2, 6)), min_samples=min_samples,
                  cluster_selection_method=method, capacity=capacity)
    cpp = IncrementalHDBSCAN(backend="cpp", **params)
    numba = IncrementalHDBSCAN(backend="numba", knn="exact", **params)
    for _ in range(7):
        size = int(rng.integers(1, max(2, len(cpp)) + 1))
        X = centres[rng.integers(0, 3, size)] + rng.normal(size=(size, dim))
        if rng.random() < 0.3:
            X = np.round(X)  # ties and duplicates
        np.testing.assert_array_equal(cpp.insert(X), numba.insert(X))
        assert_same_engines(cpp._engine, numba._engine)
        if len(cpp) > 2 and rng.random() < 0.4:
            gone = rng.choice(cpp.ids_, size=int(rng.integers(1, len(cpp) // 2 + 1)), replace=False)
            cpp.remove(gone)
            numba.remove(gone)
            assert_same_engines(cpp._engine, numba._engine)


def test_cpp_engine_refuses_faiss_search():
    load_backend("cpp")
    with pytest.raises(ValueError, match="knn='faiss' is a search of backend='numba'"):
        IncrementalHDBSCAN(knn="faiss").fit(np.zeros((4, 2)))


@pytest.fixture
def engine():
    core = load_backend("cpp")
    rng = np.random.default_rng(5)
    e = core.IncrementalHDBSCAN(4, 3, "eom", False, 0, 0)
    e.insert(rng.normal(size=(40, 3)))
    e.insert(rng.normal(size=(5, 3)) + 4)
    e.remove(np.array([3, 7, 41], np.int64))
    return e


@pytest.mark.parametrize("bad, match", [
    (np.full((2, 3), np.nan), "NaN or Inf"),
    (np.zeros((2, 4)), "columns"),
    (np.zeros((0, 3)), "non-empty"),
])
def test_a_refused_insert_changes_nothing(engine, bad, match):
    before = engine_fields(engine)
    with pytest.raises(ValueError, match=match):
        engine.insert(bad)
    after = engine_fields(engine)
    for name in before:
        np.testing.assert_array_equal(before[name], after[name], err_msg=name)


@pytest.mark.parametrize("ids, match", [([3], "unknown"), ([0, 0], "repeated"), ([10**12], "unknown")])
def test_a_refused_removal_changes_nothing(engine, ids, match):
    before = engine_fields(engine)
    with pytest.raises(ValueError, match=match):
        engine.remove(np.array(ids, np.int64))
    after = engine_fields(engine)
    for name in before:
        np.testing.assert_array_equal(before[name], after[name], err_msg=name)


def test_pickle_round_trips_the_engine_exactly(engine):
    copy = pickle.loads(pickle.dumps(engine))
    assert_same_engines(engine, copy)
    X = np.random.default_rng(9).normal(size=(6, 3))
    engine.insert(X)
    copy.insert(X)
    assert_same_engines(engine, copy)


def _restored(engine, state):
    cls = type(engine)
    fresh = cls.__new__(cls)
    fresh.__setstate__(tuple(state))
    return fresh


def test_a_damaged_state_is_refused(engine):
    state = list(engine.__getstate__())
    ids = np.asarray(state[4]).copy()
    ids[[0, 1]] = ids[[1, 0]]
    with pytest.raises(ValueError, match="ascend"):
        _restored(engine, state[:4] + [ids] + state[5:])
    with pytest.raises(ValueError, match="do not match"):
        _restored(engine, state[:9] + [np.asarray(state[9])[:-1]] + state[10:])
    assert_same_engines(engine, _restored(engine, state))


def test_cpp_backend_works_without_numba(tmp_path):
    # The README's incremental example, a batch fit and a memory, with numba unimportable.
    code = textwrap.dedent("""
        import sys
        sys.modules["numba"] = None
        import numpy as np
        import medscore
        rng = np.random.default_rng(0)
        X = rng.normal(size=(300, 8))
        inc = medscore.IncrementalHDBSCAN(min_cluster_size=5)
        ids = inc.insert(X[:200])
        inc.insert(X[200:])
        inc.remove(ids[:10])
        assert len(inc) == 290 and inc.labels_.shape == (290,)
        refit = medscore.HDBSCAN(min_cluster_size=5).fit(inc.points_)
        assert (refit.core_distances_ == inc.core_distances_).all()
        memory = medscore.Memory(preset="paper")
        memory.penalize({"fingerprints": X[:16], "keys": np.arange(16) % 2,
                         "correct": np.zeros(16, bool)})
        assert not any(m.startswith("numba") for m in sys.modules if sys.modules[m] is not None)
        print("ok")
    """)
    # -P and another folder: the medscore the tests import, not a checkout beside them.
    done = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


@pytest.mark.parametrize("dim", [3, 24])
def test_many_small_inserts_grow_the_kd_tree_and_stay_exact(dim):
    # The C++ engine keeps its kd-tree between repaired inserts (KdTree::insert), rebuilding
    # it only when a leaf fills up. Small batches after a large first one take that path;
    # rows far outside the first batch's boxes (and, in 24-d, its projection's norms) widen
    # the boxes and the rounding slack. Every step must still equal a refit.
    from test_incremental import assert_equals_refit

    load_backend("cpp")
    rng = np.random.default_rng(dim)
    centres = rng.normal(size=(4, dim)) * 6
    params = dict(min_cluster_size=4, min_samples=3)
    model = IncrementalHDBSCAN(**params)
    rows = [centres[rng.integers(0, 4, 300)] + rng.normal(size=(300, dim))]
    model.insert(rows[0])
    for step in range(40):
        batch = centres[rng.integers(0, 4, int(rng.integers(1, 6)))] + rng.normal(size=(1, dim))
        if step % 3 == 2:
            # A new blob outside every box, with larger norms than the first batch's: its rows
            # find each other only if the boxes grew to hold them.
            batch = centres[0] * 8 + rng.normal(size=(int(rng.integers(1, 4)), dim))
        if step % 5 == 1:
            batch = np.round(batch)  # ties
        model.insert(batch)
        rows.append(batch)
        assert_equals_refit(model, np.concatenate(rows), "cpp", params)
