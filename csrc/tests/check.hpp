// A tiny self-contained check harness for the ctest executables (no external framework).
#pragma once
#include <cstdio>
#include <exception>
#include <string>

namespace medscore_test {
inline int& failures() {
    static int count = 0;
    return count;
}

/// Records a failure with a message.
inline void fail(const char* file, int line, const std::string& message) {
    std::fprintf(stderr, "%s:%d: %s\n", file, line, message.c_str());
    ++failures();
}

/// True if `body()` throws `Error` whose what() contains `needle` (any message by default).
template <class Error, class Body>
bool throws(Body&& body, const char* needle = "") {
    try {
        body();
    } catch (const Error& e) {
        if (std::string(e.what()).find(needle) != std::string::npos) return true;
        std::fprintf(stderr, "threw, but the message lacks \"%s\": %s\n", needle, e.what());
        return false;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "threw another exception: %s\n", e.what());
        return false;
    }
    return false;
}

/// Prints the number of failures of test `name`; the exit code of main (0 = all passed).
inline int report(const char* name) {
    std::fprintf(stderr, "%s: %d failure(s)\n", name, failures());
    return failures() == 0 ? 0 : 1;
}
}  // namespace medscore_test

/// Records a failure (with file and line) when `cond` is false; the test goes on.
#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);  \
            ++medscore_test::failures();                                                   \
        }                                                                                  \
    } while (0)

/// Records a failure unless `expr` throws exactly `type` (or a subclass).
#define CHECK_THROWS(expr, type)                                                                        \
    do {                                                                                                \
        bool thrown_ = false;                                                                           \
        try {                                                                                           \
            (void)(expr);                                                                               \
        } catch (const type&) {                                                                         \
            thrown_ = true;                                                                             \
        } catch (const std::exception& e_) {                                                            \
            std::fprintf(stderr, "%s:%d: %s threw another exception: %s\n", __FILE__, __LINE__, #expr,  \
                         e_.what());                                                                    \
        }                                                                                               \
        if (!thrown_) {                                                                                 \
            std::fprintf(stderr, "%s:%d: expected %s from %s\n", __FILE__, __LINE__, #type, #expr);     \
            ++medscore_test::failures();                                                                \
        }                                                                                               \
    } while (0)

/// Runs a test function, reporting an uncaught exception as a failure.
#define RUN(test)                                                                              \
    do {                                                                                       \
        try {                                                                                  \
            test();                                                                            \
        } catch (const std::exception& e_) {                                                   \
            std::fprintf(stderr, "%s: uncaught exception: %s\n", #test, e_.what());            \
            ++medscore_test::failures();                                                       \
        }                                                                                      \
    } while (0)

/// The exit code of main: 0 when every check passed.
#define TEST_RESULT()                                                                          \
    (std::fprintf(stderr, "%d failure(s)\n", medscore_test::failures()), medscore_test::failures() == 0 ? 0 : 1)
