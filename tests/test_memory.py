"""medscore.Memory: API, policy options, bad input, staleness, threads, metrics."""
from __future__ import annotations

import importlib.util
import os
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import medscore
from meds_reference import earliest_member_numbering, simulated_run


ENGINES = ["cpp", "numba"]


@pytest.fixture(params=ENGINES)
def engine(request):
    """The Memory backend under test (numba is skipped where it does not import)."""
    if request.param == "numba":
        pytest.importorskip("numba")
    return request.param


def _memory(engine, *args, **kw):
    return medscore.Memory(*args, backend=engine, **kw)


def _run(memory, **kw):
    out = []
    for X, keys, correct in simulated_run(**{"n_prompts": 8, "epochs": 3, "prompts_per_step": 4, "seed": 0, **kw}):
        out.append(memory.penalize(medscore.Batch(X, keys, correct), return_info=True))
    return out


def _same_state(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, dict) or isinstance(y, dict):
            if (x is None) != (y is None) or (x is not None and not _same_state(x, y)):
                return False
        elif isinstance(x, np.ndarray):
            if not (isinstance(y, np.ndarray) and x.dtype == y.dtype and np.array_equal(x, y)):
                return False
        elif x != y:
            return False
    return True


def _batch(n=6, d=4, seed=0, keys=None, correct=None):
    rng = np.random.default_rng(seed)
    return medscore.Batch(rng.normal(size=(n, d)), list(range(n)) if keys is None else keys,
                          np.zeros(n, bool) if correct is None else correct)


def _refit_labels(points, steps, min_samples):
    core = medscore._core
    if len(points) < 2:
        return np.full(len(points), -1)
    labels = core.fit(points, 2, min_samples, "eom", False, 0.0)[4]
    return earliest_member_numbering(labels, points, steps)


@pytest.mark.parametrize("min_samples", [1, 2, 3])
def test_every_key_equals_a_batch_refit(min_samples, engine):
    memory = _memory(engine, min_samples=min_samples, store="all")
    _run(memory, epochs=4)
    s = memory.state_dict()["engine"]
    for g in range(len(s["offsets"]) - 1):
        lo, hi = s["offsets"][g], s["offsets"][g + 1]
        np.testing.assert_array_equal(s["labels"][lo:hi], _refit_labels(s["points"][lo:hi], s["steps"][lo:hi], min_samples))


def test_exact_assign_reports_the_new_cluster_and_exempts_noise(engine):
    memory = _memory(engine)
    for pen, info in _run(memory):
        labels, sizes = info["labels"], info["sizes"]
        assert np.all(pen[labels < 0] == 0)
        clustered = labels >= 0
        np.testing.assert_array_equal(pen[clustered], np.minimum(0.1 * np.log(sizes[clustered] + 1.0), 0.2))
        assert np.all(sizes[clustered] >= 2)


def test_store_wrong_never_penalises_or_stores_correct_rollouts(engine):
    memory = _memory(engine)
    X = np.random.default_rng(0).normal(size=(8, 5))
    pen, info = memory.penalize(medscore.Batch(X, [0] * 8, [True] * 8), return_info=True)
    assert np.all(pen == 0) and memory.metrics()["points"] == 0.0


def test_custom_penalty_callable(engine):
    memory = _memory(engine, penalty=lambda sizes: sizes * 0.5)
    for pen, info in _run(memory):
        np.testing.assert_array_equal(pen[info["labels"] >= 0], info["sizes"][info["labels"] >= 0] * 0.5)


def test_global_memory_ignores_keys(engine):
    a, b = _memory(engine, keyed=False), _memory(engine, keyed=False)
    X = np.random.default_rng(1).normal(size=(30, 6))
    pa = a.penalize(medscore.Batch(X, np.arange(30), np.zeros(30, bool)))
    pb = b.penalize(medscore.Batch(X, np.zeros(30, int), np.zeros(30, bool)))
    assert np.array_equal(pa, pb) and a.metrics()["groups"] == 1.0


@pytest.mark.parametrize("keys", [
    np.array([3, 1, 3, 1]), ["a", "b", "a", "b"], [b"a", b"b", b"a", b"b"], np.array(["x", "y", "x", "y"]),
])
def test_key_types(keys, engine):
    memory = _memory(engine, preset="paper")
    X = np.random.default_rng(2).normal(size=(4, 3))
    memory.penalize(medscore.Batch(X, keys, np.zeros(4, bool)))
    assert memory.metrics()["keys"] == 2.0
    assert all(type(k) in (int, str, bytes) for k in memory.state_dict()["keys"])


