/* medscore C API: the error memory of MEDS, batch and incremental HDBSCAN for any language with a C FFI.
 *
 * Link medscore::core (CMake: find_package(medscore CONFIG REQUIRED)). Plain C99.
 *
 * Conventions
 *  - Every function returns a medscore_status; MEDSCORE_OK is 0. No C++ exception ever
 *    crosses this boundary; a bad argument (null pointer, wrong size, NaN, out-of-range
 *    option) returns an error code, never crashes.
 *  - On failure, the message is available from medscore_last_error() (per thread, for every
 *    function) and, for functions taking a memory handle, from medscore_memory_last_error().
 *    A failed call leaves a memory exactly as it was.
 *  - Arrays are caller-owned, row-major and sized as each function says; nothing is kept.
 *
 * Thread safety
 *  - A medscore_memory_t handle may be used from several threads at once: every call on a
 *    handle takes the handle's mutex, so calls are serialised (penalize itself runs its keys
 *    on n_threads worker threads). Different handles are independent.
 *  - medscore_memory_free must not race with other calls on the same handle.
 *  - medscore_memory_last_error(h) returns the message of the last failed call on h; the
 *    pointer stays valid until the next failing call on h or medscore_memory_free(h). With
 *    several threads per handle prefer medscore_last_error(), which is per thread.
 *  - The stateless functions (medscore_hdbscan, medscore_memory_options_init, ...) may be
 *    called from any thread.
 *
 * Checkpoints: medscore_memory_save writes the checkpoint format of medscore/checkpoint.hpp
 * (version 2: typed header records, raw little-endian arrays, CRC-32), atomically, with the
 * same code as the Python medscore.Memory; a file saved by Python with int64 keys is loaded
 * here, and the other way round.
 */
#ifndef MEDSCORE_MEDSCORE_H
#define MEDSCORE_MEDSCORE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MEDSCORE_VERSION_MAJOR 0
#define MEDSCORE_VERSION_MINOR 1
#define MEDSCORE_VERSION_PATCH 0

/** Result of every call. */
typedef enum medscore_status {
    MEDSCORE_OK = 0,
    MEDSCORE_ERROR_INVALID_ARGUMENT = 1, /**< null pointer, bad size or option, NaN, step going back */
    MEDSCORE_ERROR_IO = 2,               /**< a file cannot be opened, written, synced or renamed */
    MEDSCORE_ERROR_CORRUPT_FILE = 3,     /**< a checkpoint is corrupted, truncated, foreign or unsupported */
    MEDSCORE_ERROR_OUT_OF_MEMORY = 4,
    MEDSCORE_ERROR_INTERNAL = 5          /**< a broken invariant: a bug, please report it */
} medscore_status;

typedef enum medscore_selection { MEDSCORE_SELECTION_EOM = 0, MEDSCORE_SELECTION_LEAF = 1 } medscore_selection;

typedef enum medscore_assign {
    MEDSCORE_ASSIGN_EXACT = 0, /**< the rollout's cluster once its step is inserted */
    MEDSCORE_ASSIGN_PAPER = 1  /**< 3-NN cosine vote against the labels before the step (MEDS) */
} medscore_assign;

/** Which rollouts get a penalty (the MEDS reference's cluster_penalty_target). */
typedef enum medscore_target {
    MEDSCORE_TARGET_WRONG = 0, /**< wrong rollouts (default) */
    MEDSCORE_TARGET_RIGHT = 1, /**< correct rollouts, by their own cluster (needs store_all) */
    MEDSCORE_TARGET_BOTH = 2,  /**< every rollout (needs store_all) */
    MEDSCORE_TARGET_NONE = 3   /**< none: the memory only observes */
} medscore_target;

/** Options of a memory. Fill with medscore_memory_options_init, then change fields. */
typedef struct medscore_memory_options {
    int32_t keyed;             /**< 1: one clustering per key (default); 0: one global clustering */
    int32_t store_all;         /**< 0: store wrong rollouts (default); 1: all, per (key, correctness) */
    int32_t normalize;         /**< 1: L2-normalise stored fingerprints (default) */
    int64_t min_cluster_size;  /**< >= 2, default 2 */
    int64_t min_samples;       /**< >= 1, default 1 */
    int32_t selection;         /**< medscore_selection, default EOM */
    int32_t assign;            /**< medscore_assign, default EXACT */
    int32_t penalize_noise;    /**< 1: penalise noise by the key's noise count; default 0 */
    double alpha;              /**< penalty min(alpha * ln(|C| + 1), beta); default 0.1 */
    double beta;               /**< default 0.2 */
    int64_t max_age;           /**< forget points older than this many steps; -1 (default): never */
    int64_t capacity;          /**< at most this many points per key; -1 (default): no limit */
    int32_t nan_rows_skip;     /**< 1: an all-NaN row means "no fingerprint"; 0 (default): an error */
    int32_t n_threads;         /**< threads across keys; 0 (default): every hardware thread */
    int32_t target;            /**< medscore_target: which rollouts get a penalty; default WRONG */
} medscore_memory_options;

