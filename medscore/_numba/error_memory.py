"""The Numba backend's ``Memory``: the rules of ``medscore::Memory`` (csrc/error_memory.cpp)
over the Numba ``KeyedMemory``.

It mirrors the C++ class line for line and takes the same arguments (a
``medscore._core.MemoryOptions``, an optional penalty callable), so ``medscore.Memory`` drives
either through one interface (``medscore._backends.memory_rules``): which rollouts are stored
and in which clustering, the step order, which rows are valid, which rollouts are penalised
and by how much, and when expired keys are forgotten. ``tests/test_memory_rules.py`` holds the
two to the same answers and states, bit for bit.
"""
from __future__ import annotations

import math

import numpy as np

from .memory import KeyedMemory

#: medscore::kMaxStep and medscore::kDeadKeysKept (error_memory.hpp, memory.hpp).
MAX_STEP = 2**63 - 2
DEAD_KEYS_KEPT = 64


def _bad_input(what: str):
    return ValueError("Memory::penalize: " + what)


def _valid_rows(points: np.ndarray, valid, skip_nan_rows: bool) -> np.ndarray:
    out = np.ones(points.shape[0], dtype=bool) if valid is None else np.array(valid, dtype=bool)
    # A finite total means every entry is finite: the per-row checks are then skipped.
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduce(points, axis=None)
    if np.isfinite(total):
        return out
    finite = np.isfinite(points).all(axis=1)
    if valid is None and skip_nan_rows:
        out &= finite | ~np.isnan(points).all(axis=1)
    bad = out & ~finite
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise _bad_input(f"fingerprints contain NaN or Inf in row {row} ({int(bad.sum())} bad rows); "
                         "mark rows without a fingerprint with valid or nan_rows=skip")
    return out


def default_penalty(size: int, alpha: float, beta: float) -> float:
    """``min(alpha * ln(size + 1), beta)`` with the C library's log (``math.log``)."""
    return min(alpha * math.log(size + 1), beta)