def test_int_and_str_keys_are_different_keys(engine):
    memory = _memory(engine)
    memory.penalize(medscore.Batch(np.eye(2), [1, "1"], [False, False]))
    assert memory.metrics()["keys"] == 2.0


def test_mapping_batch_and_step_counter(engine):
    memory = _memory(engine)
    memory.penalize({"fingerprints": np.eye(3), "keys": [0, 0, 0], "correct": [0, 0, 0]})
    memory.penalize({"fingerprints": np.eye(3), "keys": [0, 0, 0], "correct": [0, 0, 0], "step": 7})
    assert memory.metrics()["step"] == 7.0


def test_nan_rows_skip_and_valid(engine):
    X = np.random.default_rng(3).normal(size=(4, 3))
    X[1] = np.nan
    memory = _memory(engine, nan_rows="skip")
    pen = memory.penalize(medscore.Batch(X, [0] * 4, [False] * 4))
    assert pen[1] == 0 and memory.metrics()["points"] == 3.0
    other = _memory(engine)
    other.penalize(medscore.Batch(X, [0] * 4, [False] * 4, valid=[True, False, True, True]))
    assert other.metrics()["points"] == 3.0


BAD_BATCHES = [
    (dict(fingerprints=np.ones((3, 4)), keys=[0, 1], correct=[0, 0, 0]), ValueError, "keys"),
    (dict(fingerprints=np.ones((3, 4)), keys=[0, 1, 2], correct=[0, 0]), ValueError, "correct"),
    (dict(fingerprints=np.ones((3, 5)), keys=[0, 1, 2], correct=[0, 0, 0]), ValueError, "dimensions"),
    (dict(fingerprints=np.full((3, 4), np.nan), keys=[0, 1, 2], correct=[0, 0, 0]), ValueError, "NaN"),
    (dict(fingerprints=np.full((3, 4), np.inf), keys=[0, 1, 2], correct=[0, 0, 0]), ValueError, "NaN or Inf"),
    (dict(fingerprints=np.array([[1.0] * 4, [2.0] * 4, [np.nan, 0, 0, 0]]), keys=[0, 1, 2], correct=[0, 1, 0]),
     ValueError, "NaN or Inf in row 2"),
    (dict(fingerprints=np.zeros((0, 4)), keys=[], correct=[]), ValueError, "non-empty"),
    (dict(fingerprints=np.zeros((2, 4)), keys=[0, 1], correct=[0, 0]), ValueError, "all zeros"),
    (dict(fingerprints=np.ones((2, 4)), keys=[0.5, 1.5], correct=[0, 0]), TypeError, "keys"),
    (dict(fingerprints=np.ones((2, 4)), keys=[0, 1], correct=[0, 2]), ValueError, "correct"),
    (dict(fingerprints=np.ones((2, 4)), keys=[0, 1], correct=[0, 0], step=0), ValueError, "step"),
    (dict(fingerprints=np.ones((2, 4)), keys=[0, 1], correct=[0, 0], extra=1), ValueError, "unknown"),
]


@pytest.mark.parametrize("preset", ["paper", None])  # every row stored (the engine checks them), or not
@pytest.mark.parametrize("fields,error,match", BAD_BATCHES)
def test_bad_input_leaves_memory_unchanged(fields, error, match, preset, engine):
    memory = _memory(engine, preset=preset)
    _run(memory, epochs=1, dim=4)
    memory.penalize(medscore.Batch(np.random.default_rng(9).normal(size=(3, 4)), [0, 1, 2], [0, 0, 0], step=5))
    before = memory.state_dict()
    with pytest.raises(error, match=match):
        memory.penalize(fields)
    assert _same_state(before, memory.state_dict())


@pytest.mark.parametrize("options,error", [
    (dict(store="some"), ValueError), (dict(assign="vote"), ValueError), (dict(min_cluster_size=1), ValueError),
    (dict(capacity=0), ValueError), (dict(max_age=-1), ValueError), (dict(colour="red"), TypeError),
    (dict(penalty=3), TypeError), (dict(backend="gpu"), ValueError), (dict(keyed="yes"), TypeError),
])
def test_unknown_option_values_are_refused(options, error):
    with pytest.raises(error):
        medscore.Memory(**options)
    with pytest.raises(ValueError, match="preset"):
        medscore.Memory(preset="nope")


