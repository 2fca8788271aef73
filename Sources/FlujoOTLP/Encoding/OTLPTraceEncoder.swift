import COTLP
import CProtobufC

/// Encodes spans as an OTLP `ExportTraceServiceRequest` with protobuf-c, and
/// decodes the receiver's `ExportTraceServiceResponse`.
///
/// Spec: "The client MUST send the request as a binary-encoded Protobuf
/// ExportTraceServiceRequest message" when the protocol is http/protobuf.
public enum OTLPTraceEncoder {
    /// The request body for `spans`: one ResourceSpans for the origin's
    /// resource, holding one ScopeSpans for its instrumentation scope.
    public static func encodeExportRequest(origin: OTLPOrigin, spans: [OTLPSpan]) -> [UInt8] {
        let arena = CArena()
        let request = arena.allocate(Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest.self)
        opentelemetry__proto__collector__trace__v1__export_trace_service_request__init(request)

        let resourceSpans = arena.allocate(Opentelemetry__Proto__Trace__V1__ResourceSpans.self)
        opentelemetry__proto__trace__v1__resource_spans__init(resourceSpans)
        resourceSpans.pointee.resource = OTLPCommon.resource(origin, arena)

        let scopeSpans = arena.allocate(Opentelemetry__Proto__Trace__V1__ScopeSpans.self)
        opentelemetry__proto__trace__v1__scope_spans__init(scopeSpans)
        scopeSpans.pointee.scope = OTLPCommon.scope(origin, arena)

        let spanPointers = arena.allocate(UnsafeMutablePointer<Opentelemetry__Proto__Trace__V1__Span>?.self, count: spans.count)
        for (index, span) in spans.enumerated() {
            spanPointers[index] = encode(span, arena)
        }
        scopeSpans.pointee.n_spans = spans.count
        scopeSpans.pointee.spans = spanPointers

        let scopeList = arena.allocate(UnsafeMutablePointer<Opentelemetry__Proto__Trace__V1__ScopeSpans>?.self)
        scopeList[0] = scopeSpans
        resourceSpans.pointee.n_scope_spans = 1
        resourceSpans.pointee.scope_spans = scopeList

        let resourceList = arena.allocate(UnsafeMutablePointer<Opentelemetry__Proto__Trace__V1__ResourceSpans>?.self)
        resourceList[0] = resourceSpans
        request.pointee.n_resource_spans = 1
        request.pointee.resource_spans = resourceList

        let size = opentelemetry__proto__collector__trace__v1__export_trace_service_request__get_packed_size(request)
        var bytes = [UInt8](repeating: 0, count: size)
        let written = bytes.withUnsafeMutableBufferPointer { buffer in
            opentelemetry__proto__collector__trace__v1__export_trace_service_request__pack(request, buffer.baseAddress)
        }
        precondition(written == size, "protobuf-c packed \(written) bytes, expected \(size)")
        return bytes
    }

    /// Reads `partial_success` from a response body. Nil when the body is empty
    /// or carries no partial success; throws when it is not a valid message.
    public static func decodeExportResponse(_ body: [UInt8]) throws(OTLPDecodingError) -> OTLPPartialSuccess? {
        if body.isEmpty { return nil }
        let message = body.withUnsafeBufferPointer { buffer in
            opentelemetry__proto__collector__trace__v1__export_trace_service_response__unpack(nil, buffer.count, buffer.baseAddress)
        }
        guard let message else { throw OTLPDecodingError(byteCount: body.count) }
        defer { opentelemetry__proto__collector__trace__v1__export_trace_service_response__free_unpacked(message, nil) }
        guard let partial = message.pointee.partial_success else { return nil }
        let text = partial.pointee.error_message.map { String(cString: $0) } ?? ""
        if partial.pointee.rejected_spans == 0 && text.isEmpty { return nil }
        return OTLPPartialSuccess(rejectedSpans: partial.pointee.rejected_spans, errorMessage: text)
    }

    private static func encode(_ span: OTLPSpan, _ arena: CArena) -> UnsafeMutablePointer<Opentelemetry__Proto__Trace__V1__Span> {
        let out = arena.allocate(Opentelemetry__Proto__Trace__V1__Span.self)
        opentelemetry__proto__trace__v1__span__init(out)
        out.pointee.trace_id = OTLPCommon.binary(span.traceID, arena)
        out.pointee.span_id = OTLPCommon.binary(span.spanID, arena)
        out.pointee.parent_span_id = OTLPCommon.binary(span.parentSpanID, arena)
        out.pointee.name = arena.string(span.name)
        out.pointee.kind = Opentelemetry__Proto__Trace__V1__Span__SpanKind(rawValue: UInt32(span.kind.rawValue))
        out.pointee.start_time_unix_nano = span.startTimeUnixNano
        out.pointee.end_time_unix_nano = span.endTimeUnixNano
        (out.pointee.n_attributes, out.pointee.attributes) = OTLPCommon.keyValues(span.attributes, arena)

        if !span.events.isEmpty {
            let list = arena.allocate(UnsafeMutablePointer<Opentelemetry__Proto__Trace__V1__Span__Event>?.self, count: span.events.count)
            for (index, event) in span.events.enumerated() {
                let item = arena.allocate(Opentelemetry__Proto__Trace__V1__Span__Event.self)
                opentelemetry__proto__trace__v1__span__event__init(item)
                item.pointee.time_unix_nano = event.timeUnixNano
                item.pointee.name = arena.string(event.name)
                (item.pointee.n_attributes, item.pointee.attributes) = OTLPCommon.keyValues(event.attributes, arena)
                list[index] = item
            }
            out.pointee.n_events = span.events.count
            out.pointee.events = list
        }
        if !span.links.isEmpty {
            let list = arena.allocate(UnsafeMutablePointer<Opentelemetry__Proto__Trace__V1__Span__Link>?.self, count: span.links.count)
            for (index, link) in span.links.enumerated() {
                let item = arena.allocate(Opentelemetry__Proto__Trace__V1__Span__Link.self)
                opentelemetry__proto__trace__v1__span__link__init(item)
                item.pointee.trace_id = OTLPCommon.binary(link.traceID, arena)
                item.pointee.span_id = OTLPCommon.binary(link.spanID, arena)
                (item.pointee.n_attributes, item.pointee.attributes) = OTLPCommon.keyValues(link.attributes, arena)
                list[index] = item
            }
            out.pointee.n_links = span.links.count
            out.pointee.links = list
        }
        if span.status.code != .unset || !span.status.message.isEmpty {
            let status = arena.allocate(Opentelemetry__Proto__Trace__V1__Status.self)
            opentelemetry__proto__trace__v1__status__init(status)
            status.pointee.code = Opentelemetry__Proto__Trace__V1__Status__StatusCode(rawValue: UInt32(span.status.code.rawValue))
            status.pointee.message = arena.string(span.status.message)
            out.pointee.status = status
        }
        return out
    }
}

/// A response body that is not a valid `ExportTraceServiceResponse`.
public struct OTLPDecodingError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Size of the body that failed to decode.
    public var byteCount: Int

    public var description: String {
        "the OTLP receiver's response (\(byteCount) bytes) is not a valid ExportTraceServiceResponse"
    }
}
