// Checkpoint files (medscore/checkpoint.hpp): bit-exact round trips, refusal of every damaged,
// foreign or malformed file before anything is built, atomic writes, and the C++ Memory's view.
#include <dirent.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "../checkpoint_format.hpp"
#include "check.hpp"
#include "medscore/medscore.hpp"

using medscore_test::throws;
using medscore::CheckpointError;
using medscore::CheckpointKey;
using medscore::CheckpointState;
using medscore::CheckpointValue;

namespace {

std::string temp_dir() {
    char tmpl[] = "/tmp/medscore_checkpoint_XXXXXX";
    const char* dir = mkdtemp(tmpl);
    return dir ? dir : "/tmp";
}

std::vector<std::string> files_in(const std::string& dir) {
    std::vector<std::string> out;
    if (DIR* d = opendir(dir.c_str())) {
        while (dirent* e = readdir(d)) {
            const std::string name = e->d_name;
            if (name != "." && name != "..") out.push_back(name);
        }
        closedir(d);
    }
    return out;
}

std::vector<uint8_t> file_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * 8) == 0);
}

/// A state with every record type, keys of every tag, -0.0 and extreme floats, and an engine
/// of `n_points` points in `dim` dimensions (its arrays are arbitrary: the format does not
/// check that they are a memory).
CheckpointState random_state(std::mt19937_64& rng, int64_t n_points, int64_t dim) {
    std::uniform_real_distribution<double> real(-1e3, 1e3);
    CheckpointState s;
    s.options = {{"min_cluster_size", CheckpointValue::of_int(int64_t(rng() % 100) + 2)},
                 {"keyed", CheckpointValue::of_bool(rng() % 2 == 0)},
                 {"alpha", CheckpointValue::of_real(-0.0)},
                 {"beta", CheckpointValue::of_real(5e-324)},
                 {"max_age", CheckpointValue::of_null()},
                 {"store", CheckpointValue::of_text("all \xc3\xa9\xf0\x9f\x98\x80")}};
    s.keys = {{CheckpointKey::Tag::integer, "-9223372036854775808"},
              {CheckpointKey::Tag::integer, "123456789012345678901234567890"},
              {CheckpointKey::Tag::text, "prompt \xe2\x82\xac"},
              {CheckpointKey::Tag::bytes, std::string("\0\xff\x80", 3)},
              {CheckpointKey::Tag::text, ""}};
    s.last_step = int64_t(rng() >> 1);
    s.dim = dim;
    s.last_penalties = {-0.0, 0.0, 1.7976931348623157e308, real(rng)};
    s.has_engine = true;
    s.engine.dim = dim;
    s.engine.last_step = s.last_step;
    s.engine.offsets = {0, n_points};
    for (int64_t i = 0; i < n_points * dim; ++i) s.engine.points.push_back(i % 7 == 0 ? -0.0 : real(rng));
    for (int64_t i = 0; i < n_points; ++i) {
        s.engine.steps.push_back(int64_t(rng()));
        s.engine.labels.push_back(int64_t(rng() % 5) - 1);
        if (i > 0) s.engine.mst.push_back({i - 1, i, real(rng)});
    }
    return s;
}

void check_equal(const CheckpointState& a, const CheckpointState& b) {
    CHECK(a.state_version == b.state_version && a.last_step == b.last_step && a.dim == b.dim);
    CHECK(same_bits(a.last_penalties, b.last_penalties) && a.has_engine == b.has_engine);
    CHECK(a.keys.size() == b.keys.size());
    for (size_t i = 0; i < a.keys.size() && i < b.keys.size(); ++i) {
        CHECK(a.keys[i].tag == b.keys[i].tag && a.keys[i].bytes == b.keys[i].bytes);
    }
    for (const auto& o : a.options) {  // b holds them sorted by name
        bool found = false;
        for (const auto& p : b.options) {
            if (p.name != o.name) continue;
            found = p.value.type == o.value.type && p.value.boolean == o.value.boolean &&
                    p.value.integer == o.value.integer && p.value.text == o.value.text &&
                    std::memcmp(&p.value.real, &o.value.real, 8) == 0;
        }
        CHECK(found);
    }
    CHECK(a.options.size() == b.options.size());
    const auto &e = a.engine, &f = b.engine;
    CHECK(e.dim == f.dim && e.last_step == f.last_step && e.offsets == f.offsets && same_bits(e.points, f.points));
    CHECK(e.steps == f.steps && e.labels == f.labels && e.mst.size() == f.mst.size());
    for (size_t i = 0; i < e.mst.size() && i < f.mst.size(); ++i) {
        CHECK(e.mst[i].u == f.mst[i].u && e.mst[i].v == f.mst[i].v);
        CHECK(std::memcmp(&e.mst[i].weight, &f.mst[i].weight, 8) == 0);
    }
}