def test_max_age_and_capacity_keep_the_newest_points(engine):
    memory = _memory(engine, max_age=1, store="all")
    rng = np.random.default_rng(4)
    for step in range(5):
        memory.penalize(medscore.Batch(rng.normal(size=(6, 3)), [0] * 6, [False] * 6, step=step))
    s = memory.state_dict()["engine"]
    assert set(s["steps"].tolist()) == {3, 4}  # age <= 1 before step 4's insertion
    capped = _memory(engine, capacity=7)
    for step in range(4):
        capped.penalize(medscore.Batch(rng.normal(size=(5, 3)), [0] * 5, [False] * 5))
    s = capped.state_dict()["engine"]
    assert s["offsets"][-1] == 7 and s["steps"].tolist() == [2, 2, 3, 3, 3, 3, 3]
    np.testing.assert_array_equal(s["labels"], _refit_labels(s["points"], s["steps"], 1))


def test_torch_in_torch_out(engine):
    torch = pytest.importorskip("torch")
    memory = _memory(engine, preset="paper")
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        X = torch.randn(8, 5, generator=torch.Generator().manual_seed(0)).to(dtype)
        pen = memory.penalize(medscore.Batch(X, torch.tensor([0, 0, 1, 1, 0, 0, 1, 1]), torch.zeros(8, dtype=torch.bool)))
        assert isinstance(pen, torch.Tensor) and pen.dtype == torch.float32 and pen.device == X.device
        assert pen.shape == (8,) and bool((pen >= 0).all())


def test_concurrent_penalize_is_safe(engine):
    memory = _memory(engine, preset="paper")
    batches = list(simulated_run(n_prompts=8, epochs=2, prompts_per_step=2, seed=6))
    errors = []

    def work(chunk):
        try:
            for X, keys, correct in chunk:
                memory.penalize(medscore.Batch(X, keys, correct))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(batches[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert memory.metrics()["points"] == sum(len(b[0]) for b in batches)


def test_metrics_are_flat_floats(engine):
    memory = _memory(engine, preset="paper")
    assert memory.metrics()["points"] == 0.0
    pens = _run(memory)
    m = memory.metrics()
    assert all(isinstance(v, float) for v in m.values())
    assert m["penalty_max"] == pens[-1][0].max() and m["penalty_mean"] == pens[-1][0].mean()
    assert 0.0 < m["top1_eigenvalue_ratio"] <= 1.0 and 0.0 <= m["noise_fraction"] <= 1.0
    assert m["points"] == 8 * 16 * 3


@pytest.mark.parametrize("options", [
    dict(preset="paper"), dict(), dict(max_age=1, store="all"), dict(capacity=20, preset="paper"),
    dict(min_samples=3, store="all"), dict(cluster_selection_method="leaf", preset="paper"),
])
def test_numba_engine_equals_cpp_bit_for_bit(options):
    pytest.importorskip("numba")
    cpp, numba_memory = _memory("cpp", **options), _memory("numba", **options)
    for X, keys, correct in simulated_run(n_prompts=16, epochs=4, prompts_per_step=8, seed=3, duplicates=0.2):
        a, info_a = cpp.penalize(medscore.Batch(X, keys, correct), return_info=True)
        b, info_b = numba_memory.penalize(medscore.Batch(X, keys, correct), return_info=True)
        np.testing.assert_array_equal(info_a["labels"], info_b["labels"])
        np.testing.assert_array_equal(info_a["sizes"], info_b["sizes"])
        assert np.array_equal(a, b)
    sa, sb = cpp.state_dict()["engine"], numba_memory.state_dict()["engine"]
    # Keys under 256 points: both engines keep the one MST minimal under (weight, u, v), even
    # where mutual reachabilities tie (min_samples > 1).
    for key in sa:
        assert np.array_equal(sa[key], sb[key]) if isinstance(sa[key], np.ndarray) else sa[key] == sb[key], key


@pytest.mark.parametrize("dim", [1, 4, 7])
def test_engines_agree_on_every_distance_bit(dim):
    """The C++ engine sums squared distances two lanes per SIMD register; the stored MST
    weights must still equal the Numba engine's scalar ones bit for bit, tails included."""
    pytest.importorskip("numba")
    cpp, numba_memory = _memory("cpp", preset="paper"), _memory("numba", preset="paper")
    for X, keys, correct in simulated_run(n_prompts=6, epochs=3, prompts_per_step=6, seed=8, dim=dim):
        np.testing.assert_array_equal(cpp.penalize(medscore.Batch(X, keys, correct)),
                                      numba_memory.penalize(medscore.Batch(X, keys, correct)))
    sa, sb = cpp.state_dict()["engine"], numba_memory.state_dict()["engine"]
    assert sa["mst_weight"].size > 0 and sa["mst_weight"].tobytes() == sb["mst_weight"].tobytes()


def test_numba_engine_loads_a_cpp_state():
    pytest.importorskip("numba")
    cpp = _memory("cpp", preset="paper")
    run = list(simulated_run(n_prompts=8, epochs=3, prompts_per_step=8, seed=2))
    for X, keys, correct in run[:2]:
        cpp.penalize(medscore.Batch(X, keys, correct))
    numba_memory = _memory("numba", preset="paper")
    numba_memory.load_state_dict(cpp.state_dict())
    X, keys, correct = run[2]
    np.testing.assert_array_equal(cpp.penalize(medscore.Batch(X, keys, correct)),
                                  numba_memory.penalize(medscore.Batch(X, keys, correct)))


def test_paper_vote_of_a_big_chunk_into_a_big_key_equals_numba():
    """1,500 rows into a 3,000-point key: over 4M (new, prior) distances, so the C++ vote
    works row by row instead of keeping the block for the insert; the same answer."""
    pytest.importorskip("numba")
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(20, 14))
    options = dict(keyed=False, store="all", assign="paper", penalize_noise=True)
    cpp, numba_memory = _memory("cpp", **options), _memory("numba", **options)
    for m in (3000, 1500):
        X = centres[rng.integers(0, 20, m)] + 0.1 * rng.normal(size=(m, 14))
        batch = medscore.Batch(X, np.zeros(m, np.int64), np.zeros(m, bool))
        a, info_a = cpp.penalize(batch, return_info=True)
        b, info_b = numba_memory.penalize(batch, return_info=True)
        np.testing.assert_array_equal(info_a["labels"], info_b["labels"])
        np.testing.assert_array_equal(info_a["sizes"], info_b["sizes"])
        assert np.array_equal(a, b)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 300), log_span=st.integers(0, 62),
       dtype=st.sampled_from([np.int8, np.int32, np.int64, np.uint16, np.uint64]))
