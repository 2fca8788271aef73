import Flujo

/// How a `WorkflowState` maps to a `workflow_state` row and a `StepRecord` to a
/// `steps` row: column lists, bind positions and readers, in one place.
enum StateRow {
    /// The columns of `workflow_state`, in bind order (`?1` to `?25`).
    static let columns = """
        run_id, pipeline_id, pipeline_name, pipeline_version, current_step_index, pipeline_context,
        last_step_output, step_history, status, created_at, updated_at, total_steps, error_message,
        execution_time_ms, memory_usage_mb, metadata, is_background_task, parent_run_id, task_id,
        error_category, attempts, resumed_from, step_name, cost_usd, tokens
        """

    /// Binds every column of `state` by its position in `columns`.
    static func bind(_ state: WorkflowState, to statement: Statement) {
        statement.bind(1, state.runID)
        statement.bind(2, state.pipelineID)
        statement.bind(3, state.pipelineName)
        statement.bind(4, state.pipelineVersion)
        statement.bind(5, state.currentStepIndex)
        statement.bind(6, state.contextJSON)
        statement.bind(7, state.lastStepOutputJSON)
        statement.bind(8, state.stepHistoryJSON)
        statement.bind(9, state.status.rawValue)
        statement.bind(10, state.createdAt)
        statement.bind(11, state.updatedAt)
        statement.bind(12, state.totalSteps)
        statement.bind(13, state.errorMessage)
        statement.bind(14, state.executionTimeMs)
        statement.bind(15, state.memoryUsageMB)
        statement.bind(16, state.metadataJSON)
        statement.bind(17, state.isBackgroundTask)
        statement.bind(18, state.parentRunID)
        statement.bind(19, state.taskID)
        statement.bind(20, state.errorCategory?.rawValue)
        statement.bind(21, state.attempts)
        statement.bind(22, state.resumedFrom)
        statement.bind(23, state.stepName)
        statement.bind(24, state.costUSD)
        statement.bind(25, state.tokens)
    }

    /// Reads a row selected with `columns`, starting at column 0.
    static func read(_ row: Statement) -> WorkflowState {
        WorkflowState(
            runID: row.string(0) ?? "",
            pipelineName: row.string(2) ?? "",
            pipelineVersion: row.string(3) ?? "",
            pipelineID: row.string(1),
            currentStepIndex: row.int(4),
            contextJSON: row.string(5) ?? "{}",
            lastStepOutputJSON: row.string(6),
            stepHistoryJSON: row.string(7) ?? "[]",
            status: RunStatus(rawValue: row.string(8) ?? "") ?? .failed,
            createdAt: row.timestamp(9),
            updatedAt: row.timestamp(10),
            totalSteps: row.int(11),
            errorMessage: row.string(12),
            executionTimeMs: row.optionalDouble(13),
            memoryUsageMB: row.optionalDouble(14),
            metadataJSON: row.string(15) ?? "{}",
            isBackgroundTask: row.int(16) != 0,
            parentRunID: row.string(17),
            taskID: row.string(18),
            errorCategory: row.string(19).flatMap(ErrorCategory.init(rawValue:)),
            attempts: row.int(20),
            resumedFrom: row.string(21),
            stepName: row.string(22),
            costUSD: row.double(23),
            tokens: row.int(24)
        )
    }

    /// The columns of `steps` that `readStep` reads, in order.
    static let stepColumns = "run_id, step_index, step_name, success, output, attempts, latency_s, cost_usd, tokens, feedback, finished_at"

    /// Binds a step record to `?1`...`?11` (in `stepColumns` order) and its sequence key to `?12`.
    static func bind(_ step: StepRecord, sequence: Int64, to statement: Statement) {
        statement.bind(1, step.runID)
        statement.bind(2, step.stepIndex)
        statement.bind(3, step.stepName)
        statement.bind(4, step.success)
        statement.bind(5, step.outputJSON)
        statement.bind(6, step.attempts)
        statement.bind(7, step.latencySeconds)
        statement.bind(8, step.costUSD)
        statement.bind(9, step.tokens)
        statement.bind(10, step.feedback)
        statement.bind(11, step.finishedAt)
        statement.bind(12, sequence)
    }

    /// Reads a row selected with `stepColumns`.
    static func readStep(_ row: Statement) -> StepRecord {
        StepRecord(
            runID: row.string(0) ?? "", stepIndex: row.int(1), stepName: row.string(2) ?? "",
            success: row.int(3) != 0, outputJSON: row.string(4), attempts: row.int(5),
            latencySeconds: row.double(6), costUSD: row.double(7), tokens: row.int(8),
            feedback: row.string(9), finishedAt: row.timestamp(10))
    }

    /// Binds a span to `?1`...`?11` (in `spanColumns` order).
    static func bind(_ span: SpanRecord, to statement: Statement) {
        statement.bind(1, span.spanID)
        statement.bind(2, span.traceID)
        statement.bind(3, span.parentSpanID)
        statement.bind(4, span.runID)
        statement.bind(5, span.name)
        statement.bind(6, Int64(bitPattern: span.startUnixNano))
        statement.bind(7, Int64(bitPattern: span.endUnixNano))
        statement.bind(8, span.status)
        statement.bind(9, span.statusMessage)
        statement.bind(10, JSONText.object(span.attributes))
        statement.bind(11, span.isBackground)
    }

    /// The columns of `spans`, in bind order.
    static let spanColumns = """
        span_id, trace_id, parent_span_id, run_id, name, start_unix_nano, end_unix_nano, status,
        status_message, attributes, is_background
        """

    /// Reads a row selected with `spanColumns`.
    static func readSpan(_ row: Statement) -> SpanRecord {
        SpanRecord(
            traceID: row.string(1) ?? "", spanID: row.string(0) ?? "", parentSpanID: row.string(2),
            runID: row.string(3) ?? "", name: row.string(4) ?? "",
            startUnixNano: UInt64(bitPattern: row.int64(5)), endUnixNano: UInt64(bitPattern: row.int64(6)),
            status: row.string(7) ?? "unset", statusMessage: row.string(8),
            attributes: JSONText.parseStringObject(row.string(9) ?? "{}"), isBackground: row.int(10) != 0)
    }
}
