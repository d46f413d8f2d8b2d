// Reading checkpoint files (format version 2, medscore/checkpoint.hpp): the prefix and the
// CRC-32 first, then every record's length and type, then the arrays, before a value is used.
#include <cstring>
#include <map>
#include <type_traits>
#include <utility>

#include "checkpoint_format.hpp"
#include "medscore/checkpoint.hpp"

namespace medscore {
namespace {

namespace cf = checkpoint_format;

struct ArrayRecord {
    cf::Dtype dtype = cf::Dtype::float64;
    std::vector<uint64_t> shape;
    uint64_t offset = 0;
    uint64_t nbytes = 0;
};

struct Record {
    cf::RecordType type = cf::RecordType::null;
    CheckpointValue value;             ///< scalars
    std::vector<CheckpointKey> keys;   ///< RecordType::keys
    ArrayRecord array;                 ///< RecordType::array
};

/// Reads the header's little-endian fields; never past its end.
class Cursor {
public:
    Cursor(const uint8_t* data, size_t size, const std::string& where) : data_(data), size_(size), where_(where) {}

    [[noreturn]] void fail(const std::string& what) const {
        throw CheckpointError(where_ + ": malformed header: " + what);
    }
    template <class T>
    T get() {
        need(sizeof(T));
        T value;
        std::memcpy(&value, data_ + pos_, sizeof(T));
        pos_ += sizeof(T);
        return value;
    }
    std::string get_bytes(uint64_t n) {
        need(n);
        std::string out(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(n));
        pos_ += static_cast<size_t>(n);
        return out;
    }
    size_t left() const { return size_ - pos_; }

private:
    void need(uint64_t n) const {
        if (n > left()) fail("a record runs past the end of the header");
    }
    const uint8_t* data_;
    size_t size_;
    size_t pos_ = 0;
    const std::string& where_;
};

std::vector<CheckpointKey> read_keys(Cursor& c) {
    const uint64_t count = c.get<uint64_t>();
    if (count > c.left() / 9) c.fail("more keys than the header can hold");  // each takes >= 9 bytes
    std::vector<CheckpointKey> keys(static_cast<size_t>(count));
    for (CheckpointKey& k : keys) {
        const char tag = static_cast<char>(c.get<uint8_t>());
        k.bytes = c.get_bytes(c.get<uint64_t>());
        if (tag != 'i' && tag != 's' && tag != 'b') c.fail("a key has the unknown tag " + std::to_string(int(tag)));
        if (tag == 'i' && !cf::is_decimal_integer(k.bytes)) c.fail("an integer key is not decimal text");
        if (tag == 's' && !cf::is_utf8(k.bytes)) c.fail("a string key is not UTF-8");
        k.tag = static_cast<CheckpointKey::Tag>(tag);
    }
    return keys;
}

/// An array record; `data_used` (bytes of the data block taken so far) must be its offset,
/// as the writer lays the arrays back to back in record order.
ArrayRecord read_array(Cursor& c, const std::string& name, uint64_t& data_used) {
    ArrayRecord a;
    const uint8_t dtype = c.get<uint8_t>(), ndim = c.get<uint8_t>();
    if (dtype != uint8_t(cf::Dtype::float64) && dtype != uint8_t(cf::Dtype::int64)) c.fail(name + " has an unknown dtype");
    if (ndim > cf::kMaxNdim) c.fail(name + " has " + std::to_string(ndim) + " dimensions");
    a.dtype = static_cast<cf::Dtype>(dtype);
    uint64_t elements = 1;
    for (uint8_t d = 0; d < ndim; ++d) {
        a.shape.push_back(c.get<uint64_t>());
        // Products are kept below 2^60 elements, so nbytes = 8 * elements cannot overflow.
        if (a.shape.back() != 0 && elements > (uint64_t(1) << 60) / a.shape.back()) c.fail(name + " is too large");
        elements *= a.shape.back();
    }
    a.offset = c.get<uint64_t>();
    a.nbytes = c.get<uint64_t>();
    if (a.nbytes != elements * 8 || a.offset != data_used) c.fail(name + " does not match its shape or place");
    data_used += a.nbytes;
    return a;
}

Record read_record(Cursor& c, cf::RecordType type, const std::string& name, uint64_t& data_used) {
    Record r;
    r.type = type;
    switch (type) {
        case cf::RecordType::null: break;
        case cf::RecordType::boolean: {
            const uint8_t b = c.get<uint8_t>();
            if (b > 1) c.fail(name + " is a bool other than 0 or 1");
            r.value = CheckpointValue::of_bool(b == 1);
            break;
        }
        case cf::RecordType::integer: r.value = CheckpointValue::of_int(c.get<int64_t>()); break;
        case cf::RecordType::real: r.value = CheckpointValue::of_real(c.get<double>()); break;
        case cf::RecordType::text:
            r.value = CheckpointValue::of_text(c.get_bytes(c.get<uint64_t>()));
            if (!cf::is_utf8(r.value.text)) c.fail(name + " is not UTF-8");
            break;
        case cf::RecordType::keys: r.keys = read_keys(c); break;
        case cf::RecordType::array: r.array = read_array(c, name, data_used); break;
        default: c.fail(name + " has the unknown type " + std::to_string(int(type)));
    }
    return r;
}

/// The records of the header by name; every byte of the header and the data block is accounted for.
std::map<std::string, Record> read_records(Cursor& c, uint64_t data_len) {
    const uint32_t count = c.get<uint32_t>();
    if (count > c.left() / 3) c.fail("more records than the header can hold");  // each takes >= 3 bytes
    std::map<std::string, Record> records;
    uint64_t data_used = 0;
    for (uint32_t i = 0; i < count; ++i) {
        const std::string name = c.get_bytes(c.get<uint16_t>());
        if (name.empty() || !cf::is_utf8(name)) c.fail("a record name is empty or not UTF-8");
        const auto type = static_cast<cf::RecordType>(c.get<uint8_t>());
        if (records.count(name) != 0) c.fail("the record " + name + " is written twice");
        records.emplace(name, read_record(c, type, name, data_used));
    }
    if (c.left() != 0) c.fail("bytes after the last record");
    if (data_used != data_len) c.fail("the arrays do not fill the data block");
    return records;
}

/// Takes the records of a state by name and type; what is left over is refused.
class RecordTable {
public:
    RecordTable(std::map<std::string, Record> records, const uint8_t* data, const std::string& where)
        : records_(std::move(records)), data_(data), where_(where) {}

