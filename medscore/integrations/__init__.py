"""Trainer integrations of the MEDS error memory: veRL, TRL and Ray.

Each integration is a thin adapter: it imports its trainer lazily (importing
``medscore.integrations`` imports no trainer), takes fingerprints in a forward the trainer
already runs (or one no-grad forward where it runs none), keys the memory by a stable
prompt id, and shapes the sequence reward with the penalties of
:meth:`medscore.Memory.penalize` (``- p`` wrong, ``/ (1 + p)`` correct when targeted)
before the group normalisation. ``docs/integrations.md`` lists the configuration keys,
including the paper configuration.

- :mod:`medscore.integrations.verl`: ``python -m medscore.integrations.verl.main`` (veRL's
  ``main_ppo`` with MEDS, V1 and legacy trainers), the ``meds_grpo`` advantage estimator,
  ``meds_v1_trainer_class``, ``meds_trainer_class``, ``meds_worker_class``.
- :mod:`medscore.integrations.trl`: ``MedsGRPOTrainer`` (built lazily).
- :mod:`medscore.integrations.ray`: ``RemoteMemory``, a sharded memory in Ray actors.
"""
from __future__ import annotations

from ._common import (
    boxed_answer,
    extract_boxed,
    prompt_key,
    require,
)

__all__ = ["boxed_answer", "extract_boxed", "prompt_key", "require"]
