#pragma once
#include <sqlite3.h>

/// The name of the batched-log VFS (see vfs.c).
#define FLUJO_BATCHED_VFS_NAME "flujo-batched-wal"

/// File-control opcode on the main database: fills a `FlujoWALStats` with
/// what the VFS did for that database's write-ahead log since it was opened.
#define FLUJO_FCNTL_WAL_STATS 0x464C4A01

typedef struct FlujoWALStats {
    /// Writes SQLite asked for on the log (a frame is two: header, then page).
    sqlite3_int64 requestedWrites;
    /// Writes made to the log file.
    sqlite3_int64 fileWrites;
} FlujoWALStats;

/// Registers the batched-log VFS (not as the default) on top of the default
/// VFS. Safe to call more than once; returns an SQLite result code.
int flujo_sqlite3_register_batched_vfs(void);
