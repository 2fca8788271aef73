import Flujo
import FlujoSQLite
import FlujoTestSupport
import FlujoTesting
import Testing

/// Every store the conformance suite runs against. A new store is one case
/// here and one line in `make()`; the suite itself does not change.
enum StoreKind: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case memory
    case sqlite

    var testDescription: String { rawValue }

    /// A new, empty store of this kind.
    func make() throws -> any StateStore {
        switch self {
        case .memory: return InMemoryStateStore()
        case .sqlite: return try open(Self.newDatabasePath())
        }
    }

    /// A store on the state at `path`; stores of kinds that share state see each other's rows and claims.
    func open(_ path: String) throws -> any StateStore {
        switch self {
        case .memory: return InMemoryStateStore()
        case .sqlite: return try SQLiteStateStore(path: path)
        }
    }

    /// Where a new database goes: a file in a folder of its own.
    static func newDatabasePath() -> String {
        TestSupport.temporaryDirectory("flujo-conformance").appendingPathComponent("state.db").path
    }

    /// Whether a claim excludes other stores of this kind (other processes), not only this one.
    var claimsSpanStores: Bool { self != .memory }

    /// Whether the store records which process runs each task, so that a live
    /// one is never failed by the heartbeat rule (and a dead one is found at once).
    var tracksOwners: Bool { self != .memory }
}
