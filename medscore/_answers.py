"""``medscore.answer_fingerprints``: the MEDS fingerprint of every rollout, for any trainer.

A trainer holds a step's rollouts as left-padded prompts and right-padded responses (veRL's
``prompts``/``responses``, TRL's ``prompt_ids``/``completion_ids``). One no-grad forward of
the model over ``[prompt | response]``, inside :class:`medscore.capture`, gives each rollout's
fingerprint: the logit-lens logit of its answer token (the token after the marker) read at
the marker's last token, in each selected layer. The marker rule and the read position are
those of :func:`medscore._answer_markers.locate_answers`, which the veRL and TRL
integrations and the demo use too.

``preset="paper"`` gives the MEDS reference's values: its exact-ids marker rule with both
textual fallbacks, the last 14 of ``hidden_states[1:]`` (the last one after the final
norm), ``lm_head`` per layer; ``bf16=True`` adds the reference's ``torch.autocast``
rounding. The only deliberate difference: where a response ends right after the marker,
the reference reads the logit of whatever follows (a padding token, or nothing) and
medscore returns NaN (no answer, no fingerprint).
"""
from __future__ import annotations

import contextlib
import inspect

from . import _sharded
from ._answer_markers import MARKER_RULES, locate_answers, marker_ids_for
from ._validation import check_choice
from .integrations._common import require

#: Options of :func:`answer_fingerprints` and their defaults (``preset=None``).
DEFAULTS = dict(rule="robust", marker="\\boxed{", marker_ids=None, layers="last:14", layout="padded",
                bf16=False, backend="auto")
#: Presets: option values replacing the defaults; explicit options still win.
PRESETS = {"paper": dict(rule="paper", layers="last:14")}
LAYOUTS = ("padded", "packed")


def resolve_options(preset, options: dict) -> dict:
    """The defaults, then the preset's values, then ``options``; validated."""
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"answer_fingerprints got unknown options {unknown}; known: {sorted(DEFAULTS)}")
    if preset is not None and preset not in PRESETS:
        raise ValueError(f"preset must be one of {[None, *PRESETS]}, got {preset!r}")
    resolved = {**DEFAULTS, **PRESETS.get(preset, {}), **options}
    check_choice("rule", resolved["rule"], MARKER_RULES)
    check_choice("layout", resolved["layout"], LAYOUTS)
    if not isinstance(resolved["bf16"], bool):
        raise TypeError(f"bf16 must be a bool, got {resolved['bf16']!r}")
    return resolved


