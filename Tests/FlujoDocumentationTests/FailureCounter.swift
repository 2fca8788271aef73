import Flujo
import Synchronization

/// Implementing a hook sink: the guide's example.
final class FailureCounter: HookSink {   // a class: Mutex cannot be copied
    let name = "failures"
    var interests: Set<HookEventKind> { [.onStepFailure, .taskFinished] }
    let counts = Mutex<[ErrorCategory: Int]>([:])

    func handle(_ event: HookEvent) async throws {
        switch event.payload {
        case let .onStepFailure(end):
            counts.withLock { $0[end.errorCategory ?? .unknown, default: 0] += 1 }
        case let .taskFinished(end) where end.status == .failed:
            print("task \(end.taskID) failed: \(end.errorMessage ?? "")")
        default:
            break
        }
    }
}
