import Flujo
import FlujoOTLP
import FlujoPrometheus
import Foundation
import Synchronization

/// Reads every metric family at a fixed interval and pushes it over OTLP:
/// the same metrics `/metrics` serves, as OTLP gauges, monotonic sums and
/// explicit-bucket histograms (with their exemplars), cumulative by default or
/// delta (`OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`).
///
/// OTLP names drop the `_total` of counters (an OTLP sum is a counter by its
/// type); a collector's Prometheus exporter adds it back.
public final class MetricsPush: Sendable {
    private let collector: MetricsCollector
    /// The exporter the snapshots go to.
    public let exporter: OTLPMetricsExporter
    private let interval: Duration
    private let temporality: OTLPMetric.Temporality
    private let startUnixNano = Identifiers.nowUnixNano()
    /// Previous cumulative values by series, and when they were read, for delta temporality.
    private let previous = Mutex<(values: [String: [Double]], at: UInt64?)>(([:], nil))
    private let loop = Mutex<Task<Void, Never>?>(nil)

    /// Creates a push of `collector`'s families every `settings.exportIntervalMs`.
    public init(collector: MetricsCollector, exporter: OTLPMetricsExporter, settings: OTLPMetricsSettings) {
        self.collector = collector
        self.exporter = exporter
        interval = .milliseconds(max(1, settings.exportIntervalMs))
        temporality = settings.temporality == "cumulative" ? .cumulative : .delta
    }

    /// Starts pushing at each interval (the first push after one interval).
    public func start() {
        loop.withLock { loop in
            guard loop == nil else { return }
            let interval = self.interval
            loop = Task { [self] in
                while !Task.isCancelled {
                    try? await Task.sleep(for: interval)
                    if Task.isCancelled { break }
                    await pushOnce()
                }
            }
        }
    }

    /// Reads the families now and submits them.
    public func pushOnce() async {
        guard let families = try? await collector.collect() else { return }
        exporter.submit(metrics(families, now: Identifiers.nowUnixNano()))
    }

    /// Stops the interval, pushes a last snapshot and flushes within `timeout`,
    /// without blocking a thread of the cooperative pool.
    public func shutdown(timeout: Duration) async {
        let running = loop.withLock { loop -> Task<Void, Never>? in
            defer { loop = nil }
            return loop
        }
        running?.cancel()
        await running?.value
        await pushOnce()
        let exporter = self.exporter
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            let thread = Thread {
                _ = exporter.shutdown(timeout: timeout)
                done.resume()
            }
            thread.start()
        }
    }

    /// The OTLP form of `families` read at `now`.
    func metrics(_ families: [MetricFamily], now: UInt64) -> [OTLPMetric] {
        previous.withLock { previous in
            let start = temporality == .delta ? (previous.at ?? startUnixNano) : startUnixNano
            var next: [String: [Double]] = [:]
            /// The change since the last push of a series (delta), or its value (cumulative).
            func change(_ key: String, _ values: [Double]) -> [Double] {
                next[key] = values
                guard temporality == .delta, let before = previous.values[key], before.count == values.count else { return values }
                return zip(values, before).map { max(0, $0 - $1) }
            }
            var out: [OTLPMetric] = []
            for family in families.sorted(by: { $0.name < $1.name }) {
                let unit = family.name.hasSuffix("_seconds") || family.name.hasSuffix("_seconds_total") ? "s" : ""
                switch family.kind {
                case .gauge:
                    let points = family.samples.map { sample in
                        OTLPNumberPoint(attributes: Self.attributes(sample.labels), startTimeUnixNano: startUnixNano, timeUnixNano: now, value: sample.value)
                    }
                    out.append(OTLPMetric(name: family.name, description: family.help, unit: unit, data: .gauge(points)))
                case .counter:
                    let name = family.name.hasSuffix("_total") ? String(family.name.dropLast(6)) : family.name
                    let points = family.samples.map { sample in
                        OTLPNumberPoint(
                            attributes: Self.attributes(sample.labels), startTimeUnixNano: start, timeUnixNano: now,
                            value: change(name + Self.seriesKey(sample.labels), [sample.value])[0])
                    }
                    out.append(OTLPMetric(name: name, description: family.help, unit: unit, data: .sum(points, monotonic: true, temporality: temporality)))
                case .histogram:
                    let points = Self.histogramSeries(family).map { series in
                        // Bucket counts, then count and sum, change together.
                        let values = change(family.name + Self.seriesKey(series.labels), series.buckets.map(\.count) + [series.count, series.sum])
                        let buckets = Array(values.prefix(series.buckets.count))
                        let counts = zip(buckets, [0] + buckets).map { UInt64(max(0, $0 - $1)) }
                        return OTLPHistogramPoint(
                            attributes: Self.attributes(series.labels), startTimeUnixNano: start, timeUnixNano: now,
                            count: UInt64(values[series.buckets.count]), sum: values[series.buckets.count + 1], bucketCounts: counts,
                            explicitBounds: series.buckets.compactMap(\.bound), exemplars: series.exemplars)
                    }
                    out.append(OTLPMetric(name: family.name, description: family.help, unit: unit, data: .histogram(points, temporality: temporality)))
                }
            }
            previous = (next, now)
            return out
        }
    }

    private struct HistogramSeries {
        var labels: [(String, String)]
        /// Cumulative counts by upper bound (nil: +Inf), in order.
        var buckets: [(bound: Double?, count: Double)] = []
        var count = 0.0
        var sum = 0.0
        var exemplars: [OTLPExemplar] = []
    }

    /// A histogram family's samples grouped by series (labels without `le`).
    private static func histogramSeries(_ family: MetricFamily) -> [HistogramSeries] {
        var order: [String] = []
        var series: [String: HistogramSeries] = [:]
        for sample in family.samples {
            let labels = sample.labels.filter { $0.0 != "le" }
            let key = seriesKey(labels)
            if series[key] == nil {
                order.append(key)
                series[key] = HistogramSeries(labels: labels)
            }
            if sample.name.hasSuffix("_bucket"), let le = sample.labels.first(where: { $0.0 == "le" })?.1 {
                series[key]!.buckets.append((le == "+Inf" ? nil : Double(le), sample.value))
                if let exemplar = sample.exemplar {
                    series[key]!.exemplars.append(OTLPExemplar(
                        timeUnixNano: UInt64(max(0, exemplar.timestamp) * 1e9), value: exemplar.value,
                        traceID: withUnsafeBytes(of: exemplar.traceID.bytes) { Array($0) },
                        spanID: withUnsafeBytes(of: exemplar.spanID.bytes) { Array($0) }))
                }
            } else if sample.name.hasSuffix("_count") {
                series[key]!.count = sample.value
            } else if sample.name.hasSuffix("_sum") {
                series[key]!.sum = sample.value
            }
        }
        return order.compactMap { series[$0] }
    }

    private static func attributes(_ labels: [(String, String)]) -> [OTLPAttribute] {
        labels.map { OTLPAttribute($0.0, .string($0.1)) }
    }

    private static func seriesKey(_ labels: [(String, String)]) -> String {
        labels.map { "\u{1}\($0.0)\u{2}\($0.1)" }.joined()
    }
}
