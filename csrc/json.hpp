// A small JSON reader and writer helpers for checkpoint headers. Internal header.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace medscore {

/// A parsed JSON value; numbers keep their literal text so 64-bit integers stay exact.
struct JsonValue {
    enum class Kind { null, boolean, number, string, array, object };
    Kind kind = Kind::null;
    bool boolean = false;
    std::string text;                                        ///< string contents or number literal
    std::vector<JsonValue> items;                            ///< array elements
    std::vector<std::pair<std::string, JsonValue>> members;  ///< object members in file order

    /// The member named `key`, or null when absent (or when this is not an object).
    const JsonValue* find(const std::string& key) const;
};

/// Parses one JSON document (RFC 8259; nesting at most 64 deep). Throws std::invalid_argument.
JsonValue parse_json(const std::string& text);

/// `text` as a JSON string literal, non-ASCII escaped as \uXXXX (as Python's json.dumps).
std::string quote_json(const std::string& text);

/// `value` formatted as Python's repr(float) does (shortest round-trip digits, exponent form
/// below 1e-4 and from 1e16). `value` must be finite.
std::string format_python_float(double value);

}  // namespace medscore
