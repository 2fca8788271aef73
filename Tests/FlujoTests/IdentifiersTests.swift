import Foundation
import Testing

@testable import Flujo

@Suite("Identifiers")
struct IdentifiersTests {
    private static func isLowercaseHex(_ text: Substring) -> Bool {
        text.utf8.allSatisfy { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains($0) }
    }

    @Test("run and task ids are their prefix and 32 lowercase hex digits, the first 12 the milliseconds of their making")
    func format() throws {
        let before = Identifiers.nowUnixNano() / 1_000_000
        let runID = Identifiers.newRunID()
        let taskID = Identifiers.newTaskID()
        let after = Identifiers.nowUnixNano() / 1_000_000
        for (id, prefix) in [(runID, "run_"), (taskID, "bg_")] {
            #expect(id.hasPrefix(prefix))
            let digits = id.dropFirst(prefix.count)
            #expect(digits.count == 32)
            #expect(Self.isLowercaseHex(digits), "\(id)")
            let milliseconds = try #require(UInt64(digits.prefix(12), radix: 16))
            #expect(milliseconds >= before && milliseconds <= after, "\(id): \(milliseconds) not in \(before)...\(after)")
        }
    }

    @Test("ids made in a later millisecond sort after earlier ones, as text")
    func laterSortsLater() async throws {
        let earlier = (0..<100).map { _ in Identifiers.newTaskID() }
        try await Task.sleep(for: .milliseconds(3))
        let later = (0..<100).map { _ in Identifiers.newTaskID() }
        let lastEarlier = try #require(earlier.max())
        let firstLater = try #require(later.min())
        #expect(lastEarlier < firstLater)
    }

    @Test("ids made in the same millisecond differ in their 80 random bits")
    func unique() {
        let ids = (0..<50_000).map { _ in Identifiers.timeOrderedHex() }
        #expect(Set(ids).count == ids.count)
        // Within one millisecond the random part decides the order: not sorted as made.
        let sameMillisecond = Dictionary(grouping: ids, by: { $0.prefix(12) }).values.filter { $0.count > 100 }
        #expect(!sameMillisecond.isEmpty)
        for group in sameMillisecond {
            #expect(group != group.sorted(), "the random part must not follow the order of making")
            // Every random digit takes several values: no digit is stuck.
            for position in 12..<32 {
                let digits = Set(group.map { $0.utf8[$0.utf8.index($0.utf8.startIndex, offsetBy: position)] })
                #expect(digits.count > 4, "digit \(position) takes only \(digits.count) values")
            }
        }
    }
}

@Suite("Timestamps")
struct TimestampTests {
    @Test("every millisecond value has an ISO-8601 form, the ends of the range included; before 1970 counts back")
    func iso8601() {
        #expect(Timestamp(millisecondsSince1970: 0).iso8601 == "1970-01-01T00:00:00.000Z")
        #expect(Timestamp(millisecondsSince1970: -1).iso8601 == "1969-12-31T23:59:59.999Z")
        #expect(Timestamp(millisecondsSince1970: 1_796_195_000_667).iso8601 == "2026-12-02T07:03:20.667Z")
        // A row's time may be anything a damaged or edited file holds: shown, never trapped on.
        #expect(Timestamp(millisecondsSince1970: .max).iso8601.hasSuffix(":55.807Z"), "\(Timestamp(millisecondsSince1970: .max).iso8601)")
        #expect(Timestamp(millisecondsSince1970: .min).iso8601.hasSuffix(".192Z"), "\(Timestamp(millisecondsSince1970: .min).iso8601)")
    }

    @Test("a Date beyond the range saturates; NaN is the epoch")
    func fromDate() {
        #expect(Timestamp(Date(timeIntervalSince1970: .infinity)).millisecondsSince1970 > 9_000_000_000_000_000_000)
        #expect(Timestamp(Date(timeIntervalSince1970: -.infinity)).millisecondsSince1970 < -9_000_000_000_000_000_000)
        #expect(Timestamp(Date(timeIntervalSince1970: .nan)).millisecondsSince1970 == 0)
        #expect(Timestamp(Date(timeIntervalSince1970: 1.5)).millisecondsSince1970 == 1500)
    }
}
