import Foundation
import Testing

@testable import Flujo

@Suite("Step values")
struct StepValueTests {
    @Test("integers, booleans and plain strings are written exactly as the JSON encoder writes them")
    func plainJSONMatchesEncoder() throws {
        func encoded<T: Encodable>(_ value: T) throws -> String {
            String(decoding: try StepValue.encoder.encode(value), as: UTF8.self)
        }
        for integer in [0, 1, -1, 42, Int.max, Int.min, 1_000_000_007] {
            #expect(StepValue.plainJSON(integer) == (try encoded(integer)))
        }
        for flag in [true, false] {
            #expect(StepValue.plainJSON(flag) == (try encoded(flag)))
        }
        for text in ["", "ok", "a/b", "ünïcødé ✓ 🚀", "order-4382 done", "<tag>&amp;"] {
            #expect(StepValue.plainJSON(text) == (try encoded(text)))
        }
        // Anything that needs escaping, and other types, go through the encoder.
        for text in ["quote \"", "back\\slash", "new\nline", "tab\t", "\u{1}"] {
            #expect(StepValue.plainJSON(text) == nil)
            #expect(try StepValue(text).json == (try encoded(text)))
        }
        #expect(StepValue.plainJSON(1.5) == nil)
        #expect(StepValue.plainJSON(["a": 1]) == nil)
        #expect(try StepValue(7).json == "7")
    }
}
