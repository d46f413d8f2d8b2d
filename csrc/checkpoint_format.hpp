// Constants of the checkpoint format shared by its writer and reader. Internal header.
#pragma once
#include <cstddef>
#include <cstdint>

namespace medscore {

inline constexpr char kMagic[] = "MEDSCORE-MEMORY\n";  ///< 16 bytes without the terminator
inline constexpr size_t kMagicLen = 16;
inline constexpr size_t kPrefixLen = 16 + 4 + 8;       ///< magic, uint32 version, uint64 header_len
inline constexpr size_t kDigestLen = 32;               ///< SHA-256
inline constexpr uint32_t kFileVersion = 1;            ///< FILE_VERSION of medscore/_checkpoint.py
inline constexpr int64_t kStateVersion = 1;            ///< STATE_VERSION of medscore/memory.py

}  // namespace medscore
