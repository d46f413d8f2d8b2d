"""What makes medscore's clusterers scikit-learn estimators, with scikit-learn optional.

Three pieces, shared by ``HDBSCAN`` and ``IncrementalHDBSCAN``:

- ``EstimatorBase`` and ``ClusterMixin``: scikit-learn's ``BaseEstimator`` and
  ``ClusterMixin`` when scikit-learn imports, else a small fallback with the same
  ``get_params`` / ``set_params`` / ``fit_predict`` / ``repr``. The choice is made once, when
  this module is first imported; ``medscore/__init__.py`` imports the estimators lazily so
  that ``import medscore`` does not pay scikit-learn's import (about a second) for users of
  ``Memory`` alone. Without scikit-learn nothing calls ``__sklearn_tags__``, so the fallback
  does not define it.
- Declarative parameter constraints (``Interval``, ``Options``, ``BOOLEAN``, ``INFINITY``, ``None``) and
  :func:`validate_params`, raising :class:`InvalidParameterError` with scikit-learn's wording
  (``The 'x' parameter of HDBSCAN must be ... Got ... instead.``). The error derives from
  ``ValueError`` and ``TypeError``, as scikit-learn's does.
- :func:`check_points`: the estimators' input check, with scikit-learn's messages for the
  cases its ``check_estimator`` exercises, recording ``n_features_in_`` and
  ``feature_names_in_``.
"""
from __future__ import annotations

import inspect
import numbers
from dataclasses import dataclass

import numpy as np

from ._validation import as_points

try:  # scikit-learn is optional; see the module docstring.
    from sklearn.base import BaseEstimator as EstimatorBase
    from sklearn.base import ClusterMixin

    HAVE_SKLEARN = True
except ImportError:  # pragma: no cover - exercised by the no-sklearn test in a subprocess
    HAVE_SKLEARN = False

    class EstimatorBase:
        """Fallback for ``sklearn.base.BaseEstimator``: parameters read from ``__init__``."""

        @classmethod
        def _get_param_names(cls) -> list[str]:
            signature = inspect.signature(cls.__init__)
            return sorted(p.name for p in signature.parameters.values()
                          if p.name != "self" and p.kind != p.VAR_KEYWORD)

        def get_params(self, deep: bool = True) -> dict:
            """Parameters of this estimator (``deep`` is accepted for compatibility)."""
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params):
            """Set parameters by name; an unknown name raises ``ValueError``."""
            valid = self._get_param_names()
            for name, value in params.items():
                if name not in valid:
                    raise ValueError(f"Invalid parameter {name!r} for estimator {self}. "
                                     f"Valid parameters are: {valid!r}.")
                setattr(self, name, value)
            return self

        def __repr__(self) -> str:
            defaults = {p.name: p.default for p in
                        inspect.signature(type(self).__init__).parameters.values()}
            changed = [f"{k}={v!r}" for k, v in self.get_params().items()
                       if not _same(v, defaults.get(k))]
            return f"{type(self).__name__}({', '.join(changed)})"

    class ClusterMixin:
        """Fallback for ``sklearn.base.ClusterMixin``."""

        def fit_predict(self, X, y=None, **kwargs):
            """Fit and return ``labels_``."""
            self.fit(X, **kwargs)
            return self.labels_


def _same(a, b) -> bool:
    try:
        return bool(a == b) and type(a) is type(b)
    except (TypeError, ValueError):
        return a is b


class InvalidParameterError(ValueError, TypeError):
    """A parameter outside its constraints (scikit-learn raises an error of the same bases)."""


@dataclass(frozen=True)
class Interval:
    """Numbers of ``kind`` (``numbers.Integral`` or ``numbers.Real``) in [low, high].

    ``None`` for a bound means unbounded; both bounds are inclusive when given. Booleans
    are not numbers here, and a real interval holds finite values only.
    """

    kind: type
    low: float | None
    high: float | None

    def accepts(self, value) -> bool:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, self.kind):
            return False
        if self.kind is numbers.Real and not np.isfinite(value):
            return False
        return ((self.low is None or value >= self.low)
                and (self.high is None or value <= self.high))

    def __str__(self) -> str:
        name = "an int" if self.kind is numbers.Integral else "a float"
        cast = int if self.kind is numbers.Integral else float
        low = "-inf" if self.low is None else cast(self.low)
        high = "inf" if self.high is None else cast(self.high)
        return (f"{name} in the range {'(' if self.low is None else '['}{low}, "
                f"{high}{')' if self.high is None else ']'}")


@dataclass(frozen=True)
class Options:
    """One of a fixed set of strings."""

    values: tuple

    def accepts(self, value) -> bool:
        return isinstance(value, str) and value in self.values

    def __str__(self) -> str:
        return "a str among {" + ", ".join(repr(v) for v in sorted(self.values)) + "}"


