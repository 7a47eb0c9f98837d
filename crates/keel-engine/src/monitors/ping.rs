//! Heartbeat pings (`/v1/ping/{token}`, `/start`, `/fail`, `/{exit_status}`):
//! the token finds the monitor, and the ping is recorded like any result
//! (folded into the counters, an incident resolved by it) before the
//! answer, so a ping answered 200 is durable.

use base64::Engine as _;
use keel_core::monitor::{MAX_PING_BODY, ProbeResult, ResultKind, clip};
use keel_core::{Error, ErrorCode};
use keel_store::Recorded;

use super::MonitorService;

/// What a ping says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ping {
    Success,
    Start,
    Fail,
    /// A job's exit status: 0 passes, anything else fails.
    Exit(u8),
}

/// A monitor's ping token: 24 random bytes in base64url.
pub(super) fn new_token() -> Result<String, Error> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 24];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::internal("no randomness for a ping token"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

impl MonitorService {
    /// Records a ping; 404 for a token no heartbeat monitor has.
    pub async fn ping(&self, token: &str, ping: Ping, body: &[u8]) -> Result<Recorded, Error> {
        let not_found = || Error::new(ErrorCode::NotFound, "no heartbeat monitor has this token");
        if token.len() > 64 {
            return Err(not_found());
        }
        let (namespace, name) = self
            .store
            .monitor_by_token(token)
            .await?
            .ok_or_else(not_found)?;
        let monitor = self.stored(&namespace, &name).await?;
        if monitor.spec.heartbeat.is_none() {
            return Err(not_found());
        }
        let ok = match ping {
            Ping::Success => Some(true),
            Ping::Start => None,
            Ping::Fail => Some(false),
            Ping::Exit(code) => Some(code == 0),
        };
        let text = match ping {
            Ping::Exit(code) if body.is_empty() => format!("exit status {code}"),
            _ => String::from_utf8_lossy(body).into_owned(),
        };
        let result = ProbeResult {
            kind: ResultKind::Ping,
            ok,
            at: self.clock.now(),
            latency_ms: None,
            error: (ok == Some(false)).then(|| "the job reported a failure".to_owned()),
            tls_days_left: None,
            body: (!text.is_empty()).then(|| clip(text, MAX_PING_BODY)),
        };
        self.record(&namespace, &monitor, result).await
    }
}
