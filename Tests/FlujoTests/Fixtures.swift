import Flujo
import FlujoSQLite
import FlujoTestSupport
import FlujoTesting
import Foundation
import Synchronization

/// A transient network failure, as a flaky service would throw.
struct FlakyNetworkError: Error, CategorizedError, CustomStringConvertible {
    var category: ErrorCategory { .network }
    var description: String { "connection reset by peer" }
}

/// An error the classifier knows nothing about.
struct OddError: Error {}

struct Order: Codable, Sendable, Hashable {
    var id: String
    var amount: Double
}

/// A counter shared with steps.
final class Counter: Sendable {
    private let value = Mutex(0)
    @discardableResult func increment() -> Int { value.withLock { $0 += 1; return $0 } }
    var count: Int { value.withLock { $0 } }
}

let validate = Step<Order, Order>("validate") { order, _ in
    guard order.amount > 0 else { throw ValidationFailure(message: "amount must be positive") }
    return order
}

let charge = Step<Order, Order>("charge") { order, context in
    try context.reportUsage(costUSD: 0.01, tokens: 5)
    context.updateContext { $0["charged"] = .bool(true) }
    return order
}

struct ValidationFailure: Error, CategorizedError, CustomStringConvertible {
    var message: String
    var category: ErrorCategory { .validation }
    var description: String { message }
}

/// A background step that fails with a network error until `healthy` is set.
final class FlakyService: Sendable {
    let healthy = Mutex(false)
    let calls = Counter()

    var step: Step<Order, String> {
        Step<Order, String>("send_receipt") { [self] order, _ in
            calls.increment()
            if healthy.withLock({ $0 }) { return "receipt for \(order.id)" }
            throw FlakyNetworkError()
        }
    }
}

/// A runner on a fresh SQLite file, with a recording sink.
func makeRunner(
    settings: FlujoSettings = FlujoSettings(), path: String? = nil, file: String = #fileID
) throws -> (Runner, RecordingSink, String) {
    let path = path ?? TestSupport.temporaryDirectory("flujo-runner").appendingPathComponent("state.db").path
    let store = try SQLiteStateStore(path: path)
    let sink = RecordingSink()
    let hooks = HookBus()
    hooks.register(sink)
    return (Runner(store: store, settings: settings, hooks: hooks), sink, path)
}

/// Waits until a task reaches a status other than running.
func waitForTask(_ runner: Runner, _ taskID: String, timeout: Duration = .seconds(10)) async throws -> WorkflowState? {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if let state = try await runner.store.loadTask(taskID: taskID), state.status != .running { return state }
        try await Task.sleep(for: .milliseconds(2))
    }
    return try await runner.store.loadTask(taskID: taskID)
}