def test_integer_keys_are_numbered_like_np_unique(seed, n, log_span, dtype):
    # The native unique (a table over a dense range, else a sort) against np.unique.
    from medscore._batch import unique_keys

    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    span = min(2**log_span, int(info.max) - int(info.min))
    # Python integers throughout: uint64 bounds do not fit numpy's int64 draws.
    low = int(info.min) + int(rng.integers(0, 2**62, endpoint=True)) * (int(info.max) - span - int(info.min)) // 2**62
    keys = np.array([low + int(o) for o in rng.integers(0, span, size=n, endpoint=True)], dtype=dtype)
    unique, inverse = unique_keys(keys, n)[:2]
    expected, expected_inverse = np.unique(keys, return_inverse=True)
    assert unique == [int(k) for k in expected] and all(type(k) is int for k in unique)
    np.testing.assert_array_equal(inverse, expected_inverse.reshape(-1))


def _engine_of(backend, normalize, dim=5):
    from medscore._core import AssignRule, SelectionMethod

    if backend == "numba":  # the Numba engine is Python: it takes the enums' names
        from medscore._numba.memory import KeyedMemory
        method, assign = "eom", "paper"
    else:
        from medscore._core import KeyedMemory
        method, assign = SelectionMethod.eom, AssignRule.paper
    return KeyedMemory(dim=dim, min_cluster_size=2, min_samples=1, method=method, allow_single_cluster=False,
                       epsilon=0.0, assign=assign, vote_k=3, max_age=-1, capacity=-1, n_threads=2,
                       normalize=normalize)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), skipped=st.floats(0.0, 1.0))
