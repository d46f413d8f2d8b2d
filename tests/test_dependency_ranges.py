"""pyproject.toml's extras are ranges whose floors are the versions CI pins in constraints/tested.txt."""
from __future__ import annotations

import pathlib
import tomllib

import pytest

packaging = pytest.importorskip("packaging")
from packaging.requirements import Requirement  # noqa: E402
from packaging.utils import canonicalize_name  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]


def extras() -> dict[str, list[Requirement]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {name: [Requirement(r) for r in reqs] for name, reqs in project["optional-dependencies"].items()}


def pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "constraints" / "tested.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==" and not req.extras, line  # pip refuses extras in constraints
            out[canonicalize_name(req.name)] = spec.version
    return out


def test_extras_are_ranges_without_ceilings():
    for extra, reqs in extras().items():
        for req in reqs:
            operators = {spec.operator for spec in req.specifier}
            assert operators <= {">=", "!="}, f"[{extra}] {req}: a floor, no pin and no ceiling"


# Pinned exactly before ranges: their floor is the version tested then, which CI still installs.
FLOORED = ("transformers", "gguf", "accelerate", "verl", "transferqueue", "trl", "datasets", "tensordict", "ray",
           "cachetools", "uvicorn", "fastapi", "hdbscan", "fast-hdbscan", "fishdbc", "deepspeed")


def test_ci_pins_satisfy_every_range_and_are_the_floors():
    pinned = pins()
    assert set(FLOORED) <= set(pinned) and "torch" in pinned
    for extra, reqs in extras().items():
        for req in reqs:
            name = canonicalize_name(req.name)
            if name in pinned:
                assert req.specifier.contains(pinned[name]), f"[{extra}] {req} excludes the tested {pinned[name]}"
            if name in FLOORED:
                assert str(req.specifier) == f">={pinned[name]}", f"[{extra}] {req}: floor != tested {pinned[name]}"
