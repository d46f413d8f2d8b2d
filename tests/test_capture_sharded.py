"""medscore.capture in sharded models: FSDP1 and FSDP2 on 2 CPU ranks over gloo, ZeRO-3 simulated.

Each distributed test spawns 2 ranks once (most of its time is the ranks importing
transformers). Both ranks build the same tiny Llama and Qwen2 (tied and untied
embeddings), shard a copy, and run several micro-batches of their own through the plain
and the sharded model with the same capture; the ranks save both results and the test
compares them here. The sharded forward runs the plain model's arithmetic on the same
fp32 values, so the fingerprints must be equal bit for bit.

``Zero3Like`` reproduces in one process what ZeRO-3 does to a module's parameters (a
placeholder outside the owning module's forward, gathered by a forward pre-hook registered
at wrap time, released by a forward hook), which is all ``capture`` relies on; real
DeepSpeed ZeRO-3 on 2 ranks is tests/test_capture_zero3.py.
"""
from __future__ import annotations

import copy
import datetime
import os
import subprocess
import sys
import types
import warnings

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

import medscore  # noqa: E402
from medscore._answers import _keep_one_logit  # noqa: E402
from medscore._sharded import detect_sharding, is_whole  # noqa: E402
from tiny_lm import tiny_tokenizer  # noqa: E402

SIZES = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128)
CONFIGS = [(family, tied) for family in ("llama", "qwen2") for tied in (False, True)]
MICRO_BATCHES = 3
WORLD = 2
ANSWERS = ["The answer is $\\boxed{{{}}}$.", "\\boxed{{{}}}", "so {} then \\boxed{{{}}}", "no marker {}",
           "x \\boxed{{"]


def tiny_model(family: str, tied: bool, vocab_size: int, seed: int = 0):
    """A random tiny causal LM; random norm weights, so a missing or doubled norm shows."""
    config_class = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config}[family]
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(
        config_class(vocab_size=vocab_size, tie_word_embeddings=tied, **SIZES))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.uniform_(0.5, 1.5)
    return model.eval()


def rollouts(tokenizer, rank: int, step: int, answered: bool = True):
    """Left-padded prompts and right-padded responses, different on every rank and step
    (``answered=False``: no response has a marker)."""
    rows = 4 + (rank + step) % 3  # micro-batches of different sizes, as veRL's dynamic batching
    prompts, responses = [], []
    for i in range(rows):
        a = 11 * rank + 5 * step + i
        prompts.append(tokenizer.apply_chat_template([{"role": "user", "content": f"What is {a} + {i}?"}],
                                                     tokenize=False, add_generation_prompt=True))
        responses.append(ANSWERS[(i + step) % len(ANSWERS)].format(a + i, a) if answered else f"so {a}")
    p = [tokenizer.encode(t, add_special_tokens=False) for t in prompts]
    r = [tokenizer.encode(t, add_special_tokens=False) for t in responses]
    P, R, pad = max(map(len, p)), max(map(len, r)), tokenizer.pad_token_id
    return (torch.tensor([[pad] * (P - len(x)) + x for x in p]),
            torch.tensor([[0] * (P - len(x)) + [1] * len(x) for x in p]),
            torch.tensor([x + [pad] * (R - len(x)) for x in r]),
            torch.tensor([[1] * len(x) + [0] * (R - len(x)) for x in r]))


def capture_runs(model, tokenizer, batch, shared_capture, pooled_norm=True):
    """Every way the integrations and users call capture, on one micro-batch."""
    out = {
        "padded": medscore.answer_fingerprints(model, tokenizer, *batch, layers="all"),
        "packed": medscore.answer_fingerprints(model, tokenizer, *batch, layers="all", layout="packed"),
        "bf16": medscore.answer_fingerprints(model, tokenizer, *batch, layers="all", bf16=True),
    }
    ids = torch.cat([batch[0], batch[2]], 1)
    mask = torch.cat([batch[1], batch[3]], 1)
    where = medscore.fingerprint.locate_answers(tokenizer, *batch)
    # One capture object over all micro-batches (norm=True, read at the answer token).
    cap = shared_capture(model)
    with torch.no_grad(), cap:
        cap.set_targets(where.column, where.target)
        model(input_ids=ids, attention_mask=mask)
    out["norm"] = cap.fingerprints.clone()
    response = torch.cat([torch.zeros_like(batch[1]), batch[3]], 1)
    projection = torch.randn(SIZES["hidden_size"], 5, generator=torch.Generator().manual_seed(3))
    with torch.no_grad(), medscore.capture(model, layers="all", mode="pooled", mask=response,
                                           projection=projection, norm=pooled_norm) as pooled:
        model(input_ids=ids, attention_mask=mask)
    out["pooled"] = pooled.fingerprints
    return out, where


