import Flujo
import FlujoPostgres
import FlujoSQLite
import FlujoTestSupport
import FlujoTesting
import Foundation
import Testing

/// Every store the conformance suite runs against. A new store is one case
/// here and one line in `make()`; the suite itself does not change.
enum StoreKind: String, CustomTestStringConvertible, Sendable {
    case memory
    case sqlite
    case postgres

    /// The PostgreSQL server `make test` starts (`FLUJO_TEST_POSTGRES_URI`).
    static let postgresServer = ProcessInfo.processInfo.environment["FLUJO_TEST_POSTGRES_URI"]

    /// The kinds to run: PostgreSQL only with a server, and saying so when there is none.
    static let allCases: [StoreKind] = {
        if postgresServer == nil {
            print("StoreKind: no FLUJO_TEST_POSTGRES_URI, so the PostgreSQL store is not tested here; `make test` starts a server and sets it")
            return [.memory, .sqlite]
        }
        return [.memory, .sqlite, .postgres]
    }()

    var testDescription: String { rawValue }

    /// A new, empty store of this kind.
    func make() async throws -> any StateStore {
        switch self {
        case .memory: return InMemoryStateStore()
        case .sqlite, .postgres: return try await open(newLocation())
        }
    }

    /// A store on the state at `location`; stores of kinds that share state see each other's rows and claims.
    func open(_ location: String) async throws -> any StateStore {
        switch self {
        case .memory: return InMemoryStateStore()
        case .sqlite: return try SQLiteStateStore(path: location)
        case .postgres: return try await PostgresStateStore.open(try PostgresLocation(uri: location))
        }
    }

    /// Where a new database of this kind goes: a file in a folder of its own, or a new database on the test server.
    func newLocation() async throws -> String {
        switch self {
        case .memory, .sqlite:
            return TestSupport.temporaryDirectory("flujo-conformance").appendingPathComponent("state.db").path
        case .postgres:
            let server = try PostgresLocation(uri: try #require(Self.postgresServer))
            let name = "flujo_conformance_\(UInt32.random(in: 0...UInt32.max))"
            try await PostgresDatabase.createDatabase(name, on: server)
            return (try #require(Self.postgresServer)).replacingOccurrences(of: "/\(server.database)", with: "/\(name)")
        }
    }

    /// Whether a claim excludes other stores of this kind (other processes), not only this one.
    var claimsSpanStores: Bool { self != .memory }

    /// Whether the store records which process runs each task, so that a live
    /// one is never failed by the heartbeat rule (and a dead one is found at once).
    var tracksOwners: Bool { self != .memory }
}
