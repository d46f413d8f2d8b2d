// Disjoint sets with path halving and union by size (private to csrc/: under csrc/private, never installed).
#pragma once
#include <cstdint>
#include <numeric>
#include <vector>

namespace medscore {

class UnionFind {
public:
    explicit UnionFind(int64_t n) : parent_(static_cast<size_t>(n)), size_(static_cast<size_t>(n), 1) {
        std::iota(parent_.begin(), parent_.end(), int64_t{0});
    }

    int64_t find(int64_t x) noexcept {
        while (parent_[x] != x) {
            parent_[x] = parent_[parent_[x]];
            x = parent_[x];
        }
        return x;
    }

    /// Joins the sets of a and b; returns false if they were already one set.
    bool unite(int64_t a, int64_t b) noexcept {
        a = find(a);
        b = find(b);
        if (a == b) return false;
        if (size_[a] < size_[b]) std::swap(a, b);
        parent_[b] = a;
        size_[a] += size_[b];
        return true;
    }

    int64_t size_of(int64_t x) noexcept { return size_[find(x)]; }

private:
    std::vector<int64_t> parent_;
    std::vector<int64_t> size_;
};

}  // namespace medscore
