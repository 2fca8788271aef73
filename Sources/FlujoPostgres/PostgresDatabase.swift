import Flujo
import Logging
import NIOCore
import NIOSSL
import PostgresNIO
import Synchronization

/// A connection to a PostgreSQL state database, opened and brought to the
/// current schema: the first part of the PostgreSQL state store.
///
/// Connecting is bounded by the URI's `connect_timeout` and every statement by
/// its `statement_timeout_ms`, so a server that is down or stuck is a clear
/// one-line error (`PostgresStoreError`), never a hang.
public final class PostgresDatabase: Sendable {
    /// What `pg_stat_activity` shows for this process's sessions: `flujo`
    /// and the process as it owns tasks (host, pid, a random suffix), so an
    /// operator can tell which process a session, a lock or a claim belongs
    /// to. PostgreSQL keeps at most 63 bytes.
    static let applicationName = String(decoding: Array(("flujo " + Identifiers.processOwner).utf8.prefix(63)), as: UTF8.self)

    /// Where it is.
    public let location: PostgresLocation
    let logger: Logger
    /// The connection in use: replaced by a new one when it is lost.
    private let current: Mutex<PostgresConnection>
    private let lifecycle = Mutex<Lifecycle>(Lifecycle())
    /// Run on every new connection before it is used (the locks connection takes its locks back).
    private let restore = Mutex<(@Sendable (PostgresConnection) async throws -> Void)?>(nil)

    private struct Lifecycle {
        var closed = false
        var reconnecting: Task<PostgresConnection, any Error>?
        var watched = false
    }

    private init(location: PostgresLocation, connection: PostgresConnection, logger: Logger) {
        self.location = location
        self.current = Mutex(connection)
        self.logger = logger
    }

    deinit {
        // A connection must be closed before it is released: one nobody closed is
        // closed now, and kept until it is.
        let connection = self.connection
        let closing: EventLoopFuture<Void> = connection.close()
        closing.whenComplete { _ in withExtendedLifetime(connection) {} }
    }

    /// The connection in use (it may have been lost: statements use `live()`).
    var connection: PostgresConnection { current.withLock { $0 } }

    /// The connection in use, or a new one when it was lost (a server restart,
    /// a killed session). Connecting again is tried for the location's
    /// `reconnectWindow` (at least once), by one caller at a time.
    func live() async throws(PostgresStoreError) -> PostgresConnection {
        let connection = self.connection
        if !connection.isClosed { return connection }
        return try await reconnect()
    }

    /// Runs `body` on every connection made from now on, before it is used.
    func onReconnect(_ body: @escaping @Sendable (PostgresConnection) async throws -> Void) {
        restore.withLock { $0 = body }
    }

    /// Connects again as soon as the connection is lost, not at its next use:
    /// for the connection whose session holds locks, which must be taken back
    /// within the reconnect window.
    func keepConnected() {
        let start = lifecycle.withLock { state -> Bool in
            defer { state.watched = true }
            return !state.watched
        }
        if start { watch(connection) }
    }

    private func watch(_ connection: PostgresConnection) {
        connection.closeFuture.whenComplete { [weak self] _ in
            Task { [weak self] in
                while let self, !self.lifecycle.withLock({ $0.closed }), self.connection === connection {
                    do {
                        _ = try await self.reconnect()
                        return
                    } catch {
                        // Closed meanwhile (a graceful stop cancels the attempt): nothing failed.
                        if self.lifecycle.withLock({ $0.closed }) { return }
                        self.logger.warning("PostgreSQL state connection lost; connecting again: \(error)")
                        try? await Task.sleep(for: .seconds(1))
                    }
                }
            }
        }
    }

    private func reconnect() async throws(PostgresStoreError) -> PostgresConnection {
        let task = lifecycle.withLock { state -> Task<PostgresConnection, any Error>? in
            guard !state.closed else { return nil }
            if let running = state.reconnecting { return running }
            let running = Task { try await self.connectAgain() }
            state.reconnecting = running
            return running
        }
        guard let task else { throw .cannotConnect(location: location.description, reason: "the store was closed") }
        do {
            return try await task.value
        } catch let error as PostgresStoreError {
            throw error
        } catch {
            throw Self.map(error, location)
        }
    }

