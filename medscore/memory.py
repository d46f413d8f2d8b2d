"""The error memory of MEDS: ``Memory.penalize(batch)`` turns fingerprints into penalties.

A :class:`Memory` keeps one exact HDBSCAN clustering per key (a prompt's stable id; or one
global clustering) of the fingerprints it has stored, and penalises a wrong rollout by the
size of the cluster it falls into: ``min(alpha * ln(|C| + 1), beta)`` by default. All keys of
a step are clustered in one native call (C++ with threads across keys, or Numba).

Cluster labels within a key are numbered by their oldest member (the cluster holding the
earliest stored point is 0), so they do not depend on how the clustering was computed;
"ties to the smallest label" in the paper vote uses this numbering.
"""
from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._batch import Batch  # noqa: F401  (medscore.memory.Batch, as before)
from ._batch import as_bool_vector, as_float_rows, batch_fields, canonical_key, like_input, unique_keys
from ._validation import INT64_MAX, INT_MAX, MAX_STEP, check_choice, check_float, check_int

FORMAT = "medscore.Memory"
STATE_VERSION = 1

#: Defaults of every option (``preset=None``).
DEFAULTS: dict[str, Any] = dict(
    keyed=True, store="wrong", normalize=True, min_cluster_size=2, min_samples=1,
    cluster_selection_method="eom", assign="exact", penalize_noise=False, alpha=0.1,
    beta=0.2, penalty=None, target="wrong", max_age=None, capacity=None, nan_rows="error", backend="cpp",
    n_threads=0,
)

#: Presets: option values that replace the defaults; explicit arguments still win.
PRESETS: dict[str, dict[str, Any]] = {
    # The published MEDS recipe: per key and correctness, paper vote, noise penalised.
    "paper": dict(keyed=True, store="all", normalize=True, min_cluster_size=2, min_samples=1,
                  cluster_selection_method="eom", assign="paper", penalize_noise=True),
}

# Options that change what is stored or how it is clustered: a state must match them.
#: Dead keys (none of their points left) kept before they are dropped (see
#: Memory._drop_expired_keys); more than the live keys are never kept beyond this.
DEAD_KEYS_KEPT = 64
_STATE_OPTIONS = ("keyed", "store", "normalize", "min_cluster_size", "min_samples",
                  "cluster_selection_method", "assign", "max_age", "capacity")


#: Largest cluster size whose default penalty Memory keeps in its table.
_PENALTY_TABLE_MAX = 1 << 16


