"""The MEDS reference procedure, slow and plain: the oracle of ``Memory(preset="paper")``.

Per step and per group (key, correctness), in the order the groups first appear:
1. vote: for each new rollout, scikit-learn's ``NearestNeighbors(n_neighbors=3,
   metric="cosine")`` on the raw vectors stored before the step (fewer neighbours when fewer
   are stored); majority of their labels, ties to the smallest label (noise is -1); the
   rollout's cluster size is that cluster's member count, or the number of noise points for
   a noise vote, or 0 when nothing is stored;
2. store the raw vectors, then refit the real ``hdbscan.HDBSCAN(min_cluster_size=2,
   min_samples=1, approx_min_span_tree=False)`` on all of the group's L2-normalised vectors;
3. a wrong rollout's penalty is ``min(alpha * ln(size + 1), beta)``.

Labels are renumbered by their earliest member (smallest insertion step, then smallest
normalised vector in lexicographic order), as medscore numbers them: the ``hdbscan``
library's own numbering follows its Boruvka traversal, which no other implementation can
reproduce, and "ties to the smallest label" needs one fixed, order-free numbering.
Also used as the baseline of ``benchmarks/suites/memory.py``.
"""
from __future__ import annotations

import math

import numpy as np


def earliest_member_numbering(labels: np.ndarray, normalized: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Relabel clusters 0, 1, ... in the order of their earliest member: the smallest
    (insertion step, normalised vector in lexicographic order); noise stays -1."""
    out = np.full(len(labels), -1, dtype=np.int64)
    earliest: dict[int, tuple] = {}
    for i, label in enumerate(labels.tolist()):
        if label >= 0:
            rank = (int(steps[i]), tuple(normalized[i].tolist()))
            if label not in earliest or rank < earliest[label]:
                earliest[label] = rank
    order = sorted(earliest, key=lambda label: earliest[label])
    renamed = {label: new for new, label in enumerate(order)}
    for i, label in enumerate(labels.tolist()):
        if label >= 0:
            out[i] = renamed[label]
    return out


def fit_labels(normalized: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Labels of the real hdbscan library on one group's normalised vectors."""
    import hdbscan

    if len(normalized) < 2:
        return np.full(len(normalized), -1, dtype=np.int64)
    model = hdbscan.HDBSCAN(min_cluster_size=2, min_samples=1, approx_min_span_tree=False)
    return earliest_member_numbering(model.fit(normalized).labels_, normalized, steps)


def vote(prior_raw: np.ndarray, prior_labels: np.ndarray, queries: np.ndarray, per_rollout: bool = False):
    """(labels, sizes) of the 3-NN cosine majority vote of each query row.

    ``per_rollout``: fit a fresh brute-force k-NN model for every query row, as the published
    code does ("a fresh brute-force k-NN model per new rollout", MEDS.md); else one model per
    group answers all of its rows. The neighbours are the same; only the cost differs.
    """
    from sklearn.neighbors import NearestNeighbors

    n = len(queries)
    if prior_raw is None or len(prior_raw) == 0:
        return np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=np.int64)
    k = min(3, len(prior_raw))
    if per_rollout:
        neighbours = np.concatenate([
            NearestNeighbors(n_neighbors=k, metric="cosine").fit(prior_raw).kneighbors(
                queries[i:i + 1], return_distance=False) for i in range(n)])
    else:
        neighbours = NearestNeighbors(n_neighbors=k, metric="cosine").fit(prior_raw).kneighbors(
            queries, return_distance=False)
    labels = np.empty(n, dtype=np.int64)
    sizes = np.empty(n, dtype=np.int64)
    for i, row in enumerate(neighbours):
        values, counts = np.unique(prior_labels[row], return_counts=True)
        label = int(values[np.argmax(counts)])  # first maximum: the smallest label
        labels[i] = label
        sizes[i] = int((prior_labels == label).sum())
    return labels, sizes


