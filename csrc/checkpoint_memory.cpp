// The C++ Memory's checkpoints: its options as records named as in medscore.Memory, its int64
// keys as decimal text, and save_memory / load_memory over write_checkpoint / read_checkpoint.
#include <charconv>
#include <climits>
#include <initializer_list>
#include <utility>

#include "medscore/checkpoint.hpp"

namespace medscore {
namespace {

using Type = CheckpointValue::Type;

constexpr std::initializer_list<const char*> kStoreNames = {"wrong", "all"};         // StoreRule
constexpr std::initializer_list<const char*> kMethodNames = {"eom", "leaf"};         // SelectionMethod
constexpr std::initializer_list<const char*> kAssignNames = {"exact", "paper"};      // AssignRule
constexpr std::initializer_list<const char*> kNanRowsNames = {"error", "skip"};      // NanRows
constexpr std::initializer_list<const char*> kTargetNames = {"wrong", "right", "both", "none"};  // PenaltyTarget
constexpr std::initializer_list<const char*> kBackendNames = {"cpp", "numba"};       // medscore.Memory's backends

/// The name of enumerator `value` of an enum whose enumerators are listed in `names`' order.
template <class Enum>
CheckpointValue name_of(Enum value, std::initializer_list<const char*> names) {
    return CheckpointValue::of_text(names.begin()[static_cast<int>(value)]);
}

CheckpointValue int_or_null(int64_t value) {
    return value < 0 ? CheckpointValue::of_null() : CheckpointValue::of_int(value);
}

/// Reads one option's record, naming the option and the source in every refusal.
class OptionReader {
public:
    OptionReader(const CheckpointOption& option, const std::string& where) : o_(option), where_(where) {}

