"""MEDS in TRL's GRPOTrainer on 2 CPU processes under ``accelerate launch`` (gloo), a local
``medscore.Memory`` in each rank: DDP, and accelerate's FSDP plugin (FSDP1 and FSDP2).

Each case launches ``tests/trl_accelerate_worker.py`` with an accelerate config file and runs 3
real GRPO steps on a tiny random Qwen2 (tied embeddings). Checked: both ranks' memories hold the
same contents; the fingerprints each rank passed to ``penalize`` are the same on both ranks and
equal, bit for bit, those of the unsharded model (loaded from the run's full weights at that
step, in this process) for the same gathered completions.

accelerate 1.15 does not run FSDP on the CPU: ``AcceleratorState`` turns a run into FSDP only
when its distributed type is a GPU-like one, and a CPU run is MULTI_CPU, so an FSDP config
silently becomes DDP (``test_accelerate_turns_fsdp_on_the_cpu_into_ddp`` proves it). No
config key or environment variable changes that decision; the FSDP cases patch that one
decision (``trl_accelerate_worker.force_fsdp_on_cpu``) and run everything after it as is.
"""
from __future__ import annotations

import importlib.util
import os
import pickle
import socket
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl", reason="TRL not installed: pip install 'medscore[trl]'")
pytest.importorskip("accelerate", reason="accelerate not installed: pip install 'medscore[trl]'")
pytest.importorskip("datasets")

from medscore.integrations._common import MEMORY_FILE, threads_per_rank  # noqa: E402
from tiny_lm import save_tiny  # noqa: E402

TESTS = os.path.dirname(os.path.abspath(__file__))
BASE = """compute_environment: LOCAL_MACHINE
use_cpu: {cpu}
num_processes: 2
num_machines: 1
machine_rank: 0
main_process_ip: 127.0.0.1
main_process_port: {port}
mixed_precision: 'no'
"""
FSDP = """distributed_type: FSDP
fsdp_config:
  fsdp_version: {version}
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_transformer_layer_cls_to_wrap: Qwen2DecoderLayer
  fsdp_state_dict_type: SHARDED_STATE_DICT
  fsdp_cpu_ram_efficient_loading: false
  fsdp_reshard_after_forward: {reshard}
  fsdp_use_orig_params: {orig}
  fsdp_sync_module_states: false
"""
ZERO3 = """distributed_type: DEEPSPEED
deepspeed_config:
  zero_stage: 3
  zero3_init_flag: false
  offload_optimizer_device: none
  offload_param_device: none
  gradient_accumulation_steps: 1
"""
# What each case must end up with: accelerate's distributed type, the wrapper of the trained
# model, and the module the integration runs the fingerprint forward through.
CASES = {
    # accelerate launch starts CPU processes through torchrun only for a multi-device type;
    # "distributed_type: MULTI_CPU" without an mpirun host file starts a single process.
    "ddp": ("distributed_type: MULTI_GPU\n", False,
            ("DistributedType.MULTI_CPU", "DistributedDataParallel", "Qwen2ForCausalLM")),
    "fsdp2": (FSDP.format(version=2, reshard="true", orig="true"), True,
              ("DistributedType.FSDP", "FSDPQwen2ForCausalLM", "FSDPQwen2ForCausalLM")),
    "fsdp1": (FSDP.format(version=1, reshard="FULL_SHARD", orig="false"), True,
              ("DistributedType.FSDP", "FullyShardedDataParallel", "FullyShardedDataParallel")),
    "zero3": (ZERO3, False, ("DistributedType.DEEPSPEED", "DeepSpeedEngine", "Qwen2ForCausalLM")),
}
# accelerate runs DeepSpeed only where the run is not marked CPU (``use_cpu``: its launcher and
# AcceleratorState both check ``not cpu``); without a GPU the ranks then get accelerate's
# default device (the CPU) and, with the Trainer's ddp_backend=gloo, a gloo process group;
# DeepSpeed runs on its CPU accelerator (DS_ACCELERATOR=cpu).
ZERO3_ENV = {"DS_ACCELERATOR": "cpu", "MEDSCORE_TRAINER_ARGS": '{"use_cpu": false, "ddp_backend": "gloo"}'}


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return save_tiny(str(tmp_path_factory.mktemp("tiny-qwen2")))


