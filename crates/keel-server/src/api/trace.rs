//! The trace a request belongs to. Every request is served in a `request`
//! span; its W3C context ([`RequestTrace`]) is what a job enqueued, an event
//! published or a run started by the request carries when its body names
//! none. In the default build that is the caller's `traceparent` header,
//! passed through unchanged; built with `otel` (and an exporter configured),
//! the span is a server span exported over OTLP, child of the caller's
//! context, and the work it stores continues *that* span.

use std::convert::Infallible;

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use keel_core::TraceParent;

/// The request's trace context, in its extensions; none when the caller
/// sent none (and no tracer runs).
#[derive(Clone, Debug, Default)]
pub(super) struct RequestTrace(pub Option<TraceParent>);

impl<S: Send + Sync> FromRequestParts<S> for RequestTrace {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(parts
            .extensions
            .get::<RequestTrace>()
            .cloned()
            .unwrap_or_default())
    }
}

/// The caller's context: a `traceparent` header that is not valid is
/// ignored, as the specification says.
fn incoming(req: &Request) -> Option<TraceParent> {
    req.headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse)
}

/// The request's span, and its context recorded in the request.
#[cfg(not(feature = "otel"))]
pub(super) fn enter(req: &mut Request, id: &str) -> tracing::Span {
    let trace = incoming(req);
    req.extensions_mut().insert(RequestTrace(trace));
    tracing::info_span!("request", id = %id)
}

/// The status of a finished request, on its span.
#[cfg(not(feature = "otel"))]
pub(super) fn answered(_: &tracing::Span, _: axum::http::StatusCode) {}

#[cfg(feature = "otel")]
pub(super) use otel::{answered, enter};

#[cfg(feature = "otel")]
mod otel {
    use axum::extract::{MatchedPath, Request};
    use axum::http::{HeaderMap, StatusCode};
    use keel_core::TraceParent;
    use opentelemetry::propagation::{Extractor, TextMapPropagator};
    use opentelemetry::trace::TraceContextExt;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tracing::Span;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::{RequestTrace, incoming};

    struct Headers<'a>(&'a HeaderMap);

    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }

        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|k| k.as_str()).collect()
        }
    }

    /// A server span named by the route (never the raw path, which holds
    /// ids), child of the caller's context; what the request stores
    /// continues it. Without a tracer installed the span has no context and
    /// the caller's header is passed through, as in the default build.
    pub(in crate::api) fn enter(req: &mut Request, id: &str) -> Span {
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str)
            .to_owned();
        let method = req.method().as_str().to_owned();
        let span = tracing::info_span!(
            "request",
            id = %id,
            otel.name = format!("{method} {route}"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            http.request.method = method,
            http.route = route,
            http.response.status_code = tracing::field::Empty,
        );
        let parent = TraceContextPropagator::new().extract(&Headers(req.headers()));
        let _ = span.set_parent(parent);
        let context = span.context();
        let own = context.span().span_context().clone();
        let trace = TraceParent::new(own.trace_id(), own.span_id(), own.trace_flags().to_u8())
            .or_else(|| incoming(req));
        req.extensions_mut().insert(RequestTrace(trace));
        span
    }

    pub(in crate::api) fn answered(span: &Span, status: StatusCode) {
        span.record("http.response.status_code", status.as_u16());
        if status.is_server_error() {
            span.record("otel.status_code", "error");
        }
    }
}