CheckpointState round_trip(const CheckpointState& s) {
    const auto bytes = medscore::serialize_checkpoint(s);
    return medscore::deserialize_checkpoint(bytes.data(), bytes.size(), "round trip");
}

void test_round_trips_bit_for_bit() {
    std::mt19937_64 rng(3);
    for (int64_t n_points : {0, 1, 2, 17}) {
        const CheckpointState s = random_state(rng, n_points, 3);
        check_equal(s, round_trip(s));
    }
    const CheckpointState empty;  // no engine, no keys, dim null
    const CheckpointState back = round_trip(empty);
    check_equal(empty, back);
    CHECK(!back.has_engine && back.dim == 0 && back.keys.empty() && back.options.empty());
    // The options' order does not change the file.
    CheckpointState a = random_state(rng, 4, 2), b = a;
    std::swap(b.options.front(), b.options.back());
    CHECK(medscore::serialize_checkpoint(a) == medscore::serialize_checkpoint(b));
}

void test_crc_and_text_checks() {
    namespace cf = medscore::checkpoint_format;
    const std::string check = "123456789";
    CHECK(cf::crc32_of(reinterpret_cast<const uint8_t*>(check.data()), check.size()) == 0xCBF43926u);
    CHECK(cf::crc32_of(nullptr, 0) == 0);
    for (const char* ok : {"", "abc", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf"}) CHECK(cf::is_utf8(ok));
    for (const char* bad : {"\x80", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc3", "\xff"}) {
        CHECK(!cf::is_utf8(bad));
    }
    for (const char* ok : {"0", "-1", "42", "-9223372036854775809", "100"}) CHECK(cf::is_decimal_integer(ok));
    for (const char* bad : {"", "-", "-0", "01", "+1", "1.0", " 1", "1a", "0x1"}) CHECK(!cf::is_decimal_integer(bad));
}

void test_writer_refuses_what_cannot_read_back() {
    auto refused = [](CheckpointState s, const char* needle) {
        CHECK(throws<std::invalid_argument>([&] { medscore::serialize_checkpoint(s); }, needle));
    };
    CheckpointState s;
    s.keys = {{CheckpointKey::Tag::integer, "07"}};
    refused(s, "key");
    s.keys = {{CheckpointKey::Tag::text, "\xff"}};
    refused(s, "key");
    s.keys = {{static_cast<CheckpointKey::Tag>('x'), "1"}};
    refused(s, "key");
    s = CheckpointState();
    s.options = {{"a", CheckpointValue::of_int(1)}, {"a", CheckpointValue::of_int(2)}};
    refused(s, "twice");
    s.options = {{"a", CheckpointValue::of_text("\xc0\xaf")}};
    refused(s, "UTF-8");
    s = CheckpointState();
    s.has_engine = true;
    s.engine.dim = 2;
    s.engine.points = {1.0, 2.0, 3.0};
    s.engine.steps = {0, 0};
    s.engine.labels = {0, 0};
    refused(s, "disagree");
}

/// A file of `header` and `data` with a correct prefix and CRC (what a foreign writer could make).
std::vector<uint8_t> framed(const std::vector<uint8_t>& header, const std::vector<uint8_t>& data, uint32_t version = 2) {
    std::vector<uint8_t> out(medscore::checkpoint_format::kMagic, medscore::checkpoint_format::kMagic + 16);
    const uint64_t lengths[2] = {header.size(), data.size()};
    out.insert(out.end(), reinterpret_cast<const uint8_t*>(&version), reinterpret_cast<const uint8_t*>(&version) + 4);
    out.insert(out.end(), reinterpret_cast<const uint8_t*>(lengths), reinterpret_cast<const uint8_t*>(lengths) + 16);
    out.insert(out.end(), header.begin(), header.end());
    out.insert(out.end(), data.begin(), data.end());
    const uint32_t crc = medscore::checkpoint_format::crc32_of(out.data(), out.size());
    out.insert(out.end(), reinterpret_cast<const uint8_t*>(&crc), reinterpret_cast<const uint8_t*>(&crc) + 4);
    return out;
}

bool refused_with(const std::vector<uint8_t>& bytes, const char* needle) {
    return throws<CheckpointError>([&] { medscore::deserialize_checkpoint(bytes.data(), bytes.size(), "f"); }, needle);
}

void test_every_damage_is_refused() {
    std::mt19937_64 rng(5);
    const auto bytes = medscore::serialize_checkpoint(random_state(rng, 3, 2));
    int accepted = 0;
    for (size_t pos = 0; pos < bytes.size(); ++pos) {
        for (uint8_t mask : {uint8_t(0x01), uint8_t(0x80), uint8_t(0xff)}) {
            auto damaged = bytes;
            damaged[pos] ^= mask;
            accepted += throws<CheckpointError>([&] { medscore::deserialize_checkpoint(damaged.data(), damaged.size(), "f"); }) ? 0 : 1;
        }
    }
    for (size_t size = 0; size < bytes.size(); ++size) {
        accepted += throws<CheckpointError>([&] { medscore::deserialize_checkpoint(bytes.data(), size, "f"); }) ? 0 : 1;
    }
    CHECK(accepted == 0);
    auto appended = bytes;
    appended.push_back(0);
    CHECK(refused_with(appended, "checksum"));
    CHECK(refused_with(std::vector<uint8_t>(bytes.begin(), bytes.begin() + 10), "too short"));
    auto v1 = bytes;
    v1[16] = 1;
    CHECK(refused_with(v1, "read by the Python package only"));
    v1[16] = 3;
    CHECK(refused_with(v1, "version 3 is not supported"));
}

void test_foreign_headers_are_refused() {
    auto u32 = [](uint32_t v) { return std::vector<uint8_t>{uint8_t(v), uint8_t(v >> 8), uint8_t(v >> 16), uint8_t(v >> 24)}; };
    CHECK(refused_with(framed(u32(0), {}), "the record state_version is missing"));
    CHECK(refused_with(framed(u32(1000), {}), "more records"));
    CHECK(refused_with(framed({1, 2}, {}), "past the end of the header"));
    auto record = u32(1);
    for (int b : {1, 0, int('x'), 2, 1, 0, 0, 0, 0, 0, 0, 0}) record.push_back(uint8_t(b));  // "x": int64 1
    CHECK(refused_with(framed(record, {}), "missing"));
    auto trailing = record;
    trailing.push_back(0);
    CHECK(refused_with(framed(trailing, {}), "bytes after the last record"));
    CHECK(refused_with(framed(record, {0, 0, 0, 0, 0, 0, 0, 0}), "do not fill the data block"));
    auto twice = u32(2);
    twice.insert(twice.end(), record.begin() + 4, record.end());
    twice.insert(twice.end(), record.begin() + 4, record.end());
    CHECK(refused_with(framed(twice, {}), "written twice"));
    auto bad_type = record;
    bad_type[7] = 9;
    CHECK(refused_with(framed(bad_type, {}), "unknown type 9"));
    // A state with one extra record, and one whose record has another type.
    CheckpointState s;
    auto bytes = medscore::serialize_checkpoint(s);
    std::vector<uint8_t> header(bytes.begin() + 36, bytes.end() - 4);  // no array data in an empty state
    header[0] += 1;
    header.insert(header.end(), record.begin() + 4, record.end());
    CHECK(refused_with(framed(header, {}), "unknown record x"));
}

void test_headers_damaged_under_a_valid_crc_never_crash() {
    // The CRC stops accidental damage; a file made by another program with a valid CRC must
    // still be parsed safely: mutate the prefix lengths and header bytes, re-frame with a fresh
    // CRC, and expect a state or a CheckpointError, never another exception (or, under ASan,
    // an out-of-bounds read).
    std::mt19937_64 rng(11);
    const auto bytes = medscore::serialize_checkpoint(random_state(rng, 3, 2));
    uint64_t header_len = 0;
    std::memcpy(&header_len, bytes.data() + 20, 8);
    const size_t header_end = 36 + static_cast<size_t>(header_len), end = bytes.size() - 4;
    int parsed = 0, refused = 0;
    for (int trial = 0; trial < 3000; ++trial) {
        auto damaged = bytes;
        for (int k = 0; k < 1 + trial % 4; ++k) damaged[20 + rng() % (header_end - 20)] = static_cast<uint8_t>(rng());
        const uint32_t crc = medscore::checkpoint_format::crc32_of(damaged.data(), end);
        std::memcpy(damaged.data() + end, &crc, 4);
        try {
            medscore::deserialize_checkpoint(damaged.data(), damaged.size(), "fuzz");
            ++parsed;
        } catch (const CheckpointError&) {
            ++refused;
        }
    }
    CHECK(parsed + refused == 3000 && refused > 2000);
}

// -- the C++ Memory ------------------------------------------------------------------------

medscore::Memory filled_memory() {
    medscore::Memory memory(medscore::MemoryOptions::preset("paper"));
    for (int step = 0; step < 3; ++step) {
        std::vector<double> x;
        for (int i = 0; i < 8; ++i) x.insert(x.end(), {(i % 2) * 10.0, 1.0 + 0.25 * step + i / 2, 1.0, 1.0});
        const std::vector<int64_t> keys = {7, 7, 7, 7, -3, -3, INT64_MAX, INT64_MIN};
        const std::vector<uint8_t> correct = {0, 0, 0, 0, 0, 0, 1, 0};
        memory.penalize({x.data(), 8, 4}, keys.data(), correct.data(), nullptr, step);
    }
    return memory;
}

void test_memory_options_and_keys_map_by_name() {
    auto o = medscore::MemoryOptions::preset("paper");
    o.alpha = 0.3;
    o.max_age = 5;
    o.target = medscore::PenaltyTarget::both;
    o.method = medscore::SelectionMethod::leaf;
    o.nan_rows = medscore::NanRows::skip;
    medscore::MemorySnapshot snap;
    snap.options = o;
    snap.keys = {INT64_MIN, 0, INT64_MAX};
    const CheckpointState c = medscore::checkpoint_of(snap);
    CHECK(c.options.size() == 16 && c.keys[0].bytes == "-9223372036854775808");
    const medscore::MemorySnapshot back = medscore::snapshot_of(round_trip(c), "x");
    CHECK(back.keys == snap.keys && back.options.alpha == 0.3 && back.options.max_age == 5);
    CHECK(back.options.capacity == -1 && back.options.target == o.target && back.options.method == o.method);
    CHECK(back.options.nan_rows == o.nan_rows && back.options.store == o.store && back.options.assign == o.assign);
    auto with = [&](const char* name, CheckpointValue v) {  // c with option `name` set or added
        CheckpointState d = c;
        for (auto& option : d.options) {
            if (option.name == name) option.value = v;
        }
        if (std::string(name) == "nope") d.options.push_back({name, v});
        return d;
    };
    CHECK(throws<CheckpointError>([&] { medscore::snapshot_of(with("nope", CheckpointValue::of_int(1)), "x"); }, "option nope is unknown"));
    CHECK(throws<CheckpointError>([&] { medscore::snapshot_of(with("keyed", CheckpointValue::of_int(1)), "x"); }, "option keyed must be a bool"));
    CHECK(throws<CheckpointError>([&] { medscore::snapshot_of(with("keyed", CheckpointValue::of_bool(true)), "x"); }) == false);
    CheckpointState str_key = c;
    str_key.keys.push_back({CheckpointKey::Tag::text, "a"});
    CHECK(throws<CheckpointError>([&] { medscore::snapshot_of(str_key, "x"); }, "integer keys only"));
    CheckpointState huge_key = c;
    huge_key.keys.push_back({CheckpointKey::Tag::integer, "9223372036854775808"});
    CHECK(throws<CheckpointError>([&] { medscore::snapshot_of(huge_key, "x"); }, "not an integer in int64 range (9223372036854775808)"));
    CheckpointState later = c;
    later.state_version = 2;
    CHECK(throws<CheckpointError>([&] { medscore::snapshot_of(later, "x"); }, "Memory state version 2"));
}

void test_memory_files() {
    const std::string dir = temp_dir(), path = dir + "/memory.ckpt";
    medscore::Memory memory = filled_memory();
    medscore::save_memory(memory, path);
    medscore::save_memory(memory, path);  // overwrite in place
    CHECK(files_in(dir) == std::vector<std::string>{"memory.ckpt"});
    medscore::Memory loaded = medscore::load_memory(path, 1);
    CHECK(loaded.options().store == medscore::StoreRule::all && loaded.options().n_threads == 1);
    CHECK(loaded.keys() == memory.keys() && same_bits(loaded.snapshot().engine.points, memory.snapshot().engine.points));
    // A write that fails leaves the old file as it was and no temporary file.
    const auto before = file_bytes(path);
    CheckpointState bad;
    bad.keys = {{CheckpointKey::Tag::integer, "x"}};
    CHECK(throws<std::invalid_argument>([&] { medscore::write_checkpoint(path, bad); }));
    CHECK(throws<medscore::FileError>([&] { medscore::write_checkpoint(path + "/below", CheckpointState()); }, "cannot create"));
    CHECK(file_bytes(path) == before && files_in(dir) == std::vector<std::string>{"memory.ckpt"});
    try {
        medscore::load_memory(dir + "/missing.ckpt");
        CHECK(false);
    } catch (const medscore::FileError& e) {
        CHECK(e.error_number() == ENOENT && e.path() == dir + "/missing.ckpt");
    }
    // Only regular files are read: a FIFO without a writer would block a plain open forever.
    const std::string fifo = dir + "/fifo.ckpt";
    CHECK(mkfifo(fifo.c_str(), 0600) == 0);
    CHECK(throws<CheckpointError>([&] { medscore::load_memory(fifo); }, "not a regular file"));
    CHECK(throws<CheckpointError>([&] { medscore::read_checkpoint(dir); }, "not a regular file"));
    std::remove(fifo.c_str());
    std::remove(path.c_str());
    std::remove(dir.c_str());
}

void test_a_file_the_cpp_memory_cannot_hold() {
    const std::string dir = temp_dir(), path = dir + "/strings.ckpt";
    CheckpointState c = medscore::checkpoint_of(filled_memory().snapshot());
    c.keys[0] = {CheckpointKey::Tag::bytes, "\x01"};
    medscore::write_checkpoint(path, c);
    CHECK(throws<CheckpointError>([&] { medscore::load_memory(path); }, "integer keys only, in int64 range; load the file with the Python"));
    check_equal(c, medscore::read_checkpoint(path));  // the file itself is fine
    std::remove(path.c_str());
    std::remove(dir.c_str());
}

}  // namespace

int main() {
    test_round_trips_bit_for_bit();
    test_crc_and_text_checks();
    test_writer_refuses_what_cannot_read_back();
    test_every_damage_is_refused();
    test_foreign_headers_are_refused();
    test_headers_damaged_under_a_valid_crc_never_crash();
    test_memory_options_and_keys_map_by_name();
    test_memory_files();
    test_a_file_the_cpp_memory_cannot_hold();
    return medscore_test::report("test_checkpoint");
}
