// Checkpoint files of the error memory: the one implementation, used by the C++ Memory, the C API
// and (through medscore._core) the Python medscore.Memory, so a file written by one is read by all.
//
// Format version 2 (integers little-endian; docs/embedding.md "Checkpoint files"):
//
//     magic       16 bytes  "MEDSCORE-MEMORY\n"
//     version      4 bytes  uint32, 2
//     header_len   8 bytes  uint64
//     data_len     8 bytes  uint64
//     header       uint32 record count, then records: uint16 name length, UTF-8 name, uint8 type,
//                  value. Types: 0 null; 1 bool (uint8); 2 int64; 3 float64 (IEEE-754 bits);
//                  4 string (uint64 length, UTF-8); 5 keys (uint64 count, then per key a tag
//                  byte 'i' | 's' | 'b', uint64 length, bytes: an integer as decimal ASCII, a
//                  string as UTF-8, bytes as they are); 6 array (uint8 dtype 1 = float64,
//                  2 = int64, uint8 ndim, uint64 shape[ndim], uint64 offset, uint64 nbytes)
//     data         the arrays' bytes, back to back in record order
//     crc32        4 bytes  uint32, CRC-32 (zlib's crc32) of everything before it
//
// Records: "state_version" int64; "options.<name>" one per Memory option (scalars, by the
// option's Python name, sorted by name); "keys"; "last_step" int64; "dim" int64 or null;
// "last_penalties" float64 [N]; "engine" bool; with an engine "engine.dim", "engine.last_step"
// (int64) and the arrays "engine.offsets" int64 [K+1], "engine.points" float64 [P, dim],
// "engine.steps", "engine.labels" int64 [P], "engine.mst_u", "engine.mst_v" int64 [E],
// "engine.mst_weight" float64 [E].
//
// Version 1 (a JSON header and SHA-256, written before this format) is read by the Python
// package only; this reader refuses it with a message saying how to convert it.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "medscore/error_memory.hpp"
#include "medscore/memory.hpp"

namespace medscore {

/// A checkpoint that cannot be read back exactly: corrupted, truncated, foreign, another
/// version, or holding what the C++ Memory does not support (keys that are not int64).
class CheckpointError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// A file that cannot be opened, read, written, synced or renamed.
class FileError : public std::runtime_error {
public:
    /// `what` says what failed on `path`; `error_number` is the errno it failed with.
    FileError(const std::string& what, std::string path, int error_number);
    const std::string& path() const noexcept { return path_; }
    int error_number() const noexcept { return error_number_; }

private:
    std::string path_;
    int error_number_;
};

/// A scalar of a checkpoint record (an option's value); `type` says which member holds it.
struct CheckpointValue {
    enum class Type : uint8_t { null = 0, boolean = 1, integer = 2, real = 3, text = 4 };
    Type type = Type::null;
    bool boolean = false;
    int64_t integer = 0;
    double real = 0.0;
    std::string text;  ///< UTF-8

    static CheckpointValue of_null() { return {}; }
    static CheckpointValue of_bool(bool v);
    static CheckpointValue of_int(int64_t v);
    static CheckpointValue of_real(double v);
    static CheckpointValue of_text(std::string v);
};

/// One option of the memory, by its name in medscore.Memory (e.g. "min_cluster_size").
struct CheckpointOption {
    std::string name;
    CheckpointValue value;
};

/// A user key: an integer of any size as decimal ASCII ("-12"), a UTF-8 string, or raw bytes.
struct CheckpointKey {
    enum class Tag : char { integer = 'i', text = 's', bytes = 'b' };
    Tag tag = Tag::integer;
    std::string bytes;
};

/// Everything a checkpoint file holds: the state of a medscore.Memory or medscore::Memory.
struct CheckpointState {
    int64_t state_version = 1;               ///< version of the Memory state (STATE_VERSION)
    std::vector<CheckpointOption> options;   ///< any order; written sorted by name
    std::vector<CheckpointKey> keys;         ///< user keys by dense id
    int64_t last_step = -1;
    int64_t dim = 0;                         ///< 0 (null in the file) until something is stored
    std::vector<double> last_penalties;      ///< [N] penalties of the last step
    bool has_engine = false;
    MemoryState engine;                      ///< the engine's arrays (when has_engine)
};

/// The file bytes of `state`. Throws std::invalid_argument when `state` cannot be written so
/// that it reads back (a bad key tag or integer text, invalid UTF-8, a duplicate option name,
/// engine arrays whose sizes disagree).
std::vector<uint8_t> serialize_checkpoint(const CheckpointState& state);

/// The state in `bytes` [size]; `where` names the source in messages. Checks the magic, the
/// version, the CRC-32, then every length and type before building anything; throws
/// CheckpointError otherwise. Structure only: whether the state is a consistent memory is
/// checked by whoever loads it (Memory::from_snapshot, medscore.Memory.load_state_dict).
CheckpointState deserialize_checkpoint(const uint8_t* bytes, size_t size, const std::string& where);

/// Writes `state` to `path` atomically: a temporary file in the same directory, fsync, rename
/// over `path`, fsync of the directory; a crash leaves the old file or the new one, and a
/// failure leaves no temporary file. Throws std::invalid_argument (see serialize_checkpoint)
/// or FileError.
void write_checkpoint(const std::string& path, const CheckpointState& state);

/// The bytes of the regular file at `path`: opened without blocking and read no further than
/// the size fstat gives (a FIFO or a device would otherwise block or never end). Throws
/// CheckpointError for anything but a regular file, FileError when it cannot be read.
std::vector<uint8_t> read_checkpoint_bytes(const std::string& path);

/// deserialize_checkpoint of read_checkpoint_bytes(path).
CheckpointState read_checkpoint(const std::string& path);

/// The checkpoint of a C++ Memory: its options by their Python names ("backend": "cpp"),
/// its int64 keys as decimal text.
CheckpointState checkpoint_of(MemorySnapshot snapshot);

/// The snapshot of a checkpoint for the C++ Memory. Throws CheckpointError when an option is
/// unknown or of the wrong type, or a key is not an integer in int64 range (the Python
/// package loads such files); `where` names the source in messages.
MemorySnapshot snapshot_of(CheckpointState state, const std::string& where);

/// Writes `memory` to `path` with write_checkpoint. Throws FileError.
void save_memory(const Memory& memory, const std::string& path);

/// The Memory saved at `path`, with its saved options; `n_threads` >= 0 replaces the saved
/// thread count (it is not part of the state). Throws FileError or CheckpointError.
Memory load_memory(const std::string& path, int n_threads = -1);

}  // namespace medscore