def test_engine_stores_the_keyed_rows_normalised(seed, skipped):
    # The engine's own path (keys -1 = not stored, normalize=True) against the same rows
    # picked and normalised by NumPy beforehand: the same answers and state, bit for bit.
    rng = np.random.default_rng(seed)
    for backend in ENGINES:
        if backend == "numba" and importlib.util.find_spec("numba") is None:
            continue
        fused, plain = _engine_of(backend, True), _engine_of(backend, False)
        for step in range(3):
            n = int(rng.integers(1, 40))
            X = rng.normal(size=(n, 5)) * 10.0 ** rng.uniform(-3, 3)
            keys = rng.integers(0, 4, size=n)
            out = rng.random(n) < skipped
            keys[out] = -1
            X[out & (rng.random(n) < 0.5)] = np.nan  # a row that is not stored may hold anything
            labels, sizes = fused.penalize_step(X, keys, step)
            assert (labels[out] == -1).all() and (sizes[out] == 0).all()
            rows = np.flatnonzero(~out)
            if len(rows):
                stored = X[rows] / np.linalg.norm(X[rows], axis=1, keepdims=True)
                want_labels, want_sizes = plain.penalize_step(stored, keys[rows], step)
                np.testing.assert_array_equal(labels[rows], want_labels)
                np.testing.assert_array_equal(sizes[rows], want_sizes)
        a, b = fused.state(), plain.state()
        assert all(np.asarray(a[k]).tobytes() == np.asarray(b[k]).tobytes() for k in a if k != "last_step")


@pytest.mark.parametrize("backend", ENGINES)
def test_engine_refuses_a_zero_row_or_a_bad_key_and_stays_unchanged(backend):
    if backend == "numba":
        pytest.importorskip("numba")
    engine = _engine_of(backend, True, dim=2)
    engine.penalize_step(np.array([[1.0, 0.0], [0.0, 2.0]]), np.array([0, 1]), 0)
    before = engine.state()
    # Row 1 is not stored; of the stored zero rows 2 and 3 (two keys, two threads) the first is named.
    with pytest.raises(ValueError, match="fingerprint row 2 is all zeros"):
        engine.penalize_step(np.array([[1.0, 1.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]), np.array([0, -1, 1, 0]), 1)
    with pytest.raises(ValueError, match="key ids must be >= 0"):
        engine.penalize_step(np.array([[1.0, 1.0]]), np.array([-2]), 1)
    with pytest.raises(ValueError, match="not finite"):
        engine.penalize_step(np.array([[1.0, 1.0], [np.inf, 0.0]]), np.array([-1, 0]), 1)
    after = engine.state()
    assert all(np.asarray(before[k]).tobytes() == np.asarray(after[k]).tobytes() for k in before)


@settings(max_examples=60, deadline=None)
@given(dim=st.integers(1, 300), rows=st.integers(1, 40), seed=st.integers(0, 2**32 - 1),
       log_scale=st.floats(-30, 30))
def test_native_normalisation_has_numpys_bits(dim, rows, seed, log_scale):
    # The memory stores normalised fingerprints; the reference normalises with NumPy, so the
    # engine must store the same bits (NumPy's pairwise summation, blocks of 128 included).
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(rows, dim)) * 10.0 ** log_scale
    engine = _engine_of("cpp", True, dim=dim)
    engine.penalize_step(points, np.zeros(rows, dtype=np.int64), 0)  # one key: rows stored in order
    expected = points / np.linalg.norm(points, axis=1, keepdims=True)
    assert engine.state()["points"].tobytes() == expected.tobytes()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_keeps_using_the_memory():
    # Worker threads do not survive fork(): the child must get workers of its own (the
    # parent's pool may hold their lock and waiter state) and give the parent's answers.
    import time

    run = list(simulated_run(n_prompts=40, epochs=3, seed=2))
    memory = medscore.Memory(preset="paper", n_threads=2)
    for X, keys, correct in run[:-1]:
        memory.penalize(medscore.Batch(X, keys, correct))
    twin = medscore.Memory(preset="paper", n_threads=2)
    twin.load_state_dict(memory.state_dict())
    X, keys, correct = run[-1]
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one step, its penalties to the pipe, then out without cleanup
        try:
            os.write(write_end, memory.penalize(medscore.Batch(X, keys, correct)).tobytes())
        finally:
            os._exit(0)
    os.close(write_end)
    deadline = time.monotonic() + 60
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            pytest.fail("the forked child hung in penalize")
        time.sleep(0.01)
    with os.fdopen(read_end, "rb") as pipe:
        child = np.frombuffer(pipe.read(), dtype=np.float64)
    assert np.array_equal(child, twin.penalize(medscore.Batch(X, keys, correct)))
