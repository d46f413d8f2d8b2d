"""The one place where clustering backends are chosen.

``"cpp"`` is the compiled extension ``medscore._core``; ``"numba"`` is ``medscore._numba``,
which needs the ``numba`` extra. Both export the functions listed in ``docs/SPEC.md``.
"""
from __future__ import annotations

import importlib

BACKENDS = ("cpp", "numba")


def get_backend(name: str):
    """Return the module implementing backend ``name`` (``"cpp"`` or ``"numba"``)."""
    if name == "cpp":
        return importlib.import_module("medscore._core")
    if name == "numba":
        try:
            importlib.import_module("numba")
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "backend='numba' needs numba: pip install 'medscore[numba]'"
            ) from exc
        return importlib.import_module("medscore._numba")
    raise ValueError(f"backend must be one of {list(BACKENDS)}, got {name!r}")


def available_backends() -> list[str]:
    """Names of the backends that import here."""
    out = []
    for name in BACKENDS:
        try:
            get_backend(name)
        except ImportError:
            continue
        out.append(name)
    return out
