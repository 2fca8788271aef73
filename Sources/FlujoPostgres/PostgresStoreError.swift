/// Why a PostgreSQL state database could not be used: one line, naming where
/// (host, port, database; never the password) and what to do.
public enum PostgresStoreError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The state URI cannot be read.
    case invalidURI(String)
    /// No server answered (down, wrong host or port, refused).
    case cannotConnect(location: String, reason: String)
    /// Connecting took longer than `connect_timeout`.
    case connectTimedOut(location: String, seconds: Double)
    /// The server refused the user or password.
    case authenticationFailed(location: String, user: String)
    /// The database does not exist on the server.
    case databaseMissing(location: String, database: String)
    /// The database was migrated by a newer Flujo.
    case newerSchema(location: String, found: Int, supported: Int)
    /// A statement failed.
    case statement(location: String, message: String)

    public var description: String {
        switch self {
        case let .invalidURI(problem):
            return "invalid PostgreSQL state URI: \(problem)"
        case let .cannotConnect(location, reason):
            return "cannot connect to \(location): \(reason). Check that the server runs and listens on that host and port."
        case let .connectTimedOut(location, seconds):
            return "cannot connect to \(location): no answer within \(Self.format(seconds)) s (connect_timeout). Check the host, the port and the network."
        case let .authenticationFailed(location, user):
            return "cannot connect to \(location): the server refused user \(user) or its password. Give the password in the URI, PGPASSWORD or the password file."
        case let .databaseMissing(location, database):
            return "cannot use \(location): database \(database) does not exist. Create it (createdb \(database)) or name another one."
        case let .newerSchema(location, found, supported):
            return "\(location) has schema version \(found), newer than the \(supported) this Flujo supports. Upgrade Flujo; nothing was changed."
        case let .statement(location, message):
            return "\(location): \(message)"
        }
    }

    private static func format(_ seconds: Double) -> String {
        seconds == seconds.rounded() ? String(Int(seconds)) : String(seconds)
    }
}
