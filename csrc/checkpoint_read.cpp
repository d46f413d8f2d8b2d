// Reading Memory checkpoints: every size, type and the digest is checked before a value is used.
#include <array>
#include <charconv>
#include <cstring>
#include <map>
#include <type_traits>

#include "checkpoint_format.hpp"
#include "json.hpp"
#include "medscore/checkpoint.hpp"
#include "sha256.hpp"

namespace medscore {
namespace {

/// Parses the JSON header of one file; every failure names the file and the field.
class HeaderReader {
public:
    explicit HeaderReader(std::string where) : where_(std::move(where)) {}

    [[noreturn]] void fail(const std::string& what) const { throw CheckpointError(where_ + ": " + what); }

    const JsonValue& member(const JsonValue& obj, const std::string& name) const {
        const JsonValue* v = obj.find(name);
        if (v == nullptr) fail("header has no '" + name + "'");
        return *v;
    }
    int64_t to_int(const JsonValue& v, const std::string& name) const {
        int64_t out = 0;
        const std::string& t = v.text;
        const bool is_number = v.kind == JsonValue::Kind::number || v.kind == JsonValue::Kind::string;
        const auto res = std::from_chars(t.data(), t.data() + t.size(), out);
        if (!is_number || t.empty() || res.ec != std::errc() || res.ptr != t.data() + t.size()) {
            fail("'" + name + "' must be a 64-bit integer, got '" + t + "'");
        }
        return out;
    }
    int64_t int_or_null(const JsonValue& v, const std::string& name) const {
        if (v.kind == JsonValue::Kind::null) return -1;
        const int64_t out = to_int(v, name);
        if (out < 0) fail("'" + name + "' must be >= 0 or null");
        return out;
    }
    double to_double(const JsonValue& v, const std::string& name) const {
        double out = 0.0;
        const std::string& t = v.text;
        const auto res = std::from_chars(t.data(), t.data() + t.size(), out);
        if (v.kind != JsonValue::Kind::number || res.ec != std::errc() || res.ptr != t.data() + t.size()) {
            fail("'" + name + "' must be a number");
        }
        return out;
    }
    bool to_bool(const JsonValue& v, const std::string& name) const {
        if (v.kind != JsonValue::Kind::boolean) fail("'" + name + "' must be true or false");
        return v.boolean;
    }
    /// Index of `v` (a string) in `choices`.
    int choice(const JsonValue& v, const std::string& name, std::initializer_list<const char*> choices) const {
        int i = 0;
        for (const char* c : choices) {
            if (v.kind == JsonValue::Kind::string && v.text == c) return i;
            ++i;
        }
        fail("option '" + name + "' has an unsupported value '" + v.text + "'");
    }

    MemoryOptions options(const JsonValue& obj) const {
        if (obj.kind != JsonValue::Kind::object) fail("'options' must be an object");
        MemoryOptions o;
        for (const auto& [name, v] : obj.members) {
            if (name == "keyed") o.keyed = to_bool(v, name);
            else if (name == "store") o.store = choice(v, name, {"wrong", "all"}) ? StoreRule::all : StoreRule::wrong;
            else if (name == "normalize") o.normalize = to_bool(v, name);
            else if (name == "min_cluster_size") o.min_cluster_size = to_int(v, name);
            else if (name == "min_samples") o.min_samples = to_int(v, name);
            else if (name == "cluster_selection_method") o.method = choice(v, name, {"eom", "leaf"}) ? SelectionMethod::leaf : SelectionMethod::eom;
            else if (name == "assign") o.assign = choice(v, name, {"exact", "paper"}) ? AssignRule::paper : AssignRule::exact;
            else if (name == "penalize_noise") o.penalize_noise = to_bool(v, name);
            else if (name == "alpha") o.alpha = to_double(v, name);
            else if (name == "beta") o.beta = to_double(v, name);
            else if (name == "max_age") o.max_age = int_or_null(v, name);
            else if (name == "capacity") o.capacity = int_or_null(v, name);
            else if (name == "nan_rows") o.nan_rows = choice(v, name, {"error", "skip"}) ? NanRows::skip : NanRows::error;
            else if (name == "backend") choice(v, name, {"cpp", "numba"});  // the C++ Memory has one backend
            else if (name == "n_threads") o.n_threads = static_cast<int>(to_int(v, name));
            else if (name == "target") o.target = static_cast<PenaltyTarget>(choice(v, name, {"wrong", "right", "both", "none"}));
            else fail("unknown option '" + name + "'");
        }
        try {
            check_options(o);
        } catch (const std::invalid_argument& e) {
            fail(e.what());
        }
        return o;
    }

