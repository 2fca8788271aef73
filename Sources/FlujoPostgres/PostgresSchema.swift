import PostgresNIO

/// The layout of a PostgreSQL state database, in versioned migrations.
///
/// `flujo_schema_versions` records each version applied, with when. Opening
/// applies the missing versions in one transaction, under an advisory lock, so
/// processes that open the same database at once migrate it once. A database
/// of a newer version is refused with both versions named, and left as it is.
enum PostgresSchema {
    static let currentVersion = 4

    /// The advisory lock key migrations hold (`flujo` in ASCII).
    static let migrationLock: Int64 = 0x666C_756A_6F

    /// Version 1: the tables of the store and the counters kept in the same
    /// transactions as the rows. Version 2: the order of due tasks indexed.
    /// Version 3: the counters kept per statement. Version 4: the counters
    /// striped over 16 rows each, one per server session's `shard`.
    static let migrations: [(version: Int, statements: [String])] = [
        (1, [
            """
            CREATE TABLE workflow_state (
                run_id TEXT PRIMARY KEY,
                pipeline_id TEXT NOT NULL,
                pipeline_name TEXT NOT NULL,
                pipeline_version TEXT NOT NULL,
                current_step_index INTEGER NOT NULL DEFAULT 0,
                pipeline_context TEXT NOT NULL DEFAULT '{}',
                last_step_output TEXT,
                step_history TEXT NOT NULL DEFAULT '[]',
                status TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                updated_at BIGINT NOT NULL,
                total_steps INTEGER NOT NULL DEFAULT 0,
                error_message TEXT,
                execution_time_ms DOUBLE PRECISION,
                memory_usage_mb DOUBLE PRECISION,
                metadata TEXT NOT NULL DEFAULT '{}',
                is_background_task BOOLEAN NOT NULL DEFAULT FALSE,
                parent_run_id TEXT,
                task_id TEXT UNIQUE,
                error_category TEXT,
                attempts INTEGER NOT NULL DEFAULT 0,
                resumed_from TEXT,
                step_name TEXT,
                cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
                tokens BIGINT NOT NULL DEFAULT 0,
                owner TEXT,
                next_attempt_at BIGINT,
                trace TEXT
            )
            """,
            "CREATE INDEX workflow_state_background ON workflow_state (status, updated_at) WHERE is_background_task",
            "CREATE INDEX workflow_state_parent ON workflow_state (parent_run_id) WHERE parent_run_id IS NOT NULL",
            "CREATE INDEX workflow_state_created_at ON workflow_state (created_at)",
            "CREATE INDEX workflow_state_due ON workflow_state (next_attempt_at) WHERE status = 'failed' AND next_attempt_at IS NOT NULL",
            "CREATE INDEX workflow_state_owner ON workflow_state (owner) WHERE status = 'running' AND owner IS NOT NULL",
            """
            CREATE TABLE runs (
                run_id TEXT PRIMARY KEY,
                pipeline_name TEXT NOT NULL,
                pipeline_version TEXT NOT NULL,
                status TEXT NOT NULL,
                started_at BIGINT NOT NULL,
                ended_at BIGINT,
                cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
                tokens BIGINT NOT NULL DEFAULT 0,
                background_cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
                background_tokens BIGINT NOT NULL DEFAULT 0
            )
            """,
            "CREATE INDEX runs_ended ON runs (ended_at) WHERE ended_at IS NOT NULL",
            """
            CREATE TABLE steps (
                run_id TEXT NOT NULL,
                seq BIGSERIAL,
                step_index INTEGER NOT NULL,
                step_name TEXT NOT NULL,
                success BOOLEAN NOT NULL,
                output TEXT,
                attempts INTEGER NOT NULL DEFAULT 1,
                latency_s DOUBLE PRECISION NOT NULL DEFAULT 0,
                cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
                tokens BIGINT NOT NULL DEFAULT 0,
                feedback TEXT,
                finished_at BIGINT NOT NULL,
                PRIMARY KEY (run_id, seq)
            )
            """,
            """
            CREATE TABLE spans (
                span_id TEXT PRIMARY KEY,
                trace_id TEXT NOT NULL,
                parent_span_id TEXT,
                run_id TEXT NOT NULL,
                name TEXT NOT NULL,
                start_unix_nano BIGINT NOT NULL,
                end_unix_nano BIGINT NOT NULL,
                status TEXT NOT NULL DEFAULT 'unset',
                status_message TEXT,
                attributes TEXT NOT NULL DEFAULT '{}',
                is_background BOOLEAN NOT NULL DEFAULT FALSE
            )
            """,
            "CREATE INDEX spans_run ON spans (run_id)",
            "CREATE INDEX spans_trace ON spans (trace_id, start_unix_nano)",
            """
            CREATE TABLE status_counts (
                is_background BOOLEAN NOT NULL,
                status TEXT NOT NULL,
                count BIGINT NOT NULL DEFAULT 0,
                PRIMARY KEY (is_background, status)
            )
            """,
            "CREATE TABLE stat_totals (name TEXT PRIMARY KEY, value DOUBLE PRECISION NOT NULL DEFAULT 0)",
            "CREATE TABLE created_per_hour (hour BIGINT PRIMARY KEY, count BIGINT NOT NULL DEFAULT 0)",
            """
            INSERT INTO stat_totals (name, value) VALUES
                ('total_runs', 0), ('duration_sum_ms', 0), ('duration_count', 0), ('pruned_runs', 0)
            """,
            // The counters follow every change of a row in the same transaction, so a
            // count never scans and always equals a recount. Only retention deletes rows.
            """
            CREATE FUNCTION flujo_count_rows() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP = 'INSERT' OR TG_OP = 'UPDATE' THEN
                    INSERT INTO status_counts (is_background, status, count) VALUES (NEW.is_background_task, NEW.status, 1)
                    ON CONFLICT (is_background, status) DO UPDATE SET count = status_counts.count + 1;
                END IF;
                IF TG_OP = 'DELETE' OR TG_OP = 'UPDATE' THEN
                    UPDATE status_counts SET count = count - 1 WHERE is_background = OLD.is_background_task AND status = OLD.status;
                END IF;
                IF TG_OP = 'INSERT' THEN
                    UPDATE stat_totals SET value = value + 1 WHERE name = 'total_runs';
                    INSERT INTO created_per_hour (hour, count) VALUES (NEW.created_at / 3600000, 1)
                    ON CONFLICT (hour) DO UPDATE SET count = created_per_hour.count + 1;
                    IF NEW.execution_time_ms IS NOT NULL THEN
                        UPDATE stat_totals SET value = value + NEW.execution_time_ms WHERE name = 'duration_sum_ms';
                        UPDATE stat_totals SET value = value + 1 WHERE name = 'duration_count';
                    END IF;
                ELSIF TG_OP = 'DELETE' THEN
                    UPDATE stat_totals SET value = value - 1 WHERE name = 'total_runs';
                    UPDATE stat_totals SET value = value + 1 WHERE name = 'pruned_runs';
                    UPDATE created_per_hour SET count = count - 1 WHERE hour = OLD.created_at / 3600000;
                    IF OLD.execution_time_ms IS NOT NULL THEN
                        UPDATE stat_totals SET value = value - OLD.execution_time_ms WHERE name = 'duration_sum_ms';
                        UPDATE stat_totals SET value = value - 1 WHERE name = 'duration_count';
                    END IF;
                ELSIF OLD.execution_time_ms IS DISTINCT FROM NEW.execution_time_ms THEN
                    UPDATE stat_totals SET value = value + coalesce(NEW.execution_time_ms, 0) - coalesce(OLD.execution_time_ms, 0)
                        WHERE name = 'duration_sum_ms';
                    UPDATE stat_totals SET value = value + (CASE WHEN NEW.execution_time_ms IS NULL THEN 0 ELSE 1 END)
                        - (CASE WHEN OLD.execution_time_ms IS NULL THEN 0 ELSE 1 END) WHERE name = 'duration_count';
                END IF;
                RETURN NULL;
            END
            $$
            """,
            """
            CREATE TRIGGER workflow_state_counted AFTER INSERT OR DELETE ON workflow_state
            FOR EACH ROW EXECUTE FUNCTION flujo_count_rows()
            """,
            // Workers LISTEN on flujo_due: a task that becomes failed with a next attempt wakes them.
            """
            CREATE FUNCTION flujo_notify_due() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify('flujo_due', '');
                RETURN NULL;
            END
            $$
            """,
            """
            CREATE TRIGGER workflow_state_due AFTER INSERT OR UPDATE OF status, next_attempt_at ON workflow_state
            FOR EACH ROW WHEN (NEW.status = 'failed' AND NEW.next_attempt_at IS NOT NULL)
            EXECUTE FUNCTION flujo_notify_due()
            """,
            // Most updates (a step's progress) change neither status nor duration: no counter is touched.
            """
            CREATE TRIGGER workflow_state_recounted AFTER UPDATE ON workflow_state
            FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.execution_time_ms IS DISTINCT FROM NEW.execution_time_ms)
            EXECUTE FUNCTION flujo_count_rows()
            """,
        ]),
        // Version 2: due tasks indexed in the order claimers take them, so the next
        // one is the index's first entry instead of a sort of every due task.
        (2, [
            """
            CREATE INDEX workflow_state_due_order ON workflow_state (next_attempt_at, run_id)
            WHERE status = 'failed' AND next_attempt_at IS NOT NULL
            """,
            "DROP INDEX workflow_state_due",
        ]),
        // Version 3: the counters follow each statement, not each row: a statement
        // that changes 10,000 rows (recovery, retention) updates each counter row
        // once. The deltas come from the statement's transition tables.
        (3, [
            "DROP TRIGGER workflow_state_counted ON workflow_state",
            "DROP TRIGGER workflow_state_recounted ON workflow_state",
            "DROP FUNCTION flujo_count_rows()",
            """
            CREATE FUNCTION flujo_count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NOT EXISTS (SELECT 1 FROM new_rows) THEN RETURN NULL; END IF;
                INSERT INTO status_counts (is_background, status, count)
                SELECT is_background_task, status, count(*) FROM new_rows GROUP BY 1, 2
                ON CONFLICT (is_background, status) DO UPDATE SET count = status_counts.count + excluded.count;
                INSERT INTO created_per_hour (hour, count)
                SELECT created_at / 3600000, count(*) FROM new_rows GROUP BY 1
                ON CONFLICT (hour) DO UPDATE SET count = created_per_hour.count + excluded.count;
                UPDATE stat_totals AS t SET value = t.value + CASE t.name
                        WHEN 'total_runs' THEN c.rows WHEN 'duration_sum_ms' THEN c.total ELSE c.timed END
                FROM (SELECT count(*)::double precision AS rows, coalesce(sum(execution_time_ms), 0) AS total,
                             count(execution_time_ms)::double precision AS timed FROM new_rows) AS c
                WHERE t.name = 'total_runs' OR (c.timed > 0 AND t.name IN ('duration_sum_ms', 'duration_count'));
                RETURN NULL;
            END
            $$
            """,
            """
            CREATE FUNCTION flujo_count_updated() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                \(countsNothingUnchanged)
                INSERT INTO status_counts (is_background, status, count)
                SELECT b, s, sum(d) FROM (
                    SELECT is_background_task AS b, status AS s, 1 AS d FROM new_rows
                    UNION ALL SELECT is_background_task, status, -1 FROM old_rows) AS changes
                GROUP BY b, s HAVING sum(d) <> 0
                ON CONFLICT (is_background, status) DO UPDATE SET count = status_counts.count + excluded.count;
                UPDATE stat_totals AS t SET value = t.value + CASE t.name WHEN 'duration_sum_ms' THEN c.total ELSE c.timed END
                FROM (SELECT (SELECT coalesce(sum(execution_time_ms), 0) FROM new_rows) - (SELECT coalesce(sum(execution_time_ms), 0) FROM old_rows) AS total,
                             ((SELECT count(execution_time_ms) FROM new_rows) - (SELECT count(execution_time_ms) FROM old_rows))::double precision AS timed) AS c
                WHERE t.name IN ('duration_sum_ms', 'duration_count') AND (c.total <> 0 OR c.timed <> 0);
                RETURN NULL;
            END
            $$
            """,
            """
            CREATE FUNCTION flujo_count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NOT EXISTS (SELECT 1 FROM old_rows) THEN RETURN NULL; END IF;
                UPDATE status_counts AS t SET count = t.count - c.rows
                FROM (SELECT is_background_task AS b, status AS s, count(*) AS rows FROM old_rows GROUP BY 1, 2) AS c
                WHERE t.is_background = c.b AND t.status = c.s;
                UPDATE created_per_hour AS t SET count = t.count - c.rows
                FROM (SELECT created_at / 3600000 AS hour, count(*) AS rows FROM old_rows GROUP BY 1) AS c
                WHERE t.hour = c.hour;
                UPDATE stat_totals AS t SET value = t.value + CASE t.name
                        WHEN 'total_runs' THEN -c.rows WHEN 'pruned_runs' THEN c.rows
                        WHEN 'duration_sum_ms' THEN -c.total ELSE -c.timed END
                FROM (SELECT count(*)::double precision AS rows, coalesce(sum(execution_time_ms), 0) AS total,
                             count(execution_time_ms)::double precision AS timed FROM old_rows) AS c
                WHERE t.name IN ('total_runs', 'pruned_runs') OR (c.timed > 0 AND t.name IN ('duration_sum_ms', 'duration_count'));
                RETURN NULL;
            END
            $$
            """,
            """
            CREATE TRIGGER workflow_state_counted_inserts AFTER INSERT ON workflow_state
            REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION flujo_count_inserted()
            """,
            """
            CREATE TRIGGER workflow_state_counted_updates AFTER UPDATE ON workflow_state
            REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION flujo_count_updated()
            """,
            """
            CREATE TRIGGER workflow_state_counted_deletes AFTER DELETE ON workflow_state
            REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION flujo_count_deleted()
            """,
        ]),
        // Version 4: every counter is kept in 16 stripes, and a session adds to the
        // stripe its process id picks. One row per counter made every transaction that
        // changes a task's status wait for the one before it to commit (the row's lock);
        // stripes let concurrent sessions commit side by side. Readers add the stripes up.
        (4, [
            "ALTER TABLE status_counts ADD COLUMN shard SMALLINT NOT NULL DEFAULT 0",
            "ALTER TABLE status_counts DROP CONSTRAINT status_counts_pkey",
            "ALTER TABLE status_counts ADD PRIMARY KEY (is_background, status, shard)",
            "ALTER TABLE created_per_hour ADD COLUMN shard SMALLINT NOT NULL DEFAULT 0",
            "ALTER TABLE created_per_hour DROP CONSTRAINT created_per_hour_pkey",
            "ALTER TABLE created_per_hour ADD PRIMARY KEY (hour, shard)",
            "ALTER TABLE stat_totals ADD COLUMN shard SMALLINT NOT NULL DEFAULT 0",
            "ALTER TABLE stat_totals DROP CONSTRAINT stat_totals_pkey",
            "ALTER TABLE stat_totals ADD PRIMARY KEY (name, shard)",
            // Every stripe of each total exists, so the triggers update it in place.
            "INSERT INTO stat_totals (name, shard, value) SELECT name, stripe, 0 FROM (SELECT DISTINCT name FROM stat_totals) AS n, generate_series(1, 15) AS stripe",
            // Each statement's changes are added in one order (by key), so two sessions
            // that share a stripe take its rows' locks in the same order.
            """
            CREATE OR REPLACE FUNCTION flujo_count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE stripe SMALLINT := (pg_backend_pid() % 16)::smallint;
            BEGIN
                IF NOT EXISTS (SELECT 1 FROM new_rows) THEN RETURN NULL; END IF;
                INSERT INTO status_counts (is_background, status, shard, count)
                SELECT is_background_task, status, stripe, count(*) FROM new_rows GROUP BY 1, 2 ORDER BY 1, 2
                ON CONFLICT (is_background, status, shard) DO UPDATE SET count = status_counts.count + excluded.count;
                INSERT INTO created_per_hour (hour, shard, count)
                SELECT created_at / 3600000, stripe, count(*) FROM new_rows GROUP BY 1 ORDER BY 1
                ON CONFLICT (hour, shard) DO UPDATE SET count = created_per_hour.count + excluded.count;
                UPDATE stat_totals AS t SET value = t.value + CASE t.name
                        WHEN 'total_runs' THEN c.rows WHEN 'duration_sum_ms' THEN c.total ELSE c.timed END
                FROM (SELECT count(*)::double precision AS rows, coalesce(sum(execution_time_ms), 0) AS total,
                             count(execution_time_ms)::double precision AS timed FROM new_rows) AS c
                WHERE t.shard = stripe AND (t.name = 'total_runs' OR (c.timed > 0 AND t.name IN ('duration_sum_ms', 'duration_count')));
                RETURN NULL;
            END
            $$
            """,
            """
            CREATE OR REPLACE FUNCTION flujo_count_updated() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE stripe SMALLINT := (pg_backend_pid() % 16)::smallint;
            BEGIN
                \(countsNothingUnchanged)
                INSERT INTO status_counts (is_background, status, shard, count)
                SELECT b, s, stripe, sum(d) FROM (
                    SELECT is_background_task AS b, status AS s, 1 AS d FROM new_rows
                    UNION ALL SELECT is_background_task, status, -1 FROM old_rows) AS changes
                GROUP BY b, s HAVING sum(d) <> 0 ORDER BY b, s
                ON CONFLICT (is_background, status, shard) DO UPDATE SET count = status_counts.count + excluded.count;
                UPDATE stat_totals AS t SET value = t.value + CASE t.name WHEN 'duration_sum_ms' THEN c.total ELSE c.timed END
                FROM (SELECT (SELECT coalesce(sum(execution_time_ms), 0) FROM new_rows) - (SELECT coalesce(sum(execution_time_ms), 0) FROM old_rows) AS total,
                             ((SELECT count(execution_time_ms) FROM new_rows) - (SELECT count(execution_time_ms) FROM old_rows))::double precision AS timed) AS c
                WHERE t.shard = stripe AND t.name IN ('duration_sum_ms', 'duration_count') AND (c.total <> 0 OR c.timed <> 0);
                RETURN NULL;
            END
            $$
            """,
            """
            CREATE OR REPLACE FUNCTION flujo_count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE stripe SMALLINT := (pg_backend_pid() % 16)::smallint;
            BEGIN
                IF NOT EXISTS (SELECT 1 FROM old_rows) THEN RETURN NULL; END IF;
                INSERT INTO status_counts (is_background, status, shard, count)
                SELECT is_background_task, status, stripe, -count(*) FROM old_rows GROUP BY 1, 2 ORDER BY 1, 2
                ON CONFLICT (is_background, status, shard) DO UPDATE SET count = status_counts.count + excluded.count;
                INSERT INTO created_per_hour (hour, shard, count)
                SELECT created_at / 3600000, stripe, -count(*) FROM old_rows GROUP BY 1 ORDER BY 1
                ON CONFLICT (hour, shard) DO UPDATE SET count = created_per_hour.count + excluded.count;
                UPDATE stat_totals AS t SET value = t.value + CASE t.name
                        WHEN 'total_runs' THEN -c.rows WHEN 'pruned_runs' THEN c.rows
                        WHEN 'duration_sum_ms' THEN -c.total ELSE -c.timed END
                FROM (SELECT count(*)::double precision AS rows, coalesce(sum(execution_time_ms), 0) AS total,
                             count(execution_time_ms)::double precision AS timed FROM old_rows) AS c
                WHERE t.shard = stripe AND (t.name IN ('total_runs', 'pruned_runs') OR (c.timed > 0 AND t.name IN ('duration_sum_ms', 'duration_count')));
                RETURN NULL;
            END
            $$
            """,
        ]),
    ]

