import Flujo

/// The layout of a Flujo state database and how older layouts are brought up to date.
///
/// Version 1 is the base layout (the columns of the original `workflow_state`
/// plus `runs`, `steps` and `spans`). Version 2 adds what resumability needs and
/// the maintained counters, kept by triggers. Version 3 drops the triggers: the
/// store adds each transaction's changes to the counters in that transaction
/// (see `CounterChanges`), a few statements per commit instead of several per row.
/// Version 4 drops the columns nothing wrote or read any more
/// (`background_error`, which repeated `error_message`, and the lease columns
/// of the claims that are locks now). Version 5 adds `trace`, the record a
/// task keeps of its trace (`TaskTrace`). A database is migrated and repaired by the same
/// path: every column of `addedColumns` that is missing is added, after its
/// name and definition passed `validateColumnAddition`.
enum Schema {
    static let currentVersion = 6
    /// The oldest version a read-only store can read as it is: version 2 has
    /// every column and counter the store's queries read (version 4 only dropped
    /// columns; version 5's `trace` is read by resumes and recovery, which migrate first).
    static let oldestReadableVersion = 2

    /// Tables of version 1. `CREATE ... IF NOT EXISTS`, so they also repair a missing table.
    static let baseTables = """
        CREATE TABLE IF NOT EXISTS workflow_state (
            run_id TEXT PRIMARY KEY,
            pipeline_id TEXT NOT NULL,
            pipeline_name TEXT NOT NULL,
            pipeline_version TEXT NOT NULL,
            current_step_index INTEGER NOT NULL DEFAULT 0,
            pipeline_context TEXT NOT NULL DEFAULT '{}',
            last_step_output TEXT,
            step_history TEXT NOT NULL DEFAULT '[]',
            status TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            total_steps INTEGER NOT NULL DEFAULT 0,
            error_message TEXT,
            execution_time_ms REAL,
            memory_usage_mb REAL,
            metadata TEXT NOT NULL DEFAULT '{}',
            is_background_task INTEGER NOT NULL DEFAULT 0,
            parent_run_id TEXT,
            task_id TEXT
        );
        CREATE TABLE IF NOT EXISTS runs (
            run_id TEXT PRIMARY KEY,
            pipeline_name TEXT NOT NULL,
            pipeline_version TEXT NOT NULL,
            status TEXT NOT NULL,
            started_at INTEGER NOT NULL,
            ended_at INTEGER,
            cost_usd REAL NOT NULL DEFAULT 0,
            tokens INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE IF NOT EXISTS steps (
            run_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            step_index INTEGER NOT NULL,
            step_name TEXT NOT NULL,
            success INTEGER NOT NULL,
            output TEXT,
            attempts INTEGER NOT NULL DEFAULT 1,
            latency_s REAL NOT NULL DEFAULT 0,
            cost_usd REAL NOT NULL DEFAULT 0,
            tokens INTEGER NOT NULL DEFAULT 0,
            feedback TEXT,
            finished_at INTEGER NOT NULL,
            PRIMARY KEY (run_id, seq)
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS spans (
            span_id TEXT PRIMARY KEY,
            trace_id TEXT NOT NULL,
            parent_span_id TEXT,
            run_id TEXT NOT NULL,
            name TEXT NOT NULL,
            start_unix_nano INTEGER NOT NULL,
            end_unix_nano INTEGER NOT NULL,
            status TEXT NOT NULL DEFAULT 'unset',
            status_message TEXT,
            attributes TEXT NOT NULL DEFAULT '{}',
            is_background INTEGER NOT NULL DEFAULT 0
        );
        """

    /// Columns added after version 1: the whitelist. Nothing else is ever added.
    static let addedColumns: [(table: String, name: String, definition: String)] = [
        ("workflow_state", "error_category", "TEXT"),
        ("workflow_state", "attempts", "INTEGER NOT NULL DEFAULT 0"),
        ("workflow_state", "resumed_from", "TEXT"),
        ("workflow_state", "step_name", "TEXT"),
        ("workflow_state", "cost_usd", "REAL NOT NULL DEFAULT 0"),
        ("workflow_state", "tokens", "INTEGER NOT NULL DEFAULT 0"),
        ("workflow_state", "owner", "TEXT"),
        ("workflow_state", "next_attempt_at", "INTEGER"),
        ("workflow_state", "trace", "TEXT"),
        ("runs", "background_cost_usd", "REAL NOT NULL DEFAULT 0"),
        ("runs", "background_tokens", "INTEGER NOT NULL DEFAULT 0"),
    ]

