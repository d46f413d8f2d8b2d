"""medscore::Memory (C++) and its Numba mirror (medscore._numba.error_memory) hold the same
rules: the same answers, states and errors on random runs, options and bad inputs; and the
facade medscore.Memory keeps its keys in step with either."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import medscore
from medscore import _core

pytest.importorskip("numba")
from medscore._numba.error_memory import Memory as NumbaMemory  # noqa: E402

options_strategy = st.fixed_dictionaries({
    "keyed": st.booleans(),
    "store": st.sampled_from(list(_core.StoreRule.__members__)),
    "assign": st.sampled_from(list(_core.AssignRule.__members__)),
    "penalize_noise": st.booleans(),
    "target": st.sampled_from(list(_core.PenaltyTarget.__members__)),
    "max_age": st.sampled_from([-1, 0, 1, 3]),
    "capacity": st.sampled_from([-1, 3, 8]),
    "nan_rows": st.sampled_from(list(_core.NanRows.__members__)),
    "min_samples": st.sampled_from([1, 2]),
    "method": st.sampled_from(list(_core.SelectionMethod.__members__)),
    "normalize": st.booleans(),
})


def native_options(d):
    o = _core.MemoryOptions()
    enums = {"store": _core.StoreRule, "assign": _core.AssignRule, "target": _core.PenaltyTarget,
             "nan_rows": _core.NanRows, "method": _core.SelectionMethod}
    for name, value in d.items():
        setattr(o, name, enums[name].__members__[value] if name in enums else value)
    if o.target in (_core.PenaltyTarget.right, _core.PenaltyTarget.both):
        o.store = _core.StoreRule.all
    o.n_threads = 2
    return o


def assert_same_state(a, b):
    sa, sb = a.state(), b.state()
    assert sa["keys"].tolist() == sb["keys"].tolist()
    assert sa["last_step"] == sb["last_step"] and sa["dim"] == sb["dim"]
    assert sa["last_penalties"].tobytes() == sb["last_penalties"].tobytes()
    assert (sa["engine"] is None) == (sb["engine"] is None)
    if sa["engine"] is not None:
        for name, value in sa["engine"].items():
            other = sb["engine"][name]
            assert (value.tobytes() == np.asarray(other).tobytes()) if isinstance(value, np.ndarray) \
                else value == other, name


def random_step(rng, n_keys, dim, with_nan):
    n = int(rng.integers(1, 24))
    centres = rng.normal(size=(3, dim))
    points = centres[rng.integers(0, 3, n)] + 0.05 * rng.normal(size=(n, dim))
    keys = rng.integers(0, n_keys, n).astype(np.int64) * 7 - 20  # sparse, negative too
    correct = rng.random(n) < 0.4
    valid = None
    if with_nan and rng.random() < 0.5:
        points[rng.integers(0, n)] = np.nan
    if rng.random() < 0.3:
        valid = rng.random(n) < 0.8
        points[~valid] = np.inf  # rows without a fingerprint may hold anything
    return points, keys, correct, valid


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(options=options_strategy, seed=st.integers(0, 2**16), custom=st.booleans())
def test_cpp_and_numba_rules_agree(options, seed, custom):
    rng = np.random.default_rng(seed)
    native = native_options(options)
    penalty = (lambda sizes: np.sqrt(sizes.astype(np.float64))) if custom else None
    cpp, mirror = _core.Memory(native, penalty), NumbaMemory(native, penalty)
    step = 0
    for _ in range(8):
        points, keys, correct, valid = random_step(rng, n_keys=int(rng.integers(1, 90)), dim=3,
                                                   with_nan=options["nan_rows"] == "skip")
        step += int(rng.integers(0, 3))
        outcomes = []
        for memory in (cpp, mirror):
            try:
                outcomes.append(memory.penalize(points, keys, correct, valid, step))
            except ValueError as error:
                outcomes.append(str(error))
        if isinstance(outcomes[0], str):
            assert outcomes[0] == outcomes[1]
        else:
            for x, y in zip(*outcomes):
                assert x.dtype == y.dtype and x.tobytes() == y.tobytes()
        assert_same_state(cpp, mirror)
    # Each loads the other's state and goes on the same way.
    again = NumbaMemory.from_state(native, cpp.state(), penalty)
    assert_same_state(again, cpp)


def test_expired_keys_are_dropped_the_same_way():
    native = native_options({"keyed": True, "store": "wrong", "assign": "exact", "penalize_noise": False,
                             "target": "wrong", "max_age": 0, "capacity": -1, "nan_rows": "error",
                             "min_samples": 1, "method": "eom", "normalize": True})
    cpp, mirror = _core.Memory(native), NumbaMemory(native)
    rng = np.random.default_rng(1)
    for step in range(6):  # 100 fresh keys a step: the dead ones pass DEAD_KEYS_KEPT
        keys = np.arange(100, dtype=np.int64) + 100 * step
        points = rng.normal(size=(100, 4))
        for memory in (cpp, mirror):
            memory.penalize(points, keys, np.zeros(100, bool), None, step)
        assert_same_state(cpp, mirror)
    assert cpp.n_keys < 300


@pytest.mark.parametrize("rules", ["cpp", "numba"])
def test_bad_input_leaves_both_unchanged(rules):
    memory = _core.Memory(_core.MemoryOptions()) if rules == "cpp" else NumbaMemory(_core.MemoryOptions())
    rng = np.random.default_rng(0)
    memory.penalize(rng.normal(size=(6, 3)), np.arange(6, dtype=np.int64), np.zeros(6, bool), None, 4)
    before = memory.state()
    bad = rng.normal(size=(6, 3))
    bad[2, 1] = np.nan
    for points, step, message in [(bad, 5, "NaN or Inf in row 2"), (rng.normal(size=(6, 3)), 3, "before the memory's"),
                                  (rng.normal(size=(6, 4)), 5, "4 dimensions")]:
        with pytest.raises(ValueError, match=message):
            memory.penalize(points, np.arange(6, dtype=np.int64) + 50, np.zeros(6, bool), None, step)
        after = memory.state()
        assert after["keys"].tolist() == before["keys"].tolist() and after["last_step"] == 4
        assert after["engine"]["points"].tobytes() == before["engine"]["points"].tobytes()


@pytest.mark.parametrize("backend", ["cpp", "numba"])
def test_a_failing_penalty_keeps_the_stored_step_and_its_keys(backend):
    calls = []

    def penalty(sizes):
        calls.append(sizes)
        if len(calls) == 2:
            raise RuntimeError("user penalty failed")
        return np.ones(sizes.shape)

    memory = medscore.Memory(backend=backend, penalty=penalty, penalize_noise=True)
    rng = np.random.default_rng(0)
    memory.penalize(medscore.Batch(rng.normal(size=(4, 3)), ["a", "b", "a", "b"], [False] * 4))
    with pytest.raises(RuntimeError, match="user penalty failed"):
        memory.penalize(medscore.Batch(rng.normal(size=(4, 3)), ["c", "d", "c", "a"], [False] * 4))
    state = memory.state_dict()
    # The step is stored (the core calls the penalty last); its new keys are recorded.
    assert state["keys"] == ["a", "b", "c", "d"] and state["last_step"] == 1
    assert state["engine"]["points"].shape[0] == 8
    np.testing.assert_array_equal(state["last_penalties"], np.ones(4))  # the previous step's
    out = memory.penalize(medscore.Batch(rng.normal(size=(2, 3)), ["d", "e"], [False, False]))
    assert out.shape == (2,) and memory.state_dict()["keys"] == ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize("backend", ["cpp", "numba"])
def test_a_bad_penalty_value_is_refused(backend):
    memory = medscore.Memory(backend=backend, penalty=lambda sizes: -np.ones(sizes.shape), penalize_noise=True)
    with pytest.raises(ValueError, match="one finite value >= 0 per size"):
        memory.penalize(medscore.Batch(np.eye(3), [1, 2, 3], [False] * 3))
    memory = medscore.Memory(backend=backend, penalty=lambda sizes: np.ones(len(sizes) + 1), penalize_noise=True)
    with pytest.raises(ValueError, match="one finite value >= 0 per size"):
        memory.penalize(medscore.Batch(np.eye(3), [1, 2, 3], [False] * 3))


def test_options_come_from_the_core():
    """Defaults, the paper preset and the choices of medscore.Memory are the core's."""
    from medscore.memory import DEFAULTS, PRESETS

    core = _core.MemoryOptions()
    assert DEFAULTS["min_cluster_size"] == core.min_cluster_size and DEFAULTS["alpha"] == core.alpha
    assert DEFAULTS["store"] == core.store.name and DEFAULTS["max_age"] is None
    assert PRESETS["paper"]["store"] == "all" and PRESETS["paper"]["assign"] == "paper"
    assert PRESETS["paper"]["penalize_noise"] is True
    with pytest.raises(ValueError, match=r"target must be one of \['both', 'none', 'right', 'wrong'\]"):
        medscore.Memory(target="everyone")
    for name, enum in [("store", _core.StoreRule), ("target", _core.PenaltyTarget)]:
        assert set(enum.__members__) >= {DEFAULTS[name]}
