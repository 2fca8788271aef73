/*
 * What SQLite alone costs for W8's writes of one background task, from C: a
 * floor under the engine, whatever the language around the statements.
 *
 * Usage: sqlite-floor SCHEMA_DB OUT_DB [TASKS] [BATCH] [ROUNDS]
 *
 * SCHEMA_DB is a state database made by Flujo (`flujo db upgrade --db ...`);
 * its tables and indexes are created in OUT_DB, which is replaced. Each
 * transaction then holds BATCH launches of new tasks and the outcomes of the
 * BATCH tasks launched one transaction before, as W8's group commit does:
 *
 *   launch:  read the task's row (absent), insert it `running` with its owner
 *            and trace, and insert the parent's step record of the launch;
 *   outcome: read the row, rewrite it `completed`, and insert the task's step
 *            record.
 *
 * Six variants, alternated ROUNDS times: the statements as above; without the
 * reads; without the step records; without either (a task's row inserted and
 * rewritten, nothing else). Then two variants of a layout Flujo does not
 * have, where a row holds several tasks: a launch group's row (the parent's 50
 * tasks: ids, step names and inputs as one JSON array, with the owner and the
 * parent once) and one row of outcomes per transaction (the batch's task ids,
 * statuses, outputs and durations as one JSON array); once with an index of
 * task ids (a task id to its group, one entry a task, so a task can still be
 * found by id), once without. The connection is set up as the store sets up
 * its own: WAL, synchronous NORMAL, the same cache and checkpoint size, no
 * memory statistics, no mutex, and the store's VFS, which writes a commit's
 * log frames with one call (Sources/CSQLiteVFS, compiled in).
 * It prints one JSON line per run: CPU and wall time per task.
 */
#include "CSQLiteVFS.h"
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>

static double wallSeconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double cpuSeconds(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + (double)u.ru_utime.tv_usec / 1e6 + (double)u.ru_stime.tv_sec + (double)u.ru_stime.tv_usec / 1e6;
}

static void check(int code, sqlite3 *db, const char *what) {
    if (code == SQLITE_OK || code == SQLITE_DONE || code == SQLITE_ROW) return;
    fprintf(stderr, "sqlite-floor: %s: %s\n", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(code));
    exit(1);
}

static sqlite3_stmt *prepare(sqlite3 *db, const char *sql) {
    sqlite3_stmt *statement = NULL;
    check(sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &statement, NULL), db, sql);
    return statement;
}

/* Creates OUT_DB with SCHEMA_DB's tables and indexes. */
static sqlite3 *create(const char *schemaPath, const char *path) {
    sqlite3 *source = NULL, *db = NULL;
    check(sqlite3_open_v2(schemaPath, &source, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL), source, schemaPath);
    remove(path);
    char wal[4096], shm[4096];
    snprintf(wal, sizeof wal, "%s-wal", path);
    snprintf(shm, sizeof shm, "%s-shm", path);
    remove(wal);
    remove(shm);
    check(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, FLUJO_BATCHED_VFS_NAME), db, path);
    check(sqlite3_exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 4000;"
                           " PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY;", NULL, NULL, NULL), db, "settings");
    sqlite3_stmt *objects = prepare(source, "SELECT sql FROM sqlite_schema WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY type = 'index', rowid");
    int created = 0;
    while (sqlite3_step(objects) == SQLITE_ROW) {
        check(sqlite3_exec(db, (const char *)sqlite3_column_text(objects, 0), NULL, NULL, NULL), db, "schema");
        created++;
    }
    sqlite3_finalize(objects);
    sqlite3_close(source);
    if (created == 0) {
        fprintf(stderr, "sqlite-floor: %s has no tables; make one with `flujo db upgrade --db %s`\n", schemaPath, schemaPath);
        exit(1);
    }
    return db;
}

