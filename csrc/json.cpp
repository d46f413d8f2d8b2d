// Recursive-descent JSON reader for checkpoint headers, and the two formatting helpers.
#include "json.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <stdexcept>
#include <system_error>

namespace medscore {
namespace {

class JsonReader {
public:
    explicit JsonReader(const std::string& text) : s_(text) {}

    JsonValue document() {
        JsonValue v = value(0);
        skip_space();
        if (pos_ != s_.size()) fail("trailing characters");
        return v;
    }

private:
    [[noreturn]] void fail(const std::string& what) const {
        throw std::invalid_argument("JSON: " + what + " at byte " + std::to_string(pos_));
    }
    void skip_space() {
        while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\r' || s_[pos_] == '\t')) ++pos_;
    }
    char peek() {
        skip_space();
        if (pos_ >= s_.size()) fail("unexpected end");
        return s_[pos_];
    }
    void expect(const char* word) {
        for (const char* c = word; *c; ++c, ++pos_) {
            if (pos_ >= s_.size() || s_[pos_] != *c) fail(std::string("expected '") + word + "'");
        }
    }

    JsonValue value(int depth) {
        if (depth > 64) fail("nesting too deep");
        JsonValue v;
        const char c = peek();
        if (c == '{') return object(depth);
        if (c == '[') return array(depth);
        if (c == '"') { v.kind = JsonValue::Kind::string; v.text = string(); return v; }
        if (c == 'n') { expect("null"); return v; }
        if (c == 't') { expect("true"); v.kind = JsonValue::Kind::boolean; v.boolean = true; return v; }
        if (c == 'f') { expect("false"); v.kind = JsonValue::Kind::boolean; return v; }
        v.kind = JsonValue::Kind::number;
        v.text = number();
        return v;
    }

    JsonValue object(int depth) {
        JsonValue v;
        v.kind = JsonValue::Kind::object;
        ++pos_;
        if (peek() == '}') { ++pos_; return v; }
        while (true) {
            if (peek() != '"') fail("expected a member name");
            std::string key = string();
            if (peek() != ':') fail("expected ':'");
            ++pos_;
            v.members.emplace_back(std::move(key), value(depth + 1));
            const char c = peek();
            ++pos_;
            if (c == '}') return v;
            if (c != ',') fail("expected ',' or '}'");
        }
    }

    JsonValue array(int depth) {
        JsonValue v;
        v.kind = JsonValue::Kind::array;
        ++pos_;
        if (peek() == ']') { ++pos_; return v; }
        while (true) {
            v.items.push_back(value(depth + 1));
            const char c = peek();
            ++pos_;
            if (c == ']') return v;
            if (c != ',') fail("expected ',' or ']'");
        }
    }

    std::string number() {
        const size_t start = pos_;
        auto digits = [&] {
            const size_t from = pos_;
            while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
            if (pos_ == from) fail("bad number");
        };
        if (s_[pos_] == '-') ++pos_;
        digits();
        if (pos_ < s_.size() && s_[pos_] == '.') { ++pos_; digits(); }
        if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
            ++pos_;
            if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
            digits();
        }
        return s_.substr(start, pos_ - start);
    }

    uint32_t hex4() {
        if (pos_ + 4 > s_.size()) fail("short \\u escape");
        uint32_t code = 0;
        for (int i = 0; i < 4; ++i, ++pos_) {
            const char c = s_[pos_];
            const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (d < 0) fail("bad \\u escape");
            code = code * 16 + uint32_t(d);
        }
        return code;
    }

    static void append_utf8(std::string& out, uint32_t code) {
        auto cont = [&](int shift) { out += char(0x80 | ((code >> shift) & 0x3F)); };
        if (code < 0x80) {
            out += char(code);
        } else if (code < 0x800) {
            out += char(0xC0 | (code >> 6)); cont(0);
        } else if (code < 0x10000) {
            out += char(0xE0 | (code >> 12)); cont(6); cont(0);
        } else {
            out += char(0xF0 | (code >> 18)); cont(12); cont(6); cont(0);
        }
    }

    std::string string() {
        ++pos_;  // opening quote
        std::string out;
        while (true) {
            if (pos_ >= s_.size()) fail("unterminated string");
            const char c = s_[pos_++];
            if (c == '"') return out;
            if (static_cast<unsigned char>(c) < 0x20) fail("control character in string");
            if (c != '\\') { out += c; continue; }
            if (pos_ >= s_.size()) fail("unterminated escape");
            const char e = s_[pos_++];
            switch (e) {
                case '"': case '\\': case '/': out += e; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': append_utf8(out, code_point()); break;
                default: fail("bad escape");
            }
        }
    }

    uint32_t code_point() {
        const uint32_t high = hex4();
        if (high < 0xD800 || high > 0xDFFF) return high;
        if (high > 0xDBFF || pos_ + 2 > s_.size() || s_[pos_] != '\\' || s_[pos_ + 1] != 'u') fail("lone surrogate");
        pos_ += 2;
        const uint32_t low = hex4();
        if (low < 0xDC00 || low > 0xDFFF) fail("bad surrogate pair");
        return 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
    }

    const std::string& s_;
    size_t pos_ = 0;
};

}  // namespace

const JsonValue* JsonValue::find(const std::string& key) const {
    for (const auto& m : members) {
        if (m.first == key) return &m.second;
    }
    return nullptr;
}

JsonValue parse_json(const std::string& text) { return JsonReader(text).document(); }

std::string quote_json(const std::string& text) {
    static const char* hex = "0123456789abcdef";
    std::string out = "\"";
    for (char c : text) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') { out += '\\'; out += c; }
        else if (u < 0x20 || u >= 0x7F) {
            if (u >= 0x80) throw std::invalid_argument("quote_json: only ASCII strings are written");
            out += "\\u00"; out += hex[u >> 4]; out += hex[u & 15];
        } else {
            out += c;
        }
    }
    return out + "\"";
}

std::string format_python_float(double value) {
    if (!std::isfinite(value)) throw std::invalid_argument("format_python_float: value must be finite");
    char buf[64];
    const auto res = std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::scientific);
    if (res.ec != std::errc()) throw std::logic_error("format_python_float: to_chars failed");
    const std::string sci(buf, res.ptr);  // e.g. "-1.25e-05": shortest round-trip digits
    const size_t e_pos = sci.find('e');
    const bool negative = sci[0] == '-';
    std::string digits;
    for (size_t i = negative ? 1 : 0; i < e_pos; ++i) {
        if (sci[i] != '.') digits += sci[i];
    }
    const int exponent = std::stoi(sci.substr(e_pos + 1));
    std::string out = negative ? "-" : "";
    if (exponent < -4 || exponent >= 16) {  // Python's repr switches to exponent form here
        out += digits.substr(0, 1);
        if (digits.size() > 1) out += "." + digits.substr(1);
        char exp_buf[16];
        std::snprintf(exp_buf, sizeof(exp_buf), "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
        return out + exp_buf;
    }
    if (exponent < 0) return out + "0." + std::string(size_t(-exponent - 1), '0') + digits;
    const size_t int_len = size_t(exponent) + 1;
    if (digits.size() <= int_len) return out + digits + std::string(int_len - digits.size(), '0') + ".0";
    return out + digits.substr(0, int_len) + "." + digits.substr(int_len);
}

}  // namespace medscore
