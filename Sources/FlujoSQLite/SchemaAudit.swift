import Flujo

/// Finds what a database's schema holds that Flujo did not create.
///
/// Triggers, views, defaults and generated columns run with the rights of
/// whoever opens the file: a file from elsewhere could delete rows from a
/// trigger or fill the disk from a column default. Every open checks the
/// schema against the one Flujo creates (built once per process in memory),
/// before anything is migrated or written, and refuses a file with objects
/// that are not Flujo's; `flujo db check` reports them.
enum SchemaAudit {
    struct Column: Hashable {
        let name: String
        let defaultValue: String?
        let hidden: Int
    }

    struct Shape {
        var tables: [String: [String: Column]] = [:]
        var indexes: Set<String> = []
    }

    /// The schema of the current version, read from a database made in memory.
    static let expected: Shape? = {
        guard let connection = try? SQLiteConnection(path: ":memory:", readOnly: false, create: true, busyTimeoutMs: 0),
              (try? Schema.migrate(connection)) != nil
        else { return nil }
        return try? shape(of: connection)
    }()

    /// Triggers version 2 kept the counters with; the migration to version 3 drops them.
    static let versionTwoTriggers: Set<String> = [
        "workflow_state_counted_insert", "workflow_state_counted_status", "workflow_state_counted_duration", "workflow_state_counted_delete",
    ]

    /// What the file holds that Flujo did not create, one line each; empty when nothing.
    static func foreignObjects(_ connection: SQLiteConnection) throws(StateStoreError) -> [String] {
        guard let expected else { return [] }
        let version = try Schema.userVersion(connection)
        var problems: [String] = []
        let objects = try connection.statement("SELECT type, name, tbl_name FROM sqlite_master ORDER BY type, name")
        var found: [(type: String, name: String, table: String)] = []
        while try objects.step() {
            found.append((objects.string(0) ?? "", objects.string(1) ?? "", objects.string(2) ?? ""))
        }
        connection.resetActive()
        for object in found {
            switch object.type {
            case "trigger" where version <= 2 && versionTwoTriggers.contains(object.name):
                continue
            case "trigger":
                problems.append("trigger \(object.name) on \(object.table)")
            case "view":
                problems.append("view \(object.name)")
            case "index" where object.name.hasPrefix("sqlite_autoindex_") || expected.indexes.contains(object.name):
                continue
            case "index":
                problems.append("index \(object.name) on \(object.table)")
            case "table" where object.name.hasPrefix("sqlite_"):
                continue
            case "table":
                guard let columns = expected.tables[object.name] else {
                    problems.append("table \(object.name)")
                    continue
                }
                let dropped = Set(Schema.droppedColumns.filter { $0.table == object.name }.map(\.name))
                for column in try tableColumns(object.name, connection) {
                    if let wanted = columns[column.name] {
                        if column.hidden != 0 { problems.append("generated column \(object.name).\(column.name)") }
                        if column.defaultValue != wanted.defaultValue {
                            problems.append("default \(column.defaultValue ?? "NULL") of \(object.name).\(column.name) (Flujo's is \(wanted.defaultValue ?? "none"))")
                        }
                    } else if !dropped.contains(column.name) {
                        problems.append("column \(object.name).\(column.name)")
                    }
                }
            default:
                problems.append("\(object.type) \(object.name)")
            }
        }
        return problems
    }

    static func shape(of connection: SQLiteConnection) throws(StateStoreError) -> Shape {
        var shape = Shape()
        let objects = try connection.statement("SELECT type, name FROM sqlite_master WHERE type IN ('table', 'index') AND name NOT LIKE 'sqlite_%'")
        var names: [(String, String)] = []
        while try objects.step() { names.append((objects.string(0) ?? "", objects.string(1) ?? "")) }
        connection.resetActive()
        for (type, name) in names {
            if type == "index" {
                shape.indexes.insert(name)
            } else {
                var columns: [String: Column] = [:]
                for column in try tableColumns(name, connection) { columns[column.name] = column }
                shape.tables[name] = columns
            }
        }
        return shape
    }

    static func tableColumns(_ table: String, _ connection: SQLiteConnection) throws(StateStoreError) -> [Column] {
        let statement = try connection.statement("SELECT name, dflt_value, hidden FROM pragma_table_xinfo(?1)")
        statement.bind(1, table)
        var columns: [Column] = []
        while try statement.step() {
            columns.append(Column(name: statement.string(0) ?? "", defaultValue: statement.string(1), hidden: statement.int(2)))
        }
        connection.resetActive()
        return columns
    }
}
