import Logging
import Synchronization

/// Delivers hook events to registered sinks, isolating their failures.
///
/// Emitting when no sink wants an event kind costs one atomic load: the runner
/// asks `wants(_:)` before it builds the event.
public final class HookBus: Sendable {
    /// Events queued for a sink and not handled yet.
    private final class Pending: Sendable {
        let count = Atomic<Int>(0)
    }

    private final class Registration: Sendable {
        let sink: any HookSink
        let mask: UInt32
        let strict: Bool
        let background: BackgroundPolicy
        let queue: AsyncStream<HookEvent>.Continuation?
        let consumer: Task<Void, Never>?
        let pending: Pending
        let streak: LogStreak

        init(
            sink: any HookSink, mask: UInt32, strict: Bool, background: BackgroundPolicy, queue: AsyncStream<HookEvent>.Continuation?,
            consumer: Task<Void, Never>?, pending: Pending, streak: LogStreak
        ) {
            self.pending = pending
            self.streak = streak
            self.sink = sink
            self.mask = mask
            self.strict = strict
            self.background = background
            self.queue = queue
            self.consumer = consumer
        }
    }

    /// A sink and event kind, the key of error counts.
    public struct ErrorKey: Sendable, Hashable {
        /// The sink's name.
        public var sink: String
        /// The event kind it failed on.
        public var event: HookEventKind

        /// Creates a key.
        public init(sink: String, event: HookEventKind) {
            self.sink = sink
            self.event = event
        }
    }

    private let registrations = Mutex<[Registration]>([])
    private let interestMask = Atomic<UInt32>(0)
    private let errors = Mutex<[ErrorKey: Int]>([:])
    private let drops = Mutex<[String: Int]>([:])
    private let logger: Logger
    private let errorLogInterval: Duration
    /// Counters of the engines that emit on this bus, held weakly: an engine gone is no longer read.
    private let attached = Mutex<[@Sendable () -> [CounterSample]?]>([])

    /// Creates a bus with no sinks. A sink's errors are logged at most once per
    /// `errorLogInterval` (the first at once), each line saying how many were
    /// not logged since, and a logged streak's end is one notice; every error
    /// is counted either way (`errorCounts`).
    public init(logger: Logger = Logger(label: "flujo.hooks"), errorLogInterval: Duration = .seconds(60)) {
        self.logger = logger
        self.errorLogInterval = errorLogInterval
    }

    /// Registers a sink. A strict sink's errors fail the run. With
    /// `background: .skip` the sink never sees events of background executions
    /// (nor the launch step's events); by default it sees every event.
    public func register(_ sink: any HookSink, delivery: HookDelivery = .inline, strict: Bool = false, background: BackgroundPolicy = .include) {
        let mask = sink.interests.reduce(UInt32(0)) { $0 | $1.bit }
        var continuation: AsyncStream<HookEvent>.Continuation?
        var consumer: Task<Void, Never>?
        let pending = Pending()
        let streak = LogStreak(interval: errorLogInterval)
        if case let .queued(capacity) = delivery {
            let (stream, queue) = AsyncStream<HookEvent>.makeStream(bufferingPolicy: .bufferingOldest(max(1, capacity)))
            continuation = queue
            consumer = Task { [self] in
                for await event in stream {
                    do {
                        try await sink.handle(event)
                        recovered(sink: sink, streak: streak)
                    } catch {
                        record(error, sink: sink, event: event, streak: streak)
                    }
                    pending.count.wrappingSubtract(1, ordering: .releasing)
                }
            }
        }
        let registration = Registration(sink: sink, mask: mask, strict: strict, background: background, queue: continuation, consumer: consumer, pending: pending, streak: streak)
        registrations.withLock { $0.append(registration) }
        _ = interestMask.bitwiseOr(mask, ordering: .releasing)
    }

    /// Whether any sink wants events of this kind.
    @inline(__always)
    public func wants(_ kind: HookEventKind) -> Bool {
        interestMask.load(ordering: .acquiring) & kind.bit != 0
    }

