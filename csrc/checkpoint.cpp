// Memory checkpoints in medscore/_checkpoint.py's format: JSON header, raw arrays, SHA-256.
#include "medscore/checkpoint.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <type_traits>

#include "checkpoint_format.hpp"
#include "json.hpp"
#include "sha256.hpp"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "medscore checkpoints store little-endian arrays; big-endian hosts are not supported"
#endif

namespace medscore {
namespace {


/// One array of the data block: its header entry and where its bytes are.
struct ArrayEntry {
    std::string name;
    std::string dtype;  ///< "<f8" or "<i8"
    std::vector<int64_t> shape;
    const void* data;
    size_t nbytes;
};

template <class T>
ArrayEntry entry(const std::string& name, const std::vector<T>& v, std::vector<int64_t> shape) {
    return {name, std::is_floating_point_v<T> ? "<f8" : "<i8", std::move(shape), v.data(), v.size() * sizeof(T)};
}

std::string json_int_or_null(int64_t value) { return value < 0 ? "null" : std::to_string(value); }
std::string json_bool(bool value) { return value ? "true" : "false"; }

const char* target_name(PenaltyTarget t) {
    switch (t) {
        case PenaltyTarget::right: return "right";
        case PenaltyTarget::both: return "both";
        case PenaltyTarget::none: return "none";
        default: return "wrong";
    }
}

// Members in sorted order, as Python's json.dumps(sort_keys=True) writes them.
std::string options_json(const MemoryOptions& o) {
    return "{\"alpha\": " + format_python_float(o.alpha) +
           ", \"assign\": " + (o.assign == AssignRule::paper ? "\"paper\"" : "\"exact\"") +
           ", \"backend\": \"cpp\", \"beta\": " + format_python_float(o.beta) +
           ", \"capacity\": " + json_int_or_null(o.capacity) +
           ", \"cluster_selection_method\": " + (o.method == SelectionMethod::leaf ? "\"leaf\"" : "\"eom\"") +
           ", \"keyed\": " + json_bool(o.keyed) + ", \"max_age\": " + json_int_or_null(o.max_age) +
           ", \"min_cluster_size\": " + std::to_string(o.min_cluster_size) +
           ", \"min_samples\": " + std::to_string(o.min_samples) + ", \"n_threads\": " + std::to_string(o.n_threads) +
           ", \"nan_rows\": " + (o.nan_rows == NanRows::skip ? "\"skip\"" : "\"error\"") +
           ", \"normalize\": " + json_bool(o.normalize) + ", \"penalize_noise\": " + json_bool(o.penalize_noise) +
           ", \"store\": " + (o.store == StoreRule::all ? "\"all\"" : "\"wrong\"") +
           ", \"target\": \"" + target_name(o.target) + "\"}";
}

std::string header_json(const MemorySnapshot& s, const std::vector<ArrayEntry>& arrays) {
    std::string h = "{\"arrays\": [";
    size_t offset = 0;
    for (size_t i = 0; i < arrays.size(); ++i) {
        const ArrayEntry& a = arrays[i];
        std::string shape;
        for (size_t d = 0; d < a.shape.size(); ++d) shape += (d ? ", " : "") + std::to_string(a.shape[d]);
        h += (i ? ", " : "") + std::string("{\"dtype\": \"") + a.dtype + "\", \"name\": " + quote_json(a.name) +
             ", \"nbytes\": " + std::to_string(a.nbytes) + ", \"offset\": " + std::to_string(offset) +
             ", \"shape\": [" + shape + "]}";
        offset += a.nbytes;
    }
    h += "], \"dim\": " + (s.dim > 0 ? std::to_string(s.dim) : std::string("null"));
    h += ", \"engine\": " + (s.has_engine ? "{\"dim\": " + std::to_string(s.engine.dim) + ", \"last_step\": " +
                                                std::to_string(s.engine.last_step) + "}"
                                          : std::string("null"));
    h += ", \"format\": \"medscore.Memory\", \"keys\": [";
    for (size_t i = 0; i < s.keys.size(); ++i) h += (i ? ", " : "") + std::string("[\"i\", \"") + std::to_string(s.keys[i]) + "\"]";
    h += "], \"last_step\": " + std::to_string(s.last_step) + ", \"options\": " + options_json(s.options) +
         ", \"version\": " + std::to_string(kStateVersion) + "}";
    return h;
}

template <class T>
void append_bytes(std::vector<uint8_t>& out, const T& value) {
    const auto* p = reinterpret_cast<const uint8_t*>(&value);
    out.insert(out.end(), p, p + sizeof(T));
}

[[noreturn]] void file_error(const std::string& what, const std::string& path) {
    throw FileError(what + " '" + path + "': " + std::strerror(errno));
}

void write_all(int fd, const std::vector<uint8_t>& bytes, const std::string& path) {
    size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) file_error("cannot write", path);
        done += static_cast<size_t>(n);
    }
}

