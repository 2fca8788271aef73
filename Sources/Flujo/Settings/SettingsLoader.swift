import Foundation
import TOMLKit
import W3CTraceContext

/// Settings with where each came from and the warnings met while loading.
public struct LoadedSettings: Sendable {
    /// The effective settings.
    public var settings: FlujoSettings
    /// The source of every key that was set (others are defaults).
    public var sources: [String: SettingSource]
    /// Problems that did not stop loading (bad OTEL_* values fall back to defaults, as the spec says).
    public var warnings: [String]
    /// The trace context the environment carries (`TRACEPARENT` and
    /// `TRACESTATE`, the OpenTelemetry convention for environment carriers),
    /// for a command's run to join; nil when absent or malformed (a warning then).
    public var trace: TraceContext?

    /// Every key with its effective value (secrets as `***`) and source, in table order.
    public var effective: [(key: String, value: String, source: SettingSource)] {
        SettingsLoader.keys.map { key in (key.key, key.render(settings), sources[key.key] ?? .defaultValue) }
    }
}

/// The one place that reads configuration: `flujo.toml`, then the environment
/// (FLUJO_* and the standard OTEL_* variables), then values set in code.
public enum SettingsLoader {
    static let keys: [SettingKey] = [
        // Listed with its credentials as `***`, as OTLP endpoints are.
        .string("state.uri", env: ["FLUJO_STATE_URI"], \.state.uri, shown: OTLPRules.redactedURL),
        .choice("state.synchronous", env: ["FLUJO_STATE_SYNCHRONOUS"], \.state.synchronous, ["off", "normal", "full"]),
        .int("state.busy_timeout_ms", env: ["FLUJO_STATE_BUSY_TIMEOUT_MS"], \.state.busyTimeoutMs, range: 0...600_000),
        .double("state.keep_completed_hours", env: ["FLUJO_STATE_KEEP_COMPLETED_HOURS"], \.state.keepCompletedHours, range: 0...1_000_000),
        .double("state.keep_failed_hours", env: ["FLUJO_STATE_KEEP_FAILED_HOURS"], \.state.keepFailedHours, range: 0...1_000_000),
        .double("state.keep_cancelled_hours", env: ["FLUJO_STATE_KEEP_CANCELLED_HOURS"], \.state.keepCancelledHours, range: 0...1_000_000),
        .int("state.max_spans_per_run", env: ["FLUJO_STATE_MAX_SPANS_PER_RUN"], \.state.maxSpansPerRun, range: 0...10_000_000),

        .bool("background_tasks.enable_state_tracking", env: ["FLUJO_BACKGROUND_ENABLE_STATE_TRACKING"], \.backgroundTasks.enableStateTracking),
        .bool("background_tasks.enable_resumability", env: ["FLUJO_BACKGROUND_ENABLE_RESUMABILITY"], \.backgroundTasks.enableResumability),
        .bool("background_tasks.enable_quota", env: ["FLUJO_BACKGROUND_ENABLE_QUOTA"], \.backgroundTasks.enableQuota),
        .double("background_tasks.max_cost_per_task", env: ["FLUJO_BACKGROUND_MAX_COST_PER_TASK"], \.backgroundTasks.maxCostPerTask, range: 0...1_000_000),
        .int("background_tasks.max_tokens_per_task", env: ["FLUJO_BACKGROUND_MAX_TOKENS_PER_TASK"], \.backgroundTasks.maxTokensPerTask, range: 0...1_000_000_000),
        .double("background_tasks.stale_task_timeout_hours", env: ["FLUJO_BACKGROUND_STALE_TASK_TIMEOUT_HOURS"], \.backgroundTasks.staleTaskTimeoutHours, range: 0.0001...100_000),
        .double("background_tasks.heartbeat_interval_seconds", env: ["FLUJO_BACKGROUND_HEARTBEAT_INTERVAL_SECONDS"], \.backgroundTasks.heartbeatIntervalSeconds, range: 0.01...86_400),
        .double("background_tasks.stale_check_interval_seconds", env: ["FLUJO_BACKGROUND_STALE_CHECK_INTERVAL_SECONDS"], \.backgroundTasks.staleCheckIntervalSeconds, range: 0...86_400),
        .double("background_tasks.shutdown_timeout_seconds", env: ["FLUJO_BACKGROUND_SHUTDOWN_TIMEOUT_SECONDS"], \.backgroundTasks.shutdownTimeoutSeconds, range: 0...3600),
        .double("background_tasks.retry_base_delay_ms", env: ["FLUJO_BACKGROUND_RETRY_BASE_DELAY_MS"], \.backgroundTasks.retryBaseDelayMs, range: 0...3_600_000),
        .double("background_tasks.retry_max_delay_ms", env: ["FLUJO_BACKGROUND_RETRY_MAX_DELAY_MS"], \.backgroundTasks.retryMaxDelayMs, range: 0...3_600_000),
        .int("background_tasks.max_retries", env: ["FLUJO_BACKGROUND_MAX_RETRIES"], \.backgroundTasks.maxRetries, range: 0...1000),
        .choice("background_tasks.recover_lost_tasks", env: ["FLUJO_BACKGROUND_RECOVER_LOST_TASKS"], \.backgroundTasks.recoverLostTasks, ["retry", "fail"]),

        .choice("telemetry.background", env: ["FLUJO_TELEMETRY_BACKGROUND"], \.telemetry.backgroundName, ["skip", "include"]),
        .string("telemetry.service_name", env: ["OTEL_SERVICE_NAME"], \.telemetry.serviceName, lenient: true),
        .double("telemetry.shutdown_timeout_seconds", env: ["FLUJO_TELEMETRY_SHUTDOWN_TIMEOUT_SECONDS"], \.telemetry.shutdownTimeoutSeconds, range: 0...3600),

        .bool("telemetry.console.enabled", env: ["FLUJO_CONSOLE_ENABLED"], \.telemetry.console.enabled),
        .policy("telemetry.console.background", env: ["FLUJO_CONSOLE_BACKGROUND"], \.telemetry.console.background),
        .bool("telemetry.console.verbose", env: ["FLUJO_CONSOLE_VERBOSE"], \.telemetry.console.verbose),
        .choice("telemetry.console.color", env: ["FLUJO_CONSOLE_COLOR"], \.telemetry.console.color, ["auto", "always", "never"]),

        .bool("telemetry.otlp.enabled", env: ["FLUJO_OTLP_ENABLED"], \.telemetry.otlp.enabled),
        .endpoint("telemetry.otlp.endpoint", env: ["OTEL_EXPORTER_OTLP_ENDPOINT"], \.telemetry.otlp.endpointOrNil, required: true),
        .endpoint("telemetry.otlp.traces_endpoint", env: ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"], \.telemetry.otlp.tracesEndpoint, required: false),
        .table("telemetry.otlp.headers", env: ["OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"], \.telemetry.otlp.headers, secret: true,
               check: OTLPRules.headerProblem),
        .int("telemetry.otlp.timeout_ms", env: ["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"], \.telemetry.otlp.timeoutMs, range: 1...3_600_000, lenient: true),
        .choice("telemetry.otlp.compression", env: ["OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"], \.telemetry.otlp.compression, ["none", "gzip"], lenient: true),
        .choice("telemetry.otlp.protocol", env: ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"], \.telemetry.otlp.protocol, ["http/protobuf"], lenient: true),
        .optionalString("telemetry.otlp.certificate", env: ["OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE"], \.telemetry.otlp.certificate, lenient: true),
        .optionalString("telemetry.otlp.client_key", env: ["OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY"], \.telemetry.otlp.clientKey, lenient: true),
        .optionalString("telemetry.otlp.client_certificate", env: ["OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"], \.telemetry.otlp.clientCertificate, lenient: true),
        .policy("telemetry.otlp.background", env: ["FLUJO_OTLP_BACKGROUND"], \.telemetry.otlp.background),
        .int("telemetry.otlp.max_queue_size", env: ["OTEL_BSP_MAX_QUEUE_SIZE"], \.telemetry.otlp.maxQueueSize, range: 1...10_000_000, lenient: true),
        .int("telemetry.otlp.max_export_batch_size", env: ["OTEL_BSP_MAX_EXPORT_BATCH_SIZE"], \.telemetry.otlp.maxExportBatchSize, range: 1...10_000_000, lenient: true),
        .int("telemetry.otlp.schedule_delay_ms", env: ["OTEL_BSP_SCHEDULE_DELAY"], \.telemetry.otlp.scheduleDelayMs, range: 0...3_600_000, lenient: true),
        .int("telemetry.otlp.export_timeout_ms", env: ["OTEL_BSP_EXPORT_TIMEOUT"], \.telemetry.otlp.exportTimeoutMs, range: 1...3_600_000, lenient: true),
        .table("telemetry.otlp.resource_attributes", env: ["OTEL_RESOURCE_ATTRIBUTES"], \.telemetry.otlp.resourceAttributes, secret: false),

        .bool("telemetry.otlp_metrics.enabled", env: ["FLUJO_OTLP_METRICS_ENABLED"], \.telemetry.otlpMetrics.enabled),
        .endpoint("telemetry.otlp_metrics.endpoint", env: ["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"], \.telemetry.otlpMetrics.endpoint, required: false),
        .table("telemetry.otlp_metrics.headers", env: ["OTEL_EXPORTER_OTLP_METRICS_HEADERS"], \.telemetry.otlpMetrics.headers, secret: true,
               check: OTLPRules.headerProblem),
        .int("telemetry.otlp_metrics.timeout_ms", env: ["OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"], \.telemetry.otlpMetrics.timeoutMs, range: 1...3_600_000, lenient: true),
        .choice("telemetry.otlp_metrics.compression", env: ["OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"], \.telemetry.otlpMetrics.compression, ["none", "gzip"], lenient: true),
        .int("telemetry.otlp_metrics.export_interval_ms", env: ["OTEL_METRIC_EXPORT_INTERVAL"], \.telemetry.otlpMetrics.exportIntervalMs, range: 1...86_400_000, lenient: true),
        .int("telemetry.otlp_metrics.export_timeout_ms", env: ["OTEL_METRIC_EXPORT_TIMEOUT"], \.telemetry.otlpMetrics.exportTimeoutMs, range: 1...3_600_000, lenient: true),
        .choice("telemetry.otlp_metrics.temporality", env: ["OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"], \.telemetry.otlpMetrics.temporality, ["cumulative", "delta", "lowmemory"], lenient: true),

        .bool("telemetry.prometheus.enabled", env: ["FLUJO_PROMETHEUS_ENABLED"], \.telemetry.prometheus.enabled),
        .string("telemetry.prometheus.host", env: ["FLUJO_PROMETHEUS_HOST"], \.telemetry.prometheus.host),
        .int("telemetry.prometheus.port", env: ["FLUJO_PROMETHEUS_PORT"], \.telemetry.prometheus.port, range: 0...65_535),
        .policy("telemetry.prometheus.background", env: ["FLUJO_PROMETHEUS_BACKGROUND"], \.telemetry.prometheus.background),
        .int("telemetry.prometheus.max_step_labels", env: ["FLUJO_PROMETHEUS_MAX_STEP_LABELS"], \.telemetry.prometheus.maxStepLabels, range: 1...100_000),
    ]

    /// Sections a file may contain.
    static let sections: Set<String> = ["state", "background_tasks", "telemetry", "telemetry.console", "telemetry.otlp", "telemetry.otlp_metrics", "telemetry.prometheus"]

    /// Loads settings.
    /// - Parameters:
    ///   - file: a `flujo.toml`; nil to read none. A missing file is an error only when `required`.
    ///   - environment: the variables to read (the process's by default).
    ///   - overrides: values set in code, applied last.
    public static func load(
        file: String? = nil, required: Bool = false,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        overrides: (inout FlujoSettings) -> Void = { _ in }
    ) throws(SettingsError) -> LoadedSettings {
        var loaded = LoadedSettings(settings: FlujoSettings(), sources: [:], warnings: [], trace: nil)
        // Every problem of the file and the environment is reported at once, not only the first.
        var problems: [SettingsError] = []
        if let file {
            if FileManager.default.fileExists(atPath: file) {
                applyFile(file, to: &loaded, problems: &problems)
            } else if required {
                problems.append(SettingsError(origin: file, key: "", message: "no such configuration file. Create it, or leave out --config to use ./flujo.toml when present."))
            }
        }
        applyEnvironment(environment, to: &loaded, problems: &problems)
        if let error = SettingsError(combining: problems) { throw error }
        // A generic OTEL_EXPORTER_OTLP_* variable feeds both the traces and the metrics keys: one warning each.
        var seen = Set<String>()
        loaded.warnings = loaded.warnings.filter { seen.insert($0).inserted }
        let before = loaded.settings
        overrides(&loaded.settings)
        for key in keys where key.render(before) != key.render(loaded.settings) {
            loaded.sources[key.key] = .code
        }
        return loaded
    }

    /// Keys earlier versions read and this one does not, with why: a file
    /// that still sets one loads, with a warning.
    static let removedKeys: [String: String] = [
        "background_tasks.resume_lease_seconds": "a resume's claim is a lock held while the resumer runs, not a lease",
    ]

    // MARK: File

    /// The largest configuration file read; a larger one is refused before it is read.
    public static let maxFileBytes = 1 << 20

    /// Applies the file's settings; what it cannot use goes to `problems`, ordered by line.
    static func applyFile(_ path: String, to loaded: inout LoadedSettings, problems: inout [SettingsError]) {
        let text: String
        do {
            text = try readConfiguration(path)
        } catch {
            return problems.append(error)
        }
        if let problem = TOMLPrecheck.check(text) {
            return problems.append(SettingsError(origin: path, line: problem.line, key: "", message: "not valid TOML: \(problem.message)"))
        }
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            return problems.append(SettingsError(origin: path, line: error.source.begin.line, key: "", message: "not valid TOML: \(error.description) (column \(error.source.begin.column))"))
        } catch {
            return problems.append(SettingsError(origin: path, key: "", message: "not valid TOML: \(error)"))
        }
        let lines = KeyLines(text.components(separatedBy: "\n"))
        var values: [(key: String, value: RawSetting)] = []
        var found: [SettingsError] = []
        defer { problems += found.sorted { ($0.line ?? .max, $0.key) < ($1.line ?? .max, $1.key) } }
        collect(root, prefix: "", path: path, lines: lines, into: &values, problems: &found)
        for (dotted, raw) in values {
            if let reason = removedKeys[dotted] {
                loaded.warnings.append("\(path)\(line(of: dotted, in: lines).map { ":\($0)" } ?? ""): \(dotted) is no longer used (\(reason)); remove it")
                continue
            }
            guard let key = keys.first(where: { $0.key == dotted }) else {
                let section = dotted.contains(".") ? String(dotted[..<dotted.lastIndex(of: ".")!]) : ""
                let known = keys.filter { $0.section == section }.map(\.name)
                let hint = known.isEmpty ? "" : " Known keys of [\(section)]: \(known.joined(separator: ", "))."
                found.append(SettingsError(origin: path, line: line(of: dotted, in: lines), key: dotted, message: "unknown key.\(hint)"))
                continue
            }
            if let problem = key.apply(&loaded.settings, raw) {
                found.append(SettingsError(origin: path, line: line(of: dotted, in: lines), key: dotted, message: problem))
                continue
            }
            loaded.sources[dotted] = .file(path: path, line: line(of: dotted, in: lines))
        }
    }

    /// The file's text: a regular file of at most `maxFileBytes`, in UTF-8.
    /// Anything else is refused with what it is, before reading it.
    static func readConfiguration(_ path: String) throws(SettingsError) -> String {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw SettingsError(origin: path, key: "", message: "cannot read the file: \(String(cString: strerror(errno)))")
        }
        let kind = info.st_mode & S_IFMT
        guard kind == S_IFREG else {
            let what: String
            switch kind {
            case S_IFIFO: what = "a FIFO (named pipe)"
            case S_IFCHR: what = "a character device"
            case S_IFBLK: what = "a block device"
            case S_IFDIR: what = "a folder"
            case S_IFSOCK: what = "a socket"
            default: what = "not a regular file"
            }
            throw SettingsError(origin: path, key: "", message: "is \(what), not a configuration file. Pass a flujo.toml file with --config.")
        }
        guard Int(info.st_size) <= maxFileBytes else {
            throw SettingsError(origin: path, key: "", message: "is \(info.st_size) bytes; a configuration file may have at most \(maxFileBytes) bytes (1 MiB)")
        }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw SettingsError(origin: path, key: "", message: "cannot open the file for reading: \(String(cString: strerror(errno))). Check its permissions.")
        }
        defer { try? handle.close() }
        // Read at most one byte past the limit, so a file that grows meanwhile is still refused.
        // A read that fails is an error, never an empty file (which would mean every default).
        let data: Data
        do {
            data = try handle.read(upToCount: maxFileBytes + 1) ?? Data()
        } catch {
            let reason = ((error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError).map { String(cString: strerror(Int32($0.code))) } ?? "\(error)"
            throw SettingsError(origin: path, key: "", message: "cannot read the file: \(reason)")
        }
        guard data.count <= maxFileBytes else {
            throw SettingsError(origin: path, key: "", message: "grew past \(maxFileBytes) bytes (1 MiB) while it was read")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw SettingsError(origin: path, key: "", message: "is not UTF-8 text")
        }
        return text
    }

