import Flujo
import FlujoTestSupport
import Foundation
import Testing

/// What an attacker or an unlucky operator can type, and the answer each gets.
@Suite("Hostile input")
struct HardeningTests {
    /// Expects a one-line error on standard error with exit status 2, naming `option`.
    static func expectRefused(_ output: TestSupport.ProcessOutput, naming option: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(output.status == 2, "exit \(output.status): \(output.stderr)", sourceLocation: sourceLocation)
        #expect(output.stderr.contains(option), "\(output.stderr)", sourceLocation: sourceLocation)
        #expect(output.stderr.trimmingCharacters(in: .newlines).split(separator: "\n").count <= 2, "\(output.stderr)", sourceLocation: sourceLocation)
    }

    @Test("numbers out of range on the command line are refused before any work, with exit 2: no trap", arguments: [
        (["tasks", "failed", "--hours", "inf"], "--hours"),
        (["tasks", "failed", "--hours", "1e308"], "--hours"),
        (["tasks", "failed", "--hours", "3e12"], "--hours"),
        (["tasks", "failed", "--hours", "nan"], "--hours"),
        (["tasks", "failed", "--hours", "-1"], "--hours"),
        (["tasks", "cleanup", "--stale-hours", "inf"], "--stale-hours"),
        (["tasks", "cleanup", "--stale-hours", "0"], "--stale-hours"),
        (["tasks", "retry", "--max-retries", "9223372036854775807"], "--max-retries"),
        (["tasks", "list", "--limit", "9223372036854775807"], "--limit"),
        (["demo", "--fail", "9223372036854775807"], "--fail"),
        (["demo", "--pause", "9223372036854775807", "--fail", "9223372036854775807"], "--"),
        (["demo", "--task-ms", "9223372036854775807"], "--task-ms"),
        (["demo", "--metrics-port", "70000"], "--metrics-port"),
        (["metrics", "--port", "-1"], "--port"),
    ])
    func numbersOutOfRange(arguments: [String], option: String) async throws {
        let cli = CLI()
        _ = try await cli.demo()
        let before = try folderContents(cli.folder)
        let output = try await cli.run(arguments + ["--db", cli.db])
        Self.expectRefused(output, naming: option)
        #expect(try folderContents(cli.folder) == before, "nothing was started or written")
    }

    @Test("fuzzed numbers for every numeric option: exit 0, 1 or 2, never a signal")
    func fuzzedNumbers() async throws {
        let cli = CLI()
        _ = try await cli.demo()
        var random = SeededRandomNumberGenerator(seed: 12)
        let numbers = ["0", "-0", "1", "-1", "2147483648", "-9223372036854775808", "9223372036854775807", "9223372036854775808",
                       "1e308", "-1e308", "1e-320", "inf", "-inf", "nan", "0x10", "1_000", "", " 5", "5 ", "٣", "1e3", "0.5"]
        let options: [([String], String)] = [
            (["tasks", "failed"], "--hours"), (["tasks", "cleanup"], "--stale-hours"), (["tasks", "retry"], "--max-retries"),
            (["tasks", "list"], "--limit"), (["demo", "--background", "0"], "--fail"), (["demo", "--background", "0"], "--pause"),
            (["demo", "--background", "0"], "--task-ms"), (["demo"], "--background"),
        ]
        for _ in 0..<40 {
            let (command, option) = options[Int(random.next() % UInt64(options.count))]
            let number = numbers[Int(random.next() % UInt64(numbers.count))]
            let output = try await cli.run(command + [option, number, "--db", cli.db])
            #expect([0, 1, 2].contains(output.status), "\(command) \(option) \(number.debugDescription): exit \(output.status) \(output.stderr)")
        }
    }
}
