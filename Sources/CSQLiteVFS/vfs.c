/*
 * A VFS shim that batches SQLite's writes to a write-ahead log.
 *
 * SQLite appends a transaction to the log as two writes per page: the frame's
 * 24-byte header, then the page. On a system where each write call costs more
 * than the bytes it moves, a commit of n pages pays 2n calls. This shim keeps
 * consecutive appends to the log in a buffer and writes them with one call
 * when the transaction's commit frame (the one whose header carries the
 * database size) has been appended, so a commit costs one call.
 *
 * What stays the same:
 * - Nothing is visible before it is in the file. Other connections find
 *   frames only through the log index header, which SQLite publishes after
 *   the commit frame has been written; by then the buffer has been written
 *   out, and an error from that write is returned from the commit frame's
 *   write, so the commit fails as it would have without the shim.
 * - Every other use of the log (a read, a sync, a size, a truncation, a
 *   write that is not the next append, closing) writes the buffer out first.
 * - As a second guard, the database file's shared-memory barrier, which
 *   SQLite calls while publishing a new log index header, also writes out
 *   anything still buffered.
 * - Syncs are unchanged: they pass through after the buffer has been written.
 * Files other than the log are passed through untouched.
 */
#include "CSQLiteVFS.h"
#include <pthread.h>
#include <string.h>

#define FRAME_HEADER_SIZE 24
/* The unix VFS writes at most 128 KiB - 1 bytes per call (it masks larger
 * sizes), so one write-out must stay under that. */
#define BUFFER_CAPACITY (124 * 1024)

typedef struct BatchedFile BatchedFile;
struct BatchedFile {
    sqlite3_file base;
    /* The file of the underlying VFS, allocated right after this struct. */
    sqlite3_file *real;
    /* A main database: its open log, if any. A log: its main database. */
    BatchedFile *partner;
    /* Logs only: appends not yet written, covering [start, start + used). */
    unsigned char *buffer;
    int used;
    int commitHeaderBuffered;
    sqlite3_int64 start;
    /* Main databases only: totals over the logs it has had. */
    FlujoWALStats stats;
    /* Logs only: an error from a write-out that could not be reported. */
    int deferredError;
};

static sqlite3_vfs batchedVFS;
static const sqlite3_io_methods passMethods;
static const sqlite3_io_methods logMethods;

static FlujoWALStats *statsOf(BatchedFile *log) {
    return log->partner ? &log->partner->stats : NULL;
}

static int writeOut(BatchedFile *log) {
    if (log->used == 0) return SQLITE_OK;
    int rc = log->real->pMethods->xWrite(log->real, log->buffer, log->used, log->start);
    FlujoWALStats *stats = statsOf(log);
    if (stats) stats->fileWrites += 1;
    log->used = 0;
    log->commitHeaderBuffered = 0;
    return rc;
}

/* ---- Pass-through methods, shared by every file. ---- */

