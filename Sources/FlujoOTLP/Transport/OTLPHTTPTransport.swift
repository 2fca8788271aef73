import CCurl
import CCurlShim
import Flujo
import Foundation
import Logging

/// What one export came to.
enum ExportOutcome: Equatable {
    /// Accepted (possibly with some spans rejected by the receiver).
    case delivered(partial: OTLPPartialSuccess?)
    /// Not accepted; `retryable` failures ran out of time, the others were final.
    case failed(reason: String)
}

/// Sends OTLP/HTTP requests with libcurl: protobuf bodies, optional gzip,
/// keep-alive on one reused handle, retries with backoff.
///
/// Blocking: used only from the exporter's own thread, one export at a time.
final class OTLPHTTPTransport {
    private static let globalInit: Void = { curl_global_init(Int(CURL_GLOBAL_DEFAULT)) }()

    private let url: String
    private let settings: OTLPSettings
    private let logger: Logger
    private let handle: UnsafeMutableRawPointer?
    private var headerList: UnsafeMutablePointer<curl_slist>?
    private(set) var retries = 0
    private let decodeResponse: @Sendable ([UInt8]) -> OTLPPartialSuccess?

    /// Largest response body read; the rest is discarded.
    static let maxResponseBytes = 4 * 1024 * 1024

    /// A transport posting to `settings.tracesURL` (for metrics, the metrics URL
    /// `OTLPMetricsSettings.transport(from:)` puts there); `decodeResponse` reads the
    /// receiver's partial success (traces by default).
    init(
        settings: OTLPSettings, logger: Logger,
        decodeResponse: @escaping @Sendable ([UInt8]) -> OTLPPartialSuccess? = { (try? OTLPTraceEncoder.decodeExportResponse($0)) ?? nil }
    ) {
        _ = Self.globalInit
        self.decodeResponse = decodeResponse
        self.url = settings.tracesURL
        self.settings = settings
        self.logger = logger
        self.handle = curl_easy_init()
        var list: UnsafeMutablePointer<curl_slist>?
        var headers = ["Content-Type: application/x-protobuf", "Expect:"]
        if settings.compression == "gzip" { headers.append("Content-Encoding: gzip") }
        for (name, value) in settings.headers.sorted(by: { $0.key < $1.key }) {
            // Settings made in code skip the loader's check: a header that could inject another line is never sent.
            if let problem = OTLPRules.headerProblem(name: name, value: value) {
                logger.error("OTLP header not sent: \(problem)")
                continue
            }
            headers.append("\(name): \(value)")
        }
        for header in headers { list = curl_slist_append(list, header) }
        headerList = list
    }

    deinit {
        curl_slist_free_all(headerList)
        if let handle { curl_easy_cleanup(handle) }
    }

    /// Posts `body` until it is delivered, fails for good, or `deadline` passes.
    ///
    /// Spec (OTLP/HTTP, "Failures"): "If the processing of the request fails,
    /// the server MUST respond with appropriate HTTP 4xx or HTTP 5xx status
    /// code ... The requests that receive a response status code listed in
    /// following table SHOULD be retried: 429, 502, 503, 504. All other 4xx or
    /// 5xx response status codes MUST NOT be retried." and "If the server
    /// signals throttling [with Retry-After], the client SHOULD honour it."
    /// Connection failures and timeouts are retried too.
    func export(_ protobuf: [UInt8], deadline: ContinuousClock.Instant) -> ExportOutcome {
        let body = settings.compression == "gzip" ? Gzip.compress(protobuf) : protobuf
        var attempt = 0
        while true {
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else { return .failed(reason: "export deadline passed after \(attempt) attempt(s)") }
            attempt += 1
            let reason: String
            var retryAfterSeconds: Int64 = 0
            switch perform(body, timeout: min(remaining, .milliseconds(settings.timeoutMs))) {
            case let .transportError(message):
                reason = message
            case let .status(code, _, responseBody) where (200..<300).contains(code):
                return .delivered(partial: decodeResponse(responseBody))
            case let .status(code, retryAfter, _) where [429, 502, 503, 504].contains(code):
                reason = "HTTP \(code)"
                retryAfterSeconds = retryAfter
            case let .status(code, _, _):
                return .failed(reason: "HTTP \(code) (not retryable)")
            }
            let wait = retryAfterSeconds > 0 ? Duration.seconds(retryAfterSeconds) : backoff(attempt)
            if ContinuousClock.now + wait >= deadline {
                return .failed(reason: "\(reason); a retry in \(wait) would pass the export deadline")
            }
            retries += 1
            logger.debug("OTLP export failed (\(reason)); retrying in \(wait)")
            Thread.sleep(forTimeInterval: wait.seconds)
        }
    }

