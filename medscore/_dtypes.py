"""Structured dtypes that HDBSCAN stages hand each other.

Each is mirrored by a plain struct in ``csrc/include/medscore/types.hpp``; ``tests/test_dtypes.py``
checks that the layouts agree byte for byte.
"""
import numpy as np

#: An edge of the minimum spanning tree of the mutual-reachability graph (u < v).
MST_EDGE = np.dtype([("u", np.int64), ("v", np.int64), ("weight", np.float64)])

#: A row of the single-linkage tree in scipy's encoding (node ``N + i`` is row ``i``).
LINKAGE = np.dtype(
    [("left", np.int64), ("right", np.int64), ("distance", np.float64), ("size", np.int64)]
)

#: A row of the condensed tree, with the field names the ``hdbscan`` library exports.
CONDENSED = np.dtype(
    [("parent", np.int64), ("child", np.int64), ("lambda_val", np.float64), ("child_size", np.int64)]
)

__all__ = ["MST_EDGE", "LINKAGE", "CONDENSED"]
