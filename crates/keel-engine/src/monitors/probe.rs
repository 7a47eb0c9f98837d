//! One probe: an HTTP call through the SSRF-guarded client (its answer
//! judged by the monitor's expectations), or a TCP connect to an address
//! the same guard allows (over TLS, the days the server's certificate has
//! left). A heartbeat's check looks for a ping since the last check. Each comes back as a result to record; nothing here writes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use keel_core::monitor::{
    HttpProbe, MAX_ERROR, MAX_PROBE_BODY, ProbeResult, ResultKind, TcpProbe, cert, clip,
};
use keel_core::{Timestamp, monitor::MonitorState};
use reqwest::Method;

use crate::outbound::{Guard, REFUSED, describe, read_bounded};

/// The clients probes go out through: one that follows redirects, one that
/// does not; both behind the guard.
#[derive(Clone)]
pub(crate) struct Clients {
    follow: reqwest::Client,
    stay: reqwest::Client,
    guard: Guard,
}

impl Clients {
    pub(crate) fn new(guard: Guard) -> Self {
        // Each answer carries the server's certificate, for its expiry.
        let client = |follow| {
            guard
                .builder(follow)
                .tls_info(true)
                .build()
                .unwrap_or_default()
        };
        Clients {
            follow: client(true),
            stay: client(false),
            guard,
        }
    }

    pub(crate) async fn http(&self, probe: &HttpProbe, at: Timestamp) -> ProbeResult {
        let started = Instant::now();
        let outcome = self.call(probe).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        let (ok, error, expires) = match outcome {
            Ok((status, body, expires)) => match probe.judge(status, &body, latency_ms) {
                Ok(()) => (true, None, expires),
                Err(why) => (false, Some(why), expires),
            },
            Err(why) => (false, Some(why), None),
        };
        let mut judged = result(ok, at, Some(latency_ms), error);
        judged.tls_days_left = expires.map(|e| cert::days_left(e, at));
        judged
    }

    /// The answer's status and body, and when the server's certificate
    /// expires (over TLS).
    async fn call(&self, probe: &HttpProbe) -> Result<(u16, Vec<u8>, Option<Timestamp>), String> {
        let url = reqwest::Url::parse(&probe.url).map_err(|e| format!("bad url: {e}"))?;
        self.guard.check_url(&url)?;
        let method = Method::from_bytes(probe.method.as_bytes()).map_err(|e| e.to_string())?;
        let client = if probe.follow_redirects {
            &self.follow
        } else {
            &self.stay
        };
        let mut request = client
            .request(method, url)
            .timeout(Duration::from_millis(probe.timeout_ms));
        for (name, value) in &probe.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some(body) = &probe.body {
            request = request.body(body.clone());
        }
        let response = request.send().await.map_err(|e| describe(&e))?;
        let status = response.status().as_u16();
        let expires = response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|tls| tls.peer_certificate())
            .and_then(cert::not_after);
        let (body, _) = read_bounded(response, MAX_PROBE_BODY)
            .await
            .map_err(|e| describe(&e))?;
        Ok((status, body, expires))
    }

    pub(crate) async fn tcp(&self, probe: &TcpProbe, at: Timestamp) -> ProbeResult {
        let started = Instant::now();
        let timeout = Duration::from_millis(probe.timeout_ms);
        let connected = tokio::time::timeout(timeout, self.connect(probe)).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        let error = match connected {
            Ok(Ok(())) => None,
            Ok(Err(why)) => Some(why),
            Err(_) => Some(format!("no connection within {} ms", probe.timeout_ms)),
        };
        result(error.is_none(), at, Some(latency_ms), error)
    }

    async fn connect(&self, probe: &TcpProbe) -> Result<(), String> {
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((probe.host.as_str(), probe.port))
            .await
            .map_err(|e| format!("cannot resolve {}: {e}", probe.host))?
            .collect();
        let address = addresses
            .iter()
            .find(|a| self.guard.allows(a.ip()))
            .ok_or_else(|| {
                format!(
                    "{REFUSED}: {} resolves to no allowed address (see --allow-private-http)",
                    probe.host
                )
            })?;
        tokio::net::TcpStream::connect(address)
            .await
            .map(drop)
            .map_err(|e| format!("connect to {address}: {e}"))
    }
}

/// A heartbeat's check at `at`: passed (not judged: the pings were) when a
/// ping came since the last check (or since the monitor was made), failed
/// otherwise.
pub(crate) fn check(state: &MonitorState, created_at: Timestamp, at: Timestamp) -> ProbeResult {
    let since = state.last_check_at.unwrap_or(created_at);
    let pinged = state.last_ping_at.is_some_and(|p| p > since);
    let mut checked = result(false, at, None, None);
    checked.kind = ResultKind::Check;
    if pinged {
        checked.ok = None;
    } else {
        checked.error = Some(format!("no ping since {}", since.to_rfc3339()));
    }
    checked
}

fn result(ok: bool, at: Timestamp, latency_ms: Option<u64>, error: Option<String>) -> ProbeResult {
    ProbeResult {
        kind: ResultKind::Probe,
        ok: Some(ok),
        at,
        latency_ms,
        error: error.map(|e| clip(e, MAX_ERROR)),
        tls_days_left: None,
        body: None,
    }
}
