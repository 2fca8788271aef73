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
            out.append("# HELP ")
            out.append(family.name)
            out.append(" ")
            out.append(escapeHelp(family.help))
            out.append("\n# TYPE ")
            out.append(family.name)
            out.append(" ")
            out.append(family.kind.rawValue)
            out.append("\n")
            family.writeSamples(into: &out, exemplars: false)
        }
        ExpositionWriter.lastSize.store(out.bytes.count + out.bytes.count / 8, ordering: .relaxed)
        return out.text
    }

    /// `name{label="value",...} ` of a sample, escaped.
    static func prefix(of sample: MetricFamily.Sample) -> [UInt8] {
        var out = ExpositionWriter(capacity: 64)
        var copy = sample
        copy.renderedPrefix = nil
        withUnsafePointer(to: copy) { out.appendPrefix($0) }
        return out.bytes
    }

    /// Escapes `\` and line feeds.
    public static func escapeHelp(_ text: String) -> String {
        guard text.utf8.contains(where: { $0 == 0x5C || $0 == 0x0A }) else { return text }
        var out = ""
        for character in text.unicodeScalars {
            switch character {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(character)
            }
        }
        return out
    }

    /// Escapes `\`, `"` and line feeds.
    public static func escapeLabelValue(_ text: String) -> String {
        guard text.utf8.contains(where: { $0 == 0x5C || $0 == 0x0A || $0 == 0x22 }) else { return text }
        var out = ""
        for character in text.unicodeScalars {
            switch character {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\"": out += "\\\""
            default: out.unicodeScalars.append(character)
            }
        }
        return out
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

/// Builds an exposition as UTF-8 bytes: appends of known ASCII and of
/// rendered prefixes are copies, numbers are written without a `String`.
struct ExpositionWriter {
    var bytes: [UInt8] = []
    /// The size of the last exposition (and an eighth more), reserved for the next
    /// one: it grows once instead of doubling its way up at every scrape.
    static let lastSize = Atomic<Int>(0)

    init(capacity: Int) {
        bytes.reserveCapacity(capacity)
    }

    var text: String { String(decoding: bytes, as: UTF8.self) }

    mutating func append(_ text: String) {
        var text = text
        text.withUTF8 { bytes.append(contentsOf: $0) }
    }

    mutating func appendPrefix(_ sample: UnsafePointer<MetricFamily.Sample>) {
        if sample.pointee.renderedPrefix != nil {
            sample.pointee.renderedPrefix!.withUnsafeBufferPointer { bytes.append(contentsOf: $0) }
            return
        }
        append(sample.pointee.name)
        if !sample.pointee.labels.isEmpty {
            bytes.append(UInt8(ascii: "{"))
            var first = true
            for (name, value) in sample.pointee.labels {
                if !first { bytes.append(UInt8(ascii: ",")) }
                first = false
                append(name)
                bytes.append(UInt8(ascii: "="))
                bytes.append(UInt8(ascii: "\""))
                append(PrometheusText.escapeLabelValue(value))
                bytes.append(UInt8(ascii: "\""))
            }
            bytes.append(UInt8(ascii: "}"))
        }
        bytes.append(UInt8(ascii: " "))
    }

    /// Every line of `samples`; with `exemplars`, their exemplars in the OpenMetrics form.
    mutating func appendLines(_ samples: [MetricFamily.Sample], exemplars: Bool) {
        samples.withUnsafeBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return }
            for index in 0..<buffer.count { appendLine(base + index, exemplar: exemplars) }
        }
    }

    /// One sample line, with `value` in place of the sample's when given; with
    /// `exemplar`, its exemplar in the OpenMetrics form.
    mutating func appendLine(_ sample: UnsafePointer<MetricFamily.Sample>, value: Double? = nil, exemplar: Bool) {
        appendPrefix(sample)
        appendValue(value ?? sample.pointee.value)
        if exemplar, let found = sample.pointee.exemplar { appendExemplar(found) }
        bytes.append(UInt8(ascii: "\n"))
    }

    /// One sample line from its rendered prefix; with `exemplar`, the exemplar in the OpenMetrics form.
    mutating func appendLine(prefix: UnsafeBufferPointer<UInt8>, value: Double, exemplar: MetricFamily.Exemplar?) {
        bytes.append(contentsOf: prefix)
        appendValue(value)
        if let exemplar { appendExemplar(exemplar) }
        bytes.append(UInt8(ascii: "\n"))
    }

    /// ` # {trace_id="…",span_id="…"} value timestamp`.
    mutating func appendExemplar(_ exemplar: MetricFamily.Exemplar) {
        append(" # {trace_id=\"")
        withUnsafeBytes(of: exemplar.traceID.bytes) { appendHex($0) }
        append("\",span_id=\"")
        withUnsafeBytes(of: exemplar.spanID.bytes) { appendHex($0) }
        append("\"} ")
        appendValue(exemplar.value)
        bytes.append(UInt8(ascii: " "))
        appendMilliseconds(exemplar.timestamp)
    }

    /// Lowercase hex of bytes.
    mutating func appendHex(_ raw: UnsafeRawBufferPointer) {
        let digits: StaticString = "0123456789abcdef"
        digits.withUTF8Buffer { digits in
            for byte in raw {
                bytes.append(digits[Int(byte >> 4)])
                bytes.append(digits[Int(byte & 0x0f)])
            }
        }
    }

    /// A value as the format writes it: integers without a fraction, `+Inf`, `-Inf`, `NaN`.
    mutating func appendValue(_ value: Double) {
        if value == value.rounded(), abs(value) < 1e15 {
            appendInteger(Int64(value))
        } else {
            append(PrometheusText.format(value))
        }
    }

    mutating func appendInteger(_ value: Int64) {
        if value < 0 { bytes.append(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        if magnitude < 10 {
            bytes.append(UInt8(ascii: "0") + UInt8(magnitude))
            return
        }
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var start = 20
            while magnitude > 0 {
                start -= 1
                digits[start] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: digits[start..<20]))
        }
    }

    /// Seconds with millisecond precision (`1700000000.123`).
    mutating func appendMilliseconds(_ seconds: Double) {
        let millis = Int64((seconds * 1000).rounded())
        appendInteger(millis / 1000)
        bytes.append(UInt8(ascii: "."))
        let fraction = Int(abs(millis % 1000))
        bytes.append(UInt8(ascii: "0") + UInt8(fraction / 100))
        bytes.append(UInt8(ascii: "0") + UInt8(fraction / 10 % 10))
        bytes.append(UInt8(ascii: "0") + UInt8(fraction % 10))
    }
}