def grad_step(model, batch, where):
    """A forward with grad inside capture (fingerprints), its backward, an SGD step."""
    ids = torch.cat([batch[0], batch[2]], 1)
    mask = torch.cat([batch[1], batch[3]], 1)
    with medscore.capture(model, layers="all", positions=where.column, target_ids=where.target) as cap:
        logits = model(input_ids=ids, attention_mask=mask).logits
    assert logits.requires_grad and not cap.fingerprints.requires_grad
    logits.float().pow(2).mean().backward()
    torch.optim.SGD(model.parameters(), lr=0.5).step()
    return cap.fingerprints


# --------------------------------------------------------------------------- the ranks


def _wrap(scheme: str, model):
    """Shard ``model`` as veRL does: FSDP1 on decoder layers; FSDP2 on layers, plus embeddings and
    lm_head when untied. FSDP1 makes an untied Llama's lm_head a unit of its own too, so its
    weight is whole only in lm_head's forward (the other path of ``capture``)."""
    from torch.distributed.fsdp import FullyShardedDataParallel, fully_shard
    from torch.distributed.fsdp.wrap import CustomPolicy

    layer_class = type(model.model.layers[0])
    untied = model.lm_head.weight is not model.model.embed_tokens.weight
    if scheme == "fsdp2":
        for module in (*model.model.layers, *((model.model.embed_tokens, model.lm_head) if untied else ())):
            fully_shard(module)
        fully_shard(model)
        return model
    head = untied and model.config.model_type == "llama"
    policy = CustomPolicy(lambda m: isinstance(m, layer_class) or (head and m is model.lm_head))
    return FullyShardedDataParallel(model, auto_wrap_policy=policy, device_id=torch.device("cpu"),
                                    use_orig_params=scheme == "fsdp1_orig")


def _lm_head_unit(scheme: str, family: str, tied: bool) -> bool:
    """Whether ``_wrap`` makes lm_head a unit of its own."""
    return not tied and (scheme == "fsdp2" or family == "llama")


def _full_state_dict(model):
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))


def _fused_like_forward(model, batch, where):
    """veRL's fused-kernel forward: the base model, then lm_head.weight read without calling lm_head."""
    inner = model.module if hasattr(model, "_fsdp_wrapped_module") else model
    causal_lm = type(inner)

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return hidden @ self.lm_head.weight.T

    ids = torch.cat([batch[0], batch[2]], 1)
    mask = torch.cat([batch[1], batch[3]], 1)
    inner.forward = forward.__get__(inner, causal_lm)
    try:
        with torch.no_grad(), medscore.capture(model, layers="all", positions=where.column,
                                               target_ids=where.target) as cap:
            model(input_ids=ids, attention_mask=mask)
        return cap.fingerprints
    finally:
        del inner.forward


