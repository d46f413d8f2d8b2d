// Checkpoint files of medscore::Memory: the file format of the Python medscore.Memory
// (medscore/_checkpoint.py), so one file is read by both.
//
// Layout (integers little-endian):
//
//     magic      16 bytes  "MEDSCORE-MEMORY\n"
//     version     4 bytes  uint32, 1
//     header_len  8 bytes  uint64
//     header      UTF-8 JSON: format "medscore.Memory", version 1, options, keys (["i", "<int>"]
//                 per key), last_step, dim (null before anything is stored), engine (null or
//                 {dim, last_step}) and the table "arrays" of {name, dtype, shape, offset, nbytes}
//     data        the arrays back to back: last_penalties <f8 [N], engine.offsets <i8 [K+1],
//                 engine.points <f8 [P, D], engine.steps/labels <i8 [P],
//                 engine.mst_u/mst_v <i8 [E], engine.mst_weight <f8 [E]
//     digest     32 bytes  SHA-256 of everything before it
//
// Files with string or bytes keys (possible from Python) are refused by the C++ reader.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "medscore/error_memory.hpp"

namespace medscore {

/// A checkpoint that cannot be read back exactly: corrupted, truncated, foreign, another
/// version, or holding what the C++ Memory does not support (non-integer keys).
class CheckpointError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// A file that cannot be opened, written, synced or renamed (the message carries errno's text).
class FileError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// The checkpoint bytes of `snapshot` (little-endian hosts only).
std::vector<uint8_t> serialize_snapshot(const MemorySnapshot& snapshot);

/// The snapshot in `bytes` [size]; `where` names the source in messages. Throws CheckpointError.
MemorySnapshot deserialize_snapshot(const uint8_t* bytes, size_t size, const std::string& where);

/// Writes `memory` to `path` atomically: a temporary file in the same directory, fsync,
/// rename over `path`, fsync of the directory; a crash leaves the old file or the new one.
/// Throws FileError (nothing is left behind but, at worst, the old file).
void save_memory(const Memory& memory, const std::string& path);

/// The Memory saved at `path`, with its saved options; `n_threads` >= 0 replaces the saved
/// thread count (it is not part of the state). Throws FileError or CheckpointError.
Memory load_memory(const std::string& path, int n_threads = -1);

}  // namespace medscore