class Memory:
    """``medscore::Memory`` on the Numba engine (same constructor, methods and state)."""

    def __init__(self, options, penalty=None):
        options.check()
        self._options = options
        self._penalty = penalty
        self._dim = 0
        self._last_step = -1
        self._keys: list[int] = []
        self._key_index: dict[int, int] = {}
        self._last_penalties = np.zeros(0, dtype=np.float64)
        self._engine: KeyedMemory | None = None

    # -- the step ------------------------------------------------------------------------

    def penalize(self, points, keys, correct, valid, step: int):
        """points f64 [N, D], keys int64 [N], correct bool [N], valid bool [N] or None, step
        (-1: the last + 1) -> (penalties f64 [N], labels int64 [N], sizes int64 [N])."""
        o = self._options
        points = np.ascontiguousarray(points, dtype=np.float64)
        n = points.shape[0]
        if n == 0 or points.shape[1] == 0:
            raise ValueError("Memory::penalize: points must be a non-empty [N, D] array")
        if self._dim and points.shape[1] != self._dim:
            raise _bad_input(f"fingerprints have {points.shape[1]} dimensions, the memory holds {self._dim}")
        correct = np.asarray(correct, dtype=bool)
        is_valid = _valid_rows(points, valid, o.nan_rows.name == "skip")
        unique, inverse = np.unique(np.asarray(keys, dtype=np.int64), return_inverse=True)
        ids = np.fromiter((self._key_index.get(k, -1) for k in unique.tolist()), dtype=np.int64, count=len(unique))
        fresh = np.flatnonzero(ids < 0)
        ids[fresh] = np.arange(len(self._keys), len(self._keys) + len(fresh))
        new_keys = unique[fresh].tolist()
        ids = ids[inverse.reshape(-1)]
        if step < -1 or step > MAX_STEP:
            raise _bad_input(f"step must be in [0, 2^63 - 2] (or -1: the last step + 1), got {step}")
        if step == -1:
            if self._last_step == MAX_STEP:
                raise _bad_input("step: the memory's last step is 2^63 - 2, the largest; no step can follow it")
            step = self._last_step + 1
        if step < self._last_step:
            raise _bad_input(f"step {step} is before the memory's last step {self._last_step}")

        store_all = o.store.name == "all"
        stored = is_valid if store_all else is_valid & ~correct
        groups = ids if o.keyed else np.zeros(n, dtype=np.int64)
        if store_all:
            groups = 2 * groups + correct
        groups = np.ascontiguousarray(np.where(stored, groups, -1), dtype=np.int64)
        labels, sizes = np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=np.int64)
        if stored.any():
            engine = self._engine if self._engine is not None else self._new_engine(points.shape[1])
            labels, sizes = engine.penalize_step(points, groups, step)  # unchanged if it raises
            self._engine = engine
            self._dim = points.shape[1]
        for key in new_keys:
            self._key_index[key] = len(self._keys)
            self._keys.append(key)
        self._last_step = step
        if o.max_age >= 0 and o.keyed and self._engine is not None:
            self._drop_expired_keys()
        # The step is stored: only a user penalty function can fail from here on.
        penalties = self._penalties_of(labels, sizes, correct, is_valid)
        self._last_penalties = penalties
        return penalties, labels, sizes

    def _penalties_of(self, labels, sizes, correct, is_valid) -> np.ndarray:
        o = self._options
        target = o.target.name
        aimed = np.full(correct.shape, target == "both") if target in ("both", "none") else (
            ~correct if target == "wrong" else correct.copy())
        targeted = aimed & is_valid
        if not o.penalize_noise:
            targeted &= labels >= 0
        penalties = np.zeros(labels.shape[0], dtype=np.float64)
        if self._penalty is None:  # the formula once per distinct size
            distinct, inverse = np.unique(sizes[targeted], return_inverse=True)
            values = np.array([default_penalty(int(s), o.alpha, o.beta) for s in distinct.tolist()], dtype=np.float64)
            penalties[targeted] = values[inverse.reshape(-1)]
            return penalties
        if not targeted.any():
            return penalties
        values = np.asarray(self._penalty(sizes[targeted].copy()), dtype=np.float64).reshape(-1)
        if values.shape != (int(targeted.sum()),) or not np.isfinite(values).all() or (values < 0).any():
            raise ValueError("penalty(sizes) must return one finite value >= 0 per size")
        penalties[targeted] = values
        return penalties

    def _new_engine(self, dim: int) -> KeyedMemory:
        o = self._options
        return KeyedMemory(dim=dim, min_cluster_size=o.min_cluster_size, min_samples=o.min_samples,
                           method=o.method.name, allow_single_cluster=False, epsilon=0.0, assign=o.assign.name, vote_k=3,
                           max_age=o.max_age, capacity=o.capacity, n_threads=o.n_threads, normalize=o.normalize)

    def _drop_expired_keys(self) -> None:
        # medscore::Memory::drop_expired_keys: once keys none of whose groups holds a point
        # outnumber max(live keys, DEAD_KEYS_KEPT), they are dropped and the rest renumbered.
        sizes = self._engine.key_sizes()
        per_key = 2 if self._options.store.name == "all" else 1
        held = np.zeros(len(self._keys) * per_key, dtype=np.int64)
        held[:sizes.shape[0]] = sizes
        alive = held.reshape(len(self._keys), per_key).sum(axis=1) > 0
        n_live = int(np.count_nonzero(alive))
        if len(self._keys) - n_live <= max(n_live, DEAD_KEYS_KEPT):
            return
        kept = np.flatnonzero(alive)
        groups = (kept[:, None] * per_key + np.arange(per_key)).ravel()
        self._engine.compact(groups[groups < sizes.shape[0]].tolist())
        self._keys = [self._keys[i] for i in kept.tolist()]
        self._key_index = {k: i for i, k in enumerate(self._keys)}

    # -- state ---------------------------------------------------------------------------

    def state(self) -> dict:
        """keys int64 [K] by id, last_step, dim (0: nothing stored), last_penalties, engine."""
        engine = None if self._engine is None else self._engine.state()
        return {"keys": np.array(self._keys, dtype=np.int64), "last_step": self._last_step, "dim": self._dim,
                "last_penalties": self._last_penalties.copy(), "engine": engine}

    @classmethod
    def from_state(cls, options, state, penalty=None) -> "Memory":
        """A Memory holding ``state`` (as :meth:`state` gives it), checked (ValueError)."""
        memory = cls(options, penalty)
        last_step, dim = int(state["last_step"]), int(state["dim"])
        if not -1 <= last_step <= MAX_STEP:
            raise ValueError("Memory: last_step must be in [-1, 2^63 - 2]")
        has_engine = state["engine"] is not None
        if dim < 0 or (has_engine and dim == 0):
            raise ValueError(f"Memory: bad dim {dim}")
        last_penalties = np.array(state["last_penalties"], dtype=np.float64).reshape(-1)
        if not np.isfinite(last_penalties).all() or (last_penalties < 0).any():
            raise ValueError("Memory: last_penalties must be finite and >= 0")
        keys = np.asarray(state["keys"], dtype=np.int64).tolist()
        index = {k: i for i, k in enumerate(keys)}
        if len(index) != len(keys):
            raise ValueError("Memory: keys are not unique")
        if has_engine:
            e = state["engine"]
            engine = memory._new_engine(dim)
            engine.load_state(e["dim"], e["last_step"], e["offsets"], e["points"], e["steps"], e["labels"],
                              e["mst_u"], e["mst_v"], e["mst_weight"])
            memory._engine = engine
        memory._keys, memory._key_index = keys, index
        memory._last_step, memory._dim, memory._last_penalties = last_step, dim, last_penalties
        return memory

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def last_step(self) -> int:
        return self._last_step

    @property
    def n_keys(self) -> int:
        return len(self._keys)

    @property
    def keys(self) -> np.ndarray:
        return np.array(self._keys, dtype=np.int64)

    @property
    def last_penalties(self) -> np.ndarray:
        return self._last_penalties.copy()

    @property
    def engine(self) -> KeyedMemory | None:
        return self._engine
