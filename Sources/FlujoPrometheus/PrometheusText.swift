import Synchronization
import W3CTraceContext

/// Writes metric families in the Prometheus text exposition format 0.0.4.
///
/// Format: "HELP lines may contain any sequence of UTF-8 characters (after the
/// metric name), but the backslash and the line feed characters have to be
/// escaped as \\ and \n"; "label_value can be any sequence of UTF-8
/// characters, but the backslash (\), double-quote ("), and line feed (\n)
/// characters have to be escaped as \\, \", and \n". Families are written
/// sorted by name, each with its HELP and TYPE and all of its samples together.
public enum PrometheusText {
    /// The Content-Type of the format.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// The exposition of `families`.
    public static func render(_ families: [MetricFamily]) -> String {
        var out = ExpositionWriter(capacity: max(families.count * 160, ExpositionWriter.lastSize.load(ordering: .relaxed)))
        for family in families.sorted(by: { $0.name < $1.name }) {
            out.append("# HELP " as StaticString)
            out.append(family.name)
            out.append(byte: UInt8(ascii: " "))
            out.appendEscaped(family.help, quote: false)
            out.append("\n# TYPE " as StaticString)
            out.append(family.name)
            out.append(byte: UInt8(ascii: " "))
            out.append(family.kind.rawValue)
            out.append(byte: UInt8(ascii: "\n"))
            family.writeSamples(into: &out, exemplars: false)
        }
        ExpositionWriter.lastSize.store(out.byteCount + out.byteCount / 8, ordering: .relaxed)
        return out.text
    }

    /// `name{label="value",...} ` of a sample, escaped.
    static func prefix(of sample: MetricFamily.Sample) -> [UInt8] {
        var out = ExpositionWriter(capacity: 64)
        withUnsafePointer(to: sample) { out.appendPrefix($0) }
        return out.bytes
    }

    /// Escapes `\` and line feeds.
    public static func escapeHelp(_ text: String) -> String {
        escaped(text, quote: false)
    }

    /// Escapes `\`, `"` and line feeds.
    public static func escapeLabelValue(_ text: String) -> String {
        escaped(text, quote: true)
    }

    private static func escaped(_ text: String, quote: Bool) -> String {
        var out = ExpositionWriter(capacity: text.utf8.count + 8)
        out.appendEscaped(text, quote: quote)
        return out.text
    }

    /// A value as the format writes it: integers without a fraction, `+Inf`, `-Inf`, `NaN`.
    public static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value == .infinity { return "+Inf" }
        if value == -.infinity { return "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }
}

/// Builds an exposition as UTF-8 bytes in memory of its own: appends of
/// known ASCII and of rendered prefixes are copies, numbers are written in
/// place, without a `String`. A scrape writes a thousand lines and more, so
/// an append is a bounds check and a copy, nothing else.
struct ExpositionWriter: ~Copyable {
    private var base: UnsafeMutablePointer<UInt8>
    private var count = 0
    private var capacity: Int
    /// The size of the last exposition (and an eighth more), reserved for the next
    /// one: it grows once instead of doubling its way up at every scrape.
    static let lastSize = Atomic<Int>(0)

    init(capacity: Int) {
        self.capacity = max(capacity, 64)
        base = .allocate(capacity: self.capacity)
    }

    deinit { base.deallocate() }

    /// The bytes written.
    var bytes: [UInt8] { Array(UnsafeBufferPointer(start: base, count: count)) }

    /// How many bytes were written.
    var byteCount: Int { count }

    /// The bytes written, as text.
    var text: String {
        guard count > 0 else { return "" }
        return String(unsafeUninitializedCapacity: count) { buffer in
            buffer.baseAddress!.update(from: base, count: count)
            return count
        }
    }

    /// Makes room for `more` bytes.
    @inline(__always)
    private mutating func reserve(_ more: Int) {
        if count + more > capacity { grow(to: count + more) }
    }

    private mutating func grow(to needed: Int) {
        let larger = max(needed, capacity * 2)
        let moved = UnsafeMutablePointer<UInt8>.allocate(capacity: larger)
        moved.update(from: base, count: count)
        base.deallocate()
        base = moved
        capacity = larger
    }

    @inline(__always)
    mutating func append(byte: UInt8) {
        reserve(1)
        base[count] = byte
        count += 1
    }

    mutating func append(_ raw: UnsafeBufferPointer<UInt8>) {
        guard let source = raw.baseAddress else { return }
        reserve(raw.count)
        (base + count).update(from: source, count: raw.count)
        count += raw.count
    }

    mutating func append(_ text: String) {
        var text = text
        text.withUTF8 { append($0) }
    }

    mutating func append(_ text: StaticString) {
        text.withUTF8Buffer { append($0) }
    }

    /// `text` with `\` and line feeds escaped, and `"` too when `quote`.
    mutating func appendEscaped(_ text: String, quote: Bool) {
        var text = text
        text.withUTF8 { utf8 in
            var start = 0
            for index in 0..<utf8.count {
                let byte = utf8[index]
                guard byte == 0x5C || byte == 0x0A || (quote && byte == 0x22) else { continue }
                append(UnsafeBufferPointer(rebasing: utf8[start..<index]))
                append(byte: 0x5C)
                append(byte: byte == 0x0A ? UInt8(ascii: "n") : byte)
                start = index + 1
            }
            append(UnsafeBufferPointer(rebasing: utf8[start...]))
        }
    }

