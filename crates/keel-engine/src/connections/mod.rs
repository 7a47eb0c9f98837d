//! OAuth2 connections (docs/connections.md): integrations, the connect
//! dance (a session, the provider's consent page, the callback), and
//! connections whose tokens Keel keeps fresh and adds to calls made "as"
//! them. Tokens are sealed ([`keyring`]) before they reach the store and
//! opened only to go in a request's `Authorization` header, to an origin
//! of the integration's `api_base`: no API answer, log line, handler or
//! step ever holds one.
//!
//! **One refresh at a time, across every node.** A refresh is a job on
//! the namespace's `keel.connections` queue whose idempotency key names
//! the connection and the version it read (`refresh/{name}/{created}/{version}`):
//! however many callers and nodes ask, one job exists per version, and
//! it writes its tokens by compare-and-set on that version, rotated
//! refresh token and new access token in one write. Callers that need
//! the fresh token wait for the version to move. A refresh the provider
//! refuses with `invalid_grant` reads the connection once more (another
//! writer may have moved it); if not, the connection turns
//! `needs_reauth` and `connection.needs_reauth` is published: a dead
//! connection is never silent.

mod calls;
mod connect;
pub mod keyring;
mod oauth;
mod refresh;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use keel_core::connection::{DEFAULT_TOPIC, IntegrationSpec};
use keel_core::{
    Clock, ConnectionName, Error, ErrorCode, IntegrationName, Namespace, NewEvent, TopicName,
};
use keel_store::{Connection, ConnectionStore, Integration, Reseal, SealedRef};
use ring::rand::SystemRandom;
use serde_json::json;
use tokio::sync::Notify;

pub use connect::{Callback, Connected};
pub use keyring::Keyring;
pub use refresh::{REFRESH_QUEUE, refresh_queue};

use crate::jobs::JobService;
use crate::outbound::Guard;
use crate::queues::QueueService;
use crate::topics::TopicService;

pub struct ConnectionService {
    store: Arc<dyn ConnectionStore>,
    keyring: Option<Arc<Keyring>>,
    clock: Arc<dyn Clock>,
    client: reqwest::Client,
    guard: Guard,
    jobs: Arc<JobService>,
    queues: Arc<QueueService>,
    topics: Arc<TopicService>,
    public_url: Option<String>,
    random: SystemRandom,
    /// Namespaces whose refresh queue has its policy on this node.
    queued: Mutex<HashSet<Namespace>>,
    /// Fired when a refresh queue may have been made.
    pub(crate) queues_woken: Notify,
}

pub(crate) struct ConnectionDeps {
    pub(crate) store: Arc<dyn ConnectionStore>,
    pub(crate) keyring: Option<Arc<Keyring>>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) guard: Guard,
    pub(crate) jobs: Arc<JobService>,
    pub(crate) queues: Arc<QueueService>,
    pub(crate) topics: Arc<TopicService>,
    pub(crate) public_url: Option<String>,
}

impl ConnectionService {
    pub(crate) fn new(deps: ConnectionDeps) -> Self {
        ConnectionService {
            client: deps.guard.client(false),
            store: deps.store,
            keyring: deps.keyring,
            clock: deps.clock,
            guard: deps.guard,
            jobs: deps.jobs,
            queues: deps.queues,
            topics: deps.topics,
            public_url: deps.public_url,
            random: SystemRandom::new(),
            queued: Mutex::new(HashSet::new()),
            queues_woken: Notify::new(),
        }
    }

    pub(crate) fn jobs(&self) -> &Arc<JobService> {
        &self.jobs
    }

    pub(crate) fn queues(&self) -> &Arc<QueueService> {
        &self.queues
    }

