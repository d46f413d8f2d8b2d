#!/usr/bin/env bash
# Installs medscore and everything its test suite needs, on a bare machine of this project's kind.
# torch comes first and pinned: an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
$PY -m pip install "torch==2.13.0"
$PY -m pip install ".[test]"
