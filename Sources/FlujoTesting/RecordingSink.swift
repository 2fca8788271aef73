import Flujo
import Synchronization

/// A hook sink that keeps every event it receives, for assertions in tests.
public final class RecordingSink: HookSink {
    public let name: String
    public let interests: Set<HookEventKind>
    private let recorded = Mutex<[HookEvent]>([])

    /// Creates a sink recording the given kinds (all by default).
    public init(name: String = "recording", interests: Set<HookEventKind> = Set(HookEventKind.allCases)) {
        self.name = name
        self.interests = interests
    }

    public func handle(_ event: HookEvent) async throws {
        recorded.withLock { $0.append(event) }
    }

    /// Every event so far, in arrival order.
    public var events: [HookEvent] { recorded.withLock { $0 } }

    /// The kinds of the events of one run, in order.
    public func kinds(runID: String) -> [HookEventKind] {
        events.filter { $0.runID == runID }.map(\.kind)
    }

    /// Events of one run.
    public func events(runID: String) -> [HookEvent] {
        events.filter { $0.runID == runID }
    }

    /// Forgets what was recorded.
    public func reset() {
        recorded.withLock { $0.removeAll() }
    }

    /// Waits until `predicate` holds for the recorded events, or the timeout passes.
    @discardableResult
    public func waitUntil(timeout: Duration = .seconds(10), _ predicate: ([HookEvent]) -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if predicate(events) { return true }
            try? await Task.sleep(for: .milliseconds(2))
        }
        return predicate(events)
    }
}
