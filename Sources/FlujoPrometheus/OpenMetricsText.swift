import Foundation

/// Writes metric families in the OpenMetrics 1.0 text format: counters named
/// without `_total` in their metadata, histogram buckets with the latest
/// exemplar of each (`# {trace_id="...",span_id="..."} value timestamp`), and
/// `# EOF` at the end. Label values and HELP are escaped as in Prometheus text.
public enum OpenMetricsText {
    /// The Content-Type of the format.
    public static let contentType = "application/openmetrics-text; version=1.0.0; charset=utf-8"

    /// The exposition of `families`.
    public static func render(_ families: [MetricFamily]) -> String {
        var out = ExpositionWriter(capacity: max(families.count * 200, ExpositionWriter.lastSize.load(ordering: .relaxed) * 9 / 8))
        for family in families.sorted(by: { $0.name < $1.name }) {
            // OpenMetrics names a counter's family without the `_total` of its sample.
            let name = family.kind == .counter && family.name.hasSuffix("_total") ? String(family.name.dropLast(6)) : family.name
            out.append("# TYPE " as StaticString)
            out.append(name)
            out.append(byte: UInt8(ascii: " "))
            out.append(family.kind.rawValue)
            out.append("\n# HELP " as StaticString)
            out.append(name)
            out.append(byte: UInt8(ascii: " "))
            out.appendEscaped(family.help, quote: false)
            out.append(byte: UInt8(ascii: "\n"))
            family.writeSamples(into: &out, exemplars: true)
        }
        out.append("# EOF\n" as StaticString)
        return out.text
    }

    /// Which format a scrape asked for in its `Accept` header: OpenMetrics
    /// when it accepts `application/openmetrics-text` at least as much as
    /// plain text; Prometheus text otherwise (the default).
    public static func preferred(accept: String?) -> Bool {
        guard let accept, !accept.isEmpty else { return false }
        var openMetrics = 0.0
        var text = 0.0
        for range in accept.split(separator: ",") {
            let parts = range.split(separator: ";").map { $0.trimmingCharacters(in: .whitespaces) }
            guard let type = parts.first?.lowercased() else { continue }
            var quality = 1.0
            for parameter in parts.dropFirst() where parameter.lowercased().hasPrefix("q=") {
                quality = Double(parameter.dropFirst(2)) ?? 0
            }
            switch type {
            case "application/openmetrics-text": openMetrics = max(openMetrics, quality)
            case "text/plain", "text/*", "*/*": text = max(text, quality)
            default: break
            }
        }
        return openMetrics > 0 && openMetrics >= text
    }
}
