#pragma once
#include <sqlite3.h>

/// Turns off SQLite's memory statistics, which take a global mutex on every
/// allocation. Takes effect only before the library's first use in the
/// process; returns SQLITE_MISUSE (harmless) after it.
static inline int flujo_sqlite3_disable_memstatus(void) {
    return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

#ifdef __linux__
#include <sys/vfs.h>

/// The `f_type` magic number of the file system holding `path` (see
/// statfs(2)); 0 when it cannot be read.
static inline unsigned long long flujo_file_system_magic(const char *path) {
    struct statfs info;
    if (statfs(path, &info) != 0) return 0;
    return (unsigned long long)(unsigned long)info.f_type & 0xFFFFFFFFull;
}
#endif
