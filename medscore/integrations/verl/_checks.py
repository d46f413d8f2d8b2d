"""What MEDS needs of a veRL configuration, checked before anything starts.

Each refusal names the setting and why: a run that cannot take fingerprints would otherwise
train without any penalty and without a word.
"""
from __future__ import annotations

from .._common import MedsConfig
from .estimator import MEDS_GRPO, is_meds_estimator

#: Actor strategies whose engine ``forward_step`` the fingerprint hook wraps (veRL 0.9).
SUPPORTED_STRATEGIES = ("fsdp", "fsdp2")


def _select(config, path: str, default=None):
    node = config
    for part in path.split("."):
        getter = getattr(node, "get", None)
        if getter is None:
            return default
        node = getter(part, None)
        if node is None:
            return default
    return node


def config_problems(config, meds: MedsConfig, *, v1: bool) -> list[str]:
    """Every reason why MEDS cannot run with this veRL config (empty when it can).

    Parameters
    ----------
    config : veRL's trainer config (DictConfig or dict)
    meds : MedsConfig, the ``medscore`` section
    v1 : bool, the V1 trainer (``trainer.use_v1``) rather than the legacy one
    """
    estimator = _select(config, "algorithm.adv_estimator")
    if not meds.enable:
        if is_meds_estimator(estimator):
            return [f"algorithm.adv_estimator={MEDS_GRPO} needs medscore.enable=true"]
        return []
    problems = []
    if _select(config, "algorithm.rollout_correction.bypass_mode", False):
        problems.append("algorithm.rollout_correction.bypass_mode=true skips the actor's log-prob forward, which "
                        "is where MEDS takes its fingerprints: no fingerprint, no penalty. Set it to false")
    strategy = _select(config, "actor_rollout_ref.actor.strategy", "fsdp")
    if strategy not in SUPPORTED_STRATEGIES:
        problems.append(f"actor_rollout_ref.actor.strategy={strategy}: MEDS takes fingerprints in the FSDP engines "
                        f"only ({', '.join(SUPPORTED_STRATEGIES)}); Megatron and the other engines are not supported")
    for path in ("actor_rollout_ref.actor.ulysses_sequence_parallel_size",
                 "actor_rollout_ref.actor.fsdp_config.ulysses_sequence_parallel_size"):
        size = _select(config, path, 1)
        if size is not None and int(size) > 1:
            problems.append(f"{path}={size}: with Ulysses sequence parallelism each rank holds a slice of the "
                            "packed sequence, so the answer positions do not match; MEDS needs it at 1")
    placement = meds.placement or "advantage"
    if placement == "advantage" and v1 and not is_meds_estimator(estimator):
        problems.append(f"medscore.placement=advantage is the {MEDS_GRPO} estimator, but algorithm.adv_estimator="
                        f"{estimator}; set algorithm.adv_estimator={MEDS_GRPO} (medscore's main does it for grpo), "
                        "or medscore.placement=scores to shape the scores in place for any estimator")
    if placement == "scores" and is_meds_estimator(estimator):
        problems.append(f"algorithm.adv_estimator={MEDS_GRPO} applies the penalties itself; with "
                        "medscore.placement=scores use the plain estimator (e.g. grpo)")
    return problems


def check_config(config, meds: MedsConfig, *, v1: bool) -> None:
    """Raise ``ValueError`` listing every :func:`config_problems` of ``config``."""
    problems = config_problems(config, meds, v1=v1)
    if problems:
        raise ValueError("medscore cannot run MEDS with this veRL configuration:\n- " + "\n- ".join(problems))