class _Boolean:
    """``bool`` or ``numpy.bool_``; strings such as ``"False"`` are refused, not truth-tested."""

    def accepts(self, value) -> bool:
        return isinstance(value, (bool, np.bool_))

    def __str__(self) -> str:
        return "an instance of 'bool' or an instance of 'numpy.bool'"


BOOLEAN = _Boolean()


class _Infinity:
    """``float("inf")`` (or ``numpy.inf``): "no limit" for a real threshold."""

    def accepts(self, value) -> bool:
        return (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
                and value == float("inf"))

    def __str__(self) -> str:
        return "inf"


INFINITY = _Infinity()


def validate_params(estimator, constraints: dict) -> dict:
    """Check every parameter of ``estimator`` against ``constraints``; return them.

    Parameters
    ----------
    estimator : object with ``get_params()``
    constraints : dict {name: list of constraints}
        Each constraint is an :class:`Interval`, :class:`Options`, ``BOOLEAN``, ``INFINITY`` or ``None``
        (the value ``None`` is allowed). A value passes if any constraint accepts it.

    Returns
    -------
    dict {name: value}, ints as ``int``, floats as ``float``, booleans as ``bool``.

    Raises
    ------
    InvalidParameterError
        ``The 'name' parameter of Cls must be <constraints joined by ' or '>. Got <repr>
        instead.``, scikit-learn's wording.
    """
    out = {}
    for name, value in estimator.get_params(deep=False).items():
        allowed = constraints[name]
        if value is None and None in allowed:
            out[name] = None
            continue
        accepted = [c for c in allowed if c is not None and c.accepts(value)]
        if not accepted:
            described = [str(c) for c in allowed if c is not None] + (["None"] if None in allowed else [])
            raise InvalidParameterError(
                f"The {name!r} parameter of {type(estimator).__name__} must be "
                f"{' or '.join(described)}. Got {value!r} instead.")
        out[name] = _plain(value)
    return out


def _plain(value):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def check_points(estimator, X, reset: bool, allow_non_finite: bool = False) -> np.ndarray:
    """Validate ``X`` for ``estimator`` and return it as C-contiguous float64 [N, D].

    On top of :func:`medscore._validation.as_points` (rank, emptiness, NaN/Inf, torch
    tensors), this refuses sparse input and complex numbers with scikit-learn's messages,
    converts object arrays of numbers, and handles feature names: with ``reset`` it sets
    ``n_features_in_`` and, for a pandas DataFrame whose column names are all strings,
    ``feature_names_in_`` (object ndarray [D]); otherwise it checks ``X`` against them.

    Parameters
    ----------
    estimator : the estimator being fitted or updated
    X : array-like [N, D]
    reset : bool, True for ``fit`` (record the features), False for later updates
    allow_non_finite : bool, default False: NaN/Inf rows raise ``ValueError``; True: they are
        returned for the caller to handle

    Returns
    -------
    float64 ndarray [N, D]
    """
    if type(X).__module__.startswith("scipy.sparse"):
        raise TypeError("Sparse data was passed for X, but dense data is required. "
                        "Use X.toarray() to convert to a dense numpy array.")
    names = _feature_names(X)
    arr = X if hasattr(X, "detach") else np.asarray(X)
    if isinstance(arr, np.ndarray):
        if np.issubdtype(arr.dtype, np.complexfloating):
            raise ValueError(f"X must hold real numbers: Complex data not supported (dtype {arr.dtype})")
        if arr.dtype == object:
            try:
                arr = arr.astype(np.float64)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"X must hold real numbers: {exc}") from None
        if arr.ndim == 2 and arr.shape[1] == 0:
            raise ValueError(f"X has no features: 0 feature(s) (shape={arr.shape}) while a "
                             "minimum of 1 is required.")
    expected = None if reset else getattr(estimator, "n_features_in_", None)
    if expected is not None and np.ndim(arr) == 2 and np.shape(arr)[1] != expected:
        raise ValueError(f"X has {np.shape(arr)[1]} features, but {type(estimator).__name__} "
                         f"is expecting {expected} features as input")
    points = as_points(arr, allow_non_finite=allow_non_finite)
    if reset:
        estimator.n_features_in_ = points.shape[1]
        if names is not None:
            estimator.feature_names_in_ = names
        elif hasattr(estimator, "feature_names_in_"):
            del estimator.feature_names_in_
    else:
        _check_names(estimator, names)
    return points


def _feature_names(X):
    """Column names of a DataFrame-like ``X`` when all are strings, else None."""
    columns = getattr(X, "columns", None)
    if columns is None or not hasattr(X, "iloc"):
        return None
    names = np.asarray(list(columns), dtype=object)
    if names.size and all(isinstance(n, str) for n in names):
        return names
    return None


def _check_names(estimator, names) -> None:
    fitted = getattr(estimator, "feature_names_in_", None)
    if fitted is None or names is None:
        return
    if names.shape != fitted.shape or (names != fitted).any():
        raise ValueError("The feature names should match those that were passed during fit: "
                         f"got {names.tolist()}, fitted with {fitted.tolist()}")
