import Synchronization

/// Keeps one kind of repeated failure from flooding a log (a sink failing on
/// every event, outcomes refused by a full disk, a worker whose database is
/// down): at most one failure is reported per `interval`, with how many went
/// unreported since the last report, even when failures and successes take
/// turns; a success ends a streak with one report when that streak was
/// reported. The success path costs one atomic load.
package final class LogStreak: Sendable {
    /// What to log for a failure.
    package enum Report: Sendable, Equatable {
        /// A failure with none unreported before it: the first of a streak.
        case first
        /// A failure after `unreported` that were not reported, since the last report.
        case again(unreported: Int)

        /// The end of the report's line: `first` (what follows for the
        /// streak) on the first, else how many `what` went unreported.
        package func tail(first: String = "", unreported what: String) -> String {
            switch self {
            case .first: first
            case let .again(unreported): " (and \(unreported) more \(what) since the last line)"
            }
        }
    }

    private struct State {
        /// Failures of the streak under way, and how many of them were reported.
        var failures = 0
        var reported = 0
        /// Failures not reported since the last report, in any streak.
        var unreported = 0
        var lastReport: ContinuousClock.Instant?
    }

    /// The shortest time between two reports.
    package let interval: Duration
    private let failing = Atomic<Bool>(false)
    private let state = Mutex<State>(State())

    package init(interval: Duration = .seconds(60)) {
        self.interval = interval
    }

    /// Records a failure; returns what to log, or nil to log nothing.
    package func failure(at now: ContinuousClock.Instant = .now) -> Report? {
        let interval = interval
        return state.withLock { state in
            if !failing.load(ordering: .relaxed) {
                failing.store(true, ordering: .relaxed)
                state.failures = 0
                state.reported = 0
            }
            state.failures = state.failures.addingSaturating(1)
            if let last = state.lastReport, now - last < interval {
                state.unreported = state.unreported.addingSaturating(1)
                return nil
            }
            defer {
                state.unreported = 0
                state.lastReport = now
                state.reported = state.reported.addingSaturating(1)
            }
            return state.unreported == 0 ? .first : .again(unreported: state.unreported)
        }
    }

    /// Records a success; returns the streak it ended, if one was under way
    /// and reported: its failures, and how many of them were not reported.
    package func success() -> (failures: Int, unreported: Int)? {
        guard failing.load(ordering: .relaxed) else { return nil }
        return state.withLock { state in
            guard failing.load(ordering: .relaxed) else { return nil }
            failing.store(false, ordering: .relaxed)
            guard state.reported > 0 else { return nil }
            return (state.failures, state.failures - state.reported)
        }
    }
}
