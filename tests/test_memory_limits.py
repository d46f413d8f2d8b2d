"""Integer fields at the edges of int64 (issue 20, item 4): a short ValueError naming the
field and its range, never a pybind TypeError, and the memory unchanged."""
import numpy as np
import pytest

from medscore import Batch, HDBSCAN, IncrementalHDBSCAN, Memory
from test_far_rows import _state_bits

MAX_STEP = 2**63 - 2


def _batch(step=None, seed=0):
    rng = np.random.default_rng(seed)
    return Batch(rng.normal(size=(4, 3)), keys=[0, 0, 1, 1], correct=[0, 0, 0, 1], step=step)


@pytest.mark.parametrize("backend", ["cpp", "numba"])
def test_step_range_is_checked_at_the_boundary(backend):
    memory = Memory(backend=backend)
    memory.penalize(_batch(step=5))
    before = _state_bits(memory)
    for step in (2**63, 2**63 - 1, 2**64 + 3):
        with pytest.raises(ValueError, match=f"step must be <= {MAX_STEP}, got {step}$"):
            memory.penalize(_batch(step=step))
        assert _state_bits(memory) == before
    with pytest.raises(ValueError, match="step must be >= 0, got -1"):
        memory.penalize(_batch(step=-1))
    with pytest.raises(TypeError, match="step must be an integer"):
        memory.penalize(_batch(step=3.0))
    assert _state_bits(memory) == before


@pytest.mark.parametrize("backend", ["cpp", "numba"])
def test_the_largest_step_is_the_last_one(backend):
    memory = Memory(backend=backend)
    memory.penalize(_batch(step=MAX_STEP))
    before = _state_bits(memory)
    with pytest.raises(ValueError, match="no step can follow it"):
        memory.penalize(_batch())  # the last step + 1 would overflow int64
    assert _state_bits(memory) == before
    memory.penalize(_batch(step=MAX_STEP, seed=1))  # the same step again is fine
    assert memory.state_dict()["last_step"] == MAX_STEP
    assert memory.metrics()["points"] == 6


@pytest.mark.parametrize("name,value,message", [
    ("max_age", 2**63, "max_age must be <= 9223372036854775807"),
    ("capacity", 2**70, "capacity must be <= 9223372036854775807"),
    ("min_cluster_size", 2**63, "min_cluster_size must be <= 9223372036854775807"),
    ("min_samples", 2**64, "min_samples must be <= 9223372036854775807"),
    ("n_threads", 2**31, "n_threads must be <= 2147483647"),
])
def test_memory_options_beyond_the_native_integers(name, value, message):
    with pytest.raises(ValueError, match=message):
        Memory(**{name: value})


def test_estimators_refuse_integers_beyond_int64():
    X = np.random.default_rng(0).normal(size=(10, 2))
    # scikit-learn's wording; estimators check their parameters when fitted, not built.
    with pytest.raises(ValueError, match=r"'min_cluster_size' parameter of HDBSCAN must be an int "
                                         r"in the range \[2, 9223372036854775807\]"):
        HDBSCAN(min_cluster_size=2**63).fit(X)
    with pytest.raises(ValueError, match=r"'n_threads' parameter of HDBSCAN must be an int in "
                                         r"the range \[0, 2147483647\]"):
        HDBSCAN(n_threads=2**40).fit(X)
    with pytest.raises(ValueError, match=r"'capacity' parameter of IncrementalHDBSCAN must be an "
                                         r"int in the range \[1, 9223372036854775807\] or None"):
        IncrementalHDBSCAN(capacity=2**63).insert(X)
    # The largest values are accepted and behave as "no limit".
    model = IncrementalHDBSCAN(min_cluster_size=2, capacity=2**63 - 1)
    model.insert(X)
    assert len(model) == 10
    assert Memory(max_age=2**63 - 1, capacity=2**63 - 1).penalize(_batch()).shape == (4,)