static void run(const char *schemaPath, const char *path, int tasks, int batch, int withReads, int withSteps) {
    sqlite3 *db = create(schemaPath, path);
    sqlite3_stmt *read = prepare(db, "SELECT status, execution_time_ms, is_background_task FROM workflow_state WHERE run_id = ?1");
    sqlite3_stmt *insert = prepare(db,
        "INSERT INTO workflow_state (run_id, pipeline_id, pipeline_name, pipeline_version, current_step_index, pipeline_context,"
        " last_step_output, step_history, status, created_at, updated_at, total_steps, error_message, execution_time_ms,"
        " memory_usage_mb, metadata, is_background_task, parent_run_id, task_id, error_category, attempts, resumed_from,"
        " step_name, cost_usd, tokens, owner, next_attempt_at, trace)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28)");
    sqlite3_stmt *update = prepare(db,
        "UPDATE workflow_state SET pipeline_id = ?2, pipeline_name = ?3, pipeline_version = ?4, current_step_index = ?5,"
        " pipeline_context = ?6, last_step_output = ?7, step_history = ?8, status = ?9, updated_at = ?11, total_steps = ?12,"
        " error_message = ?13, execution_time_ms = ?14, memory_usage_mb = ?15, metadata = ?16, error_category = ?20,"
        " attempts = ?21, resumed_from = ?22, step_name = ?23, cost_usd = ?24, tokens = ?25, owner = ?26,"
        " next_attempt_at = ?27, trace = coalesce(?28, trace) WHERE run_id = ?1");
    sqlite3_stmt *step = prepare(db,
        "INSERT INTO steps (run_id, step_index, step_name, success, output, attempts, latency_s, cost_usd, tokens, feedback, finished_at, seq)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)");
    /* A W8 task's values, as W8 writes them (ids time-ordered, 50 tasks a run). */
    const char *history = "[{\"attempts\":1,\"cost_usd\":0,\"feedback\":null,\"latency_s\":4.5e-05,\"name\":\"tiny\",\"output\":1,\"success\":true,\"tokens\":0}]";
    const char *trace = "00-0da17a8281e460023bab5a300ba08629-494ec1e5da247584-01;96f872df9466f597;1796187325235608405;1;";
    char runID[160], parent[64], taskID[64], metadata[512], feedback[128];
    const long long startMs = 1796187325235LL;
    long long sequence = 1796187325254774303LL;
    double wall = wallSeconds(), cpu = cpuSeconds();
    for (int first = 0; first < tasks + batch; first += batch) {
        check(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), db, "begin");
        for (int outcome = 0; outcome < 2; outcome++) {
            int from = outcome ? first - batch : first;
            if (from < 0 || from >= tasks) continue;
            for (int i = from; i < from + batch && i < tasks; i++) {
                long long ms = startMs + i / 20;
                snprintf(parent, sizeof parent, "run_%012llx%020x", ms, i / 50);
                snprintf(taskID, sizeof taskID, "bg_%012llx%020x", ms, i);
                snprintf(runID, sizeof runID, "%s_bg_%s", parent, taskID);
                snprintf(metadata, sizeof metadata,
                         "{\"error_category\":null,\"input_data\":1,\"parent_run_id\":\"%s\",\"step_name\":\"tiny\",\"task_id\":\"%s\"}", parent, taskID);
                if (withReads) {
                    sqlite3_bind_text(read, 1, runID, -1, SQLITE_TRANSIENT);
                    int found = sqlite3_step(read) == SQLITE_ROW;
                    sqlite3_reset(read);
                    if (found != outcome) { fprintf(stderr, "sqlite-floor: row of task %d %s\n", i, found ? "already there" : "missing"); exit(1); }
                }
                sqlite3_stmt *write = outcome ? update : insert;
                sqlite3_bind_text(write, 1, runID, -1, SQLITE_TRANSIENT);
                sqlite3_bind_text(write, 2, "w8@1", -1, SQLITE_STATIC);
                sqlite3_bind_text(write, 3, "w8", -1, SQLITE_STATIC);
                sqlite3_bind_text(write, 4, "1", -1, SQLITE_STATIC);
                sqlite3_bind_int(write, 5, outcome);
                sqlite3_bind_text(write, 6, "{}", -1, SQLITE_STATIC);
                if (outcome) sqlite3_bind_text(write, 7, "1", -1, SQLITE_STATIC); else sqlite3_bind_null(write, 7);
                sqlite3_bind_text(write, 8, outcome ? history : "[]", -1, SQLITE_STATIC);
                sqlite3_bind_text(write, 9, outcome ? "completed" : "running", -1, SQLITE_STATIC);
                sqlite3_bind_int64(write, 10, ms);
                sqlite3_bind_int64(write, 11, ms + outcome * 50);
                sqlite3_bind_int(write, 12, 1);
                sqlite3_bind_null(write, 13);
                if (outcome) sqlite3_bind_double(write, 14, 0.08); else sqlite3_bind_null(write, 14);
                sqlite3_bind_null(write, 15);
                sqlite3_bind_text(write, 16, metadata, -1, SQLITE_TRANSIENT);
                sqlite3_bind_int(write, 17, 1);
                sqlite3_bind_text(write, 18, parent, -1, SQLITE_TRANSIENT);
                sqlite3_bind_text(write, 19, taskID, -1, SQLITE_TRANSIENT);
                sqlite3_bind_null(write, 20);
                sqlite3_bind_int(write, 21, 1);
                sqlite3_bind_null(write, 22);
                sqlite3_bind_text(write, 23, "tiny", -1, SQLITE_STATIC);
                sqlite3_bind_double(write, 24, 0);
                sqlite3_bind_int(write, 25, 0);
                if (outcome) sqlite3_bind_null(write, 26); else sqlite3_bind_text(write, 26, "owner-4242-0123456789abcdef", -1, SQLITE_STATIC);
                sqlite3_bind_null(write, 27);
                if (outcome) sqlite3_bind_null(write, 28); else sqlite3_bind_text(write, 28, trace, -1, SQLITE_STATIC);
                check(sqlite3_step(write), db, "row");
                sqlite3_reset(write);
                if (withSteps) {
                    /* Launch: the parent's record of it; outcome: the task's own step. */
                    snprintf(feedback, sizeof feedback, "Launched in background (task_id=%s)", taskID);
                    sqlite3_bind_text(step, 1, outcome ? runID : parent, -1, SQLITE_TRANSIENT);
                    sqlite3_bind_int(step, 2, outcome ? 0 : i % 50);
                    sqlite3_bind_text(step, 3, "tiny", -1, SQLITE_STATIC);
                    sqlite3_bind_int(step, 4, 1);
                    sqlite3_bind_text(step, 5, "1", -1, SQLITE_STATIC);
                    sqlite3_bind_int(step, 6, 1);
                    sqlite3_bind_double(step, 7, 4.4e-6);
                    sqlite3_bind_double(step, 8, 0);
                    sqlite3_bind_int(step, 9, 0);
                    if (outcome) sqlite3_bind_null(step, 10); else sqlite3_bind_text(step, 10, feedback, -1, SQLITE_TRANSIENT);
                    sqlite3_bind_int64(step, 11, ms);
                    sqlite3_bind_int64(step, 12, sequence++);
                    check(sqlite3_step(step), db, "step record");
                    sqlite3_reset(step);
                }
            }
        }
        check(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), db, "commit");
    }
    double wallUsed = wallSeconds() - wall, cpuUsed = cpuSeconds() - cpu;
    sqlite3_stmt *count = prepare(db, "SELECT count(*) FROM workflow_state WHERE status = 'completed'");
    sqlite3_step(count);
    int completed = sqlite3_column_int(count, 0);
    sqlite3_finalize(count);
    if (completed != tasks) { fprintf(stderr, "sqlite-floor: %d of %d rows completed\n", completed, tasks); exit(1); }
    printf("{\"layout\":\"rows\",\"reads\":%s,\"step_records\":%s,\"tasks\":%d,\"batch\":%d,\"cpu_us_per_task\":%.2f,\"wall_us_per_task\":%.2f,\"tasks_per_cpu_second\":%.0f}\n",
           withReads ? "true" : "false", withSteps ? "true" : "false", tasks, batch, cpuUsed / tasks * 1e6, wallUsed / tasks * 1e6, tasks / cpuUsed);
    fflush(stdout);
    sqlite3_finalize(read);
    sqlite3_finalize(insert);
    sqlite3_finalize(update);
    sqlite3_finalize(step);
    sqlite3_close(db);
}

