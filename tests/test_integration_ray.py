"""RemoteMemory: Memory in sharded named Ray actors gives the results of one local Memory."""
from __future__ import annotations

import os

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray not installed: pip install 'medscore[ray]'")

from medscore.integrations.ray import RemoteMemory, shard_of  # noqa: E402
from medscore.memory import Batch, Memory  # noqa: E402


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def simulated_steps(n_steps=4, n_keys=12, rollouts=8, dim=14, seed=0):
    """Rollouts of many prompts, a few recurring error modes per prompt, mixed key types."""
    rng = np.random.default_rng(seed)
    keys_pool = [i if i % 3 else f"prompt-{i}" for i in range(n_keys)]
    centres = rng.normal(size=(n_keys, 3, dim))
    for step in range(n_steps):
        keys = [k for k in keys_pool for _ in range(rollouts)]
        key_ids = np.repeat(np.arange(n_keys), rollouts)
        mode = rng.integers(0, 3, size=len(keys))
        fps = centres[key_ids, mode] + 0.01 * rng.normal(size=(len(keys), dim))
        correct = rng.random(len(keys)) < 0.3
        yield Batch(fps.astype(np.float32), keys, correct, step=step)


def test_shard_of_is_stable_and_spreads_keys():
    assert shard_of(12345, 4) == shard_of(np.int64(12345), 4)
    assert shard_of("a", 4) != shard_of(b"a", 4) or shard_of("b", 4) != shard_of(b"b", 4)
    assert len({shard_of(i, 4) for i in range(100)}) == 4
    with pytest.raises(TypeError, match="keys must be"):
        shard_of(1.5, 4)


def test_sharded_memory_equals_a_local_memory(ray_cluster, tmp_path):
    local = Memory(preset="paper")
    remote = RemoteMemory(preset="paper", name="t-equal", num_shards=3)
    for batch in simulated_steps():
        want, want_info = local.penalize(batch, return_info=True)
        got, got_info = remote.penalize(batch, return_info=True)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got_info["sizes"], want_info["sizes"])
    assert want.max() > 0
    m_local, m_remote = local.metrics(), remote.metrics()
    for name in ("keys", "groups", "points", "clusters", "noise_fraction", "penalty_mean", "penalty_max", "step"):
        assert m_remote[name] == pytest.approx(m_local[name], rel=1e-12), name
    assert m_remote["top1_eigenvalue_ratio"] == pytest.approx(m_local["top1_eigenvalue_ratio"], rel=1e-9)
    remote.kill()


def test_named_actors_are_shared_and_state_survives_save_and_load(ray_cluster, tmp_path):
    steps = list(simulated_steps(n_steps=4, seed=1))
    first = RemoteMemory(preset="paper", name="t-shared", num_shards=2)
    for batch in steps[:2]:
        first.penalize(batch)
    again = RemoteMemory(preset="paper", name="t-shared", num_shards=2)  # get_if_exists
    assert again.metrics()["points"] == first.metrics()["points"] > 0
    first.save(tmp_path / "memory.json")
    resumed = RemoteMemory(preset="paper", name="t-resumed", num_shards=2).load(tmp_path / "memory.json")
    for batch in steps[2:]:
        np.testing.assert_array_equal(resumed.penalize(batch), first.penalize(batch))
    with pytest.raises(ValueError, match="3 shards"):
        RemoteMemory(preset="paper", name="t-wrong", num_shards=3).load(tmp_path / "memory.json")
    for memory in (first, resumed):
        memory.kill()


def test_torch_in_torch_out(ray_cluster):
    torch = pytest.importorskip("torch")
    batch = next(simulated_steps(n_steps=1, seed=2))
    remote = RemoteMemory(preset="paper", name="t-torch", num_shards=2)
    out = remote.penalize(Batch(torch.from_numpy(batch.fingerprints), batch.keys, batch.correct, step=0))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (len(batch.keys),)
    remote.kill()


def test_bad_options_fail_in_the_caller(ray_cluster):
    with pytest.raises(ValueError, match="cannot be sharded"):
        RemoteMemory(preset=None, keyed=False, name="t-bad", num_shards=2)
    with pytest.raises((TypeError, ValueError)):
        RemoteMemory(preset="paper", name="t-bad2", alpah=0.1)


def test_trainer_checkpoints_resume_either_memory_kind(ray_cluster, tmp_path):
    """The trainers' checkpoint helpers save and load a RemoteMemory (a manifest and one file
    per shard) as they do a Memory; a checkpoint without a memory raises or, as chosen, warns."""
    from medscore.integrations._common import MEMORY_FILE, load_checkpoint_memory, save_checkpoint_memory

    steps = list(simulated_steps(n_steps=3, seed=3))
    remote, local = RemoteMemory(preset="paper", name="t-ckpt", num_shards=2), Memory(preset="paper")
    for batch in steps[:2]:
        remote.penalize(batch)
        local.penalize(batch)
    for memory, folder in ((remote, tmp_path / "remote" / "checkpoint-2"), (local, tmp_path / "local" / "checkpoint-2")):
        assert save_checkpoint_memory(memory, folder) == os.path.join(folder, MEMORY_FILE)
    resumed = RemoteMemory(preset="paper", name="t-ckpt-resumed", num_shards=2)
    assert load_checkpoint_memory(resumed, tmp_path / "remote" / "checkpoint-2")
    fresh = Memory(preset="paper")
    assert load_checkpoint_memory(fresh, tmp_path / "local" / "checkpoint-2")
    np.testing.assert_array_equal(resumed.penalize(steps[2]), fresh.penalize(steps[2]))
    with pytest.raises(FileNotFoundError, match="on_missing_memory"):
        load_checkpoint_memory(Memory(preset="paper"), tmp_path)
    with pytest.warns(RuntimeWarning, match="empty memory"):
        assert not load_checkpoint_memory(Memory(preset="paper"), tmp_path, policy="empty")
    for memory in (remote, resumed):
        memory.kill()


def test_trl_on_two_processes_inserts_each_step_once_into_a_shared_memory(ray_cluster, tmp_path):
    """Real GRPOTrainer steps on 2 CPU processes (torchrun, gloo): TRL gathers the generation
    batch on every rank; only the main process inserts it into the shared RemoteMemory."""
    import json
    import socket
    import subprocess
    import sys

    pytest.importorskip("trl", reason="TRL not installed: pip install 'medscore[trl]'")
    from tiny_lm import save_tiny

    tests = os.path.dirname(os.path.abspath(__file__))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")]),
           "MEDSCORE_NAMESPACE": "medscore-ddp-test", "MEDSCORE_MEMORY": "trl-ddp",
           "MEDSCORE_MODEL": save_tiny(str(tmp_path / "model")), "MEDSCORE_OUT": str(tmp_path / "run"),
           "MEDSCORE_RESULT": str(tmp_path / "result.json")}
    # Created here, so the actors outlive the ranks (their owner is this process).
    shared = RemoteMemory(preset="paper", name="trl-ddp", num_shards=2, namespace="medscore-ddp-test")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(port),
                           os.path.join(tests, "trl_ddp_worker.py")],
                          env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads((tmp_path / "result.json").read_text())
    # 2 steps x 2 processes x 8 completions, each stored once (the paper preset stores all).
    assert result["processes"] == 2 and result["points"] == 32
    assert shared.metrics()["points"] == 32 and shared.metrics()["keys"] == 4
    shared.kill()
