//! A worker's stream (`GET .../queues/{queue}/stream`, a WebSocket): the
//! server pushes jobs while the worker's credit lasts and answers batches of
//! acks apart from them. The handshake goes through reqwest (its TLS, its
//! certificate authorities, the token), and the upgraded connection speaks
//! WebSocket through tokio-tungstenite.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use keel_api::jobs::{AcksAnswer, ServerFrame, StreamAcked, StreamAcks, StreamParams, WorkerFrame};
use reqwest::header;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::client::seg;
use crate::{Client, ClientError, LeasedJob};

/// The sending half of a worker's stream: credit and acks. Cheap to clone.
#[derive(Clone)]
pub struct JobStream {
    out: mpsc::UnboundedSender<Message>,
    waiting: Waiting,
    next_id: Arc<AtomicU64>,
}

/// The jobs a worker's stream delivers.
pub struct StreamJobs {
    jobs: mpsc::UnboundedReceiver<Vec<LeasedJob>>,
    ended: oneshot::Receiver<ClientError>,
}

/// Ack batches sent and not yet answered, by their number; `None` once the
/// stream has ended, so that no batch waits for an answer that cannot come.
type Waiting = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<StreamAcked>>>>>;

const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

impl Client {
    /// Opens a worker's stream on `queue`. Nothing is pushed until
    /// [`JobStream::grant`] gives credit.
    pub async fn stream(
        &self,
        namespace: &str,
        queue: &str,
        worker_id: &str,
        lease_ms: Option<u64>,
    ) -> Result<(JobStream, StreamJobs), ClientError> {
        let url = self.url(&format!(
            "/namespaces/{}/queues/{}/stream",
            seg(namespace),
            seg(queue)
        ));
        let params = StreamParams {
            worker_id: Some(worker_id.to_owned()),
            lease_ms,
        };
        let key = base64::engine::general_purpose::STANDARD.encode(rand_key());
        let req = self
            .http1
            .get(url)
            .query(&params)
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_VERSION, "13")
            .header(header::SEC_WEBSOCKET_KEY, &key);
        let resp = self.authorized(req).send().await?;
        if resp.status() != reqwest::StatusCode::SWITCHING_PROTOCOLS {
            return Err(Client::error_of(resp).await);
        }
        let accept = resp
            .headers()
            .get(header::SEC_WEBSOCKET_ACCEPT)
            .and_then(|v| v.to_str().ok());
        if accept != Some(accept_key(&key).as_str()) {
            return Err(ClientError::Stream(
                "the server did not accept the WebSocket handshake".into(),
            ));
        }
        let socket =
            WebSocketStream::from_raw_socket(resp.upgrade().await?, Role::Client, None).await;
        Ok(start(socket))
    }
}

fn start(socket: WebSocketStream<reqwest::Upgraded>) -> (JobStream, StreamJobs) {
    let (mut sink, mut source) = socket.split();
    let (out, mut outgoing) = mpsc::unbounded_channel::<Message>();
    let (jobs_tx, jobs) = mpsc::unbounded_channel();
    let (end_tx, ended) = oneshot::channel();
    let waiting: Waiting = Arc::new(Mutex::new(Some(HashMap::new())));
    // Frames queued together go out in one flush.
    tokio::spawn(async move {
        while let Some(first) = outgoing.recv().await {
            let mut closing = matches!(first, Message::Close(_));
            if sink.feed(first).await.is_err() {
                return;
            }
            while let Ok(more) = outgoing.try_recv() {
                closing |= matches!(more, Message::Close(_));
                if sink.feed(more).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() || closing {
                return;
            }
        }
    });
    let answers = waiting.clone();
    tokio::spawn(async move {
        let why = loop {
            let text = match source.next().await {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(_))) | None => break ClientError::Stream("closed".into()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => break ClientError::Stream(e.to_string()),
            };
            match serde_json::from_str::<ServerFrame<Value>>(&text) {
                Ok(ServerFrame::Jobs(batch)) => {
                    let _ = jobs_tx.send(batch);
                }
                Ok(ServerFrame::Acked(acked)) => {
                    let waiter = lock(&answers).as_mut().and_then(|w| w.remove(&acked.id));
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(acked);
                    }
                }
                Ok(ServerFrame::Error(e)) => {
                    break ClientError::Api {
                        status: 0,
                        code: e.code,
                        message: e.message,
                    };
                }
                Err(e) => break ClientError::Stream(format!("a frame that does not parse: {e}")),
            }
        };
        // Unanswered acks fail now, later ones at once, and the jobs
        // channel ends.
        *lock(&answers) = None;
        let _ = end_tx.send(why);
    });
    let stream = JobStream {
        out,
        waiting,
        next_id: Arc::default(),
    };
    (stream, StreamJobs { jobs, ended })
}

impl JobStream {
    /// Room for `jobs` more jobs.
    pub fn grant(&self, jobs: u32) -> Result<(), ClientError> {
        self.send(&WorkerFrame::Credit(jobs))
    }

    /// Completes and fails jobs as `POST .../acks` does; the answer comes
    /// on the stream. An error means the stream ended before it came: the
    /// acks may or may not have been applied.
    pub async fn acks(
        &self,
        complete: Vec<Value>,
        fail: Vec<Value>,
    ) -> Result<AcksAnswer, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        match lock(&self.waiting).as_mut() {
            Some(waiting) => waiting.insert(id, tx),
            None => return Err(ClientError::Stream("the stream has ended".into())),
        };
        let sent = self.send(&WorkerFrame::Acks(StreamAcks { id, complete, fail }));
        if let Err(e) = sent {
            if let Some(waiting) = lock(&self.waiting).as_mut() {
                waiting.remove(&id);
            }
            return Err(e);
        }
        let acked = rx
            .await
            .map_err(|_| ClientError::Stream("the stream ended before the acks' answer".into()))?;
        Ok(AcksAnswer {
            complete: acked.complete,
            fail: acked.fail,
        })
    }

    /// Asks the server to end the stream: no more jobs are leased for it,
    /// and jobs already on their way still arrive.
    pub fn close(&self) {
        let _ = self.out.send(Message::Close(None));
    }

    fn send(&self, frame: &WorkerFrame) -> Result<(), ClientError> {
        let text = serde_json::to_string(frame)?;
        self.out
            .send(Message::Text(text.into()))
            .map_err(|_| ClientError::Stream("the stream has ended".into()))
    }
}

impl StreamJobs {
    /// The next jobs pushed; `Err` once the stream has ended, saying why
    /// (the server's error, or the connection closing).
    pub async fn next(&mut self) -> Result<Vec<LeasedJob>, ClientError> {
        if let Some(batch) = self.jobs.recv().await {
            return Ok(batch);
        }
        Err((&mut self.ended)
            .await
            .unwrap_or_else(|_| ClientError::Stream("closed".into())))
    }
}

/// A lock whose holder never leaves its data half-changed, so a poisoned
/// one is still good.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn rand_key() -> [u8; 16] {
    let mut key = [0u8; 16];
    // The key only tells this handshake's answer from a cached one: any
    // bytes do if the system's random source fails.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key);
    key
}

/// RFC 6455's `Sec-WebSocket-Accept` for `key`.
fn accept_key(key: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{WEBSOCKET_GUID}").as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_key_is_rfc_6455s() {
        // RFC 6455, section 1.3's example.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
