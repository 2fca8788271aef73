import Flujo
import Foundation

/// What `SQLiteStateStore.check(path:)` found in a state database.
public struct DatabaseCheckReport: Sendable, Hashable {
    /// The file checked.
    public var path: String
    /// `PRAGMA user_version`.
    public var schemaVersion: Int
    /// What `PRAGMA quick_check` reported, one problem each; empty when the file is intact.
    public var damage: [String]
    /// Schema objects Flujo did not create.
    public var foreignObjects: [String]
    /// Maintained counters that differ from a recount of the rows.
    public var counterMismatches: [String]
    /// Why the counters were not recounted (a damaged file, objects Flujo did
    /// not create, a layout without counters); nil when they were.
    public var countersNotChecked: String?
    /// The network file system that holds the file (`NetworkFileSystem`), or
    /// nil on a local disk. Not a fault by itself: it is one while processes
    /// on more than one host use the file.
    public var networkFileSystem: String? = nil

    /// Whether nothing is wrong.
    public var isHealthy: Bool {
        damage.isEmpty && foreignObjects.isEmpty && counterMismatches.isEmpty
            && schemaVersion >= Schema.oldestReadableVersion && schemaVersion <= Schema.currentVersion
    }

    /// What to do about each problem found, one line each.
    public var advice: [String] {
        var lines: [String] = []
        if schemaVersion > Schema.currentVersion {
            lines.append("schema version \(schemaVersion) is newer than \(Schema.currentVersion): upgrade Flujo before using this file")
        } else if schemaVersion < Schema.oldestReadableVersion {
            lines.append("schema version \(schemaVersion) is too old to read: `flujo db upgrade` brings it to \(Schema.currentVersion), keeping every row")
        }
        if !damage.isEmpty {
            lines.append("the file is damaged: restore it from a backup, or salvage its rows with `sqlite3 \(path) .recover` into a new file")
        }
        if !foreignObjects.isEmpty {
            lines.append("drop what Flujo did not create (with the sqlite3 shell: DROP TRIGGER, DROP VIEW, ...), or restore a backup; Flujo will not open the file until then")
        }
        if !counterMismatches.isEmpty {
            lines.append("`flujo db upgrade --rebuild-counters` recounts them from the rows")
        }
        if let networkFileSystem {
            lines.append(NetworkFileSystem.warning(path: path, fileSystem: networkFileSystem))
        }
        return lines
    }
}

extension SQLiteStateStore {
    /// Checks a state database without changing it: SQLite's `quick_check`, the
    /// schema version, schema objects Flujo did not create, and the maintained
    /// counters against a recount of the rows.
    public static func check(path: String) throws(StateStoreError) -> DatabaseCheckReport {
        guard FileManager.default.fileExists(atPath: path) else { throw .missingDatabase(path: path) }
        let connection = try SQLiteConnection(path: path, readOnly: true, create: false, busyTimeoutMs: 5000)
        defer { connection.close() }
        try connection.execute("PRAGMA trusted_schema = OFF")
        let version = try Schema.userVersion(connection)
        var damage: [String] = []
        do {
            let quick = try connection.statement("PRAGMA quick_check(20)")
            // A row may hold several problems, one per line.
            while try quick.step() {
                if let text = quick.string(0), text != "ok" {
                    // "*** in database main ***" heads the problems of one database; it is not one itself.
                    damage += text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
                        .filter { !$0.isEmpty && !($0.hasPrefix("*** in database") && $0.hasSuffix("***")) }
                }
            }
        } catch {
            // SQLite can stop the check at a page it cannot read: what it found so far stands, and so does that.
            guard case let .corrupt(_, detail) = error else { throw error }
            damage.append("the check stopped at a page it could not read (\(detail))")
        }
        connection.resetActive()
        var foreign: [String] = []
        do {
            foreign = try SchemaAudit.foreignObjects(connection)
        } catch {
            guard case let .corrupt(_, detail) = error else { throw error }
            damage.append("the list of tables and indexes could not be read (\(detail))")
        }
        connection.resetActive()
        var mismatches: [String] = []
        let hasCounters = version >= 3 ? try Schema.counterTablesExist(connection) : false
        let notChecked: String?
        if !damage.isEmpty {
            notChecked = "the file is damaged"
        } else if !foreign.isEmpty {
            notChecked = "the file holds objects Flujo did not create"
        } else if !hasCounters {
            notChecked = "schema version \(version) keeps no counters; `flujo db upgrade` adds them"
        } else {
            notChecked = nil
            mismatches = try counterMismatches(connection)
        }
        return DatabaseCheckReport(
            path: path, schemaVersion: version, damage: damage, foreignObjects: foreign, counterMismatches: mismatches,
            countersNotChecked: notChecked, networkFileSystem: NetworkFileSystem.name(holding: path))
    }

    private static func counterMismatches(_ connection: SQLiteConnection) throws(StateStoreError) -> [String] {
        var mismatches: [String] = []
        func pairs(_ sql: String) throws(StateStoreError) -> [String: Double] {
            let statement = try connection.statement(sql)
            var values: [String: Double] = [:]
            while try statement.step() { values[statement.string(0) ?? ""] = statement.double(1) }
            connection.resetActive()
            return values
        }
        let kept = try pairs("SELECT is_background || ':' || status, count FROM status_counts WHERE count != 0")
        let counted = try pairs("SELECT is_background_task || ':' || status, count(*) FROM workflow_state GROUP BY 1")
        for key in Set(kept.keys).union(counted.keys).sorted() where kept[key, default: 0] != counted[key, default: 0] {
            let parts = key.split(separator: ":")
            let kind = parts.first == "1" ? "background tasks" : "runs"
            mismatches.append("\(kind) \(parts.last ?? ""): counter \(Int(saturating: kept[key, default: 0])), rows \(Int(saturating: counted[key, default: 0]))")
        }
        let totals = try pairs("SELECT name, value FROM stat_totals")
        let recount = try pairs("""
            SELECT 'total_runs', count(*) FROM workflow_state
            UNION ALL SELECT 'duration_sum_ms', COALESCE(sum(execution_time_ms), 0) FROM workflow_state
            UNION ALL SELECT 'duration_count', count(execution_time_ms) FROM workflow_state
            """)
        for name in recount.keys.sorted() where abs(totals[name, default: 0] - recount[name, default: 0]) > 1e-6 * max(1, abs(recount[name, default: 0])) {
            mismatches.append("\(name): counter \(totals[name, default: 0]), rows \(recount[name, default: 0])")
        }
        let hours = try pairs("SELECT hour, count FROM created_per_hour WHERE count != 0")
        let hourRecount = try pairs("SELECT created_at / 3600000, count(*) FROM workflow_state GROUP BY 1")
        let wrongHours = Set(hours.keys).union(hourRecount.keys).filter { hours[$0, default: 0] != hourRecount[$0, default: 0] }
        if !wrongHours.isEmpty { mismatches.append("runs created per hour: \(wrongHours.count) hour(s) differ from the rows") }
        return mismatches
    }

    /// Recounts the maintained counters from the rows, in one transaction.
    public func rebuildCounters() throws(StateStoreError) {
        try withConnection { (connection) throws(StateStoreError) in
            try connection.transaction { () throws(StateStoreError) in
                try connection.execute(Schema.rebuildCounters)
            }
        }
    }
}
