//! The endpoints domain: HTTP receivers Keel pushes to, with their signing
//! secrets (stored whole: signing needs them; the API shows a secret only
//! when it is made), their health, and the log of every delivery attempt.
//! Recording attempts also moves the endpoint's health, in one write, so the
//! two never disagree.

use async_trait::async_trait;
use keel_core::endpoint::{EndpointSpec, Health, Secrets};
use keel_core::{EndpointName, Error, ErrorCode, JobId, Namespace, Timestamp};

/// An endpoint as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub namespace: Namespace,
    pub name: EndpointName,
    pub spec: EndpointSpec,
    pub secrets: Secrets,
    pub health: Health,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The secret a put leaves an endpoint with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretChoice {
    /// Keep the stored one; a new endpoint gets this one.
    KeepOr(String),
    /// Replace it (no overlap: that is what rotating is for).
    Set(String),
}

/// One delivery attempt, as the pusher saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAttempt {
    pub namespace: Namespace,
    pub endpoint: EndpointName,
    /// The `webhook-id` sent: the same for every attempt of one message.
    pub message_id: String,
    pub job_id: JobId,
    pub at: Timestamp,
    pub succeeded: bool,
    /// The answer's status; none when there was no answer.
    pub http_status: Option<u16>,
    pub latency_ms: u64,
    /// The first bytes of the answer's body.
    pub response_excerpt: Option<String>,
    pub error: Option<String>,
}

/// A recorded attempt: its id orders the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub id: i64,
    pub attempt: NewAttempt,
}

/// A page of an endpoint's attempts, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttemptQuery {
    /// Only successes (`Some(true)`) or failures (`Some(false)`).
    pub succeeded: Option<bool>,
    /// Attempts older than this id (the previous page's last).
    pub before: Option<i64>,
    pub limit: u32,
}

/// 404 for an endpoint.
pub fn endpoint_not_found(name: &str) -> Error {
    Error::new(ErrorCode::NotFound, format!("endpoint {name:?} not found"))
}

#[async_trait]
pub trait EndpointStore: Send + Sync {
    /// Creates an endpoint or changes an existing one's spec (`updated_at`
    /// moves only when spec or secret changed). True when new.
    async fn endpoint_put(
        &self,
        namespace: &Namespace,
        name: &EndpointName,
        spec: &EndpointSpec,
        secret: SecretChoice,
        now: Timestamp,
    ) -> Result<(Endpoint, bool), Error>;

    async fn endpoint_get(
        &self,
        namespace: &Namespace,
        name: &EndpointName,
    ) -> Result<Endpoint, Error>;

    /// A namespace's endpoints by name, or every namespace's.
    async fn endpoints_list(&self, namespace: Option<&Namespace>) -> Result<Vec<Endpoint>, Error>;

    /// 404 when absent. Its attempts go with it.
    async fn endpoint_delete(
        &self,
        namespace: &Namespace,
        name: &EndpointName,
    ) -> Result<(), Error>;

    /// Makes `next` the current secret; the old one signs on for a day
    /// (`Secrets::rotated`).
    async fn endpoint_rotate(
        &self,
        namespace: &Namespace,
        name: &EndpointName,
        next: String,
        now: Timestamp,
    ) -> Result<Endpoint, Error>;

    /// Disables the endpoint for `reason`, or enables it (`None`, which
    /// also forgets its failure streak). True when this call changed it, so
    /// that of two nodes disabling it at once only one reports it.
    async fn endpoint_disable(
        &self,
        namespace: &Namespace,
        name: &EndpointName,
        reason: Option<String>,
        now: Timestamp,
    ) -> Result<bool, Error>;

    /// Appends attempts to the log and folds them into their endpoints'
    /// health (`Health::record`), in one write; the endpoints touched,
    /// as they are after it (an endpoint deleted meanwhile is left out, its
    /// attempts too).
    async fn attempts_record(&self, attempts: Vec<NewAttempt>) -> Result<Vec<Endpoint>, Error>;

    async fn attempts_list(
        &self,
        namespace: &Namespace,
        name: &EndpointName,
        query: &AttemptQuery,
    ) -> Result<Vec<Attempt>, Error>;

    /// Deletes up to `limit` attempts made before `before`; how many went.
    async fn attempts_prune(&self, before: Timestamp, limit: u32) -> Result<u64, Error>;
}
