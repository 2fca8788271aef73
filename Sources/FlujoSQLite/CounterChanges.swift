import Flujo

/// What one transaction changes in the maintained counters (`status_counts`,
/// `stat_totals`, `created_per_hour`).
///
/// The store notes every row it inserts or whose status or duration it
/// changes, and adds the sum to the counter tables just before the
/// transaction commits: a few statements per commit, however many rows it
/// wrote. A rolled-back transaction discards its changes with it.
struct CounterChanges {
    private struct StatusKey: Hashable {
        let isBackground: Bool
        let status: String
    }

    private var statuses: [StatusKey: Int] = [:]
    private var createdPerHour: [Int64: Int] = [:]
    private var totalRuns = 0
    private var durationSumMs = 0.0
    private var durationCount = 0
    private var prunedRuns = 0

    var isEmpty: Bool {
        statuses.isEmpty && createdPerHour.isEmpty && totalRuns == 0 && durationSumMs == 0 && durationCount == 0 && prunedRuns == 0
    }

    /// A new row.
    mutating func inserted(isBackground: Bool, status: String, createdAtMs: Int64, executionTimeMs: Double?) {
        statuses[StatusKey(isBackground: isBackground, status: status), default: 0] += 1
        createdPerHour[createdAtMs / 3_600_000, default: 0] += 1
        totalRuns += 1
        duration(from: nil, to: executionTimeMs)
    }

    /// A row deleted by retention: it no longer counts, except in the total of
    /// runs ever persisted (`pruned_runs` keeps what the deletions took away).
    mutating func deleted(isBackground: Bool, status: String, createdAtMs: Int64, executionTimeMs: Double?) {
        statuses[StatusKey(isBackground: isBackground, status: status), default: 0] -= 1
        createdPerHour[createdAtMs / 3_600_000, default: 0] -= 1
        totalRuns -= 1
        prunedRuns += 1
        duration(from: executionTimeMs, to: nil)
    }

    /// `count` rows whose status went from `old` to `new`.
    mutating func moved(isBackground: Bool, from old: String, to new: String, count: Int = 1) {
        guard old != new, count != 0 else { return }
        statuses[StatusKey(isBackground: isBackground, status: old), default: 0] -= count
        statuses[StatusKey(isBackground: isBackground, status: new), default: 0] += count
    }

    /// A row whose duration changed.
    mutating func duration(from old: Double?, to new: Double?) {
        guard old != new else { return }
        durationSumMs += (new ?? 0) - (old ?? 0)
        durationCount += (new == nil ? 0 : 1) - (old == nil ? 0 : 1)
    }

    private static let addStatus = SQL("""
        INSERT INTO status_counts (is_background, status, count) VALUES (?1, ?2, ?3)
        ON CONFLICT (is_background, status) DO UPDATE SET count = count + excluded.count
        """)
    private static let addTotal = SQL("""
        INSERT INTO stat_totals (name, value) VALUES (?1, ?2)
        ON CONFLICT (name) DO UPDATE SET value = value + excluded.value
        """)
    private static let addHour = SQL("""
        INSERT INTO created_per_hour (hour, count) VALUES (?1, ?2)
        ON CONFLICT (hour) DO UPDATE SET count = count + excluded.count
        """)

    /// Adds the changes to the counter tables, inside the caller's transaction.
    func apply(on connection: SQLiteConnection) throws(StateStoreError) {
        for (key, change) in statuses where change != 0 {
            let statement = try connection.statement(Self.addStatus)
            statement.bind(1, key.isBackground)
            statement.bind(2, key.status)
            statement.bind(3, change)
            try statement.run()
        }
        for (hour, change) in createdPerHour where change != 0 {
            let statement = try connection.statement(Self.addHour)
            statement.bind(1, hour)
            statement.bind(2, change)
            try statement.run()
        }
        for (name, change) in [("total_runs", Double(totalRuns)), ("duration_sum_ms", durationSumMs), ("duration_count", Double(durationCount)), ("pruned_runs", Double(prunedRuns))] where change != 0 {
            let statement = try connection.statement(Self.addTotal)
            statement.bind(1, name)
            statement.bind(2, change)
            try statement.run()
        }
    }
}