    private func connectAgain() async throws -> PostgresConnection {
        defer { lifecycle.withLock { $0.reconnecting = nil } }
        let old = connection
        if !old.isClosed { return old }
        let deadline = ContinuousClock.now + location.reconnectWindow
        var delay = Duration.milliseconds(50)
        while true {
            do {
                let connection = try await Self.connect(location, logger: logger)
                do {
                    try await restore.withLock({ $0 })?(connection)
                } catch {
                    try? await connection.close()
                    throw error
                }
                let watched = lifecycle.withLock { state -> Bool? in state.closed ? nil : state.watched }
                guard let watched else {
                    try? await connection.close()
                    throw PostgresStoreError.cannotConnect(location: location.description, reason: "the store was closed")
                }
                current.withLock { $0 = connection }
                if watched { watch(connection) }
                logger.notice("PostgreSQL state connection to \(location) made again")
                return connection
            } catch {
                guard ContinuousClock.now + delay < deadline else { throw error }
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(1))
            }
        }
    }

    /// Connects and migrates the schema to `PostgresSchema.currentVersion`;
    /// with `migrate: false` (read-only commands), changes nothing and refuses
    /// a database that is not at the current version.
    public static func open(
        _ location: PostgresLocation, migrate: Bool = true, logger: Logger = Logger(label: "flujo.postgres")
    ) async throws(PostgresStoreError) -> PostgresDatabase {
        try await open(location, migrate: migrate, upTo: PostgresSchema.currentVersion, logger: logger)
    }

    /// `open`, migrating no further than version `target` (tests of upgrades).
    static func open(
        _ location: PostgresLocation, migrate: Bool, upTo target: Int, logger: Logger = Logger(label: "flujo.postgres")
    ) async throws(PostgresStoreError) -> PostgresDatabase {
        let connection = try await connect(location, logger: logger)
        let database = PostgresDatabase(location: location, connection: connection, logger: logger)
        if migrate {
            try await PostgresSchema.migrate(database, upTo: target)
        } else {
            let tables = try await database.tableNames()
            let found = tables.contains("flujo_schema_versions") ? try await database.schemaVersion() : 0
            if found == 0 {
                throw .statement(location: location.description, message: "no Flujo state here yet; a command that writes (flujo demo, a resume) creates it")
            }
            if found > PostgresSchema.currentVersion {
                throw .newerSchema(location: location.description, found: found, supported: PostgresSchema.currentVersion)
            }
        }
        return database
    }

    /// The schema version recorded in the database (0 when none was applied).
    public func schemaVersion() async throws(PostgresStoreError) -> Int {
        let rows = try await query("SELECT coalesce(max(version), 0) FROM flujo_schema_versions")
        return rows.first.map { $0 } ?? 0
    }

    /// The schema version this Flujo writes.
    public static let currentSchemaVersion = PostgresSchema.currentVersion

    /// Every version applied, in order.
    public func appliedVersions() async throws(PostgresStoreError) -> [Int] {
        try await query("SELECT version FROM flujo_schema_versions ORDER BY version")
    }

    /// The tables of the database's current schema.
    public func tableNames() async throws(PostgresStoreError) -> Set<String> {
        do {
            var names = Set<String>()
            let rows = try await live().query("SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()", logger: logger)
            for try await name in rows.decode(String.self) { names.insert(name) }
            return names
        } catch {
            throw Self.map(error, location)
        }
    }

    /// Creates a database named `name` on the server of `server` (tests and tools).
    public static func createDatabase(_ name: String, on server: PostgresLocation) async throws(PostgresStoreError) {
        let admin = try await open(server)
        defer { Task { await admin.close() } }
        try await admin.createDatabase(name)
    }

    /// Creates a database on the same server (tests and tools).
    func createDatabase(_ name: String) async throws(PostgresStoreError) {
        guard name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
            throw .statement(location: location.description, message: "database name \(name.debugDescription) is not a plain identifier")
        }
        try await execute(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"))
    }

    /// Records a schema version as applied (tests of newer databases).
    func recordVersionForTest(_ version: Int) async throws(PostgresStoreError) {
        try await execute("INSERT INTO flujo_schema_versions (version) VALUES (\(version))")
    }

    /// Closes the connection; it is not made again.
    public func close() async {
        let reconnecting = lifecycle.withLock { state in
            state.closed = true
            return state.reconnecting
        }
        reconnecting?.cancel()
        _ = try? await reconnecting?.value
        try? await connection.close()
    }

    /// Runs a statement; the first column of each row as an Int.
    func query(_ statement: PostgresQuery) async throws(PostgresStoreError) -> [Int] {
        do {
            var values: [Int] = []
            for try await value in try await live().query(statement, logger: logger).decode(Int.self) { values.append(value) }
            return values
        } catch {
            throw Self.map(error, location)
        }
    }

    /// Runs a prepared statement (prepared on this connection at its first use).
    func prepared<Statement: PostgresPreparedStatement>(_ statement: Statement) async throws(PostgresStoreError) -> [Statement.Row] {
        do {
            var rows: [Statement.Row] = []
            for try await row in try await live().execute(statement, logger: logger) { rows.append(row) }
            return rows
        } catch {
            throw Self.map(error, location)
        }
    }

    /// Runs a statement and decodes each row.
    func rows<T>(_ statement: PostgresQuery, _ decode: (PostgresRandomAccessRow) throws -> T) async throws(PostgresStoreError) -> [T] {
        do {
            var values: [T] = []
            for try await row in try await live().query(statement, logger: logger) {
                values.append(try decode(row.makeRandomAccess()))
            }
            return values
        } catch let error as PostgresStoreError {
            throw error
        } catch {
            throw Self.map(error, location)
        }
    }

    /// Runs statements that return nothing.
    func execute(_ statement: PostgresQuery) async throws(PostgresStoreError) {
        do {
            _ = try await live().query(statement, logger: logger)
        } catch {
            throw Self.map(error, location)
        }
    }

    private static func connect(_ location: PostgresLocation, logger: Logger) async throws(PostgresStoreError) -> PostgresConnection {
        let tls: PostgresConnection.Configuration.TLS
        do {
            switch location.tls {
            case .disable: tls = .disable
            case .prefer: tls = .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
            case .require: tls = .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
            }
        } catch {
            throw .cannotConnect(location: location.description, reason: "TLS could not be set up: \(error)")
        }
        var configuration = PostgresConnection.Configuration(
            host: location.host, port: location.port, username: location.user, password: location.password,
            database: location.database, tls: tls)
        let timeout = location.connectTimeout.components
        configuration.options.connectTimeout = .nanoseconds(timeout.seconds * 1_000_000_000 + timeout.attoseconds / 1_000_000_000)
        configuration.options.additionalStartupParameters = [
            ("statement_timeout", String(location.statementTimeoutMs)), ("application_name", Self.applicationName),
        ]
        let ready = configuration
        do {
            // connect_timeout bounds the TCP connect; the whole handshake is bounded too.
            return try await withThrowingTaskGroup(of: PostgresConnection?.self) { group in
                group.addTask { try await PostgresConnection.connect(configuration: ready, id: 1, logger: logger) }
                group.addTask {
                    try await Task.sleep(for: location.connectTimeout)
                    return nil
                }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let connection = first else {
                    throw PostgresStoreError.connectTimedOut(location: location.description, seconds: location.connectTimeout.seconds)
                }
                return connection
            }
        } catch let error as PostgresStoreError {
            throw error
        } catch let error as PSQLError {
            throw map(error, location)
        } catch {
            throw .cannotConnect(location: location.description, reason: "\(error)")
        }
    }

    /// The one-line error a client error stands for.
    static func map(_ error: any Error, _ location: PostgresLocation) -> PostgresStoreError {
        let place = location.description
        guard let error = error as? PSQLError else {
            return .statement(location: place, message: "\(error)")
        }
        if let state = error.serverInfo?[.sqlState] {
            let message = error.serverInfo?[.message] ?? "server error \(state)"
            switch state {
            case "28P01", "28000": return .authenticationFailed(location: place, user: location.user)
            case "3D000": return .databaseMissing(location: place, database: location.database)
            case "57014": return .statement(location: place, message: "a statement ran past statement_timeout_ms (\(location.statementTimeoutMs) ms) and was cancelled")
            default: return .statement(location: place, message: "\(message) (SQLSTATE \(state))")
            }
        }
        switch error.code {
        case .authMechanismRequiresPassword:
            return .authenticationFailed(location: place, user: location.user)
        case .connectionError:
            let reason = error.underlying.map { "\($0)" } ?? "connection failed"
            if reason.contains("connectTimeout") {
                return .connectTimedOut(location: place, seconds: location.connectTimeout.seconds)
            }
            return .cannotConnect(location: place, reason: reason)
        case .serverClosedConnection, .clientClosedConnection, .uncleanShutdown:
            return .cannotConnect(location: place, reason: "the connection was closed")
        default:
            return .statement(location: place, message: "\(error.code)")
        }
    }
}

extension Duration {
    var seconds: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}
