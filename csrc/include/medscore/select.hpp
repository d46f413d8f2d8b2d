// Stage 5 of docs/SPEC.md: stability, EOM/leaf selection, epsilon, labels, probabilities.
#pragma once
#include <cstdint>
#include <limits>
#include <vector>

#include "medscore/types.hpp"

namespace medscore {

enum class SelectionMethod { eom, leaf };

struct Selection {
    std::vector<int64_t> labels;         ///< [N], -1 for noise
    std::vector<double> probabilities;   ///< [N]
    std::vector<double> persistence;     ///< [n_clusters], by label
    std::vector<int64_t> clusters;       ///< [n_clusters] condensed-tree id of each label
};

Selection select_clusters(const std::vector<CondensedRow>& condensed, int64_t n_points,
                          SelectionMethod method, bool allow_single_cluster, double epsilon);

/// Every option of stage 5. The defaults select exactly as the overloads without options.
struct SelectOptions {
    SelectionMethod method = SelectionMethod::eom;
    bool allow_single_cluster = false;
    double epsilon = 0.0;  ///< cluster_selection_epsilon, finite, >= 0
    /// EOM only (hdbscan's and scikit-learn's rule): a candidate with more points than this is
    /// not selected; 0 (hdbscan's value, scikit-learn's None) means no limit.
    int64_t max_cluster_size = 0;
    /// EOM only (hdbscan's rule): a candidate born at a distance above this is not selected.
    double epsilon_max = std::numeric_limits<double>::infinity();
};

Selection select_clusters(const std::vector<CondensedRow>& condensed, int64_t n_points, const SelectOptions& options);

/// cluster_selection_persistence (fast_hdbscan's and hdbscan's simplify_hierarchy, SPEC
/// stage 5): the condensed tree with every split whose less persistent child is below
/// `persistence` dissolved into its parent, clusters renumbered consecutively, every lambda
/// rounded to float32 (as both libraries leave it). The tree is returned unchanged when
/// persistence is 0 or the tree is empty.
std::vector<CondensedRow> simplify_hierarchy(const std::vector<CondensedRow>& condensed, int64_t n_points,
                                             double persistence);

/// Scratch buffers of select_clusters; reusing one across calls avoids allocating once the
/// buffers have grown (the keyed memory selects in thousands of small trees per step).
struct SelectWorkspace {
    std::vector<int64_t> parent, point_cluster, kid_start, kids, term_start, fill, label_of, size;
    std::vector<double> birth, death, stability, point_lambda, terms, sub_terms;
    std::vector<char> marked, covered, selected, walked, top;
    std::vector<int64_t> clusters, members;
};

/// select_clusters writing into `out` (its vectors reused) with the buffers of `work`; the same result.
void select_clusters(const std::vector<CondensedRow>& condensed, int64_t n_points, SelectionMethod method,
                     bool allow_single_cluster, double epsilon, SelectWorkspace& work, Selection& out);
void select_clusters(const std::vector<CondensedRow>& condensed, int64_t n_points, const SelectOptions& options,
                     SelectWorkspace& work, Selection& out);

}  // namespace medscore