def launch(tmp_path, model: str, config: str, force_fsdp: bool, extra_env=None, name="result"):
    """Run the worker on 2 processes with ``accelerate launch``; the ranks' records."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "accelerate.yaml"
    path.write_text(BASE.format(port=port, cpu="false" if "DEEPSPEED" in config else "true") + config)
    result = tmp_path / name
    result.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]),
           "MEDSCORE_MODEL": model, "MEDSCORE_OUT": str(tmp_path / "run"), "MEDSCORE_RESULT": str(result),
           "MEDSCORE_FORCE_FSDP": "1" if force_fsdp else "0", "OMP_NUM_THREADS": "1", **(extra_env or {})}
    done = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(path),
                           os.path.join(TESTS, "trl_accelerate_worker.py")],
                          env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return [torch.load(result / f"rank{r}.pt", weights_only=False) for r in range(2)]


def unsharded_fingerprints(model_folder: str, step: dict):
    """The step's fingerprints from a plain model holding the run's full weights, computed on the
    gathered completions in the same per-rank chunks (so the same padding) as the run."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medscore._answer_markers import marker_ids_for
    from medscore.integrations.trl import completion_fingerprints

    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    model = AutoModelForCausalLM.from_pretrained(model_folder).eval()
    missing, unexpected = model.load_state_dict(step["weights"], strict=False)
    assert set(missing) <= {"lm_head.weight"} and not unexpected, (missing, unexpected)
    prompts, completions = step["prompt_ids"], step["completion_ids"]
    half = len(prompts) // 2
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the ranks
    try:
        return torch.cat([completion_fingerprints(model, prompts[rows], completions[rows],
                                                  marker_ids_for(tokenizer, "robust", "\\boxed{"), "last:2", 8,
                                                  tokenizer.pad_token_id, tokenizer=tokenizer)
                          for rows in (slice(0, half), slice(half, None))])
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("case", list(CASES))
def test_grpo_steps_on_two_processes_with_a_local_memory(case, tiny_folder, tmp_path):
    config, force, (distributed_type, wrapped, forward_model) = CASES[case]
    # FSDP1 on the CPU: accelerate gives each CPU rank the device "cpu:0" and hands it to FSDP1 as
    # device_id, which FSDP1 refuses ("Inconsistent compute device and `device_id`: cpu vs
    # cpu:0"); ACCELERATE_TORCH_DEVICE=cpu makes it plain "cpu".
    extra_env = {"fsdp1": {"ACCELERATE_TORCH_DEVICE": "cpu"}, "zero3": ZERO3_ENV}.get(case)
    if case == "zero3" and importlib.util.find_spec("deepspeed") is None:
        pytest.skip("DeepSpeed not installed: pip install 'medscore[test]'")
    ranks = launch(tmp_path, tiny_folder, config, force, extra_env)
    for record in ranks:
        assert record["processes"] == 2 and record["distributed_type"] == distributed_type
        assert record["wrapped"] == wrapped, record["wrapped"]
        assert record["threads"] == 1
        assert [s["forward_model"] for s in record["steps"]] == [forward_model] * 3
    if case.startswith("fsdp"):
        assert ranks[0]["fsdp_version"] == int(case[-1])
    # Every rank penalised the whole gathered batch into a memory of its own: identical memories.
    assert ranks[0]["memory"] == ranks[1]["memory"]
    assert ranks[0]["logged"] == ranks[1]["logged"] and len(ranks[0]["logged"]) == 3
    assert ranks[0]["metrics"]["points"] > 0
    state = pickle.loads(ranks[0]["memory"])
    assert state["last_step"] == 2
    # One memory per rank: its clustering threads are the node's cores over the 2 local ranks.
    assert state["options"]["n_threads"] == threads_per_rank({"LOCAL_WORLD_SIZE": "2"})
    for one, other in zip(ranks[0]["steps"], ranks[1]["steps"]):
        torch.testing.assert_close(one["fingerprints"], other["fingerprints"], rtol=0, atol=0, equal_nan=True)
        assert one["keys"] == other["keys"] and one["correct"] == other["correct"]
        assert one["completion_ids"] == other["completion_ids"]
    # The inserted fingerprints are the unsharded model's at every step (the first step's
    # advantages are all 0, as the memory is empty and the tiny model never answers right; the
    # penalties of the second step move the weights, so the third runs on trained weights).
    steps = ranks[0]["steps"]
    assert len(steps) == 3 and len(steps[0]["completion_ids"]) == 16
    assert any(not torch.equal(steps[0]["weights"][k], steps[2]["weights"][k]) for k in steps[0]["weights"])
    for step in steps:
        inserted = step["fingerprints"]
        assert inserted.shape == (16, 2) and torch.isfinite(inserted).all(dim=1).sum() >= 8
        want = unsharded_fingerprints(tiny_folder, step)
        torch.testing.assert_close(inserted, want, rtol=0, atol=0, equal_nan=True)


