import Foundation
import Logging
import Synchronization

/// Helpers shared by the test targets: temporary folders, sibling executables,
/// the reference Python, and running processes.
public enum TestSupport {
    /// A new, empty, UUID-named folder inside this process's `testRoot`.
    public static func temporaryDirectory(_ label: String = "flujo-test") -> URL {
        let url = testRoot.appendingPathComponent("\(label)-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// One folder under the system's temporary folder for everything this test
    /// process writes; removed when the process exits, unless
    /// `FLUJO_KEEP_TEST_FILES=1` asks to keep it for a look after a failure.
    public static let testRoot: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("flujo-tests-\(getpid())-\(UUID().uuidString.prefix(8))")
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        if ProcessInfo.processInfo.environment["FLUJO_KEEP_TEST_FILES"] != "1" {
            atexit { try? FileManager.default.removeItem(at: TestSupport.testRoot) }
        }
        return url
    }()

    /// The package root, found from this source file's location.
    public static let packageRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// The build folder holding the test bundle and the package's executables.
    public static var productsDirectory: URL {
        var url = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        while url.pathExtension == "xctest" || !FileManager.default.fileExists(atPath: url.appendingPathComponent("FlujoTestHelper").path) {
            let parent = url.deletingLastPathComponent()
            if parent.path == url.path { break }
            url = parent
        }
        return url
    }

    /// An executable built by this package, next to the tests.
    public static func executable(_ name: String) -> URL {
        productsDirectory.appendingPathComponent(name)
    }

    /// The Python with the reference decoders (`opentelemetry-proto`, `prometheus-client`):
    /// `$FLUJO_TEST_PYTHON`, or the virtualenv `make test` creates in `.build/venv`.
    public static var python: URL? {
        if let configured = ProcessInfo.processInfo.environment["FLUJO_TEST_PYTHON"], !configured.isEmpty {
            return URL(fileURLWithPath: configured)
        }
        let venv = packageRoot.appendingPathComponent(".build/venv/bin/python")
        return FileManager.default.isExecutableFile(atPath: venv.path) ? venv : nil
    }

    /// A test-support script in `Tests/Support`.
    public static func supportScript(_ name: String) -> URL {
        packageRoot.appendingPathComponent("Tests/Support/\(name)")
    }

    /// The result of a finished process.
    public struct ProcessOutput: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    /// Runs a process to completion on a dedicated thread, feeding `input` to its standard input.
    public static func run(_ executable: URL, _ arguments: [String], input: Data? = nil, environment: [String: String]? = nil, currentDirectory: URL? = nil) async throws -> ProcessOutput {
        let folder = temporaryDirectory("flujo-process")
        defer { try? FileManager.default.removeItem(at: folder) }
        let outURL = folder.appendingPathComponent("stdout"), errURL = folder.appendingPathComponent("stderr"), inURL = folder.appendingPathComponent("stdin")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: inURL.path, contents: input ?? Data())
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if let environment { process.environment = environment }
        if let currentDirectory { process.currentDirectoryURL = currentDirectory }
        process.standardOutput = try FileHandle(forWritingTo: outURL)
        process.standardError = try FileHandle(forWritingTo: errURL)
        process.standardInput = try FileHandle(forReadingFrom: inURL)
        try process.run()
        // Waiting blocks a thread: keep it off the cooperative pool.
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread {
                process.waitUntilExit()
                continuation.resume()
            }
        }
        return ProcessOutput(
            status: process.terminationStatus,
            stdout: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "")
    }
}

/// A child process whose standard output is read line by line while it runs.
public final class RunningProcess: @unchecked Sendable {
    // Safe: `lines` is only touched under `lock`; `process` is configured before
    // `start` and afterwards only signalled and waited on.
    private let process = Process()
    private let lock = NSLock()
    private var lines: [String] = []
    private var outputEnded = false
    private let output = Pipe()