    [[noreturn]] void fail(const std::string& what) const { throw CheckpointError(where_ + ": malformed header: " + what); }

    Record take(const std::string& name, std::initializer_list<cf::RecordType> types) {
        const auto it = records_.find(name);
        if (it == records_.end()) fail("the record " + name + " is missing");
        Record r = std::move(it->second);
        records_.erase(it);
        for (cf::RecordType t : types) {
            if (r.type == t) return r;
        }
        fail("the record " + name + " has the wrong type");
    }
    int64_t integer(const std::string& name) { return take(name, {cf::RecordType::integer}).value.integer; }

    /// The array `name` of `ndim` dimensions, copied out of the data block.
    template <class T>
    std::vector<T> array(const std::string& name, size_t ndim, std::vector<uint64_t>* shape = nullptr) {
        const ArrayRecord a = take(name, {cf::RecordType::array}).array;
        const cf::Dtype want = std::is_floating_point_v<T> ? cf::Dtype::float64 : cf::Dtype::int64;
        if (a.dtype != want || a.shape.size() != ndim) fail(name + " has the wrong dtype or number of dimensions");
        std::vector<T> out(static_cast<size_t>(a.nbytes / 8));
        if (!out.empty()) std::memcpy(out.data(), data_ + a.offset, static_cast<size_t>(a.nbytes));
        if (shape != nullptr) *shape = a.shape;
        return out;
    }
    /// The records named "<prefix><name>" as options named <name>, in file order.
    std::vector<CheckpointOption> options(const std::string& prefix);
    void check_all_taken() const {
        if (!records_.empty()) fail("unknown record " + records_.begin()->first);
    }

private:
    std::map<std::string, Record> records_;
    const uint8_t* data_;
    const std::string& where_;
};

std::vector<CheckpointOption> RecordTable::options(const std::string& prefix) {
    std::vector<CheckpointOption> out;
    for (auto it = records_.begin(); it != records_.end();) {
        if (it->first.compare(0, prefix.size(), prefix) != 0) { ++it; continue; }
        const cf::RecordType t = it->second.type;
        if (t == cf::RecordType::keys || t == cf::RecordType::array) fail("option " + it->first + " is not a scalar");
        if (it->first.size() == prefix.size()) fail("an option has no name");
        out.push_back({it->first.substr(prefix.size()), std::move(it->second.value)});
        it = records_.erase(it);
    }
    return out;
}

MemoryState read_engine(RecordTable& t) {
    MemoryState e;
    e.dim = t.integer("engine.dim");
    e.last_step = t.integer("engine.last_step");
    std::vector<uint64_t> shape;
    e.offsets = t.array<int64_t>("engine.offsets", 1);
    e.points = t.array<double>("engine.points", 2, &shape);
    e.steps = t.array<int64_t>("engine.steps", 1);
    e.labels = t.array<int64_t>("engine.labels", 1);
    if (e.dim < 0 || shape[1] != uint64_t(e.dim) || e.steps.size() != shape[0] || e.labels.size() != shape[0]) {
        t.fail("the engine's points, steps and labels disagree with each other or with engine.dim");
    }
    const auto u = t.array<int64_t>("engine.mst_u", 1), v = t.array<int64_t>("engine.mst_v", 1);
    const auto w = t.array<double>("engine.mst_weight", 1);
    if (u.size() != v.size() || u.size() != w.size()) t.fail("engine.mst_u, mst_v and mst_weight differ in length");
    for (size_t i = 0; i < u.size(); ++i) e.mst.push_back(MstEdge{u[i], v[i], w[i]});
    return e;
}

CheckpointState read_state(RecordTable& t) {
    CheckpointState s;
    s.state_version = t.integer("state_version");
    s.options = t.options("options.");
    s.keys = std::move(t.take("keys", {cf::RecordType::keys}).keys);
    s.last_step = t.integer("last_step");
    const Record dim = t.take("dim", {cf::RecordType::integer, cf::RecordType::null});
    s.dim = dim.type == cf::RecordType::null ? 0 : dim.value.integer;
    if (dim.type == cf::RecordType::integer && s.dim <= 0) t.fail("dim must be > 0 or null");
    s.last_penalties = t.array<double>("last_penalties", 1);
    s.has_engine = t.take("engine", {cf::RecordType::boolean}).value.boolean;
    if (s.has_engine) s.engine = read_engine(t);
    t.check_all_taken();
    return s;
}

/// Checks the prefix and the checksum; returns the header and data lengths.
std::pair<uint64_t, uint64_t> check_frame(const uint8_t* bytes, size_t size, const std::string& where) {
    auto fail = [&](const std::string& what) { throw CheckpointError(where + ": " + what); };
    if (bytes == nullptr || size < cf::kVersionEnd) fail("too short to be a medscore checkpoint");
    if (std::memcmp(bytes, cf::kMagic, cf::kMagicLen) != 0) fail("not a medscore Memory checkpoint (bad magic)");
    uint32_t version = 0;
    std::memcpy(&version, bytes + cf::kMagicLen, 4);
    if (version == cf::kVersionJson) {
        fail("checkpoint version 1 (JSON header) is read by the Python package only: load it there with "
             "medscore.Memory.load and save it again to write version 2");
    }
    if (version != cf::kVersion) fail("checkpoint version " + std::to_string(version) + " is not supported (expected 2)");
    if (size < cf::kPrefixLen + cf::kCrcLen) fail("too short to be a medscore checkpoint");
    uint32_t crc = 0;
    std::memcpy(&crc, bytes + size - cf::kCrcLen, 4);
    if (cf::crc32_of(bytes, size - cf::kCrcLen) != crc) fail("checksum mismatch: the file is corrupted or truncated");
    uint64_t lengths[2] = {0, 0};
    std::memcpy(lengths, bytes + cf::kVersionEnd, 16);
    const uint64_t room = size - cf::kPrefixLen - cf::kCrcLen;
    if (lengths[0] > room || lengths[1] != room - lengths[0]) fail("header and data lengths do not match the file size");
    return {lengths[0], lengths[1]};
}

}  // namespace

CheckpointState deserialize_checkpoint(const uint8_t* bytes, size_t size, const std::string& where) {
    const auto [header_len, data_len] = check_frame(bytes, size, where);
    Cursor cursor(bytes + cf::kPrefixLen, static_cast<size_t>(header_len), where);
    RecordTable table(read_records(cursor, data_len), bytes + cf::kPrefixLen + header_len, where);
    return read_state(table);
}

}  // namespace medscore