def _tensor_parallel_refusal(vocab_size: int) -> str:
    """The message ``capture`` gives for a vocabulary-parallel lm_head (tensor parallelism)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor.parallel import ColwiseParallel, parallelize_module

    model = tiny_model("llama", False, vocab_size)
    parallelize_module(model, init_device_mesh("cpu", (WORLD,)), {"lm_head": ColwiseParallel()})
    try:
        medscore.capture(model, layers="all")
    except ValueError as exc:
        return str(exc)
    return "no error"


def _rank_main(rank: int, scheme: str, folder: str) -> None:
    # The ranks are not under pytest: turn warnings into errors here as pytest does.
    warnings.simplefilter("error")
    torch.set_num_threads(1)
    # A rank that skips a forward leaves the other waiting in FSDP's all-gather: fail, not hang.
    torch.distributed.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank,
                                         world_size=WORLD, timeout=datetime.timedelta(seconds=60))
    try:
        tokenizer = tiny_tokenizer()
        results = {}
        for family, tied in CONFIGS:
            plain = tiny_model(family, tied, len(tokenizer))
            sharded = _wrap(scheme, copy.deepcopy(plain))
            name = f"{family}-{'tied' if tied else 'untied'}"
            results[name + "/scheme"] = detect_sharding(sharded)
            results[name + "/keep_one_logit"] = _keep_one_logit(sharded)
            shared = {}

            def shared_capture(model):
                # One capture per model, entered again for every micro-batch.
                if id(model) not in shared:
                    shared[id(model)] = medscore.capture(model, layers="all", norm=True, read_at="answer")
                return shared[id(model)]

            for step in range(MICRO_BATCHES):
                batch = rollouts(tokenizer, rank, step)
                want, where = capture_runs(plain, tokenizer, batch, shared_capture)
                got, _ = capture_runs(sharded, tokenizer, batch, shared_capture)
                for key in want:
                    results[f"{name}/{step}/{key}"] = (want[key], got[key])
            # Rank 1 has no answer in this micro-batch; its forward must still run (FSDP's
            # collectives), and its fingerprints are all NaN.
            batch = rollouts(tokenizer, rank, MICRO_BATCHES, answered=rank == 0)
            results[f"{name}/unanswered"] = (
                medscore.answer_fingerprints(plain, tokenizer, *batch, layers="all"),
                medscore.answer_fingerprints(sharded, tokenizer, *batch, layers="all"))
            batch = rollouts(tokenizer, rank, MICRO_BATCHES + 1)
            where = medscore.fingerprint.locate_answers(tokenizer, *batch)
            if not _lm_head_unit(scheme, family, tied):  # else lm_head.weight is sharded there
                results[f"{name}/fused"] = (_fused_like_forward(plain, batch, where),
                                            _fused_like_forward(sharded, batch, where))
            # Grad forward: equal before the update; after it, equal to the plain model that
            # loads the sharded model's updated weights (no stale weight anywhere).
            results[f"{name}/grad"] = (grad_step(copy.deepcopy(plain), batch, where),
                                       grad_step(sharded, batch, where))
            plain.load_state_dict(_full_state_dict(sharded))
            batch = rollouts(tokenizer, rank, MICRO_BATCHES + 2)
            results[f"{name}/after_step"] = (
                medscore.answer_fingerprints(plain, tokenizer, *batch, layers="all"),
                medscore.answer_fingerprints(sharded, tokenizer, *batch, layers="all"))
        if scheme == "fsdp2":
            results["tensor_parallel/refusal"] = _tensor_parallel_refusal(len(tokenizer))
        torch.save(results, os.path.join(folder, f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


def run_ranks(scheme: str, folder) -> list[dict]:
    torch.multiprocessing.spawn(_rank_main, args=(scheme, str(folder)), nprocs=WORLD)
    return [torch.load(os.path.join(folder, f"rank{r}.pt")) for r in range(WORLD)]


def assert_equal_fingerprints(results: list[dict], scheme_name: str) -> None:
    for rank, result in enumerate(results):
        compared = 0
        for key, value in result.items():
            if key == "tensor_parallel/refusal":
                assert "does not support tensor parallelism" in value, value
                continue
            if key.endswith("/keep_one_logit"):  # answer_fingerprints sees through the FSDP1 wrapper
                assert value == {"logits_to_keep": 1}, (rank, key, value)
                continue
            if key.endswith("/scheme"):
                assert value == scheme_name, (rank, key, value)
                continue
            want, got = value
            assert got.dtype == torch.float32 and got.shape == want.shape, (rank, key)
            assert torch.equal(torch.isnan(got), torch.isnan(want)), (rank, key)
            assert torch.equal(got.nan_to_num(), want.nan_to_num()), (rank, key, got, want)
            compared += 1
        # Every configuration, micro-batch and flavour came back, with some answers read.
        fused = sum(not _lm_head_unit(scheme_name, family, tied) for family, tied in CONFIGS)
        assert compared == len(CONFIGS) * (MICRO_BATCHES * 5 + 3) + fused, compared
        unanswered = [v[1] for k, v in result.items() if k.endswith("/unanswered")]
        assert all(torch.isnan(u).all() != (rank == 0) for u in unanswered), rank
        assert sum(int((~torch.isnan(v[0])).sum()) for k, v in result.items() if k.endswith("padded")) > 20


@pytest.mark.parametrize("scheme", ["fsdp1", "fsdp1_orig"])
def test_fsdp1_fingerprints_equal_unsharded(scheme, tmp_path):
    assert_equal_fingerprints(run_ranks(scheme, tmp_path), "fsdp1")



def test_fsdp2_fingerprints_equal_unsharded_and_tensor_parallel_is_refused(tmp_path):
    results = run_ranks("fsdp2", tmp_path)
    assert all("tensor_parallel/refusal" in result for result in results)
    assert_equal_fingerprints(results, "fsdp2")


# --------------------------------------------------------------------------- ZeRO-3, simulated


class Zero3Like:
    """DeepSpeed ZeRO-3's parameter lifecycle in one process, as ``capture`` sees it.

    Every parameter's data is an empty placeholder (``torch.Size([0])``, or 0-d) except
    inside the forward of a module that owns it: a forward pre-hook registered at wrap time
    puts the whole tensor back, a forward hook releases it. ``tag`` adds ``ds_id`` as
    DeepSpeed does (``detect_sharding`` then says "zero3"); untagged, only the placeholder
    tells ``capture`` that the weight is sharded.
    """

    def __init__(self, model, placeholder_ndim: int = 1, tag: bool = True):
        self.full = {}
        self.placeholder_shape = (0,) if placeholder_ndim == 1 else ()
        for i, param in enumerate(model.parameters()):  # a tied weight once
            self.full[param] = param.data
            if tag:
                param.ds_id, param.ds_shape = i, tuple(param.shape)
        for module in model.modules():
            if any(True for _ in module.parameters(recurse=False)):
                module.register_forward_pre_hook(self.gather)
                module.register_forward_hook(self.release)
        for param in self.full:
            param.data = torch.empty(self.placeholder_shape, dtype=param.dtype)

    def gather(self, module, args):
        for param in module.parameters(recurse=False):
            param.data = self.full[param]

    def release(self, module, args, output):
        for param in module.parameters(recurse=False):
            param.data = torch.empty(self.placeholder_shape, dtype=param.dtype)


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.mark.parametrize("family,tied", CONFIGS)
@pytest.mark.parametrize("placeholder_ndim,tag", [(1, True), (0, True), (1, False)])
def test_zero3_placeholder_fingerprints_equal_unsharded(tokenizer, family, tied, placeholder_ndim, tag):
    plain = tiny_model(family, tied, len(tokenizer))
    sharded = copy.deepcopy(plain)
    Zero3Like(sharded, placeholder_ndim, tag)
    assert not is_whole(sharded.lm_head.weight, (len(tokenizer), SIZES["hidden_size"]))
    assert detect_sharding(sharded) == ("zero3" if tag else None)
    assert medscore.capture(sharded, layers="all").deferred
    assert not medscore.capture(plain, layers="all").deferred
    shared = {}

    def shared_capture(model):
        if id(model) not in shared:
            shared[id(model)] = medscore.capture(model, layers="all", norm=True, read_at="answer")
        return shared[id(model)]

    for step in range(MICRO_BATCHES):
        batch = rollouts(tokenizer, 0, step)
        # Pooled mode without norm: with it, ZeRO-3 refuses (test_zero3_refusals_are_clear).
        want, _ = capture_runs(plain, tokenizer, batch, shared_capture, pooled_norm=False)
        got, _ = capture_runs(sharded, tokenizer, batch, shared_capture, pooled_norm=False)
        for key in ("padded", "packed", "bf16", "norm", "pooled"):
            assert torch.equal(torch.isnan(got[key]), torch.isnan(want[key])), key
            assert torch.equal(got[key].nan_to_num(), want[key].nan_to_num()), key
        assert (~torch.isnan(want["padded"])).any()
    # The weights are placeholders again after every forward: nothing was left gathered.
    assert all(p.shape == torch.Size((0,) if placeholder_ndim else ()) for p in sharded.parameters())


def test_zero3_refusals_are_clear(tokenizer):
    model = tiny_model("llama", True, len(tokenizer))
    Zero3Like(model)
    batch = rollouts(tokenizer, 0, 0)
    ids, mask = torch.cat([batch[0], batch[2]], 1), torch.cat([batch[1], batch[3]], 1)
    response = torch.cat([torch.zeros_like(batch[1]), batch[3]], 1)
    projection = torch.randn(SIZES["hidden_size"], 3)
    # The final norm's weight exists only inside the norm's forward: pooled + norm=True cannot fold it.
    with torch.no_grad(), medscore.capture(model, layers="all", mode="pooled", mask=response,
                                           projection=projection, norm=True):
        with pytest.raises(RuntimeError, match="norm=True needs the final norm's weight"):
            model(input_ids=ids, attention_mask=mask)
    # A forward that never runs lm_head: the kept rows never meet a whole unembedding.
    where = medscore.fingerprint.locate_answers(tokenizer, *batch)
    with torch.no_grad(), medscore.capture(model, layers="all", positions=where.column,
                                           target_ids=where.target) as cap:
        model.model(input_ids=ids, attention_mask=mask)
    with pytest.raises(RuntimeError, match="never reached the output embedding"):
        cap.fingerprints


def test_megatron_models_are_refused(monkeypatch):
    model = tiny_model("llama", False, 50)
    # A Megatron-Core module inside the model; its package is imported, as it must be then.
    monkeypatch.setitem(sys.modules, "megatron", types.ModuleType("megatron"))
    megatron_block = type("TransformerBlock", (torch.nn.Module,), {"__module__": "megatron.core.transformer"})
    model.model.extra = megatron_block()
    with pytest.raises(ValueError, match="does not support Megatron-Core"):
        medscore.capture(model, layers="all")


def test_is_whole_tells_placeholders_from_weights():
    flat = torch.arange(12.0)
    view = flat[2:12].view(2, 5)
    assert is_whole(view, (2, 5)) and not is_whole(view, (5, 2))
    flat.untyped_storage().resize_(0)  # what FSDP1 does to the unsharded buffer after use
    assert not is_whole(view, (2, 5))
    assert not is_whole(torch.empty(0), (2, 5)) and not is_whole(torch.empty(()), (2, 5))
    assert not is_whole(torch.empty(2, 5, device="meta"), (2, 5))
    assert is_whole(torch.empty(0, 5), (0, 5))


def test_triton_backend_on_kept_rows_equals_unsharded(tokenizer):
    """backend="triton" runs the unsharded kernel on the kept rows: the same sums, bit for bit.

    ``TRITON_INTERPRET=1`` must be set before triton is imported, so the test reruns itself
    in a subprocess with it (triton's interpreter runs the kernel on the CPU).
    """
    pytest.importorskip("triton")
    if os.environ.get("TRITON_INTERPRET") != "1":
        env = dict(os.environ, TRITON_INTERPRET="1")
        cmd = [sys.executable, "-P", "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
               "-k", "test_triton_backend_on_kept_rows_equals_unsharded"]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600,
                              cwd=os.path.dirname(os.path.dirname(__file__)))
        summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
        report = done.stdout[-4000:] + done.stderr[-2000:]
        assert done.returncode == 0 and summary.startswith("1 passed"), report
        return
    for tied in (False, True):
        plain = tiny_model("llama", tied, len(tokenizer))
        sharded = copy.deepcopy(plain)
        Zero3Like(sharded)
        batch = rollouts(tokenizer, 0, 1)
        ids, mask = torch.cat([batch[0], batch[2]], 1), torch.cat([batch[1], batch[3]], 1)
        where = medscore.fingerprint.locate_answers(tokenizer, *batch)
        for norm in (False, True):
            got = {}
            for name, model in (("plain", plain), ("sharded", sharded)):
                for backend in ("triton", "torch"):
                    cap = medscore.capture(model, layers="all", norm=norm, backend=backend,
                                           positions=where.column, target_ids=where.target)
                    with torch.no_grad(), cap:
                        model(input_ids=ids, attention_mask=mask)
                    got[name, backend] = cap.fingerprints
            assert (~torch.isnan(got["plain", "triton"])).any()
            assert torch.equal(got["sharded", "triton"].nan_to_num(), got["plain", "triton"].nan_to_num())
            assert torch.equal(got["sharded", "torch"].nan_to_num(), got["plain", "torch"].nan_to_num())
            torch.testing.assert_close(got["sharded", "triton"], got["sharded", "torch"], rtol=1e-5,
                                       atol=1e-5, equal_nan=True)
