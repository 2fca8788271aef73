import Synchronization

/// A budget of cost and tokens; nil in a dimension means unlimited.
public struct Quota: Sendable, Hashable, Codable {
    /// Remaining cost in USD.
    public var costUSD: Double?
    /// Remaining tokens.
    public var tokens: Int?

    /// Creates a budget.
    public init(costUSD: Double? = nil, tokens: Int? = nil) {
        self.costUSD = costUSD
        self.tokens = tokens
    }

    /// Whether nothing is left in a limited dimension.
    public var isExhausted: Bool {
        (costUSD.map { $0 <= 0 } ?? false) || (tokens.map { $0 <= 0 } ?? false)
    }
}

/// Usage reported by steps.
public struct Usage: Sendable, Hashable, Codable {
    /// Cost in USD.
    public var costUSD: Double
    /// Tokens.
    public var tokens: Int

    /// Creates a usage figure.
    public init(costUSD: Double = 0, tokens: Int = 0) {
        self.costUSD = costUSD
        self.tokens = tokens
    }

    /// Adds two usages.
    public static func + (lhs: Usage, rhs: Usage) -> Usage {
        Usage(costUSD: lhs.costUSD + rhs.costUSD, tokens: lhs.tokens + rhs.tokens)
    }
}

/// The remaining budget of one run, shared by its steps and the background
/// tasks that reserve from it.
public final class QuotaLedger: Sendable {
    private let remaining: Mutex<Quota>

    /// Creates a ledger holding `quota`.
    public init(_ quota: Quota) {
        remaining = Mutex(quota)
    }

    /// What is left now.
    public var current: Quota { remaining.withLock { $0 } }

    /// Takes `usage` from the budget. Returns false (and takes it anyway, so the
    /// books stay true) when the budget is now overdrawn.
    @discardableResult
    public func consume(_ usage: Usage) -> Bool {
        remaining.withLock { quota in
            if let cost = quota.costUSD { quota.costUSD = cost - usage.costUSD }
            if let tokens = quota.tokens { quota.tokens = tokens - usage.tokens }
            return !((quota.costUSD.map { $0 < -1e-12 } ?? false) || (quota.tokens.map { $0 < 0 } ?? false))
        }
    }

    /// Reserves up to `limit` from what is left; the parent keeps the rest.
    /// Returns nil when nothing is left to reserve in a limited dimension.
    public func reserve(upTo limit: Quota) -> Quota? {
        remaining.withLock { quota in
            func take(_ available: Double?, _ cap: Double?) -> (taken: Double?, left: Double?) {
                switch (available, cap) {
                case (nil, nil): return (nil, nil)
                case let (nil, cap?): return (cap, nil)
                case let (available?, nil): return (available, 0)
                case let (available?, cap?): let taken = min(available, cap); return (taken, available - taken)
                }
            }
            let cost = take(quota.costUSD, limit.costUSD)
            let tokens = take(quota.tokens.map(Double.init), limit.tokens.map(Double.init))
            let reserved = Quota(costUSD: cost.taken, tokens: tokens.taken.map { Int($0) })
            if reserved.isExhausted { return nil }
            quota.costUSD = cost.left
            quota.tokens = tokens.left.map { Int($0) }
            return reserved
        }
    }

    /// Gives back the unused part of a reservation.
    public func giveBack(reserved: Quota, used: Usage) {
        remaining.withLock { quota in
            if let cost = quota.costUSD, let reservedCost = reserved.costUSD {
                quota.costUSD = cost + max(0, reservedCost - used.costUSD)
            }
            if let tokens = quota.tokens, let reservedTokens = reserved.tokens {
                quota.tokens = tokens + max(0, reservedTokens - used.tokens)
            }
        }
    }
}

/// A step reported more usage than its budget allows.
public struct QuotaExceededError: Error, Sendable, Hashable, CustomStringConvertible, CategorizedError {
    /// The budget that was exceeded.
    public var budget: Quota
    /// The usage that exceeded it.
    public var used: Usage

    public var category: ErrorCategory { .resourceExhaustion }
    public var isRetryable: Bool { false }

    public var description: String {
        var limits: [String] = []
        if let cost = budget.costUSD { limits.append(String(format: "$%.4f", cost)) }
        if let tokens = budget.tokens { limits.append("\(tokens) tokens") }
        return "quota exceeded: used $\(String(format: "%.4f", used.costUSD)) and \(used.tokens) tokens of a budget of \(limits.joined(separator: " and "))"
    }
}