static int passClose(sqlite3_file *file) {
    BatchedFile *p = (BatchedFile *)file;
    if (p->partner) p->partner->partner = NULL;
    return p->real->pMethods->xClose(p->real);
}
static int passRead(sqlite3_file *file, void *data, int amount, sqlite3_int64 offset) {
    BatchedFile *p = (BatchedFile *)file;
    return p->real->pMethods->xRead(p->real, data, amount, offset);
}
static int passWrite(sqlite3_file *file, const void *data, int amount, sqlite3_int64 offset) {
    BatchedFile *p = (BatchedFile *)file;
    return p->real->pMethods->xWrite(p->real, data, amount, offset);
}
static int passTruncate(sqlite3_file *file, sqlite3_int64 size) {
    BatchedFile *p = (BatchedFile *)file;
    return p->real->pMethods->xTruncate(p->real, size);
}
static int passSync(sqlite3_file *file, int flags) {
    BatchedFile *p = (BatchedFile *)file;
    return p->real->pMethods->xSync(p->real, flags);
}
static int passFileSize(sqlite3_file *file, sqlite3_int64 *size) {
    BatchedFile *p = (BatchedFile *)file;
    return p->real->pMethods->xFileSize(p->real, size);
}
static int passLock(sqlite3_file *file, int level) {
    BatchedFile *p = (BatchedFile *)file;
    return p->real->pMethods->xLock(p->real, level);
}
static int passUnlock(sqlite3_file *file, int level) {
    BatchedFile *p = (BatchedFile *)file;
    return p->real->pMethods->xUnlock(p->real, level);
}
static int passCheckReservedLock(sqlite3_file *file, int *result) {
    BatchedFile *p = (BatchedFile *)file;
    return p->real->pMethods->xCheckReservedLock(p->real, result);
}
static int passFileControl(sqlite3_file *file, int op, void *arg) {
    BatchedFile *p = (BatchedFile *)file;
    if (op == FLUJO_FCNTL_WAL_STATS) {
        if (p->base.pMethods != &passMethods || arg == NULL) return SQLITE_NOTFOUND;
        *(FlujoWALStats *)arg = p->stats;
        return SQLITE_OK;
    }
    return p->real->pMethods->xFileControl(p->real, op, arg);
}
static int passSectorSize(sqlite3_file *file) {
    BatchedFile *p = (BatchedFile *)file;
    return p->real->pMethods->xSectorSize(p->real);
}
static int passDeviceCharacteristics(sqlite3_file *file) {
    BatchedFile *p = (BatchedFile *)file;
    return p->real->pMethods->xDeviceCharacteristics(p->real);
}
static int passShmMap(sqlite3_file *file, int region, int size, int extend, void volatile **memory) {
    BatchedFile *p = (BatchedFile *)file;
    if (p->real->pMethods->iVersion < 2 || !p->real->pMethods->xShmMap) return SQLITE_IOERR_SHMMAP;
    return p->real->pMethods->xShmMap(p->real, region, size, extend, memory);
}
static int passShmLock(sqlite3_file *file, int offset, int count, int flags) {
    BatchedFile *p = (BatchedFile *)file;
    if (p->real->pMethods->iVersion < 2 || !p->real->pMethods->xShmLock) return SQLITE_IOERR_SHMLOCK;
    return p->real->pMethods->xShmLock(p->real, offset, count, flags);
}
static void passShmBarrier(sqlite3_file *file) {
    BatchedFile *p = (BatchedFile *)file;
    /* SQLite publishes a new log index header around this barrier: whatever
     * the log still buffers must be in the file first. */
    BatchedFile *log = p->partner;
    if (log && log->used > 0) {
        int rc = writeOut(log);
        if (rc != SQLITE_OK && log->deferredError == SQLITE_OK) log->deferredError = rc;
    }
    if (p->real->pMethods->iVersion >= 2 && p->real->pMethods->xShmBarrier) p->real->pMethods->xShmBarrier(p->real);
}
static int passShmUnmap(sqlite3_file *file, int deleteFlag) {
    BatchedFile *p = (BatchedFile *)file;
    if (p->real->pMethods->iVersion < 2 || !p->real->pMethods->xShmUnmap) return SQLITE_OK;
    return p->real->pMethods->xShmUnmap(p->real, deleteFlag);
}
static int passFetch(sqlite3_file *file, sqlite3_int64 offset, int amount, void **pointer) {
    BatchedFile *p = (BatchedFile *)file;
    if (p->real->pMethods->iVersion < 3 || !p->real->pMethods->xFetch) { *pointer = NULL; return SQLITE_OK; }
    return p->real->pMethods->xFetch(p->real, offset, amount, pointer);
}
static int passUnfetch(sqlite3_file *file, sqlite3_int64 offset, void *pointer) {
    BatchedFile *p = (BatchedFile *)file;
    if (p->real->pMethods->iVersion < 3 || !p->real->pMethods->xUnfetch) return SQLITE_OK;
    return p->real->pMethods->xUnfetch(p->real, offset, pointer);
}

static const sqlite3_io_methods passMethods = {
    3, passClose, passRead, passWrite, passTruncate, passSync, passFileSize, passLock, passUnlock,
    passCheckReservedLock, passFileControl, passSectorSize, passDeviceCharacteristics,
    passShmMap, passShmLock, passShmBarrier, passShmUnmap, passFetch, passUnfetch,
};

/* ---- The log's methods: appends are batched; everything else writes them out first. ---- */

#define WRITE_OUT_FIRST(p)                                          \
    do {                                                            \
        if ((p)->deferredError != SQLITE_OK) return (p)->deferredError; \
        int rcFirst = writeOut(p);                                  \
        if (rcFirst != SQLITE_OK) return rcFirst;                   \
    } while (0)

