"""The error memory of MEDS: ``Memory.penalize(batch)`` turns fingerprints into penalties.

A :class:`Memory` keeps one exact HDBSCAN clustering per key (a prompt's stable id; or one
global clustering) of the fingerprints it has stored, and penalises a wrong rollout by the
size of the cluster it falls into: ``min(alpha * ln(|C| + 1), beta)`` by default. All keys of
a step are clustered in one native call (C++ with threads across keys, or Numba).

The rules (what is stored where, the step order, valid rows, who is penalised and how much,
when expired keys are forgotten) are those of ``medscore::Memory`` (csrc/error_memory.cpp),
mirrored for the Numba backend by ``medscore._numba.error_memory``. This class is their
facade: it checks options and inputs, interns keys (ints, str or bytes) to int64 handles,
converts tensors, and reads and writes state dicts and checkpoint files.

Cluster labels within a key are numbered by their oldest member (the cluster holding the
earliest stored point is 0), so they do not depend on how the clustering was computed;
"ties to the smallest label" in the paper vote uses this numbering.
"""
from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import _core
from ._batch import Batch  # noqa: F401  (medscore.memory.Batch, as before)
from ._batch import as_bool_vector, as_float_rows, batch_fields, canonical_key, like_input, unique_keys
from ._validation import INT64_MAX, INT_MAX, MAX_STEP, check_choice, check_float, check_int

FORMAT = "medscore.Memory"
STATE_VERSION = 1

# Each option of medscore.Memory that the core's MemoryOptions holds: (field, enum or None).
# Choices of the enum options are the enums' members; None stands for -1 in max_age and capacity.
_NATIVE_OPTIONS: dict[str, tuple[str, Any]] = {
    "keyed": ("keyed", None), "store": ("store", _core.StoreRule), "normalize": ("normalize", None),
    "min_cluster_size": ("min_cluster_size", None), "min_samples": ("min_samples", None),
    "cluster_selection_method": ("method", _core.SelectionMethod), "assign": ("assign", _core.AssignRule),
    "penalize_noise": ("penalize_noise", None), "alpha": ("alpha", None), "beta": ("beta", None),
    "target": ("target", _core.PenaltyTarget), "max_age": ("max_age", None), "capacity": ("capacity", None),
    "nan_rows": ("nan_rows", _core.NanRows), "n_threads": ("n_threads", None),
}
_OPTIONAL = ("max_age", "capacity")


def _python_options(native) -> dict[str, Any]:
    """The options of a core MemoryOptions, by medscore.Memory's names and values."""
    out = {}
    for name, (field, enum) in _NATIVE_OPTIONS.items():
        value = getattr(native, field)
        if enum is not None:
            value = value.name
        elif name in _OPTIONAL and value == -1:
            value = None
        out[name] = value
    return out


def _native_options(options: dict):
    """The core MemoryOptions of validated medscore.Memory options."""
    native = _core.MemoryOptions()
    for name, (field, enum) in _NATIVE_OPTIONS.items():
        value = options[name]
        if enum is not None:
            value = enum.__members__[value]
        elif name in _OPTIONAL and value is None:
            value = -1
        setattr(native, field, value)
    return native


#: Defaults of every option (``preset=None``): the core's, plus the facade's own.
DEFAULTS: dict[str, Any] = {**_python_options(_core.MemoryOptions()), "penalty": None, "backend": "cpp"}

#: Presets: option values that replace the defaults; explicit arguments still win.
#: "paper", the published MEDS recipe (per key and correctness, paper vote, noise penalised),
#: is the core's MemoryOptions.preset("paper").
PRESETS: dict[str, dict[str, Any]] = {"paper": {
    k: v for k, v in _python_options(_core.MemoryOptions.preset("paper")).items()
    if k in ("keyed", "store", "normalize", "min_cluster_size", "min_samples", "cluster_selection_method",
             "assign", "penalize_noise")}}

