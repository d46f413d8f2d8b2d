"""The C API (medscore/medscore.h) through ctypes, against the Python ``medscore.Memory``.

The C library must give the Python memory's penalties bit for bit, and a checkpoint written
by either must be loaded by the other. The shared library is found in the installed wheel
(``medscore/lib``), else in the dev build (``build/dev``), else ``$MEDSCORE_C_LIBRARY``;
without one these tests are skipped.
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np
import pytest

import medscore
from medscore.memory import Memory

OK, INVALID, IO, CORRUPT = 0, 1, 2, 3


class Options(ctypes.Structure):
    _fields_ = [("keyed", ctypes.c_int32), ("store_all", ctypes.c_int32), ("normalize", ctypes.c_int32),
                ("min_cluster_size", ctypes.c_int64), ("min_samples", ctypes.c_int64),
                ("selection", ctypes.c_int32), ("assign", ctypes.c_int32), ("penalize_noise", ctypes.c_int32),
                ("alpha", ctypes.c_double), ("beta", ctypes.c_double), ("max_age", ctypes.c_int64),
                ("capacity", ctypes.c_int64), ("nan_rows_skip", ctypes.c_int32), ("n_threads", ctypes.c_int32),
                ("target", ctypes.c_int32)]


class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int64) for name in ("keys", "groups", "points", "clusters", "noise", "last_step", "dim")]


def _library_path() -> Path | None:
    candidates = [os.environ.get("MEDSCORE_C_LIBRARY")]
    candidates += sorted(str(p) for p in (Path(medscore.get_include()).parent / "lib").glob("libmedscore.so*"))
    candidates.append(str(Path(__file__).resolve().parents[1] / "build" / "dev" / "libmedscore.so"))
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    return None


@pytest.fixture(scope="module")
def lib():
    try:
        import medscore._core  # noqa: F401  (the Python side of the comparison)
    except ModuleNotFoundError:
        pytest.skip("medscore._core is not built")
    path = _library_path()
    if path is None:
        pytest.skip("no libmedscore shared library (install the wheel or build build/dev)")
    lib = ctypes.CDLL(str(path))
    p, i64, u8 = ctypes.POINTER, ctypes.c_int64, ctypes.c_uint8
    handle = ctypes.c_void_p
    lib.medscore_last_error.restype = ctypes.c_char_p
    lib.medscore_memory_last_error.restype = ctypes.c_char_p
    lib.medscore_memory_last_error.argtypes = [handle]
    lib.medscore_memory_options_init.argtypes = [p(Options), ctypes.c_char_p]
    lib.medscore_memory_create.argtypes = [p(Options), p(handle)]
    lib.medscore_memory_free.argtypes = [handle]
    lib.medscore_memory_penalize.argtypes = [handle, p(ctypes.c_double), i64, i64, p(i64), p(u8), p(u8), i64,
                                             p(ctypes.c_double), p(i64), p(i64)]
    lib.medscore_memory_save.argtypes = [handle, ctypes.c_char_p]
    lib.medscore_memory_load.argtypes = [ctypes.c_char_p, ctypes.c_int32, p(handle)]
    lib.medscore_memory_get_info.argtypes = [handle, p(Info)]
    lib.medscore_memory_set_penalty.argtypes = [handle, PENALTY_FN, ctypes.c_void_p]
    return lib


PENALTY_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int64), ctypes.c_int64,
                              ctypes.POINTER(ctypes.c_double), ctypes.c_void_p)


class CMemory:
    """A tiny ctypes wrapper: just enough to drive the C API like medscore.Memory."""

    def __init__(self, lib, preset=None, handle=None, **fields):
        self.lib = lib
        self.handle = ctypes.c_void_p(handle)
        if handle is None:
            opts = Options()
            assert lib.medscore_memory_options_init(ctypes.byref(opts), preset and preset.encode()) == OK
            opts.n_threads = 1
            for name, value in fields.items():
                setattr(opts, name, value)
            assert lib.medscore_memory_create(ctypes.byref(opts), ctypes.byref(self.handle)) == OK

    @classmethod
    def load(cls, lib, path):
        handle = ctypes.c_void_p()
        status = lib.medscore_memory_load(str(path).encode(), 1, ctypes.byref(handle))
        if status != OK:
            raise ValueError(status, lib.medscore_last_error().decode())
        return cls(lib, handle=handle.value)

    def penalize(self, x, keys, correct, step=-1):
        x = np.ascontiguousarray(x, dtype=np.float64)
        keys = np.ascontiguousarray(keys, dtype=np.int64)
        correct = np.ascontiguousarray(correct, dtype=np.uint8)
        out = np.empty(len(x))
        labels, sizes = np.empty(len(x), np.int64), np.empty(len(x), np.int64)
        ptr = lambda a, t: a.ctypes.data_as(ctypes.POINTER(t))  # noqa: E731
        status = self.lib.medscore_memory_penalize(
            self.handle, ptr(x, ctypes.c_double), x.shape[0], x.shape[1], ptr(keys, ctypes.c_int64),
            ptr(correct, ctypes.c_uint8), None, step, ptr(out, ctypes.c_double), ptr(labels, ctypes.c_int64),
            ptr(sizes, ctypes.c_int64))
        if status != OK:
            raise ValueError(status, self.lib.medscore_memory_last_error(self.handle).decode())
        return out, labels, sizes

    def save(self, path):
        assert self.lib.medscore_memory_save(self.handle, str(path).encode()) == OK, self.error()

    def info(self) -> Info:
        info = Info()
        assert self.lib.medscore_memory_get_info(self.handle, ctypes.byref(info)) == OK
        return info

    def error(self) -> str:
        return self.lib.medscore_memory_last_error(self.handle).decode()

    def __del__(self):
        self.lib.medscore_memory_free(self.handle)


def _steps(seed: int, n_steps: int = 5, n: int = 24, dim: int = 11):
    """Fingerprints with repeated mistakes: a few directions per key plus small noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, dim))
    for step in range(n_steps):
        keys = rng.integers(-3, 4, size=n) * 1_000_003
        x = centres[rng.integers(0, 4, size=n)] + 0.05 * rng.normal(size=(n, dim))
        x *= rng.uniform(0.5, 3.0, size=(n, 1))
        yield x, keys, rng.random(n) < 0.3, step