def _default_penalty(sizes: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """``min(alpha * ln(size + 1), beta)`` with ``math.log`` (the same bits as the reference).

    sizes: int64 [M] >= 0. Returns float64 [M]. The formula runs once per distinct size: a
    lookup table indexed by size when sizes are small (no sort), else ``np.unique``.
    """
    if sizes.size == 0:
        return np.zeros(0, dtype=np.float64)
    top = int(sizes.max())
    if top <= 4 * sizes.size + 1024:
        present = np.zeros(top + 1, dtype=bool)
        present[sizes] = True
        distinct = np.flatnonzero(present)
        table = np.zeros(top + 1, dtype=np.float64)
        table[distinct] = [min(alpha * math.log(s + 1), beta) for s in distinct.tolist()]
        return table[sizes]
    unique, inverse = np.unique(sizes, return_inverse=True)
    values = np.array([min(alpha * math.log(int(s) + 1), beta) for s in unique], dtype=np.float64)
    return values[inverse.reshape(-1)]


def _targeted(correct: np.ndarray, target: str) -> np.ndarray:
    """bool [N], a new array: the rollouts that ``target`` ("wrong", "right", "both", "none") penalises."""
    if target == "wrong":
        return ~correct
    if target == "right":
        return correct.copy()
    return np.full(correct.shape, target == "both")


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
        The C++ engine, or the Numba one (``medscore._numba.memory``: the same labels, sizes
        and penalties bit for bit; slower, and its refits are O(n^2) per key, so it does not
        suit one very large global memory).
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
        self._engine = None
        self._dim: int | None = None
        self._keys: list = []
        self._key_ids: dict = {}
        # The default penalty by cluster size, built here for sizes below 256 and grown on demand.
        o = self._options
        self._penalty_table = (_default_penalty(np.arange(256), o["alpha"], o["beta"]) if o["penalty"] is None
                               else np.zeros(0, dtype=np.float64))
        self._last_step = -1
        self._last_penalties = np.zeros(0)

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
            parsed = self._parse(fields)
            labels, sizes = self._run_engine(parsed)
            # The step is stored now: record its keys before anything else can fail (only
            # a user penalty callable can, and then the step stays stored).
            self._commit(parsed)
            penalties = self._penalties(parsed, labels, sizes)
            self._last_penalties = penalties
        out = like_input(penalties, fields["fingerprints"])
        if return_info:
            return out, {"labels": labels, "sizes": sizes}
        return out

    def _parse(self, fields) -> dict:
        points, n = as_float_rows(fields["fingerprints"])
        if self._dim is not None and points.shape[1] != self._dim:
            raise ValueError(f"fingerprints have {points.shape[1]} dimensions, the memory holds {self._dim}")
        correct = as_bool_vector(fields["correct"], n, "correct")
        # When every row goes to the engine, the engine checks that they are finite (and
        # _run_engine names a bad row); else it is done here.
        every_row_stored = (fields.get("valid") is None and self._options["nan_rows"] == "error"
                            and self._options["store"] == "all")
        valid = None if every_row_stored else self._valid_rows(points, fields.get("valid"), n)  # None: all
        key_ids, new_keys = self._key_ids_of(fields["keys"], n)
        step = fields.get("step")
        if step is None:
            if self._last_step == MAX_STEP:
                raise ValueError(f"step: the memory's last step is {MAX_STEP}, the largest; no step can follow it")
            step = self._last_step + 1
        else:
            step = check_int("step", step, low=0, high=MAX_STEP)
        if step < self._last_step:
            raise ValueError(f"step {step} is before the memory's last step {self._last_step}")
        group = key_ids if self._options["keyed"] else np.zeros(n, dtype=np.int64)
        if self._options["store"] == "all":
            group = 2 * group + correct
        n_stored = n
        if not every_row_stored:
            store = valid & ~correct if self._options["store"] == "wrong" else valid
            n_stored = int(np.count_nonzero(store))
            # The engine stores (and, with normalize, L2-normalises) the rows whose group is >= 0.
            if n_stored < n:
                group = np.where(store, group, -1)
        return dict(n=n, dim=points.shape[1], points=points, n_stored=n_stored,
                    finite_checked=not every_row_stored,
                    groups=np.ascontiguousarray(group, dtype=np.int64), correct=correct, valid=valid,
                    step=step, new_keys=new_keys)

    def _valid_rows(self, points: np.ndarray, valid, n: int) -> np.ndarray:
        if valid is not None:
            valid = as_bool_vector(valid, n, "valid")
        # A finite total means every entry is finite (an Inf or NaN entry makes it Inf or
        # NaN): then the per-row checks, ten times slower, are skipped.
        with np.errstate(over="ignore", invalid="ignore"):  # finite rows can sum past 1.8e308
            total = np.add.reduce(points, axis=None)
        if np.isfinite(total):
            return valid if valid is not None else np.ones(n, dtype=bool)
        finite = np.isfinite(points).all(axis=1)
        if valid is None and self._options["nan_rows"] == "skip":
            valid = finite | ~np.isnan(points).all(axis=1)
        elif valid is None:
            valid = np.ones(n, dtype=bool)
        bad = valid & ~finite
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"fingerprints contain NaN or Inf in row {row} ({int(bad.sum())} bad rows); "
                             "mark rows without a fingerprint with Batch.valid or nan_rows='skip'")
        return valid

    def _key_ids_of(self, keys, n: int):
        unique, inverse = unique_keys(keys, n)
        # Known keys' ids (-1 for new ones) in one C-level pass over the dict.
        ids = np.fromiter(map(self._key_ids.get, unique, itertools.repeat(-1)), dtype=np.int64, count=len(unique))
        fresh = np.flatnonzero(ids < 0)
        ids[fresh] = np.arange(len(self._keys), len(self._keys) + len(fresh))
        new_keys = unique if len(fresh) == len(unique) else [unique[i] for i in fresh.tolist()]
        return ids[inverse], new_keys

    def _run_engine(self, parsed):
        if parsed["n_stored"] == 0:
            return np.full(parsed["n"], -1, dtype=np.int64), np.zeros(parsed["n"], dtype=np.int64)
        engine = self._engine if self._engine is not None else self._new_engine(parsed["dim"])
        try:
            labels, sizes = engine.penalize_step(parsed["points"], parsed["groups"], parsed["step"])
        except ValueError:
            if not parsed["finite_checked"]:
                self._valid_rows(parsed["points"], None, parsed["n"])  # the precise error, if it is this
            raise
        self._engine = engine
        self._dim = parsed["dim"]
        return labels, sizes

    def _new_engine(self, dim: int):
        o = self._options
        from ._backends import memory_engine

        return memory_engine(o["backend"])(
            dim=dim, min_cluster_size=o["min_cluster_size"], min_samples=o["min_samples"],
            method=o["cluster_selection_method"], allow_single_cluster=False, epsilon=0.0,
            assign=o["assign"], vote_k=3, max_age=-1 if o["max_age"] is None else o["max_age"],
            capacity=-1 if o["capacity"] is None else o["capacity"], n_threads=o["n_threads"],
            normalize=o["normalize"])

    def _penalties(self, parsed, labels, sizes) -> np.ndarray:
        o = self._options
        target = _targeted(parsed["correct"], o["target"])
        if parsed["valid"] is not None:
            target &= parsed["valid"]
        if not o["penalize_noise"]:
            target &= labels >= 0
        if o["penalty"] is None:  # every row's penalty from the table, then zero where exempt
            return np.where(target, self._default_penalties(sizes), 0.0)
        penalties = np.zeros(parsed["n"], dtype=np.float64)
        if not target.any():
            return penalties
        values = np.asarray(o["penalty"](sizes[target].copy()), dtype=np.float64).reshape(-1)
        if values.shape != (int(target.sum()),) or not np.isfinite(values).all() or (values < 0).any():
            raise ValueError("penalty(sizes) must return one finite value >= 0 per size")
        penalties[target] = values
        return penalties

    def _default_penalties(self, sizes: np.ndarray) -> np.ndarray:
        """The default penalty of each size (int64 [M] -> float64 [M]): from a table kept
        between steps while sizes stay small, else computed per distinct size."""
        top = int(sizes.max())
        if top >= _PENALTY_TABLE_MAX:
            return _default_penalty(sizes, self._options["alpha"], self._options["beta"])
        table = self._penalty_table
        if top >= len(table):
            grown = np.arange(len(table), max(top + 1, 2 * len(table)), dtype=np.int64)
            table = np.concatenate([table, _default_penalty(grown, self._options["alpha"], self._options["beta"])])
            self._penalty_table = table
        return table[sizes]

    def _commit(self, parsed) -> None:
        new_keys = parsed["new_keys"]
        self._key_ids.update(zip(new_keys, range(len(self._keys), len(self._keys) + len(new_keys))))
        self._keys.extend(new_keys)
        self._last_step = parsed["step"]
        if self._options["max_age"] is not None and self._options["keyed"] and self._engine is not None:
            self._drop_expired_keys()

    def _drop_expired_keys(self) -> None:
        """Forget keys whose points have all expired, once they outnumber the live ones.

        The engine expires points by age whether their key comes back or not; a key none of
        whose groups holds a point is dead. Dropping dead keys only when there are more than
        ``max(live keys, DEAD_KEYS_KEPT)`` of them keeps the key list and the engine's
        per-key state within about twice what is live, at an amortised O(1) cost per key.
        The rule depends only on the memory's state, so a resumed memory behaves the same.
        """
        sizes = self._engine.key_sizes()
        per_key = 2 if self._options["store"] == "all" else 1
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
        self._key_ids = {k: i for i, k in enumerate(self._keys)}

    # -- state ---------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything needed to resume: options, keys, step and the engine's arrays."""
        with self._lock:
            engine = None if self._engine is None else {
                k: (np.array(v) if isinstance(v, np.ndarray) else int(v)) for k, v in self._engine.state().items()}
            return {
                "format": FORMAT, "version": STATE_VERSION,
                "options": {k: v for k, v in self._options.items() if k != "penalty"},
                "keys": list(self._keys), "last_step": int(self._last_step), "dim": self._dim,
                "last_penalties": self._last_penalties.copy(), "engine": engine,
            }

    def load_state_dict(self, state: Mapping) -> None:
        """Replace the memory by ``state`` (from :meth:`state_dict`); all or nothing."""
        with self._lock:
            checked = _check_state(state, self._options)
            engine = None
            if checked["engine"] is not None:
                engine = self._new_engine(checked["dim"])
                e = checked["engine"]
                engine.load_state(e["dim"], e["last_step"], e["offsets"], e["points"], e["steps"],
                                  e["labels"], e["mst_u"], e["mst_v"], e["mst_weight"])
            self._engine = engine
            self._dim = checked["dim"]
            self._keys = list(checked["keys"])
            self._key_ids = {k: i for i, k in enumerate(self._keys)}
            self._last_step = checked["last_step"]
            self._last_penalties = np.asarray(checked["last_penalties"], dtype=np.float64).copy()

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
            e = self._engine
            points = 0 if e is None else int(e.n_points)
            noise = 0 if e is None else int(e.n_noise)
            pen = self._last_penalties
            return {
                "keys": float(len(self._keys)),
                "groups": float(0 if e is None else e.n_keys),
                "points": float(points),
                "clusters": float(0 if e is None else e.n_clusters),
                "noise_fraction": float(noise / points) if points else 0.0,
                "penalty_mean": float(pen.mean()) if pen.size else 0.0,
                "penalty_max": float(pen.max()) if pen.size else 0.0,
                "step": float(self._last_step),
                "top1_eigenvalue_ratio": _top1_ratio(e),
            }

    def __repr__(self) -> str:
        return f"Memory(preset={self._preset!r}, points={0 if self._engine is None else self._engine.n_points})"


# -- helpers -------------------------------------------------------------------------------

def _validate_options(o: dict) -> dict:
    o = dict(o)
    for name in ("keyed", "normalize", "penalize_noise"):
        if not isinstance(o[name], (bool, np.bool_)):
            raise TypeError(f"{name} must be a bool, got {o[name]!r}")
        o[name] = bool(o[name])
    check_choice("store", o["store"], {"wrong", "all"})
    check_choice("cluster_selection_method", o["cluster_selection_method"], {"eom", "leaf"})
    check_choice("assign", o["assign"], {"exact", "paper"})
    check_choice("nan_rows", o["nan_rows"], {"error", "skip"})
    check_choice("target", o["target"], {"wrong", "right", "both", "none"})
    if o["target"] in ("right", "both") and o["store"] != "all":
        raise ValueError(f"target={o['target']!r} penalises correct rollouts by their own clusters, which "
                         f"needs store='all' (got store={o['store']!r})")
    check_choice("backend", o["backend"], {"cpp", "numba"})
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