    std::vector<int64_t> keys(const JsonValue& list) const {
        if (list.kind != JsonValue::Kind::array) fail("'keys' must be a list");
        std::vector<int64_t> out;
        for (const JsonValue& item : list.items) {
            if (item.kind != JsonValue::Kind::array || item.items.size() != 2) fail("a key must be [tag, value]");
            if (item.items[0].text != "i") {
                fail("key '" + item.items[1].text + "' is not an integer: the C/C++ Memory supports integer keys only");
            }
            out.push_back(to_int(item.items[1], "key"));
        }
        return out;
    }

private:
    std::string where_;
};

struct ArraySlot {
    std::string dtype;
    int64_t count = 0;  ///< elements
    const uint8_t* data = nullptr;
};

std::map<std::string, ArraySlot> array_table(const HeaderReader& r, const JsonValue& table, const uint8_t* data,
                                             size_t data_len) {
    if (table.kind != JsonValue::Kind::array) r.fail("'arrays' must be a list");
    std::map<std::string, ArraySlot> out;
    for (const JsonValue& e : table.items) {
        const std::string name = r.member(e, "name").text;
        ArraySlot slot;
        slot.dtype = r.member(e, "dtype").text;
        if (slot.dtype != "<f8" && slot.dtype != "<i8") r.fail("array " + name + " has unsupported dtype " + slot.dtype);
        const JsonValue& shape = r.member(e, "shape");
        if (shape.kind != JsonValue::Kind::array) r.fail("array " + name + " has a bad shape");
        slot.count = 1;
        for (const JsonValue& d : shape.items) {
            const int64_t extent = r.to_int(d, "shape");
            if (extent < 0 || (extent > 0 && slot.count > INT64_MAX / 8 / extent)) r.fail("array " + name + " has a bad shape");
            slot.count *= extent;
        }
        const int64_t offset = r.to_int(r.member(e, "offset"), "offset"), nbytes = r.to_int(r.member(e, "nbytes"), "nbytes");
        if (offset < 0 || nbytes != slot.count * 8 || static_cast<uint64_t>(offset) > data_len ||
            static_cast<uint64_t>(nbytes) > data_len - static_cast<uint64_t>(offset)) {
            r.fail("array " + name + " does not fit the data block");
        }
        slot.data = data + offset;
        out[name] = slot;
    }
    return out;
}

template <class T>
std::vector<T> take(const HeaderReader& r, const std::map<std::string, ArraySlot>& table, const std::string& name) {
    const auto it = table.find(name);
    if (it == table.end()) r.fail("array " + name + " is missing");
    if (it->second.dtype != (std::is_floating_point_v<T> ? "<f8" : "<i8")) r.fail("array " + name + " has the wrong dtype");
    std::vector<T> out(static_cast<size_t>(it->second.count));
    if (!out.empty()) std::memcpy(out.data(), it->second.data, out.size() * sizeof(T));
    return out;
}

MemoryState engine_state(const HeaderReader& r, const JsonValue& engine, const std::map<std::string, ArraySlot>& t) {
    MemoryState s;
    s.dim = r.to_int(r.member(engine, "dim"), "engine.dim");
    s.last_step = r.to_int(r.member(engine, "last_step"), "engine.last_step");
    s.offsets = take<int64_t>(r, t, "engine.offsets");
    s.points = take<double>(r, t, "engine.points");
    s.steps = take<int64_t>(r, t, "engine.steps");
    s.labels = take<int64_t>(r, t, "engine.labels");
    const auto u = take<int64_t>(r, t, "engine.mst_u"), v = take<int64_t>(r, t, "engine.mst_v");
    const auto w = take<double>(r, t, "engine.mst_weight");
    if (u.size() != v.size() || u.size() != w.size()) r.fail("engine.mst_u, mst_v and mst_weight differ in length");
    for (size_t i = 0; i < u.size(); ++i) s.mst.push_back(MstEdge{u[i], v[i], w[i]});
    return s;
}

}  // namespace

MemorySnapshot deserialize_snapshot(const uint8_t* bytes, size_t size, const std::string& where) {
    const HeaderReader r(where);
    if (bytes == nullptr || size < kPrefixLen + kDigestLen) r.fail("too short to be a medscore checkpoint");
    if (std::memcmp(bytes, kMagic, kMagicLen) != 0) r.fail("not a medscore Memory checkpoint (bad magic)");
    uint32_t version = 0;
    uint64_t header_len = 0;
    std::memcpy(&version, bytes + kMagicLen, 4);
    std::memcpy(&header_len, bytes + kMagicLen + 4, 8);
    if (version != kFileVersion) r.fail("checkpoint version " + std::to_string(version) + " is not supported (expected 1)");
    const size_t body_len = size - kDigestLen;
    const auto digest = sha256(bytes, body_len);
    if (std::memcmp(digest.data(), bytes + body_len, kDigestLen) != 0) {
        r.fail("checksum mismatch: the file is corrupted or truncated");
    }
    if (header_len > body_len - kPrefixLen) r.fail("header runs past the end of the file");
    JsonValue header;
    try {
        header = parse_json(std::string(reinterpret_cast<const char*>(bytes + kPrefixLen), header_len));
    } catch (const std::invalid_argument& e) {
        r.fail(std::string("bad header: ") + e.what());
    }
    if (header.kind != JsonValue::Kind::object || r.member(header, "format").text != "medscore.Memory") {
        r.fail("not a medscore.Memory state (missing or wrong 'format')");
    }
    if (r.to_int(r.member(header, "version"), "version") != kStateVersion) r.fail("Memory state version is not supported");
    const size_t data_start = kPrefixLen + header_len;
    const auto table = array_table(r, r.member(header, "arrays"), bytes + data_start, body_len - data_start);
    MemorySnapshot s;
    s.options = r.options(r.member(header, "options"));
    s.keys = r.keys(r.member(header, "keys"));
    s.last_step = r.to_int(r.member(header, "last_step"), "last_step");
    const JsonValue& dim = r.member(header, "dim");
    s.dim = dim.kind == JsonValue::Kind::null ? 0 : r.to_int(dim, "dim");
    s.last_penalties = take<double>(r, table, "last_penalties");
    const JsonValue& engine = r.member(header, "engine");
    s.has_engine = engine.kind != JsonValue::Kind::null;
    if (s.has_engine) s.engine = engine_state(r, engine, table);
    return s;
}

}  // namespace medscore
