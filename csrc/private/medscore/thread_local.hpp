// Accessors of thread_local workspaces (private to csrc/: under csrc/private, never installed).
#pragma once

// A thread_local workspace is reached through its accessor, kept out of line: inlined, GCC
// re-derives the object's address (__tls_get_addr in a shared library) at nearly every use
// after a call, which cost ~5% of a memory step.
#if defined(__GNUC__) || defined(__clang__)
#define MEDSCORE_TLS_ACCESSOR __attribute__((noinline))
#else
#define MEDSCORE_TLS_ACCESSOR
#endif
