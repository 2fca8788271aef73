import COTLP
import CProtobufC

/// Encodes metrics as an OTLP `ExportMetricsServiceRequest` with protobuf-c,
/// and reads the receiver's `ExportMetricsServiceResponse`.
public enum OTLPMetricsEncoder {
    /// The request body for `metrics`: one ResourceMetrics for the origin's
    /// resource, holding one ScopeMetrics for its instrumentation scope.
    public static func encodeExportRequest(origin: OTLPOrigin, metrics: [OTLPMetric]) -> [UInt8] {
        let arena = CArena()
        let request = arena.allocate(Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsServiceRequest.self)
        opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__init(request)

        let resourceMetrics = arena.allocate(Opentelemetry__Proto__Metrics__V1__ResourceMetrics.self)
        opentelemetry__proto__metrics__v1__resource_metrics__init(resourceMetrics)
        resourceMetrics.pointee.resource = OTLPCommon.resource(origin, arena)

        let scopeMetrics = arena.allocate(Opentelemetry__Proto__Metrics__V1__ScopeMetrics.self)
        opentelemetry__proto__metrics__v1__scope_metrics__init(scopeMetrics)
        scopeMetrics.pointee.scope = OTLPCommon.scope(origin, arena)

        let list = arena.allocate(UnsafeMutablePointer<Opentelemetry__Proto__Metrics__V1__Metric>?.self, count: metrics.count)
        for (index, metric) in metrics.enumerated() { list[index] = encode(metric, arena) }
        scopeMetrics.pointee.n_metrics = metrics.count
        scopeMetrics.pointee.metrics = metrics.isEmpty ? nil : list

        let scopeList = arena.allocate(UnsafeMutablePointer<Opentelemetry__Proto__Metrics__V1__ScopeMetrics>?.self)
        scopeList[0] = scopeMetrics
        resourceMetrics.pointee.n_scope_metrics = 1
        resourceMetrics.pointee.scope_metrics = scopeList
        let resourceList = arena.allocate(UnsafeMutablePointer<Opentelemetry__Proto__Metrics__V1__ResourceMetrics>?.self)
        resourceList[0] = resourceMetrics
        request.pointee.n_resource_metrics = 1
        request.pointee.resource_metrics = resourceList

        let size = opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__get_packed_size(request)
        var bytes = [UInt8](repeating: 0, count: size)
        let written = bytes.withUnsafeMutableBufferPointer { buffer in
            opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__pack(request, buffer.baseAddress)
        }
        precondition(written == size, "protobuf-c packed \(written) bytes, expected \(size)")
        return bytes
    }

    /// Reads `partial_success` (rejected data points) from a response body;
    /// nil when empty or absent, or when the body is not a valid message.
    public static func decodeExportResponse(_ body: [UInt8]) -> OTLPPartialSuccess? {
        if body.isEmpty { return nil }
        let message = body.withUnsafeBufferPointer { buffer in
            opentelemetry__proto__collector__metrics__v1__export_metrics_service_response__unpack(nil, buffer.count, buffer.baseAddress)
        }
        guard let message else { return nil }
        defer { opentelemetry__proto__collector__metrics__v1__export_metrics_service_response__free_unpacked(message, nil) }
        guard let partial = message.pointee.partial_success else { return nil }
        let text = partial.pointee.error_message.map { String(cString: $0) } ?? ""
        if partial.pointee.rejected_data_points == 0 && text.isEmpty { return nil }
        return OTLPPartialSuccess(rejectedSpans: partial.pointee.rejected_data_points, errorMessage: text)
    }

