//! An HTTP receiver on loopback for the endpoint tests: it answers from a
//! script and reports every request on a channel, so tests await arrivals
//! instead of sleeping; and the Standard Webhooks check a receiver makes.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine as _;
use serde_json::Value;
use tokio::sync::mpsc;

/// What a receiver got.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) body: Vec<u8>,
    pub(crate) at: Instant,
}

impl Received {
    pub(crate) fn id(&self) -> &str {
        &self.headers["webhook-id"]
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a test receiver")
    }
}

/// How a receiver answers one request.
#[derive(Clone)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: String,
    pub(crate) delay: Duration,
}

pub(crate) fn reply(status: u16) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: format!("{{\"status\":{status}}}"),
        delay: Duration::ZERO,
    }
}

/// An HTTP receiver on loopback: answers from its script (200 when it is
/// empty) and reports every request on a channel, so tests await arrivals
/// instead of sleeping.
pub(crate) struct Receiver {
    pub(crate) url: String,
    got: mpsc::UnboundedReceiver<Received>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    /// The most requests it was answering at once.
    most_in_hand: Arc<AtomicUsize>,
}

impl Receiver {
    pub(crate) async fn start() -> Receiver {
        let (tx, got) = mpsc::unbounded_channel();
        let script: Arc<Mutex<VecDeque<Reply>>> = Arc::default();
        let answers = script.clone();
        let most_in_hand = Arc::new(AtomicUsize::new(0));
        let (in_hand, most) = (Arc::new(AtomicUsize::new(0)), most_in_hand.clone());
        let app = axum::Router::new()
            .route(
                "/moved",
                axum::routing::post(|| async {
                    (
                        StatusCode::TEMPORARY_REDIRECT,
                        [("location", "http://169.254.169.254/latest/meta-data")],
                    )
                }),
            )
            .fallback(move |headers: HeaderMap, body: axum::body::Bytes| {
                let (tx, answers) = (tx.clone(), answers.clone());
                let (in_hand, most) = (in_hand.clone(), most.clone());
                async move {
                    most.fetch_max(in_hand.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                    let headers = headers
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.to_string(),
                                v.to_str().expect("a test receiver").to_owned(),
                            )
                        })
                        .collect();
                    let at = Instant::now();
                    let _ = tx.send(Received {
                        headers,
                        body: body.to_vec(),
                        at,
                    });
                    let r = answers
                        .lock()
                        .expect("a test receiver")
                        .pop_front()
                        .unwrap_or(reply(200));
                    tokio::time::sleep(r.delay).await;
                    in_hand.fetch_sub(1, Ordering::SeqCst);
                    let mut response = (
                        StatusCode::from_u16(r.status).expect("a test receiver"),
                        r.body,
                    )
                        .into_response();
                    for (k, v) in r.headers {
                        response
                            .headers_mut()
                            .insert(k, v.parse().expect("a test receiver"));
                    }
                    response
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a test receiver");
        let url = format!(
            "http://{}/hook",
            listener.local_addr().expect("a test receiver")
        );
        tokio::spawn(async move { axum::serve(listener, app).await.expect("a test receiver") });
        Receiver {
            url,
            got,
            script,
            most_in_hand,
        }
    }

    /// Receives `n` requests; their `webhook-id`s.
    pub(crate) async fn ids(&mut self, n: usize) -> Vec<String> {
        let mut ids = Vec::with_capacity(n);
        while ids.len() < n {
            ids.push(self.next().await.id().to_owned());
        }
        ids
    }

    /// Receives until every id of `wanted` came, adding each to `got`;
    /// how many came more than once.
    pub(crate) async fn until_all(
        &mut self,
        wanted: &HashSet<String>,
        got: &mut Vec<String>,
    ) -> usize {
        let mut unique: HashSet<String> = got.iter().cloned().collect();
        while !wanted.is_subset(&unique) {
            let id = self.next().await.id().to_owned();
            got.push(id.clone());
            unique.insert(id);
        }
        assert_eq!(&unique, wanted, "every message arrived, and nothing else");
        got.len() - unique.len()
    }

    /// The most requests it was answering at once so far.
    pub(crate) fn most_in_hand(&self) -> usize {
        self.most_in_hand.load(Ordering::SeqCst)
    }

    pub(crate) fn then(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script.lock().expect("a test receiver").extend(replies);
    }

    pub(crate) async fn next(&mut self) -> Received {
        tokio::time::timeout(Duration::from_secs(30), self.got.recv())
            .await
            .expect("a delivery within 30 s")
            .expect("a test receiver")
    }
}

/// The Standard Webhooks signatures a message carries that `secret` made.
pub(crate) fn signed_by(r: &Received, secret: &str) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").expect("a test receiver"))
        .expect("a test receiver");
    let signed = [
        r.id().as_bytes(),
        b".",
        r.headers["webhook-timestamp"].as_bytes(),
        b".",
        &r.body,
    ]
    .concat();
    let tag = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key),
        &signed,
    );
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    );
    r.headers["webhook-signature"]
        .split(' ')
        .any(|s| s == expected)
}