/** Opaque error memory. */
typedef struct medscore_memory medscore_memory_t;

/** "MAJOR.MINOR.PATCH" of the library. */
const char* medscore_version(void);

/** A fixed description of `status`, e.g. "invalid argument". */
const char* medscore_status_string(medscore_status status);

/** Message of the calling thread's last failed call ("" if none); valid until its next failure. */
const char* medscore_last_error(void);

/** Fills `options` with the defaults of `preset`: NULL or "" (medscore.Memory's defaults) or
 *  "paper" (the published MEDS recipe: store all, paper vote, noise penalised). */
medscore_status medscore_memory_options_init(medscore_memory_options* options, const char* preset);

/** Creates an empty memory in `*out` (set to NULL on failure). `options` must not be NULL. */
medscore_status medscore_memory_create(const medscore_memory_options* options, medscore_memory_t** out);

/** Frees `memory` (NULL is a no-op). */
void medscore_memory_free(medscore_memory_t* memory);

/** Penalties of one step's `n` rollouts; stores the step.
 *  fingerprints  double [n * dim], row-major; every row the memory stores must be finite
 *  keys          int64 [n]: the stable id of each rollout's prompt (any value)
 *  correct       uint8 [n]: 1 correct, 0 wrong
 *  valid         uint8 [n] or NULL: 0 marks a row without fingerprint (no penalty, not stored)
 *  step          in [0, 2^63 - 2] and >= the last step, or -1 for the last step + 1 (refused
 *                once the last step is 2^63 - 2)
 *  penalties     double [n] out: >= 0, to subtract from the rewards
 *  labels, sizes int64 [n] out or NULL: cluster of each rollout within its key (-1 noise or not
 *                stored) and that cluster's size */
medscore_status medscore_memory_penalize(medscore_memory_t* memory, const double* fingerprints, int64_t n,
                                         int64_t dim, const int64_t* keys, const uint8_t* correct,
                                         const uint8_t* valid, int64_t step, double* penalties, int64_t* labels,
                                         int64_t* sizes);

/** Stores one step without computing anything for the caller: penalize with no outputs. */
medscore_status medscore_memory_insert(medscore_memory_t* memory, const double* fingerprints, int64_t n, int64_t dim,
                                       const int64_t* keys, const uint8_t* correct, const uint8_t* valid,
                                       int64_t step);

/** A penalty other than the default: fills `penalties[m]` (finite, >= 0) from the sizes `sizes[m]`
 *  of the penalised rollouts' clusters (noise: the key's noise count) and returns 0; any other
 *  return value fails the penalize call with MEDSCORE_ERROR_INVALID_ARGUMENT. It is called after
 *  the step is stored (a failure then leaves the step stored), on the calling thread, with the
 *  handle's lock held: it must not call back into the same memory. */
typedef int (*medscore_penalty_fn)(const int64_t* sizes, int64_t m, double* penalties, void* user_data);

/** Sets the memory's penalty function (`fn` NULL: back to min(alpha * ln(size + 1), beta)).
 *  Not saved in checkpoints: set it again after medscore_memory_load. */
medscore_status medscore_memory_set_penalty(medscore_memory_t* memory, medscore_penalty_fn fn, void* user_data);

/** Counts of a memory. */
typedef struct medscore_memory_info {
    int64_t keys;       /**< distinct keys seen */
    int64_t groups;     /**< clusterings holding points */
    int64_t points;     /**< stored fingerprints */
    int64_t clusters;   /**< summed over groups */
    int64_t noise;      /**< points labelled noise, summed over groups */
    int64_t last_step;  /**< -1 before the first step */
    int64_t dim;        /**< 0 until something is stored */
} medscore_memory_info;

medscore_status medscore_memory_get_info(medscore_memory_t* memory, medscore_memory_info* info);