def test_accelerate_turns_fsdp_on_the_cpu_into_ddp(tiny_folder, tmp_path, monkeypatch):
    """accelerate's own decision, unpatched: an FSDP config on the CPU runs DDP. The launcher sets
    ACCELERATE_USE_FSDP=true in the ranks, the Trainer builds an FSDP plugin, and
    ``AcceleratorState`` keeps the run MULTI_CPU (its FSDP branch lists only GPU-like types) and
    drops the plugin; the model is wrapped in DistributedDataParallel. medscore is not involved
    in that choice (the integration only reads the result)."""
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    ranks = launch(tmp_path, tiny_folder, FSDP.format(version=2, reshard="true", orig="true"), False)
    for record in ranks:
        assert record["env_use_fsdp"] == "true"
        assert record["distributed_type"] == "DistributedType.MULTI_CPU" and not record["fsdp_plugin"]
        assert record["wrapped"] == "DistributedDataParallel"
    assert ranks[0]["memory"] == ranks[1]["memory"]
    # The decision in accelerate's source: CPU processes are MULTI_CPU, and the FSDP branch of
    # AcceleratorState.__init__ is inside the branch of GPU-like types only. A future accelerate
    # that runs FSDP on the CPU fails the assertions above: then drop force_fsdp_on_cpu.
    import inspect

    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    backend, kind = PartialState._prepare_backend(object.__new__(PartialState), cpu=True)
    assert kind == DistributedType.MULTI_CPU and backend in ("gloo", "mpi")

    source = inspect.getsource(AcceleratorState.__init__)
    start, end = source.find("elif self.distributed_type in ["), source.find("ACCELERATE_USE_FSDP")
    if 0 <= start < end:  # accelerate 1.15's layout (the runs above are the proof on any version)
        assert "MULTI_GPU" in source[start:end] and "MULTI_CPU" not in source[start:end]


def test_ddp_resume_gives_every_rank_the_saved_memory(tiny_folder, tmp_path):
    """2 DDP processes with a local Memory each: the main process saves the memory with every
    checkpoint; a resumed run loads it in every rank (the same file), so the memories stay
    identical and continue where the first run stopped."""
    # The Trainer loads the optimizer state with map_location=args.device when several processes
    # run; accelerate's device for a CPU rank is "cpu:0", which torch.load cannot restore to
    # ("don't know how to restore data location ... (tagged with cpu:0)"): a plain "cpu" device.
    device = {"ACCELERATE_TORCH_DEVICE": "cpu"}
    first = launch(tmp_path, tiny_folder, CASES["ddp"][0], False,
                   {**device, "MEDSCORE_MAX_STEPS": "2", "MEDSCORE_SAVE": "1"}, name="first")
    checkpoint = tmp_path / "run" / "checkpoint-2"
    assert (checkpoint / MEMORY_FILE).exists()
    resumed = launch(tmp_path, tiny_folder, CASES["ddp"][0], False,
                     {**device, "MEDSCORE_MAX_STEPS": "3", "MEDSCORE_RESUME": str(checkpoint)}, name="resumed")
    assert first[0]["memory"] == first[1]["memory"]
    for record in resumed:
        assert record["loaded"] == [first[0]["memory"]]  # what the first run ended with
        assert len(record["steps"]) == 1  # only step 3 ran
    assert resumed[0]["memory"] == resumed[1]["memory"]
    state = pickle.loads(resumed[0]["memory"])
    assert state["last_step"] == 2 and resumed[0]["metrics"]["points"] > first[0]["metrics"]["points"]
