//! Webhook ingestion: a provider's signed request checked against its
//! source's recipe (`keel_core::source`) by the one HMAC verifier here, then
//! published as an event once durable. A request that fails the check
//! stores nothing; the provider's delivery id becomes the event id, so its
//! retries are duplicates within the topic's dedup window. Sources are
//! kept in memory for a second after they are read (changes made through
//! this node apply at once, on other nodes within that second).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use keel_core::source::{Encoding, Layout, Part, Recipe, Scheme, SourceSpec, TimestampAt};
use keel_core::workflow::expr;
use keel_core::{Clock, Error, ErrorCode, Namespace, NewEvent, Timestamp};
use keel_store::{Published, Source, SourceStore};
use ring::hmac;
use serde_json::{Value, json};

use crate::metrics;
use crate::topics::TopicService;

/// What a verified request came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Ingested {
    Published(Published),
    /// Slack's `url_verification`: answer the challenge, store nothing.
    Challenge(String),
}

/// A request as the verifier sees it: header names in lower case.
pub struct HookRequest {
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// How long a source read from the store is trusted.
const SOURCE_REFRESH: Duration = Duration::from_secs(1);

type SourceCache = HashMap<(Namespace, String), (Arc<Source>, Instant)>;

pub struct SourceService {
    store: Arc<dyn SourceStore>,
    clock: Arc<dyn Clock>,
    /// Publishes what is ingested, under the namespace's quotas.
    topics: Arc<TopicService>,
    cache: Mutex<SourceCache>,
}

impl SourceService {
    pub(crate) fn new(
        store: Arc<dyn SourceStore>,
        clock: Arc<dyn Clock>,
        topics: Arc<TopicService>,
    ) -> Self {
        SourceService {
            store,
            clock,
            topics,
            cache: Mutex::default(),
        }
    }

    pub async fn get(&self, namespace: &Namespace, name: &str) -> Result<Source, Error> {
        self.store.source_get(namespace, name).await
    }

    pub async fn list(&self, namespace: &Namespace) -> Result<Vec<Source>, Error> {
        self.store.sources_list(namespace).await
    }

    /// Creates or replaces a source; true when new.
    pub async fn put(
        &self,
        namespace: &Namespace,
        name: &str,
        spec: &SourceSpec,
    ) -> Result<(Source, bool), Error> {
        spec.check()?;
        let answer = self
            .store
            .source_put(namespace, name, spec, self.clock.now())
            .await;
        self.forget(namespace, name);
        answer
    }

    pub async fn delete(&self, namespace: &Namespace, name: &str) -> Result<(), Error> {
        let answer = self.store.source_delete(namespace, name).await;
        self.forget(namespace, name);
        answer
    }

    fn forget(&self, namespace: &Namespace, name: &str) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.remove(&(namespace.clone(), name.to_owned()));
    }

    /// The source, from memory when read less than [`SOURCE_REFRESH`] ago.
    async fn source(&self, namespace: &Namespace, name: &str) -> Result<Arc<Source>, Error> {
        let key = (namespace.clone(), name.to_owned());
        {
            let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((source, at)) = cache.get(&key)
                && at.elapsed() < SOURCE_REFRESH
            {
                return Ok(source.clone());
            }
        }
        let source = Arc::new(self.store.source_get(namespace, name).await?);
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache.insert(key, (source.clone(), Instant::now()));
        Ok(source)
    }

    /// Verifies `request` for source `name` and publishes it to the
    /// source's topic, under the namespace's rate and byte quotas (429 and
    /// nothing stored when they are spent); answers once the event is
    /// durable.
    pub async fn ingest(
        &self,
        namespace: &Namespace,
        name: &str,
        request: HookRequest,
    ) -> Result<Ingested, Error> {
        let source = self.source(namespace, name).await?;
        let now = self.clock.now();
        let origin = format!("/v1/hooks/{namespace}/{name}");
        let outcome = accept(&self.topics, &origin, &source.spec, &request, now);
        let event = match outcome {
            Ok(Accepted::Event(event)) => event,
            Ok(Accepted::Challenge(challenge)) => {
                metrics::webhook_received(namespace, name, "challenge");
                return Ok(Ingested::Challenge(challenge));
            }
            Err(e) => {
                let label = if e.code == ErrorCode::Unauthenticated {
                    "rejected"
                } else {
                    "invalid"
                };
                metrics::webhook_received(namespace, name, label);
                return Err(e);
            }
        };
        let published = self
            .topics
            .publish(namespace, &source.spec.topic, vec![*event])
            .await?
            .pop()
            .ok_or_else(|| Error::internal("a publish of one event answered none"))?;
        let label = if published.duplicate {
            "duplicate"
        } else {
            "accepted"
        };
        metrics::webhook_received(namespace, name, label);
        Ok(Ingested::Published(published))
    }
}