    /// The start of the update counters of versions 3 and 4: a statement that
    /// changes no status and no duration (a step's progress, a heartbeat) counts nothing.
    static let countsNothingUnchanged = """
                -- Most updates (a step's progress, a heartbeat) change neither status nor duration.
                IF NOT EXISTS (SELECT 1 FROM old_rows AS o JOIN new_rows AS n ON n.run_id = o.run_id
                               WHERE o.status IS DISTINCT FROM n.status OR o.execution_time_ms IS DISTINCT FROM n.execution_time_ms) THEN
                    RETURN NULL;
                END IF;
        """

    /// Applies the versions `database` lacks; refuses a newer database. All of
    /// it runs in one transaction under an advisory lock, so concurrent opens
    /// (from any process or machine) migrate once and never race on a table.
    /// `upTo` stops at an older version (tests of upgrades).
    static func migrate(_ database: PostgresDatabase, upTo target: Int = currentVersion) async throws(PostgresStoreError) {
        try await database.execute("BEGIN")
        do throws(PostgresStoreError) {
            try await database.execute("SELECT pg_advisory_xact_lock(\(migrationLock))")
            try await database.execute("""
                CREATE TABLE IF NOT EXISTS flujo_schema_versions (
                    version INTEGER PRIMARY KEY,
                    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
                )
                """)
            let found = try await database.schemaVersion()
            if found > currentVersion {
                throw .newerSchema(location: database.location.description, found: found, supported: currentVersion)
            }
            for migration in migrations where migration.version > found && migration.version <= target {
                for statement in migration.statements { try await database.execute(PostgresQuery(unsafeSQL: statement)) }
                try await database.execute("INSERT INTO flujo_schema_versions (version) VALUES (\(migration.version))")
            }
            try await database.execute("COMMIT")
        } catch {
            try? await database.execute("ROLLBACK")
            throw error
        }
    }
}