static int logClose(sqlite3_file *file) {
    BatchedFile *p = (BatchedFile *)file;
    int rc = writeOut(p);
    sqlite3_free(p->buffer);
    p->buffer = NULL;
    int closed = passClose(file);
    return rc != SQLITE_OK ? rc : closed;
}
static int logRead(sqlite3_file *file, void *data, int amount, sqlite3_int64 offset) {
    BatchedFile *p = (BatchedFile *)file;
    WRITE_OUT_FIRST(p);
    return passRead(file, data, amount, offset);
}
static int logWrite(sqlite3_file *file, const void *data, int amount, sqlite3_int64 offset) {
    BatchedFile *p = (BatchedFile *)file;
    if (p->deferredError != SQLITE_OK) return p->deferredError;
    FlujoWALStats *stats = statsOf(p);
    if (stats) stats->requestedWrites += 1;
    if (p->used > 0 && (offset != p->start + p->used || p->used + amount > BUFFER_CAPACITY)) {
        int rc = writeOut(p);
        if (rc != SQLITE_OK) return rc;
    }
    if (p->buffer == NULL && amount <= BUFFER_CAPACITY) p->buffer = sqlite3_malloc(BUFFER_CAPACITY);
    if (p->buffer == NULL || amount > BUFFER_CAPACITY) {
        if (stats) stats->fileWrites += 1;
        return passWrite(file, data, amount, offset);
    }
    if (p->used == 0) p->start = offset;
    memcpy(p->buffer + p->used, data, (size_t)amount);
    p->used += amount;
    if (amount == FRAME_HEADER_SIZE) {
        /* Bytes 4-7 of a frame header: the database size after a commit, else 0. */
        const unsigned char *header = data;
        p->commitHeaderBuffered = (header[4] | header[5] | header[6] | header[7]) != 0;
        return SQLITE_OK;
    }
    if (p->commitHeaderBuffered) return writeOut(p);
    return SQLITE_OK;
}
static int logTruncate(sqlite3_file *file, sqlite3_int64 size) {
    BatchedFile *p = (BatchedFile *)file;
    WRITE_OUT_FIRST(p);
    return passTruncate(file, size);
}
static int logSync(sqlite3_file *file, int flags) {
    BatchedFile *p = (BatchedFile *)file;
    WRITE_OUT_FIRST(p);
    return passSync(file, flags);
}
static int logFileSize(sqlite3_file *file, sqlite3_int64 *size) {
    BatchedFile *p = (BatchedFile *)file;
    WRITE_OUT_FIRST(p);
    return passFileSize(file, size);
}
static int logFileControl(sqlite3_file *file, int op, void *arg) {
    BatchedFile *p = (BatchedFile *)file;
    WRITE_OUT_FIRST(p);
    return passFileControl(file, op, arg);
}

static const sqlite3_io_methods logMethods = {
    3, logClose, logRead, logWrite, logTruncate, logSync, logFileSize, passLock, passUnlock,
    passCheckReservedLock, logFileControl, passSectorSize, passDeviceCharacteristics,
    passShmMap, passShmLock, passShmBarrier, passShmUnmap, passFetch, passUnfetch,
};

/* ---- The VFS: opens through the underlying one, everything else forwarded. ---- */

#define REAL(vfs) ((sqlite3_vfs *)(vfs)->pAppData)