/// The event a request makes (or Slack's challenge), once its signature is
/// checked; `origin` is its CloudEvents `source`.
fn accept(
    topics: &TopicService,
    origin: &str,
    spec: &SourceSpec,
    request: &HookRequest,
    now: Timestamp,
) -> Result<Accepted, Error> {
    let recipe = spec.verify.recipe();
    check_signature(spec, &recipe, request, now)?;
    let body: Value = serde_json::from_slice(&request.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&request.body).into_owned()));
    if spec.verify.scheme == Scheme::Slack && body["type"] == "url_verification" {
        let challenge = body["challenge"].as_str().unwrap_or_default().to_owned();
        return Ok(Accepted::Challenge(challenge));
    }
    let context = json!({"request": {"headers": request.headers, "body": body}});
    let pick = |field: &str, own: &Option<String>, default: Option<&str>| {
        let Some(source) = own.as_deref().or(default) else {
            return Ok(None);
        };
        let value = expr::eval(source, &context)
            .map_err(|e| Error::invalid(format!("the source's {field} expression failed: {e}")))?;
        Ok::<_, Error>(match value {
            Value::Null => None,
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => Some(s),
            other => Some(other.to_string()),
        })
    };
    let id = pick("id", &spec.id, recipe.id)?;
    let kind = pick("type", &spec.kind, recipe.kind)?;
    let key = pick("key", &spec.key, None)?;
    let data = match body {
        Value::String(text) => Value::String(text).to_string(),
        _ => String::from_utf8_lossy(&request.body).into_owned(),
    };
    Ok(Accepted::Event(Box::new(NewEvent {
        generated_id: id.is_none(),
        id: id.unwrap_or_else(|| topics.new_id()),
        kind: kind.unwrap_or_default(),
        source: origin.to_owned(),
        key,
        time: now,
        data,
        headers: BTreeMap::new(),
    })))
}

enum Accepted {
    Event(Box<NewEvent>),
    Challenge(String),
}

fn unauthenticated(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::Unauthenticated, message)
}

/// Checks the request's signatures against the recipe: at least one must be
/// the HMAC-SHA256 of the signed parts under the secret (constant-time), and
/// the timestamp, where the scheme has one, within the tolerance.
fn check_signature(
    spec: &SourceSpec,
    recipe: &Recipe,
    request: &HookRequest,
    now: Timestamp,
) -> Result<(), Error> {
    let header = request
        .headers
        .get(&recipe.header)
        .ok_or_else(|| unauthenticated(format!("no {} header", recipe.header)))?;
    let (signatures, pair_timestamp) = split(&recipe.layout, header);
    let timestamp = match recipe.timestamp {
        None => None,
        Some(at) => {
            let text = match at {
                TimestampAt::Header(name) => request.headers.get(name).map(String::as_str),
                TimestampAt::Pair => pair_timestamp,
            }
            .ok_or_else(|| unauthenticated("the signed timestamp is missing"))?;
            let seconds: i64 = text
                .trim()
                .parse()
                .map_err(|_| unauthenticated("the signed timestamp is not a number"))?;
            let skew = now
                .as_millis()
                .saturating_sub(seconds.saturating_mul(1000))
                .unsigned_abs();
            if skew > spec.verify.tolerance_ms {
                return Err(unauthenticated(format!(
                    "the signed timestamp is {} s from now, more than the source's tolerance",
                    skew / 1000
                )));
            }
            Some(text.trim())
        }
    };
    let secret = keel_core::source::secret_bytes(&spec.verify)
        .ok_or_else(|| Error::internal("the source's secret does not decode"))?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, &secret);
    let mut signed = Vec::with_capacity(request.body.len() + 64);
    for part in recipe.signed {
        match part {
            Part::Text(text) => signed.extend_from_slice(text.as_bytes()),
            Part::Header(name) => {
                let value = request
                    .headers
                    .get(*name)
                    .ok_or_else(|| unauthenticated(format!("no {name} header")))?;
                signed.extend_from_slice(value.as_bytes());
            }
            Part::Timestamp => signed.extend_from_slice(timestamp.unwrap_or_default().as_bytes()),
            Part::Body => signed.extend_from_slice(&request.body),
        }
    }
    let valid = signatures.iter().any(|sig| {
        decode(recipe.encoding, sig)
            .is_some_and(|digest| hmac::verify(&key, &signed, &digest).is_ok())
    });
    if valid {
        Ok(())
    } else {
        Err(unauthenticated(
            "the signature does not match the body and the source's secret",
        ))
    }
}

