"""medscore's clusterers as scikit-learn estimators, and the fallback without scikit-learn.

``check_estimator``'s checks run one by one (``parametrize_with_checks``) on HDBSCAN and
IncrementalHDBSCAN; none is expected to fail. ``check_array_api_input`` skips itself unless
``SCIPY_ARRAY_API=1`` is set before scipy is imported (it passes when set).
"""
import os
import subprocess
import sys

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from conftest import load_backend  # noqa: E402
from medscore import HDBSCAN, IncrementalHDBSCAN  # noqa: E402

load_backend("cpp")


@parametrize_with_checks([HDBSCAN(), IncrementalHDBSCAN(knn="exact")])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def test_is_a_clusterer_with_html_repr():
    from sklearn.base import BaseEstimator, ClusterMixin, is_clusterer

    for model in (HDBSCAN(), IncrementalHDBSCAN()):
        assert isinstance(model, BaseEstimator) and isinstance(model, ClusterMixin)
        assert is_clusterer(model)
        assert "min_cluster_size" in model._repr_html_()


def test_feature_names_from_dataframe():
    pd = pytest.importorskip("pandas")
    X = np.random.default_rng(0).normal(size=(40, 3))
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    model = HDBSCAN(min_cluster_size=5).fit(frame)
    np.testing.assert_array_equal(model.feature_names_in_, ["a", "b", "c"])
    assert model.feature_names_in_.dtype == object and model.n_features_in_ == 3
    np.testing.assert_array_equal(model.labels_, HDBSCAN(min_cluster_size=5).fit(X).labels_)
    model.fit(X)  # refit on an array: the names are forgotten
    assert not hasattr(model, "feature_names_in_")
    inc = IncrementalHDBSCAN(min_cluster_size=5, knn="exact").fit(frame)
    with pytest.raises(ValueError, match="feature names should match"):
        inc.partial_fit(frame.rename(columns={"a": "z"}))


def test_in_a_pipeline_and_cloned():
    from sklearn.base import clone
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.random.default_rng(1).normal(size=(60, 2))
    X[:30] += 8
    pipe = make_pipeline(StandardScaler(), HDBSCAN(min_cluster_size=10))
    labels = pipe.fit_predict(X)
    assert sorted(set(labels.tolist()) - {-1}) == [0, 1]
    copy = clone(HDBSCAN(min_cluster_size=7, allow_single_cluster=True))
    assert copy.get_params()["allow_single_cluster"] is True


def test_import_medscore_does_not_import_sklearn():
    code = "import sys, medscore; assert 'sklearn' not in sys.modules, 'sklearn imported'"
    subprocess.run([sys.executable, "-P", "-c", code], check=True)


def test_without_sklearn_the_fallback_base_works():
    """With scikit-learn unimportable, HDBSCAN still fits and has the parameter protocol."""
    code = """
import sys
sys.modules["sklearn"] = None  # makes "import sklearn" raise ImportError
import numpy as np
import medscore
from medscore import HDBSCAN
from medscore._estimator import HAVE_SKLEARN
assert not HAVE_SKLEARN
model = HDBSCAN(min_cluster_size=4, allow_single_cluster=True)
assert model.get_params()["min_cluster_size"] == 4
assert repr(model) == "HDBSCAN(allow_single_cluster=True, min_cluster_size=4)", repr(model)
assert model.set_params(min_cluster_size=6) is model and model.min_cluster_size == 6
try:
    model.set_params(bogus=1)
except ValueError as exc:
    assert "Invalid parameter 'bogus'" in str(exc)
else:
    raise AssertionError("set_params(bogus=1) passed")
X = np.random.default_rng(0).normal(size=(50, 2))
labels = model.fit_predict(X)
assert labels is model.labels_ and labels.shape == (50,)
try:
    HDBSCAN(allow_single_cluster="False").fit(X)
except ValueError as exc:
    assert "must be an instance of 'bool'" in str(exc)
else:
    raise AssertionError("a string was taken as a boolean")
inc = medscore.IncrementalHDBSCAN(min_cluster_size=4, knn="exact")
assert inc.fit_predict(X).shape == (50,)
print("ok")
"""
    out = subprocess.run([sys.executable, "-P", "-c", code], check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONWARNINGS": "error"})
    assert out.stdout.strip() == "ok"
