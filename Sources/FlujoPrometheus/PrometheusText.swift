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
        var out = ""
        out.reserveCapacity(families.count * 160)
        for family in families.sorted(by: { $0.name < $1.name }) {
            out += "# HELP \(family.name) \(escapeHelp(family.help))\n"
            out += "# TYPE \(family.name) \(family.kind.rawValue)\n"
            for sample in family.samples {
                out += sample.name
                if !sample.labels.isEmpty {
                    out += "{"
                    var first = true
                    for (name, value) in sample.labels {
                        if !first { out += "," }
                        first = false
                        out += name
                        out += "=\""
                        out += escapeLabelValue(value)
                        out += "\""
                    }
                    out += "}"
                }
                out += " "
                out += format(sample.value)
                out += "\n"
            }
        }
        return out
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
