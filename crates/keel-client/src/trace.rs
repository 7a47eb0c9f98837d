//! Traces in the SDK: a handler runs in a `keel.job` span, and with the
//! `otel` feature that span continues the trace its job was enqueued in
//! (the job's `traceparent`), and every request the client sends carries
//! the caller's current trace, so a job enqueued inside a span is part of it.
//! Without `otel` the span is a plain `tracing` span naming the job, and
//! nothing is propagated.

use tracing::Span;

use crate::LeasedJob;

/// The span a handler runs in.
pub(crate) fn job_span(job: &LeasedJob) -> Span {
    let span = tracing::info_span!(
        "keel.job",
        otel.name = format!("process {}", job.queue),
        otel.kind = "consumer",
        job = %job.id,
        queue = %job.queue,
        attempt = job.attempt,
    );
    #[cfg(feature = "otel")]
    if let Some(parent) = &job.traceparent {
        otel::continue_trace(&span, parent);
    }
    span
}

/// The `traceparent` of the current span, if it is in a trace.
#[cfg(feature = "otel")]
pub(crate) fn current() -> Option<keel_core::TraceParent> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    let context = Span::current().context();
    let own = context.span().span_context().clone();
    keel_core::TraceParent::new(own.trace_id(), own.span_id(), own.trace_flags().to_u8())
}

#[cfg(feature = "otel")]
mod otel {
    use keel_core::TraceParent;
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing::Span;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    /// Makes `span` a child of the remote context `parent`.
    pub(super) fn continue_trace(span: &Span, parent: &TraceParent) {
        let (Ok(trace), Ok(id)) = (
            TraceId::from_hex(parent.trace_id()),
            SpanId::from_hex(parent.parent_id()),
        ) else {
            return;
        };
        let remote = SpanContext::new(
            trace,
            id,
            TraceFlags::new(parent.flags()),
            true,
            TraceState::default(),
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
}
