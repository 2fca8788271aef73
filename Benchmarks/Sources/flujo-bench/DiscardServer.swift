import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A local HTTP server that reads every request body, counts it, and answers
/// 200 with an empty body (an empty ExportTraceServiceResponse).
final class DiscardServer: Sendable {
    let port: Int
    let counters: Counters
    private let channel: any Channel

    final class Counters: Sendable {
        let requests = Atomic<Int>(0)
        let bodyBytes = Atomic<Int>(0)
    }

    private final class Handler: ChannelInboundHandler, Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let counters: Counters

        init(counters: Counters) { self.counters = counters }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head:
                break
            case let .body(buffer):
                counters.bodyBytes.add(buffer.readableBytes, ordering: .relaxed)
            case .end:
                counters.requests.add(1, ordering: .relaxed)
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: "application/x-protobuf")
                headers.add(name: "Content-Length", value: "0")
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            }
        }
    }

    init() async throws {
        let counters = Counters()
        self.counters = counters
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Handler(counters: counters))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        port = channel.localAddress?.port ?? 0
    }

    func stop() async {
        try? await channel.close()
    }
}
