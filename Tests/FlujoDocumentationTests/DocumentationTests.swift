import Flujo
import FlujoSQLite
import FlujoTelemetry
import FlujoTestSupport
import FlujoTesting
import Foundation
import Testing
import W3CTraceContext

/// The package's root folder.
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// A fenced ```swift block of a document.
struct CodeBlock: CustomStringConvertible {
    var file: String
    var line: Int
    var lines: [String]
    var description: String { "\(file):\(line)" }
}

/// The lines that matter when comparing code: trimmed, without blank or comment-only lines.
func significantLines(_ lines: [String]) -> [String] {
    lines.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty && !$0.hasPrefix("//") }
}

/// Every ```swift block of the README and the guides.
func documentedSwiftBlocks() throws -> [CodeBlock] {
    let docs = try FileManager.default.contentsOfDirectory(atPath: packageRoot.appendingPathComponent("Docs").path)
        .filter { $0.hasSuffix(".md") }.sorted().map { "Docs/" + $0 }
    var blocks: [CodeBlock] = []
    for file in ["README.md"] + docs {
        let text = try String(contentsOf: packageRoot.appendingPathComponent(file), encoding: .utf8)
        var current: CodeBlock?
        for (index, line) in text.components(separatedBy: "\n").enumerated() {
            if current == nil, line.trimmingCharacters(in: .whitespaces) == "```swift" {
                current = CodeBlock(file: file, line: index + 1, lines: [])
            } else if let block = current, line.trimmingCharacters(in: .whitespaces) == "```" {
                blocks.append(block)
                current = nil
            } else {
                current?.lines.append(line)
            }
        }
    }
    return blocks
}

/// The compiled code a block may quote: these samples and the library's sources.
func compiledSources() throws -> [String: [String]] {
    var sources: [String: [String]] = [:]
    for folder in ["Tests/FlujoDocumentationTests", "Sources"] {
        let root = packageRoot.appendingPathComponent(folder)
        guard let walker = FileManager.default.enumerator(atPath: root.path) else { continue }
        for case let relative as String in walker where relative.hasSuffix(".swift") {
            let text = try String(contentsOf: root.appendingPathComponent(relative), encoding: .utf8)
            sources[folder + "/" + relative] = significantLines(text.components(separatedBy: "\n"))
        }
    }
    return sources
}

/// Whether `needle` stands in `haystack` as a contiguous run.
func containsRun(_ haystack: [String], _ needle: [String]) -> Bool {
    guard !needle.isEmpty, needle.count <= haystack.count else { return needle.isEmpty }
    for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
        if Array(haystack[start..<(start + needle.count)]) == needle { return true }
    }
    return false
}

@Suite("Documentation")
struct DocumentationTests {
    @Test("every Swift sample of the README and the guides is compiled code, line for line")
    func samplesAreCompiled() throws {
        let blocks = try documentedSwiftBlocks()
        #expect(blocks.count >= 10, "the guides show code")
        let sources = try compiledSources()
        for block in blocks {
            let wanted = significantLines(block.lines)
            let found = sources.values.contains { containsRun($0, wanted) }
            if !found {
                // Name the first line no compiled file continues the block with.
                var prefix: [String] = []
                var missing = wanted.first ?? ""
                for line in wanted {
                    if sources.values.contains(where: { containsRun($0, prefix + [line]) }) { prefix.append(line) } else { missing = line; break }
                }
                Issue.record("\(block): this sample is not compiled code; first line not found in sequence: \(missing)")
            }
        }
    }

    @Test("every link between the documents points at a file that exists")
    func links() throws {
        let docs = try FileManager.default.contentsOfDirectory(atPath: packageRoot.appendingPathComponent("Docs").path).filter { $0.hasSuffix(".md") }
        for file in ["README.md"] + docs.map({ "Docs/" + $0 }) {
            let url = packageRoot.appendingPathComponent(file)
            let text = try String(contentsOf: url, encoding: .utf8)
            for match in text.matches(of: /\]\(([^)#:\s]+\.md)(#[^)]*)?\)/) {
                let target = url.deletingLastPathComponent().appendingPathComponent(String(match.1))
                #expect(FileManager.default.fileExists(atPath: target.path), "\(file) links to \(match.1), which does not exist")
            }
        }
    }

    @Test("the samples run: quota, maintenance, resume-only process, operations through a runner, telemetry, a tested sink")
    func samplesRun() async throws {
        let folder = TestSupport.temporaryDirectory("flujo-docs")
        var settings = FlujoSettings()
        settings.state.uri = folder.appendingPathComponent("state.db").path
        settings.backgroundTasks.retryBaseDelayMs = 1
        let store = try SQLiteStateStore(settings: settings.state)
        let runner = Runner(store: store, settings: settings)
        let result = try await Samples.runWithQuota(runner)
        #expect(result.status == .completed && result.backgroundTaskIDs.count == 1)
        #expect(result.usage.costUSD == 0.002)
        await runner.close()

        try await Samples.longRunning(store, settings)
        let failing = Pipeline(name: "orders", version: "1", steps: [.background(Step<Order, String>("send_receipt") { _, _ in throw URLError(.cannotConnectToHost) })])
        let failed = Runner(store: store, settings: settings)
        _ = try await failed.run(failing, input: Order(id: "f", amount: 1))
        await failed.close()
        #expect(try await TaskOperations(store: store).failed().count == 1)
        // A process that registers the real steps resumes and retries them.
        let report = try await Samples.resumeOnly(store, settings)
        #expect(try await TaskOperations(store: store).failed().isEmpty)
        #expect(report.entries.isEmpty, "the resume already completed the only failed task")

        let pausing = Pipeline(name: "orders", version: "1", steps: [.background(Samples.approve)])
        let approver = Runner(store: store, settings: settings)
        _ = try await approver.run(pausing, input: Order(id: "big", amount: 5000))
        await approver.close()
        let resumer = Runner(store: store, settings: settings)
        try resumer.registry.register(Samples.approve)
        try await Samples.fromRunner(resumer)
        #expect(try await resumer.tasks.list(BackgroundTaskQuery(statuses: [.paused])).isEmpty, "resumed with an amount that needs no approval")
        #expect(try await resumer.tasks.list(BackgroundTaskQuery(statuses: [.completed])).contains { $0.stepName == "approve" })
        await resumer.close()

        #expect(await Samples.worker(store, settings).ran == 0, "nothing is due")
        let notifier = Runner(store: store, settings: settings)
        _ = try await notifier.run(Pipeline(name: "notify", steps: [.run(Samples.notifyStep())]), input: Order(id: "n", amount: 1))
        await notifier.close()
        let sent = try #require(posted.withLock { $0.last })
        #expect(sent.headers["traceparent"].map { (try? TraceContext(traceParentHeaderValue: $0)) != nil } == true, "a valid traceparent goes out")
        try await Samples.telemetry(store, settings)
        try await SinkSamples.testIt()
        SinkSamples.register(HookBus())
        let bridged = HookBus()
        SinkSamples.swiftMetrics(bridged)
        #expect(bridged.sinkNames.contains("swift-metrics"))
    }
}