    /// Starts `executable` with `arguments`; with `capturingErrors`, what it
    /// prints on standard error joins its lines too.
    public init(_ executable: URL, _ arguments: [String], environment: [String: String]? = nil, capturingErrors: Bool = false) throws {
        process.executableURL = executable
        process.arguments = arguments
        if let environment { process.environment = environment }
        process.standardOutput = output
        process.standardError = capturingErrors ? output : FileHandle.standardError
        try process.run()
        let descriptor = output.fileHandleForReading.fileDescriptor
        Thread.detachNewThread { [self] in
            // POSIX read with EINTR retried: FileHandle.availableData traps on EINTR.
            var buffer = Data()
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = chunk.withUnsafeMutableBytes { Foundation.read(descriptor, $0.baseAddress, 4096) }
                if count < 0 && errno == EINTR { continue }
                if count <= 0 {
                    lock.withLock { outputEnded = true }
                    break
                }
                buffer.append(contentsOf: chunk[0..<count])
                while let newline = buffer.firstIndex(of: 10) {
                    let line = String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self)
                    buffer.removeSubrange(buffer.startIndex...newline)
                    lock.withLock { lines.append(line) }
                }
            }
        }
    }

    /// Every line printed so far.
    public var linesSoFar: [String] { lock.withLock { lines } }

    /// Waits until a printed line satisfies `predicate`; false on timeout.
    public func waitForLine(timeout: Double = 30, where predicate: (String) -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if linesSoFar.contains(where: predicate) { return true }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return false
    }

    /// Sends SIGINT (Ctrl-C) and waits for the process to end.
    public func interrupt() async {
        Foundation.kill(process.processIdentifier, SIGINT)
        await waitForExit()
    }

    /// Sends a signal without waiting.
    public func send(_ signal: Int32) {
        Foundation.kill(process.processIdentifier, signal)
    }

    /// Whether the process still runs.
    public var isRunning: Bool { process.isRunning }

    /// Sends SIGKILL and waits for the process to end.
    public func kill() async {
        Foundation.kill(process.processIdentifier, SIGKILL)
        await waitForExit()
    }

    /// Waits for the process to end, and for every line it printed to be read.
    public func waitForExit() async {
        let process = self.process
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread {
                process.waitUntilExit()
                continuation.resume()
            }
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while !lock.withLock({ outputEnded }) && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(2))
        }
    }

    /// Waits at most `limit` for the process to end; if it still runs then,
    /// kills it with SIGKILL and returns false.
    public func waitForExit(upTo limit: Duration) async -> Bool {
        let deadline = ContinuousClock.now + limit
        while process.isRunning && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        let ended = !process.isRunning
        if !ended { Foundation.kill(process.processIdentifier, SIGKILL) }
        await waitForExit()
        return ended
    }

    /// The exit status once ended.
    public var terminationStatus: Int32 { process.terminationStatus }

    /// The signal that ended the process, nil when it exited.
    public var terminationSignal: Int32? { process.terminationReason == .uncaughtSignal ? process.terminationStatus : nil }
}

/// A PostgreSQL server of a test's own (`Tests/Support/postgres.sh`), for tests
/// that stop or restart it without disturbing the server the other tests share.
public final class OwnPostgresServer: Sendable {
    /// The state URI of its database, password included.
    public let uri: String
    private let folder: String
    private let script = TestSupport.supportScript("postgres.sh")

    private init(uri: String, folder: String) {
        self.uri = uri
        self.folder = folder
    }

    /// Creates and starts a server in a new folder; throws with the script's message when it cannot.
    public static func start(_ label: String) async throws -> OwnPostgresServer {
        // Directly in /tmp: as root, the server runs as `nobody`, who must reach its folder.
        let folder = "/tmp/flujo-pg-\(label)-\(UInt32.random(in: 0...UInt32.max))"
        let started = try await TestSupport.run(TestSupport.supportScript("postgres.sh"), ["start", folder])
        let server = OwnPostgresServer(uri: started.stdout.trimmingCharacters(in: .whitespacesAndNewlines), folder: folder)
        guard started.status == 0 else {
            server.stop()
            throw OwnPostgresError(message: "the test's own PostgreSQL server did not start: \(started.stderr)")
        }
        return server
    }

    /// Stops the server (sessions are ended), waits `pause` seconds and starts it again.
    public func restart(pause: Int = 0) async throws -> TestSupport.ProcessOutput {
        try await TestSupport.run(script, ["restart", folder, String(pause)])
    }

    /// Stops the server at once and deletes its folder; safe to call again, and from `defer`.
    public func stop() {
        let stop = Process()
        stop.executableURL = script
        stop.arguments = ["stop", folder]
        try? stop.run()
        stop.waitUntilExit()
    }
}

/// Why a test's own PostgreSQL server could not start.
public struct OwnPostgresError: Error, CustomStringConvertible {
    /// What the start script said.
    public var message: String
    public var description: String { message }
}

/// Keeps every log line of a logger, at every level.
public final class RecordingLogs: Sendable {
    private let lines = Mutex<[(Logger.Level, String)]>([])

    public init() {}

    public var logger: Logger {
        var logger = Logger(label: "test") { _ in Handler(logs: self) }
        logger.logLevel = .trace
        return logger
    }

    public var all: [String] { lines.withLock { $0.map(\.1) } }

    public func messages(at level: Logger.Level) -> [String] { lines.withLock { $0.filter { $0.0 == level }.map(\.1) } }

    struct Handler: LogHandler {
        let logs: RecordingLogs
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            logs.lines.withLock { $0.append((event.level, event.message.description)) }
        }
    }
}

/// A gate a step can wait on until the test opens it. Waiting ignores
/// cancellation: a step waiting here is still running when its engine gives up on it.
public final class Gate: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    public init() {}

    public func wait() async {
        await withCheckedContinuation { continuation in
            let resumeNow = state.withLock { state -> Bool in
                if state.open { return true }
                state.waiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    public func open() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.open = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }
}