#: Dead keys (none of their points left) kept before they are dropped; more than the live
#: keys are never kept beyond this (the core's kDeadKeysKept).
DEAD_KEYS_KEPT = int(_core.DEAD_KEYS_KEPT)
# Options that change what is stored or how it is clustered: a state must match them.
_STATE_OPTIONS = ("keyed", "store", "normalize", "min_cluster_size", "min_samples",
                  "cluster_selection_method", "assign", "max_age", "capacity")

class Memory:
    """Error memory: per-key exact HDBSCAN of stored fingerprints, cluster sizes to penalties.

    Parameters
    ----------
    preset : {None, "paper"}
        ``"paper"`` reproduces MEDS: min_cluster_size=2, min_samples=1, Euclidean on
        L2-normalised vectors, one clustering per key and correctness (``store="all"``),
        wrong rollouts penalised, ``assign="paper"``, noise penalised.
    keyed : bool, default True
        One clustering per key; False: one global clustering (keys are ignored).
    store : {"wrong", "all"}, default "wrong"
        Store only wrong rollouts, or every rollout grouped by key and correctness.
    normalize : bool, default True
        L2-normalise fingerprints before storing (a zero row is then an error).
    min_cluster_size, min_samples : int, default 2 and 1
        HDBSCAN parameters (docs/SPEC.md). min_samples=1 updates keys incrementally;
        larger values refit each touched key per step.
    cluster_selection_method : {"eom", "leaf"}, default "eom"
    assign : {"exact", "paper"}, default "exact"
        ``"exact"``: a rollout's cluster once the step is inserted. ``"paper"``: a 3-nearest
        neighbour cosine vote against the labels before the step (majority, ties to the
        smallest label, noise is -1; rollouts of the same step do not vote).
    penalize_noise : bool, default False
        Penalise a rollout assigned to noise by the number of noise points of its key.
    alpha, beta : float, default 0.1 and 0.2
        Default penalty ``min(alpha * ln(|C| + 1), beta)``. With ``preset="paper"`` beta is
        ``2 * alpha`` unless given (the reference's one knob, ``coef * min(ln(|C| + 1), 2)``).
    target : {"wrong", "right", "both", "none"}, default "wrong"
        Which rollouts get a penalty (the reference's ``cluster_penalty_target``): wrong ones
        (the published runs), correct ones, both, or none (the memory still learns). A
        correct rollout's penalty ``p`` is meant to scale its reward to ``reward / (1 + p)``
        (the trainer integrations do); "right" and "both" need ``store="all"``.
    penalty : callable or None
        ``penalty(sizes int64 [M]) -> float [M] >= 0`` replacing the default formula.
    max_age : int or None
        Forget points inserted more than ``max_age`` steps before the current step, whether
        their key comes back or not (an index by step finds them), and then keys that hold no
        point (see ``_drop_expired_keys``): points, keys and the work of a step stay bounded
        by what was inserted in the last ``max_age + 1`` steps.
    capacity : int or None
        Keep at most this many points per key (oldest dropped first). It bounds each key,
        not the number of keys: with fresh prompts every step, only ``max_age`` bounds the
        memory.
    nan_rows : {"error", "skip"}, default "error"
        What a row of NaN means when ``Batch.valid`` is not given: an error, or "no
        fingerprint" (no penalty, nothing stored).
    backend : {"cpp", "numba"}, default "cpp"
        The C++ memory, or its Numba mirror (``medscore._numba.error_memory``: the same labels,
        sizes, penalties and states bit for bit; slower, and its refits are O(n^2) per key, so
        it does not suit one very large global memory).
    n_threads : int, default 0 (every hardware thread)
        Threads across keys. The worker threads are kept for the whole process and shared
        by every Memory with the same count; they sleep between steps.

    Notes
    -----
    ``penalize`` holds a lock: concurrent calls from several threads are serialised. Two
    memories with the same ``n_threads`` share workers: their steps take turns on them.
    """

    def __init__(self, preset: str | None = None, **options):
        self._options = self._resolve_options(preset, options)
        self._preset = preset
        self._lock = threading.RLock()
        self._native = self._new_native()
        # User key <-> int64 handle. Handles are never reused; the core numbers keys by them,
        # and new keys of a step get increasing handles in the order np.unique sorts them.
        self._handle_of: dict = {}
        self._key_of: dict = {}
        self._next_handle = 0
        self._step_stored = False

    # -- options -------------------------------------------------------------------------

    @staticmethod
    def _resolve_options(preset, options) -> dict:
        unknown = sorted(set(options) - set(DEFAULTS))
        if unknown:
            raise TypeError(f"Memory got unknown options {unknown}; known: {sorted(DEFAULTS)}")
        if preset is not None and preset not in PRESETS:
            raise ValueError(f"preset must be one of {[None, *PRESETS]}, got {preset!r}")
        resolved = {**DEFAULTS, **PRESETS.get(preset, {}), **options}
        if preset == "paper" and "beta" not in options and isinstance(resolved["alpha"], (int, float)):
            # The reference has one knob: coef * min(ln(|C| + 1), 2), so its cap is 2 * coef.
            resolved["beta"] = 2 * resolved["alpha"]
        return _validate_options(resolved)

    @property
    def options(self) -> dict:
        """The resolved options (a copy)."""
        return dict(self._options)

    def _new_native(self, state: dict | None = None):
        from ._backends import memory_rules

        rules = memory_rules(self._options["backend"])
        native = _native_options(self._options)
        penalty = None if self._options["penalty"] is None else self._user_penalty
        return rules(native, penalty) if state is None else rules.from_state(native, state, penalty)

    def _user_penalty(self, sizes):
        # The core calls this only once the step is stored (see penalize).
        self._step_stored = True
        return self._options["penalty"](sizes)

    # -- the step ------------------------------------------------------------------------

    def penalize(self, batch, return_info: bool = False):
        """Penalties of a step's rollouts; stores the step in the memory.

        Parameters
        ----------
        batch : Batch or mapping with fields fingerprints [N, D], keys [N], correct [N],
            and optionally step (int) and valid (bool [N]).
        return_info : bool
            Also return a dict with ``labels`` (int64 [N], cluster of each rollout within its
            key, -1 noise or not stored) and ``sizes`` (int64 [N], that cluster's size).

        Returns
        -------
        penalties : [N] >= 0, to subtract from the rewards; numpy float64 for numpy input,
            a torch float32 tensor on the fingerprints' device for torch input.
        info : dict, only with ``return_info``.

        Raises
        ------
        ValueError, TypeError
            On bad input; the memory is then exactly as before the call.
        """
        with self._lock:
            fields = batch_fields(batch)
            points, n = as_float_rows(fields["fingerprints"])
            correct = as_bool_vector(fields["correct"], n, "correct")
            valid = None if fields.get("valid") is None else as_bool_vector(fields["valid"], n, "valid")
            handles, new_keys = self._handles_of(fields["keys"], n)
            step = fields.get("step")
            step = -1 if step is None else check_int("step", step, low=0, high=MAX_STEP)
            self._step_stored = False
            try:
                penalties, labels, sizes = self._native.penalize(points, handles, correct, valid, step)
            except BaseException:
                if self._step_stored:  # the user's penalty failed after the step was stored
                    self._commit_keys(new_keys)
                raise
            self._commit_keys(new_keys)
        out = like_input(penalties, fields["fingerprints"])
        if return_info:
            return out, {"labels": labels, "sizes": sizes}
        return out

    def _handles_of(self, keys, n: int):
        """(int64 [n] handle of each row's key, new keys in handle order); nothing is recorded."""
        unique, inverse = unique_keys(keys, n)
        # Known keys' handles (-1 for new ones) in one C-level pass over the dict.
        handles = np.fromiter(map(self._handle_of.get, unique, itertools.repeat(-1)), dtype=np.int64,
                              count=len(unique))
        fresh = np.flatnonzero(handles < 0)
        handles[fresh] = np.arange(self._next_handle, self._next_handle + len(fresh))
        new_keys = unique if len(fresh) == len(unique) else [unique[i] for i in fresh.tolist()]
        return handles[inverse], new_keys

    def _commit_keys(self, new_keys) -> None:
        start = self._next_handle
        self._handle_of.update(zip(new_keys, range(start, start + len(new_keys))))
        self._key_of.update(zip(range(start, start + len(new_keys)), new_keys))
        self._next_handle = start + len(new_keys)
        if self._native.n_keys != len(self._key_of):  # the core forgot expired keys
            live = self._native.keys.tolist()
            self._key_of = {h: self._key_of[h] for h in live}
            self._handle_of = {k: h for h, k in self._key_of.items()}

    @property
    def _engine(self):
        """The clustering engine (KeyedMemory), or None before a point is stored."""
        return self._native.engine

    # -- state ---------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything needed to resume: options, keys, step and the engine's arrays."""
        with self._lock:
            native = self._native.state()
            engine = native["engine"]
            if engine is not None:
                engine = {k: (np.array(v) if isinstance(v, np.ndarray) else int(v)) for k, v in engine.items()}
            return {
                "format": FORMAT, "version": STATE_VERSION,
                "options": {k: v for k, v in self._options.items() if k != "penalty"},
                "keys": [self._key_of[h] for h in native["keys"].tolist()],
                "last_step": int(native["last_step"]), "dim": int(native["dim"]) or None,
                "last_penalties": np.array(native["last_penalties"]), "engine": engine,
            }

    def load_state_dict(self, state: Mapping) -> None:
        """Replace the memory by ``state`` (from :meth:`state_dict`); all or nothing."""
        with self._lock:
            checked = _check_state(state, self._options)
            keys = checked["keys"]
            native = self._new_native({
                "keys": np.arange(len(keys), dtype=np.int64), "last_step": checked["last_step"],
                "dim": checked["dim"] or 0, "engine": checked["engine"],
                "last_penalties": np.ascontiguousarray(checked["last_penalties"], dtype=np.float64)})
            self._native = native
            self._key_of = dict(enumerate(keys))
            self._handle_of = {k: h for h, k in self._key_of.items()}
            self._next_handle = len(keys)

    def save(self, path) -> None:
        """Write the state to ``path`` atomically (see ``medscore._checkpoint``)."""
        from ._checkpoint import write_state

        write_state(path, self.state_dict())

    @classmethod
    def load(cls, path, **overrides) -> "Memory":
        """A Memory with the options and state saved at ``path`` (``penalty``, ``backend`` and
        ``n_threads`` may be given, as they are not saved)."""
        from ._checkpoint import read_state

        if "preset" in overrides:
            raise ValueError(f"Memory.load takes the options saved in the file, so preset={overrides['preset']!r} "
                             "would be ignored; pass an option by name to change it")
        state = read_state(path)
        if not isinstance(state.get("options"), Mapping):
            raise ValueError(f"{path}: not a medscore.Memory state (no 'options')")
        options = {**state["options"], **overrides}
        memory = cls(**options)
        memory.load_state_dict(state)
        return memory

    # -- metrics -------------------------------------------------------------------------

    def metrics(self) -> dict[str, float]:
        """Flat dict of floats for any logger.

        keys (distinct keys seen), groups (clusterings holding points), points, clusters,
        noise_fraction, penalty_mean and penalty_max (of the last step's rollouts), step,
        top1_eigenvalue_ratio (largest eigenvalue of the stored fingerprints' covariance over
        the sum of all; the paper's diversity measure; 0 with fewer than 2 points).
        """
        with self._lock:
            e = self._native.engine
            points = 0 if e is None else int(e.n_points)
            noise = 0 if e is None else int(e.n_noise)
            pen = self._native.last_penalties
            return {
                "keys": float(self._native.n_keys),
                "groups": float(0 if e is None else e.n_keys),
                "points": float(points),
                "clusters": float(0 if e is None else e.n_clusters),
                "noise_fraction": float(noise / points) if points else 0.0,
                "penalty_mean": float(pen.mean()) if pen.size else 0.0,
                "penalty_max": float(pen.max()) if pen.size else 0.0,
                "step": float(self._native.last_step),
                "top1_eigenvalue_ratio": _top1_ratio(e),
            }

    def __repr__(self) -> str:
        e = self._native.engine
        return f"Memory(preset={self._preset!r}, points={0 if e is None else e.n_points})"


