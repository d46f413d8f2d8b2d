"""Where the final answer starts, and which hidden state predicts it: one implementation.

Two marker rules locate the marker (``\\boxed{`` by default) in a response:

- ``"robust"`` (medscore's default): the last place where any of the token sequences that the
  tokenizer actually produces for the marker occurs. Tokenizers split ``\\boxed{``
  differently depending on its neighbours: the backslash merges with what precedes it
  (``"Ġ\\"``, ``"$\\"``, ``"(\\"``) and the brace with what follows (``"{\\"`` before
  ``\\frac``, ``"{{"``). :func:`answer_marker_ids` collects those sequences;
  :func:`find_answer_positions` searches for any of them, vectorised over the batch. A
  marker may start at the end of the prompt (an assistant turn prefilled up to ``\\boxed{``).
- ``"paper"`` (the MEDS reference): the last exact occurrence of
  ``tokenizer.encode(marker, add_special_tokens=False)`` in the response; where there is none,
  scanning from the end, the last token whose text contains ``"boxed"`` (any case) followed,
  at most 9 tokens later, by a token whose text contains ``"{"`` (the reference's two textual
  fallbacks, :func:`find_paper_marker_ends`). Only the response is searched.

Either way the *answer token* is the token right after the marker, and the fingerprint reads
the hidden state one position earlier (the marker's last token), whose output predicts the
answer token: :func:`locate_answers` returns both, in the layouts the trainers use.
"""
from __future__ import annotations

import importlib
import weakref
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ._validation import check_choice

# Text commonly found right before and after "\boxed{" in math responses.
_PREFIXES = ("", " ", "$", " $", "$$", "(", " (", "{", "[", "\n", "=", " =", ":", "**",
             "is ", "\\(", "\\[", "\\quad", ".")
_SUFFIXES = ("1", "12", "x", "-", " ", "\\", "\\frac", "\\dfrac", "\\text", "{", "(", "[",
             "$", "a", "A", "0.5", "\\sqrt", "\\pi")


def answer_marker_ids(tokenizer, marker: str = "\\boxed{") -> list[tuple[int, ...]]:
    """Token-id sequences that end right before the first token of the answer.

    ``marker`` is tokenised inside common contexts (``" \\boxed{"``, ``"$\\boxed{\\frac"``,
    ...). For each context the tokens covering the marker are kept; when the marker's last
    character merges into the following token (``"{\\"``), that token is dropped, so the
    token after the sequence is the first one that holds answer text.

    Parameters
    ----------
    tokenizer : a Hugging Face tokenizer (fast tokenizers use offsets; slow ones decode)
    marker : str

    Returns
    -------
    list of tuple of int, distinct, longest first.
    """
    if not marker:
        raise ValueError("marker must be a non-empty string")
    found = set()
    for prefix in _PREFIXES:
        for suffix in _SUFFIXES:
            ids, spans = _token_spans(tokenizer, prefix + marker + suffix)
            lo, hi = len(prefix), len(prefix) + len(marker)
            covering = [i for i, (a, b) in enumerate(spans) if a < hi and b > lo]
            if not covering:
                continue
            first, last = covering[0], covering[-1]
            if spans[last][1] > hi:  # the brace merged with the answer's first characters
                last -= 1
            if last >= first:
                found.add(tuple(ids[first:last + 1]))
    unknown = getattr(tokenizer, "unk_token_id", None)
    found = {seq for seq in found if unknown is None or unknown not in seq}
    if not found:
        raise ValueError(_unrepresentable(tokenizer, marker))
    return sorted(found, key=lambda seq: (-len(seq), seq))


def _unrepresentable(tokenizer, marker: str) -> str:
    return (f"the tokenizer {type(tokenizer).__name__} cannot represent the answer marker {marker!r} "
            "(it encodes to nothing or to its unknown token), so no answer could ever be located: "
            "use a marker its vocabulary holds")


def paper_marker_ids(tokenizer, marker: str = "\\boxed{") -> tuple[int, ...]:
    """The marker's ids as the MEDS reference takes them: ``encode(marker, add_special_tokens=False)``.

    Raises
    ------
    ValueError
        When the marker encodes to nothing or holds the tokenizer's unknown token.
    """
    if not marker:
        raise ValueError("marker must be a non-empty string")
    ids = tuple(int(i) for i in tokenizer.encode(marker, add_special_tokens=False))
    unknown = getattr(tokenizer, "unk_token_id", None)
    if not ids or (unknown is not None and unknown in ids):
        raise ValueError(_unrepresentable(tokenizer, marker))
    return ids