    /// Counter tables and the indexes behind every query the store makes. The
    /// counters change in the same transaction as the rows they count.
    /// Background listings and stale cleanup use a partial index, so foreground
    /// saves never touch it; recovery finds running foreground runs by owner
    /// through another (version 6), which background tasks never touch; counts
    /// per status come from the counters, so no index on status alone is kept.
    static let version2Objects = """
        CREATE TABLE IF NOT EXISTS status_counts (
            is_background INTEGER NOT NULL,
            status TEXT NOT NULL,
            count INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (is_background, status)
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS stat_totals (
            name TEXT PRIMARY KEY,
            value REAL NOT NULL DEFAULT 0
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS created_per_hour (
            hour INTEGER PRIMARY KEY,
            count INTEGER NOT NULL DEFAULT 0
        );
        CREATE UNIQUE INDEX IF NOT EXISTS workflow_state_task_id ON workflow_state (task_id) WHERE task_id IS NOT NULL;
        CREATE INDEX IF NOT EXISTS workflow_state_background ON workflow_state (status, updated_at) WHERE is_background_task = 1;
        CREATE INDEX IF NOT EXISTS workflow_state_parent ON workflow_state (parent_run_id) WHERE parent_run_id IS NOT NULL;
        CREATE INDEX IF NOT EXISTS workflow_state_created_at ON workflow_state (created_at);
        CREATE INDEX IF NOT EXISTS workflow_state_due ON workflow_state (next_attempt_at) WHERE status = 'failed' AND next_attempt_at IS NOT NULL;
        CREATE INDEX IF NOT EXISTS workflow_state_running_runs ON workflow_state (owner) WHERE is_background_task = 0 AND status = 'running';
        CREATE INDEX IF NOT EXISTS runs_ended ON runs (ended_at) WHERE ended_at IS NOT NULL;
        CREATE INDEX IF NOT EXISTS spans_run ON spans (run_id);
        CREATE INDEX IF NOT EXISTS spans_trace ON spans (trace_id, start_unix_nano);
        """

    /// Rebuilds the counters from the rows; run whenever the counter tables are new.
    static let rebuildCounters = """
        DELETE FROM status_counts;
        INSERT INTO status_counts (is_background, status, count)
            SELECT kind.value, state.value, 0
            FROM (SELECT 0 AS value UNION ALL SELECT 1) AS kind,
                 (SELECT 'running' AS value UNION ALL SELECT 'paused' UNION ALL SELECT 'completed'
                  UNION ALL SELECT 'failed' UNION ALL SELECT 'cancelled') AS state;
        INSERT INTO status_counts (is_background, status, count)
            SELECT is_background_task, status, count(*) FROM workflow_state GROUP BY is_background_task, status
            ON CONFLICT (is_background, status) DO UPDATE SET count = excluded.count;
        DELETE FROM stat_totals WHERE name != 'pruned_runs';
        INSERT INTO stat_totals (name, value) VALUES
            ('total_runs', (SELECT count(*) FROM workflow_state)),
            ('duration_sum_ms', (SELECT COALESCE(sum(execution_time_ms), 0) FROM workflow_state)),
            ('duration_count', (SELECT count(execution_time_ms) FROM workflow_state));
        DELETE FROM created_per_hour;
        INSERT INTO created_per_hour (hour, count)
            SELECT created_at / 3600000, count(*) FROM workflow_state GROUP BY created_at / 3600000;
        """

    /// Columns of earlier versions that version 4 drops: the only columns ever dropped.
    static let droppedColumns: [(table: String, name: String)] = [
        ("workflow_state", "background_error"),
        ("workflow_state", "lease_owner"),
        ("workflow_state", "lease_expires_at"),
    ]

    private static var columnNamePattern: Regex<Substring> { /^[a-z][a-z0-9_]{0,62}$/ }
    private static var columnDefinitionPattern: Regex<AnyRegexOutput> {
        Regex(/^(TEXT|INTEGER|REAL)( NOT NULL)?( DEFAULT (0|-?[1-9][0-9]{0,17}(\.[0-9]{1,9})?))?$/)
    }

