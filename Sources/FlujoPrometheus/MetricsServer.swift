import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// Serves `GET /metrics` over HTTP/1.1 with SwiftNIO.
///
/// `GET /metrics` answers the exposition; any other path is 404 and any other
/// method on /metrics 405. Scrapes may run concurrently. Binds 127.0.0.1:9464
/// unless told otherwise; port 0 picks a free port (see `port`).
public final class MetricsServer: Sendable {
    /// The bound address.
    public let host: String
    /// The bound port (the one picked when 0 was asked for).
    public let port: Int
    private let serving: Task<Void, Never>

    private typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>

    private init(host: String, port: Int, serving: Task<Void, Never>) {
        self.host = host
        self.port = port
        self.serving = serving
    }

    /// Binds and starts serving; throws `MetricsServerError` when the address cannot be bound.
    public static func start(host: String = "127.0.0.1", port: Int = 9464, collector: MetricsCollector, logger: Logger = Logger(label: "flujo.metrics")) async throws -> MetricsServer {
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
        let serving = Task {
            do {
                try await withThrowingDiscardingTaskGroup { group in
                    try await server.executeThenClose { connections in
                        for try await connection in connections {
                            group.addTask { await serve(connection, collector: collector, logger: logger) }
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

    private static func serve(_ connection: Connection, collector: MetricsCollector, logger: Logger) async {
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
                        let (status, contentType, body, extra) = await respond(request, collector: collector, logger: logger)
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
                    }
                }
            }
        } catch {
            logger.debug("metrics connection closed: \(error)")
        }
    }

    private static func respond(_ request: HTTPRequestHead, collector: MetricsCollector, logger: Logger) async -> (HTTPResponseStatus, String, ByteBuffer, [(String, String)]) {
        let path = request.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? request.uri
        guard path == "/metrics" else {
            return (.notFound, "text/plain; charset=utf-8", ByteBuffer(string: "not found: metrics are at /metrics\n"), [])
        }
        guard request.method == .GET || request.method == .HEAD else {
            return (.methodNotAllowed, "text/plain; charset=utf-8", ByteBuffer(string: "method not allowed: use GET\n"), [("Allow", "GET, HEAD")])
        }
        do {
            let text = try await collector.render()
            return (.ok, PrometheusText.contentType, ByteBuffer(string: text), [])
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
