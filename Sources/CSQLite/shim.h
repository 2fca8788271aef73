#pragma once
#include <sqlite3.h>

/// Turns off SQLite's memory statistics, which take a global mutex on every
/// allocation. Takes effect only before the library's first use in the
/// process; returns SQLITE_MISUSE (harmless) after it.
static inline int flujo_sqlite3_disable_memstatus(void) {
    return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}