    /// Delivers an event. Throws only `PipelineAbortSignal` from a sink, or a
    /// strict sink's error; every other sink error is logged and counted.
    public func emit(_ event: HookEvent) async throws {
        let bit = event.kind.bit
        guard interestMask.load(ordering: .acquiring) & bit != 0 else { return }
        let current = registrations.withLock { $0 }
        for registration in current where registration.mask & bit != 0 && registration.background.admits(isBackground: event.isBackground) {
            if let queue = registration.queue {
                registration.pending.count.wrappingAdd(1, ordering: .relaxed)
                if case .dropped = queue.yield(event) {
                    registration.pending.count.wrappingSubtract(1, ordering: .relaxed)
                    drops.withLock { $0[registration.sink.name, default: 0] += 1 }
                }
                continue
            }
            do {
                try await registration.sink.handle(event)
                recovered(sink: registration.sink, streak: registration.streak)
            } catch let abort as PipelineAbortSignal {
                throw abort
            } catch {
                record(error, sink: registration.sink, event: event, streak: registration.streak)
                if registration.strict { throw error }
            }
        }
    }

    /// Counts an error, and logs it unless a line about this sink was logged
    /// less than `errorLogInterval` ago.
    private func record(_ error: any Error, sink: any HookSink, event: HookEvent, streak: LogStreak) {
        errors.withLock { $0[ErrorKey(sink: sink.name, event: event.kind), default: 0] += 1 }
        guard let report = streak.failure() else { return }
        let tail = report.tail(
            first: "; while this sink keeps failing, its errors are counted (flujo_hook_errors_total) and logged at most once every \(streak.interval)",
            unreported: "error(s) of this sink")
        logger.error("Error in hook '\(sink.name)' on \(event.kind.rawValue) of run \(event.runID): \(error)\(tail)")
    }

    /// Ends a sink's streak of errors, with one line.
    @inline(__always)
    private func recovered(sink: any HookSink, streak: LogStreak) {
        guard let ended = streak.success() else { return }
        logger.notice("Hook '\(sink.name)' handles events again, after \(ended.failures) error(s) in a row (\(ended.unreported) of them not logged)")
    }

    /// Makes `source`'s counters part of what a metrics endpoint reading this
    /// bus exports (`attachedCounterSamples`), for as long as `source` lives.
    /// Runners and task operations attach theirs to the bus they emit on.
    public func attachCounters<Source: CounterSource & AnyObject>(_ source: Source) {
        attached.withLock { $0.append { [weak source] in source?.counterSamples() } }
    }

    /// The samples of every attached source still alive; samples of the same
    /// name and labels from several sources are for the endpoint to add up.
    public var attachedCounterSamples: [CounterSample] {
        attached.withLock { sources in
            var samples: [CounterSample] = []
            sources.removeAll { source in
                guard let some = source() else { return true }
                samples += some
                return false
            }
            return samples
        }
    }

    /// Sink errors so far, per sink and event kind.
    public var errorCounts: [ErrorKey: Int] { errors.withLock { $0 } }

    /// Events dropped from full queues so far, per sink.
    public var droppedCounts: [String: Int] { drops.withLock { $0 } }

    /// The names of the registered sinks.
    public var sinkNames: [String] { registrations.withLock { $0.map(\.sink.name) } }

    /// Waits until queued sinks have handled every event queued so far, without
    /// stopping them (at most `timeout`). Returns false when the time ran out.
    @discardableResult
    public func flush(timeout: Duration = .seconds(10)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        let current = registrations.withLock { $0 }
        for registration in current where registration.queue != nil {
            while registration.pending.count.load(ordering: .acquiring) > 0 {
                if ContinuousClock.now >= deadline { return false }
                try? await Task.sleep(for: .milliseconds(1))
            }
        }
        return true
    }

    /// Lets queued sinks finish what they hold, then stops them. Inline sinks are unaffected.
    public func drain() async {
        let current = registrations.withLock { $0 }
        for registration in current { registration.queue?.finish() }
        for registration in current { await registration.consumer?.value }
    }
}