    /// Flattens tables into dotted keys; a table that is itself a setting (headers) stays whole.
    private static func collect(
        _ table: TOMLTable, prefix: String, path: String, lines: KeyLines, into values: inout [(key: String, value: RawSetting)],
        problems: inout [SettingsError]
    ) {
        for name in table.keys {
            guard let value = table[name] else { continue }
            let dotted = prefix.isEmpty ? name : "\(prefix).\(name)"
            if value.type == .table, let inner = value.table {
                if keys.contains(where: { $0.key == dotted }) {
                    var strings: [String: String] = [:]
                    var allStrings = true
                    for innerKey in inner.keys {
                        guard let text = inner[innerKey]?.string else {
                            problems.append(SettingsError(origin: path, line: line(of: dotted, in: lines), key: "\(dotted).\(innerKey)", message: "expected a string value"))
                            allStrings = false
                            continue
                        }
                        strings[innerKey] = text
                    }
                    if allStrings { values.append((dotted, .table(strings))) }
                } else if sections.contains(dotted) {
                    collect(inner, prefix: dotted, path: path, lines: lines, into: &values, problems: &problems)
                } else {
                    let known = sections.sorted().map { "[\($0)]" }.joined(separator: ", ")
                    problems.append(SettingsError(origin: path, line: line(of: dotted, in: lines), key: dotted, message: "unknown section. Known sections: \(known)."))
                }
                continue
            }
            if prefix.isEmpty {
                problems.append(SettingsError(origin: path, line: line(of: dotted, in: lines), key: dotted, message: "keys belong in a section such as [state] or [background_tasks]"))
                continue
            }
            let raw: RawSetting
            switch value.type {
            case .bool: raw = .bool(value.bool ?? false)
            case .int: raw = .int(value.int ?? 0)
            case .double: raw = .double(value.double ?? 0)
            case .string: raw = .string(value.string ?? "")
            default:
                let expected = keys.first { $0.key == dotted }?.expected ?? "a value"
                problems.append(SettingsError(origin: path, line: line(of: dotted, in: lines), key: dotted, message: "expected \(expected), got a TOML \(value.type)"))
                continue
            }
            values.append((dotted, raw))
        }
    }

