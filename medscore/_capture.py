"""Fingerprints taken inside a Hugging Face causal LM's own forward pass, with hooks.

``capture`` registers forward hooks on the selected decoder layers; each hook reduces its
layer's output to what the fingerprint needs (``B`` numbers, or ``B x K`` for sketches) and
keeps nothing else, so no ``output_hidden_states=True``, no per-layer ``lm_head`` and no
extra forward pass.

What "layer ``i``" means (0-based, ``N`` decoder layers): exactly what Hugging Face returns
as ``hidden_states[i + 1]`` with ``output_hidden_states=True``. For ``i < N - 1`` that is
decoder layer ``i``'s output (no final norm, unless ``norm=True``); for the last layer
HF returns the output of the model's final norm, so the last layer is read at the final
norm's output (``norm=True`` does not apply the norm twice). This reproduces the MEDS
reference, which reads the last 14 of ``hidden_states[1:]`` and runs ``lm_head`` on each.

Positions name the answer token (what :func:`medscore.fingerprint.find_answer_positions`
and :func:`medscore._answer_markers.locate_answers` return); by default the hidden state is
read one token earlier, where the model predicts the answer token (the logit lens, and the
MEDS reference's position: the marker's last token).
"""
from __future__ import annotations

import dataclasses
import importlib

from . import _sharded
from . import fingerprint as fp
from ._validation import check_choice, check_int

MODES = ("answer", "pooled")
READ_AT = ("before", "answer")
_LAYER_LIST_NAMES = ("layers", "h", "blocks", "layer")
_FINAL_NORM_NAMES = ("norm", "final_layernorm", "ln_f", "final_norm", "norm_f")


def find_decoder_layers(model, named_modules=None):
    """Return ``(layers, final_norm)`` of a Hugging Face decoder-only model.

    ``layers`` is the ``torch.nn.ModuleList`` of decoder layers, found (not hard-coded) as
    the only module list named like ``layers``/``h``/``blocks`` with as many entries as
    ``config.num_hidden_layers``; ``final_norm`` is the norm module next to it
    (``norm``, ``ln_f``, ...). Raises ``ValueError`` for models without both.
    ``named_modules``: ``list(model.named_modules())`` when the caller walks it anyway.
    """
    torch = importlib.import_module("torch")
    config = getattr(model, "config", None)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    n_layers = getattr(text_config, "num_hidden_layers", None)
    found = []
    for name, module in named_modules if named_modules is not None else model.named_modules():
        parent_name, _, leaf = name.rpartition(".")
        if isinstance(module, torch.nn.ModuleList) and leaf in _LAYER_LIST_NAMES and (
            n_layers is None or len(module) == n_layers
        ):
            parent = model.get_submodule(parent_name) if parent_name else model
            norms = [getattr(parent, n) for n in _FINAL_NORM_NAMES if hasattr(parent, n)]
            if norms and isinstance(norms[0], torch.nn.Module):
                found.append((module, norms[0]))
    if len(found) != 1:
        raise ValueError(
            f"unsupported model {type(model).__name__}: medscore.capture needs a decoder-only "
            "causal LM with one list of decoder layers (e.g. model.model.layers) of "
            f"config.num_hidden_layers entries and a final norm next to it; found {len(found)}"
        )
    return found[0]