# -- helpers -------------------------------------------------------------------------------

def _validate_options(o: dict) -> dict:
    """Types and ranges of each option (TypeError/ValueError naming it), then the core's
    checks of how options combine."""
    o = dict(o)
    for name in ("keyed", "normalize", "penalize_noise"):
        if not isinstance(o[name], (bool, np.bool_)):
            raise TypeError(f"{name} must be a bool, got {o[name]!r}")
        o[name] = bool(o[name])
    for name, (_, enum) in _NATIVE_OPTIONS.items():
        if enum is not None:
            check_choice(name, o[name], set(enum.__members__))
    if o["target"] in ("right", "both") and o["store"] != "all":
        raise ValueError(f"target={o['target']!r} penalises correct rollouts by their own clusters, which "
                         f"needs store='all' (got store={o['store']!r})")
    from ._backends import BACKENDS

    check_choice("backend", o["backend"], set(BACKENDS))
    o["min_cluster_size"] = check_int("min_cluster_size", o["min_cluster_size"], low=2, high=INT64_MAX)
    o["min_samples"] = check_int("min_samples", o["min_samples"], low=1, high=INT64_MAX)
    o["alpha"] = check_float("alpha", o["alpha"], low=0.0)
    o["beta"] = check_float("beta", o["beta"], low=0.0)
    o["n_threads"] = check_int("n_threads", o["n_threads"], low=0, high=INT_MAX)
    if o["max_age"] is not None:
        o["max_age"] = check_int("max_age", o["max_age"], low=0, high=INT64_MAX)
    if o["capacity"] is not None:
        o["capacity"] = check_int("capacity", o["capacity"], low=1, high=INT64_MAX)
    if o["penalty"] is not None and not callable(o["penalty"]):
        raise TypeError(f"penalty must be callable or None, got {o['penalty']!r}")
    _native_options(o).check()
    return o


