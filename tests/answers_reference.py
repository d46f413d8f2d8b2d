"""The MEDS reference's fingerprint, re-implemented from its published description.

Written from the description of the reference recipe (github Linxi000/MEDS, see
``shared/MEDS.md``), not from medscore: every hidden state (``output_hidden_states=True``), the
embedding output dropped, the last ``n_last`` of the rest, the full ``lm_head`` on each, one
column read. The marker: the last exact occurrence of ``encode("\\boxed{")`` in the padded
response row, else (scanning from the end) a token whose text holds "boxed" followed within
10 tokens by one holding "{". Read at the marker's last token; target: the next token.
"""
from __future__ import annotations

import contextlib

import torch


def reference_brace_position(tokenizer, row: list[int]):
    """The reference's marker rule on one padded response row: index of the ``{``, or None."""
    marker = tokenizer.encode("\\boxed{", add_special_tokens=False)
    width = len(marker)
    starts = [j for j in range(len(row) - width + 1) if row[j:j + width] == marker]
    if starts:
        return starts[-1] + width - 1
    texts = tokenizer.convert_ids_to_tokens(row)
    for i in reversed(range(len(texts))):
        if "boxed" in texts[i].lower():
            braces = [m for m in range(i, min(i + 10, len(texts))) if "{" in texts[m]]
            if braces:
                return braces[0]
    return None


def reference_fingerprints(model, tokenizer, prompt_ids, prompt_mask, response_ids, response_mask, *,
                           packed=False, bf16=False, n_last=14):
    """float32 [B, n_last]: the reference's values; NaN where its marker rule finds nothing.

    Also returns the bool [B] rows whose target (the token after the brace) is not a real
    token: there the reference reads a padding token's logit (or fails), medscore gives NaN.
    """
    P = prompt_ids.shape[1]
    ids = torch.cat([prompt_ids, response_ids], 1)
    mask = torch.cat([prompt_mask, response_mask], 1)
    B, T = ids.shape
    brace = [reference_brace_position(tokenizer, response_ids[b].tolist()) for b in range(B)]
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    out = torch.full((B, n_last), float("nan"))
    target_is_padding = torch.zeros(B, dtype=torch.bool)
    with torch.no_grad(), autocast:
        if packed:
            keep = mask.bool()
            lengths = keep.sum(1)
            starts = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)[:-1]])
            positions = torch.cat([torch.arange(int(n)) for n in lengths])[None]
            hidden = model(input_ids=ids[keep][None], position_ids=positions, output_hidden_states=True,
                           use_cache=False).hidden_states
        else:
            positions = (mask.cumsum(1) - 1).clamp(min=0)
            hidden = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                           output_hidden_states=True, use_cache=False).hidden_states
        layers = hidden[1:][-n_last:]
        rows, picks, targets = [], [], []
        for b in range(B):
            if brace[b] is None:
                continue
            column = P + brace[b]
            if column + 1 >= T or not mask[b, column + 1]:
                target_is_padding[b] = True
                continue
            rows.append(b)
            targets.append(int(ids[b, column + 1]))
            picks.append((0, int(starts[b]) + int(mask[b, :column + 1].sum()) - 1) if packed else (b, column))
        if rows:
            batch = torch.tensor([p[0] for p in picks])
            at = torch.tensor([p[1] for p in picks])
            for col, h in enumerate(layers):
                # All picked rows of a layer in one lm_head call, as the reference does.
                logits = model.lm_head(h[batch, at]).float()
                out[rows, col] = logits[torch.arange(len(rows)), torch.tensor(targets)]
    return out, target_is_padding