    mutating func appendPrefix(_ sample: UnsafePointer<MetricFamily.Sample>) {
        append(sample.pointee.name)
        if !sample.pointee.labels.isEmpty {
            append(byte: UInt8(ascii: "{"))
            var first = true
            for (name, value) in sample.pointee.labels {
                if !first { append(byte: UInt8(ascii: ",")) }
                first = false
                append(name)
                append("=\"" as StaticString)
                appendEscaped(value, quote: true)
                append(byte: UInt8(ascii: "\""))
            }
            append(byte: UInt8(ascii: "}"))
        }
        append(byte: UInt8(ascii: " "))
    }

    /// Every line of `samples`; with `exemplars`, their exemplars in the OpenMetrics form.
    mutating func appendLines(_ samples: [MetricFamily.Sample], exemplars: Bool) {
        samples.withUnsafeBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return }
            for index in 0..<buffer.count { appendLine(base + index, exemplar: exemplars) }
        }
    }

    /// One sample line; with `exemplar`, its exemplar in the OpenMetrics form.
    mutating func appendLine(_ sample: UnsafePointer<MetricFamily.Sample>, exemplar: Bool) {
        appendPrefix(sample)
        appendValue(sample.pointee.value)
        if exemplar, let found = sample.pointee.exemplar { appendExemplar(found) }
        append(byte: UInt8(ascii: "\n"))
    }

    /// One sample line from its rendered prefix; with `exemplar`, the exemplar in the OpenMetrics form.
    mutating func appendLine(prefix: UnsafeBufferPointer<UInt8>, value: Double, exemplar: MetricFamily.Exemplar?) {
        append(prefix)
        appendValue(value)
        if let exemplar { appendExemplar(exemplar) }
        append(byte: UInt8(ascii: "\n"))
    }

    /// ` # {trace_id="…",span_id="…"} value timestamp`.
    mutating func appendExemplar(_ exemplar: MetricFamily.Exemplar) {
        append(" # {trace_id=\"" as StaticString)
        withUnsafeBytes(of: exemplar.traceID.bytes) { appendHex($0) }
        append("\",span_id=\"" as StaticString)
        withUnsafeBytes(of: exemplar.spanID.bytes) { appendHex($0) }
        append("\"} " as StaticString)
        appendValue(exemplar.value)
        append(byte: UInt8(ascii: " "))
        appendMilliseconds(exemplar.timestamp)
    }

    /// Lowercase hex of bytes.
    mutating func appendHex(_ raw: UnsafeRawBufferPointer) {
        let digits: StaticString = "0123456789abcdef"
        digits.withUTF8Buffer { digits in
            for byte in raw {
                append(byte: digits[Int(byte >> 4)])
                append(byte: digits[Int(byte & 0x0f)])
            }
        }
    }

    /// A value as the format writes it: integers without a fraction, `+Inf`, `-Inf`, `NaN`.
    mutating func appendValue(_ value: Double) {
        if let integer = Int64(exactly: value), integer.magnitude < 1_000_000_000_000_000 {
            appendInteger(integer)
        } else if value.isFinite {
            // The standard library's shortest round-trip digits (as `description`
            // writes them), into the exposition, without a `String` between.
            reserve(DigitsTarget.room)
            var target = DigitsTarget(start: base + count)
            value.write(to: &target)
            count += target.length
        } else {
            append(PrometheusText.format(value))
        }
    }

    mutating func appendInteger(_ value: Int64) {
        reserve(20)
        if value < 0 {
            base[count] = UInt8(ascii: "-")
            count += 1
        }
        var magnitude = value.magnitude
        var digits = 1
        var power: UInt64 = 10
        while digits < 19 && magnitude >= power {
            digits += 1
            power &*= 10
        }
        var position = count + digits
        count = position
        repeat {
            position -= 1
            base[position] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: magnitude % 10)
            magnitude /= 10
        } while magnitude > 0
    }

    /// Seconds with millisecond precision (`1700000000.123`).
    mutating func appendMilliseconds(_ seconds: Double) {
        let millis = Int64((seconds * 1000).rounded())
        appendInteger(millis / 1000)
        append(byte: UInt8(ascii: "."))
        let fraction = Int(abs(millis % 1000))
        append(byte: UInt8(ascii: "0") + UInt8(fraction / 100))
        append(byte: UInt8(ascii: "0") + UInt8(fraction / 10 % 10))
        append(byte: UInt8(ascii: "0") + UInt8(fraction % 10))
    }
}

/// Receives a number's digits from the standard library, into room reserved
/// in an exposition (a `Double` writes at most 24 characters).
private struct DigitsTarget: TextOutputStream {
    static let room = 32
    let start: UnsafeMutablePointer<UInt8>
    var length = 0

    init(start: UnsafeMutablePointer<UInt8>) {
        self.start = start
    }

    mutating func write(_ string: String) {
        var string = string
        string.withUTF8 { _writeASCII($0) }
    }

    mutating func _writeASCII(_ buffer: UnsafeBufferPointer<UInt8>) {
        guard let source = buffer.baseAddress else { return }
        let written = min(buffer.count, Self.room - length)
        (start + length).update(from: source, count: written)
        length += written
    }
}
