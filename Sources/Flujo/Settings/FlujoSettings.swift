/// Every setting of Flujo, with its default. Load them with `SettingsLoader`.
public struct FlujoSettings: Sendable, Hashable {
    /// `[state]`: where and how runs are persisted.
    public var state = StateSettings()
    /// `[background_tasks]`: tracking, resumability, quota, heartbeats, retries.
    public var backgroundTasks = BackgroundTaskSettings()
    /// `[telemetry]` and its sub-sections.
    public var telemetry = TelemetrySettings()

    /// The defaults.
    public init() {}
}

/// `[state]`.
public struct StateSettings: Sendable, Hashable {
    /// The defaults.
    public init() {}

    /// The state database: a path, or `sqlite:///absolute/path` / `sqlite://relative/path`.
    public var uri = ".flujo/state.db"
    /// `off`, `normal` or `full`.
    public var synchronous = "normal"
    /// How long a write waits for another connection's lock, in milliseconds.
    public var busyTimeoutMs = 5000
    /// Completed runs and tasks are deleted (with their steps and spans) this many hours after they ended; 0 keeps them.
    public var keepCompletedHours = 0.0
    /// Runs and tasks failed for good (a category that is not retried) are deleted after this many hours; 0 keeps them.
    public var keepFailedHours = 0.0
    /// Cancelled runs and tasks are deleted after this many hours; 0 keeps them.
    public var keepCancelledHours = 0.0
    /// The most spans of one run kept in the store for `flujo trace` (its root always is); 0: no limit.
    public var maxSpansPerRun = 10_000

    /// The location as it may be shown: a URI's password (`scheme://user:password@`) is left out.
    public var shownLocation: String {
        guard let scheme = uri.range(of: "://"), let at = uri[scheme.upperBound...].firstIndex(of: "@") else { return path }
        let credentials = uri[scheme.upperBound..<at]
        guard let colon = credentials.firstIndex(of: ":") else { return uri }
        return String(uri[..<colon]) + String(uri[at...])
    }

    /// The file path the URI names.
    public var path: String {
        for prefix in ["sqlite:///", "sqlite://"] where uri.hasPrefix(prefix) {
            let rest = String(uri.dropFirst(prefix.count))
            return prefix == "sqlite:///" ? "/" + rest : rest
        }
        return uri
    }
}

/// `[background_tasks]`.
public struct BackgroundTaskSettings: Sendable, Hashable {
    /// The defaults.
    public init() {}

    /// Persist background tasks (without it they cannot be listed or resumed).
    public var enableStateTracking = true
    /// Allow resume and retry of failed, paused and cancelled tasks.
    public var enableResumability = true
    /// Enforce budgets on background tasks.
    public var enableQuota = true
    /// Budget of one task in USD (also its cap when reserving from the parent).
    public var maxCostPerTask = 1.0
    /// Budget of one task in tokens (also its cap when reserving from the parent).
    public var maxTokensPerTask = 10_000
    /// A running task whose heartbeat is older than this is failed by stale cleanup.
    public var staleTaskTimeoutHours = 24.0
    /// How often running tasks record their heartbeat.
    public var heartbeatIntervalSeconds = 30.0
    /// How often the runner looks for stale tasks by itself (0: only at start).
    public var staleCheckIntervalSeconds = 600.0
    /// How long closing the runner waits for background tasks before cancelling them.
    public var shutdownTimeoutSeconds = 5.0
    /// First delay between retries of a failed task; doubles per retry.
    public var retryBaseDelayMs = 500.0
    /// Longest delay between retries.
    public var retryMaxDelayMs = 30_000.0
    /// Retries per task for `retryFailed` when not given, and for workers.
    public var maxRetries = 3
    /// What recovery does with a task whose process ended: `retry` (due at
    /// once for workers) or `fail` (failed for good until someone resumes it).
    public var recoverLostTasks = "retry"
}

/// `[telemetry]` and its sub-sections.
public struct TelemetrySettings: Sendable, Hashable {
    /// The defaults.
    public init() {}

    /// The background policy of every exporter unless its own section sets one.
    public var background = BackgroundPolicy.skip
    /// `service.name` of exported telemetry.
    public var serviceName = "flujo"
    /// How long shutting telemetry down may take (queued spans written, OTLP flushed), in seconds.
    public var shutdownTimeoutSeconds = 5.0
    /// Which traces are recorded and exported (`OTEL_TRACES_SAMPLER` and
    /// `OTEL_TRACES_SAMPLER_ARG`; parent-based always-on by default).
    public var sampler = TraceSampler.parentBasedAlwaysOn
    /// Whether W3C trace context is taken from callers (`run(trace:)`, the
    /// application's `ServiceContext`, `TRACEPARENT`) and handed to steps'
    /// `ServiceContext`: `OTEL_PROPAGATORS=none` turns it off.
    public var propagatesTraceContext = true
    /// `[telemetry.console]`.
    public var console = ConsoleSettings()
    /// `[telemetry.otlp]`.
    public var otlp = OTLPSettings()
    /// `[telemetry.prometheus]`.
    public var prometheus = PrometheusSettings()
    /// `[telemetry.otlp_metrics]`.
    public var otlpMetrics = OTLPMetricsSettings()
}

