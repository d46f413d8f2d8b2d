"""Pieces every trainer integration shares: lazy imports, prompt keys, answers, penalties."""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import re
import warnings
from typing import Any, Sequence

import numpy as np

#: File name of the memory inside a trainer's checkpoint folder.
MEMORY_FILE = "medscore_memory.bin"


def require(module: str, extra: str):
    """Import ``module`` or raise an ImportError that names the pip extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{module!r} is needed for this medscore feature and is not installed: "
            f"pip install 'medscore[{extra}]'"
        ) from err


@dataclasses.dataclass
class MedsConfig:
    """Options shared by the trainer integrations (see ``docs/integrations.md``).

    Parameters
    ----------
    enable : bool
        False turns the integration into the plain trainer.
    preset : str or None
        ``Memory`` preset; ``"paper"`` is the published recipe.
    memory_kwargs : dict
        Further keyword arguments of ``medscore.Memory`` (alpha, beta, max_age, ...).
    layers : str, int or sequence of int
        Decoder layers of the fingerprint (``"last:14"`` in the paper).
    marker : str
        Text after which the answer starts.
    key_field : str
        Field of the sample (veRL: ``extra_info``; TRL: dataset column) holding a stable
        prompt id; where absent the key is a hash of the prompt's token ids.
    correct_threshold : float
        A rollout whose (correctness) reward is above this is correct.
    reward_index : int
        TRL: the reward function whose column receives the penalty.
    on_no_answer : {"warn", "error"}
        What to do when no rollout of a step has an answer marker (no fingerprint, so no
        penalty at all): warn every time, or raise.
    """

    enable: bool = True
    preset: str | None = "paper"
    memory_kwargs: dict = dataclasses.field(default_factory=dict)
    layers: Any = "last:14"
    marker: str = "\\boxed{"
    key_field: str = "index"
    correct_threshold: float = 0.5
    reward_index: int = 0
    on_no_answer: str = "warn"

    @classmethod
    def from_mapping(cls, mapping) -> "MedsConfig":
        """Build from a dict or OmegaConf node; unknown keys raise ValueError."""
        if mapping is None:
            return cls()
        if isinstance(mapping, cls):
            return mapping
        items = dict(mapping.items())
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(items) - names)
        if unknown:
            raise ValueError(f"unknown medscore option(s) {unknown}; expected some of {sorted(names)}")
        if "memory_kwargs" in items:
            items["memory_kwargs"] = dict(items["memory_kwargs"] or {})
        config = cls(**items)
        if config.on_no_answer not in ("warn", "error"):
            raise ValueError(f"on_no_answer must be 'warn' or 'error', got {config.on_no_answer!r}")
        return config

    def build_memory(self):
        """A fresh ``medscore.Memory`` with these options."""
        from medscore.memory import Memory

        return Memory(preset=self.preset, **self.memory_kwargs)


def prompt_key(token_ids: Sequence[int]) -> str:
    """Stable key of a prompt: a 128-bit hash of its token ids (independent of padding)."""
    ids = np.asarray(token_ids, dtype=np.int64).ravel()
    return "h:" + hashlib.blake2b(ids.tobytes(), digest_size=16).hexdigest()


def sample_key(info, field: str, token_ids: Sequence[int]):
    """``info[field]`` when present (a dict-like sample), else :func:`prompt_key`."""
    if isinstance(info, dict) and info.get(field) is not None:
        value = info[field]
        return value.item() if isinstance(value, np.generic) else value
    return prompt_key(token_ids)


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` of ``text`` (braces balanced), None if absent."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, begin = 0, start + len("\\boxed{")
    for i in range(begin, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            if depth == 0:
                return text[begin:i].strip()
            depth -= 1
    return None  # unterminated: the answer was cut off


def _normalise_answer(answer: str) -> str:
    answer = re.sub(r"\\text\{([^}]*)\}", r"\1", answer)
    return answer.replace("$", "").replace(" ", "").replace("\\!", "").rstrip(".")


def boxed_answer(text: str, truth) -> bool:
    """True when the last ``\\boxed{}`` of ``text`` equals ``truth`` (numbers compared as numbers)."""
    answer = extract_boxed(text)
    if answer is None:
        return False
    got, want = _normalise_answer(answer), _normalise_answer(str(truth))
    try:
        return abs(float(got) - float(want)) <= 1e-9 * max(1.0, abs(float(want)))
    except ValueError:
        return got == want


def valid_rows(fingerprints) -> np.ndarray:
    """bool [N]: rows with a finite fingerprint (rows without an answer are NaN)."""
    values = fingerprints.detach().cpu().numpy() if hasattr(fingerprints, "detach") else fingerprints
    values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    return np.isfinite(values).all(axis=1)


def check_answers_found(valid: np.ndarray, policy: str, where: str) -> None:
    """Refuse to hand back an all-zero penalty silently when no rollout has an answer."""
    if len(valid) and not valid.any():
        message = (
            f"{where}: no rollout of this step has an answer marker, so none gets a fingerprint "
            "and every MEDS penalty is zero. Check the prompt format (the answer must follow the "
            "marker, '\\boxed{' by default) or set the marker option."
        )
        if policy == "error":
            raise ValueError(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def penalize_rollouts(memory, fingerprints, keys, correct, step, policy: str, where: str,
                      return_info: bool = False):
    """Run ``memory.penalize`` on one step's rollouts.

    Parameters
    ----------
    memory : medscore.Memory or RemoteMemory
    fingerprints : float Tensor or array [N, L] (NaN rows: no answer)
    keys : sequence [N] of int/str/bytes
    correct : bool array [N]
    step : int
    policy, where : see :func:`check_answers_found`

    Returns
    -------
    float64 ndarray [N] of penalties (0 where no fingerprint); with ``return_info`` also
    the info dict of ``Memory.penalize`` (``labels``, ``sizes``).
    """
    from medscore.memory import Batch

    valid = valid_rows(fingerprints)
    check_answers_found(valid, policy, where)
    values = fingerprints.detach().float().cpu().numpy() if hasattr(fingerprints, "detach") else fingerprints
    values = np.where(valid[:, None], np.asarray(values, dtype=np.float32).reshape(len(valid), -1), 0.0)
    batch = Batch(values.astype(np.float32), list(keys), np.asarray(correct, dtype=bool), step=step,
                  valid=valid)
    penalties, info = memory.penalize(batch, return_info=True)
    penalties = np.where(valid, np.asarray(penalties, dtype=np.float64), 0.0)
    return (penalties, info) if return_info else penalties


def memory_metrics(memory, prefix: str = "medscore/") -> dict:
    """``memory.metrics()`` with every key prefixed, as floats."""
    return {prefix + name: float(value) for name, value in memory.metrics().items()}


def run_with_capture(model, forward, positions, target_ids, layers, cu_seqlens=None):
    """Call ``forward()`` once with fingerprint hooks on ``model``'s decoder layers.

    Parameters
    ----------
    model : torch.nn.Module (a Hugging Face causal LM, possibly wrapped)
    forward : callable running the model's forward; its result is returned unchanged
    positions : int64 Tensor [B]: answer token index inside each sequence, -1 for none
    target_ids : int64 Tensor [B]: the answer token ids
    layers : layer selection of ``medscore.capture``
    cu_seqlens : int64 Tensor [B + 1] or None: sequence boundaries of packed input

    Returns
    -------
    (result of forward, float32 Tensor [B, L] fingerprints, NaN rows where positions is -1)
    """
    from medscore._capture import capture

    with capture(model, layers=layers, mode="answer") as cap:
        cap.set_targets(positions, target_ids, cu_seqlens=cu_seqlens)
        result = forward()
    return result, cap.fingerprints