def select_layers(spec, n_layers: int) -> list[int]:
    """Layer indices (0-based, ascending as given) from a selection spec.

    ``spec``: an int or a list of ints (negative counts from the end), ``"last:N"``,
    ``"upper_half"`` (layers ``N // 2 .. N - 1``, the paper's "N/2..N"), or ``"all"``.
    """
    if isinstance(spec, str):
        if spec == "all":
            return list(range(n_layers))
        if spec == "upper_half":
            return list(range(n_layers // 2, n_layers))
        if spec.startswith("last:"):
            count = check_int("layers 'last:N' count", int(spec[5:]) if spec[5:].isdigit() else
                              spec[5:], low=1, high=n_layers)
            return list(range(n_layers - count, n_layers))
        raise ValueError(f"layers must be an int, a list, 'last:N', 'upper_half' or 'all', got {spec!r}")
    items = [spec] if not isinstance(spec, (list, tuple, range)) else list(spec)
    out = [check_int("layer index", i, low=-n_layers, high=n_layers - 1) % n_layers for i in items]
    if not out or len(set(out)) != len(out):
        raise ValueError(f"layers must be a non-empty list of distinct indices, got {spec!r}")
    return out


def cu_seqlens_from_position_ids(position_ids):
    """``cu_seqlens`` ``[B + 1]`` of packed sequences whose position ids restart at 0.

    ``position_ids``: int ``[N]`` or ``[1, N]``, as veRL's ``use_remove_padding`` passes them.
    """
    torch = importlib.import_module("torch")
    pos = torch.as_tensor(position_ids).reshape(-1)
    starts = (pos == 0).nonzero().squeeze(1)
    if starts.numel() == 0 or int(starts[0]) != 0:
        raise ValueError("position_ids of packed sequences must start at 0")
    end = torch.tensor([pos.numel()], device=pos.device)
    return torch.cat([starts, end])


class capture:
    """Context manager: fingerprints computed by hooks during a causal LM's forward.

    Parameters
    ----------
    model : a Hugging Face causal LM (Llama, Qwen2, Qwen3, SmolLM, Mistral families, ...),
        plain or sharded (FSDP1, FSDP2, DeepSpeed ZeRO-3; see "Sharded models" below)
    layers : int, list of int, "last:N", "upper_half" or "all"
        Which layers to read (see the module docstring for what a layer index means).
    mode : {"answer", "pooled"}
        "answer": ``cap.fingerprints`` is float32 ``[B, L]``, the logit-lens logit of
        ``target_ids[b]`` at ``positions[b]`` in each layer. "pooled": float32 ``[B, L, K]``,
        the masked mean over response tokens of each layer, times ``projection`` ``[H, K]``.
    positions, target_ids : int [B], optional
        Answer positions (columns of the padded batch, or indices inside each packed
        sequence; ``-1``: no answer, NaN fingerprint) and tokens; may be set later with
        :meth:`set_targets`.
    mask, projection : optional (pooled mode); ``mask`` may be set later with :meth:`set_mask`.
    norm : bool
        Apply the model's final norm to the intermediate layers too (exact, folded).
    read_at : {"before", "answer"}
        "before" (default; the MEDS reference): read the hidden state one token before the
        answer token, where the model predicts it (the logit lens). "answer": read it at the
        answer token itself (whose output predicts the token after the answer's first).
    cu_seqlens : int [B + 1], optional
        Sequence boundaries when the model runs on packed input ``[1, N]``.
    backend : {"auto", "torch", "triton"}
    bf16 : bool
        Answer mode: each logit as ``lm_head`` computes it under
        ``torch.autocast(dtype=torch.bfloat16)`` (bf16 inputs, fp32 sum, bf16-rounded
        result, stored as float32), as in the MEDS reference's bf16 actor forward. Uses
        the torch path (B x L dot products).

    Notes
    -----
    Sharded models (``self.sharding`` names the scheme; ``self.deferred`` is True): outside
    the forward of the unit that owns it, the unembedding is a shard or a freed buffer. In
    answer mode each layer's hook then keeps only its ``[B, H]`` hidden rows at the read
    positions, and the dot products are taken where the weight is whole: in the final
    norm's forward hook when the unembedding is whole there (the norm and ``lm_head`` in
    one FSDP unit), else in ``lm_head``'s forward pre-hook, after the sharding gathered it.
    The arithmetic is that of the unsharded path (same kernel or torch expression on the
    same rows), so equal hidden states give bit-identical fingerprints. Megatron-Core models
    and tensor parallelism raise ``ValueError`` (:func:`medscore._sharded.detect_sharding`).
    """

    def __init__(self, model, layers="last:14", mode="answer", positions=None, target_ids=None,
                 mask=None, projection=None, norm=False, read_at="before", cu_seqlens=None,
                 backend="auto", bf16=False):
        self.model = model
        self.mode = check_choice("mode", mode, MODES)
        self.read_at = check_choice("read_at", read_at, READ_AT)
        self.backend = check_choice("backend", backend, fp.BACKENDS)
        self.bf16 = bool(bf16)
        # One walk of the module tree serves both look-ups (a capture is built per micro-batch).
        named_modules = list(model.named_modules())
        decoder_layers, self.final_norm_module = find_decoder_layers(model, named_modules)
        self.n_model_layers = len(decoder_layers)
        self._first_layer = decoder_layers[0]
        self.layer_indices = select_layers(layers, self.n_model_layers)
        self._modules = [
            self.final_norm_module if i == self.n_model_layers - 1 else decoder_layers[i]
            for i in self.layer_indices
        ]
        self._set_up_weights(model, [module for _, module in named_modules], bool(norm))
        if self.mode == "pooled":
            if projection is None or projection.ndim != 2 or projection.shape[0] != self.hidden_size:
                raise ValueError(
                    f"mode='pooled' needs projection [H, K] with H = {self.hidden_size}, "
                    f"got {None if projection is None else tuple(projection.shape)}"
                )
            self.projection = projection.detach().float()
        self._handles, self._targets, self._out, self._written = [], None, None, set()
        self._kept, self._norm_now = {}, None
        if positions is not None or target_ids is not None:
            self.set_targets(positions, target_ids, cu_seqlens=cu_seqlens)
        if mask is not None:
            self.set_mask(mask, cu_seqlens=cu_seqlens)

    def _set_up_weights(self, model, modules, norm: bool) -> None:
        """The unembedding and the final norm: held now (unsharded), or read in the forward."""
        self.sharding = _sharded.detect_sharding(model, modules)
        self._unembed_module, self.vocab_size, self.hidden_size = _sharded.output_embedding(model)
        weight = self._unembed_module.weight
        # Deferred also for an unknown scheme whose placeholder weight shows it is sharded.
        self.deferred = self.sharding is not None or not _sharded.is_whole(
            weight, (self.vocab_size, self.hidden_size))
        self._norm_module = _sharded.inner_module(self.final_norm_module)
        self._wants_norm = norm
        if self.deferred:
            fp.final_norm_kind(self._norm_module)  # its weight is read inside the forward
            self.norm, self.unembed = None, None
        else:
            final_norm = fp.as_final_norm(self.final_norm_module)
            self.norm, self.unembed = (final_norm if norm else None), weight

    # ------------------------------------------------------------------ targets

    def set_targets(self, positions, target_ids, cu_seqlens=None):
        """Set answer positions and target tokens (``[B]`` each) for the next forward."""
        torch = importlib.import_module("torch")
        if self.mode != "answer":
            raise ValueError("set_targets is for mode='answer'; use set_mask in mode='pooled'")
        if positions is None or target_ids is None:
            raise ValueError("set_targets needs both positions and target_ids")
        device = None if self.deferred else self.unembed.device
        pos = torch.as_tensor(positions, device=device)
        if pos.dtype.is_floating_point or pos.ndim != 1:
            raise ValueError(f"positions must be an int [B] tensor, got {tuple(pos.shape)} {pos.dtype}")
        pos = pos.long()
        tgt = fp.check_targets(target_ids, pos.numel(), self.vocab_size, pos.device)
        # Sharded: the rows are read in the forward, where the weight is whole.
        rows = None if self.deferred else self.unembed.detach()[tgt]
        self._targets = {"positions": pos, "target_ids": tgt, "rows": rows,
                         "cu_seqlens": cu_seqlens, "checked_for": None}

    def set_mask(self, mask, cu_seqlens=None):
        """Set the response mask (``[B, T]``, packed ``[N]``) for the next forward (pooled)."""
        torch = importlib.import_module("torch")
        if self.mode != "pooled":
            raise ValueError("set_mask is for mode='pooled'; use set_targets in mode='answer'")
        self._targets = {"mask": torch.as_tensor(mask), "cu_seqlens": cu_seqlens,
                         "checked_for": None}

    # ------------------------------------------------------------------ hooks

    def __enter__(self):
        # The first decoder layer starts every forward, whichever wrapper the caller invokes.
        self._handles.append(self._first_layer.register_forward_pre_hook(self._on_forward_start))
        for slot, module in enumerate(self._modules):
            if not (self.deferred and module is self.final_norm_module):
                self._handles.append(module.register_forward_hook(self._make_hook(slot)))
        if self.deferred:
            # prepend=True: before FSDP2's or ZeRO-3's own forward hook frees the norm's weights.
            self._handles.append(self._norm_module.register_forward_hook(self._on_final_norm, prepend=True))
            if self.mode == "answer":
                # Appended: after the sharding's own pre-hook gathered the unembedding.
                self._handles.append(self._unembed_module.register_forward_pre_hook(self._on_unembed))
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        return False

    def _on_forward_start(self, module, args):
        # A fresh output per forward: a caller may keep the previous micro-batch's tensor.
        self._written, self._out, self._kept, self._norm_now = set(), None, {}, None

    def _make_hook(self, slot: int):
        def hook(module, inputs, output):
            hidden = output[0] if isinstance(output, (tuple, list)) else output
            self._record(slot, hidden)

        return hook

    def _record(self, slot: int, hidden) -> None:
        torch = importlib.import_module("torch")
        if self._targets is None:
            raise RuntimeError(
                "capture: the forward ran before set_targets/set_mask gave the answer positions"
            )
        if self.deferred and _sharded.is_dtensor(hidden):
            raise RuntimeError(
                "capture: a decoder layer returned a DTensor (tensor or sequence parallelism); "
                "medscore.capture needs each rank's whole hidden states"
            )
        with torch.no_grad():
            layer, index = self._layer_and_index(hidden.detach())
            is_last = self.layer_indices[slot] == self.n_model_layers - 1
            if self._out is None:
                self._out = self._new_output(index.start.numel(), layer.device)
            if self.mode == "answer" and self.deferred:
                self._kept[slot] = fp.read_rows(layer, index, self._targets["read"])
                return  # written once the unembedding is whole (_finish)
            # The last layer is read after the final norm: no second norm.
            norm = None if is_last else self._intermediate_norm()
            kernels = fp._pick_backend(self.backend, layer, norm)
            if self.mode == "answer":
                self._record_answer(slot, layer, index, norm, kernels)
            else:
                self._record_pooled(slot, layer, index, norm, kernels)
        self._written.add(slot)

    def _intermediate_norm(self):
        """The norm of the intermediate layers: fixed when unsharded, read now when sharded."""
        if not self.deferred or not self._wants_norm:
            return self.norm
        weight = getattr(self._norm_module, "weight", None)
        if weight is not None and not _sharded.is_whole(weight, (self.hidden_size,)):
            raise RuntimeError(
                f"capture: mode='pooled' with norm=True needs the final norm's weight while the "
                f"decoder layers run, and this {self.sharding} model holds it only inside the "
                "norm's own forward; use norm=False, or mode='answer'"
            )
        return fp.as_final_norm(self._norm_module)

    def _layer_and_index(self, hidden):
        """View the layer output as ``[B, T, H]`` (packed ``[1, N, H]``); validate once per shape."""
        torch = importlib.import_module("torch")
        cu = self._targets["cu_seqlens"]
        layer = hidden.reshape(1, -1, hidden.shape[-1]) if cu is not None else hidden
        key = (tuple(layer.shape[:2]), layer.device)
        if self._targets["checked_for"] != key:
            index = fp.token_index(layer, cu)
            if self.mode == "answer":
                # Answer positions are checked as given; "before" then reads one token earlier
                # (an answer at a sequence's first token has nothing before it: NaN).
                pos = fp.check_positions(self._targets["positions"], index)
                if self.read_at == "before":
                    pos = torch.where(pos > 0, pos - 1, torch.full_like(pos, -1))
                self._targets["read"] = pos
            else:
                self._targets["mask"] = fp.check_mask(self._targets["mask"], layer, index)
            self._targets["checked_for"], self._targets["index"] = key, index
        return layer, self._targets["index"]

    def _new_output(self, batch_size: int, device):
        torch = importlib.import_module("torch")
        shape = (batch_size, len(self._modules))
        if self.mode == "pooled":
            shape = shape + (self.projection.shape[1],)
        return torch.full(shape, float("nan"), dtype=torch.float32, device=device)

    def _record_answer(self, slot, layer, index, norm, kernels):
        pos, t = self._targets["read"], self._targets
        if kernels is not None and not self.bf16:
            kernels.answer_logits([layer], index, pos, t["target_ids"], self.unembed, norm,
                                  self._out[:, slot:slot + 1])
        else:
            rows = t["rows"].to(layer.device)
            self._out[:, slot] = fp.answer_logits_layer_torch(layer, index, pos, rows, norm, self.bf16)

    def _record_pooled(self, slot, layer, index, norm, kernels):
        mask = self._targets["mask"]
        if kernels is not None:
            sums = kernels.pooled_sums(layer, index, mask, norm)
        else:
            sums = fp.pooled_sums_layer_torch(layer, index, mask, norm)
        counts = fp._masked_counts(mask, index).to(sums.dtype).unsqueeze(1)
        self._out[:, slot] = (sums / counts) @ self.projection.to(sums.device)

    # ------------------------------------------------------------------ sharded models

    def _on_final_norm(self, module, inputs, output):
        last = self.n_model_layers - 1
        if last in self.layer_indices:
            hidden = output[0] if isinstance(output, (tuple, list)) else output
            self._record(self.layer_indices.index(last), hidden)
        if self.mode != "answer":
            return
        if self._wants_norm:
            # Inside the norm's forward its weight is whole under every scheme; a copy ([H])
            # outlives the sharding's free of the gathered buffer.
            norm = fp.as_final_norm(module)
            self._norm_now = dataclasses.replace(
                norm, weight=_copy(norm.weight), bias=_copy(norm.bias))
        weight = self._unembed_module.weight
        if _sharded.is_whole(weight, (self.vocab_size, self.hidden_size)):
            self._finish(weight)  # e.g. a fused loss that reads lm_head.weight without calling lm_head

    def _on_unembed(self, module, args):
        if len(self._kept) < len(self._modules):
            return  # finished at the final norm already, or no layer ran (nothing to do)
        weight = module.weight
        if not _sharded.is_whole(weight, (self.vocab_size, self.hidden_size)):
            raise RuntimeError(
                f"capture: the output embedding's weight is not whole even inside its own forward "
                f"({type(weight).__name__} of shape {tuple(weight.shape)}): a vocabulary-parallel "
                "output layer (tensor parallelism) is not supported"
            )
        self._finish(weight)

    def _finish(self, weight) -> None:
        """The deferred dot products: kept rows [B, H] per layer against the whole weight."""
        torch = importlib.import_module("torch")
        if len(self._kept) < len(self._modules):
            return
        if self._wants_norm and self._norm_now is None:
            raise RuntimeError("capture: norm=True, but the final norm did not run before the unembedding")
        read = self._targets["read"]
        present, tgt = read >= 0, self._targets["target_ids"]
        with torch.no_grad():
            w = weight.detach()
            rows = None
            for slot, kept in sorted(self._kept.items()):
                is_last = self.layer_indices[slot] == self.n_model_layers - 1
                norm = None if is_last else self._norm_now
                kernels = None if self.bf16 else fp._pick_backend(self.backend, kept, norm)
                if kernels is not None:
                    # The unsharded kernel on a [B, 1, H] "layer" of the kept rows: same sums.
                    kernels.answer_logits([kept.unsqueeze(1)], fp.token_index(kept.unsqueeze(1)),
                                          read.clamp(max=0), tgt, w, norm, self._out[:, slot:slot + 1])
                else:
                    rows = w[tgt.to(w.device)].to(kept.device) if rows is None else rows
                    x = fp.apply_final_norm(kept, norm)
                    self._out[:, slot] = fp.dot_rows(x, rows, present, self.bf16)
                self._written.add(slot)
        self._kept = {}

    # ------------------------------------------------------------------ results

    @property
    def fingerprints(self):
        """float32 ``[B, L]`` (answer) or ``[B, L, K]`` (pooled) of the latest forward.

        Column ``l`` belongs to model layer ``self.layer_indices[l]``. Raises
        ``RuntimeError`` when no forward (or an incomplete one) ran inside the context.
        """
        missing = [self.layer_indices[s] for s in range(len(self._modules)) if s not in self._written]
        if self._out is not None and missing and len(self._kept) == len(self._modules):
            raise RuntimeError(
                f"capture: the forward kept layers {missing} but never reached the output embedding "
                f"while its weight was whole ({self.sharding or 'sharded'} model): the dot products "
                "are taken in lm_head's forward, or at the final norm when lm_head's weight is whole "
                "there; a forward that reads lm_head.weight without calling lm_head needs lm_head "
                "in the final norm's FSDP unit"
            )
        if self._out is None or missing:
            raise RuntimeError(f"capture: no forward pass recorded layers {missing} yet")
        return self._out


def _copy(tensor):
    return None if tensor is None else tensor.clone()


__all__ = ["capture", "cu_seqlens_from_position_ids", "find_decoder_layers", "select_layers"]
