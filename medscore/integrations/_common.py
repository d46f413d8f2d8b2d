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


KEY_RULES = ("index", "prompt_tokens", "question")
PENALTY_TARGETS = ("wrong", "right", "both", "none")
PLACEMENTS = ("advantage", "scores")


@dataclasses.dataclass
class MedsConfig:
    """Options shared by the trainer integrations (see ``docs/integrations.md``).

    Parameters
    ----------
    enable : bool
        False turns the integration into the plain trainer.
    preset : str or None
        ``Memory`` preset; ``"paper"`` is the published recipe (and makes ``key`` default to
        ``"question"``).
    memory_kwargs : dict
        Further keyword arguments of ``medscore.Memory`` (alpha, beta, max_age, ...).
    layers : str, int or sequence of int
        Decoder layers of the fingerprint (``"last:14"`` in the paper).
    marker : str
        Text after which the answer starts.
    marker_rule : {"robust", "paper"}
        How the marker is found (``medscore._answer_markers``): medscore's text-robust rule,
        or the reference's exact ids with its two textual fallbacks.
    bf16 : bool
        Round each fingerprint logit as ``lm_head`` under bf16 autocast does (the reference's
        values for a trainer whose actor runs in bf16).
    key : {None, "index", "prompt_tokens", "question"}
        The memory's key: ``key_field`` of the sample (a prompt hash where absent), a hash of
        the prompt's token ids, or an md5 of the question text of the decoded prompt (the
        reference's). None: ``"question"`` with the paper preset, else ``"index"``.
    key_field : str
        Field of the sample (veRL: ``extra_info``; TRL: dataset column) holding a stable
        prompt id, for ``key="index"``.
    correct_field : str or None
        The reward's correctness field (veRL: ``non_tensor_batch[correct_field]``, as DAPO's
        ``acc``; TRL: the reward function of that name): correct when ``>= correct_threshold``.
        Where absent, the (correctness) score decides: correct when ``> correct_threshold``.
    correct_threshold : float
    penalty_target : {"wrong", "right", "both", "none"}
        Who is penalised: wrong rollouts get ``score - p``, correct ones ``score / (1 + p)``.
    placement : {None, "advantage", "scores"}
        veRL: "advantage" (None's choice) penalises the rewards that ``compute_advantage``
        reads and restores the raw ones after it (the reference's estimator: logged scores
        stay raw); "scores" rewrites ``token_level_scores`` in place. TRL: "scores" (None's
        choice) only, as TRL normalises and logs the rewards it gets in one method.
    reward_index : int
        TRL: the reward function whose column receives the penalty.
    on_no_answer : {"warn", "error"}
        What to do when no rollout of a step has an answer marker (no fingerprint, so no
        penalty at all): warn every time, or raise.
    on_missing_memory : {"error", "empty"}
        Resuming from a trainer checkpoint that holds no memory file (one written without
        MEDS, or by a run whose memory save failed): raise, or warn and start from an empty
        memory.
    """

    enable: bool = True
    preset: str | None = "paper"
    memory_kwargs: dict = dataclasses.field(default_factory=dict)
    layers: Any = "last:14"
    marker: str = "\\boxed{"
    marker_rule: str = "robust"
    bf16: bool = False
    key: str | None = None
    key_field: str = "index"
    correct_field: str | None = "acc"
    correct_threshold: float = 0.5
    penalty_target: str = "wrong"
    placement: str | None = None
    reward_index: int = 0
    on_no_answer: str = "warn"
    on_missing_memory: str = "error"

    def __post_init__(self):
        from medscore._answer_markers import MARKER_RULES

        if self.on_no_answer not in ("warn", "error"):
            raise ValueError(f"on_no_answer must be 'warn' or 'error', got {self.on_no_answer!r}")
        _check_choice("marker_rule", self.marker_rule, MARKER_RULES)
        _check_choice("key", self.key, (None, *KEY_RULES))
        _check_choice("penalty_target", self.penalty_target, PENALTY_TARGETS)
        _check_choice("placement", self.placement, (None, *PLACEMENTS))
        _check_choice("on_missing_memory", self.on_missing_memory, ("error", "empty"))
        if not isinstance(self.bf16, bool):
            raise TypeError(f"bf16 must be a bool, got {self.bf16!r}")

    @property
    def key_rule(self) -> str:
        """The key rule in force (``key``, or the preset's default)."""
        return self.key or ("question" if self.preset == "paper" else "index")

    @classmethod
    def from_mapping(cls, mapping) -> "MedsConfig":
        """Build from a dict or OmegaConf node; unknown keys raise ValueError."""
        if mapping is None:
            return cls()
        if isinstance(mapping, cls):
            return mapping
        if hasattr(mapping, "_get_flag"):  # an OmegaConf node: plain containers, interpolations resolved
            from omegaconf import OmegaConf

            mapping = OmegaConf.to_container(mapping, resolve=True)
        items = dict(mapping.items())
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(items) - names)
        if unknown:
            raise ValueError(f"unknown medscore option(s) {unknown}; expected some of {sorted(names)}")
        if "memory_kwargs" in items:
            items["memory_kwargs"] = dict(items["memory_kwargs"] or {})
        return cls(**items)

    def build_memory(self):
        """A fresh ``medscore.Memory`` with these options (``penalty_target`` as its ``target``)."""
        from medscore.memory import Memory

        options = dict(self.memory_kwargs)
        if options.setdefault("target", self.penalty_target) != self.penalty_target:
            raise ValueError(f"penalty_target={self.penalty_target!r} and memory_kwargs target="
                             f"{options['target']!r} disagree; set penalty_target only")
        return Memory(preset=self.preset, **options)


