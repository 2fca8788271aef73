import Flujo
import Foundation

/// The demo's order: what a shop would pass through its pipeline.
struct DemoOrder: Codable, Sendable {
    var orderID: String
    var customer: String
    var amountUSD: Double
}

/// Input of a demo background task: the order passed on by the pipeline, or
/// what an operator gives with `--data` (every field may be missing, so
/// `--data '{"approved": true}'` is enough to approve a paused review).
struct DemoTaskInput: Codable, Sendable {
    var orderID: String
    var approved: Bool

    enum CodingKeys: String, CodingKey {
        case orderID, orderIDSnake = "order_id", approved
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        orderID = try container.decodeIfPresent(String.self, forKey: .orderID)
            ?? container.decodeIfPresent(String.self, forKey: .orderIDSnake) ?? "unknown"
        approved = try container.decodeIfPresent(Bool.self, forKey: .approved) ?? false
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(orderID, forKey: .orderID)
        try container.encode(approved, forKey: .approved)
    }
}

/// A transient failure of a demo partner service.
struct PartnerUnavailable: Error, CategorizedError, CustomStringConvertible {
    var service: String
    var category: ErrorCategory { .network }
    var description: String { "\(service) is unavailable (connection refused); retry later" }
}

enum DemoSteps {
    static let validate = Step<DemoOrder, DemoOrder>("validate_order") { order, context in
        guard order.amountUSD > 0 else { throw DemoValidationError(message: "order \(order.orderID) has a non-positive amount") }
        context.updateContext { $0["validated"] = .bool(true) }
        return order
    }

    static let charge = Step<DemoOrder, DemoOrder>("charge_card") { order, context in
        try context.reportUsage(costUSD: 0.002, tokens: 120)
        context.updateContext { $0["charged_usd"] = .number(order.amountUSD) }
        return order
    }

    /// Most extra background tasks `--background` may ask for.
    static let maxExtraTasks = 1000

    /// A background task body shared by the demo's task steps. What it does is
    /// planned in the run context (copied into every task, and kept with it):
    /// `demo.fail` lists the steps that fail while they run in the background
    /// (a resume or retry, in the foreground, succeeds), `demo.pause` those that
    /// wait for approval, `demo.work_ms` how long each works.
    static func task(_ name: String, cost: Double, tokens: Int) -> Step<DemoTaskInput, String> {
        Step<DemoTaskInput, String>(name) { input, context in
            let plan = context.context
            // The order id comes with the order; an operator's --data may carry only the approval.
            var orderID = input.orderID
            if orderID == "unknown", case let .string(fromContext)? = plan["demo.order_id"] { orderID = fromContext }
            if case let .number(workMs)? = plan["demo.work_ms"], workMs > 0 { try await Task.sleep(for: .milliseconds(Int(workMs))) }
            if plan["demo.fail"].contains(name) && context.isBackground {
                throw PartnerUnavailable(service: name.replacingOccurrences(of: "_", with: " "))
            }
            if plan["demo.pause"].contains(name) && !input.approved {
                try context.pause("order \(orderID) needs approval: resume with --data '{\"approved\": true}'")
            }
            try context.reportUsage(costUSD: cost, tokens: tokens)
            return "\(name) done for \(orderID)"
        }
    }

    static let sendReceipt = task("send_receipt", cost: 0.0005, tokens: 40)
    static let updateAnalytics = task("update_analytics", cost: 0.0001, tokens: 10)
    static let fraudReview = task("fraud_review", cost: 0.004, tokens: 300)

    /// The extra tasks of `--background N`: `sync_partner_1` ... `sync_partner_N`.
    static func syncPartner(_ index: Int) -> Step<DemoTaskInput, String> {
        task("sync_partner_\(index)", cost: 0.0002, tokens: 20)
    }

    /// Registers every step a demo task may need, so any process can resume it.
    static func register(in registry: StepRegistry) {
        var steps = [sendReceipt, updateAnalytics, fraudReview]
        steps += (1...maxExtraTasks).map(syncPartner)
        for step in steps { try? registry.register(step) }
    }
}

extension Optional where Wrapped == JSONValue {
    /// Whether this is an array holding the string `name`.
    func contains(_ name: String) -> Bool {
        if case let .array(values)? = self { return values.contains(.string(name)) }
        return false
    }
}

struct DemoValidationError: Error, CategorizedError, CustomStringConvertible {
    var message: String
    var category: ErrorCategory { .validation }
    var description: String { message }
}