    /// The 1-based line where a dotted key is set, found by scanning the text
    /// (the TOML parser keeps no positions for keys).
    static func line(of dotted: String, in lines: KeyLines) -> Int? {
        lines.first[dotted]
    }

    /// The 1-based line where each table and each key (as its full dotted
    /// name) first appears, read in one pass, so finding the line of every key
    /// of a file costs one pass, not one per key. A dotted key or header also
    /// places the tables it opens (`a.b = 1` opens `a`).
    struct KeyLines {
        var first: [String: Int] = [:]

        init(_ lines: [String]) {
            var section = ""
            for (index, raw) in lines.enumerated() {
                let line = raw.trimmingCharacters(in: .whitespaces)
                if line.hasPrefix("[") {
                    section = line.trimmingCharacters(in: CharacterSet(charactersIn: "[] \t"))
                    place(section, at: index + 1)
                    continue
                }
                guard let equals = line.firstIndex(of: "=") else { continue }
                let key = line[..<equals].trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
                place(section.isEmpty ? key : "\(section).\(key)", at: index + 1)
            }
        }

        /// Records `dotted` and each table it opens, where not seen before.
        private mutating func place(_ dotted: String, at line: Int) {
            var end = dotted.startIndex
            while let dot = dotted[end...].firstIndex(of: ".") {
                let table = String(dotted[..<dot])
                if first[table] == nil { first[table] = line }
                end = dotted.index(after: dot)
            }
            if first[dotted] == nil { first[dotted] = line }
        }
    }

