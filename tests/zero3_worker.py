"""One rank of the real DeepSpeed ZeRO-3 capture test (tests/test_capture_zero3.py): torchrun,
DS_ACCELERATOR=cpu, gloo. Writes ``rank{R}.pt`` into the folder given as argument: pairs
(unsharded, ZeRO-3) of fingerprints, and what the ranks saw of the sharding.
"""
from __future__ import annotations

import copy
import os
import sys

import deepspeed
import torch

import medscore
from medscore._sharded import detect_sharding
from test_capture_sharded import CONFIGS, MICRO_BATCHES, grad_step, rollouts, tiny_model
from tiny_lm import tiny_tokenizer

DS_CONFIG = {
    "train_micro_batch_size_per_gpu": 1,
    "gradient_accumulation_steps": 1,
    # Every parameter partitioned, however small (the default keeps small ones whole).
    "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
    "optimizer": {"type": "SGD", "params": {"lr": 0.5}},
    "zero_allow_untested_optimizer": True,
}


def full_weights(module):
    """The whole weights of a ZeRO-3 module (a collective)."""
    with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
        return {k: v.detach().clone() for k, v in module.state_dict().items()}


def main(folder: str) -> None:
    torch.set_num_threads(1)
    deepspeed.init_distributed(dist_backend="gloo")
    rank = torch.distributed.get_rank()
    tokenizer = tiny_tokenizer()
    results = {"accelerator": deepspeed.get_accelerator().device_name(),
               "backend": torch.distributed.get_backend()}
    try:
        for family, tied in CONFIGS:
            name = f"{family}-{'tied' if tied else 'untied'}"
            plain = tiny_model(family, tied, len(tokenizer))
            engine, *_ = deepspeed.initialize(model=copy.deepcopy(plain), config=DS_CONFIG)
            module = engine.module
            results[name + "/scheme"] = detect_sharding(module)
            results[name + "/placeholder"] = tuple(module.lm_head.weight.shape)
            results[name + "/ds_shape"] = tuple(module.lm_head.weight.ds_shape)
            for step in range(MICRO_BATCHES):
                batch = rollouts(tokenizer, rank, step)
                want = medscore.answer_fingerprints(plain, tokenizer, *batch, layers="all")
                results[f"{name}/{step}/module"] = (want, medscore.answer_fingerprints(module, tokenizer, *batch,
                                                                                       layers="all"))
                # Through the engine (its forward runs the module's) and with the reference's bf16 rounding.
                results[f"{name}/{step}/engine"] = (want, medscore.answer_fingerprints(engine, tokenizer, *batch,
                                                                                       layers="all"))
                results[f"{name}/{step}/bf16"] = (
                    medscore.answer_fingerprints(plain, tokenizer, *batch, layers="all", bf16=True),
                    medscore.answer_fingerprints(module, tokenizer, *batch, layers="all", bf16=True))
            # Rank 1's micro-batch has no answer: its forward still runs (ZeRO-3 gathers are
            # collectives), its fingerprints are all NaN.
            batch = rollouts(tokenizer, rank, MICRO_BATCHES, answered=rank == 0)
            results[f"{name}/unanswered"] = (medscore.answer_fingerprints(plain, tokenizer, *batch, layers="all"),
                                             medscore.answer_fingerprints(module, tokenizer, *batch, layers="all"))
            # A forward with grad inside capture, DeepSpeed's backward and optimiser step; then
            # the plain model with the gathered updated weights gives the same fingerprints.
            batch = rollouts(tokenizer, rank, MICRO_BATCHES + 1)
            where = medscore.fingerprint.locate_answers(tokenizer, *batch)
            ids, mask = torch.cat([batch[0], batch[2]], 1), torch.cat([batch[1], batch[3]], 1)
            with medscore.capture(module, layers="all", positions=where.column, target_ids=where.target) as cap:
                logits = engine(input_ids=ids, attention_mask=mask).logits
            results[f"{name}/grad"] = (grad_step(copy.deepcopy(plain), batch, where), cap.fingerprints)
            engine.backward(logits.float().pow(2).mean())
            engine.step()
            weights = full_weights(module)
            missing, unexpected = plain.load_state_dict(weights, strict=False)
            assert set(missing) <= {"lm_head.weight"} and not unexpected, (missing, unexpected)
            results[f"{name}/moved"] = not torch.equal(weights["model.norm.weight"],
                                                       tiny_model(family, tied, len(tokenizer)).model.norm.weight)
            batch = rollouts(tokenizer, rank, MICRO_BATCHES + 2)
            results[f"{name}/after_step"] = (medscore.answer_fingerprints(plain, tokenizer, *batch, layers="all"),
                                             medscore.answer_fingerprints(module, tokenizer, *batch, layers="all"))
        torch.save(results, os.path.join(folder, f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
