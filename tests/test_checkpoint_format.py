"""Checkpoint format version 2 through medscore._checkpoint (the C++ implementation): bit-exact
round trips of random states, refusal of every damaged file, FIFOs, atomic writes, version 1."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import medscore
from medscore import _core
from medscore._checkpoint import FILE_VERSION, MAGIC, CheckpointError, read_state, write_state

from test_c_api import lib  # noqa: F401  (the C library, a fixture)

DATA = Path(__file__).parent / "data"
OPTIONS = dict(keyed=True, store="all", normalize=False, min_cluster_size=3, min_samples=1,
               cluster_selection_method="leaf", assign="paper", penalize_noise=True, alpha=0.1, beta=-0.0,
               target="both", max_age=None, capacity=7, nan_rows="skip", backend="numba", n_threads=0)

finite = st.floats(allow_nan=False, allow_infinity=False)
keys_strategy = st.lists(st.one_of(st.integers(-2**63, 2**63 - 1), st.integers(-2**300, 2**300), st.text(), st.binary()),
                         unique=True, max_size=12)


def _state(keys, penalties, points, n_edges, rng) -> dict:
    """A state dict of Memory.state_dict()'s layout; the engine's arrays are arbitrary values."""
    n_points, dim = points.shape
    engine = None if dim == 0 else {
        "dim": dim, "last_step": int(rng.integers(-1, 2**62)), "offsets": np.array([0, n_points], np.int64),
        "points": points, "steps": rng.integers(-2**63, 2**63 - 1, n_points, dtype=np.int64),
        "labels": rng.integers(-1, 5, n_points).astype(np.int64),
        "mst_u": rng.integers(0, 9, n_edges).astype(np.int64), "mst_v": rng.integers(0, 9, n_edges).astype(np.int64),
        "mst_weight": rng.normal(size=n_edges)}
    return {"format": "medscore.Memory", "version": 1, "options": dict(OPTIONS), "keys": list(keys),
            "last_step": int(rng.integers(-1, 2**62)), "dim": dim or None,
            "last_penalties": np.array(penalties, np.float64), "engine": engine}


def _assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for name, value in want.items():
        if isinstance(value, np.ndarray):
            assert got[name].dtype == value.dtype and got[name].shape == value.shape, name
            assert got[name].tobytes() == value.tobytes(), name  # bit for bit: -0.0 stays -0.0
        elif isinstance(value, dict):
            _assert_same(got[name], value)
        else:  # the repr tells types, -0.0 from 0.0 and b"" from ""
            assert repr(got[name]) == repr(value), name


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=keys_strategy, penalties=st.lists(finite, max_size=6), n_points=st.integers(0, 6),
       dim=st.integers(0, 3), n_edges=st.integers(0, 5), seed=st.integers(0, 2**32 - 1), value=finite)
def test_random_states_round_trip_bit_for_bit(tmp_path, keys, penalties, n_points, dim, n_edges, seed, value):
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(n_points, dim))
    points[::2] = -0.0
    if points.size:
        points.flat[-1] = value
    state = _state(keys, [-0.0, *penalties], points, n_edges, rng)
    path = tmp_path / "state.ckpt"
    write_state(path, state)
    _assert_same(read_state(path), state)


def test_memory_round_trip_with_every_kind_of_key(tmp_path):
    memory = medscore.Memory("paper", n_threads=1)
    keys = [0, -1, 2**63 - 1, -2**63, 2**64, -(10**40), "é-prompt", "", b"\x00\xff", b""]
    x = np.random.default_rng(0).normal(size=(len(keys) * 3, 4))
    memory.penalize(medscore.Batch(x, keys * 3, [False] * len(x)))
    memory.save(tmp_path / "m.ckpt")
    state, loaded = memory.state_dict(), medscore.Memory.load(tmp_path / "m.ckpt").state_dict()
    assert loaded["keys"] == keys and [type(k) for k in loaded["keys"]] == [type(k) for k in keys]
    _assert_same(loaded, state)


def test_any_file_name_the_file_system_allows(tmp_path):
    path = tmp_path / os.fsdecode(b"memory-\xff-\xc3\xa9.ckpt")  # not UTF-8: passed on as bytes
    medscore.Memory().save(path)
    assert medscore.Memory.load(path).metrics()["points"] == 0.0
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    path.write_bytes(b"junk")
    with pytest.raises(CheckpointError, match=r"memory-\\xff-é.ckpt: too short"):
        medscore.Memory.load(path)
    with pytest.raises(FileNotFoundError, match=r"memory-\\xff-é.ckpt"):
        medscore.Memory.load(tmp_path / os.fsdecode(b"memory-\xff-\xc3\xa9.ckpt2"))


def test_the_layout_and_the_checksum_are_zlibs_crc32(tmp_path):
    medscore.Memory().save(tmp_path / "m")
    blob = (tmp_path / "m").read_bytes()
    magic, version, header_len, data_len = struct.unpack_from("<16sIQQ", blob)
    assert (magic, version) == (MAGIC, FILE_VERSION) == (b"MEDSCORE-MEMORY\n", 2)
    assert len(blob) == 36 + header_len + data_len + 4
    assert struct.unpack("<I", blob[-4:])[0] == zlib.crc32(blob[:-4])
    assert b"{" not in blob and b"options.max_age" in blob  # typed records, no JSON


def _small_file(tmp_path) -> bytes:
    rng = np.random.default_rng(1)
    write_state(tmp_path / "small.ckpt", _state([1, "a", b"b"], [0.5], rng.normal(size=(2, 2)), 1, rng))
    return (tmp_path / "small.ckpt").read_bytes()


def test_every_single_byte_corruption_and_truncation_is_refused(tmp_path):
    blob = _small_file(tmp_path)
    for where in range(len(blob)):
        for mask in (0x01, 0x80, 0xFF):
            damaged = bytearray(blob)
            damaged[where] ^= mask
            with pytest.raises(CheckpointError):
                _core.checkpoint_deserialize(np.frombuffer(bytes(damaged), np.uint8), "damaged")
    for size in range(len(blob)):
        with pytest.raises(CheckpointError, match="too short|checksum"):
            _core.checkpoint_deserialize(np.frombuffer(blob[:size], np.uint8), "cut")
    for damaged in (blob[:-1], blob[:40], blob[:17], blob[:3] + b"X" + blob[4:], blob[:100] + bytes([blob[100] ^ 4]) + blob[101:]):
        (tmp_path / "bad.ckpt").write_bytes(damaged)
        with pytest.raises(CheckpointError, match="too short|checksum|magic"):
            read_state(tmp_path / "bad.ckpt")


def test_other_versions_and_foreign_headers_are_refused(tmp_path):
    blob = bytearray(_small_file(tmp_path))
    blob[16] = 3
    with pytest.raises(CheckpointError, match="version 3 is not supported"):
        _core.checkpoint_deserialize(np.frombuffer(bytes(blob), np.uint8), "v3")
    body = MAGIC + struct.pack("<IQQ", 2, 4, 0) + struct.pack("<I", 0)  # no records, valid CRC
    (tmp_path / "foreign.ckpt").write_bytes(body + struct.pack("<I", zlib.crc32(body)))
    with pytest.raises(CheckpointError, match="malformed header: the record state_version is missing"):
        read_state(tmp_path / "foreign.ckpt")


def test_fifo_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "fifo.ckpt"
    os.mkfifo(fifo)
    script = f"from medscore._checkpoint import read_state\ntry:\n    read_state({str(fifo)!r})\nexcept ValueError as e:\n    print(e)"
    done = subprocess.run([sys.executable, "-P", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "not a regular file" in done.stdout, done.stderr[-2000:]
    with pytest.raises(CheckpointError, match="not a regular file"):
        read_state(tmp_path)
    with pytest.raises(FileNotFoundError):
        read_state(tmp_path / "missing.ckpt")


def test_a_failed_write_leaves_the_old_file_and_nothing_else(tmp_path):
    path = tmp_path / "m.ckpt"
    old = _small_file(tmp_path)
    path.write_bytes(old)
    (tmp_path / "small.ckpt").unlink()
    state = _state([1], [], np.zeros((20000, 2)), 0, np.random.default_rng(2))
    with pytest.raises(TypeError, match="cannot save a key"):
        write_state(path, state | {"keys": [1.5]})
    with pytest.raises(TypeError, match="option alpha must be None, bool, int, float or str"):
        write_state(path, state | {"options": {"alpha": [1]}})
    with pytest.raises(FileNotFoundError):
        write_state(tmp_path / "no" / "dir.ckpt", state)
    # A write that fails half way (the file size limit, EFBIG) in a child process.
    np.save(tmp_path / "points.npy", state["engine"]["points"])
    script = textwrap.dedent(f"""
        import resource, signal, numpy as np
        from medscore._checkpoint import write_state
        from test_checkpoint_format import _state
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100000, 100000))
        state = _state([1], [], np.load({str(tmp_path / 'points.npy')!r}), 0, np.random.default_rng(2))
        try:
            write_state({str(path)!r}, state)
        except OSError as error:
            print("refused", error.errno)
    """)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert "refused 27" in done.stdout, done.stdout + done.stderr[-2000:]  # EFBIG
    (tmp_path / "points.npy").unlink()
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ckpt"]


def test_files_cross_between_c_and_python_with_equal_states(lib, tmp_path):
    from test_c_api import CMemory, _steps

    py = medscore.Memory("paper", n_threads=1, max_age=3)
    for x, keys, correct, step in _steps(seed=3, n_steps=4):
        py.penalize(dict(fingerprints=x, keys=keys, correct=correct, step=step))
    py.save(tmp_path / "py.ckpt")
    CMemory.load(lib, tmp_path / "py.ckpt").save(tmp_path / "c.ckpt")  # through the C API and back
    assert (tmp_path / "c.ckpt").read_bytes() == (tmp_path / "py.ckpt").read_bytes()
    _assert_same(medscore.Memory.load(tmp_path / "c.ckpt").state_dict(), py.state_dict())
    c = CMemory(lib, min_cluster_size=3)
    for x, keys, correct, step in _steps(seed=4, n_steps=3):
        c.penalize(x, keys, correct, step)
    c.save(tmp_path / "c2.ckpt")
    medscore.Memory.load(tmp_path / "c2.ckpt").save(tmp_path / "py2.ckpt")
    assert (tmp_path / "py2.ckpt").read_bytes() == (tmp_path / "c2.ckpt").read_bytes()
    assert read_state(tmp_path / "c2.ckpt")["options"]["min_cluster_size"] == 3


# -- version 1 files (written by medscore before version 2) -----------------------------------

def _expected_v1() -> dict:
    state = json.loads((DATA / "memory_v1.expected.json").read_text())
    decode = {"i": int, "s": str, "b": bytes.fromhex}
    state["keys"] = [decode[tag](value) for tag, value in state["keys"]]
    with np.load(DATA / "memory_v1.expected.npz") as arrays:
        state["last_penalties"] = arrays["last_penalties"]
        state["engine"].update({k.removeprefix("engine."): arrays[k] for k in arrays.files if k.startswith("engine.")})
    return state


def test_a_version_1_file_loads_and_is_saved_again_as_version_2(tmp_path):
    expected = _expected_v1()
    assert (DATA / "memory_v1.ckpt").read_bytes()[16:20] == struct.pack("<I", 1)
    _assert_same(read_state(DATA / "memory_v1.ckpt"), expected)
    memory = medscore.Memory.load(DATA / "memory_v1.ckpt")
    _assert_same(memory.state_dict(), expected)
    memory.save(tmp_path / "v2.ckpt")
    assert (tmp_path / "v2.ckpt").read_bytes()[16:20] == struct.pack("<I", 2)
    _assert_same(medscore.Memory.load(tmp_path / "v2.ckpt").state_dict(), expected)


def test_a_damaged_version_1_file_is_refused(tmp_path):
    blob = bytearray((DATA / "memory_v1.ckpt").read_bytes())
    blob[60] ^= 1
    (tmp_path / "bad.ckpt").write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="checksum"):
        medscore.Memory.load(tmp_path / "bad.ckpt")
