// Structural checks of a loaded key (private to csrc/: memory.cpp defines them, the state
// import uses them).
#pragma once
#include <cstdint>
#include <string>

#include "medscore/memory.hpp"

namespace medscore {

/// Throws std::invalid_argument (message prefixed by `where`) unless `key`'s MST is a spanning
/// tree of its points sorted by (weight, u, v), with the weights the memory computes (exactly
/// the Euclidean distance when min_samples == 1, at least it otherwise), and its labels are the
/// clustering of that tree under `params`. `key.points`, `steps` and `labels` must be sized
/// consistently, edge endpoints in range and labels numbered (the caller checks these first).
void check_loaded_key(const KeyState& key, const MemoryParams& params, const std::string& where);

}  // namespace medscore
