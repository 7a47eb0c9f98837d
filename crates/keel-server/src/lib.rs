//! The engine services and the HTTP API: everything between a socket and the
//! store.
//!
//! Architecture invariant: this is the only crate that knows HTTP. It never
//! writes SQL; every state change is a call on `dyn Store`.

pub mod api;
mod engine;
pub mod metrics;
mod rates;
pub mod services;
mod shutdown;
pub mod workflows;

pub use engine::{DEFAULT_RUN_RETENTION_MS, Engine, EngineConfig};
pub use shutdown::{Shutdown, ShutdownTrigger};

use std::sync::Arc;

use tokio::net::TcpListener;

/// Serves the API on `listener` and runs the background services until
/// `shutdown` fires; then stops accepting, lets in-flight requests finish,
/// stops the services and closes the store.
pub async fn run(
    engine: Arc<Engine>,
    listener: TcpListener,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let services = services::start(engine.clone(), shutdown.clone());
    let app = api::router(engine.clone());
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().wait())
        .await;
    services.join().await;
    engine.store.close().await;
    served
}