    /// Checks a column addition before any SQL is built from it: the table and
    /// name must be on the whitelist and the definition must be a plain type
    /// with an optional NOT NULL and numeric default (no quotes, `;`, `--` or keywords).
    static func validateColumnAddition(table: String, name: String, definition: String) throws(StateStoreError) {
        guard (try? columnNamePattern.wholeMatch(in: name)) != nil else {
            throw .unsafeSchemaChange("column name \(name.debugDescription) is not a plain lowercase identifier")
        }
        guard addedColumns.contains(where: { $0.table == table && $0.name == name }) else {
            throw .unsafeSchemaChange("column \(table).\(name) is not on the whitelist of added columns")
        }
        guard (try? columnDefinitionPattern.wholeMatch(in: definition)) != nil else {
            throw .unsafeSchemaChange("column definition \(definition.debugDescription) for \(table).\(name) is not a plain type with an optional NOT NULL and numeric DEFAULT")
        }
    }

    /// Brings the database to `currentVersion`: creates, migrates or repairs it.
    static func migrate(_ connection: SQLiteConnection) throws(StateStoreError) {
        let found = try userVersion(connection)
        if found > currentVersion {
            throw .newerSchema(path: connection.path, found: found, supported: currentVersion)
        }
        if found == currentVersion, try missingColumns(connection).isEmpty, try counterTablesExist(connection) {
            return
        }
        try connection.transaction { () throws(StateStoreError) in
            let again = try userVersion(connection)
            if again > currentVersion {
                throw .newerSchema(path: connection.path, found: again, supported: currentVersion)
            }
            try connection.execute(baseTables)
            for column in try missingColumns(connection) {
                try validateColumnAddition(table: column.table, name: column.name, definition: column.definition)
                try connection.execute("ALTER TABLE \(column.table) ADD COLUMN \(column.name) \(column.definition)")
            }
            for column in try presentDroppedColumns(connection) {
                guard (try? columnNamePattern.wholeMatch(in: column.name)) != nil else {
                    throw .unsafeSchemaChange("column name \(column.name.debugDescription) is not a plain lowercase identifier")
                }
                try connection.execute("ALTER TABLE \(column.table) DROP COLUMN \(column.name)")
            }
            let countersExisted = try counterTablesExist(connection)
            try connection.execute(droppedTriggers)
            try connection.execute(version2Objects)
            if !countersExisted || again < currentVersion {
                try connection.execute(rebuildCounters)
            }
            try connection.execute("PRAGMA user_version = \(currentVersion)")
        }
    }

    static func userVersion(_ connection: SQLiteConnection) throws(StateStoreError) -> Int {
        defer { connection.resetActive() }
        let statement = try connection.statement("PRAGMA user_version")
        return try statement.step() ? statement.int(0) : 0
    }

    /// Columns of `droppedColumns` the database still has.
    static func presentDroppedColumns(_ connection: SQLiteConnection) throws(StateStoreError) -> [(table: String, name: String)] {
        var found: [(table: String, name: String)] = []
        for column in droppedColumns {
            let statement = try connection.statement("SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2")
            statement.bind(1, column.table)
            statement.bind(2, column.name)
            if try statement.step(), statement.int(0) > 0 { found.append(column) }
            statement.reset()
        }
        connection.resetActive()
        return found
    }

    /// Whitelisted columns whose table exists but lacks them, or whose table is missing.
    static func missingColumns(_ connection: SQLiteConnection) throws(StateStoreError) -> [(table: String, name: String, definition: String)] {
        var present: [String: Set<String>] = [:]
        for table in Set(addedColumns.map(\.table)) {
            let statement = try connection.statement("SELECT name FROM pragma_table_info(?)")
            statement.bind(1, table)
            var names = Set<String>()
            while try statement.step() { if let name = statement.string(0) { names.insert(name) } }
            present[table] = names
        }
        connection.resetActive()
        return addedColumns.filter { !(present[$0.table]?.contains($0.name) ?? false) }
    }

    /// The counter triggers of version 2; the store keeps the counters itself since version 3.
    static let droppedTriggers = """
        DROP TRIGGER IF EXISTS workflow_state_counted_insert;
        DROP TRIGGER IF EXISTS workflow_state_counted_status;
        DROP TRIGGER IF EXISTS workflow_state_counted_duration;
        DROP TRIGGER IF EXISTS workflow_state_counted_delete;
        """

    static func counterTablesExist(_ connection: SQLiteConnection) throws(StateStoreError) -> Bool {
        let statement = try connection.statement(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('status_counts', 'stat_totals', 'created_per_hour')")
        defer { connection.resetActive() }
        return try statement.step() && statement.int(0) == 3
    }
}
