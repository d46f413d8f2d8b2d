"""Benchmark suites: one module per suite, ``benchmarks/suites/<name>.py``.

A suite module defines ``NAME: str``, ``DESCRIPTION: str`` and
``run(bench: benchmarks.harness.Bench, quick: bool) -> None``. ``available_suites`` finds
them by listing this folder, so adding a suite is adding a file.
"""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

#: Suites run first, in this order, when several are selected; others follow by name.
PREFERRED_ORDER = ("hdbscan", "incremental", "memory", "fingerprint")


def available_suites() -> list[str]:
    """Names of the suite modules present in this folder, in run order."""
    names = [info.name for info in pkgutil.iter_modules([str(Path(__file__).parent)])
             if not info.name.startswith("_")]
    order = {name: i for i, name in enumerate(PREFERRED_ORDER)}
    return sorted(names, key=lambda name: (order.get(name, len(order)), name))


def load_suite(name: str) -> ModuleType:
    """Import suite ``name`` and check that it has ``NAME``, ``DESCRIPTION`` and ``run``."""
    if name not in available_suites():
        raise ValueError(f"unknown suite {name!r}; available: {available_suites()}")
    module = importlib.import_module(f"{__name__}.{name}")
    missing = [attr for attr in ("NAME", "DESCRIPTION", "run") if not hasattr(module, attr)]
    if missing:
        raise TypeError(f"suite module {module.__name__} lacks {missing}")
    return module
