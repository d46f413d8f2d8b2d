"""A MEDS memory shared by many processes: ``Memory`` in named Ray actors, sharded by key.

Where training outgrows one process (veRL's reward-loop workers, OpenRLHF's engines),
every process builds ``RemoteMemory(name=...)`` and gets the same actors (named actors,
``get_if_exists=True``). Keys are spread over ``num_shards`` actors by a stable hash; a
key's clustering lives in one actor, so the penalties are exactly those of one local
``Memory`` (the memory is per key). Calls from several processes are serialised per actor.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile

import numpy as np

from ._common import require

MANIFEST_FORMAT = "medscore.RemoteMemory"


def shard_of(key, num_shards: int) -> int:
    """Stable shard of a key (same in every process and run: not Python's salted hash)."""
    if isinstance(key, (np.integer,)):
        key = int(key)
    if isinstance(key, bool) or not isinstance(key, (int, str, bytes)):
        raise TypeError(f"keys must be int, str or bytes, got {type(key).__name__}")
    tag = {int: b"i", str: b"s", bytes: b"b"}[type(key)]
    raw = key if isinstance(key, bytes) else str(key).encode()
    digest = hashlib.blake2b(tag + raw, digest_size=8).digest()
    return int.from_bytes(digest, "little") % num_shards


class _Shard:
    """The body of one actor: a local ``Memory``."""

    def __init__(self, preset, options):
        from medscore.memory import Memory

        self.memory = Memory(preset=preset, **options)

    def penalize(self, fields: dict):
        from medscore.memory import Batch

        penalties, info = self.memory.penalize(Batch(**fields), return_info=True)
        return np.asarray(penalties), info

    def state_dict(self):
        return self.memory.state_dict()

    def load_state_dict(self, state):
        self.memory.load_state_dict(state)

    def metrics(self):
        return self.memory.metrics()

    def moments(self):
        """(count, sum [D], sum of outer products [D, D]) of the stored fingerprints."""
        engine = self.memory._engine
        if engine is None or engine.n_points == 0:
            return 0, None, None
        return engine.moments()


def _to_numpy(values):
    if hasattr(values, "detach"):
        return values.detach().float().cpu().numpy()
    return np.asarray(values)


def _plain_keys(keys) -> list:
    keys = _to_numpy(keys).tolist() if hasattr(keys, "detach") or isinstance(keys, np.ndarray) else list(keys)
    return [int(k) if isinstance(k, np.integer) else k for k in keys]


class RemoteMemory:
    """``Memory`` in ``num_shards`` named Ray actors; same verbs as ``Memory``.

    Parameters
    ----------
    preset : str or None
        ``Memory`` preset.
    name : str
        Actor name prefix; processes using the same name in the same Ray namespace share the
        memory (Ray gives each driver process an anonymous namespace unless ``namespace`` or
        ``ray.init(namespace=...)`` names one; the actors live as long as the process that
        created them, or longer with ``detached``).
    num_shards : int
        Actors; keys are spread by a stable hash (:func:`shard_of`).
    namespace : str or None
        Ray namespace of the actors.
    detached : bool
        Keep the actors after the creating driver exits.
    actor_options : dict
        Further ``.options()`` of the actors (``num_cpus``, resources, ...).
    **memory_options
        Keyword arguments of ``medscore.Memory``; ``keyed=False`` needs ``num_shards=1``.

    Attributes
    ----------
    shared : bool, True: one memory for every process that names it, so a trainer running in
        several processes inserts each step once (its main process calls ``penalize``).
    """

    shared = True

    def __init__(self, preset: str | None = "paper", *, name: str = "medscore-memory", num_shards: int = 1,
                 namespace: str | None = None, detached: bool = False, actor_options: dict | None = None,
                 **memory_options):
        ray = require("ray", "ray")
        if not isinstance(num_shards, int) or num_shards < 1:
            raise ValueError(f"num_shards must be a positive int, got {num_shards!r}")
        if not memory_options.get("keyed", True) and num_shards > 1:
            raise ValueError("keyed=False is one global clustering and cannot be sharded: use num_shards=1")
        if not ray.is_initialized():
            raise RuntimeError("RemoteMemory needs a running Ray: call ray.init() first")
        from medscore.memory import Memory

        Memory(preset=preset, **memory_options)  # validate the options here, not in an actor
        self.name, self.num_shards = name, num_shards
        options = {"num_cpus": 0, **(actor_options or {}), "get_if_exists": True, "namespace": namespace}
        if detached:
            options["lifetime"] = "detached"
        actor = ray.remote(_Shard)
        self._actors = [actor.options(name=f"{name}/{i}-of-{num_shards}", **options).remote(preset, memory_options)
                        for i in range(num_shards)]
        self._last_penalties = np.zeros(0)
        self._last_step = -1

    def _get(self, refs):
        return require("ray", "ray").get(refs)

    def penalize(self, batch, return_info: bool = False):
        """Penalties of a step's rollouts, as ``Memory.penalize`` (same input, same output)."""
        from medscore._batch import batch_fields, like_input

        fields = dict(batch_fields(batch))
        if fields.get("step") is None:  # a shard left out of a step must not lag behind
            fields["step"] = self._last_step + 1
        self._last_step = int(fields["step"])
        points = _to_numpy(fields["fingerprints"])
        keys = _plain_keys(fields["keys"])
        if len(keys) != len(points):
            raise ValueError(f"keys has {len(keys)} entries, fingerprints {len(points)} rows")
        shards = np.array([shard_of(k, self.num_shards) for k in keys], dtype=np.int64)
        rows_of = {s: np.flatnonzero(shards == s) for s in np.unique(shards)}
        refs = {s: self._actors[s].penalize.remote(self._fields_of(fields, points, keys, rows))
                for s, rows in rows_of.items()}
        results = dict(zip(refs, self._get(list(refs.values()))))
        penalties = np.zeros(len(keys))
        labels = np.full(len(keys), -1, dtype=np.int64)
        sizes = np.zeros(len(keys), dtype=np.int64)
        for s, rows in rows_of.items():
            penalties[rows], info = results[s]
            labels[rows], sizes[rows] = info["labels"], info["sizes"]
        self._last_penalties = penalties
        out = like_input(penalties, fields["fingerprints"])
        return (out, {"labels": labels, "sizes": sizes}) if return_info else out

    @staticmethod
    def _fields_of(fields, points, keys, rows) -> dict:
        pick = {"fingerprints": points[rows], "keys": [keys[i] for i in rows],
                "correct": _to_numpy(fields["correct"])[rows], "step": fields.get("step")}
        if fields.get("valid") is not None:
            pick["valid"] = _to_numpy(fields["valid"])[rows]
        return pick

    def state_dict(self) -> dict:
        """``{"format", "num_shards", "shards": [Memory state dicts]}``."""
        return {"format": MANIFEST_FORMAT, "num_shards": self.num_shards,
                "shards": self._get([a.state_dict.remote() for a in self._actors])}

    def load_state_dict(self, state: dict) -> None:
        """Replace every shard's memory by ``state`` (from :meth:`state_dict`)."""
        if state.get("format") != MANIFEST_FORMAT or state.get("num_shards") != self.num_shards:
            raise ValueError(f"state is not a RemoteMemory state with {self.num_shards} shards")
        self._get([a.load_state_dict.remote(s) for a, s in zip(self._actors, state["shards"])])

    def save(self, path) -> None:
        """Write one checkpoint file per shard next to ``path``, then ``path`` (a JSON
        manifest naming them) atomically; each file is written as ``Memory.save`` does."""
        from medscore._checkpoint import write_state

        path = os.fspath(path)
        states = self.state_dict()["shards"]
        files = [f"{os.path.basename(path)}.shard{i}-of-{self.num_shards}" for i in range(self.num_shards)]
        for state, file in zip(states, files):
            write_state(os.path.join(os.path.dirname(path) or ".", file), state)
        manifest = json.dumps({"format": MANIFEST_FORMAT, "num_shards": self.num_shards, "files": files})
        folder = os.path.dirname(path) or "."
        with tempfile.NamedTemporaryFile("w", dir=folder, delete=False) as tmp:
            tmp.write(manifest)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp.name, path)

    def load(self, path) -> "RemoteMemory":
        """Load the shards saved at ``path`` into this memory's actors; returns ``self``."""
        from medscore._checkpoint import read_state

        path = os.fspath(path)
        with open(path) as f:
            manifest = json.load(f)
        if manifest.get("format") != MANIFEST_FORMAT or manifest.get("num_shards") != self.num_shards:
            raise ValueError(f"{path} is not a RemoteMemory checkpoint with {self.num_shards} shards")
        folder = os.path.dirname(path) or "."
        shards = [read_state(os.path.join(folder, f)) for f in manifest["files"]]
        self.load_state_dict({"format": MANIFEST_FORMAT, "num_shards": self.num_shards, "shards": shards})
        return self

    def metrics(self) -> dict[str, float]:
        """``Memory.metrics()`` over all shards; the penalty figures are those of this
        process's last ``penalize`` call."""
        parts = self._get([a.metrics.remote() for a in self._actors])
        points = sum(p["points"] for p in parts)
        noise = sum(p["noise_fraction"] * p["points"] for p in parts)
        pen = self._last_penalties
        return {
            "keys": float(sum(p["keys"] for p in parts)),
            "groups": float(sum(p["groups"] for p in parts)),
            "points": float(points),
            "clusters": float(sum(p["clusters"] for p in parts)),
            "noise_fraction": float(noise / points) if points else 0.0,
            "penalty_mean": float(pen.mean()) if pen.size else 0.0,
            "penalty_max": float(pen.max()) if pen.size else 0.0,
            "step": float(max(p["step"] for p in parts)),
            "top1_eigenvalue_ratio": self._top1_ratio(),
        }

    def _top1_ratio(self) -> float:
        moments = [m for m in self._get([a.moments.remote() for a in self._actors]) if m[0]]
        count = sum(m[0] for m in moments)
        if count < 2:
            return 0.0
        total = sum(np.asarray(m[1], dtype=np.float64) for m in moments)
        outer = sum(np.asarray(m[2], dtype=np.float64) for m in moments)
        mean = total / count
        cov = outer / count - np.outer(mean, mean)
        eig = np.linalg.eigvalsh((cov + cov.T) / 2)
        s = float(np.clip(eig, 0, None).sum())
        return float(max(eig[-1], 0.0) / s) if s > 0 else 0.0

    def kill(self) -> None:
        """Stop the actors (their memory is lost unless saved)."""
        ray = require("ray", "ray")
        for actor in self._actors:
            ray.kill(actor)
