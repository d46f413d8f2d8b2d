// Disjoint sets with path halving and union by size (private to csrc/: under csrc/private, never installed).
#pragma once
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

namespace medscore {

/// Root of x's set in the parent array of disjoint sets over 0..n-1, halving the path.
inline int64_t find_root(int64_t* parent, int64_t x) noexcept {
    while (parent[x] != x) {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    return x;
}

/// Joins the sets of roots a != b by size; returns the root of the union.
inline int64_t unite_roots(int64_t* parent, int64_t* size, int64_t a, int64_t b) noexcept {
    if (size[a] < size[b]) std::swap(a, b);
    parent[b] = a;
    size[a] += size[b];
    return a;
}

/// Disjoint sets owning their arrays (callers that reuse a workspace use the functions above).
class UnionFind {
public:
    explicit UnionFind(int64_t n) : parent_(static_cast<size_t>(n)), size_(static_cast<size_t>(n), 1) {
        std::iota(parent_.begin(), parent_.end(), int64_t{0});
    }

    int64_t find(int64_t x) noexcept { return find_root(parent_.data(), x); }

    /// Joins the sets of a and b; returns false if they were already one set.
    bool unite(int64_t a, int64_t b) noexcept {
        a = find(a);
        b = find(b);
        if (a == b) return false;
        unite_roots(parent_.data(), size_.data(), a, b);
        return true;
    }

    int64_t size_of(int64_t x) noexcept { return size_[find(x)]; }

private:
    std::vector<int64_t> parent_;
    std::vector<int64_t> size_;
};

}  // namespace medscore
