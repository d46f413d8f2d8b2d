"""
medscore's C++ core (exact HDBSCAN stages, error memory); see docs/SPEC.md

Type stubs of the compiled extension, written by pybind11-stubgen from the built module
(``pybind11-stubgen medscore._core -o <dir> --numpy-array-use-type-var``; structured arrays
of the C++ structs are ``numpy.ndarray``). tests/test_dtypes.py checks that they list
exactly what the module exports.
"""
from __future__ import annotations
import collections.abc
import numpy
import numpy.typing
import typing
__all__: list[str] = ['AssignRule', 'CheckpointError', 'DEAD_KEYS_KEPT', 'IncrementalHDBSCAN', 'KeyedMemory', 'Memory', 'MemoryOptions', 'NanRows', 'PenaltyTarget', 'SelectionMethod', 'StoreRule', 'checkpoint_deserialize', 'checkpoint_read_bytes', 'checkpoint_write', 'condense_tree', 'core_distances', 'fit', 'incremental_insert', 'knn_of_rows', 'minimum_spanning_tree', 'nearest_neighbors', 'select_clusters', 'simplify_hierarchy', 'single_linkage', 'spanning_forest_of_edges', 'struct_sizes', 'unique_int64']
class SelectionMethod:
    """
    How clusters are chosen from the condensed tree.
    
    Members:
    
      eom
    
      leaf
    """
    __members__: typing.ClassVar[dict[str, SelectionMethod]]
    eom: typing.ClassVar[SelectionMethod]
    leaf: typing.ClassVar[SelectionMethod]
    @typing.overload
    def __eq__(self, other: SelectionMethod) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    @typing.overload
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @typing.overload
    def __init__(self, name: str) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: SelectionMethod) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class AssignRule:
    """
    How a new rollout's cluster is decided (memory.hpp).
    
    Members:
    
      exact
    
      paper
    """
    __members__: typing.ClassVar[dict[str, AssignRule]]
    exact: typing.ClassVar[AssignRule]
    paper: typing.ClassVar[AssignRule]
    @typing.overload
    def __eq__(self, other: AssignRule) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    @typing.overload
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @typing.overload
    def __init__(self, name: str) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: AssignRule) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class StoreRule:
    """
    Which rollouts a Memory stores (error_memory.hpp).
    
    Members:
    
      wrong
    
      all
    """
    __members__: typing.ClassVar[dict[str, StoreRule]]
    all: typing.ClassVar[StoreRule]
    wrong: typing.ClassVar[StoreRule]
    @typing.overload
    def __eq__(self, other: StoreRule) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    @typing.overload
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @typing.overload
    def __init__(self, name: str) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: StoreRule) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class NanRows:
    """
    What a fingerprint row of NaN means without a valid mask.
    
    Members:
    
      error
    
      skip
    """
    __members__: typing.ClassVar[dict[str, NanRows]]
    error: typing.ClassVar[NanRows]
    skip: typing.ClassVar[NanRows]
    @typing.overload
    def __eq__(self, other: NanRows) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    @typing.overload
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @typing.overload
    def __init__(self, name: str) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: NanRows) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class PenaltyTarget:
    """
    Which rollouts get a penalty.
    
    Members:
    
      wrong
    
      right
    
      both
    
      none
    """
    __members__: typing.ClassVar[dict[str, PenaltyTarget]]
    both: typing.ClassVar[PenaltyTarget]
    none: typing.ClassVar[PenaltyTarget]
    right: typing.ClassVar[PenaltyTarget]
    wrong: typing.ClassVar[PenaltyTarget]
    @typing.overload
    def __eq__(self, other: PenaltyTarget) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    @typing.overload
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @typing.overload
    def __init__(self, name: str) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: PenaltyTarget) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class MemoryOptions:
    """
    Options of a Memory (error_memory.hpp); defaults are medscore.Memory's.
    """
    assign: AssignRule
    keyed: bool
    method: SelectionMethod
    nan_rows: NanRows
    normalize: bool
    penalize_noise: bool
    store: StoreRule
    target: PenaltyTarget
    @staticmethod
    def preset(name: str) -> MemoryOptions:
        ...
    def __init__(self) -> None:
        ...
    def check(self) -> None:
        """
        Raises ValueError naming the first bad option.
        """
    @property
    def alpha(self) -> float:
        ...
    @alpha.setter
    def alpha(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def beta(self) -> float:
        ...
    @beta.setter
    def beta(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def capacity(self) -> int:
        ...
    @capacity.setter
    def capacity(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def max_age(self) -> int:
        ...
    @max_age.setter
    def max_age(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def min_cluster_size(self) -> int:
        ...
    @min_cluster_size.setter
    def min_cluster_size(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def min_samples(self) -> int:
        ...
    @min_samples.setter
    def min_samples(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def n_threads(self) -> int:
        ...
    @n_threads.setter
    def n_threads(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
class Memory:
    """
    The error memory's rules and state (error_memory.hpp).
    """
    @staticmethod
    def from_state(options: MemoryOptions, state: dict, penalty: typing.Any = None) -> Memory:
        """
        A Memory holding state() of another (checked; ValueError).
        """
    def __init__(self, options: MemoryOptions, penalty: typing.Any = None) -> None:
        ...
    def penalize(self, points: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], keys: typing.Annotated[numpy.typing.ArrayLike, numpy.int64], correct: typing.Annotated[numpy.typing.ArrayLike, numpy.bool], valid: typing.Annotated[numpy.typing.ArrayLike, numpy.bool] | None, step: typing.SupportsInt | typing.SupportsIndex) -> tuple:
        """
        points f64 [N, D], keys int64 [N], correct bool [N], valid bool [N] or None, step (-1: last + 1) -> (penalties f64 [N], labels int64 [N], sizes int64 [N]); GIL released but for the penalty callable.
        """
    def state(self) -> dict:
        """
        dict: keys int64 [K] by id, last_step, dim (0: nothing stored), last_penalties f64, engine (dict or None).
        """
    @property
    def dim(self) -> int:
        ...
    @property
    def engine(self) -> ...:
        """
        The KeyedMemory, or None before a point is stored.
        """
    @property
    def keys(self) -> numpy.typing.NDArray[numpy.int64]:
        ...
    @property
    def last_penalties(self) -> numpy.typing.NDArray[numpy.float64]:
        ...
    @property
    def last_step(self) -> int:
        ...
    @property
    def n_keys(self) -> int:
        ...
class KeyedMemory:
    """
    Per-key exact HDBSCAN memory (see medscore/memory.hpp).
    """
    def __init__(self, dim: typing.SupportsInt | typing.SupportsIndex, min_cluster_size: typing.SupportsInt | typing.SupportsIndex, min_samples: typing.SupportsInt | typing.SupportsIndex, method: SelectionMethod, allow_single_cluster: bool, epsilon: typing.SupportsFloat | typing.SupportsIndex, assign: AssignRule, vote_k: typing.SupportsInt | typing.SupportsIndex, max_age: typing.SupportsInt | typing.SupportsIndex, capacity: typing.SupportsInt | typing.SupportsIndex, n_threads: typing.SupportsInt | typing.SupportsIndex, normalize: bool = False) -> None:
        ...
    def compact(self, kept: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex]) -> None:
        """
        Key i becomes old key kept[i] (increasing); every key left out must be empty.
        """
    def key_labels(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.int64]:
        ...
    def key_sizes(self) -> numpy.typing.NDArray[numpy.int64]:
        """
        Points held by each key id: int64 [number of key ids].
        """
    def key_steps(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.int64]:
        ...
    def load_state(self, dim: typing.SupportsInt | typing.SupportsIndex, last_step: typing.SupportsInt | typing.SupportsIndex, offsets: typing.Annotated[numpy.typing.ArrayLike, numpy.int64], points: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], steps: typing.Annotated[numpy.typing.ArrayLike, numpy.int64], labels: typing.Annotated[numpy.typing.ArrayLike, numpy.int64], mst_u: typing.Annotated[numpy.typing.ArrayLike, numpy.int64], mst_v: typing.Annotated[numpy.typing.ArrayLike, numpy.int64], mst_weight: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> None:
        ...
    def moments(self) -> tuple:
        """
        (count, sum f64 [D], outer_sum f64 [D, D]) over every stored point.
        """
    def penalize_step(self, points: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], keys: typing.Annotated[numpy.typing.ArrayLike, numpy.int64], step: typing.SupportsInt | typing.SupportsIndex) -> tuple:
        """
        points f64 [N, D], keys int64 [N] (-1: row not stored) -> (labels int64 [N], sizes int64 [N]); GIL released.
        """
    def state(self) -> dict:
        """
        The memory as a dict of numpy arrays.
        """
    @property
    def last_step(self) -> int:
        ...
    @property
    def n_clusters(self) -> int:
        ...
    @property
    def n_keys(self) -> int:
        ...
    @property
    def n_noise(self) -> int:
        ...
    @property
    def n_points(self) -> int:
        ...
class IncrementalHDBSCAN:
    """
    The exact incremental HDBSCAN* engine (csrc/include/medscore/incremental_hdbscan.hpp).
    """
    def __getstate__(self) -> tuple:
        ...
    def __init__(self, min_cluster_size: typing.SupportsInt | typing.SupportsIndex, min_samples: typing.SupportsInt | typing.SupportsIndex, method: SelectionMethod, allow_single_cluster: bool, capacity: typing.SupportsInt | typing.SupportsIndex = 0, n_threads: typing.SupportsInt | typing.SupportsIndex = 0, max_cluster_size: typing.SupportsInt | typing.SupportsIndex = 0, epsilon_max: typing.SupportsFloat | typing.SupportsIndex = ...) -> None:
        ...
    def __setstate__(self, arg0: tuple) -> None:
        ...
    def insert(self, X: typing.Annotated[numpy.typing.ArrayLike, numpy.float64]) -> int:
        """
        Insert rows (float64 [B, D]); returns the first id given (ids are consecutive).
        """
    def remove(self, ids: typing.Annotated[numpy.typing.ArrayLike, numpy.int64]) -> None:
        """
        Remove live points by id (int64 [R], distinct).
        """
    @property
    def condensed_tree(self) -> numpy.typing.NDArray[...]:
        ...
    @property
    def core_distances(self) -> numpy.typing.NDArray[numpy.float64]:
        ...
    @property
    def dim(self) -> int:
        ...
    @property
    def ids(self) -> numpy.typing.NDArray[numpy.int64]:
        ...
    @property
    def knn_dist(self) -> numpy.typing.NDArray[numpy.float64]:
        ...
    @property
    def knn_index(self) -> numpy.typing.NDArray[numpy.int64]:
        ...
    @property
    def labels(self) -> numpy.typing.NDArray[numpy.int64]:
        ...
    @property
    def mst(self) -> numpy.typing.NDArray[...]:
        ...
    @property
    def next_id(self) -> int:
        ...
    @property
    def next_label(self) -> int:
        ...
    @property
    def points(self) -> numpy.typing.NDArray[numpy.float64]:
        """
        float64 [N, D] copy of the live points, in id order
        """
    @property
    def probabilities(self) -> numpy.typing.NDArray[numpy.float64]:
        ...
    @property
    def size(self) -> int:
        ...
class CheckpointError(ValueError):
    """
    A checkpoint file that cannot be read back exactly (corrupted, truncated, foreign).
    """
def checkpoint_deserialize(data: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8], where: str) -> dict:
    """
    The state in version-2 file bytes as a dict (state_version, options, keys, last_step, dim, last_penalties, engine); CheckpointError for a damaged or foreign file.
    """
def checkpoint_read_bytes(path: bytes) -> numpy.typing.NDArray[numpy.uint8]:
    """
    The bytes (uint8 [size]) of a regular file, read without blocking; CheckpointError otherwise.
    """
def checkpoint_write(path: bytes, state_version: typing.SupportsInt | typing.SupportsIndex, options: dict, keys: collections.abc.Sequence[tuple[str, bytes]], last_step: typing.SupportsInt | typing.SupportsIndex, dim: typing.SupportsInt | typing.SupportsIndex, last_penalties: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], engine: typing.Any) -> None:
    """
    Writes a Memory state atomically (format version 2). keys: [(tag 'i' | 's' | 'b', bytes)]; dim: 0 for none; engine: None or the dict of KeyedMemory.state().
    """
def condense_tree(linkage: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]], n: typing.SupportsInt | typing.SupportsIndex, min_cluster_size: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[...]:
    """
    Condensed tree CONDENSED (SPEC stage 4).
    """
def core_distances(X: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], min_samples: typing.SupportsInt | typing.SupportsIndex, n_threads: typing.SupportsInt | typing.SupportsIndex = 0) -> numpy.typing.NDArray[numpy.float64]:
    """
    Core distances float64 [N] of X float64 [N, D] (SPEC stage 1).
    """
