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

    /// Adds two usages; tokens saturate instead of overflowing.
    public static func + (lhs: Usage, rhs: Usage) -> Usage {
        Usage(costUSD: lhs.costUSD + rhs.costUSD, tokens: lhs.tokens.addingSaturating(rhs.tokens))
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
            if let tokens = quota.tokens { quota.tokens = tokens.subtractingSaturating(usage.tokens) }
            return !((quota.costUSD.map { $0 < -1e-12 } ?? false) || (quota.tokens.map { $0 < 0 } ?? false))
        }
    }

    /// Reserves up to `limit` from what is left; the parent keeps the rest.
    /// Returns nil when nothing is left to reserve in a limited dimension.
    public func reserve(upTo limit: Quota) -> Quota? {
        remaining.withLock { quota in
            let cost = Self.take(quota.costUSD, limit.costUSD, zero: 0) { $0 - $1 }
            let tokens = Self.take(quota.tokens, limit.tokens, zero: 0) { $0.subtractingSaturating($1) }
            let reserved = Quota(costUSD: cost.taken, tokens: tokens.taken)
            if reserved.isExhausted { return nil }
            quota.costUSD = cost.left
            quota.tokens = tokens.left
            return reserved
        }
    }

    /// What a reservation takes of one dimension, and what it leaves.
    private static func take<Amount: Comparable>(
        _ available: Amount?, _ cap: Amount?, zero: Amount, minus: (Amount, Amount) -> Amount
    ) -> (taken: Amount?, left: Amount?) {
        switch (available, cap) {
        case (nil, nil): return (nil, nil)
        case let (nil, cap?): return (cap, nil)
        case let (available?, nil): return (available, zero)
        case let (available?, cap?): let taken = min(available, cap); return (taken, minus(available, taken))
        }
    }

    /// Gives back the unused part of a reservation.
    public func giveBack(reserved: Quota, used: Usage) {
        remaining.withLock { quota in
            if let cost = quota.costUSD, let reservedCost = reserved.costUSD {
                quota.costUSD = cost + max(0, reservedCost - used.costUSD)
            }
            if let tokens = quota.tokens, let reservedTokens = reserved.tokens {
                quota.tokens = tokens.addingSaturating(max(0, reservedTokens.subtractingSaturating(used.tokens)))
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

/// A step reported usage that cannot be counted: a negative or non-finite cost, or negative tokens.
public struct InvalidUsageError: Error, Sendable, Hashable, CustomStringConvertible, CategorizedError {
    /// The cost reported.
    public var costUSD: Double
    /// The tokens reported.
    public var tokens: Int

    public var category: ErrorCategory { .validation }
    public var isRetryable: Bool { false }

    public var description: String {
        "usage reported as $\(costUSD) and \(tokens) tokens: cost must be a finite number of dollars and tokens a count, neither negative"
    }
}
