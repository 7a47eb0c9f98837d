//! One attempt's host: what its handler's calls reach. Reads see the
//! object's committed state under the attempt's own buffered writes; writes,
//! publishes and enqueues are only collected here, to be committed with the
//! job's completion (or dropped with a failed attempt).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use keel_core::handler::state::{self, MAX_BATCH, MAX_LIST, ObjectRef, StateOp, StateQuery};
use keel_core::{Clock, HandlerName, Namespace};
use keel_sandbox::{Host, Op};
use keel_store::HandlerStore;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::effects::Effects;
use super::fetch::Fetcher;

/// What an attempt collected: its state writes by key (`None`: delete)
/// and its effects.
#[derive(Default)]
pub(crate) struct Collected {
    pub(crate) writes: BTreeMap<String, Option<Box<RawValue>>>,
    pub(crate) effects: Effects,
}

pub(super) struct JobHost {
    pub(super) store: Arc<dyn HandlerStore>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) fetch: Fetcher,
    pub(super) namespace: Namespace,
    pub(super) handler: HandlerName,
    pub(super) object: Option<ObjectRef>,
    pub(super) shared: bool,
    pub(super) job_id: String,
    pub(super) collected: Arc<Mutex<Collected>>,
}

fn parse<'a, T: Deserialize<'a>>(request: &'a [u8]) -> Result<T, String> {
    serde_json::from_slice(request).map_err(|e| format!("a malformed host call: {e}"))
}

fn to_value(raw: &RawValue) -> Result<Value, String> {
    serde_json::from_str(raw.get()).map_err(|e| e.to_string())
}

#[derive(Deserialize)]
struct Key {
    key: String,
}

#[derive(Deserialize)]
struct Keys {
    keys: Vec<String>,
}

#[derive(Deserialize)]
struct Put {
    key: String,
    value: Box<RawValue>,
}

#[derive(Deserialize, Default)]
struct List {
    prefix: Option<String>,
    start: Option<String>,
    end: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

impl JobHost {
    fn collected(&self) -> std::sync::MutexGuard<'_, Collected> {
        self.collected.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn object(&self) -> Result<&ObjectRef, String> {
        self.object
            .as_ref()
            .ok_or_else(|| "this job names no object: enqueue it with \"object\": {\"type\", \"key\"} to keep state".to_owned())
    }

    /// The values of `keys`: the attempt's own writes first, then the store.
    async fn read(&self, keys: Vec<String>) -> Result<BTreeMap<String, Value>, String> {
        let object = self.object()?.clone();
        let mut found = BTreeMap::new();
        let mut unread = Vec::new();
        {
            let collected = self.collected();
            for key in keys {
                state::check_key(&key).map_err(|e| e.message)?;
                match collected.writes.get(&key) {
                    Some(Some(v)) => {
                        found.insert(key, to_value(v)?);
                    }
                    Some(None) => {}
                    None => unread.push(key),
                }
            }
        }
        if !unread.is_empty() {
            let stored = self
                .store
                .state_get(&self.namespace, &object, &unread)
                .await
                .map_err(|e| e.message)?;
            for entry in stored {
                found.insert(entry.key, to_value(&entry.value)?);
            }
        }
        Ok(found)
    }

    fn write(&self, key: String, value: Option<Box<RawValue>>) -> Result<Value, String> {
        self.object()?;
        if self.shared {
            return Err("a shared handler reads state; it cannot write it".into());
        }
        StateOp {
            key: key.clone(),
            value: value.clone(),
            if_version: None,
        }
        .check()
        .map_err(|e| e.message)?;
        let mut collected = self.collected();
        if !collected.writes.contains_key(&key) && collected.writes.len() >= MAX_BATCH {
            return Err(format!("an attempt writes at most {MAX_BATCH} keys"));
        }
        collected.writes.insert(key, value);
        Ok(Value::Null)
    }

    /// A page of the object's entries in key order, the attempt's writes
    /// merged in.
    async fn list(&self, list: List) -> Result<Value, String> {
        let object = self.object()?.clone();
        let limit = list.limit.unwrap_or(100).clamp(1, MAX_LIST);
        let query = StateQuery {
            prefix: list.prefix,
            start: list.start,
            end: list.end,
            after: list.cursor,
            limit,
        };
        let overlay: Vec<(String, Option<Box<RawValue>>)> = self
            .collected()
            .writes
            .iter()
            .filter(|(k, _)| query.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // Enough stored entries that deletions here cannot shorten the page.
        let stored = self
            .store
            .state_list(
                &self.namespace,
                &object,
                &StateQuery {
                    limit: limit + overlay.len() as u32,
                    ..query.clone()
                },
            )
            .await
            .map_err(|e| e.message)?;
        let mut merged: BTreeMap<String, Box<RawValue>> =
            stored.into_iter().map(|e| (e.key, e.value)).collect();
        for (key, value) in overlay {
            match value {
                Some(v) => merged.insert(key, v),
                None => merged.remove(&key),
            };
        }
        let items: Vec<Value> = merged
            .into_iter()
            .take(limit as usize)
            .map(|(key, value)| Ok(json!({ "key": key, "value": to_value(&value)? })))
            .collect::<Result<_, String>>()?;
        let cursor = (items.len() == limit as usize)
            .then(|| {
                items
                    .last()
                    .and_then(|i| i["key"].as_str().map(str::to_owned))
            })
            .flatten();
        Ok(json!({ "items": items, "cursor": cursor }))
    }
}

#[async_trait::async_trait]
impl Host for JobHost {
    async fn call(&mut self, op: Op, request: &[u8]) -> Result<Value, String> {
        match op {
            Op::StateGet => {
                let Key { key } = parse(request)?;
                Ok(self
                    .read(vec![key.clone()])
                    .await?
                    .remove(&key)
                    .unwrap_or(Value::Null))
            }
            Op::StateGetMany => {
                let Keys { keys } = parse(request)?;
                if keys.len() > MAX_BATCH {
                    return Err(format!("getMany reads at most {MAX_BATCH} keys at once"));
                }
                Ok(json!(self.read(keys).await?))
            }
            Op::StatePut => {
                let Put { key, value } = parse(request)?;
                self.write(key, Some(value))
            }
            Op::StateDelete => {
                let Key { key } = parse(request)?;
                self.write(key, None)
            }
            Op::StateList => self.list(parse(request)?).await,
            Op::Fetch => {
                let secrets = if request.windows(10).any(|w| w == b"{{secrets.") {
                    self.store
                        .handler_secrets(&self.namespace, &self.handler)
                        .await
                        .map_err(|e| e.message)?
                } else {
                    BTreeMap::new()
                };
                self.fetch.fetch(parse(request)?, &secrets).await
            }
            Op::Publish => {
                let id = self.job_id.clone();
                self.collected().effects.publish(&id, parse(request)?)
            }
            Op::Enqueue => {
                let id = self.job_id.clone();
                self.collected().effects.enqueue(&id, parse(request)?)
            }
            Op::Clock => Ok(json!(self.now_ms())),
            Op::Random => {
                #[derive(Deserialize)]
                struct Bytes {
                    bytes: usize,
                }
                let Bytes { bytes } = parse(request)?;
                if bytes > 1024 {
                    return Err("at most 1024 random bytes at once".into());
                }
                Ok(json!(
                    (0..bytes)
                        .map(|_| format!("{:02x}", fastrand::u8(..)))
                        .collect::<String>()
                ))
            }
            Op::Log => Ok(Value::Null),
        }
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().as_millis()
    }
}
