"""Memory(preset="paper") against the MEDS reference procedure (real hdbscan + sklearn)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("hdbscan")
pytest.importorskip("sklearn")

import medscore  # noqa: E402
from meds_reference import ReferenceMEDS, simulated_run  # noqa: E402


def _engine_backends():
    return ["cpp", "numba"]


def _memory(backend):
    try:
        memory = medscore.Memory(preset="paper", backend=backend)
        memory.penalize(medscore.Batch(np.ones((1, 2)), [0], [True]))
    except ImportError as exc:
        pytest.skip(f"backend {backend!r} not available: {exc}")
    return medscore.Memory(preset="paper", backend=backend)


@pytest.mark.parametrize("backend", _engine_backends())
@pytest.mark.parametrize("duplicates", [0.0, 0.25])
def test_paper_preset_equals_reference_bit_for_bit(backend, duplicates):
    reference = ReferenceMEDS()
    memory = _memory(backend)
    run = simulated_run(n_prompts=40, epochs=4, prompts_per_step=20, seed=3, duplicates=duplicates)
    for X, keys, correct in run:
        want_pen, want_labels, want_sizes = reference.step(X, keys, correct)
        got_pen, info = memory.penalize(medscore.Batch(X, keys, correct), return_info=True)
        np.testing.assert_array_equal(info["sizes"], want_sizes)
        np.testing.assert_array_equal(info["labels"], want_labels)
        assert got_pen.dtype == np.float64
        assert np.array_equal(got_pen, want_pen)  # bit for bit


@pytest.mark.parametrize("duplicates", [0.0, 0.25])
def test_published_per_rollout_knn_equals_the_batched_reference(duplicates):
    # The benchmark times the reference as published (a k-NN model per new rollout); the
    # tests' oracle batches the k-NN per group. They must be the same procedure.
    published, batched = ReferenceMEDS(knn_per_rollout=True), ReferenceMEDS()
    for X, keys, correct in simulated_run(n_prompts=24, epochs=3, prompts_per_step=12, seed=8, duplicates=duplicates):
        for got, want in zip(published.step(X, keys, correct), batched.step(X, keys, correct)):
            assert np.array_equal(got, want)


@pytest.mark.slow
def test_paper_preset_equals_reference_hundreds_of_prompts():
    reference = ReferenceMEDS()
    memory = medscore.Memory(preset="paper")
    for X, keys, correct in simulated_run(n_prompts=200, epochs=3, prompts_per_step=100, seed=11, duplicates=0.1):
        want_pen, _, want_sizes = reference.step(X, keys, correct)
        got_pen, info = memory.penalize(medscore.Batch(X, keys, correct), return_info=True)
        np.testing.assert_array_equal(info["sizes"], want_sizes)
        assert np.array_equal(got_pen, want_pen)


def test_stored_clusterings_equal_hdbscan_refit():
    """After a run, every group's labels equal a fresh hdbscan fit on its stored points."""
    from meds_reference import fit_labels

    memory = medscore.Memory(preset="paper")
    for X, keys, correct in simulated_run(n_prompts=12, epochs=5, prompts_per_step=6, seed=5):
        memory.penalize(medscore.Batch(X, keys, correct))
    state = memory.state_dict()["engine"]
    offsets = state["offsets"]
    checked = 0
    for g in range(len(offsets) - 1):
        lo, hi = offsets[g], offsets[g + 1]
        if hi - lo < 2:
            continue
        np.testing.assert_array_equal(state["labels"][lo:hi], fit_labels(state["points"][lo:hi], state["steps"][lo:hi]))
        checked += 1
    assert checked > 10


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_penalties_do_not_depend_on_row_order(seed):
    """Permuting the rollouts of every batch permutes the penalties and nothing else."""
    rng = np.random.default_rng(seed)
    plain, shuffled = medscore.Memory(preset="paper"), medscore.Memory(preset="paper")
    for X, keys, correct in simulated_run(n_prompts=10, epochs=4, prompts_per_step=5, seed=seed, duplicates=0.3):
        perm = rng.permutation(len(X))
        a, info_a = plain.penalize(medscore.Batch(X, keys, correct), return_info=True)
        b, info_b = shuffled.penalize(medscore.Batch(X[perm], keys[perm], correct[perm]), return_info=True)
        assert np.array_equal(a[perm], b)
        np.testing.assert_array_equal(info_a["labels"][perm], info_b["labels"])