_STATE_FIELDS = ("format", "version", "options", "keys", "last_step", "dim", "engine")
_ENGINE_FIELDS = ("dim", "last_step", "offsets", "points", "steps", "labels", "mst_u", "mst_v", "mst_weight")


def _check_state(state: Mapping, options: dict) -> dict:
    """The fields of a state dict, checked for presence, types and ranges (ValueError).

    The engine's arrays are checked for structure by the engine's ``load_state`` (sizes,
    ranges, the MST a spanning tree with the points' weights, labels its clustering).
    """
    if not isinstance(state, Mapping) or state.get("format") != FORMAT:
        raise ValueError("not a medscore.Memory state (missing or wrong 'format')")
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"Memory state version {state.get('version')!r} is not supported (expected {STATE_VERSION})")
    missing = [name for name in _STATE_FIELDS if name not in state]
    if missing:
        raise ValueError(f"Memory state is missing {missing}")
    saved = state["options"]
    if not isinstance(saved, Mapping):
        raise ValueError(f"Memory state 'options' must be a mapping, got {type(saved).__name__}")
    differ = [k for k in _STATE_OPTIONS if saved.get(k) != options[k]]
    if differ:
        raise ValueError(f"state was saved with other options: {[(k, saved.get(k), options[k]) for k in differ]}")
    if not isinstance(state["keys"], (list, tuple)):
        raise ValueError(f"Memory state 'keys' must be a list, got {type(state['keys']).__name__}")
    keys = list(state["keys"])
    for k in keys:
        canonical_key(k)
    if len(set(keys)) != len(keys):
        raise ValueError("state keys are not unique")
    last_step = _state_int("last_step", state["last_step"], -1, MAX_STEP)
    engine, dim = state["engine"], state["dim"]
    if engine is None:
        if dim is not None:
            _state_int("dim", dim, 1, INT64_MAX)
    else:
        dim = _state_int("dim", dim, 1, INT64_MAX)
        _check_engine_fields(engine, dim, last_step, _groups_allowed(len(keys), options))
    last_penalties = np.asarray(state.get("last_penalties", np.zeros(0)))
    if (last_penalties.ndim != 1 or not np.issubdtype(last_penalties.dtype, np.floating)
            or not np.isfinite(last_penalties).all() or (last_penalties < 0).any()):
        raise ValueError("Memory state 'last_penalties' must be a 1-d float array of finite values >= 0")
    return {"keys": keys, "last_step": last_step, "dim": dim, "engine": engine,
            "last_penalties": last_penalties}


