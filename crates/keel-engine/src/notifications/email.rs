//! E-mail through lettre's SMTP connection (rustls on ring), driven step by
//! step so that a failure is classified by when it happened: before the
//! message was handed over (connecting, TLS, login: safe to try again), as
//! the server's answer (4xx: again; 5xx: failed), or cut after the hand-off
//! began with no answer (`Unknown`: it may have arrived). The address
//! connected to is resolved here and passes the SSRF guard; TLS still
//! checks the certificate against the host's name. Connections are kept
//! per server and checked with a NOOP when they idled.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use keel_core::notification::{Dispatch, EmailChannel, PROVIDER_TIMEOUT_MS, SmtpServer, SmtpTls};
use keel_core::{JobId, Timestamp};
use lettre::message::{Mailbox, MultiPart, SinglePart, header};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;

use super::Sent;
use crate::outbound::{Guard, REFUSED};

const TIMEOUT: Duration = Duration::from_millis(PROVIDER_TIMEOUT_MS);
/// A kept connection idle longer than this is checked before use.
const CHECK_AFTER: Duration = Duration::from_secs(5);
/// Connections kept per server.
const KEEP: usize = 16;

/// Open connections by server (`smtp_url`), with when each was last used.
#[derive(Default)]
pub(crate) struct Mailer {
    idle: Mutex<HashMap<String, Vec<(AsyncSmtpConnection, Instant)>>>,
}

/// An unsubscribe link for the message, when its category may be turned off.
pub(crate) struct Unsubscribe {
    pub(crate) url: String,
}

impl Mailer {
    /// Sends one delivery's e-mail.
    pub(crate) async fn send(
        &self,
        guard: Guard,
        channel: &EmailChannel,
        (delivery, dispatch): (JobId, &Dispatch),
        unsubscribe: Option<Unsubscribe>,
        now: Timestamp,
    ) -> Sent {
        let started = Instant::now();
        let ms = || started.elapsed().as_millis() as u64;
        let (message, envelope) = match compose(channel, delivery, dispatch, unsubscribe, now) {
            Ok(built) => built,
            Err(e) => return Sent::Failed(e, ms()),
        };
        let server = match SmtpServer::parse(&channel.smtp_url) {
            Ok(server) => server,
            Err(e) => return Sent::Failed(e.message, ms()),
        };
        let mut conn = match self.take(&channel.smtp_url).await {
            Some(conn) => conn,
            None => match connect(guard, &server).await {
                Ok(conn) => conn,
                Err(e) => return Sent::Retry(e, ms(), None),
            },
        };
        match conn.send(&envelope, &message).await {
            Ok(answer) => {
                self.keep(&channel.smtp_url, conn);
                let text = answer.message().collect::<Vec<_>>().join(" ");
                Sent::Ok(format!("{} {text}", answer.code()), ms())
            }
            Err(e) if e.is_permanent() => {
                self.keep(&channel.smtp_url, conn);
                Sent::Failed(e.to_string(), ms())
            }
            Err(e) if e.is_transient() => {
                self.keep(&channel.smtp_url, conn);
                Sent::Retry(e.to_string(), ms(), None)
            }
            // Cut with no answer once the hand-off began.
            Err(e) => Sent::Unknown(e.to_string(), ms()),
        }
    }

    /// A kept connection to the server, checked if it idled.
    async fn take(&self, url: &str) -> Option<AsyncSmtpConnection> {
        loop {
            let (mut conn, used) = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_mut(url)?
                .pop()?;
            if used.elapsed() < CHECK_AFTER || conn.test_connected().await {
                return Some(conn);
            }
            conn.abort().await;
        }
    }

    fn keep(&self, url: &str, conn: AsyncSmtpConnection) {
        if conn.has_broken() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let kept = idle.entry(url.to_owned()).or_default();
        if kept.len() < KEEP {
            kept.push((conn, Instant::now()));
        }
    }
}

