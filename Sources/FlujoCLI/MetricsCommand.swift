import ArgumentParser
import Flujo
import FlujoPrometheus
import Foundation

/// `flujo metrics`: the Prometheus exposition once, or a /metrics server.
public struct MetricsCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(commandName: "metrics", abstract: "Print the Prometheus metrics once, or serve /metrics.")
    @OptionGroup var common: CommonOptions
    @Flag(help: "Serve GET /metrics until interrupted.") var serve = false
    @Option(help: "Address to bind (default: [telemetry.prometheus] host).") var host: String?
    @Option(parsing: .unconditional, help: "Port to bind; 0 picks a free one (default: [telemetry.prometheus] port).") var port: Int?

    public init() {}

    public func validate() throws {
        if let port { try OptionRange.check(port, "--port", 0...65_535) }
    }

    public func run() async throws {
        let loaded = try common.loadSettings()
        let store = try await common.openStateStore(loaded.settings, readOnly: true)
        let collector = MetricsCollector(store: store)
        guard serve else {
            Output.write(try await collector.render())
            return
        }
        let prometheus = loaded.settings.telemetry.prometheus
        let server: MetricsServer
        do {
            server = try await MetricsServer.start(host: host ?? prometheus.host, port: port ?? prometheus.port, collector: collector)
        } catch let error as MetricsServerError {
            throw CLIError(error.description)
        }
        Output.line("serving metrics on \(server.url) (Ctrl-C to stop)")
        _ = await Interrupt.wait()
        await server.stop()
    }
}
