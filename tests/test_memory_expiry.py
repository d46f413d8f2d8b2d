"""``max_age`` bounds the memory by what is live (issue 20, item 2).

Points expire by age whether their key comes back or not (it used to be only when it came
back, so fresh prompts every step grew the memory without bound), and keys with no point
left are dropped once they outnumber the live ones. Answers are what they were: each key
holds exactly its points of the last ``max_age + 1`` steps, clustered as a batch refit.
"""
import numpy as np
import pytest

import medscore
from conftest import load_backend
from medscore.memory import DEAD_KEYS_KEPT
from test_far_rows import _state_bits
from test_memory import _refit_labels

ENGINES = ("cpp", "numba")


def _fresh_prompts(step, rng, prompts=8, rollouts=4, dim=6):
    """A step of new prompts (never seen again), each with a few near-identical mistakes."""
    keys = np.repeat(np.arange(step * prompts, (step + 1) * prompts), rollouts)
    X = np.repeat(rng.normal(size=(prompts * 2, dim)), rollouts // 2, axis=0)
    X += rng.normal(scale=1e-3, size=X.shape)
    return medscore.Batch(X, keys=keys, correct=np.zeros(len(keys), dtype=bool), step=step)


@pytest.mark.parametrize("engine", ENGINES)
def test_fresh_prompts_every_step_stay_bounded(engine):
    # The case: 400 steps of 8 new prompts x 4 rollouts with max_age=5 held 12,800
    # points; at most (5 + 1) steps x 32 rollouts are live.
    memory = medscore.Memory(max_age=5, backend=engine)
    rng = np.random.default_rng(0)
    for step in range(400):
        memory.penalize(_fresh_prompts(step, rng))
        live_keys = 8 * min(step + 1, 6)
        assert memory.metrics()["points"] == 4 * live_keys
        n_keys = len(memory.state_dict()["keys"])
        assert live_keys <= n_keys <= live_keys + max(live_keys, DEAD_KEYS_KEPT) + 8
        assert memory._engine.key_sizes().size <= n_keys


@pytest.mark.parametrize("engine", ENGINES)
def test_each_key_holds_its_recent_points_clustered_as_a_refit(engine):
    memory = medscore.Memory(max_age=2, store="all", backend=engine)
    rng = np.random.default_rng(3)
    history = []  # (step, key, correct, row)
    for step in range(12):
        n = 16
        keys = rng.integers(0, 40 if step % 3 else 6, size=n)  # some keys return, most do not
        X = rng.normal(size=(n, 5))
        correct = rng.random(n) < 0.3
        memory.penalize(medscore.Batch(X, keys=keys, correct=correct, step=step))
        history += [(step, int(k), bool(c), x) for k, c, x in zip(keys, correct, X)]
        state = memory.state_dict()
        engine_state = state["engine"]
        key_ids = {k: i for i, k in enumerate(state["keys"])}
        live = [h for h in history if step - h[0] <= 2]
        assert engine_state["offsets"][-1] == len(live)
        for k, i in key_ids.items():
            for c in (False, True):
                group = 2 * i + int(c)
                mine = [h for h in live if h[1] == k and h[2] == c]
                if group + 1 >= engine_state["offsets"].size:  # a group the engine never held
                    assert not mine
                    continue
                seg = slice(engine_state["offsets"][group], engine_state["offsets"][group + 1])
                assert seg.stop - seg.start == len(mine)
                if mine:
                    points = engine_state["points"][seg]
                    steps = engine_state["steps"][seg]
                    assert steps.tolist() == [h[0] for h in mine]
                    np.testing.assert_array_equal(engine_state["labels"][seg], _refit_labels(points, steps, 1))


def test_engines_expire_alike_and_a_resumed_memory_continues_identically(tmp_path):
    load_backend("numba")
    rng = np.random.default_rng(7)
    batches = [_fresh_prompts(step, rng) for step in range(90)]
    cpp, numba_memory = (medscore.Memory(max_age=3, backend=b) for b in ENGINES)
    for batch in batches[:60]:
        np.testing.assert_array_equal(cpp.penalize(batch), numba_memory.penalize(batch))
    a, b = _state_bits(cpp), _state_bits(numba_memory)
    assert a["options"].pop("backend") != b["options"].pop("backend")
    assert a == b
    cpp.save(tmp_path / "m.ckpt")
    resumed = medscore.Memory.load(tmp_path / "m.ckpt")
    for batch in batches[60:]:
        np.testing.assert_array_equal(cpp.penalize(batch), resumed.penalize(batch))
    assert _state_bits(cpp) == _state_bits(resumed)


def test_without_max_age_nothing_is_forgotten():
    memory = medscore.Memory()
    rng = np.random.default_rng(1)
    for step in range(20):
        memory.penalize(_fresh_prompts(step, rng))
    assert memory.metrics()["points"] == 20 * 32 and len(memory.state_dict()["keys"]) == 160
