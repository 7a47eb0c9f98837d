//! Request ids: every answer carries `x-request-id`, and every log line
//! written while a request is served (in its span, `trace.rs`) names it, so
//! one failing call can be found in the logs (at `debug`, each answer logs a
//! line of its own with its status and time). A caller's own id (a gateway's
//! or a tracer's) is kept when it is short and plain; any other is replaced,
//! so what reaches a log line is never more than 128 letters, digits and
//! `-_.:`.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

const X_REQUEST_ID: &str = "x-request-id";

/// The request's id, in its extensions for whoever records it (the audit).
#[derive(Clone, Debug)]
pub(super) struct RequestId(pub HeaderValue);

pub(super) async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(X_REQUEST_ID)
        .filter(|v| plain(v.as_bytes()))
        .cloned()
        .unwrap_or_else(fresh);
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = super::trace::enter(&mut req, id.to_str().unwrap_or_default());
    let started = std::time::Instant::now();
    let mut response = async {
        let response = next.run(req).await;
        tracing::debug!(
            status = response.status().as_u16(),
            ms = started.elapsed().as_millis() as u64,
            "answered"
        );
        response
    }
    .instrument(span.clone())
    .await;
    super::trace::answered(&span, response.status());
    response.headers_mut().insert(X_REQUEST_ID, id);
    response
}

fn plain(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
}

/// A UUIDv7: unique across nodes and ordered by time, like the job ids.
fn fresh() -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::now_v7().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_ids_are_kept() {
        assert!(plain(b"01890a5d-ac96-774b-bcce-b302099a8057"));
        assert!(plain(b"trace:abc.DEF_1"));
        assert!(!plain(b""));
        assert!(!plain(&[b'a'; 129]));
        assert!(!plain(b"two words"));
        assert!(!plain(b"a\"b"));
        assert!(plain(fresh().as_bytes()));
    }
}
