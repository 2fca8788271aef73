import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// Serves `GET /metrics` over HTTP/1.1 with SwiftNIO.
///
/// `GET /metrics` answers the exposition; any other path is 404 and any other
/// method on /metrics 405. Scrapes may run concurrently. Binds 127.0.0.1:9464
/// unless told otherwise; port 0 picks a free port (see `port`). A client must
/// send a whole request within `Limits.requestTimeout` of connecting (or of
/// its previous answer, `Limits.idleTimeout` on a kept-alive connection), and
/// at most `Limits.maxConnections` are open at once: slow or idle clients
/// cannot hold the server. What it refused is served as
/// `flujo_metrics_connections_closed_total{reason}`.
public final class MetricsServer: Sendable {
    /// How long clients may take and how many may connect.
    public struct Limits: Sendable, Hashable {
        /// Time from connecting to a complete request.
        public var requestTimeout: Duration
        /// Time a kept-alive connection may wait for its next request.
        public var idleTimeout: Duration
        /// Connections open at once; more are closed as they arrive.
        public var maxConnections: Int

        /// Creates limits; by default 10 s for a request, 30 s idle, 256 connections.
        public init(requestTimeout: Duration = .seconds(10), idleTimeout: Duration = .seconds(30), maxConnections: Int = 256) {
            self.requestTimeout = requestTimeout
            self.idleTimeout = idleTimeout
            self.maxConnections = max(1, maxConnections)
        }
    }

    /// The bound address.
    public let host: String
    /// The bound port (the one picked when 0 was asked for).
    public let port: Int
    private let serving: Task<Void, Never>

    /// `http://host:port/metrics`, with an IPv6 address in brackets.
    public var url: String { "http://\(Self.authority(host: host, port: port))/metrics" }

    private typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>

    /// What the server refused or cut off, for its own metric family.
    final class Counters: Sendable {
        let open = Atomic<Int>(0)
        let overLimit = Atomic<Int>(0)
        let timedOut = Atomic<Int>(0)

        func families() -> [MetricFamily] {
            let name = "flujo_metrics_connections_closed_total"
            return [MetricFamily(name: name, help: "Connections to /metrics the server closed itself, by reason.", kind: .counter, samples: [
                .init(name: name, labels: [("reason", "over_limit")], value: Double(overLimit.load(ordering: .relaxed))),
                .init(name: name, labels: [("reason", "timeout")], value: Double(timedOut.load(ordering: .relaxed))),
            ])]
        }
    }

    private init(host: String, port: Int, serving: Task<Void, Never>) {
        self.host = host
        self.port = port
        self.serving = serving
    }

    /// `host:port`, with an IPv6 address in brackets.
    static func authority(host: String, port: Int) -> String {
        host.contains(":") && !host.hasPrefix("[") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// Whether `host` is reachable from this machine only.
    static func isLoopback(_ host: String) -> Bool {
        let bare = host.filter { $0 != "[" && $0 != "]" }.lowercased()
        return bare == "localhost" || bare.hasPrefix("127.") || bare == "::1"
    }

    /// Binds and starts serving; throws `MetricsServerError` when the address cannot be bound.
    /// Warns when the address is reachable from other machines.
    public static func start(
        host: String = "127.0.0.1", port: Int = 9464, collector: MetricsCollector, limits: Limits = Limits(),
        logger: Logger = Logger(label: "flujo.metrics")
    ) async throws -> MetricsServer {
        let counters = Counters()
        let server: NIOAsyncChannel<Connection, Never>
        do {
            server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .bind(host: host, port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                        return try Connection(wrappingChannelSynchronously: channel)
                    }
                }
        } catch let error as IOError where error.errnoCode == EADDRINUSE {
            throw MetricsServerError.addressInUse(host: host, port: port)
        } catch {
            throw MetricsServerError.cannotBind(host: host, port: port, reason: "\(error)")
        }
        let bound = server.channel.localAddress?.port ?? port
        if !isLoopback(host) {
            logger.warning("serving metrics on \(authority(host: host, port: bound)), which other machines can reach; bind 127.0.0.1 unless that is intended")
        }
        let serving = Task {
            do {
                try await withThrowingDiscardingTaskGroup { group in
                    try await server.executeThenClose { connections in
                        for try await connection in connections {
                            if counters.open.wrappingAdd(1, ordering: .relaxed).newValue > limits.maxConnections {
                                counters.open.wrappingSubtract(1, ordering: .relaxed)
                                counters.overLimit.wrappingAdd(1, ordering: .relaxed)
                                // Closed at once, through the wrapper that owns the channel's reader and writer.
                                group.addTask { try? await connection.executeThenClose { _, _ in } }
                                continue
                            }
                            group.addTask {
                                defer { counters.open.wrappingSubtract(1, ordering: .relaxed) }
                                await serve(connection, collector: collector, counters: counters, limits: limits, logger: logger)
                            }
                        }
                    }
                }
            } catch is CancellationError {
            } catch {
                logger.debug("metrics server stopped: \(error)")
            }
        }
        return MetricsServer(host: host, port: bound, serving: serving)
    }

