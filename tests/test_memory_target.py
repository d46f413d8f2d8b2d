"""Memory's penalty target (wrong | right | both | none) and the paper preset's cap (beta = 2 alpha)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from medscore.memory import Batch, Memory


def steps(seed=0, n_steps=4):
    """Recurring modes, correct and wrong rollouts of two prompts, per step."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 6))
    for step in range(n_steps):
        rows = np.stack([centres[i % 3] + 1e-3 * rng.normal(size=6) for i in range(12)])
        correct = np.array([i % 4 == 0 for i in range(12)])
        yield Batch(rows, [i % 2 for i in range(12)], correct, step=step)


@pytest.mark.parametrize("target", ["wrong", "right", "both", "none"])
def test_target_picks_the_penalised_rollouts_from_the_same_clusters(target):
    memory = Memory(preset="paper", target=target)
    for batch in steps():
        penalties, info = memory.penalize(batch, return_info=True)
    want = np.array([min(0.1 * math.log(s + 1), 0.2) for s in info["sizes"]])
    chosen = {"wrong": ~batch.correct, "right": batch.correct, "both": np.ones(12, bool),
              "none": np.zeros(12, bool)}[target]
    np.testing.assert_array_equal(penalties, np.where(chosen, want, 0.0))
    assert (penalties[chosen] > 0).all()  # every row of this history sits in a cluster


def test_the_target_changes_no_cluster():
    runs = {t: Memory(preset="paper", target=t) for t in ("wrong", "both")}
    for batch in steps(seed=1):
        results = {t: m.penalize(batch, return_info=True) for t, m in runs.items()}
    (wrong, info_w), (both, info_b) = results["wrong"], results["both"]
    np.testing.assert_array_equal(info_w["labels"], info_b["labels"])
    np.testing.assert_array_equal(wrong[~batch.correct], both[~batch.correct])


def test_target_on_correct_rollouts_needs_them_stored():
    with pytest.raises(ValueError, match="needs store='all'"):
        Memory(target="right")
    with pytest.raises(ValueError, match="target must be one of"):
        Memory(preset="paper", target="wrongs")
    assert Memory(store="all", target="both").options["target"] == "both"


def test_paper_cap_follows_alpha_unless_given():
    assert Memory(preset="paper").options["beta"] == 0.2
    assert Memory(preset="paper", alpha=0.02).options["beta"] == 0.04  # the 8B runs: coef 0.02, cap 0.04
    assert Memory(preset="paper", alpha=0.02, beta=0.5).options["beta"] == 0.5
    assert Memory(alpha=0.02).options["beta"] == 0.2  # medscore's defaults keep their own cap


def test_target_survives_save_and_load(tmp_path):
    memory = Memory(preset="paper", target="both")
    for batch in steps(n_steps=2):
        memory.penalize(batch)
    memory.save(tmp_path / "m.bin")
    loaded = Memory.load(tmp_path / "m.bin")
    assert loaded.options["target"] == "both"
    batch = next(iter(steps(seed=3, n_steps=1)))
    batch.step = 2
    np.testing.assert_array_equal(loaded.penalize(batch), memory.penalize(batch))