    private static func encode(_ metric: OTLPMetric, _ arena: CArena) -> UnsafeMutablePointer<Opentelemetry__Proto__Metrics__V1__Metric> {
        let out = arena.allocate(Opentelemetry__Proto__Metrics__V1__Metric.self)
        opentelemetry__proto__metrics__v1__metric__init(out)
        out.pointee.name = arena.string(metric.name)
        out.pointee.description = arena.string(metric.description)
        out.pointee.unit = arena.string(metric.unit)
        switch metric.data {
        case let .gauge(points):
            let gauge = arena.allocate(Opentelemetry__Proto__Metrics__V1__Gauge.self)
            opentelemetry__proto__metrics__v1__gauge__init(gauge)
            (gauge.pointee.n_data_points, gauge.pointee.data_points) = numberPoints(points, arena)
            out.pointee.data_case = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_GAUGE
            out.pointee.gauge = gauge
        case let .sum(points, monotonic, temporality):
            let sum = arena.allocate(Opentelemetry__Proto__Metrics__V1__Sum.self)
            opentelemetry__proto__metrics__v1__sum__init(sum)
            (sum.pointee.n_data_points, sum.pointee.data_points) = numberPoints(points, arena)
            sum.pointee.is_monotonic = monotonic ? 1 : 0
            sum.pointee.aggregation_temporality = Opentelemetry__Proto__Metrics__V1__AggregationTemporality(rawValue: UInt32(temporality.rawValue))
            out.pointee.data_case = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUM
            out.pointee.sum = sum
        case let .histogram(points, temporality):
            let histogram = arena.allocate(Opentelemetry__Proto__Metrics__V1__Histogram.self)
            opentelemetry__proto__metrics__v1__histogram__init(histogram)
            histogram.pointee.aggregation_temporality = Opentelemetry__Proto__Metrics__V1__AggregationTemporality(rawValue: UInt32(temporality.rawValue))
            let list = arena.allocate(UnsafeMutablePointer<Opentelemetry__Proto__Metrics__V1__HistogramDataPoint>?.self, count: points.count)
            for (index, point) in points.enumerated() {
                let item = arena.allocate(Opentelemetry__Proto__Metrics__V1__HistogramDataPoint.self)
                opentelemetry__proto__metrics__v1__histogram_data_point__init(item)
                (item.pointee.n_attributes, item.pointee.attributes) = OTLPCommon.keyValues(point.attributes, arena)
                item.pointee.start_time_unix_nano = point.startTimeUnixNano
                item.pointee.time_unix_nano = point.timeUnixNano
                item.pointee.count = point.count
                item.pointee._sum_case = OPENTELEMETRY__PROTO__METRICS__V1__HISTOGRAM_DATA_POINT___SUM_SUM
                item.pointee.sum = point.sum
                let counts = arena.allocate(UInt64.self, count: point.bucketCounts.count)
                counts.update(from: point.bucketCounts, count: point.bucketCounts.count)
                item.pointee.n_bucket_counts = point.bucketCounts.count
                item.pointee.bucket_counts = point.bucketCounts.isEmpty ? nil : counts
                let bounds = arena.allocate(Double.self, count: point.explicitBounds.count)
                bounds.update(from: point.explicitBounds, count: point.explicitBounds.count)
                item.pointee.n_explicit_bounds = point.explicitBounds.count
                item.pointee.explicit_bounds = point.explicitBounds.isEmpty ? nil : bounds
                if !point.exemplars.isEmpty {
                    let exemplars = arena.allocate(UnsafeMutablePointer<Opentelemetry__Proto__Metrics__V1__Exemplar>?.self, count: point.exemplars.count)
                    for (position, exemplar) in point.exemplars.enumerated() {
                        let entry = arena.allocate(Opentelemetry__Proto__Metrics__V1__Exemplar.self)
                        opentelemetry__proto__metrics__v1__exemplar__init(entry)
                        entry.pointee.time_unix_nano = exemplar.timeUnixNano
                        entry.pointee.trace_id = OTLPCommon.binary(exemplar.traceID, arena)
                        entry.pointee.span_id = OTLPCommon.binary(exemplar.spanID, arena)
                        entry.pointee.value_case = OPENTELEMETRY__PROTO__METRICS__V1__EXEMPLAR__VALUE_AS_DOUBLE
                        entry.pointee.as_double = exemplar.value
                        exemplars[position] = entry
                    }
                    item.pointee.n_exemplars = point.exemplars.count
                    item.pointee.exemplars = exemplars
                }
                list[index] = item
            }
            histogram.pointee.n_data_points = points.count
            histogram.pointee.data_points = points.isEmpty ? nil : list
            out.pointee.data_case = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_HISTOGRAM
            out.pointee.histogram = histogram
        }
        return out
    }

    private static func numberPoints(
        _ points: [OTLPNumberPoint], _ arena: CArena
    ) -> (Int, UnsafeMutablePointer<UnsafeMutablePointer<Opentelemetry__Proto__Metrics__V1__NumberDataPoint>?>?) {
        guard !points.isEmpty else { return (0, nil) }
        let list = arena.allocate(UnsafeMutablePointer<Opentelemetry__Proto__Metrics__V1__NumberDataPoint>?.self, count: points.count)
        for (index, point) in points.enumerated() {
            let item = arena.allocate(Opentelemetry__Proto__Metrics__V1__NumberDataPoint.self)
            opentelemetry__proto__metrics__v1__number_data_point__init(item)
            (item.pointee.n_attributes, item.pointee.attributes) = OTLPCommon.keyValues(point.attributes, arena)
            item.pointee.start_time_unix_nano = point.startTimeUnixNano
            item.pointee.time_unix_nano = point.timeUnixNano
            item.pointee.value_case = OPENTELEMETRY__PROTO__METRICS__V1__NUMBER_DATA_POINT__VALUE_AS_DOUBLE
            item.pointee.as_double = point.value
            list[index] = item
        }
        return (points.count, list)
    }
}
