"""The C/C++ package shipped inside the wheel: headers, libraries and CMake config.

``medscore.get_include()`` / ``get_cmake_dir()`` (and ``python -m medscore --cmakedir``) must
point at them, and an outside CMake project must build against them. Running from a source
tree (no wheel layout next to the package), the layout tests are skipped.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import medscore

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _installed_layout() -> Path:
    cmake_dir = Path(medscore.get_cmake_dir())
    if not cmake_dir.is_dir():
        pytest.skip(f"no installed CMake package at {cmake_dir} (source tree, not a wheel)")
    return cmake_dir


def test_cli_prints_the_cmake_and_include_dirs():
    for flag, expected in (("--cmakedir", medscore.get_cmake_dir()), ("--include", medscore.get_include())):
        out = subprocess.run([sys.executable, "-m", "medscore", flag], check=True, capture_output=True, text=True)
        assert out.stdout.strip() == expected


def test_wheel_ships_cmake_config_headers_and_libraries():
    cmake_dir = _installed_layout()
    for name in ("medscoreConfig.cmake", "medscoreConfigVersion.cmake", "medscoreTargets.cmake"):
        assert (cmake_dir / name).is_file(), name
    include = Path(medscore.get_include()) / "medscore"
    for name in ("medscore.h", "medscore.hpp", "memory.hpp", "error_memory.hpp", "checkpoint.hpp", "hdbscan.hpp",
                 "incremental_hdbscan.hpp"):
        assert (include / name).is_file(), name
    # The public headers include only each other; the internals (csrc/private) stay out.
    installed = {p.name for p in include.iterdir()}
    for header in include.iterdir():
        for included in re.findall(r'#include "medscore/([^"]+)"', header.read_text()):
            assert included in installed, f"{header.name} includes medscore/{included}, which is not installed"
    assert "kdtree.hpp" not in installed and "thread_pool.hpp" not in installed
    lib = Path(medscore.get_include()).parent / "lib"
    assert list(lib.glob("libmedscore.so*")), "shared library missing"
    assert (lib / "libmedscore_static.a").is_file()
    assert "medscore::core" in (cmake_dir / "medscoreTargets.cmake").read_text()


def test_c_example_builds_and_runs_against_the_wheel(tmp_path):
    cmake_dir = _installed_layout()
    if shutil.which("cmake") is None or shutil.which("cc") is None:
        pytest.skip("cmake or a C compiler is missing")
    build = tmp_path / "build"
    subprocess.run(["cmake", "-S", str(EXAMPLES / "embed_c"), "-B", str(build), f"-Dmedscore_DIR={cmake_dir}"],
                   check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True)
    exe = next(p for p in build.rglob("embed_c") if p.is_file())
    out = subprocess.run([str(exe), str(tmp_path / "m.ckpt")], check=True, capture_output=True, text=True, cwd=tmp_path)
    assert out.stdout == (EXAMPLES / "embed_c" / "expected_output.txt").read_text()
