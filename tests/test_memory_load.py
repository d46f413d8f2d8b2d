"""Loading a memory trusts nothing (issue 20, item 5): a state or file whose structure is
wrong is refused with a ValueError (CheckpointError for files) and the memory is unchanged;
only regular files are read; ``load`` refuses options it would ignore."""
import copy
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medscore import Batch, Memory
from medscore._checkpoint import CheckpointError, _V1_PREFIX, MAGIC
from test_far_rows import _state_bits

BACKENDS = ("cpp", "numba")


def _filled(backend, preset="paper", seed=0):
    memory = Memory(preset=preset, backend=backend)
    rng = np.random.default_rng(seed)
    for step in range(3):
        X = np.repeat(rng.normal(size=(4, 6)), 2, axis=0) + rng.normal(scale=0.01, size=(8, 6))
        memory.penalize(Batch(X, keys=[0, 0, 0, 0, 1, 1, 1, 1], correct=[0, 0, 0, 1, 0, 0, 0, 0], step=step))
    return memory


def _refused(memory, state, match):
    before = _state_bits(memory)
    with pytest.raises(ValueError, match=match):
        memory.load_state_dict(state)
    assert _state_bits(memory) == before


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_mst_edge_written_twice_is_refused_at_load(backend):
    # The case: n - 1 edges, in range, but no spanning tree. It used to load and
    # fail on the next penalize ("insert_into_mst: the MST is not connected").
    memory = _filled(backend)
    state = copy.deepcopy(memory.state_dict())
    engine = state["engine"]
    assert engine["mst_u"].size >= 3
    for name in ("mst_u", "mst_v", "mst_weight"):
        engine[name][1] = engine[name][0]
    _refused(Memory(preset="paper", backend=backend), state, "written twice")
    _refused(memory, state, "written twice")


@pytest.mark.parametrize("backend", BACKENDS)
def test_weights_and_labels_must_be_those_of_the_points(backend):
    memory = _filled(backend)
    state = copy.deepcopy(memory.state_dict())
    state["engine"]["mst_weight"][0] = np.nextafter(state["engine"]["mst_weight"][0], 0.0)
    _refused(memory, state, "weight of its points")
    state = copy.deepcopy(memory.state_dict())
    state["engine"]["labels"][:] = -1
    _refused(memory, state, "not the clustering of the MST")


@pytest.mark.parametrize("field", ["keys", "last_step", "dim", "engine", "options"])
def test_a_state_missing_a_field_is_a_value_error(field):
    memory = _filled("cpp")
    state = dict(memory.state_dict())
    del state[field]
    _refused(memory, state, f"missing \\['{field}'\\]")


@pytest.mark.parametrize("field,value,match", [
    ("last_step", 2**63, "'last_step' must be in"),
    ("last_step", "3", "'last_step' must be an integer"),
    ("dim", 0, "'dim' must be in"),
    ("keys", "ab", "'keys' must be a list"),
    ("last_penalties", np.array([np.nan]), "last_penalties"),
])
def test_state_fields_out_of_range(field, value, match):
    memory = _filled("cpp")
    state = dict(memory.state_dict())
    state[field] = value
    _refused(memory, state, match)


def test_load_reads_only_regular_files(tmp_path):
    # A FIFO without a writer used to block forever: run it in a child with a timeout.
    fifo = tmp_path / "memory.ckpt"
    os.mkfifo(fifo)
    script = textwrap.dedent(f"""
        import medscore
        from medscore._checkpoint import CheckpointError
        try:
            medscore.Memory.load({str(fifo)!r})
        except CheckpointError as error:
            print(error)
    """)
    done = subprocess.run([sys.executable, "-P", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "not a regular file" in done.stdout
    with pytest.raises(CheckpointError, match="not a regular file"):
        Memory.load(tmp_path)


def test_load_refuses_a_preset_it_would_ignore(tmp_path):
    path = tmp_path / "m.ckpt"
    _filled("cpp", preset=None).save(path)
    with pytest.raises(ValueError, match="preset='paper' would be ignored"):
        Memory.load(path, preset="paper")
    assert Memory.load(path, n_threads=1).metrics()["points"] > 0


def test_a_checksummed_file_with_a_foreign_header_is_a_checkpoint_error(tmp_path):
    import hashlib
    for header in (b"[1, 2]", b'{"keys": 3}', b'{"arrays": [], "keys": [["x", "1"]], "engine": null}'):
        body = _V1_PREFIX.pack(MAGIC, 1, len(header)) + header  # version 1: JSON, read in Python
        path = tmp_path / "foreign.ckpt"
        path.write_bytes(body + hashlib.sha256(body).digest())
        with pytest.raises(CheckpointError):
            Memory.load(path)


MUTATIONS = ("swap_edge", "edge_index", "weight_ulp", "weight_extreme", "label", "step", "offset", "point",
             "far_point")
EXTREMES = (0.0, 5e-324, 1e-300, 1e300, 1.7e308, np.inf, np.nan, -1.0)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=30, deadline=None)
@given(mutation=st.sampled_from(MUTATIONS), seed=st.integers(0, 2**32 - 1))
def test_fuzzed_states_load_cleanly_or_are_refused(backend, mutation, seed):
    """A mutated state either loads (and the next step works) or is refused unchanged."""
    rng = np.random.default_rng(seed)
    memory = _filled(backend, seed=seed % 7)
    state = copy.deepcopy(memory.state_dict())
    e = state["engine"]
    i = int(rng.integers(0, e["mst_u"].size))
    if mutation == "swap_edge":
        j = int(rng.integers(0, e["mst_u"].size))
        e["mst_u"][i], e["mst_v"][i] = e["mst_u"][j], e["mst_v"][j]
    elif mutation == "edge_index":
        e["mst_v"][i] = int(rng.integers(-2, 20))
    elif mutation == "weight_ulp":
        e["mst_weight"][i] = np.nextafter(e["mst_weight"][i], np.inf)
    elif mutation == "weight_extreme":
        e["mst_weight"][i] = EXTREMES[int(rng.integers(0, len(EXTREMES)))]
    elif mutation == "far_point":
        e["points"][int(rng.integers(0, e["points"].shape[0])), 0] = EXTREMES[int(rng.integers(0, len(EXTREMES)))]
    elif mutation == "label":
        e["labels"][int(rng.integers(0, e["labels"].size))] = int(rng.integers(-2, 4))
    elif mutation == "step":
        e["steps"][int(rng.integers(0, e["steps"].size))] = int(rng.integers(-1, 5))
    elif mutation == "offset":
        e["offsets"][int(rng.integers(1, e["offsets"].size))] += int(rng.integers(-2, 3))
    else:
        e["points"][int(rng.integers(0, e["points"].shape[0])), 0] += float(rng.normal())
    fresh = Memory(preset="paper", backend=backend)
    try:
        fresh.load_state_dict(state)
    except ValueError:
        assert fresh.state_dict()["engine"] is None
        return
    X = rng.normal(size=(4, 6))
    fresh.penalize(Batch(X, keys=[0, 1, 0, 1], correct=[0, 0, 0, 0]))