@pytest.mark.parametrize("preset", [None, "paper"])
def test_penalties_equal_python_memory_bit_for_bit(lib, preset):
    py, c = Memory(preset, n_threads=1), CMemory(lib, preset)
    for x, keys, correct, step in _steps(seed=3):
        expected, info = py.penalize(dict(fingerprints=x, keys=keys, correct=correct, step=step), return_info=True)
        got, labels, sizes = c.penalize(x, keys, correct, step)
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(labels, info["labels"])
        np.testing.assert_array_equal(sizes, info["sizes"])
    assert expected.max() > 0  # the data does produce penalties
    assert c.info().points == py.metrics()["points"]


def test_a_penalty_callback_equals_python_penalty_callable(lib):
    """medscore_memory_set_penalty: the same sizes in, the same penalties out as Memory(penalty=...);
    a callback that fails makes the call fail, with the step stored, as in Python."""
    fail = [False]

    def formula(sizes):
        if fail[0]:
            raise RuntimeError("formula failed")
        return np.sqrt(sizes.astype(np.float64)) / 10

    @PENALTY_FN
    def callback(sizes, m, out, _):
        try:
            np.ctypeslib.as_array(out, shape=(m,))[:] = formula(np.ctypeslib.as_array(sizes, shape=(m,)))
        except RuntimeError:
            return 1
        return 0

    py, c = Memory(n_threads=1, penalty=formula, penalize_noise=True), CMemory(lib, penalize_noise=1)
    assert lib.medscore_memory_set_penalty(c.handle, callback, None) == OK
    for x, keys, correct, step in _steps(seed=4):
        expected = py.penalize(dict(fingerprints=x, keys=keys, correct=correct, step=step))
        np.testing.assert_array_equal(c.penalize(x, keys, correct, step)[0], expected)
    assert expected.max() > 0 and not np.isin(expected[expected > 0], [0.1, 0.2]).all()
    fail[0] = True
    points = c.info().points
    with pytest.raises(ValueError, match="penalty function returned an error"):
        c.penalize(x, keys, correct, step + 1)
    with pytest.raises(RuntimeError, match="formula failed"):
        py.penalize(dict(fingerprints=x, keys=keys, correct=correct, step=step + 1))
    assert c.info().points > points and c.info().last_step == step + 1  # the step is stored
    assert lib.medscore_memory_set_penalty(c.handle, PENALTY_FN(), None) == OK  # back to the default
    default = Memory(n_threads=1, penalize_noise=True)
    default.load_state_dict(py.state_dict())
    np.testing.assert_array_equal(c.penalize(x, keys, correct, step + 2)[0],
                                  default.penalize(dict(fingerprints=x, keys=keys, correct=correct, step=step + 2)))