def answer_fingerprints(model, tokenizer, prompt_ids, prompt_mask, response_ids, response_mask, *,
                        preset=None, **options):
    """Fingerprints of rollouts: one no-grad forward of ``model`` with :class:`medscore.capture`.

    Parameters
    ----------
    model : a Hugging Face causal LM (see :class:`medscore.capture`)
    tokenizer : its tokenizer (for the marker's ids; the paper rule also reads token texts)
    prompt_ids, prompt_mask : int Tensor [B, P]
        Prompts, left padded; the mask is non-zero on real tokens.
    response_ids, response_mask : int Tensor [B, R]
        Responses, right padded (as veRL and TRL hold them).
    preset : {None, "paper"}
        ``"paper"``: the MEDS reference's marker rule and layers (module docstring).
    **options
        rule : {"robust", "paper"}, default "robust" (``locate_answers``).
        marker : str, default ``"\\boxed{"``.
        marker_ids : the rule's marker ids, prebuilt with ``marker_ids_for`` (saves building
        them per call; they are cached per tokenizer anyway).
        layers : layer selection of ``capture``, default ``"last:14"``.
        layout : {"padded", "packed"}, default "padded": the forward runs on the padded
        ``[B, P + R]`` rows (attention mask, position ids from it), or on the real tokens
        packed into ``[1, N]`` with position ids restarting at each sequence (as veRL's
        ``use_remove_padding``; needs a model whose attention keeps packed sequences apart
        given position ids and no mask, as Hugging Face models do since transformers 4.56).
        bf16 : bool, default False: run the forward under ``torch.autocast(bfloat16)`` on
        the model's device type and round each logit as ``lm_head`` does under it (the
        reference's actor forward).
        backend : ``capture``'s backend, default "auto".

    Returns
    -------
    float32 Tensor [B, L] on the model's device; rows are NaN where a response has no marker,
    or ends right after it (no answer token). Column ``l`` is the ``l``-th selected layer.

    Raises
    ------
    ValueError
        Shapes that differ, or a tokenizer that cannot represent the marker.
    """
    torch = require("torch", "torch")
    from ._capture import capture

    o = resolve_options(preset, options)
    device = _model_device(model)
    prompt, p_mask = _as_tensor(prompt_ids, device), _as_tensor(prompt_mask, device)
    response, r_mask = _as_tensor(response_ids, device), _as_tensor(response_mask, device)
    seqs = o["marker_ids"] if o["marker_ids"] is not None else marker_ids_for(tokenizer, o["rule"], o["marker"])
    where = locate_answers(tokenizer, prompt, p_mask, response, r_mask, rule=o["rule"], marker=o["marker"],
                           marker_ids=seqs)
    cap = capture(model, layers=o["layers"], mode="answer", read_at="before", backend=o["backend"],
                  bf16=o["bf16"])
    # Nothing to read: no forward at all. Not so in a sharded model, whose forward holds
    # collectives that every rank must join (a rank skipping it would hang the others).
    if not cap.deferred and not bool((where.column >= 0).any()):
        return torch.full((len(where.column), len(cap.layer_indices)), float("nan"), device=device)
    ids = torch.cat([prompt, response], 1)
    real = torch.cat([p_mask, r_mask], 1) != 0
    autocast = (torch.autocast(device_type=device.type, dtype=torch.bfloat16) if o["bf16"]
                else contextlib.nullcontext())
    with torch.no_grad(), _eval_mode(model), autocast, cap:
        if o["layout"] == "padded":
            cap.set_targets(where.column, where.target)
            positions = (real.long().cumsum(1) - 1).clamp(min=0)
            model(input_ids=ids, attention_mask=real.long(), position_ids=positions, use_cache=False,
                  **_keep_one_logit(model))
        else:
            lengths = real.sum(1)
            cu_seqlens = torch.nn.functional.pad(lengths.cumsum(0), (1, 0))
            positions = (real.long().cumsum(1) - 1)[real]
            cap.set_targets(where.index, where.target, cu_seqlens=cu_seqlens)
            model(input_ids=ids[real][None], position_ids=positions[None], use_cache=False,
                  **_keep_one_logit(model))
    return cap.fingerprints


def _model_device(model):
    for param in model.parameters():
        return param.device
    raise ValueError(f"{type(model).__name__} has no parameters")


def _as_tensor(values, device):
    torch = require("torch", "torch")
    out = torch.as_tensor(values, device=device)
    if out.ndim != 2 or out.dtype.is_floating_point:
        raise ValueError(f"ids and masks must be integer [B, T] tensors, got {tuple(out.shape)} {out.dtype}")
    return out


def _keep_one_logit(model) -> dict:
    """``logits_to_keep=1`` where the model takes it: the fingerprint needs no output logits,
    and the full-vocabulary head over every token is the forward's largest tensor.

    A wrapper that forwards ``**kwargs`` (FSDP1, DDP, a DeepSpeed engine) is looked through:
    the keyword reaches the model inside it.
    """
    torch = require("torch", "torch")
    target = _sharded.inner_module(model)
    while True:
        try:
            accepted = inspect.signature(target.forward).parameters
        except (TypeError, ValueError):  # pragma: no cover - a forward without a signature
            return {}
        if "logits_to_keep" in accepted:
            return {"logits_to_keep": 1}
        inner = getattr(target, "module", None)
        forwards_keywords = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
        if not forwards_keywords or not isinstance(inner, torch.nn.Module) or inner is target:
            return {}
        target = _sharded.inner_module(inner)


@contextlib.contextmanager
def _eval_mode(model):
    """Evaluation mode (no dropout) for the forward, each module's own mode restored after."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


__all__ = ["DEFAULTS", "PRESETS", "answer_fingerprints", "resolve_options"]