class ReferenceMEDS:
    """The reference procedure; ``step`` returns (penalties f64 [N], labels, sizes int64 [N]).

    ``knn_per_rollout=True`` fits one k-NN model per new rollout, as the published code does;
    the default fits one per group (the same answers, faster: the tests' oracle).
    """

    def __init__(self, alpha: float = 0.1, beta: float = 0.2, knn_per_rollout: bool = False):
        self.alpha, self.beta = alpha, beta
        self.knn_per_rollout = knn_per_rollout
        self.raw: dict = {}
        self.normalized: dict = {}
        self.labels: dict = {}
        self.steps: dict = {}
        self.n_steps = 0

    def step(self, fingerprints, keys, correct):
        X = np.asarray(fingerprints, dtype=np.float64)
        correct = np.asarray(correct, dtype=bool)
        n = len(X)
        penalties = np.zeros(n)
        labels = np.full(n, -1, dtype=np.int64)
        sizes = np.zeros(n, dtype=np.int64)
        groups: dict = {}
        for i, (key, ok) in enumerate(zip(list(keys), correct.tolist())):
            groups.setdefault((key, ok), []).append(i)
        for group, rows in groups.items():
            rows = np.asarray(rows)
            labels[rows], sizes[rows] = vote(self.raw.get(group), self.labels.get(group), X[rows],
                                              per_rollout=self.knn_per_rollout)
            new_raw = X[rows]
            new_norm = new_raw / np.linalg.norm(new_raw, axis=1, keepdims=True)
            self.raw[group] = np.concatenate([self.raw[group], new_raw]) if group in self.raw else new_raw
            self.normalized[group] = (np.concatenate([self.normalized[group], new_norm])
                                      if group in self.normalized else new_norm)
            new_steps = np.full(len(rows), self.n_steps, dtype=np.int64)
            self.steps[group] = np.concatenate([self.steps[group], new_steps]) if group in self.steps else new_steps
            self.labels[group] = fit_labels(self.normalized[group], self.steps[group])
        for i in np.flatnonzero(~correct):
            penalties[i] = min(self.alpha * math.log(int(sizes[i]) + 1), self.beta)
        self.n_steps += 1
        return penalties, labels, sizes


def simulated_run(n_prompts: int, rollouts: int = 16, dim: int = 14, epochs: int = 3,
                  prompts_per_step: int | None = None, modes: int = 3, duplicates: float = 0.0,
                  seed: int = 0):
    """Yield (fingerprints f64 [B, dim], keys int64 [B], correct bool [B]) per step.

    Every prompt has a few recurring failure modes (random centres); a rollout is a mode
    plus noise of a prompt-specific scale. Each epoch visits every prompt once, in
    ``prompts_per_step`` prompts per step. With ``duplicates`` > 0 that fraction of
    rollouts repeats an earlier rollout of its prompt exactly.
    """
    rng = np.random.default_rng(seed)
    prompts_per_step = prompts_per_step or n_prompts
    centres = rng.normal(size=(n_prompts, modes, dim))
    scale = rng.uniform(0.05, 0.6, size=n_prompts)
    accuracy = rng.uniform(0.0, 0.8, size=n_prompts)
    history: dict[int, list] = {}
    for _ in range(epochs):
        order = rng.permutation(n_prompts)
        for start in range(0, n_prompts, prompts_per_step):
            prompts = order[start:start + prompts_per_step]
            keys = np.repeat(prompts, rollouts).astype(np.int64)
            mode = rng.integers(0, modes, size=len(keys))
            X = centres[keys, mode] + rng.normal(size=(len(keys), dim)) * scale[keys, None]
            correct = rng.random(len(keys)) < accuracy[keys]
            if duplicates > 0:
                for i in np.flatnonzero(rng.random(len(keys)) < duplicates):
                    past = history.get(int(keys[i]))
                    if past:
                        X[i] = past[rng.integers(len(past))]
            for i, k in enumerate(keys.tolist()):
                history.setdefault(k, []).append(X[i].copy())
            yield X, keys, correct
