//! Handlers: customers' code that Keel runs itself (docs/design.md,
//! "Handlers"). This service keeps handlers' versions (compiled and checked
//! at upload: JavaScript to QuickJS bytecode, modules against the ABI),
//! runs them in the sandbox for a queue's jobs and for test calls, and
//! reads and writes objects' state from outside. An attempt's state writes
//! and effects are buffered by its [`host`] and committed with the job's
//! completion (`HandlerStore::handler_commits`); its publishes and enqueues
//! are carried out after the commit by the effects' jobs ([`effects`]).

mod activity;
pub mod effects;
mod fetch;
mod host;
mod run;
mod state;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use keel_core::handler::state::ObjectRef;
use keel_core::handler::{
    Caps, HandlerKind, HandlerSettings, HandlerVersion, MAX_SOURCE_BYTES, NewVersion, Origin,
};
use keel_core::{Clock, Error, ErrorCode, HandlerName, Namespace, QueuePolicy};
use keel_sandbox::{Invocation, Prepared, Sandbox};
use keel_store::{Ack, HandlerCommit, HandlerStore, HandlerSummary};
use serde_json::value::RawValue;
use tokio::sync::Semaphore;

use crate::jobs::JobService;
use crate::outbound::Guard;
use crate::queues::QueueService;
use crate::topics::TopicService;

pub use self::activity::{Activity, Recent};
use self::host::{Collected, JobHost};
pub use self::run::failure_message;

/// How long a node trusts its copy of a handler's current version: a new
/// version reaches the other nodes' next jobs within this.
const CURRENT_FOR: Duration = Duration::from_secs(1);
/// Compiled handlers kept per node.
const PREPARED_KEPT: usize = 1024;

/// A handler's code as uploaded.
pub enum Code {
    Js(String),
    Wasm(Vec<u8>),
}

pub struct Upload {
    pub code: Code,
    pub settings: HandlerSettings,
}

/// What a test call did.
pub struct Invoked {
    pub version: u32,
    pub invocation: Invocation,
    /// The state writes it would have committed, in key order (`None`:
    /// a delete).
    pub writes: BTreeMap<String, Option<Box<RawValue>>>,
    /// The events and jobs it would have published and enqueued.
    pub effects: effects::Effects,
}

/// How a handler's job ends: a commit, or an ack of its failure.
pub enum Finished {
    Commit(Box<HandlerCommit>),
    Ack(Ack),
}

pub struct HandlerDeps {
    pub store: Arc<dyn HandlerStore>,
    pub clock: Arc<dyn Clock>,
    pub guard: Guard,
    pub caps: Caps,
    pub jobs: Arc<JobService>,
    pub topics: Arc<TopicService>,
    pub queues: Arc<QueueService>,
    pub connections: Arc<crate::connections::ConnectionService>,
}

/// A version ready to run: its compiled code and the origins it may call.
#[derive(Clone)]
struct Ready {
    prepared: Prepared,
    origins: Arc<[Origin]>,
}

/// A handler's current version as this node read it, and when.
type Current = (Arc<HandlerVersion>, Instant);

pub struct HandlerService {
    store: Arc<dyn HandlerStore>,
    clock: Arc<dyn Clock>,
    caps: Caps,
    jobs: Arc<JobService>,
    topics: Arc<TopicService>,
    queues: Arc<QueueService>,
    connections: Arc<crate::connections::ConnectionService>,
    client: reqwest::Client,
    guard: Guard,
    /// Made on first use: a node that runs no handler starts no engine.
    sandbox: OnceLock<Result<Sandbox, Error>>,
    prepared: Mutex<HashMap<(Namespace, HandlerName, u32), Ready>>,
    current: Mutex<HashMap<(Namespace, HandlerName), Current>>,
    /// Namespaces whose effects' queue has its policy (the effects worker
    /// works queues with one).
    effects_ready: Mutex<HashSet<Namespace>>,
    /// Invocations at once on this node: the sandbox's instance slots.
    slots: Arc<Semaphore>,
    ids: Mutex<keel_core::JobIdGenerator>,
    activity: activity::Activities,
}

impl HandlerService {
    pub fn new(deps: HandlerDeps) -> HandlerService {
        HandlerService {
            store: deps.store,
            clock: deps.clock,
            caps: deps.caps,
            jobs: deps.jobs,
            topics: deps.topics,
            queues: deps.queues,
            connections: deps.connections,
            client: deps.guard.client(false),
            guard: deps.guard,
            sandbox: OnceLock::new(),
            prepared: Mutex::default(),
            current: Mutex::default(),
            effects_ready: Mutex::default(),
            slots: Arc::new(Semaphore::new(deps.caps.instances as usize)),
            ids: Mutex::default(),
            activity: activity::Activities::default(),
        }
    }