    /// Stops serving and closes every connection.
    public func stop() async {
        serving.cancel()
        await serving.value
    }

    /// Closes `channel` after `delay` unless cancelled first.
    private static func deadline(_ channel: any Channel, after delay: Duration, counters: Counters) -> Scheduled<Void> {
        channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(clamping: delay.components.seconds &* 1_000_000_000 &+ delay.components.attoseconds / 1_000_000_000))) {
            counters.timedOut.wrappingAdd(1, ordering: .relaxed)
            channel.close(promise: nil)
        }
    }

    private static func serve(_ connection: Connection, collector: MetricsCollector, counters: Counters, limits: Limits, logger: Logger) async {
        let channel = connection.channel
        var timer = deadline(channel, after: limits.requestTimeout, counters: counters)
        defer { timer.cancel() }
        do {
            try await connection.executeThenClose { inbound, outbound in
                var head: HTTPRequestHead?
                for try await part in inbound {
                    switch part {
                    case let .head(requestHead):
                        head = requestHead
                    case .body:
                        continue
                    case .end:
                        guard let request = head else { continue }
                        timer.cancel()
                        let (status, contentType, body, extra) = await respond(request, collector: collector, counters: counters, logger: logger)
                        var headers = HTTPHeaders()
                        headers.add(name: "Content-Type", value: contentType)
                        headers.add(name: "Content-Length", value: String(body.readableBytes))
                        for (name, value) in extra { headers.add(name: name, value: value) }
                        let keepAlive = request.isKeepAlive
                        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
                        try await outbound.write(.head(HTTPResponseHead(version: request.version, status: status, headers: headers)))
                        if request.method != .HEAD { try await outbound.write(.body(.byteBuffer(body))) }
                        try await outbound.write(.end(nil))
                        if !keepAlive { return }
                        head = nil
                        timer = deadline(channel, after: limits.idleTimeout, counters: counters)
                    }
                }
            }
        } catch {
            logger.debug("metrics connection closed: \(error)")
        }
    }

    private static func respond(_ request: HTTPRequestHead, collector: MetricsCollector, counters: Counters, logger: Logger) async -> (HTTPResponseStatus, String, ByteBuffer, [(String, String)]) {
        let path = request.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? request.uri
        guard path == "/metrics" else {
            return (.notFound, "text/plain; charset=utf-8", ByteBuffer(string: "not found: metrics are at /metrics\n"), [])
        }
        guard request.method == .GET || request.method == .HEAD else {
            return (.methodNotAllowed, "text/plain; charset=utf-8", ByteBuffer(string: "method not allowed: use GET\n"), [("Allow", "GET, HEAD")])
        }
        do {
            // Content negotiation: OpenMetrics (with exemplars) when asked for, Prometheus text otherwise.
            let families = try await collector.collect() + counters.families()
            if OpenMetricsText.preferred(accept: request.headers.first(name: "Accept")) {
                return (.ok, OpenMetricsText.contentType, ByteBuffer(string: OpenMetricsText.render(families)), [("Vary", "Accept")])
            }
            return (.ok, PrometheusText.contentType, ByteBuffer(string: PrometheusText.render(families)), [("Vary", "Accept")])
        } catch {
            logger.error("metrics scrape failed: \(error)")
            return (.internalServerError, "text/plain; charset=utf-8", ByteBuffer(string: "scrape failed: \(error)\n"), [])
        }
    }
}

/// The metrics server could not start.
public enum MetricsServerError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Another process listens on the address.
    case addressInUse(host: String, port: Int)
    /// Binding failed for another reason.
    case cannotBind(host: String, port: Int, reason: String)

    public var description: String {
        switch self {
        case let .addressInUse(host, port):
            return "cannot serve metrics on \(host):\(port): the port is already in use. Choose another with --port (or [telemetry.prometheus] port), or 0 for a free one."
        case let .cannotBind(host, port, reason):
            return "cannot serve metrics on \(host):\(port): \(reason)"
        }
    }
}
