//! The one accept loop, for HTTP and HTTPS, and the bounds a client cannot
//! push past: a slow or silent client holds only its own connection, and
//! only for a while.
//!
//! - **Connections** are capped (`max_connections`): past the cap a new
//!   connection gets 429 `overloaded` with `Retry-After` (HTTPS: it is
//!   closed) and the ones open keep being served.
//! - **Request heads** must arrive within `header_timeout`, counted from
//!   the connection's start (the TLS handshake and the first request) and,
//!   on a kept-alive HTTP/1.1 connection, from the end of the previous
//!   answer: a slowloris trickling bytes, or a client gone quiet, is closed.
//!   HTTP/2 connections are pinged and closed when the pings go unanswered.
//! - **Bodies** have their own deadline and memory budget (`BodyBounds`,
//!   checked where a body is read: `api::extract`).
//!
//! Axum's own `serve` installs no timer, so hyper applied no header timeout
//! at all: 3,000 half-open connections were held for as long as their
//! clients liked.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use keel_engine::Shutdown;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

/// What clients may hold of the server: connections, and time and memory
/// for what they send.
#[derive(Clone, Copy, Debug)]
pub struct ClientLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// How long a request head may take to arrive (and a kept-alive
    /// connection may sit idle).
    pub header_timeout: Duration,
    /// How long a request body may take to arrive.
    pub body_timeout: Duration,
    /// Bytes of request bodies being read at once, over all connections.
    pub max_body_bytes_in_flight: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            max_connections: 10_000,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            max_body_bytes_in_flight: 512 << 20,
        }
    }
}

/// Serves `app` on `listener` (over TLS with `tls`) until `shutdown` fires;
/// then stops accepting and lets the requests in flight finish.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<ServerConfig>>,
    limits: ClientLimits,
    shutdown: Shutdown,
) -> io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.header_timeout)
        .keep_alive_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    let tls = tls.map(TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or memory: wait for connections to
                    // end instead of spinning on the error.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.clone().wait() => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tokio::spawn(refuse(stream, tls.is_some(), limits.max_connections));
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            stream,
            tls.clone(),
            app.clone(),
            builder.clone(),
            graceful.watcher(),
            limits.header_timeout,
            slot,
        ));
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// One connection: the TLS handshake if any, then HTTP, closed when its
/// first request head has not arrived within `header_timeout`. Holds its
/// slot until it ends.
async fn connection(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    app: Router,
    builder: Arc<Builder<TokioExecutor>>,
    watcher: Watcher,
    header_timeout: Duration,
    _slot: OwnedSemaphorePermit,
) {
    let started = Arc::new(AtomicBool::new(false));
    let service = {
        let started = started.clone();
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            started.store(true, Ordering::Relaxed);
            let mut app = app.clone();
            async move {
                let answer: Result<_, Infallible> = app.call(request.map(Body::new)).await;
                answer
            }
        })
    };
    let served = async {
        match tls {
            None => http(stream, &builder, service, watcher).await,
            Some(acceptor) => match acceptor.accept(stream).await {
                Ok(stream) => http(stream, &builder, service, watcher).await,
                Err(e) => tracing::debug!(error = %e, "TLS handshake failed"),
            },
        }
    };
    // The first head's deadline: hyper's header timeout starts only once it
    // reads HTTP/1.1, after the handshake and the protocol's detection.
    let first_head = async {
        tokio::time::sleep(header_timeout).await;
        if started.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = served => {}
        () = first_head => tracing::debug!("closed a connection with no request head in time"),
    }
}

async fn http<I, S>(io: I, builder: &Builder<TokioExecutor>, service: S, watcher: Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<Incoming>,
            Response = axum::response::Response,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .into_owned();
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// A connection past the cap: a plain-HTTP client is told 429 and when to
/// come back; an HTTPS one is closed (no handshake is spent on it).
async fn refuse(mut stream: TcpStream, tls: bool, max_connections: usize) {
    tracing::debug!(max_connections, "refused a connection: the server is full");
    if tls {
        return;
    }
    let body = format!(
        r#"{{"error":{{"code":"overloaded","message":"the server holds {max_connections} connections, its most (--max-connections); try again"}}}}"#
    );
    let answer = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    // Write the answer, then read what the client sent until it closes:
    // closing with its request unread would reset the connection before
    // the client reads the answer.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        io::Result::Ok(())
    })
    .await;
}
