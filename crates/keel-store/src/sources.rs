//! The sources domain: webhook sources, each a topic and the way its
//! requests are verified (`keel_core::source`). Stored whole, secret
//! included: the verifier needs it, so it cannot be hashed; the API never
//! shows it again.

use async_trait::async_trait;
use keel_core::source::SourceSpec;
use keel_core::{Error, ErrorCode, Namespace, Timestamp};

/// A source as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub namespace: Namespace,
    pub name: String,
    pub spec: SourceSpec,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// 404 for a source.
pub fn source_not_found(name: &str) -> Error {
    Error::new(ErrorCode::NotFound, format!("source {name:?} not found"))
}

#[async_trait]
pub trait SourceStore: Send + Sync {
    /// Creates a source or replaces an existing one's spec (`updated_at`
    /// moves only when the spec changed). True when new.
    async fn source_put(
        &self,
        namespace: &Namespace,
        name: &str,
        spec: &SourceSpec,
        now: Timestamp,
    ) -> Result<(Source, bool), Error>;

    async fn source_get(&self, namespace: &Namespace, name: &str) -> Result<Source, Error>;

    /// A namespace's sources by name.
    async fn sources_list(&self, namespace: &Namespace) -> Result<Vec<Source>, Error>;

    /// 404 when absent.
    async fn source_delete(&self, namespace: &Namespace, name: &str) -> Result<(), Error>;
}
