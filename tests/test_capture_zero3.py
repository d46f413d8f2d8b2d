"""medscore.capture under real DeepSpeed ZeRO-3: 2 CPU ranks (torchrun, DS_ACCELERATOR=cpu, gloo).

``tests/zero3_worker.py`` partitions a tiny Llama and Qwen2 (tied and untied embeddings) with
``deepspeed.initialize`` (stage 3, every parameter partitioned) and runs each rank's micro-batches
through the plain and the ZeRO-3 model: ``answer_fingerprints`` on the module and on the engine,
bf16 rounding, a micro-batch without answers on one rank, a forward with grad inside ``capture``
followed by DeepSpeed's backward and optimiser step, and fingerprints after it against the plain
model holding the gathered updated weights. The sharded forward runs the plain model's fp32
arithmetic, so the fingerprints must be equal bit for bit.

DeepSpeed is a test dependency (the ``test`` extra); without it the test is skipped.
"""
from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
if importlib.util.find_spec("deepspeed") is None:
    pytest.skip("DeepSpeed not installed: pip install 'medscore[test]'", allow_module_level=True)

from test_capture_sharded import CONFIGS, MICRO_BATCHES  # noqa: E402

TESTS = os.path.dirname(os.path.abspath(__file__))


def test_zero3_fingerprints_equal_unsharded(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The worker imports DeepSpeed; this process does not (its accelerator is chosen at import).
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_addr", "127.0.0.1", "--master_port", str(port),
                           os.path.join(TESTS, "zero3_worker.py"), str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        assert result.pop("accelerator") == "cpu" and result.pop("backend") == "gloo"
        compared = answered = 0
        for key, value in result.items():
            if key.endswith("/scheme"):
                assert value == "zero3", key
            elif key.endswith("/placeholder"):  # outside a forward the unembedding is a placeholder
                assert value in ((0,), ()), (key, value)
            elif key.endswith("/ds_shape"):
                assert value[1] == 32, (key, value)
            elif key.endswith("/moved"):
                assert value, key  # the optimiser step changed the weights
            else:
                want, got = value
                assert got.dtype == torch.float32 and got.shape == want.shape, (rank, key)
                torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True, msg=f"rank {rank} {key}")
                compared += 1
                answered += int((~torch.isnan(want)).sum()) if key.endswith("/module") else 0
        assert compared == len(CONFIGS) * (MICRO_BATCHES * 3 + 3), compared
        unanswered = [v[1] for k, v in result.items() if k.endswith("/unanswered")]
        assert all(bool(torch.isnan(u).all()) == (rank == 1) for u in unanswered), rank
        assert answered > 20