@pytest.mark.parametrize("target", ["wrong", "right", "both", "none"])
def test_penalty_targets_equal_python_memory(lib, target):
    code = ["wrong", "right", "both", "none"].index(target)
    py, c = Memory(n_threads=1, store="all", target=target, max_age=1), CMemory(lib, store_all=1, target=code, max_age=1)
    hit_correct = hit_wrong = False
    for x, keys, correct, step in _steps(seed=5, n_steps=4):
        expected = py.penalize(dict(fingerprints=x, keys=keys, correct=correct, step=step))
        np.testing.assert_array_equal(c.penalize(x, keys, correct, step)[0], expected)
        hit_correct |= bool((expected[correct] > 0).any())
        hit_wrong |= bool((expected[~correct] > 0).any())
    assert hit_correct == (target in ("right", "both")) and hit_wrong == (target in ("wrong", "both"))


def test_expired_keys_are_dropped_alike_in_c_and_python(lib, tmp_path):
    """Fresh keys every step with max_age: both drop the same dead keys (issue 20, item 2),
    so their checkpoints stay byte-identical."""
    rng = np.random.default_rng(0)
    py, c = Memory(n_threads=1, max_age=2), CMemory(lib, max_age=2)
    for step in range(60):
        x = rng.normal(size=(12, 5))
        keys = np.repeat(np.arange(step * 3, step * 3 + 3), 4)
        correct = np.zeros(12, dtype=bool)
        np.testing.assert_array_equal(c.penalize(x, keys, correct, step)[0],
                                      py.penalize(dict(fingerprints=x, keys=keys, correct=correct, step=step)))
    assert py.metrics()["points"] == c.info().points == 3 * 12
    assert len(py.state_dict()["keys"]) < 3 * 60 / 2  # dead keys were dropped
    c.save(tmp_path / "c.ckpt")
    py.save(tmp_path / "py.ckpt")
    assert (tmp_path / "c.ckpt").read_bytes() == (tmp_path / "py.ckpt").read_bytes()


def test_python_checkpoint_loads_in_c_and_continues_identically(lib, tmp_path):
    steps = list(_steps(seed=5, n_steps=6))
    py = Memory("paper", n_threads=1)
    for x, keys, correct, step in steps[:3]:
        py.penalize(dict(fingerprints=x, keys=keys, correct=correct, step=step))
    py.save(tmp_path / "py.ckpt")
    c = CMemory.load(lib, tmp_path / "py.ckpt")
    for x, keys, correct, step in steps[3:]:
        expected = py.penalize(dict(fingerprints=x, keys=keys, correct=correct, step=step))
        np.testing.assert_array_equal(c.penalize(x, keys, correct, step)[0], expected)


