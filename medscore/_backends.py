"""The one place where clustering backends are chosen.

``"cpp"`` is the compiled extension ``medscore._core``; ``"numba"`` is ``medscore._numba``,
which needs the ``numba`` extra. Both export the functions listed in ``docs/SPEC.md``.
"""
from __future__ import annotations

import functools
import importlib
from typing import Any, Protocol, runtime_checkable

BACKENDS = ("cpp", "numba")


# The interfaces every backend's stateful engines implement (docs/SPEC.md, "Stateful engines");
# tests/test_backends.py checks both backends' classes against them, member by member.

@runtime_checkable
class IncrementalEngine(Protocol):
    """``IncrementalHDBSCAN(min_cluster_size, min_samples, method, allow_single_cluster, capacity=0,
    max_cluster_size=0, epsilon_max=inf)``: exact HDBSCAN* under inserts and removals."""

    def insert(self, X) -> int: ...
    def remove(self, ids) -> None: ...
    size: int
    dim: int
    next_id: int
    next_label: int
    points: Any
    ids: Any
    knn_index: Any
    knn_dist: Any
    core_distances: Any
    mst: Any
    labels: Any
    probabilities: Any
    condensed_tree: Any


@runtime_checkable
class KeyedMemoryEngine(Protocol):
    """``KeyedMemory(dim, min_cluster_size, min_samples, method, allow_single_cluster, epsilon,
    assign, vote_k, max_age, capacity, n_threads, normalize=False)``: one clustering per group."""

    def penalize_step(self, points, keys, step): ...
    def state(self) -> dict: ...
    def load_state(self, dim, last_step, offsets, points, steps, labels, mst_u, mst_v, mst_weight) -> None: ...
    def moments(self): ...
    def key_labels(self, key): ...
    def key_steps(self, key): ...
    def key_sizes(self): ...
    def compact(self, kept) -> None: ...
    last_step: int
    n_keys: int
    n_points: int
    n_clusters: int
    n_noise: int


@runtime_checkable
class MemoryRules(Protocol):
    """``Memory(options: _core.MemoryOptions, penalty=None)`` and ``Memory.from_state(options,
    state, penalty=None)``: the rules of medscore.Memory over a KeyedMemoryEngine."""

    def penalize(self, points, keys, correct, valid, step): ...
    def state(self) -> dict: ...
    dim: int
    last_step: int
    n_keys: int
    keys: Any
    last_penalties: Any
    engine: Any


def get_backend(name: str):
    """Return the module implementing backend ``name`` (``"cpp"`` or ``"numba"``)."""
    if name == "cpp":
        return importlib.import_module("medscore._core")
    if name == "numba":
        try:
            importlib.import_module("numba")
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "backend='numba' needs numba: pip install 'medscore[numba]'"
            ) from exc
        return importlib.import_module("medscore._numba")
    raise ValueError(f"backend must be one of {list(BACKENDS)}, got {name!r}")


def incremental_engine(name: str, knn: str = "auto"):
    """A factory of backend ``name``'s incremental HDBSCAN* engine.

    The factory takes ``(min_cluster_size, min_samples, method, allow_single_cluster,
    capacity=0, max_cluster_size=0, epsilon_max=inf)``. ``knn`` is the Numba engine's neighbour search: "faiss" (float32
    candidates certified in float64), "exact" (brute force) or "auto" (FAISS where installed).
    The C++ engine searches its kd-tree, which is exact: it takes "auto" or "exact".
    """
    if name == "cpp":
        if knn == "faiss":
            raise ValueError("knn='faiss' is a search of backend='numba'; the cpp backend searches "
                             "exactly with its kd-tree: use knn='auto' (or 'exact')")
        return get_backend("cpp").IncrementalHDBSCAN
    get_backend(name)
    from ._numba.incremental_hdbscan import IncrementalHDBSCAN

    if knn == "auto":
        try:
            import faiss  # noqa: F401
            knn = "faiss"
        except ImportError:
            knn = "exact"
    return functools.partial(IncrementalHDBSCAN, knn=knn)


def memory_engine(name: str):
    """Backend ``name``'s keyed-memory engine class (``KeyedMemory``, same constructor)."""
    if name == "cpp":
        return get_backend("cpp").KeyedMemory
    get_backend(name)
    from ._numba.memory import KeyedMemory

    return KeyedMemory


def memory_rules(name: str):
    """Backend ``name``'s ``Memory`` (the memory's rules over its engine): ``medscore._core.Memory``
    or its mirror ``medscore._numba.error_memory.Memory``. Both take ``(options: _core.MemoryOptions,
    penalty=None)`` and ``from_state(options, state, penalty=None)``, and have ``penalize(points,
    keys, correct, valid, step) -> (penalties, labels, sizes)``, ``state()``, ``dim``,
    ``last_step``, ``n_keys``, ``keys``, ``last_penalties`` and ``engine`` (a ``KeyedMemory`` or None)."""
    if name == "cpp":
        return get_backend("cpp").Memory
    get_backend(name)
    from ._numba.error_memory import Memory

    return Memory


def available_backends() -> list[str]:
    """Names of the backends that import here."""
    out = []
    for name in BACKENDS:
        try:
            get_backend(name)
        except ImportError:
            continue
        out.append(name)
    return out
