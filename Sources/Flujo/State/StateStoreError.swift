/// Errors a state store reports; each message says what went wrong and what to do.
public enum StateStoreError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The file could not be opened or created.
    case cannotOpen(path: String, reason: String)
    /// The file exists but is not a SQLite database.
    case notADatabase(path: String)
    /// The database was written by a newer Flujo.
    case newerSchema(path: String, found: Int, supported: Int)
    /// A read-only open found a layout too old to read without upgrading it.
    case olderSchema(path: String, found: Int, supported: Int)
    /// The schema holds triggers, views, tables, columns, defaults or indexes Flujo did not create.
    case foreignSchema(path: String, objects: [String])
    /// Another connection held the write lock longer than the busy timeout.
    case locked(path: String, timeoutMs: Int)
    /// The disk or the database's page limit is full.
    case diskFull(path: String)
    /// The file or its folder is not writable.
    case readOnly(path: String)
    /// The database file is damaged.
    case corrupt(path: String, detail: String)
    /// A schema change was refused before any SQL ran.
    case unsafeSchemaChange(String)
    /// Reading a file that does not exist (read-only commands never create one).
    case missingDatabase(path: String)
    /// Any other storage error, with the engine's code and message.
    case storage(path: String, code: Int32, message: String)
    /// An outcome refused because another process has taken the task over
    /// since this one started its attempt (a store shared over a network, whose
    /// session was lost meanwhile). Writing it again cannot succeed: the newer
    /// attempt decides the task.
    case superseded(taskID: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotOpen(path, reason):
            return "cannot open state database at \(path): \(reason). Check the path (a file whose folder exists and is writable), or pass another path with --db."
        case let .notADatabase(path):
            return "\(path) is not a SQLite database. Point --db (or [state] uri) at a Flujo state file, or at a new path to create one."
        case let .newerSchema(path, found, supported):
            return "state database \(path) has schema version \(found), newer than version \(supported) this Flujo supports. Upgrade Flujo, or use another database file."
        case let .olderSchema(path, 0, _):
            return "state database \(path) holds no Flujo tables (schema version 0): it is empty or not a Flujo state file. Point --db (or [state] uri) at a Flujo state file; `flujo db upgrade` would create the tables in this one."
        case let .olderSchema(path, found, supported):
            return "state database \(path) has schema version \(found), too old to read without upgrading it to version \(supported). Upgrade it with `flujo db upgrade` (it keeps every row), then run this command again."
        case let .foreignSchema(path, objects):
            let listed = objects.prefix(5).joined(separator: ", ") + (objects.count > 5 ? " and \(objects.count - 5) more" : "")
            return "state database \(path) holds schema objects Flujo did not create (\(listed)); they would run with your rights, so it is not opened. Run `flujo db check` for a report, then drop them or restore a backup."
        case let .locked(path, timeoutMs):
            return "state database \(path) stayed locked by another connection for more than \(timeoutMs) ms. Retry later, or raise [state] busy_timeout_ms."
        case let .diskFull(path):
            return "cannot write state database \(path): the disk (or the database's size limit) is full. Free space, then retry; nothing committed was lost."
        case let .readOnly(path):
            return "cannot write state database \(path): the file or its folder is read-only. Fix the permissions or use another path."
        case let .corrupt(path, detail):
            return "state database \(path) is damaged (\(detail)). `flujo db check` lists what is damaged; restore it from a backup, or move it away to start a new one."
        case let .unsafeSchemaChange(detail):
            return "refused schema change: \(detail)"
        case let .missingDatabase(path):
            return "no state database at \(path). Run a pipeline first (for example `flujo demo`), or pass the right file with --db."
        case let .storage(path, code, message):
            return "state database \(path): \(message) (SQLite code \(code))"
        case let .superseded(taskID, reason):
            return "the outcome of task \(taskID) was not saved: \(reason). Its next attempt decides it; `flujo tasks show \(taskID)` tells which."
        }
    }
}

extension StateStoreError {
    /// Whether the write was refused for good (`superseded`).
    public var isSuperseded: Bool {
        if case .superseded = self { return true }
        return false
    }
}