    /// Exponential backoff with full jitter, from 100 ms, capped at 5 s.
    private func backoff(_ attempt: Int) -> Duration {
        let base = min(5.0, 0.1 * pow(2.0, Double(attempt - 1)))
        return .milliseconds(Int((base * (0.5 + Double.random(in: 0..<0.5))) * 1000))
    }

    private enum Response {
        case status(Int, retryAfterSeconds: Int64, body: [UInt8])
        case transportError(String)
    }

    private final class ResponseBuffer {
        var bytes: [UInt8] = []
    }

    private func perform(_ body: [UInt8], timeout: Duration) -> Response {
        guard let handle else { return .transportError("libcurl could not create a handle") }
        let buffer = ResponseBuffer()
        let context = Unmanaged.passUnretained(buffer).toOpaque()
        let code: CURLcode = body.withUnsafeBufferPointer { bodyPointer in
            flujo_curl_setopt_string(handle, CURLOPT_URL, url)
            // Only HTTP(S), for the request and for any redirect it follows.
            flujo_curl_setopt_string(handle, CURLOPT_PROTOCOLS_STR, "http,https")
            flujo_curl_setopt_string(handle, CURLOPT_REDIR_PROTOCOLS_STR, "http,https")
            flujo_curl_setopt_long(handle, CURLOPT_POST, 1)
            flujo_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
            flujo_curl_setopt_long(handle, CURLOPT_TCP_KEEPALIVE, 1)
            flujo_curl_setopt_long(handle, CURLOPT_TIMEOUT_MS, max(1, Int(timeout.seconds * 1000)))
            flujo_curl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, max(1, min(Int(timeout.seconds * 1000), 10_000)))
            flujo_curl_setopt_string(handle, CURLOPT_USERAGENT, "flujo-swift-otlp-exporter/\(flujoVersion)")
            flujo_curl_setopt_slist(handle, CURLOPT_HTTPHEADER, headerList)
            // POSTFIELDS does not copy: the body stays alive for this whole closure, which spans the transfer.
            flujo_curl_setopt_pointer(handle, CURLOPT_POSTFIELDS, UnsafeMutableRawPointer(mutating: bodyPointer.baseAddress))
            flujo_curl_setopt_off_t(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(bodyPointer.count))
            flujo_curl_setopt_write_function(handle) { data, size, count, context in
                let buffer = Unmanaged<ResponseBuffer>.fromOpaque(context!).takeUnretainedValue()
                let total = size * count
                let room = max(0, OTLPHTTPTransport.maxResponseBytes - buffer.bytes.count)
                if let data, room > 0 {
                    data.withMemoryRebound(to: UInt8.self, capacity: total) { bytes in
                        buffer.bytes.append(contentsOf: UnsafeBufferPointer(start: bytes, count: min(total, room)))
                    }
                }
                return total
            }
            flujo_curl_setopt_pointer(handle, CURLOPT_WRITEDATA, context)
            if let certificate = settings.certificate { flujo_curl_setopt_string(handle, CURLOPT_CAINFO, certificate) }
            if let clientCertificate = settings.clientCertificate { flujo_curl_setopt_string(handle, CURLOPT_SSLCERT, clientCertificate) }
            if let clientKey = settings.clientKey { flujo_curl_setopt_string(handle, CURLOPT_SSLKEY, clientKey) }
            return curl_easy_perform(handle)
        }
        guard code == CURLE_OK else {
            return .transportError("\(String(cString: curl_easy_strerror(code))) (\(OTLPRules.redactedURL(url)))")
        }
        var status = 0
        flujo_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        var retryAfter: curl_off_t = 0
        flujo_curl_getinfo_off_t(handle, CURLINFO_RETRY_AFTER, &retryAfter)
        return .status(status, retryAfterSeconds: Int64(retryAfter), body: buffer.bytes)
    }
}

extension Duration {
    var seconds: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}
