// Writing checkpoint files (format version 2, medscore/checkpoint.hpp): typed header records,
// raw arrays, CRC-32. Everything the reader refuses is refused here first, so a written file
// always reads back.
#include "medscore/checkpoint.hpp"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <utility>

#include "checkpoint_format.hpp"

namespace medscore {

namespace checkpoint_format {

bool is_utf8(const std::string& s) {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const size_t n = s.size();
    for (size_t i = 0; i < n;) {
        const unsigned char c = p[i];
        size_t len = 0;
        uint32_t code = 0, least = 0;
        if (c < 0x80) { ++i; continue; }
        if ((c & 0xE0) == 0xC0) { len = 2; code = c & 0x1F; least = 0x80; }
        else if ((c & 0xF0) == 0xE0) { len = 3; code = c & 0x0F; least = 0x800; }
        else if ((c & 0xF8) == 0xF0) { len = 4; code = c & 0x07; least = 0x10000; }
        else return false;
        if (n - i < len) return false;
        for (size_t k = 1; k < len; ++k) {
            if ((p[i + k] & 0xC0) != 0x80) return false;
            code = (code << 6) | (p[i + k] & 0x3F);
        }
        // Overlong forms, UTF-16 surrogates and code points past Unicode are not UTF-8.
        if (code < least || (code >= 0xD800 && code <= 0xDFFF) || code > 0x10FFFF) return false;
        i += len;
    }
    return true;
}

bool is_decimal_integer(const std::string& s) {
    const size_t start = !s.empty() && s[0] == '-' ? 1 : 0;
    if (s.size() == start) return false;
    if (!std::all_of(s.begin() + static_cast<long>(start), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        return false;
    }
    if (s[start] == '0') return s == "0";  // no leading zero, no "-0"
    return true;
}

}  // namespace checkpoint_format

namespace cf = checkpoint_format;

FileError::FileError(const std::string& what, std::string path, int error_number)
    : std::runtime_error(what + " '" + path + "': " + std::strerror(error_number)),
      path_(std::move(path)),
      error_number_(error_number) {}

CheckpointValue CheckpointValue::of_bool(bool v) {
    CheckpointValue out;
    out.type = Type::boolean;
    out.boolean = v;
    return out;
}
CheckpointValue CheckpointValue::of_int(int64_t v) {
    CheckpointValue out;
    out.type = Type::integer;
    out.integer = v;
    return out;
}
CheckpointValue CheckpointValue::of_real(double v) {
    CheckpointValue out;
    out.type = Type::real;
    out.real = v;
    return out;
}
CheckpointValue CheckpointValue::of_text(std::string v) {
    CheckpointValue out;
    out.type = Type::text;
    out.text = std::move(v);
    return out;
}

namespace {

[[noreturn]] void unwritable(const std::string& what) {
    throw std::invalid_argument("cannot write the checkpoint: " + what);
}

/// An array of the data block: its record and where its bytes are.
struct ArraySpec {
    std::string name;
    cf::Dtype dtype;
    std::vector<uint64_t> shape;
    const void* data;
    uint64_t nbytes;
};

template <class T>
ArraySpec array_spec(std::string name, const std::vector<T>& v, std::vector<uint64_t> shape) {
    static_assert(sizeof(T) == 8, "checkpoint arrays hold 8-byte elements");
    const cf::Dtype dtype = std::is_floating_point_v<T> ? cf::Dtype::float64 : cf::Dtype::int64;
    return {std::move(name), dtype, std::move(shape), v.data(), uint64_t(v.size()) * 8};
}

/// Appends little-endian values and records to a byte buffer.
class HeaderWriter {
public:
    template <class T>
    void put(T value) {
        const auto* p = reinterpret_cast<const uint8_t*>(&value);
        bytes_.insert(bytes_.end(), p, p + sizeof(T));
    }
    void put_string(const std::string& s) {
        put(uint64_t(s.size()));
        bytes_.insert(bytes_.end(), s.begin(), s.end());
    }
    void record(const std::string& name, cf::RecordType type) {
        if (name.size() > UINT16_MAX || !cf::is_utf8(name)) unwritable("the record name '" + name + "' is not short UTF-8");
        ++count_;
        put(uint16_t(name.size()));
        bytes_.insert(bytes_.end(), name.begin(), name.end());
        put(static_cast<uint8_t>(type));
    }
    void integer(const std::string& name, int64_t v) { record(name, cf::RecordType::integer); put(v); }
    void boolean(const std::string& name, bool v) { record(name, cf::RecordType::boolean); put(uint8_t(v)); }
    void value(const std::string& name, const CheckpointValue& v);
    void keys(const std::vector<CheckpointKey>& keys);
    void array(const ArraySpec& a, uint64_t offset);

