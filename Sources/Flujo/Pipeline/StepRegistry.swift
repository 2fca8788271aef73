import Synchronization

/// The steps a process can run or resume, by unique name.
public final class StepRegistry: Sendable {
    private let steps = Mutex<[String: AnyStep]>([:])

    /// Creates an empty registry.
    public init() {}

    /// A registry holding every step of `pipelines`, by name: what a process
    /// that only resumes, retries or works tasks needs.
    public convenience init(_ pipelines: Pipeline...) {
        self.init()
        for pipeline in pipelines { registerMissing(of: pipeline) }
    }

    /// Registers a step. Registering another step under a taken name is an error;
    /// registering the same pipeline's steps again is fine.
    public func register(_ step: AnyStep) throws(StepRegistryError) {
        try steps.withLock { (steps) throws(StepRegistryError) in
            if steps[step.name] != nil {
                throw .duplicateName(step.name)
            }
            steps[step.name] = step
        }
    }

    /// Registers a typed step.
    public func register<I, O>(_ step: Step<I, O>) throws(StepRegistryError) {
        try register(step.erased)
    }

    /// Registers every step of a pipeline that is not registered yet.
    public func registerMissing(of pipeline: Pipeline) {
        steps.withLock { steps in
            for item in pipeline.steps where steps[item.step.name] == nil {
                steps[item.step.name] = item.step
            }
        }
    }

    /// The step registered under `name`.
    public func step(named name: String) -> AnyStep? {
        steps.withLock { $0[name] }
    }

    /// Every registered name, sorted.
    public var names: [String] {
        steps.withLock { $0.keys.sorted() }
    }
}

/// A registry refused a step.
public enum StepRegistryError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Another step already has this name.
    case duplicateName(String)

    public var description: String {
        switch self {
        case let .duplicateName(name):
            return "a step named '\(name)' is already registered; step names must be unique so a task can be resumed by name"
        }
    }
}