    // MARK: Environment

    /// A warning for each variable that starts like a setting's own
    /// (`FLUJO_STATE_`, `FLUJO_OTLP_`, ...: the first word after `FLUJO_` of
    /// any setting's variable) but sets nothing, naming the closest that does.
    /// Other `FLUJO_` variables belong to something else and are left alone.
    static func unknownVariables(in environment: [String: String]) -> [String] {
        let known = keys.flatMap(\.environment).filter { $0.hasPrefix("FLUJO_") }
        let knownSet = Set(known)
        let prefixes = Set(known.compactMap { name in
            name.dropFirst("FLUJO_".count).split(separator: "_").first.map { "FLUJO_\($0)_" }
        })
        return environment.keys.sorted().compactMap { name -> String? in
            guard prefixes.contains(where: name.hasPrefix), !knownSet.contains(name) else { return nil }
            let closest = known.map { ($0, editDistance($0, name)) }.min { $0.1 < $1.1 }
            let hint = closest.flatMap { $0.1 <= max(3, name.count / 5) ? " Did you mean \($0.0)?" : nil }
                ?? " Docs/Configuration.md lists the variables."
            return "\(name) sets no Flujo setting and is ignored.\(hint)"
        }
    }

    /// Levenshtein distance between two names, in bytes.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let b = Array(b.utf8)
        var previous = Array(0...b.count)
        for (i, x) in a.utf8.enumerated() {
            var current = [i + 1]
            current.reserveCapacity(b.count + 1)
            for (j, y) in b.enumerated() {
                current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1)))
            }
            previous = current
        }
        return previous[b.count]
    }

    /// Applies the variables' settings; what they cannot set goes to `problems`.
    static func applyEnvironment(_ environment: [String: String], to loaded: inout LoadedSettings, problems: inout [SettingsError]) {
        for key in keys {
            guard let variable = key.environment.first(where: { environment[$0] != nil }), let text = environment[variable] else { continue }
            let problem: String?
            if let raw = key.parseEnvironment(text) {
                problem = key.apply(&loaded.settings, raw)
            } else {
                // A secret's value is never shown, not even a malformed one.
                problem = "expected \(key.expected), got " + (key.secret ? "a value of another form (not shown: it may hold a secret)" : text.debugDescription)
            }
            if let problem {
                if key.lenient {
                    loaded.warnings.append("\(variable): \(problem); using \(key.render(loaded.settings))")
                    continue
                }
                problems.append(SettingsError(origin: "environment variable \(variable)", key: key.key, message: problem))
                continue
            }
            loaded.sources[key.key] = .environment(variable)
        }
        loaded.warnings += unknownVariables(in: environment)
        // Per the OTLP exporter spec, an endpoint in the environment turns export on
        // unless the SDK is disabled or the traces exporter is `none`.
        if environment["OTEL_EXPORTER_OTLP_ENDPOINT"] != nil || environment["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] != nil {
            if loaded.sources["telemetry.otlp.enabled"] == nil {
                loaded.settings.telemetry.otlp.enabled = true
                loaded.sources["telemetry.otlp.enabled"] = .environment(environment["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] != nil ? "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" : "OTEL_EXPORTER_OTLP_ENDPOINT")
            }
        }
        if let exporter = environment["OTEL_TRACES_EXPORTER"] {
            switch exporter.trimmingCharacters(in: .whitespaces).lowercased() {
            case "none":
                loaded.settings.telemetry.otlp.enabled = false
                loaded.sources["telemetry.otlp.enabled"] = .environment("OTEL_TRACES_EXPORTER")
            case "otlp", "":
                break
            default:
                loaded.warnings.append("OTEL_TRACES_EXPORTER: \(exporter.debugDescription) is not supported (only \"otlp\" and \"none\"); using otlp")
            }
        }
        // OTEL_PROPAGATORS (default "tracecontext,baggage"): only W3C trace context is propagated;
        // "none" turns propagation off; baggage is accepted and not carried.
        var propagates = true
        if let propagators = environment["OTEL_PROPAGATORS"] {
            let names = propagators.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }.filter { !$0.isEmpty }
            propagates = names.contains("tracecontext")
            let unsupported = names.filter { !["tracecontext", "baggage", "none"].contains($0) }
            if !unsupported.isEmpty {
                loaded.warnings.append("OTEL_PROPAGATORS: \(unsupported.joined(separator: ", ")) not supported (only tracecontext, baggage and none); ignored")
            }
        }
        loaded.settings.telemetry.propagatesTraceContext = propagates
        if let name = environment["OTEL_TRACES_SAMPLER"], !name.trimmingCharacters(in: .whitespaces).isEmpty {
            let (sampler, problem) = TraceSampler.parse(name, argument: environment["OTEL_TRACES_SAMPLER_ARG"])
            if let sampler {
                loaded.settings.telemetry.sampler = sampler
            } else if let problem {
                loaded.warnings.append("\(problem); using parentbased_always_on")
            }
        }
        if propagates, let traceParent = environment["TRACEPARENT"], !traceParent.isEmpty {
            do {
                loaded.trace = try TraceContext(traceParentHeaderValue: traceParent, traceStateHeaderValue: environment["TRACESTATE"])
            } catch {
                loaded.warnings.append("TRACEPARENT: not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>); ignored, a new trace starts")
            }
        }
        if environment["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"] != nil {
            loaded.settings.telemetry.otlpMetrics.enabled = true
            loaded.sources["telemetry.otlp_metrics.enabled"] = .environment("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
        }
        if let exporter = environment["OTEL_METRICS_EXPORTER"] {
            let names = exporter.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() }.filter { !$0.isEmpty }
            if names.contains("otlp") {
                loaded.settings.telemetry.otlpMetrics.enabled = true
                loaded.sources["telemetry.otlp_metrics.enabled"] = .environment("OTEL_METRICS_EXPORTER")
            } else if names == ["none"] {
                loaded.settings.telemetry.otlpMetrics.enabled = false
                loaded.sources["telemetry.otlp_metrics.enabled"] = .environment("OTEL_METRICS_EXPORTER")
            }
            let unsupported = names.filter { !["otlp", "none", "prometheus"].contains($0) }
            if !unsupported.isEmpty {
                loaded.warnings.append("OTEL_METRICS_EXPORTER: \(unsupported.joined(separator: ", ")) not supported (only otlp, prometheus, which is [telemetry.prometheus], and none); ignored")
            }
        }
        if let disabled = environment["OTEL_SDK_DISABLED"] {
            switch disabled.trimmingCharacters(in: .whitespaces).lowercased() {
            case "true":
                loaded.settings.telemetry.otlp.enabled = false
                loaded.sources["telemetry.otlp.enabled"] = .environment("OTEL_SDK_DISABLED")
                loaded.settings.telemetry.otlpMetrics.enabled = false
                loaded.sources["telemetry.otlp_metrics.enabled"] = .environment("OTEL_SDK_DISABLED")
            case "false", "":
                break
            default:
                loaded.warnings.append("OTEL_SDK_DISABLED: expected true or false, got \(disabled.debugDescription); using false")
            }
        }
    }
}

extension TelemetrySettings {
    /// `background` as text, for the settings table.
    var backgroundName: String {
        get { background.rawValue }
        set { background = BackgroundPolicy(rawValue: newValue) ?? .skip }
    }
}

extension FlujoSettings {
    /// The effective background policy of the console tracer.
    public var consoleBackground: BackgroundPolicy { telemetry.console.background ?? telemetry.background }
    /// The effective background policy of the OTLP exporter.
    public var otlpBackground: BackgroundPolicy { telemetry.otlp.background ?? telemetry.background }
    /// The effective background policy of event-derived Prometheus metrics.
    public var prometheusBackground: BackgroundPolicy { telemetry.prometheus.background ?? telemetry.background }
}