    /// The header: the record count, then the records.
    std::vector<uint8_t> finish() const {
        std::vector<uint8_t> out(4);
        std::memcpy(out.data(), &count_, 4);
        out.insert(out.end(), bytes_.begin(), bytes_.end());
        return out;
    }

private:
    std::vector<uint8_t> bytes_;
    uint32_t count_ = 0;
};

void HeaderWriter::value(const std::string& name, const CheckpointValue& v) {
    using T = CheckpointValue::Type;
    switch (v.type) {
        case T::null: record(name, cf::RecordType::null); return;
        case T::boolean: boolean(name, v.boolean); return;
        case T::integer: integer(name, v.integer); return;
        case T::real: record(name, cf::RecordType::real); put(v.real); return;
        case T::text:
            if (!cf::is_utf8(v.text)) unwritable("the value of " + name + " is not UTF-8");
            record(name, cf::RecordType::text);
            put_string(v.text);
            return;
    }
    unwritable("the value of " + name + " has an unknown type");
}

void HeaderWriter::keys(const std::vector<CheckpointKey>& keys) {
    record("keys", cf::RecordType::keys);
    put(uint64_t(keys.size()));
    for (const CheckpointKey& k : keys) {
        const bool ok = (k.tag == CheckpointKey::Tag::integer && cf::is_decimal_integer(k.bytes)) ||
                        (k.tag == CheckpointKey::Tag::text && cf::is_utf8(k.bytes)) ||
                        k.tag == CheckpointKey::Tag::bytes;
        if (!ok) unwritable("a key is not a decimal integer, UTF-8 text or bytes with its tag");
        put(static_cast<uint8_t>(k.tag));
        put_string(k.bytes);
    }
}

void HeaderWriter::array(const ArraySpec& a, uint64_t offset) {
    record(a.name, cf::RecordType::array);
    put(static_cast<uint8_t>(a.dtype));
    put(uint8_t(a.shape.size()));
    for (uint64_t extent : a.shape) put(extent);
    put(offset);
    put(a.nbytes);
}

/// The options sorted by name (the file does not depend on the order a caller kept them in).
std::vector<const CheckpointOption*> sorted_options(const std::vector<CheckpointOption>& options) {
    std::vector<const CheckpointOption*> out;
    for (const CheckpointOption& o : options) out.push_back(&o);
    std::sort(out.begin(), out.end(), [](const auto* a, const auto* b) { return a->name < b->name; });
    for (size_t i = 0; i < out.size(); ++i) {
        if (out[i]->name.empty()) unwritable("an option has no name");
        if (i > 0 && out[i]->name == out[i - 1]->name) unwritable("option " + out[i]->name + " is given twice");
    }
    return out;
}

/// The MST as the three columns the file stores.
struct MstColumns {
    std::vector<int64_t> u, v;
    std::vector<double> weight;
};

/// The engine's arrays in file order; they point into `e` and `mst`, which `e`'s edges fill.
std::vector<ArraySpec> engine_arrays(const MemoryState& e, MstColumns& mst) {
    const uint64_t n_points = e.steps.size(), n_edges = e.mst.size();
    if (e.dim < 0 || e.points.size() != n_points * uint64_t(e.dim) || e.labels.size() != n_points) {
        unwritable("the engine's points, steps and labels disagree in size");
    }
    for (const MstEdge& edge : e.mst) {
        mst.u.push_back(edge.u);
        mst.v.push_back(edge.v);
        mst.weight.push_back(edge.weight);
    }
    return {array_spec("engine.offsets", e.offsets, {e.offsets.size()}),
            array_spec("engine.points", e.points, {n_points, uint64_t(e.dim)}),
            array_spec("engine.steps", e.steps, {n_points}),
            array_spec("engine.labels", e.labels, {n_points}),
            array_spec("engine.mst_u", mst.u, {n_edges}),
            array_spec("engine.mst_v", mst.v, {n_edges}),
            array_spec("engine.mst_weight", mst.weight, {n_edges})};
}

}  // namespace

std::vector<uint8_t> serialize_checkpoint(const CheckpointState& s) {
    if (s.dim < 0) unwritable("dim must be >= 0");
    HeaderWriter h;
    h.integer("state_version", s.state_version);
    for (const CheckpointOption* o : sorted_options(s.options)) h.value("options." + o->name, o->value);
    h.keys(s.keys);
    h.integer("last_step", s.last_step);
    h.value("dim", s.dim > 0 ? CheckpointValue::of_int(s.dim) : CheckpointValue::of_null());
    std::vector<ArraySpec> arrays{array_spec("last_penalties", s.last_penalties, {s.last_penalties.size()})};
    h.boolean("engine", s.has_engine);
    MstColumns mst;
    if (s.has_engine) {
        h.integer("engine.dim", s.engine.dim);
        h.integer("engine.last_step", s.engine.last_step);
        for (ArraySpec& a : engine_arrays(s.engine, mst)) arrays.push_back(std::move(a));
    }
    uint64_t data_len = 0;
    for (const ArraySpec& a : arrays) {
        h.array(a, data_len);
        data_len += a.nbytes;
    }
    const std::vector<uint8_t> header = h.finish();
    uint8_t prefix[cf::kPrefixLen];
    const uint32_t version = cf::kVersion;
    const uint64_t lengths[2] = {header.size(), data_len};
    std::memcpy(prefix, cf::kMagic, cf::kMagicLen);
    std::memcpy(prefix + cf::kMagicLen, &version, 4);
    std::memcpy(prefix + cf::kVersionEnd, lengths, 16);
    std::vector<uint8_t> out;
    out.reserve(cf::kPrefixLen + header.size() + data_len + cf::kCrcLen);
    out.insert(out.end(), prefix, prefix + cf::kPrefixLen);
    out.insert(out.end(), header.begin(), header.end());
    for (const ArraySpec& a : arrays) {
        const auto* p = static_cast<const uint8_t*>(a.data);
        if (a.nbytes > 0) out.insert(out.end(), p, p + a.nbytes);
    }
    const uint32_t crc = cf::crc32_of(out.data(), out.size());
    uint8_t crc_bytes[cf::kCrcLen];
    std::memcpy(crc_bytes, &crc, cf::kCrcLen);
    out.insert(out.end(), crc_bytes, crc_bytes + cf::kCrcLen);
    return out;
}

}  // namespace medscore
