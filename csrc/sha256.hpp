// SHA-256 (FIPS 180-4) of a byte string: the checksum of checkpoint files. Internal header.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>

namespace medscore {

/// The 32-byte SHA-256 digest of `data` [size].
std::array<uint8_t, 32> sha256(const uint8_t* data, size_t size);

}  // namespace medscore
