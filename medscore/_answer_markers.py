"""Where the final answer starts: the token after the last ``\\boxed{`` of a response.

Tokenizers split ``\\boxed{`` differently depending on its neighbours: the backslash merges
with what precedes it (``"Ġ\\"``, ``"$\\"``, ``"(\\"``) and the brace with what follows
(``"{\\"`` before ``\\frac``, ``"{{"``). :func:`answer_marker_ids` collects the token
sequences a tokenizer actually produces; :func:`find_answer_positions` searches for any
of them, vectorised over the batch.
"""
from __future__ import annotations

import importlib
from typing import Sequence

import numpy as np

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
    return sorted(found, key=lambda seq: (-len(seq), seq))


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
    is_torch = isinstance(token_ids, torch.Tensor)
    ids = torch.as_tensor(np.asarray(token_ids) if not is_torch else token_ids)
    if ids.ndim != 2 or ids.dtype.is_floating_point:
        raise ValueError(f"token_ids must be an integer [B, T] array, got {tuple(ids.shape)} {ids.dtype}")
    B, T = ids.shape
    real = torch.ones_like(ids, dtype=torch.bool)
    if attention_mask is not None:
        real = torch.as_tensor(attention_mask, device=ids.device)
        if tuple(real.shape) != (B, T):
            raise ValueError(
                f"attention_mask must have the shape of token_ids {(B, T)} (batch sizes differ), "
                f"got {tuple(real.shape)}"
            )
        real = real != 0
    best = torch.full((B,), -1, dtype=torch.int64, device=ids.device)
    columns = torch.arange(T, device=ids.device)
    for seq in _normalise_markers(marker_ids):
        m = len(seq)
        if m >= T:
            continue
        # hit[b, t]: the marker occupies t..t+m-1 and the answer token t+m is real.
        hit = real[:, m:].clone()
        for j, token in enumerate(seq):
            hit &= (ids[:, j:T - m + j] == token) & real[:, j:T - m + j]
        ends = torch.where(hit, columns[m:].expand(B, -1), -1)
        best = torch.maximum(best, ends.max(dim=1).values)
    return best if is_torch else best.numpy()


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


__all__ = ["answer_marker_ids", "answer_targets", "find_answer_positions"]
