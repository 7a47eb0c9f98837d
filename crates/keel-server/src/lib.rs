//! The HTTP API: routes per domain, input validation at the edge, and the
//! answers' shapes; the dashboard (`ui`), pages rendered from the same
//! engine; and the public status pages (`status`). Handlers parse, call the engine's services, and
//! serialize; the side effects live in `keel-engine`.
//!
//! Architecture invariant: this is the only crate that serves HTTP (the
//! engine makes outbound calls for `http` steps). It never writes SQL.

pub mod api;
mod connections;
mod status;
pub mod tls;
pub mod ui;

pub use connections::ClientLimits;

use keel_engine::{Engine, Shutdown, services};

use std::sync::Arc;

use rustls::ServerConfig;

use tokio::net::TcpListener;

/// Serves the API on `listener` and runs the background services until
/// `shutdown` fires; then stops accepting, lets in-flight requests finish,
/// stops the services and closes the store. With `tls` (from
/// [`tls::load`]) the API is HTTPS only; `auth` says whether callers need
/// tokens; `clients` bounds what callers may hold.
pub async fn run(
    engine: Arc<Engine>,
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    auth: api::AuthConfig,
    clients: ClientLimits,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    // A version a crash left applying is finished before any request is
    // answered: nobody sees half of it.
    if let Err(e) = engine.projects().recover().await {
        tracing::error!(error = %e.message, "cannot finish a project version left applying");
    }
    let services = services::start(engine.clone(), shutdown.clone());
    let app = api::router(engine.clone(), auth)
        .merge(ui::router(engine.clone(), auth, tls.is_some()))
        .merge(status::router(engine.clone()))
        .layer(axum::Extension(api::BodyBounds::new(
            &clients,
            engine.limits().max_body_bytes,
        )));
    let served = connections::serve(listener, app, tls, clients, shutdown.clone()).await;
    services.join().await;
    engine.close().await;
    served
}