static int batchedOpen(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *file, int flags, int *outFlags) {
    BatchedFile *p = (BatchedFile *)file;
    memset(p, 0, sizeof(*p));
    p->real = (sqlite3_file *)&p[1];
    int rc = REAL(vfs)->xOpen(REAL(vfs), name, p->real, flags, outFlags);
    if (rc != SQLITE_OK) {
        if (p->real->pMethods) p->real->pMethods->xClose(p->real);
        p->base.pMethods = NULL;
        return rc;
    }
    if ((flags & SQLITE_OPEN_WAL) && name) {
        p->base.pMethods = &logMethods;
        sqlite3_file *database = sqlite3_database_file_object(name);
        if (database && database->pMethods == &passMethods) {
            p->partner = (BatchedFile *)database;
            p->partner->partner = p;
        }
    } else {
        p->base.pMethods = &passMethods;
    }
    return SQLITE_OK;
}
static int batchedDelete(sqlite3_vfs *vfs, const char *name, int syncDir) {
    return REAL(vfs)->xDelete(REAL(vfs), name, syncDir);
}
static int batchedAccess(sqlite3_vfs *vfs, const char *name, int flags, int *result) {
    return REAL(vfs)->xAccess(REAL(vfs), name, flags, result);
}
static int batchedFullPathname(sqlite3_vfs *vfs, const char *name, int size, char *out) {
    return REAL(vfs)->xFullPathname(REAL(vfs), name, size, out);
}
static void *batchedDlOpen(sqlite3_vfs *vfs, const char *name) {
    return REAL(vfs)->xDlOpen(REAL(vfs), name);
}
static void batchedDlError(sqlite3_vfs *vfs, int size, char *out) {
    REAL(vfs)->xDlError(REAL(vfs), size, out);
}
static void (*batchedDlSym(sqlite3_vfs *vfs, void *handle, const char *symbol))(void) {
    return REAL(vfs)->xDlSym(REAL(vfs), handle, symbol);
}
static void batchedDlClose(sqlite3_vfs *vfs, void *handle) {
    REAL(vfs)->xDlClose(REAL(vfs), handle);
}
static int batchedRandomness(sqlite3_vfs *vfs, int size, char *out) {
    return REAL(vfs)->xRandomness(REAL(vfs), size, out);
}
static int batchedSleep(sqlite3_vfs *vfs, int microseconds) {
    return REAL(vfs)->xSleep(REAL(vfs), microseconds);
}
static int batchedCurrentTime(sqlite3_vfs *vfs, double *now) {
    return REAL(vfs)->xCurrentTime(REAL(vfs), now);
}
static int batchedGetLastError(sqlite3_vfs *vfs, int size, char *out) {
    return REAL(vfs)->xGetLastError ? REAL(vfs)->xGetLastError(REAL(vfs), size, out) : 0;
}
static int batchedCurrentTimeInt64(sqlite3_vfs *vfs, sqlite3_int64 *now) {
    if (REAL(vfs)->iVersion >= 2 && REAL(vfs)->xCurrentTimeInt64) return REAL(vfs)->xCurrentTimeInt64(REAL(vfs), now);
    double days = 0;
    int rc = REAL(vfs)->xCurrentTime(REAL(vfs), &days);
    *now = (sqlite3_int64)(days * 86400000.0);
    return rc;
}

static pthread_once_t registration = PTHREAD_ONCE_INIT;
static int registrationResult = SQLITE_ERROR;

static void registerOnce(void) {
    int rc = sqlite3_initialize();
    sqlite3_vfs *real = rc == SQLITE_OK ? sqlite3_vfs_find(NULL) : NULL;
    if (real == NULL) {
        registrationResult = rc != SQLITE_OK ? rc : SQLITE_ERROR;
        return;
    }
    batchedVFS.iVersion = 2;
    batchedVFS.szOsFile = (int)sizeof(BatchedFile) + real->szOsFile;
    batchedVFS.mxPathname = real->mxPathname;
    batchedVFS.zName = FLUJO_BATCHED_VFS_NAME;
    batchedVFS.pAppData = real;
    batchedVFS.xOpen = batchedOpen;
    batchedVFS.xDelete = batchedDelete;
    batchedVFS.xAccess = batchedAccess;
    batchedVFS.xFullPathname = batchedFullPathname;
    batchedVFS.xDlOpen = batchedDlOpen;
    batchedVFS.xDlError = batchedDlError;
    batchedVFS.xDlSym = batchedDlSym;
    batchedVFS.xDlClose = batchedDlClose;
    batchedVFS.xRandomness = batchedRandomness;
    batchedVFS.xSleep = batchedSleep;
    batchedVFS.xCurrentTime = batchedCurrentTime;
    batchedVFS.xGetLastError = batchedGetLastError;
    batchedVFS.xCurrentTimeInt64 = batchedCurrentTimeInt64;
    registrationResult = sqlite3_vfs_register(&batchedVFS, 0);
}

int flujo_sqlite3_register_batched_vfs(void) {
    pthread_once(&registration, registerOnce);
    return registrationResult;
}