def fit(X: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], min_cluster_size: typing.SupportsInt | typing.SupportsIndex, min_samples: typing.SupportsInt | typing.SupportsIndex, method: SelectionMethod, allow_single_cluster: bool, epsilon: typing.SupportsFloat | typing.SupportsIndex, n_threads: typing.SupportsInt | typing.SupportsIndex = 0) -> tuple:
    """
    Whole pipeline: (core, mst, linkage, condensed, labels, probabilities, persistence).
    """
def incremental_insert(X: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], n_old: typing.SupportsInt | typing.SupportsIndex, knn_index: typing.Annotated[numpy.typing.ArrayLike, numpy.int64], knn_dist: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], mst: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]], n_threads: typing.SupportsInt | typing.SupportsIndex = 0) -> tuple:
    """
    Exact graph after appending rows n_old.. of X: (knn_index int64 [N, k], knn_dist float64 [N, k], core float64 [N], mst MST_EDGE [N-1] sorted), from the first n_old rows' graph (same k).
    """
def knn_of_rows(X: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], rows: typing.Annotated[numpy.typing.ArrayLike, numpy.int64], k: typing.SupportsInt | typing.SupportsIndex, n_threads: typing.SupportsInt | typing.SupportsIndex = 0) -> tuple:
    """
    Exact k nearest other rows of X[rows] by (distance, index): (int64 [M, k], float64 [M, k]).
    """