/// The bytes of the regular file at `path`. Opened without blocking (a FIFO or a device would
/// otherwise wait for a writer or never end) and read up to the size fstat gives, no further.
std::vector<uint8_t> read_file(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) file_error("cannot open", path);
    struct stat info {};
    if (::fstat(fd, &info) != 0) {
        const int saved = errno;
        ::close(fd);
        errno = saved;
        file_error("cannot stat", path);
    }
    if (!S_ISREG(info.st_mode)) {
        ::close(fd);
        throw CheckpointError("'" + path + "' is not a regular file (a checkpoint is read only from one)");
    }
    std::vector<uint8_t> bytes(static_cast<size_t>(info.st_size));
    size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            const int saved = n < 0 ? errno : EIO;
            ::close(fd);
            errno = saved;
            file_error(n < 0 ? "cannot read" : "file shrank while read", path);
        }
        done += static_cast<size_t>(n);
    }
    ::close(fd);
    return bytes;
}

}  // namespace

std::vector<uint8_t> serialize_snapshot(const MemorySnapshot& s) {
    const int64_t n_points = static_cast<int64_t>(s.engine.steps.size());
    std::vector<int64_t> mst_u, mst_v;
    std::vector<double> mst_weight;
    for (const MstEdge& e : s.engine.mst) { mst_u.push_back(e.u); mst_v.push_back(e.v); mst_weight.push_back(e.weight); }
    std::vector<ArrayEntry> arrays{entry("last_penalties", s.last_penalties, {int64_t(s.last_penalties.size())})};
    if (s.has_engine) {
        const int64_t n_edges = static_cast<int64_t>(mst_u.size());
        arrays.push_back(entry("engine.offsets", s.engine.offsets, {int64_t(s.engine.offsets.size())}));
        arrays.push_back(entry("engine.points", s.engine.points, {n_points, s.engine.dim}));
        arrays.push_back(entry("engine.steps", s.engine.steps, {n_points}));
        arrays.push_back(entry("engine.labels", s.engine.labels, {n_points}));
        arrays.push_back(entry("engine.mst_u", mst_u, {n_edges}));
        arrays.push_back(entry("engine.mst_v", mst_v, {n_edges}));
        arrays.push_back(entry("engine.mst_weight", mst_weight, {n_edges}));
    }
    const std::string header = header_json(s, arrays);
    std::vector<uint8_t> out(kMagic, kMagic + kMagicLen);
    append_bytes(out, kFileVersion);
    append_bytes(out, static_cast<uint64_t>(header.size()));
    out.insert(out.end(), header.begin(), header.end());
    for (const ArrayEntry& a : arrays) {
        const auto* p = static_cast<const uint8_t*>(a.data);
        out.insert(out.end(), p, p + a.nbytes);
    }
    const auto digest = sha256(out.data(), out.size());
    out.insert(out.end(), digest.begin(), digest.end());
    return out;
}

void save_memory(const Memory& memory, const std::string& path) {
    const std::vector<uint8_t> bytes = serialize_snapshot(memory.snapshot());
    const size_t slash = path.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
    const std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
    std::string tmp = dir + "/." + name + ".XXXXXX";
    const int fd = ::mkstemp(&tmp[0]);
    if (fd < 0) file_error("cannot create a temporary file next to", path);
    try {
        write_all(fd, bytes, tmp);
        if (::fsync(fd) != 0) file_error("cannot fsync", tmp);
    } catch (...) {
        ::close(fd);
        ::unlink(tmp.c_str());
        throw;
    }
    if (::close(fd) != 0) { ::unlink(tmp.c_str()); file_error("cannot close", tmp); }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) { ::unlink(tmp.c_str()); file_error("cannot rename onto", path); }
    const int dir_fd = ::open(dir.c_str(), O_RDONLY);
    if (dir_fd < 0) file_error("cannot open the directory of", path);
    const int synced = ::fsync(dir_fd);
    ::close(dir_fd);
    if (synced != 0) file_error("cannot fsync the directory of", path);
}

Memory load_memory(const std::string& path, int n_threads) {
    const std::vector<uint8_t> bytes = read_file(path);
    MemorySnapshot snapshot = deserialize_snapshot(bytes.data(), bytes.size(), path);
    if (n_threads >= 0) snapshot.options.n_threads = n_threads;
    try {
        return Memory::from_snapshot(snapshot);
    } catch (const std::invalid_argument& e) {
        throw CheckpointError(path + ": inconsistent memory state: " + e.what());
    }
}

}  // namespace medscore