    pub fn caps(&self) -> &Caps {
        &self.caps
    }

    fn sandbox(&self) -> Result<&Sandbox, Error> {
        self.sandbox
            .get_or_init(|| {
                Sandbox::new(self.caps).map_err(|e| {
                    Error::new(
                        ErrorCode::StorageUnavailable,
                        format!("handlers cannot run: {e}"),
                    )
                })
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Stores a new version (201) unless the upload is the current one
    /// (200): JavaScript compiled to bytecode, a module checked against the
    /// ABI; either refused with a 400 that names the error.
    pub async fn put(
        &self,
        namespace: &Namespace,
        name: &HandlerName,
        upload: Upload,
    ) -> Result<(HandlerVersion, bool), Error> {
        upload.settings.check(&self.caps)?;
        let sandbox = self.sandbox()?.clone();
        let refused = |e: keel_sandbox::Refused| Error::new(ErrorCode::InvalidDefinition, e.0);
        let (kind, source, artifact) = match upload.code {
            Code::Js(source) => {
                if source.len() > MAX_SOURCE_BYTES {
                    return Err(Error::new(
                        ErrorCode::PayloadTooLarge,
                        format!(
                            "the source is {} bytes; at most {MAX_SOURCE_BYTES}",
                            source.len()
                        ),
                    ));
                }
                let bytecode = sandbox.compile_js(&source).await.map_err(refused)?;
                (HandlerKind::Js, Some(source), bytecode)
            }
            Code::Wasm(module) => {
                let module = tokio::task::spawn_blocking(move || {
                    sandbox.prepare_wasm(&module).map(|_| module)
                })
                .await
                .map_err(|e| Error::internal(format!("the compile task failed: {e}")))?
                .map_err(refused)?;
                (HandlerKind::Wasm, None, module)
            }
        };
        let settings = serde_json::to_vec(&upload.settings)
            .map_err(|e| Error::internal(format!("handler settings: {e}")))?;
        let code: &[u8] = source.as_deref().map_or(&artifact, str::as_bytes);
        let hash = sha256_hex(&[kind.as_str().as_bytes(), code, &settings]);
        let new = NewVersion {
            kind,
            hash,
            source,
            artifact,
            settings: upload.settings,
        };
        let put = self
            .store
            .handler_put(namespace, name, new, self.clock.now())
            .await?;
        self.forget(namespace, name);
        self.effects_queue(namespace).await?;
        self.own_queue(namespace, name).await?;
        Ok(put)
    }

    pub async fn get(
        &self,
        namespace: &Namespace,
        name: &HandlerName,
        version: Option<u32>,
    ) -> Result<HandlerVersion, Error> {
        self.store.handler_get(namespace, name, version).await
    }

    pub async fn list(&self, namespace: &Namespace) -> Result<Vec<HandlerSummary>, Error> {
        self.store.handlers_list(namespace).await
    }

    pub async fn delete(&self, namespace: &Namespace, name: &HandlerName) -> Result<(), Error> {
        self.store.handler_delete(namespace, name).await?;
        self.forget(namespace, name);
        Ok(())
    }

    /// Replaces the handler's secrets: `{{secrets.NAME}}` in its outbound
    /// calls' headers, filled in host-side; never readable back.
    pub async fn put_secrets(
        &self,
        namespace: &Namespace,
        name: &HandlerName,
        secrets: BTreeMap<String, String>,
    ) -> Result<(), Error> {
        for (k, v) in &secrets {
            let name_ok = !k.is_empty()
                && k.len() <= 128
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !name_ok || v.len() > 8192 {
                return Err(Error::invalid(
                    "secret names are 1 to 128 of A-Z, a-z, 0-9 and '_', values at most 8192 bytes",
                ));
            }
        }
        if secrets.len() > 64 {
            return Err(Error::invalid("at most 64 secrets per handler"));
        }
        self.store
            .handler_secrets_put(namespace, name, &secrets, self.clock.now())
            .await
    }

    /// Sets the policy of the namespace's effects' queue once per node.
    async fn effects_queue(&self, namespace: &Namespace) -> Result<(), Error> {
        if lock(&self.effects_ready).contains(namespace) {
            return Ok(());
        }
        let queue = effects::queue(namespace)?;
        self.queues
            .set_own_policy(&queue, QueuePolicy::default())
            .await?;
        lock(&self.effects_ready).insert(namespace.clone());
        self.queues.policy_changed.notify_waiters();
        Ok(())
    }

    /// The handler's own queue, `keel.handler.{name}`, where subscriptions
    /// and workflow steps that target it put their jobs.
    async fn own_queue(&self, namespace: &Namespace, name: &HandlerName) -> Result<(), Error> {
        let queue = crate::subscriptions::handler_queue(namespace, name)?;
        if self.queues.policy(&queue).await?.handler.as_ref() == Some(name) {
            return Ok(());
        }
        let policy = QueuePolicy {
            handler: Some(name.clone()),
            ..QueuePolicy::default()
        };
        self.queues.set_own_policy(&queue, policy).await?;
        self.queues.policy_changed.notify_waiters();
        Ok(())
    }

    fn forget(&self, namespace: &Namespace, name: &HandlerName) {
        lock(&self.current).remove(&(namespace.clone(), name.clone()));
    }

    /// The handler's current version, as this node last read it (at most
    /// `CURRENT_FOR` ago).
    async fn current(
        &self,
        namespace: &Namespace,
        name: &HandlerName,
    ) -> Result<Arc<HandlerVersion>, Error> {
        let key = (namespace.clone(), name.clone());
        if let Some((v, at)) = lock(&self.current).get(&key)
            && at.elapsed() < CURRENT_FOR
        {
            return Ok(v.clone());
        }
        let v = Arc::new(self.store.handler_get(namespace, name, None).await?);
        lock(&self.current).insert(key, (v.clone(), Instant::now()));
        Ok(v)
    }

    async fn ready(&self, v: &HandlerVersion) -> Result<Ready, Error> {
        let key = (v.namespace.clone(), v.name.clone(), v.version);
        if let Some(ready) = lock(&self.prepared).get(&key) {
            return Ok(ready.clone());
        }
        let origins = v.settings.check(&self.caps)?.into();
        let sandbox = self.sandbox()?.clone();
        let prepared = match v.kind {
            HandlerKind::Js => sandbox.prepare_js(&v.artifact).await,
            HandlerKind::Wasm => {
                let module = v.artifact.clone();
                tokio::task::spawn_blocking(move || sandbox.prepare_wasm(&module))
                    .await
                    .map_err(|e| Error::internal(format!("the compile task failed: {e}")))?
            }
        }
        .map_err(|e| Error::internal(format!("handler {} v{}: {e}", v.name, v.version)))?;
        let ready = Ready { prepared, origins };
        let mut cache = lock(&self.prepared);
        if cache.len() >= PREPARED_KEPT {
            cache.clear();
        }
        cache.insert(key, ready.clone());
        Ok(ready)
    }

    /// Runs `version` once on `input` with a host over `object`'s state.
    async fn run(
        &self,
        version: &HandlerVersion,
        object: Option<ObjectRef>,
        job_id: String,
        input: &[u8],
    ) -> Result<(Invocation, Collected), Error> {
        let Ready { prepared, origins } = self.ready(version).await?;
        let collected = Arc::new(Mutex::new(Collected::default()));
        let host = JobHost {
            store: self.store.clone(),
            clock: self.clock.clone(),
            fetch: fetch::Fetcher {
                client: self.client.clone(),
                guard: self.guard,
                origins,
                response_bytes: version.settings.limits.response_bytes,
                connections: (self.connections.clone(), version.namespace.clone()),
            },
            namespace: version.namespace.clone(),
            handler: version.name.clone(),
            object,
            shared: version.settings.shared,
            job_id: job_id.clone(),
            collected: collected.clone(),
        };
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| Error::internal("the handler slots are closed"))?;
        let sandbox = self.sandbox()?;
        let invocation = sandbox
            .invoke(&prepared, input, version.settings.limits, Box::new(host))
            .await;
        let collected = std::mem::take(&mut *lock(&collected));
        let peak = self.activity.record(
            &version.namespace,
            &version.name,
            (self.clock.now(), job_id, version.version),
            &invocation,
        );
        crate::metrics::handler_invoked(&version.namespace, &version.name, &invocation, peak);
        Ok((invocation, collected))
    }

    /// What this node's invocations of the handler did.
    pub fn activity(&self, namespace: &Namespace, name: &HandlerName) -> Activity {
        self.activity.get(namespace, name)
    }

    pub(crate) fn now(&self) -> keel_core::Timestamp {
        self.clock.now()
    }

    pub(crate) fn jobs(&self) -> &Arc<JobService> {
        &self.jobs
    }

    pub(crate) fn queues(&self) -> &Arc<QueueService> {
        &self.queues
    }

    pub(crate) fn topics(&self) -> &Arc<TopicService> {
        &self.topics
    }
}

pub(crate) fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part);
    }
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
