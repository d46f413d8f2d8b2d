"""medscore: exact fingerprint clustering that gives RL rewards a memory of past mistakes.

Importing medscore imports numpy and nothing optional; torch, triton, faiss, numba and the
trainer integrations are loaded on first use.
"""
from __future__ import annotations

import importlib

from ._dtypes import CONDENSED, LINKAGE, MST_EDGE

__version__ = "0.1.0"

# Public names defined in modules that pull optional dependencies or are large: loaded on
# first attribute access (PEP 562), so ``import medscore`` stays light.
_LAZY = {
    # HDBSCAN derives from scikit-learn's BaseEstimator when scikit-learn is installed,
    # whose import takes about a second: Memory users should not pay it.
    "HDBSCAN": "medscore.hdbscan",
    "approximate_predict": "medscore.prediction",
    "approximate_predict_scores": "medscore.prediction",
    "membership_vector": "medscore.prediction",
    "all_points_membership_vectors": "medscore.prediction",
    "validity_index": "medscore.validity",
    "IncrementalHDBSCAN": "medscore.incremental",
    "Memory": "medscore.memory",
    "Batch": "medscore.memory",
    "fingerprint": "medscore.fingerprint",
    "capture": "medscore._capture",
    "answer_fingerprints": "medscore._answers",
}


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        value = module if _LAZY[name].endswith("." + name) else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'medscore' has no attribute {name!r}")


def _installed_data_dir():
    """Folder holding the installed headers, libraries and CMake files.

    They are installed next to the compiled extension, which an editable install keeps in
    site-packages while the Python sources stay in the checkout.
    """
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("medscore._core")
    if spec is not None and spec.origin:
        return Path(spec.origin).parent
    return Path(__file__).parent


def get_include() -> str:
    """Directory of medscore's installed C++ headers (``#include <medscore/memory.hpp>``)."""
    return str(_installed_data_dir() / "include")


def get_cmake_dir() -> str:
    """Directory of the installed CMake package (pass as ``-Dmedscore_DIR=...``).

    An outside project then does ``find_package(medscore CONFIG REQUIRED)`` and
    ``target_link_libraries(app PRIVATE medscore::core)``.
    """
    return str(_installed_data_dir() / "share" / "cmake" / "medscore")


__all__ = ["MST_EDGE", "LINKAGE", "CONDENSED", "get_include", "get_cmake_dir", *_LAZY]