def minimum_spanning_tree(X: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], core: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], n_threads: typing.SupportsInt | typing.SupportsIndex = 0, initial_forest: typing.Any = None) -> numpy.typing.NDArray[...]:
    """
    Exact mutual-reachability MST, MST_EDGE [N-1] sorted by (weight, u, v) (SPEC stage 2).
    """
def nearest_neighbors(X: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], k: typing.SupportsInt | typing.SupportsIndex, n_threads: typing.SupportsInt | typing.SupportsIndex = 0) -> tuple:
    """
    (indices int64 [N, k], distances float64 [N, k]) of the k nearest other points, by (distance, index).
    """
def select_clusters(condensed: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]], n: typing.SupportsInt | typing.SupportsIndex, method: SelectionMethod, allow_single_cluster: bool, epsilon: typing.SupportsFloat | typing.SupportsIndex, max_cluster_size: typing.SupportsInt | typing.SupportsIndex = 0, epsilon_max: typing.SupportsFloat | typing.SupportsIndex = ...) -> tuple:
    """
    (labels int64 [N], probabilities float64 [N], persistence float64 [K]) (SPEC stage 5); max_cluster_size 0 and epsilon_max inf mean no limit.
    """
def simplify_hierarchy(condensed: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]], n: typing.SupportsInt | typing.SupportsIndex, persistence: typing.SupportsFloat | typing.SupportsIndex) -> numpy.typing.NDArray[...]:
    """
    The condensed tree under cluster_selection_persistence (SPEC stage 5).
    """
def single_linkage(mst: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]], n: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[...]:
    """
    Single-linkage tree LINKAGE [N-1] of a sorted MST (SPEC stage 3).
    """
def spanning_forest_of_edges(edges: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]], n: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[...]:
    """
    Minimum spanning forest MST_EDGE of an MST_EDGE edge list (Kruskal).
    """
def struct_sizes() -> dict:
    """
    Byte sizes of the C++ structs behind MST_EDGE, LINKAGE and CONDENSED (a dict).
    """
def unique_int64(values: typing.Annotated[numpy.typing.ArrayLike, numpy.int64]) -> tuple:
    """
    values int64 [N] -> (distinct values int64 [U] increasing, inverse int64 [N]): np.unique(values, return_inverse=True).
    """
DEAD_KEYS_KEPT: int = 64
