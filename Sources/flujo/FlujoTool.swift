import ArgumentParser
import Flujo
import FlujoCLI
import Foundation

/// The `flujo` command: the operator commands of FlujoCLI plus the demo.
@main
struct FlujoTool: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flujo",
        abstract: "Run the demo pipeline and operate background tasks kept in the Flujo state database.",
        version: flujoVersion,
        subcommands: [DemoCommand.self] + FlujoCLI.operatorCommands)

    static func main() async {
        let registry = StepRegistry()
        DemoSteps.register(in: registry)
        Foundation.exit(await FlujoCLI.main(root: FlujoTool.self, registry: registry))
    }
}