def test_c_checkpoint_loads_in_python_and_is_byte_identical(lib, tmp_path):
    steps = list(_steps(seed=7, n_steps=4))
    py, c = Memory(n_threads=1, max_age=2), CMemory(lib, max_age=2)
    for x, keys, correct, step in steps[:3]:
        py.penalize(dict(fingerprints=x, keys=keys, correct=correct, step=step))
        c.penalize(x, keys, correct, step)
    c.save(tmp_path / "c.ckpt")
    py.save(tmp_path / "py.ckpt")
    assert (tmp_path / "c.ckpt").read_bytes() == (tmp_path / "py.ckpt").read_bytes()
    loaded = Memory.load(tmp_path / "c.ckpt")
    x, keys, correct, step = steps[3]
    np.testing.assert_array_equal(loaded.penalize(dict(fingerprints=x, keys=keys, correct=correct, step=step)),
                                  py.penalize(dict(fingerprints=x, keys=keys, correct=correct, step=step)))


def test_c_refuses_string_keys_and_corrupt_files(lib, tmp_path):
    py = Memory()
    py.penalize(dict(fingerprints=np.eye(3), keys=["a", "b", "a"], correct=[0, 0, 0]))
    py.save(tmp_path / "s.ckpt")
    with pytest.raises(ValueError, match="integer keys only"):
        CMemory.load(lib, tmp_path / "s.ckpt")
    blob = bytearray((tmp_path / "s.ckpt").read_bytes())
    blob[40] ^= 1
    (tmp_path / "bad.ckpt").write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="checksum") as err:
        CMemory.load(lib, tmp_path / "bad.ckpt")
    assert err.value.args[0] == CORRUPT
    with pytest.raises(ValueError) as err:
        CMemory.load(lib, tmp_path / "missing.ckpt")
    assert err.value.args[0] == IO


def test_bad_input_returns_a_code_and_leaves_the_memory_unchanged(lib):
    c = CMemory(lib)
    x, keys, correct, _ = next(_steps(seed=1))
    c.penalize(x, keys, np.zeros(len(x), bool), 2)
    before = (c.info().points, c.info().last_step)
    x_nan = x.copy()
    x_nan[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf in row 2") as err:
        c.penalize(x_nan, keys, correct, 3)
    assert err.value.args[0] == INVALID
    with pytest.raises(ValueError, match="dimensions"):
        c.penalize(x[:, :5], keys, correct, 3)
    with pytest.raises(ValueError, match="before the memory's last step"):
        c.penalize(x, keys, correct, step=1)
    assert (c.info().points, c.info().last_step) == before


class IncrementalParams(ctypes.Structure):
    _fields_ = [("min_cluster_size", ctypes.c_int64), ("min_samples", ctypes.c_int64),
                ("selection", ctypes.c_int32), ("allow_single_cluster", ctypes.c_int32),
                ("capacity", ctypes.c_int64), ("n_threads", ctypes.c_int32),
                ("max_cluster_size", ctypes.c_int64), ("epsilon_max", ctypes.c_double)]


class CIncremental:
    """The C API's incremental engine through ctypes."""

    def __init__(self, lib, **fields):
        self.lib = lib
        params = IncrementalParams()
        assert lib.medscore_incremental_params_init(ctypes.byref(params)) == OK
        assert (params.min_cluster_size, params.min_samples, params.capacity) == (5, 5, 0)
        assert (params.max_cluster_size, params.epsilon_max) == (0, float("inf"))
        for name, value in fields.items():
            setattr(params, name, value)
        self.handle = ctypes.c_void_p()
        assert lib.medscore_incremental_create(ctypes.byref(params), ctypes.byref(self.handle)) == OK

    def __del__(self):
        self.lib.medscore_incremental_free(self.handle)

    def _check(self, status):
        if status != OK:
            self.lib.medscore_incremental_last_error.restype = ctypes.c_char_p
            raise ValueError(status, self.lib.medscore_incremental_last_error(self.handle).decode())

    def insert(self, X):
        X = np.ascontiguousarray(X, np.float64)
        first = ctypes.c_int64()
        self._check(self.lib.medscore_incremental_insert(
            self.handle, X.ctypes.data_as(ctypes.POINTER(ctypes.c_double)), ctypes.c_int64(X.shape[0]),
            ctypes.c_int64(X.shape[1]), ctypes.byref(first)))
        return first.value

    def remove(self, ids):
        ids = np.ascontiguousarray(ids, np.int64)
        self._check(self.lib.medscore_incremental_remove(
            self.handle, ids.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)), ctypes.c_int64(ids.size)))

    def result(self):
        size = ctypes.c_int64()
        self._check(self.lib.medscore_incremental_size(self.handle, ctypes.byref(size)))
        ids, labels = np.empty(size.value, np.int64), np.empty(size.value, np.int64)
        probabilities = np.empty(size.value)
        ptr = lambda a, t: a.ctypes.data_as(ctypes.POINTER(t))  # noqa: E731
        self._check(self.lib.medscore_incremental_get(
            self.handle, ctypes.c_int64(size.value), ptr(ids, ctypes.c_int64), ptr(labels, ctypes.c_int64),
            ptr(probabilities, ctypes.c_double)))
        return ids, labels, probabilities