/// The digests a signature header holds, and the timestamp among its pairs.
fn split<'a>(layout: &Layout, header: &'a str) -> (Vec<&'a str>, Option<&'a str>) {
    match layout {
        Layout::Single { prefix } => (
            header
                .trim()
                .strip_prefix(prefix.as_str())
                .into_iter()
                .collect(),
            None,
        ),
        Layout::Versioned { version } => (
            header
                .split_whitespace()
                .filter_map(|item| item.split_once(','))
                .filter(|(v, _)| v == version)
                .map(|(_, sig)| sig)
                .collect(),
            None,
        ),
        Layout::Pairs {
            timestamp,
            signature,
        } => {
            let pairs: Vec<(&str, &str)> = header
                .split(',')
                .filter_map(|pair| pair.trim().split_once('='))
                .collect();
            let stamp = pairs.iter().find(|(k, _)| k == timestamp).map(|(_, v)| *v);
            let sigs = pairs
                .iter()
                .filter(|(k, _)| k == signature)
                .map(|(_, v)| *v)
                .collect();
            (sigs, stamp)
        }
    }
}

fn decode(encoding: Encoding, text: &str) -> Option<Vec<u8>> {
    match encoding {
        Encoding::Base64 => base64::engine::general_purpose::STANDARD.decode(text).ok(),
        Encoding::Hex => {
            let text = text.as_bytes();
            if !text.len().is_multiple_of(2) {
                return None;
            }
            text.chunks(2)
                .map(|pair| {
                    let digit = |c: u8| (c as char).to_digit(16);
                    Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::source::Verify;
    use proptest::prelude::*;

    fn spec(scheme: Scheme) -> SourceSpec {
        let secret = match scheme {
            Scheme::StandardWebhooks => "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=".to_owned(),
            _ => "secret".to_owned(),
        };
        SourceSpec {
            topic: keel_core::TopicName::new("t").unwrap_or_else(|_| unreachable!()),
            verify: Verify {
                scheme,
                secret,
                tolerance_ms: 300_000,
                header: Some("x-signature".into()),
                encoding: None,
                prefix: Some("sha256=".into()),
            },
            key: None,
            kind: None,
            id: None,
        }
    }

    fn scheme() -> impl Strategy<Value = Scheme> {
        prop_oneof![
            Just(Scheme::StandardWebhooks),
            Just(Scheme::Stripe),
            Just(Scheme::Github),
            Just(Scheme::Slack),
            Just(Scheme::Shopify),
            Just(Scheme::Hmac),
        ]
    }

    /// Found by the property below: a signed timestamp of -2^63 seconds
    /// overflowed the skew's subtraction (a panic; in a release build, a
    /// wrapped skew).
    #[test]
    fn a_timestamp_at_the_end_of_i64_is_refused() {
        let spec = spec(Scheme::Slack);
        let recipe = spec.verify.recipe();
        let headers = BTreeMap::from([
            (recipe.header.to_string(), "v0=00".to_owned()),
            ("x-slack-request-timestamp".to_owned(), i64::MIN.to_string()),
        ]);
        let request = HookRequest {
            headers,
            body: Vec::new(),
        };
        let checked = check_signature(
            &spec,
            &recipe,
            &request,
            Timestamp::from_millis(1_800_000_000_000),
        );
        assert_eq!(checked.map_err(|e| e.code), Err(ErrorCode::Unauthenticated));
    }

    proptest! {
        /// Whatever a sender puts in the headers a scheme reads, the check
        /// refuses it (no signature made with the secret) and never panics.
        #[test]
        fn made_up_signatures_are_refused(
            scheme in scheme(),
            value in "[ -~]{0,120}",
            stamp in prop_oneof![any::<i64>().prop_map(|n| n.to_string()), "[ -~]{0,20}"],
            body in prop::collection::vec(any::<u8>(), 0..200),
        ) {
            let spec = spec(scheme);
            let recipe = spec.verify.recipe();
            let mut headers = BTreeMap::new();
            for name in [
                recipe.header.to_string(),
                "webhook-timestamp".into(),
                "webhook-id".into(),
                "x-slack-request-timestamp".into(),
            ] {
                headers.insert(name, value.clone());
            }
            headers.insert("webhook-timestamp".into(), stamp.clone());
            headers.insert("x-slack-request-timestamp".into(), stamp);
            let request = HookRequest { headers, body };
            let checked = check_signature(&spec, &recipe, &request, Timestamp::from_millis(1_800_000_000_000));
            prop_assert_eq!(checked.map_err(|e| e.code), Err(ErrorCode::Unauthenticated));
        }
    }
}