def _token_spans(tokenizer, text: str):
    """Token ids of ``text`` and the character span each covers."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=getattr(
        tokenizer, "is_fast", False))
    ids = list(enc["input_ids"])
    if "offset_mapping" in enc:
        return ids, [tuple(span) for span in enc["offset_mapping"]]
    ends = [len(tokenizer.decode(ids[:i + 1])) for i in range(len(ids))]
    return ids, list(zip([0, *ends[:-1]], ends))


def _normalise_markers(marker_ids) -> list[tuple[int, ...]]:
    seqs = list(marker_ids)
    if seqs and all(isinstance(x, (int, np.integer)) for x in seqs):
        seqs = [seqs]
    out = [tuple(int(x) for x in seq) for seq in seqs]
    if not out or any(len(seq) == 0 for seq in out):
        raise ValueError("marker_ids must be one non-empty id sequence or a list of them")
    return out


def _as_ids_and_real(token_ids, attention_mask):
    """(int Tensor [B, T], bool Tensor [B, T] of real tokens, whether the input was torch)."""
    torch = importlib.import_module("torch")
    is_torch = isinstance(token_ids, torch.Tensor)
    ids = torch.as_tensor(np.asarray(token_ids) if not is_torch else token_ids)
    if ids.ndim != 2 or ids.dtype.is_floating_point:
        raise ValueError(f"token_ids must be an integer [B, T] array, got {tuple(ids.shape)} {ids.dtype}")
    if attention_mask is None:
        return ids, torch.ones_like(ids, dtype=torch.bool), is_torch
    real = torch.as_tensor(attention_mask, device=ids.device)
    if tuple(real.shape) != tuple(ids.shape):
        raise ValueError(
            f"attention_mask must have the shape of token_ids {tuple(ids.shape)} (batch sizes differ), "
            f"got {tuple(real.shape)}"
        )
    return ids, real != 0, is_torch


def _last_marker_ends(ids, real, seq, need_answer: bool):
    """Column of the last token of the last occurrence of ``seq`` on real tokens, -1 if none.

    With ``need_answer`` an occurrence counts only when a real token follows it.
    """
    torch = importlib.import_module("torch")
    B, T = ids.shape
    m = len(seq)
    if m > T - int(need_answer):
        return torch.full((B,), -1, dtype=torch.int64, device=ids.device)
    width = T - m + 1 - int(need_answer)  # candidate start columns 0 .. width - 1
    hit = real[:, m:m + width].clone() if need_answer else torch.ones_like(real[:, :width])
    for j, token in enumerate(seq):
        hit &= (ids[:, j:j + width] == token) & real[:, j:j + width]
    ends = torch.where(hit, torch.arange(m - 1, m - 1 + width, device=ids.device).expand(B, -1), -1)
    return ends.max(dim=1).values


def find_answer_positions(token_ids, marker_ids, attention_mask=None):
    """Position of the token right after the last occurrence of any marker, ``-1`` if none.

    Parameters
    ----------
    token_ids : int Tensor or array [B, T]
        Token ids (left or right padded; positions are columns of this array).
    marker_ids : sequence of int, or list of sequences of int
        The marker's token ids (see :func:`answer_marker_ids`).
    attention_mask : Tensor or array [B, T], optional
        Non-zero on real tokens; a match must lie on real tokens and be followed by one.

    Returns
    -------
    int64 [B]: a torch tensor on ``token_ids``' device for torch input, else a numpy array.
    """
    torch = importlib.import_module("torch")
    ids, real, is_torch = _as_ids_and_real(token_ids, attention_mask)
    best = torch.full((ids.shape[0],), -1, dtype=torch.int64, device=ids.device)
    for seq in _normalise_markers(marker_ids):
        ends = _last_marker_ends(ids, real, seq, need_answer=True)
        best = torch.maximum(best, torch.where(ends >= 0, ends + 1, -1))
    return best if is_torch else best.numpy()


def find_paper_marker_ends(tokenizer, response_ids, response_mask=None, marker: str = "\\boxed{",
                           marker_ids: Sequence[int] | None = None):
    """The MEDS reference's marker rule: column of the marker's last token in each response.

    The last exact occurrence of ``marker_ids`` (default :func:`paper_marker_ids`) on real
    tokens; for a row without one, scanning its tokens from the end, the last token whose
    text (``convert_ids_to_tokens``) contains ``"boxed"`` in any case such that one of it and
    the 9 tokens after it contains ``"{"``: the first such token is the marker's end.

    Parameters
    ----------
    tokenizer : a Hugging Face tokenizer
    response_ids : int Tensor or array [B, R]
    response_mask : Tensor or array [B, R], optional
        Non-zero on real tokens (the reference scans the padded row; padding tokens, which
        contain neither ``"boxed"`` nor ``"{"``, cannot change its result).
    marker, marker_ids : the marker text, or its ids as already encoded

    Returns
    -------
    int64 [B], ``-1`` where the rule finds no marker; torch for torch input, else numpy.
    """
    torch = importlib.import_module("torch")
    ids, real, is_torch = _as_ids_and_real(response_ids, response_mask)
    seq = tuple(marker_ids) if marker_ids is not None else paper_marker_ids(tokenizer, marker)
    ends = _last_marker_ends(ids, real, _normalise_markers(seq)[0], need_answer=False)
    rows = (ends < 0).nonzero().squeeze(1)
    if rows.numel() and ids.shape[1]:
        ends[rows] = _textual_marker_ends(tokenizer, ids[rows], real[rows])
    return ends if is_torch else ends.numpy()


def _textual_marker_ends(tokenizer, ids, real):
    """The reference's fallback, vectorised over rows (int64 [b], -1 where it finds nothing).

    The last real token whose text holds "boxed" (any case) among those with a token holding
    "{" in it or the 9 after it; the first such "{" token. Token texts are looked up once per
    distinct id of the batch.
    """
    torch = importlib.import_module("torch")
    unique, inverse = torch.unique(ids, return_inverse=True)
    texts = tokenizer.convert_ids_to_tokens(unique.tolist())
    has = lambda test: torch.tensor([isinstance(t, str) and test(t) for t in texts],  # noqa: E731
                                    dtype=torch.bool, device=ids.device)[inverse] & real
    boxed, brace = has(lambda t: "boxed" in t.lower()), has(lambda t: "{" in t)
    T = ids.shape[1]
    columns = torch.arange(T, device=ids.device)
    before = torch.nn.functional.pad(brace.long().cumsum(1), (1, 0))  # braces in columns < t
    within = (before[:, (columns + 10).clamp(max=T)] - before[:, :T]) > 0  # a brace in t .. t + 9
    start = torch.where(boxed & within, columns, -1).max(1).values
    after = brace & (columns >= start[:, None])
    first = torch.where(after, columns, T).min(1).values
    return torch.where(start >= 0, first, -1)


def answer_targets(token_ids, positions):
    """Token ids at ``positions`` (``token_ids[b, positions[b]]``), ``0`` where positions is -1.

    Parameters
    ----------
    token_ids : int Tensor [B, T]
    positions : int Tensor [B]

    Returns
    -------
    int64 Tensor [B] (the 0 placeholders are never read: their fingerprints are NaN).
    """
    torch = importlib.import_module("torch")
    ids = torch.as_tensor(token_ids)
    pos = torch.as_tensor(positions, device=ids.device).long()
    picked = ids.gather(1, pos.clamp(min=0).unsqueeze(1)).squeeze(1).long()
    return torch.where(pos >= 0, picked, torch.zeros_like(picked))


MARKER_RULES = ("robust", "paper")
_MARKER_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def marker_ids_for(tokenizer, rule: str = "robust", marker: str = "\\boxed{"):
    """The marker ids a rule searches for: :func:`answer_marker_ids` (``"robust"``, a list of
    sequences) or :func:`paper_marker_ids` (``"paper"``, one sequence); cached per tokenizer."""
    check_choice("rule", rule, MARKER_RULES)
    try:
        cached = _MARKER_CACHE.setdefault(tokenizer, {})
    except TypeError:  # a tokenizer that cannot be weakly referenced: no cache
        cached = {}
    if (rule, marker) not in cached:
        build = answer_marker_ids if rule == "robust" else paper_marker_ids
        cached[(rule, marker)] = build(tokenizer, marker)
    return cached[(rule, marker)]


@dataclass(frozen=True)
class AnswerLocations:
    """Where each rollout's answer starts, in the layouts trainers hold (all int64 [B] tensors).

    Attributes
    ----------
    column : Tensor
        Column of the answer token (the token after the marker) in ``[prompt | response]``
        (``P + r`` for response column ``r``); -1 where there is none.
    index : Tensor
        Index of the answer token among the row's real tokens (the unpadded prompt +
        response, as packed layouts hold it); -1 where there is none.
    target : Tensor
        The answer token's id; 0 where there is none.
    marker : Tensor (bool)
        A marker was found in the response; True with ``column == -1`` means the response
        ends right after the marker (no answer token, no fingerprint).

    The fingerprint is read at ``column - 1`` (``index - 1``): the marker's last token, whose
    output predicts the answer token.
    """

    column: Any
    index: Any
    target: Any
    marker: Any


def _drop_bare_brace(tokenizer, ids, answer, marker: str):
    """No answer where the "answer token" is the marker's own last piece (``"{"``).

    The robust rule's sequences for a brace merged with the answer (``"{\\"``, ``"{{"``)
    end before the brace; a response cut right after ``\\boxed{`` matches them too, with
    the bare brace as its "answer" (the marker is then incomplete before it, whereas in
    ``\\boxed{{5}}`` the bare brace follows the whole marker and is the answer's first
    token). ``tokenizer`` None (prebuilt ids only): no check.
    """
    torch = importlib.import_module("torch")
    rows = (answer >= 0).nonzero().squeeze(1).tolist()
    if tokenizer is None or not rows:
        return answer
    tokens = ids[rows, answer[rows]].tolist()
    before = ids[rows, answer[rows] - 1].tolist()
    texts = _decode_each(tokenizer, tokens + before)
    bare = [marker.endswith(t) and not p.endswith(marker[-1]) for t, p in zip(texts[:len(rows)], texts[len(rows):])]
    keep = torch.ones_like(answer, dtype=torch.bool)
    keep[[r for r, b in zip(rows, bare) if b]] = False
    return torch.where(keep, answer, -1)


def _decode_each(tokenizer, ids: list) -> list:
    """The text of each token id (one batched call where the tokenizer has one)."""
    if hasattr(tokenizer, "batch_decode"):
        return list(tokenizer.batch_decode([[t] for t in ids]))
    return [tokenizer.decode([t]) for t in ids]


def locate_answers(tokenizer, prompt_ids, prompt_mask, response_ids, response_mask, *, rule: str = "robust",
                   marker: str = "\\boxed{", marker_ids=None) -> AnswerLocations:
    """Answer token of each rollout, by the ``"robust"`` or ``"paper"`` marker rule.

    Parameters
    ----------
    tokenizer : a Hugging Face tokenizer (used for the marker's ids, and by the paper rule's
        textual fallbacks; may be None when ``marker_ids`` is given and ``rule="robust"``)
    prompt_ids, prompt_mask : int Tensor [B, P]; prompts (left padded), non-zero on real tokens
    response_ids, response_mask : int Tensor [B, R]; responses (right padded)
    rule : {"robust", "paper"}
        See the module docstring. "robust" also finds a marker that ends the prompt (a
        prefilled ``\\boxed{``); "paper" searches the response only, as the reference does.
    marker : str
    marker_ids : the rule's marker ids, when already built (:func:`marker_ids_for`)

    Returns
    -------
    AnswerLocations on ``response_ids``' device.
    """
    torch = importlib.import_module("torch")
    check_choice("rule", rule, MARKER_RULES)
    prompt, p_real, _ = _as_ids_and_real(prompt_ids, prompt_mask)
    response, r_real, _ = _as_ids_and_real(response_ids, response_mask)
    if prompt.shape[0] != response.shape[0]:
        raise ValueError(f"batch sizes differ: {prompt.shape[0]} prompts, {response.shape[0]} responses")
    prompt, p_real = prompt.to(response.device), p_real.to(response.device)
    P, R = prompt.shape[1], response.shape[1]
    ids = torch.cat([prompt, response], 1)
    real = torch.cat([p_real, r_real], 1)
    seqs = marker_ids if marker_ids is not None else marker_ids_for(tokenizer, rule, marker)
    if rule == "robust":
        seqs = _normalise_markers(seqs)
        answer = find_answer_positions(ids, seqs, real)
        answer = torch.where(answer >= P, answer, -1)  # answers live in the response
        ends = torch.stack([_last_marker_ends(ids, real, seq, need_answer=False) for seq in seqs]).max(0).values
        answer = _drop_bare_brace(tokenizer, ids, answer, marker)
        found = (answer >= 0) | (ends >= P)
    else:
        ends = find_paper_marker_ends(tokenizer, response, r_real, marker, marker_ids=seqs)
        # The answer token must be a real token; a column of padding stands in past the end.
        padded = torch.nn.functional.pad(r_real, (0, 1))
        has_answer = (ends >= 0) & padded.gather(1, (ends + 1)[:, None]).squeeze(1)
        answer = torch.where(has_answer, P + ends + 1, -1)
        found = ends >= 0
    present = answer >= 0
    safe = answer.clamp(min=0)[:, None]
    index = real.long().cumsum(1).gather(1, safe).squeeze(1) - 1
    target = ids.gather(1, safe).squeeze(1).long()
    return AnswerLocations(answer, torch.where(present, index, -1), torch.where(present, target, 0), found)


__all__ = ["AnswerLocations", "MARKER_RULES", "answer_marker_ids", "answer_targets", "find_answer_positions",
           "find_paper_marker_ends", "locate_answers", "marker_ids_for", "paper_marker_ids"]