/** Writes `memory` to `path` atomically (temporary file, fsync, rename, fsync of the folder). */
medscore_status medscore_memory_save(medscore_memory_t* memory, const char* path);

/** Loads the memory saved at `path` (by C, C++ or Python) with its saved options into `*out`;
 *  `n_threads` >= 0 replaces the saved thread count, -1 keeps it. */
medscore_status medscore_memory_load(const char* path, int32_t n_threads, medscore_memory_t** out);

/** Message of the last failed call on `memory` ("" if none; a fixed text if memory is NULL). */
const char* medscore_memory_last_error(const medscore_memory_t* memory);

/** Parameters of batch HDBSCAN (docs/SPEC.md). Fill with medscore_hdbscan_params_init. */
typedef struct medscore_hdbscan_params {
    int64_t min_cluster_size;      /**< >= 2, default 5 */
    int64_t min_samples;           /**< >= 1, default 5 */
    int32_t selection;             /**< medscore_selection, default EOM */
    int32_t allow_single_cluster;  /**< default 0 */
    double epsilon;                /**< cluster_selection_epsilon >= 0, default 0 */
    int32_t n_threads;             /**< 0: every hardware thread */
} medscore_hdbscan_params;

medscore_status medscore_hdbscan_params_init(medscore_hdbscan_params* params);

/** Exact HDBSCAN of `points` double [n * dim] (finite, row-major), Euclidean.
 *  labels        int64 [n] out: cluster of each point, -1 noise
 *  probabilities double [n] out or NULL: membership strength in [0, 1] */
medscore_status medscore_hdbscan(const medscore_hdbscan_params* params, const double* points, int64_t n, int64_t dim,
                                 int64_t* labels, double* probabilities);

/** Parameters of the incremental engine. Fill with medscore_incremental_params_init. */
typedef struct medscore_incremental_params {
    int64_t min_cluster_size;      /**< >= 2, default 5 */
    int64_t min_samples;           /**< >= 1, default 5 (clipped to N - 1 while fewer points are live) */
    int32_t selection;             /**< medscore_selection, default EOM */
    int32_t allow_single_cluster;  /**< default 0 */
    int64_t capacity;              /**< most live points, oldest evicted first; 0 (default): unbounded */
    int32_t n_threads;             /**< 0: every hardware thread */
    int64_t max_cluster_size;      /**< eom: larger clusters are not selected (hdbscan's); 0 (default): no limit */
    double epsilon_max;            /**< eom: clusters born farther than this are not selected (hdbscan's
                                        cluster_selection_epsilon_max); INFINITY (default): no limit */
} medscore_incremental_params;

/** Opaque incremental HDBSCAN engine: after every insert or remove its clustering equals a
 *  batch medscore_hdbscan of the live points in id order. Same threading rules as a memory. */
typedef struct medscore_incremental medscore_incremental_t;

medscore_status medscore_incremental_params_init(medscore_incremental_params* params);

/** Creates an empty engine in `*out` (NULL on failure). */
medscore_status medscore_incremental_create(const medscore_incremental_params* params, medscore_incremental_t** out);

/** Frees `engine` (NULL is a no-op). */
void medscore_incremental_free(medscore_incremental_t* engine);

/** Inserts `points` double [n * dim] (finite; dim fixed by the first insert) with consecutive
 *  ids starting at `*first_id` (out, may be NULL), evicting the oldest points beyond capacity. */
medscore_status medscore_incremental_insert(medscore_incremental_t* engine, const double* points, int64_t n,
                                            int64_t dim, int64_t* first_id);

/** Removes live points by id: `ids` int64 [n], distinct and live (else nothing changes). */
medscore_status medscore_incremental_remove(medscore_incremental_t* engine, const int64_t* ids, int64_t n);

/** Number of live points. */
medscore_status medscore_incremental_size(medscore_incremental_t* engine, int64_t* size);

/** Copies the live points' ids (ascending), stable labels (-1 noise) and probabilities into
 *  arrays of `capacity` >= size entries; any output may be NULL. */
medscore_status medscore_incremental_get(medscore_incremental_t* engine, int64_t capacity, int64_t* ids,
                                         int64_t* labels, double* probabilities);

/** Message of the last failed call on `engine` ("" if none). */
const char* medscore_incremental_last_error(const medscore_incremental_t* engine);

#ifdef __cplusplus
}
#endif

#endif /* MEDSCORE_MEDSCORE_H */
