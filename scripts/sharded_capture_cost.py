"""What ``medscore.capture`` costs in a sharded model, and what gathering the unembedding would cost.

Runs 2 ranks over gloo on the CPU (``torch.multiprocessing``, spawn), each with one torch
thread, on a randomly initialised model of SmolLM2-135M's shapes (hidden 576, 30 layers,
vocabulary 49152, tied embeddings; no download). Each rank times no-grad forwards of its
own ``B x T`` micro-batch, interleaved round-robin and keeping the best of ``--repeat``:

- the unsharded model: plain, and inside ``capture`` (the direct path);
- FSDP1 (``use_orig_params=False``, decoder layers as units) and FSDP2 (``fully_shard`` on
  the layers and the root): plain, and inside ``capture`` (the deferred path);
- the alternative of gathering the whole unembedding outside the forward to read rows from
  it: the all-gather of FSDP1's root unit (what ``summon_full_params(root, recurse=False)``
  runs) and FSDP2's ``unshard()`` of the root (which holds the tied unembedding), with the
  bytes each gather materialises on every rank.

Usage: ``python scripts/sharded_capture_cost.py [--batch 2] [--tokens 128] [--repeat 5]``.
Prints a Markdown table (rank 0's numbers; the ranks run the same shapes): wall seconds, and
the seconds spent inside capture's own code (:class:`OwnTime`), which a loaded machine's
noise does not swamp.
"""
from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time

SHAPES = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
              num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
              tie_word_embeddings=True)


class OwnTime:
    """Seconds spent inside ``capture``'s own code (construction, hooks, dot products).

    Wall-clock differences between forwards on a shared 2-core machine swing by more than
    the hooks cost; timing the hooks themselves does not. Nested entry points count once.
    """

    ENTRY_POINTS = ("__init__", "set_targets", "__enter__", "__exit__", "_on_forward_start", "_record",
                    "_on_final_norm", "_on_unembed")

    def __init__(self):
        from medscore._capture import capture

        self.seconds, self._depth = 0.0, 0
        for name in self.ENTRY_POINTS:
            setattr(capture, name, self._timed(getattr(capture, name)))

    def _timed(self, method):
        def timed(*args, **kwargs):
            self._depth += 1
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self.seconds += time.perf_counter() - start
        return timed


def _best(calls: dict, repeat: int, own: OwnTime) -> tuple:
    """Best seconds of each call, timed round-robin so load drifts hit every call alike."""
    import torch.distributed as dist

    for fn in calls.values():
        fn()
    best, best_own = dict.fromkeys(calls, float("inf")), dict.fromkeys(calls, float("inf"))
    for _ in range(repeat):
        for name, fn in calls.items():
            dist.barrier()  # both ranks start each timed call together (FSDP's collectives wait)
            own.seconds = 0.0
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
            best_own[name] = min(best_own[name], own.seconds)
    return best, best_own


def _calls(plain, fsdp1, fsdp2, ids, positions, targets):
    import torch
    import medscore

    def forward(model, capture: bool):
        def run():
            with torch.no_grad():
                if not capture:
                    return model(input_ids=ids, logits_to_keep=1)
                with medscore.capture(model, "last:14", positions=positions, target_ids=targets) as cap:
                    model(input_ids=ids, logits_to_keep=1)
                return cap.fingerprints
        return run

    shard = fsdp1.params[0].detach().clone()  # the root unit's flat shard (before any forward)
    gathered = torch.empty(shard.numel() * torch.distributed.get_world_size(), dtype=shard.dtype)

    def gather_root():
        # What summon_full_params(root) does when the root is sharded (FSDP1 leaves the root
        # unsharded after a forward, so calling it here would time a no-op).
        torch.distributed.all_gather_single(gathered, shard)
        return gathered

    def unshard_rows():
        fsdp2.reshard()  # FSDP2 leaves the root unsharded after a forward; start from shards
        fsdp2.unshard()
        rows = fsdp2.lm_head.weight[targets].clone()
        fsdp2.reshard()
        return rows

    return {
        "unsharded: forward": forward(plain, False),
        "unsharded: forward + capture": forward(plain, True),
        "FSDP1: forward": forward(fsdp1, False),
        "FSDP1: forward + capture": forward(fsdp1, True),
        "FSDP2: forward": forward(fsdp2, False),
        "FSDP2: forward + capture": forward(fsdp2, True),
        "FSDP1: all-gather of the root unit (summon_full_params)": gather_root,
        "FSDP2: unshard() root + rows": unshard_rows,
    }


def _rank(rank: int, folder: str, batch: int, tokens: int, repeat: int) -> None:
    import torch
    import torch.distributed as dist
    import transformers
    from torch.distributed.fsdp import FullyShardedDataParallel, fully_shard
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=2)
    torch.manual_seed(0)
    plain = transformers.LlamaForCausalLM(transformers.LlamaConfig(**SHAPES)).eval()
    layer_class = type(plain.model.layers[0])
    fsdp1 = FullyShardedDataParallel(copy.deepcopy(plain), auto_wrap_policy=ModuleWrapPolicy({layer_class}),
                                     device_id=torch.device("cpu"))
    fsdp2 = copy.deepcopy(plain)
    for layer in fsdp2.model.layers:
        fully_shard(layer)
    fully_shard(fsdp2)
    gen = torch.Generator().manual_seed(rank)
    ids = torch.randint(0, SHAPES["vocab_size"], (batch, tokens), generator=gen)
    positions = torch.randint(tokens // 2, tokens, (batch,), generator=gen)
    targets = ids[torch.arange(batch), positions]
    own = OwnTime()
    best, best_own = _best(_calls(plain, fsdp1, fsdp2, ids, positions, targets), repeat, own)
    root_bytes = sum(p.numel() * p.element_size() for p in fsdp1.params) * 2  # unsharded = 2 shards
    kept_bytes = 14 * batch * SHAPES["hidden_size"] * 4
    if rank == 0:
        torch.save(dict(best=best, own=best_own, root_bytes=root_bytes, kept_bytes=kept_bytes),
                   os.path.join(folder, "rank0.pt"))
    dist.destroy_process_group()


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        torch.multiprocessing.spawn(_rank, args=(folder, args.batch, args.tokens, args.repeat), nprocs=2)
        result = torch.load(os.path.join(folder, "rank0.pt"))
    best, own = result["best"], result["own"]
    print(f"B = {args.batch}, T = {args.tokens}, 2 gloo ranks, 1 thread each, best of {args.repeat}\n")
    print("| call | seconds | capture's own seconds | own / plain forward |\n|---|---|---|---|")
    for name, seconds in best.items():
        base = best.get(name.split(":")[0] + ": forward")
        mine = f"{own[name]:.5f} | {own[name] / base:.4f}" if name.endswith("capture") else " | "
        print(f"| {name} | {seconds:.4f} | {mine} |")
    print(f"\nkept by capture per micro-batch (14 layers x B x H, fp32): {result['kept_bytes']} bytes")
    print(f"root unit (embedding = lm_head, final norm) unsharded by either gather: "
          f"{result['root_bytes'] / 2**20:.1f} MiB per rank")


if __name__ == "__main__":
    main()