    [[noreturn]] void fail(const std::string& what) const {
        throw CheckpointError(where_ + ": option " + o_.name + " " + what);
    }
    bool boolean() const {
        if (o_.value.type != Type::boolean) fail("must be a bool");
        return o_.value.boolean;
    }
    int64_t integer() const {
        if (o_.value.type != Type::integer) fail("must be an integer");
        return o_.value.integer;
    }
    int64_t integer_or_null() const { return o_.value.type == Type::null ? -1 : integer(); }
    int thread_count() const {
        if (integer() < 0 || integer() > INT_MAX) fail("must be in [0, INT_MAX]");
        return static_cast<int>(integer());
    }
    double real() const {
        // Python keeps a whole-number float option as a float, but a hand-made state may hold an int.
        if (o_.value.type == Type::integer) return static_cast<double>(o_.value.integer);
        if (o_.value.type != Type::real) fail("must be a number");
        return o_.value.real;
    }
    template <class Enum>
    Enum choice(std::initializer_list<const char*> names) const {
        int i = 0;
        for (const char* n : names) {
            if (o_.value.type == Type::text && o_.value.text == n) return static_cast<Enum>(i);
            ++i;
        }
        fail("has an unsupported value");
    }

private:
    const CheckpointOption& o_;
    const std::string& where_;
};

void apply_option(MemoryOptions& o, const CheckpointOption& option, const std::string& where) {
    const OptionReader r(option, where);
    const std::string& name = option.name;
    if (name == "keyed") o.keyed = r.boolean();
    else if (name == "store") o.store = r.choice<StoreRule>(kStoreNames);
    else if (name == "normalize") o.normalize = r.boolean();
    else if (name == "min_cluster_size") o.min_cluster_size = r.integer();
    else if (name == "min_samples") o.min_samples = r.integer();
    else if (name == "cluster_selection_method") o.method = r.choice<SelectionMethod>(kMethodNames);
    else if (name == "assign") o.assign = r.choice<AssignRule>(kAssignNames);
    else if (name == "penalize_noise") o.penalize_noise = r.boolean();
    else if (name == "alpha") o.alpha = r.real();
    else if (name == "beta") o.beta = r.real();
    else if (name == "target") o.target = r.choice<PenaltyTarget>(kTargetNames);
    else if (name == "max_age") o.max_age = r.integer_or_null();
    else if (name == "capacity") o.capacity = r.integer_or_null();
    else if (name == "nan_rows") o.nan_rows = r.choice<NanRows>(kNanRowsNames);
    else if (name == "backend") r.choice<int>(kBackendNames);  // the C++ Memory has one engine
    else if (name == "n_threads") o.n_threads = r.thread_count();
    else r.fail("is unknown to the C++ Memory");
}

int64_t int64_key(const CheckpointKey& key, const std::string& where) {
    int64_t value = 0;
    const char* end = key.bytes.data() + key.bytes.size();
    const bool integer = key.tag == CheckpointKey::Tag::integer;
    const auto parsed = integer ? std::from_chars(key.bytes.data(), end, value) : std::from_chars_result{};
    if (!integer || parsed.ec != std::errc() || parsed.ptr != end) {
        throw CheckpointError(where + ": a key is not an integer in int64 range (" +
                              (integer ? key.bytes : std::string(key.tag == CheckpointKey::Tag::text ? "a string" : "bytes")) +
                              "): the C/C++ Memory holds integer keys only, in int64 range; load the file with "
                              "the Python package (medscore.Memory.load)");
    }
    return value;
}

}  // namespace

CheckpointState checkpoint_of(MemorySnapshot s) {
    const MemoryOptions& o = s.options;
    CheckpointState c;
    c.options = {
        {"keyed", CheckpointValue::of_bool(o.keyed)},
        {"store", name_of(o.store, kStoreNames)},
        {"normalize", CheckpointValue::of_bool(o.normalize)},
        {"min_cluster_size", CheckpointValue::of_int(o.min_cluster_size)},
        {"min_samples", CheckpointValue::of_int(o.min_samples)},
        {"cluster_selection_method", name_of(o.method, kMethodNames)},
        {"assign", name_of(o.assign, kAssignNames)},
        {"penalize_noise", CheckpointValue::of_bool(o.penalize_noise)},
        {"alpha", CheckpointValue::of_real(o.alpha)},
        {"beta", CheckpointValue::of_real(o.beta)},
        {"target", name_of(o.target, kTargetNames)},
        {"max_age", int_or_null(o.max_age)},
        {"capacity", int_or_null(o.capacity)},
        {"nan_rows", name_of(o.nan_rows, kNanRowsNames)},
        {"backend", CheckpointValue::of_text("cpp")},
        {"n_threads", CheckpointValue::of_int(o.n_threads)},
    };
    for (int64_t key : s.keys) c.keys.push_back({CheckpointKey::Tag::integer, std::to_string(key)});
    c.last_step = s.last_step;
    c.dim = s.dim;
    c.last_penalties = std::move(s.last_penalties);
    c.has_engine = s.has_engine;
    c.engine = std::move(s.engine);
    return c;
}

MemorySnapshot snapshot_of(CheckpointState c, const std::string& where) {
    if (c.state_version != 1) {
        throw CheckpointError(where + ": Memory state version " + std::to_string(c.state_version) +
                              " is not supported (expected 1)");
    }
    MemorySnapshot s;
    for (const CheckpointOption& option : c.options) apply_option(s.options, option, where);
    for (const CheckpointKey& key : c.keys) s.keys.push_back(int64_key(key, where));
    s.last_step = c.last_step;
    s.dim = c.dim;
    s.last_penalties = std::move(c.last_penalties);
    s.has_engine = c.has_engine;
    s.engine = std::move(c.engine);
    return s;
}

void save_memory(const Memory& memory, const std::string& path) {
    write_checkpoint(path, checkpoint_of(memory.snapshot()));
}

Memory load_memory(const std::string& path, int n_threads) {
    MemorySnapshot snapshot = snapshot_of(read_checkpoint(path), path);
    if (n_threads >= 0) snapshot.options.n_threads = n_threads;
    try {
        return Memory::from_snapshot(snapshot);
    } catch (const std::invalid_argument& e) {
        throw CheckpointError(path + ": inconsistent memory state: " + e.what());
    }
}

}  // namespace medscore