def threads_per_rank(environ=None) -> int:
    """Clustering threads for one of the trainer processes of this node.

    The cores this process may use, divided by the processes of the node (``LOCAL_WORLD_SIZE``,
    set by torchrun and ``accelerate launch``), at least 1: each rank holds its own memory and
    clusters the same step at the same time, so all-cores-per-rank oversubscribes the node.
    """
    import os

    environ = os.environ if environ is None else environ
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    local = max(1, int(environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(1, cores // local)


def save_checkpoint_memory(memory, folder) -> str:
    """Write ``memory`` as ``folder/MEMORY_FILE`` (atomically: a temporary file renamed) and
    return the path. Trainers call it before they write their own "latest checkpoint"
    marker, so a checkpoint that a resume can find always has its memory."""
    import os

    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, MEMORY_FILE)
    memory.save(path)
    return path


def load_checkpoint_memory(memory, folder, policy: str = "error", where: str = "medscore") -> bool:
    """Load ``folder/MEMORY_FILE`` into ``memory`` (a ``Memory`` or a ``RemoteMemory``).

    Parameters
    ----------
    memory : medscore.Memory or medscore.integrations.ray.RemoteMemory
    folder : str, the trainer's checkpoint folder
    policy : {"error", "empty"}, what to do when the folder has no memory file
    where : str, names the trainer in messages

    Returns
    -------
    bool: True when a memory was loaded.

    Raises
    ------
    FileNotFoundError
        With ``policy="error"`` when the checkpoint holds no memory file.
    """
    import os

    path = os.path.join(folder, MEMORY_FILE)
    if not os.path.exists(path):
        message = (f"{where}: resuming from {folder}, which holds no MEDS memory ({MEMORY_FILE}); "
                   "resume from a checkpoint written with medscore, or set medscore option "
                   "on_missing_memory='empty' to start from an empty memory")
        if policy == "error":
            raise FileNotFoundError(message)
        warnings.warn(message.split(";")[0] + ": starting from an empty memory", RuntimeWarning, stacklevel=2)
        return False
    from medscore.memory import Memory

    if isinstance(memory, Memory):
        memory.load_state_dict(Memory.load(path).state_dict())
    else:  # RemoteMemory: a manifest naming one file per shard
        memory.load(path)
    return True


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


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


# The question inside the prompt templates the MEDS reference was run with; elsewhere the
# prompt text without markup tags stands for the question.
_QUESTION_PATTERNS = (
    re.compile(r"Solve the following math problem step by step[^\n]*\n\n(.*?)\n\nRemember to put your answer",
               re.DOTALL),
    re.compile(r"<\|User\|>(.*?)<\|Assistant\|>", re.DOTALL),
    re.compile(r"\[INST\](.*?)\[/INST\]", re.DOTALL),
)


def question_text(prompt: str) -> str:
    """The question of a decoded prompt, found as the MEDS reference finds it.

    The first of its three templates that matches (a "Solve the following math problem step
    by step" instruction, ``<|User|>...<|Assistant|>``, ``[INST]...[/INST]``); else the text
    after the instruction line (up to "Remember to put your answer"); else the prompt without
    ``<...>`` tags and ``[INST]`` markers, or the whole prompt when that leaves under 10
    characters.
    """
    for pattern in _QUESTION_PATTERNS:
        found = pattern.search(prompt)
        if found:
            return found.group(1).strip()
    head = "Solve the following math problem step by step"
    if head in prompt:
        return prompt.split(head, 1)[1].split("Remember to put your answer")[0].strip()
    stripped = re.sub(r"\[/?INST\]", "", re.sub(r"<[^>]+>", "", prompt)).strip()
    return stripped if len(stripped) >= 10 else prompt.strip()


def question_key(prompt: str) -> str:
    """The reference's memory key: md5 (first 16 hex digits) of the whitespace-normalised question."""
    question = re.sub(r"\s+", " ", question_text(prompt)).strip()
    return hashlib.md5(question.encode("utf-8")).hexdigest()[:16]


def rollout_keys(rule: str, prompt_tokens: Sequence[Sequence[int]], infos=None, *, field: str = "index",
                 tokenizer=None) -> list:
    """The memory key of each rollout.

    Parameters
    ----------
    rule : {"index", "prompt_tokens", "question"}
        ``infos[i][field]`` where present, else the token hash (``"index"``); the hash of the
        prompt's real token ids (``"prompt_tokens"``); :func:`question_key` of the prompt
        decoded with ``skip_special_tokens=True`` (``"question"``, needs ``tokenizer``).
    prompt_tokens : sequence [N] of int sequences (real tokens, no padding)
    infos : sequence [N] of dicts (or None)
    """
    _check_choice("key", rule, KEY_RULES)
    infos = [None] * len(prompt_tokens) if infos is None else list(infos)
    if rule == "index":
        return [sample_key(info, field, tokens) for info, tokens in zip(infos, prompt_tokens)]
    if rule == "prompt_tokens":
        return [prompt_key(tokens) for tokens in prompt_tokens]
    if tokenizer is None:
        raise ValueError("key='question' decodes the prompts and needs the tokenizer")
    cache: dict = {}  # a prompt's rollouts share its key: decode it once
    keys = []
    for tokens in prompt_tokens:
        ids = tuple(int(t) for t in tokens)
        if ids not in cache:
            cache[ids] = question_key(tokenizer.decode(list(ids), skip_special_tokens=True))
        keys.append(cache[ids])
    return keys


def rollout_correctness(scores, field_values=None, threshold: float = 0.5) -> np.ndarray:
    """bool [N]: ``field_values >= threshold`` when the reward provides them (the reference's
    ``acc >= 0.5``), else ``scores > threshold``."""
    if field_values is not None:
        return np.asarray(field_values, dtype=np.float64).reshape(-1) >= threshold
    return np.asarray(scores, dtype=np.float64).reshape(-1) > threshold


def shaped_totals(totals, penalties, correct) -> np.ndarray:
    """float64 [N]: sequence rewards after MEDS, ``total - p`` for wrong rollouts and
    ``total / (1 + p)`` for correct ones (``p = 0`` leaves a reward as it is)."""
    totals = np.asarray(totals, dtype=np.float64)
    penalties = np.asarray(penalties, dtype=np.float64)
    return np.where(np.asarray(correct, dtype=bool), totals / (1.0 + penalties), totals - penalties)


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


def run_with_capture(model, forward, positions, target_ids, layers, cu_seqlens=None, bf16=False):
    """Call ``forward()`` once with fingerprint hooks on ``model``'s decoder layers.

    Parameters
    ----------
    model : torch.nn.Module (a Hugging Face causal LM, possibly wrapped)
    forward : callable running the model's forward; its result is returned unchanged
    positions : int64 Tensor [B]: answer token index inside each sequence, -1 for none (the
        hidden state is read one token earlier, where the answer token is predicted)
    target_ids : int64 Tensor [B]: the answer token ids
    layers : layer selection of ``medscore.capture``
    cu_seqlens : int64 Tensor [B + 1] or None: sequence boundaries of packed input
    bf16 : bool: round the logits as ``lm_head`` under bf16 autocast does

    Returns
    -------
    (result of forward, float32 Tensor [B, L] fingerprints, NaN rows where positions is -1)
    """
    from medscore._capture import capture

    with capture(model, layers=layers, mode="answer", read_at="before", bf16=bf16) as cap:
        cap.set_targets(positions, target_ids, cu_seqlens=cu_seqlens)
        result = forward()
    return result, cap.fingerprints
