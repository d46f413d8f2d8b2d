"""veRL 0.9.1's real FSDP actor engine on 2 CPU ranks (gloo) computing log-probs with the MEDS
fingerprint hook, instead of the in-process stand-in of the other veRL tests.

``tests/verl_engine_worker.py`` builds ``FSDPEngineWithLMHead`` from veRL's composed
``ppo_trainer`` config (tiny random Qwen2, tied embeddings, no padding removal: veRL's packed
path needs flash-attention), runs ``infer_batch`` in ``eval_mode`` on each rank's rollouts
with the hook installed, and compares the fingerprints with those of the unsharded model on
the same micro-batches. veRL has no CPU platform and registers its FSDP engines for cuda and
npu only: the worker plugs a CPU platform in through veRL's ``set_platform`` and picks the
engine with ``VERL_ENGINE_DEVICE=cuda`` (both veRL's own extension points).

Found on the way: veRL's engine imports TRL's value-head model whenever TRL is installed, and
TRL 1.x has none (``skip_trl_value_head_patch``, applied by ``meds_worker_class``); veRL's
FSDP1 path cannot run on the CPU at all (it passes ``sync_module_states=True``, which torch's
FSDP1 allows for GPU parameters only).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("verl", reason="veRL not installed: pip install 'medscore[verl]'")
pytest.importorskip("transformers")

from tiny_lm import save_tiny  # noqa: E402

TESTS = os.path.dirname(os.path.abspath(__file__))
pytestmark = pytest.mark.filterwarnings("ignore:.* engine is not available:UserWarning")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny(str(tmp_path_factory.mktemp("tiny")), seed=4)


def run_engine(model_dir, tmp_path, strategy: str, dtype: str) -> list[dict]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(port),
                           os.path.join(TESTS, "verl_engine_worker.py"), model_dir, strategy, dtype, str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_fsdp2_engine_log_prob_forward_gives_the_unsharded_fingerprints(model_dir, tmp_path, dtype):
    for rank, result in enumerate(run_engine(model_dir, tmp_path, "fsdp2", dtype)):
        assert "error" not in result, result.get("error")
        assert result["engine"] == "FSDPEngineWithLMHead" and result["module"] == "FSDPQwen2ForCausalLM"
        assert result["keys"] == ["log_probs", "medscore_fingerprints"]
        got, want = result["fingerprints"], result["reference"]
        assert got.shape == (8, 2) and torch.isfinite(want).all()
        if dtype == "fp32":  # the same fp32 arithmetic as the unsharded model: bit for bit
            torch.testing.assert_close(got, want, rtol=0, atol=0, msg=f"rank {rank}")
        else:  # veRL's default: the forward under bf16 autocast
            assert not torch.equal(got, want)
            torch.testing.assert_close(got, want, rtol=0.05, atol=0.02, msg=f"rank {rank}")
        assert result["log_probs"].size(0) == 8


def test_fsdp1_engine_cannot_run_on_the_cpu(model_dir, tmp_path):
    """veRL's FSDP1 engine (its default strategy) wraps with sync_module_states=True, which
    torch's FSDP1 accepts for GPU parameters only: not a medscore limit, and not avoidable by a
    setting (veRL hard-codes it)."""
    for result in run_engine(model_dir, tmp_path, "fsdp", "fp32"):
        assert "sync_module_states=True" in result["error"] and "GPU" in result["error"], result["error"]


SKIP_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from verl.models.transformers.monkey_patch import apply_monkey_patch
from tiny_lm import tiny_qwen2
from medscore.integrations.verl import skip_trl_value_head_patch
try:
    apply_monkey_patch(model=tiny_qwen2(64), use_remove_padding=False)
    print("before: built")
except ImportError as exc:
    print("before: ImportError", exc)
print("skipped:", skip_trl_value_head_patch())
apply_monkey_patch(model=tiny_qwen2(64), use_remove_padding=False)
print("after: built")
"""


def test_veRLs_model_build_survives_a_trl_without_the_value_head_model():
    """veRL 0.9.1's ``apply_monkey_patch`` (run by its FSDP engine while building the actor)
    imports ``AutoModelForCausalLMWithValueHead`` from TRL whenever TRL is installed; TRL 1.16 (in
    ``medscore[integrations]``) has none, so the actor fails to build. ``meds_worker_class``'s
    ``init_model`` calls ``skip_trl_value_head_patch`` first. In a subprocess: veRL's patches
    change transformers' classes."""
    from medscore.integrations.verl._worker import trl_value_head_importable

    if trl_value_head_importable() is not False:
        pytest.skip("needs a TRL without AutoModelForCausalLMWithValueHead (TRL >= 1.0)")
    done = subprocess.run([sys.executable, "-c", SKIP_SCRIPT.format(tests=TESTS)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert any(line.startswith("before: ImportError") and "AutoModelForCausalLMWithValueHead" in line
               for line in lines), done.stdout
    assert "skipped: True" in lines and "after: built" in lines, done.stdout


def test_the_worker_class_applies_it_before_building_the_engine(monkeypatch):
    from medscore.integrations.verl import _worker

    calls = []

    class Base:
        def init_model(self):
            calls.append("engine built")

    monkeypatch.setattr(_worker, "skip_trl_value_head_patch", lambda: calls.append("skip") or True)
    worker = _worker.meds_worker_class(Base).__new__(_worker.meds_worker_class(Base))
    type(worker).init_model(worker)
    assert calls == ["skip", "engine built"]
