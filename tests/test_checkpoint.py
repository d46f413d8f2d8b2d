"""Memory checkpoints: exact resume, atomic writes, refusal of damaged files."""
from __future__ import annotations

import numpy as np
import pytest

import medscore
from medscore._checkpoint import CheckpointError
from meds_reference import simulated_run


def _batches(seed=0):
    return [medscore.Batch(X, k, c) for X, k, c in simulated_run(n_prompts=10, epochs=4, prompts_per_step=5, seed=seed)]


def _keys_variety(batch, i):
    keys = [f"prompt-{k}" if k % 3 == 0 else (bytes([k]) if k % 3 == 1 else int(k)) for k in batch.keys.tolist()]
    return medscore.Batch(batch.fingerprints, keys, batch.correct, step=2 * i)


@pytest.mark.parametrize("preset,options", [("paper", {}), (None, {"max_age": 3, "capacity": 40}),
                                            (None, {"min_samples": 2, "store": "all"})])
def test_save_stop_resume_gives_the_same_penalties(tmp_path, preset, options):
    batches = [_keys_variety(b, i) for i, b in enumerate(_batches())]
    straight = medscore.Memory(preset, **options)
    want = [straight.penalize(b) for b in batches]
    first = medscore.Memory(preset, **options)
    for b in batches[:3]:
        first.penalize(b)
    path = tmp_path / "memory.msm"
    first.save(path)
    before = first.state_dict()
    del first
    resumed = medscore.Memory.load(path)
    after = resumed.state_dict()
    assert after["keys"] == before["keys"] and after["last_step"] == before["last_step"]
    for name, arr in before["engine"].items():
        assert np.array_equal(after["engine"][name], arr)  # bit-exact round trip
    got = want[:3] + [resumed.penalize(b) for b in batches[3:]]
    for a, b in zip(want, got):
        assert np.array_equal(a, b)
    assert resumed.metrics() == straight.metrics()


def test_empty_memory_round_trip(tmp_path):
    medscore.Memory().save(tmp_path / "m")
    assert medscore.Memory.load(tmp_path / "m").metrics()["points"] == 0.0


def _saved(tmp_path):
    memory = medscore.Memory(preset="paper")
    for b in _batches()[:2]:
        memory.penalize(b)
    path = tmp_path / "m.msm"
    memory.save(path)
    return path


@pytest.mark.parametrize("cut", [0, 10, 30, 1000, -1])
def test_truncated_file_is_refused(tmp_path, cut):
    path = _saved(tmp_path)
    blob = path.read_bytes()
    path.write_bytes(blob[:cut] if cut >= 0 else blob[:-1])
    with pytest.raises(CheckpointError, match="too short|checksum|magic"):
        medscore.Memory.load(path)


@pytest.mark.parametrize("where", [0, 20, 100, 2000, -5])
def test_corrupted_file_is_refused(tmp_path, where):
    path = _saved(tmp_path)
    blob = bytearray(path.read_bytes())
    blob[where] ^= 0x40
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError):
        medscore.Memory.load(path)


def test_refused_load_leaves_the_memory_as_it_was(tmp_path):
    path = _saved(tmp_path)
    memory = medscore.Memory(preset="paper")
    memory.penalize(_batches(1)[0])
    before = memory.state_dict()
    bad = medscore.Memory(preset="paper").state_dict() | {"version": 99}
    with pytest.raises(ValueError, match="version"):
        memory.load_state_dict(bad)
    with pytest.raises(ValueError, match="options"):
        medscore.Memory().load_state_dict(medscore.Memory.load(path).state_dict())
    state = medscore.Memory.load(path).state_dict()
    state["engine"]["labels"] = state["engine"]["labels"] + 5
    with pytest.raises(ValueError):
        memory.load_state_dict(state)
    after = memory.state_dict()
    assert after["keys"] == before["keys"]
    for name, arr in before["engine"].items():
        assert np.array_equal(after["engine"][name], arr)


def test_save_is_atomic_and_leaves_no_temporary_file(tmp_path):
    path = _saved(tmp_path)
    old = path.read_bytes()
    memory = medscore.Memory.load(path)
    memory.penalize(_batches(2)[0])
    memory.save(path)
    assert path.read_bytes() != old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.msm"]
