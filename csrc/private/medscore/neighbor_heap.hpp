// The k nearest neighbours seen so far (private to csrc/: under csrc/private, never installed).
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace medscore {

/// (distance, row) ordered lexicographically: the neighbour order of docs/SPEC.md.
using Neighbor = std::pair<double, int64_t>;

/// The k best neighbours seen so far, as a max-heap on (distance, row).
class NeighborHeap {
public:
    explicit NeighborHeap(int64_t k = 0) : k_(static_cast<size_t>(k)) { items_.reserve(k_); }

    /// Distance above which nothing can enter (infinity until k neighbours are known).
    double bound() const noexcept {
        return items_.size() < k_ ? std::numeric_limits<double>::infinity() : items_.front().first;
    }

    void offer(const Neighbor& candidate) {
        if (items_.size() < k_) {
            items_.push_back(candidate);
            std::push_heap(items_.begin(), items_.end());
        } else if (candidate < items_.front()) {
            std::pop_heap(items_.begin(), items_.end());
            items_.back() = candidate;
            std::push_heap(items_.begin(), items_.end());
        }
    }

    /// Empties the heap for a search of k neighbours.
    void reset(int64_t k) {
        k_ = static_cast<size_t>(k);
        items_.clear();
    }

    /// The neighbours sorted ascending; the heap must be reset() before it is offered more.
    const std::vector<Neighbor>& sorted() {
        std::sort_heap(items_.begin(), items_.end());
        return items_;
    }

private:
    size_t k_;
    std::vector<Neighbor> items_;
};

}  // namespace medscore
