"""Each stateful engine has one declared interface (medscore/_backends.py) that both backends'
classes implement, member by member; the C++ ones without importing numba."""
import subprocess
import sys
import typing

import pytest

from medscore import _backends

PROTOCOLS = {
    "incremental": (_backends.IncrementalEngine, lambda b: _backends.incremental_engine(b)),
    "keyed memory": (_backends.KeyedMemoryEngine, _backends.memory_engine),
    "memory rules": (_backends.MemoryRules, _backends.memory_rules),
}


def members(protocol) -> set[str]:
    names = {n for n in vars(protocol) if not n.startswith("_")}
    return names | set(typing.get_type_hints(protocol))


def engine_class(factory):
    return factory.func if hasattr(factory, "func") else factory  # functools.partial of the Numba class


@pytest.mark.parametrize("backend", ["cpp", "numba"])
@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_backend_classes_implement_the_declared_interface(backend, name):
    if backend == "numba":
        pytest.importorskip("numba")
    protocol, factory = PROTOCOLS[name]
    cls = engine_class(factory(backend))
    missing = sorted(m for m in members(protocol) if not hasattr(cls, m))
    assert not missing, f"{backend} {name} lacks {missing}"


def test_interfaces_list_every_public_member_of_the_cpp_classes():
    """A member added to a C++ engine is declared too (so the Numba mirror must follow)."""
    for name, (protocol, factory) in PROTOCOLS.items():
        cls = engine_class(factory("cpp"))
        public = {m for m in dir(cls) if not m.startswith("_")} - {"from_state"}
        assert public == members(protocol), name


def test_the_cpp_choices_do_not_import_numba():
    code = ("import sys, numpy as np, medscore; from medscore import _backends as b\n"
            "for f in (b.memory_rules, b.memory_engine, b.incremental_engine): f('cpp')\n"
            "m = medscore.Memory(preset='paper'); m.penalize(medscore.Batch(np.eye(3), [1, 1, 2], [0, 0, 1]))\n"
            "m.load_state_dict(m.state_dict())\n"
            "assert 'medscore._numba' not in sys.modules and 'numba' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-P", "-c", code], check=True)