def test_incremental_engine_equals_python_and_refuses_bad_input(lib):
    lib.medscore_incremental_free.argtypes = [ctypes.c_void_p]
    lib.medscore_incremental_last_error.argtypes = [ctypes.c_void_p]
    rng = np.random.default_rng(4)
    c = CIncremental(lib, min_cluster_size=4, min_samples=3, capacity=120)
    py = medscore.IncrementalHDBSCAN(min_cluster_size=4, min_samples=3, capacity=120)
    for step in range(8):
        X = rng.normal(size=(int(rng.integers(1, 40)), 3)) + rng.integers(0, 3) * 4
        assert c.insert(X) == py.insert(X)[0]
        if step % 3 == 2:
            gone = py.ids_[::4]
            c.remove(gone)
            py.remove(gone)
        ids, labels, probabilities = c.result()
        np.testing.assert_array_equal(ids, py.ids_)
        np.testing.assert_array_equal(labels, py.labels_)
        np.testing.assert_array_equal(probabilities, py.probabilities_)
    before = c.result()
    bad = np.zeros((2, 3))
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf") as err:
        c.insert(bad)
    assert err.value.args[0] == INVALID
    with pytest.raises(ValueError, match="columns"):
        c.insert(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="unknown"):
        c.remove([10**9])
    for a, b in zip(before, c.result()):
        np.testing.assert_array_equal(a, b)
    assert lib.medscore_incremental_get(c.handle, ctypes.c_int64(0), None, None, None) == INVALID


def test_incremental_selection_options_equal_python(lib):
    # max_cluster_size and epsilon_max reach the engine through the C API as through Python.
    rng = np.random.default_rng(11)
    X = np.concatenate([rng.normal(size=(60, 2)), rng.normal(size=(60, 2)) * 0.3 + 2.5])
    c = CIncremental(lib, min_cluster_size=5, min_samples=3, max_cluster_size=40)
    py = medscore.IncrementalHDBSCAN(min_cluster_size=5, min_samples=3, max_cluster_size=40)
    for part in np.array_split(X, [70, 90]):
        c.insert(part)
        py.insert(part)
        np.testing.assert_array_equal(c.result()[1], py.labels_)
    bad = IncrementalParams()
    assert lib.medscore_incremental_params_init(ctypes.byref(bad)) == OK
    bad.epsilon_max = float("nan")
    handle = ctypes.c_void_p()
    assert lib.medscore_incremental_create(ctypes.byref(bad), ctypes.byref(handle)) == INVALID