/// `[telemetry.otlp_metrics]`: the same metrics as `/metrics`, pushed over
/// OTLP/HTTP protobuf to `{endpoint}/v1/metrics` at a fixed interval, through
/// the transport, retries, gzip and header rules of `[telemetry.otlp]`.
public struct OTLPMetricsSettings: Sendable, Hashable {
    /// The defaults.
    public init() {}

    /// Push metrics; also turned on by `OTEL_METRICS_EXPORTER=otlp` or
    /// `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` (Prometheus scrapes are Flujo's
    /// default, so a generic OTLP endpoint alone does not turn it on).
    public var enabled = false
    /// A metrics-specific URL, used as given; nil: `{[telemetry.otlp] endpoint}/v1/metrics`.
    public var endpoint: String?
    /// Request headers; empty: those of `[telemetry.otlp]` (values are never logged).
    public var headers: [String: String] = [:]
    /// Timeout of one request, in milliseconds.
    public var timeoutMs = 10_000
    /// `none` or `gzip`.
    public var compression = "none"
    /// How often metrics are pushed, in milliseconds (`OTEL_METRIC_EXPORT_INTERVAL`).
    public var exportIntervalMs = 60_000
    /// Deadline of one push, retries included, in milliseconds (`OTEL_METRIC_EXPORT_TIMEOUT`).
    public var exportTimeoutMs = 30_000
    /// `cumulative` (the default), `delta` or `lowmemory` (delta for counters
    /// and histograms), as `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE` says.
    public var temporality = "cumulative"

    /// The transport settings of a push: `[telemetry.otlp]` with this section's URL, headers, timeout and compression.
    public func transport(from otlp: OTLPSettings) -> OTLPSettings {
        var settings = otlp
        let base = otlp.endpoint.hasSuffix("/") ? otlp.endpoint + "v1/metrics" : otlp.endpoint + "/v1/metrics"
        settings.tracesEndpoint = endpoint ?? base
        if !headers.isEmpty { settings.headers = headers }
        settings.timeoutMs = timeoutMs
        settings.compression = compression
        settings.exportTimeoutMs = exportTimeoutMs
        return settings
    }
}

/// `[telemetry.console]`.
public struct ConsoleSettings: Sendable, Hashable {
    /// The defaults.
    public init() {}

    /// Print the console trace.
    public var enabled = false
    /// Background policy; nil: `[telemetry] background`.
    public var background: BackgroundPolicy?
    /// Show inputs and outputs (truncated).
    public var verbose = false
    /// `auto` (colour on a terminal unless NO_COLOR is set), `always` or `never`.
    public var color = "auto"
}

/// `[telemetry.otlp]`: the OTLP/HTTP trace exporter.
public struct OTLPSettings: Sendable, Hashable {
    /// The defaults.
    public init() {}

    /// Export traces; also turned on by setting an endpoint in the environment.
    public var enabled = false
    /// Base endpoint; traces go to `{endpoint}/v1/traces`.
    public var endpoint = "http://localhost:4318"
    /// A traces-specific endpoint, used as given.
    public var tracesEndpoint: String?
    /// Extra request headers (values are never logged).
    public var headers: [String: String] = [:]
    /// Timeout of one request, in milliseconds.
    public var timeoutMs = 10_000
    /// `none` or `gzip`.
    public var compression = "none"
    /// Only `http/protobuf` is supported.
    public var `protocol` = "http/protobuf"
    /// CA certificate file for TLS.
    public var certificate: String?
    /// Client private key file for mTLS.
    public var clientKey: String?
    /// Client certificate file for mTLS.
    public var clientCertificate: String?
    /// Background policy; nil: `[telemetry] background`.
    public var background: BackgroundPolicy?
    /// Spans held at most while waiting for export.
    public var maxQueueSize = 2048
    /// Spans per export request at most.
    public var maxExportBatchSize = 512
    /// Longest wait before exporting a partial batch, in milliseconds.
    public var scheduleDelayMs = 5000
    /// Deadline of one export, retries included, in milliseconds.
    public var exportTimeoutMs = 30_000
    /// `OTEL_RESOURCE_ATTRIBUTES`, parsed.
    public var resourceAttributes: [String: String] = [:]

    /// `endpoint` as an optional, for the setting that may not be emptied.
    var endpointOrNil: String? {
        get { endpoint }
        set { if let newValue { endpoint = newValue } }
    }

    /// The URL spans are posted to.
    public var tracesURL: String {
        if let tracesEndpoint { return tracesEndpoint }
        return endpoint.hasSuffix("/") ? endpoint + "v1/traces" : endpoint + "/v1/traces"
    }
}

/// `[telemetry.prometheus]`: the /metrics endpoint.
public struct PrometheusSettings: Sendable, Hashable {
    /// The defaults.
    public init() {}

    /// Serve /metrics while a runner is up.
    public var enabled = false
    /// Address to bind.
    public var host = "127.0.0.1"
    /// Port to bind (0 picks a free one).
    public var port = 9464
    /// Background policy of event-derived metrics; nil: `[telemetry] background`.
    public var background: BackgroundPolicy?
    /// Distinct step names with series of their own; later ones share `step="other"`.
    public var maxStepLabels = 200
}