/// A new connection: the host resolved and guarded, TLS as the URL says,
/// logged in when it names a user. Every failure here is before any
/// message, so the caller may try again.
async fn connect(guard: Guard, server: &SmtpServer) -> Result<AsyncSmtpConnection, String> {
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((server.host.as_str(), server.port))
        .await
        .map_err(|e| format!("cannot resolve {}: {e}", server.host))?
        .collect();
    let address = addresses
        .iter()
        .find(|a| guard.allows(a.ip()))
        .copied()
        .ok_or_else(|| {
            format!(
                "{REFUSED}: {} resolves to no public address (see --allow-private-http)",
                server.host
            )
        })?;
    let hello = ClientId::Domain("keel".to_owned());
    let tls = || {
        TlsParameters::new(server.host.clone()).map_err(|e| format!("TLS for {}: {e}", server.host))
    };
    let implicit = (server.tls == SmtpTls::Implicit).then(tls).transpose()?;
    let mut conn =
        AsyncSmtpConnection::connect_tokio1(address, Some(TIMEOUT), &hello, implicit, None)
            .await
            .map_err(|e| format!("cannot connect to {}:{}: {e}", server.host, server.port))?;
    match server.tls {
        SmtpTls::Required if !conn.can_starttls() => {
            conn.abort().await;
            return Err(format!(
                "{} does not offer STARTTLS (add ?tls=opportunistic or ?tls=none to send in the clear)",
                server.host
            ));
        }
        SmtpTls::Required | SmtpTls::Opportunistic if conn.can_starttls() => conn
            .starttls(tls()?, &hello)
            .await
            .map_err(|e| format!("STARTTLS with {}: {e}", server.host))?,
        _ => {}
    }
    if let (Some(user), Some(password)) = (&server.user, &server.password) {
        conn.auth(
            &[Mechanism::Plain, Mechanism::Login],
            &Credentials::new(user.clone(), password.clone()),
        )
        .await
        .map_err(|e| format!("login to {} refused: {e}", server.host))?;
    }
    Ok(conn)
}

/// The message's bytes and envelope: text and HTML as an alternative when
/// both are given, a `Message-ID` named after the delivery (so a receiver
/// can see two copies of one delivery as one), RFC 8058 unsubscribe headers
/// when given.
fn compose(
    channel: &EmailChannel,
    delivery: JobId,
    dispatch: &Dispatch,
    unsubscribe: Option<Unsubscribe>,
    now: Timestamp,
) -> Result<(Vec<u8>, lettre::address::Envelope), String> {
    let mailbox = |field: &str, text: &str| -> Result<Mailbox, String> {
        text.parse()
            .map_err(|e| format!("{field} {text:?} is not an address: {e}"))
    };
    let to = dispatch
        .to
        .email
        .as_deref()
        .ok_or("the recipient has no e-mail address")?;
    let content = &dispatch.content;
    let mut builder = lettre::Message::builder()
        .from(mailbox("from", &channel.from)?)
        .to(mailbox("to", to)?)
        .subject(content.subject.clone().unwrap_or_default())
        .date(SystemTime::UNIX_EPOCH + Duration::from_millis(now.as_millis().max(0) as u64))
        .message_id(Some(format!("<{delivery}@keel>")));
    if let Some(reply_to) = &channel.reply_to {
        builder = builder.reply_to(mailbox("reply_to", reply_to)?);
    }
    let text = content.text.clone().unwrap_or_default();
    let built = match &content.html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(text, html.clone())),
        None => builder.singlepart(SinglePart::plain(text)),
    };
    let mut message = built.map_err(|e| format!("the message cannot be built: {e}"))?;
    if let Some(unsubscribe) = unsubscribe {
        let headers = message.headers_mut();
        headers.insert_raw(header::HeaderValue::new(
            header::HeaderName::new_from_ascii_str("List-Unsubscribe"),
            format!("<{}>", unsubscribe.url),
        ));
        headers.insert_raw(header::HeaderValue::new(
            header::HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
            "List-Unsubscribe=One-Click".to_owned(),
        ));
    }
    let envelope = message.envelope().clone();
    Ok((message.formatted(), envelope))
}
