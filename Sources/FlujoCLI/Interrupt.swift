import Foundation
import Synchronization

/// SIGINT and SIGTERM for the commands: the first asks for a graceful stop,
/// a second exits at once.
public enum Interrupt {
    /// Waits for SIGINT or SIGTERM and returns its number. A second signal
    /// exits the process at once with 128 + its number.
    public static func wait() async -> Int32 {
        await withCheckedContinuation { (continuation: CheckedContinuation<Int32, Never>) in
            onFirstSignal { number in continuation.resume(returning: number) }
        }
    }

    /// Calls `handler` once, on the first SIGINT or SIGTERM; the signals no
    /// longer end the process by themselves. A second signal exits at once
    /// with 128 + its number.
    public static func onFirstSignal(_ handler: @escaping @Sendable (Int32) -> Void) {
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        let once = OnceFlag()
        for number in [SIGINT, SIGTERM] {
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                if once.take() {
                    handler(number)
                } else {
                    Output.error("second \(number == SIGINT ? "interrupt" : "termination") signal: exiting now")
                    _exit(128 + number)
                }
            }
            source.resume()
            Interrupt.keep(source)
        }
        waitUntilCaught([SIGINT, SIGTERM])
    }

    /// Waits (at most 2 s) until the dispatch sources have installed their
    /// handlers. A source registers its signal on the dispatch manager's
    /// thread, after `resume()` returns; until then the signal is ignored, so a
    /// SIGTERM sent right after the command said it was running would be lost
    /// and the process would never stop.
    private static func waitUntilCaught(_ numbers: [Int32]) {
        func ignored(_ number: Int32) -> Bool {
            var current = sigaction()
            guard sigaction(number, nil, &current) == 0 else { return false }
            #if os(Linux)
            let handler = current.__sigaction_handler.sa_handler
            #else
            let handler = current.__sigaction_u.__sa_handler
            #endif
            return unsafeBitCast(handler, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self)
        }
        var waited = 0
        while waited < 2000, numbers.contains(where: ignored) {
            usleep(1000)
            waited += 1
        }
    }

    /// Whether a graceful stop is under way: the command's own work must not
    /// end the process first (see `waitIfStopping`).
    public static var isStopping: Bool { stopping.load(ordering: .acquiring) }
    private static let stopping = Atomic<Bool>(false)

    /// Waits forever while a graceful stop is under way, so that the stop, not
    /// the command's normal end, decides the exit status.
    public static func waitIfStopping() async {
        while isStopping { try? await Task.sleep(for: .seconds(3600)) }
    }

    /// From now on, SIGINT or SIGTERM runs `stop` (a graceful stop, bounded by
    /// the caller) and exits with 130 or 143. A second signal exits at once.
    public static func stopGracefully(_ stop: @escaping @Sendable (Int32) async -> Void) {
        onFirstSignal { number in
            stopping.store(true, ordering: .releasing)
            Task {
                Output.error("\(number == SIGINT ? "interrupted" : "terminated"): stopping gracefully (send the signal again to exit at once)")
                await stop(number)
                // As at a command's normal end: SQLite folds its log into the file.
                await OpenedStores.closeAll()
                fflush(nil)
                exit(128 + number)
            }
        }
    }

    /// Cancels `task` and waits for it to end, at most `limit`.
    public static func cancel<Success: Sendable, Failure: Error>(_ task: Task<Success, Failure>, waitingAtMost limit: Duration) async {
        task.cancel()
        await withTaskGroup(of: Void.self) { group in
            group.addTask { _ = try? await task.value }
            group.addTask { try? await Task.sleep(for: limit) }
            await group.next()
            group.cancelAll()
        }
    }

    private static let sources = NSLock()
    /// One per process, because signal dispositions are per process; only appended to, under `sources`.
    nonisolated(unsafe) private static var kept: [any DispatchSourceSignal] = []

    private static func keep(_ source: any DispatchSourceSignal) {
        sources.withLock { kept.append(source) }
    }
}

/// True exactly once.
final class OnceFlag: @unchecked Sendable {
    // @unchecked: `taken` is only read and written under `lock`.
    private let lock = NSLock()
    private var taken = false

    func take() -> Bool {
        lock.withLock {
            if taken { return false }
            taken = true
            return true
        }
    }
}
