"""The structured dtypes of ``medscore._dtypes`` and their C++ mirrors agree byte for byte."""
import numpy as np
import pytest

from medscore._dtypes import CONDENSED, LINKAGE, MST_EDGE

LAYOUTS = {
    "MST_EDGE": (MST_EDGE, [("u", np.int64, 0), ("v", np.int64, 8), ("weight", np.float64, 16)], 24),
    "LINKAGE": (LINKAGE, [("left", np.int64, 0), ("right", np.int64, 8),
                          ("distance", np.float64, 16), ("size", np.int64, 24)], 32),
    "CONDENSED": (CONDENSED, [("parent", np.int64, 0), ("child", np.int64, 8),
                              ("lambda_val", np.float64, 16), ("child_size", np.int64, 24)], 32),
}


@pytest.mark.parametrize("name", LAYOUTS)
def test_numpy_layout(name):
    dtype, fields, itemsize = LAYOUTS[name]
    assert dtype.itemsize == itemsize
    assert dtype.names == tuple(f for f, _, _ in fields)
    for field, kind, offset in fields:
        assert dtype.fields[field][0] == np.dtype(kind)
        assert dtype.fields[field][1] == offset


def test_cpp_struct_sizes_match():
    from conftest import load_backend

    core = load_backend("cpp")
    sizes = core.struct_sizes()
    assert set(sizes) == set(LAYOUTS)
    for name, (dtype, _, _) in LAYOUTS.items():
        assert sizes[name] == dtype.itemsize, name


def test_condensed_matches_hdbscan_library_export():
    hdbscan = pytest.importorskip("hdbscan")
    X = np.random.default_rng(0).normal(size=(40, 2))
    exported = hdbscan.HDBSCAN(min_cluster_size=5).fit(X).condensed_tree_.to_numpy()
    assert exported.dtype.names == CONDENSED.names
    for field in CONDENSED.names:
        assert exported.dtype[field].kind == CONDENSED[field].kind
        assert exported.dtype[field].itemsize == CONDENSED[field].itemsize


def test_backends_return_the_declared_dtypes(backend):
    X = np.random.default_rng(1).normal(size=(30, 3))
    core, mst, linkage, condensed, labels, probabilities, persistence = backend.fit(
        X, 5, 3, "eom", False, 0.0)
    assert mst.dtype == MST_EDGE and linkage.dtype == LINKAGE and condensed.dtype == CONDENSED
    assert core.dtype == np.float64 and labels.dtype == np.int64
    assert probabilities.dtype == np.float64 and persistence.dtype == np.float64
    # Field views read the right bytes: sizes and point ids are small non-negative ints.
    assert linkage["size"][-1] == 30 and mst["u"].max() < 30 and np.all(mst["u"] < mst["v"])


def test_core_stubs_list_what_the_extension_exports():
    # medscore/_core.pyi is written from the built module; a binding added or renamed without
    # regenerating it fails here (names of functions, classes and their public members).
    import ast
    from pathlib import Path

    from conftest import load_backend

    core = load_backend("cpp")
    tree = ast.parse((Path(__file__).resolve().parents[1] / "medscore" / "_core.pyi").read_text())
    def names(body):  # functions, classes and annotated constants (enum members, module constants)
        out = {n.name: n for n in body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        out.update({n.target.id: n for n in body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)})
        return {k: v for k, v in out.items() if not k.startswith("_")}

    stubbed = names(tree.body)
    exported = {name for name in dir(core) if not name.startswith("_")}
    assert set(stubbed) == exported
    for name, node in stubbed.items():
        if isinstance(node, ast.ClassDef):
            # An exception class lists only what it adds to BaseException's members.
            own = {m for m in dir(getattr(core, name)) if not m.startswith("_") and not hasattr(BaseException, m)}
            assert set(names(node.body)) == own, name


def test_enums_take_their_members_names():
    """The core's functions take its enums; a member's name converts to it (one call shape for
    both backends), an unknown name is refused naming the members."""
    import pytest

    from conftest import load_backend

    core = load_backend("cpp")
    for enum in (core.SelectionMethod, core.AssignRule, core.StoreRule, core.NanRows, core.PenaltyTarget):
        for name, member in enum.__members__.items():
            assert enum(name) == member and member.name == name
    with pytest.raises(ValueError, match=r"SelectionMethod has no member 'bogus' \('eom', 'leaf'\)"):
        core.SelectionMethod("bogus")
    X = np.random.default_rng(0).normal(size=(40, 2))
    by_name = core.fit(X, 5, 3, "leaf", False, 0.0)[4]
    np.testing.assert_array_equal(by_name, core.fit(X, 5, 3, core.SelectionMethod.leaf, False, 0.0)[4])
    with pytest.raises(TypeError):
        core.fit(X, 5, 3, "bogus", False, 0.0)
