// What the checkpoint writer and reader share: the layout's constants, the record types, the
// checksum and the checks both sides apply to names and keys. Internal header.
#pragma once
#include <zlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "medscore checkpoints are little-endian and copied as they are; big-endian hosts are not supported"
#endif

namespace medscore {
namespace checkpoint_format {

inline constexpr char kMagic[] = "MEDSCORE-MEMORY\n";  ///< 16 bytes without the terminator
inline constexpr size_t kMagicLen = 16;
inline constexpr uint32_t kVersion = 2;
inline constexpr uint32_t kVersionJson = 1;             ///< JSON + SHA-256; read by Python only
inline constexpr size_t kVersionEnd = kMagicLen + 4;    ///< magic, uint32 version
inline constexpr size_t kPrefixLen = kVersionEnd + 8 + 8;  ///< then uint64 header_len, data_len
inline constexpr size_t kCrcLen = 4;

/// Type byte of a header record.
enum class RecordType : uint8_t { null = 0, boolean = 1, integer = 2, real = 3, text = 4, keys = 5, array = 6 };
/// Element type byte of an array record.
enum class Dtype : uint8_t { float64 = 1, int64 = 2 };
inline constexpr uint8_t kMaxNdim = 8;

/// CRC-32 (zlib's, the one of gzip, PNG and Python's zlib.crc32) of `size` bytes. zlib takes
/// lengths as 32-bit uInt, so a buffer over 4 GiB is fed in chunks.
inline uint32_t crc32_of(const uint8_t* data, size_t size) {
    constexpr size_t kChunk = size_t(1) << 30;
    uLong crc = ::crc32(0L, Z_NULL, 0);
    for (size_t done = 0; done < size;) {
        const size_t n = std::min(kChunk, size - done);
        crc = ::crc32(crc, data + done, static_cast<uInt>(n));
        done += n;
    }
    return static_cast<uint32_t>(crc);
}

/// True if `s` is well-formed UTF-8 as Python's str.decode("utf-8") accepts it: shortest
/// encodings only, no surrogates, nothing above U+10FFFF.
bool is_utf8(const std::string& s);

/// True if `s` is an integer as Python's str(int) writes it: "0", or an optional '-' then
/// digits without a leading zero ("-0" and "+1" are not).
bool is_decimal_integer(const std::string& s);

}  // namespace checkpoint_format
}  // namespace medscore
