"""One rank of a 2-process TRL GRPO run (torchrun, gloo on the CPU) sharing one RemoteMemory.

Started by tests/test_integration_ray.py; the environment names the Ray namespace and memory,
the model folder, the output folder and the result file (written by the main process).
"""
from __future__ import annotations

import json
import os

import ray

from medscore.integrations.ray import RemoteMemory
from test_integration_trl import make_trainer

ray.init(address="auto", namespace=os.environ["MEDSCORE_NAMESPACE"], log_to_driver=False, configure_logging=False)
memory = RemoteMemory(preset="paper", name=os.environ["MEDSCORE_MEMORY"], num_shards=2)
trainer = make_trainer(os.environ["MEDSCORE_MODEL"], os.environ["MEDSCORE_OUT"], max_steps=2)
trainer.meds_memory = memory
trainer.train()
if trainer.accelerator.is_main_process:
    with open(os.environ["MEDSCORE_RESULT"], "w") as f:
        json.dump({"processes": trainer.accelerator.num_processes, "points": memory.metrics()["points"],
                   "logged": [h["medscore/points"] for h in trainer.state.log_history if "medscore/points" in h]}, f)