/* The grouped layout: tables of its own, created next to Flujo's. */
static void runGrouped(const char *schemaPath, const char *path, int tasks, int batch, int withIndex) {
    sqlite3 *db = create(schemaPath, path);
    check(sqlite3_exec(db,
        "CREATE TABLE launch_groups (group_id TEXT PRIMARY KEY, parent_run_id TEXT NOT NULL, owner TEXT, created_at INTEGER NOT NULL,"
        " pipeline_context TEXT NOT NULL, trace TEXT, tasks TEXT NOT NULL);"
        "CREATE TABLE outcome_batches (batch_id INTEGER PRIMARY KEY, finished_at INTEGER NOT NULL, outcomes TEXT NOT NULL);"
        "CREATE TABLE task_ids (task_id TEXT PRIMARY KEY, group_id TEXT NOT NULL) WITHOUT ROWID;", NULL, NULL, NULL), db, "grouped tables");
    sqlite3_stmt *group = prepare(db, "INSERT INTO launch_groups VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    sqlite3_stmt *outcomes = prepare(db, "INSERT INTO outcome_batches (finished_at, outcomes) VALUES (?1, ?2)");
    sqlite3_stmt *index = prepare(db, "INSERT INTO task_ids VALUES (?1, ?2)");
    const char *trace = "00-0da17a8281e460023bab5a300ba08629-494ec1e5da247584-01;96f872df9466f597;1796187325235608405;1;";
    const long long startMs = 1796187325235LL;
    size_t capacity = (size_t)batch * 160 + 64;
    char *launched = malloc(capacity), *finished = malloc(capacity);
    char parent[64], taskID[64], groupID[80];
    double wall = wallSeconds(), cpu = cpuSeconds();
    for (int first = 0; first < tasks + batch; first += batch) {
        check(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), db, "begin");
        /* Launches: one row per parent's group of 50 in this batch. */
        size_t used = 0;
        for (int i = first; i < first + batch && i < tasks; i++) {
            long long ms = startMs + i / 20;
            snprintf(parent, sizeof parent, "run_%012llx%020x", ms, i / 50);
            snprintf(taskID, sizeof taskID, "bg_%012llx%020x", ms, i);
            if (used == 0) {
                snprintf(groupID, sizeof groupID, "%s/%d", parent, i);
                used += (size_t)snprintf(launched + used, capacity - used, "[");
            }
            used += (size_t)snprintf(launched + used, capacity - used, "%s{\"task_id\":\"%s\",\"step_name\":\"tiny\",\"input\":1}",
                                     launched[used - 1] == '[' ? "" : ",", taskID);
            if (withIndex) {
                sqlite3_bind_text(index, 1, taskID, -1, SQLITE_TRANSIENT);
                sqlite3_bind_text(index, 2, groupID, -1, SQLITE_TRANSIENT);
                check(sqlite3_step(index), db, "task id");
                sqlite3_reset(index);
            }
            if (i % 50 == 49 || i + 1 == first + batch || i + 1 == tasks) {
                used += (size_t)snprintf(launched + used, capacity - used, "]");
                sqlite3_bind_text(group, 1, groupID, -1, SQLITE_TRANSIENT);
                sqlite3_bind_text(group, 2, parent, -1, SQLITE_TRANSIENT);
                sqlite3_bind_text(group, 3, "owner-4242-0123456789abcdef", -1, SQLITE_STATIC);
                sqlite3_bind_int64(group, 4, ms);
                sqlite3_bind_text(group, 5, "{}", -1, SQLITE_STATIC);
                sqlite3_bind_text(group, 6, trace, -1, SQLITE_STATIC);
                sqlite3_bind_text(group, 7, launched, (int)used, SQLITE_TRANSIENT);
                check(sqlite3_step(group), db, "launch group");
                sqlite3_reset(group);
                used = 0;
            }
        }
        /* Outcomes of the tasks launched one transaction before: one row. */
        int from = first - batch;
        if (from >= 0 && from < tasks) {
            size_t length = (size_t)snprintf(finished, capacity, "[");
            for (int i = from; i < from + batch && i < tasks; i++) {
                snprintf(taskID, sizeof taskID, "bg_%012llx%020x", startMs + i / 20, i);
                length += (size_t)snprintf(finished + length, capacity - length, "%s{\"task_id\":\"%s\",\"status\":\"completed\",\"output\":1,\"ms\":0.08}",
                                           i == from ? "" : ",", taskID);
            }
            length += (size_t)snprintf(finished + length, capacity - length, "]");
            sqlite3_bind_int64(outcomes, 1, startMs + from / 20 + 50);
            sqlite3_bind_text(outcomes, 2, finished, (int)length, SQLITE_TRANSIENT);
            check(sqlite3_step(outcomes), db, "outcomes");
            sqlite3_reset(outcomes);
        }
        check(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), db, "commit");
    }
    double wallUsed = wallSeconds() - wall, cpuUsed = cpuSeconds() - cpu;
    /* Every task launched once and finished once. */
    sqlite3_stmt *count = prepare(db,
        "SELECT (SELECT count(*) FROM launch_groups, json_each(launch_groups.tasks)),"
        " (SELECT count(*) FROM outcome_batches, json_each(outcome_batches.outcomes) WHERE json_each.value ->> 'status' = 'completed')");
    sqlite3_step(count);
    int launchedCount = sqlite3_column_int(count, 0), completed = sqlite3_column_int(count, 1);
    sqlite3_finalize(count);
    if (launchedCount != tasks || completed != tasks) {
        fprintf(stderr, "sqlite-floor: grouped: %d launched and %d completed of %d\n", launchedCount, completed, tasks);
        exit(1);
    }
    printf("{\"layout\":\"grouped\",\"task_id_index\":%s,\"tasks\":%d,\"batch\":%d,\"cpu_us_per_task\":%.2f,\"wall_us_per_task\":%.2f,\"tasks_per_cpu_second\":%.0f}\n",
           withIndex ? "true" : "false", tasks, batch, cpuUsed / tasks * 1e6, wallUsed / tasks * 1e6, tasks / cpuUsed);
    fflush(stdout);
    free(launched);
    free(finished);
    sqlite3_finalize(group);
    sqlite3_finalize(outcomes);
    sqlite3_finalize(index);
    sqlite3_close(db);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: sqlite-floor SCHEMA_DB OUT_DB [TASKS] [BATCH] [ROUNDS]\n");
        return 2;
    }
    int tasks = argc > 3 ? atoi(argv[3]) : 200000, batch = argc > 4 ? atoi(argv[4]) : 400, rounds = argc > 5 ? atoi(argv[5]) : 2;
    if (tasks < 1 || batch < 1 || rounds < 1) {
        fprintf(stderr, "sqlite-floor: TASKS, BATCH and ROUNDS must be positive whole numbers\n");
        return 2;
    }
    /* As the store does: no memory statistics, whose global mutex every allocation would take. */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    check(flujo_sqlite3_register_batched_vfs(), NULL, "the batched-log VFS");
    for (int round = 0; round < rounds; round++) {
        run(argv[1], argv[2], tasks, batch, 1, 1);
        run(argv[1], argv[2], tasks, batch, 0, 1);
        run(argv[1], argv[2], tasks, batch, 1, 0);
        run(argv[1], argv[2], tasks, batch, 0, 0);
        runGrouped(argv[1], argv[2], tasks, batch, 1);
        runGrouped(argv[1], argv[2], tasks, batch, 0);
    }
    return 0;
}
