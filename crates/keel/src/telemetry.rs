//! Where a server's logs and traces go. Logs: stderr, filtered by `RUST_LOG`
//! (`info` when unset). Traces, in a build with the `otel` feature: when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is
//! set, Keel's spans — a server span per API request, one per store commit
//! batch — are exported there over OTLP/HTTP (protobuf), in batches, by the
//! OpenTelemetry SDK, which reads the other standard `OTEL_*` variables
//! itself (headers, timeout, sampler, batch delay, `OTEL_SERVICE_NAME`).

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// What has to be flushed before the process exits.
pub(crate) struct Telemetry {
    #[cfg(feature = "otel")]
    traces: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

fn logs() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Colour codes only for a terminal: a log file or a pipe gets plain text
/// (and `NO_COLOR` turns them off everywhere).
fn colours() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

#[cfg(not(feature = "otel"))]
pub(crate) fn init() -> anyhow::Result<Telemetry> {
    tracing_subscriber::registry()
        .with(logs())
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(colours()),
        )
        .init();
    Ok(Telemetry {})
}

/// Sets the process's subscriber. Call it outside the async runtime (the
/// exporter's HTTP client blocks).
#[cfg(feature = "otel")]
pub(crate) fn init() -> anyhow::Result<Telemetry> {
    use opentelemetry::trace::TracerProvider;
    use tracing_subscriber::Layer;

    let traces = otel::provider()?;
    let spans = traces.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("keel"))
            .with_filter(otel::exported())
    });
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(colours())
                .with_filter(logs()),
        )
        .with(spans)
        .init();
    Ok(Telemetry { traces })
}

impl Telemetry {
    /// Exports the spans still buffered. Call it outside the async runtime.
    pub(crate) fn shutdown(self) {
        #[cfg(feature = "otel")]
        if let Some(provider) = self.traces
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "traces not all exported at shutdown");
        }
    }
}

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry_otlp::{SpanExporter, WithExportConfig};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing::Level;
    use tracing_subscriber::filter::Targets;

    const ENDPOINTS: [&str; 2] = [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ];

    /// The tracer provider, when an endpoint is configured.
    pub(super) fn provider() -> anyhow::Result<Option<SdkTracerProvider>> {
        if !ENDPOINTS.iter().any(|v| std::env::var_os(v).is_some()) {
            return Ok(None);
        }
        // The exporter's client speaks HTTPS on the process's rustls provider.
        keel_client::install_tls_provider();
        let exporter = SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build()?;
        let mut resource = Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("keel");
        }
        Ok(Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource.build())
                .build(),
        ))
    }

    /// Keel's own spans: requests (and what the engine does in them) at
    /// `info`, store commits at `debug`; never the HTTP stack's, whose spans
    /// would include the exporter's own requests.
    pub(super) fn exported() -> Targets {
        Targets::new()
            .with_target("keel_server", Level::INFO)
            .with_target("keel_engine", Level::INFO)
            .with_target("keel_store_sqlite", Level::DEBUG)
            .with_target("keel_store_postgres", Level::DEBUG)
    }
}