    fn keys(&self) -> Result<&Arc<Keyring>, Error> {
        self.keyring.as_ref().ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidState,
                "this server holds no keys to seal tokens with: start it with --keys-file \
                 (on PostgreSQL, the same file on every node)",
            )
        })
    }

    pub async fn put_integration(
        &self,
        namespace: &Namespace,
        name: &IntegrationName,
        mut spec: IntegrationSpec,
    ) -> Result<(Integration, bool), Error> {
        let keys = self.keys()?;
        let stored = match self.store.integration_get(namespace, name).await {
            Ok(stored) => Some(stored),
            Err(e) if e.code == ErrorCode::NotFound => None,
            Err(e) => return Err(e),
        };
        spec.check(stored.is_some())?;
        let client_secret = match (spec.client_secret.take(), stored) {
            (Some(secret), _) => keys.seal(
                &SealedRef::ClientSecret {
                    namespace: namespace.clone(),
                    integration: name.clone(),
                },
                &secret,
            )?,
            (None, Some(stored)) => stored.client_secret,
            (None, None) => return Err(Error::invalid("client_secret is required")),
        };
        let now = self.clock.now();
        let integration = Integration {
            namespace: namespace.clone(),
            name: name.clone(),
            spec,
            client_secret,
            created_at: now,
            updated_at: now,
        };
        self.store.integration_put(&integration, now).await
    }

    pub async fn integration(
        &self,
        namespace: &Namespace,
        name: &IntegrationName,
    ) -> Result<Integration, Error> {
        self.store.integration_get(namespace, name).await
    }

    pub async fn integrations(&self, namespace: &Namespace) -> Result<Vec<Integration>, Error> {
        self.store.integrations_list(namespace).await
    }

    pub async fn delete_integration(
        &self,
        namespace: &Namespace,
        name: &IntegrationName,
    ) -> Result<(), Error> {
        self.store.integration_delete(namespace, name).await
    }

    pub async fn connection(
        &self,
        namespace: &Namespace,
        name: &ConnectionName,
    ) -> Result<Connection, Error> {
        self.store.connection_get(namespace, name).await
    }

    pub async fn connections(&self, namespace: &Namespace) -> Result<Vec<Connection>, Error> {
        self.store.connections_list(namespace).await
    }

    pub async fn delete_connection(
        &self,
        namespace: &Namespace,
        name: &ConnectionName,
    ) -> Result<(), Error> {
        let gone = self.store.connection_delete(namespace, name).await?;
        if let Ok(integration) = self
            .store
            .integration_get(namespace, &gone.integration)
            .await
        {
            self.publish(&integration, &gone, "connection.deleted")
                .await;
        }
        Ok(())
    }

    pub(super) async fn publish(
        &self,
        integration: &Integration,
        connection: &Connection,
        kind: &str,
    ) {
        let topic = integration
            .spec
            .topic
            .clone()
            .or_else(|| TopicName::new(DEFAULT_TOPIC).ok());
        let Some(topic) = topic else {
            return;
        };
        let namespace = &connection.namespace;
        let event = NewEvent {
            id: format!("{kind}/{}/{}", connection.name, connection.version),
            generated_id: false,
            kind: kind.to_owned(),
            source: "keel".to_owned(),
            key: Some(connection.name.to_string()),
            time: self.clock.now(),
            data: json!({
                "connection": connection.name,
                "integration": connection.integration,
                "status": connection.tokens.status,
                "version": connection.version,
                "error": connection.tokens.error,
            })
            .to_string(),
            headers: BTreeMap::new(),
        };
        let published = match self.topics.ensure(namespace, &topic).await {
            Ok(()) => self
                .topics
                .publish(namespace, &topic, vec![event])
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = published {
            tracing::warn!(%namespace, connection = %connection.name, error = %e,
                "a connection's {kind} event was refused");
        }
    }

    /// Opens every sealed value and seals it again with a new key, in one
    /// store transaction; the new key's id and how many values.
    pub async fn rotate_keys(&self) -> Result<(u32, u64), Error> {
        let keys = self.keys()?.clone();
        let active = keys.rotate()?;
        let reseal: Reseal = Arc::new(move |at: &SealedRef, sealed: &str| {
            keys.seal(at, &keys.open_value(at, sealed)?)
        });
        let count = self.store.sealed_rewrite(reseal).await?;
        tracing::info!(
            active,
            values = count,
            "connection secrets re-sealed with a new key"
        );
        Ok((active, count))
    }
}

fn client_of<'a>(integration: &'a Integration, secret: &'a str) -> oauth::Client<'a> {
    oauth::Client {
        id: &integration.spec.client_id,
        secret,
        auth: integration.spec.client_auth,
    }
}