def _state_int(name: str, value, low: int, high: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"Memory state '{name}' must be an integer, got {value!r}")
    if not low <= int(value) <= high:
        raise ValueError(f"Memory state '{name}' must be in [{low}, {high}], got {int(value)}")
    return int(value)


def _groups_allowed(n_keys: int, options: dict) -> int:
    """How many clusterings a memory with ``n_keys`` keys can hold (see Memory._parse)."""
    groups = n_keys if options["keyed"] else min(n_keys, 1)
    return 2 * groups if options["store"] == "all" else groups


def _check_engine_fields(engine, dim: int, last_step: int, groups_allowed: int) -> None:
    if not isinstance(engine, Mapping):
        raise ValueError(f"Memory state 'engine' must be a mapping or None, got {type(engine).__name__}")
    missing = [name for name in _ENGINE_FIELDS if name not in engine]
    if missing:
        raise ValueError(f"Memory state 'engine' is missing {missing}")
    if _state_int("engine.dim", engine["dim"], 1, INT64_MAX) != dim:
        raise ValueError(f"Memory state 'engine.dim' is {engine['dim']}, 'dim' is {dim}")
    if _state_int("engine.last_step", engine["last_step"], -1, MAX_STEP) > last_step:
        raise ValueError("Memory state 'engine.last_step' is after 'last_step'")
    for name in _ENGINE_FIELDS[2:]:
        arr = np.asarray(engine[name])
        kind = "f" if name in ("points", "mst_weight") else "i"
        if arr.dtype.kind != kind or arr.ndim != (2 if name == "points" else 1):
            raise ValueError(f"Memory state 'engine.{name}' has dtype {arr.dtype} and shape {arr.shape}")
    if np.asarray(engine["offsets"]).shape[0] - 1 > groups_allowed:
        raise ValueError(f"Memory state 'engine' holds {np.asarray(engine['offsets']).shape[0] - 1} clusterings, "
                         f"its keys allow at most {groups_allowed}")


def _top1_ratio(engine) -> float:
    if engine is None or engine.n_points < 2:
        return 0.0
    count, total, outer = engine.moments()
    mean = total / count
    cov = outer / count - np.outer(mean, mean)
    eig = np.linalg.eigvalsh((cov + cov.T) / 2)
    s = float(np.clip(eig, 0, None).sum())
    return float(max(eig[-1], 0.0) / s) if s > 0 else 0.0


__all__ = ["Batch", "Memory", "PRESETS", "DEFAULTS"]
