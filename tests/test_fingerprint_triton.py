"""Triton kernels of medscore.fingerprint, run by triton's interpreter on the CPU.

``TRITON_INTERPRET=1`` must be set before triton is imported and would leak into every
later test of the session, so in a normal run this module holds one test that reruns the
module in a subprocess with the variable set; there the kernel tests below run.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"

if not INTERPRETING:

    def test_triton_kernels_under_interpreter():
        pytest.importorskip("triton")
        pytest.importorskip("torch")
        env = dict(os.environ, TRITON_INTERPRET="1")
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
        assert " passed" in done.stdout and "skipped" not in done.stdout, done.stdout[-2000:]

else:
    torch = pytest.importorskip("torch")
    pytest.importorskip("triton")

    from medscore import fingerprint as fp
    import importlib

    # The package re-exports functions named like these modules, so fetch the modules.
    answer_kernel = importlib.import_module("medscore._triton.answer_logits")
    pooled_kernel = importlib.import_module("medscore._triton.pooled_sketch")
    from test_fingerprint import make_norm, reference_answer_logits, rel_err

    POISON = -7777.0
    TOL = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}

    def case(B, T, H, V=37, L=3, seed=0, dtype=torch.float32):
        gen = torch.Generator().manual_seed(seed)
        layers = [torch.randn(B, T, H, generator=gen).to(dtype) for _ in range(L)]
        unembed = torch.randn(V, H, generator=gen).to(dtype)
        return layers, unembed, gen

    @pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
    @pytest.mark.parametrize("with_norm", [False, True])
    @pytest.mark.parametrize("B,T,H", [(1, 1, 8), (4, 9, 40), (3, 5, 1500)])
    def test_answer_kernel_matches_reference(dtype, with_norm, B, T, H):
        layers, unembed, gen = case(B, T, H, dtype=dtype)
        pos = torch.randint(0, T, (B,), generator=gen)
        if B > 1:
            pos[1] = -1  # absent marker
        tgt = torch.randint(0, unembed.shape[0], (B,), generator=gen)
        norm = make_norm(H) if with_norm else None
        index = fp.token_index(layers[0])
        out = torch.full((B, len(layers)), POISON)
        answer_kernel.answer_logits(layers, index, pos, tgt, unembed, norm, out)
        assert not (out == POISON).any(), "some output element was not written"
        want = reference_answer_logits(layers, pos.tolist(), tgt.tolist(), unembed, norm)
        assert rel_err(out, want) < TOL[dtype]
        torch_path = fp.answer_logits(layers, pos, tgt, unembed, norm, backend="torch")
        assert rel_err(out, torch_path.numpy()) < TOL[dtype]

    def test_answer_kernel_packed_ragged():
        layers, unembed, gen = case(1, 11, 24)
        packed = [h[0] for h in layers]  # [N, H]: sequences of 4, 0, 6 tokens, 1 spare row
        cu = torch.tensor([0, 4, 4, 10])
        pos, tgt = torch.tensor([3, -1, 0]), torch.tensor([1, 2, 3])
        got = fp.answer_logits(packed, pos, tgt, unembed, cu_seqlens=cu, backend="triton")
        want = fp.answer_logits(packed, pos, tgt, unembed, cu_seqlens=cu, backend="torch")
        assert rel_err(got, want.numpy()) < 1e-6

    def test_answer_kernel_strided_hidden():
        layers, unembed, gen = case(3, 6, 32)
        wide = [torch.randn(3, 6, 64, generator=gen)[..., ::2] for _ in layers]  # stride_h 2
        pos, tgt = torch.tensor([0, 5, 2]), torch.tensor([4, 5, 6])
        got = fp.answer_logits(wide, pos, tgt, unembed, backend="triton")
        want = reference_answer_logits(wide, pos.tolist(), tgt.tolist(), unembed)
        assert rel_err(got, want) < 1e-5

    def pooled_reference(layers, mask, norm):
        """Float64 per-sequence sums of norm(h_t) over masked tokens, from the definition."""
        from test_fingerprint import norm_f64

        out = []
        for h in layers:
            x = norm_f64(h.double(), norm) * mask.unsqueeze(-1).double()
            out.append(x.sum(1))
        return torch.stack(out)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
    @pytest.mark.parametrize("with_norm", [False, True])
    @pytest.mark.parametrize("B,T,H", [(1, 1, 8), (3, 70, 20), (2, 5, 300), (1, 5, 5000)])
    def test_pooled_kernel_matches_reference(dtype, with_norm, B, T, H):
        layers, _, gen = case(B, T, H, dtype=dtype, L=2)
        mask = torch.rand(B, T, generator=gen) < 0.6
        mask[0, 0] = True
        if B > 1:
            mask[1] = False  # no response tokens
        norm = make_norm(H) if with_norm else None
        index = fp.token_index(layers[0])
        sums = []
        for layer in layers:
            partial = torch.full(pooled_kernel.partial_shape(layer, index), POISON)
            sums.append(pooled_kernel.pooled_sums(layer, index, mask, norm, partial=partial))
            assert not (partial == POISON).any(), "some partial sum was not written"
        want = pooled_reference(layers, mask, norm)
        assert rel_err(torch.stack(sums), want.numpy()) < TOL[dtype]

    def test_pooled_sketch_triton_equals_torch_packed():
        layers, unembed, gen = case(1, 140, 16, L=2)
        packed = [h[0] for h in layers]
        cu = torch.tensor([0, 70, 71, 71, 139])  # ragged, one empty sequence, 1 spare row
        mask = torch.rand(140, generator=gen) < 0.5
        projection = fp.random_projection(unembed, 4, seed=1)
        norm = make_norm(16)
        got = fp.pooled_sketch(packed, mask, projection, norm, cu_seqlens=cu, backend="triton")
        want = fp.pooled_sketch(packed, mask, projection, norm, cu_seqlens=cu, backend="torch")
        assert got.shape == (4, 2, 4)
        assert torch.isnan(got[2]).all() and torch.isnan(want[2]).all()
        assert rel_err(got.numpy(), want.numpy()) < 1e-5
        assert np.isfinite(got[[0, 3]].numpy()).all()
