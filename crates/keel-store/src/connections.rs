//! The connections domain (`keel_core::connection`): integrations, the
//! single-use connect sessions of the OAuth2 dance, and connections with
//! their tokens. Every secret arrives here sealed by the engine (AES-GCM,
//! bound to its row by [`SealedRef::context`]); the store never sees a
//! plaintext and only moves the sealed text. A connection carries a
//! version so that a refresh swaps its tokens by compare-and-set.

use std::sync::Arc;

use async_trait::async_trait;
use keel_core::connection::{ConnectionStatus, IntegrationSpec};
use keel_core::{ConnectionName, Error, ErrorCode, IntegrationName, Namespace, Timestamp};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Integration {
    pub namespace: Namespace,
    pub name: IntegrationName,
    /// The spec without its secret.
    pub spec: IntegrationSpec,
    /// The client secret, sealed.
    pub client_secret: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// An OAuth2 dance under way: found once by its `state`, within its time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectSession {
    pub state: String,
    pub namespace: Namespace,
    pub integration: IntegrationName,
    pub connection: ConnectionName,
    /// The PKCE verifier, sealed; empty without PKCE.
    pub verifier: String,
    pub redirect_url: String,
    /// Where the end user's browser goes once connected.
    pub return_to: Option<String>,
    pub expires_at: Timestamp,
}

/// A connection's tokens and standing, as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionWrite {
    pub status: ConnectionStatus,
    /// Sealed.
    pub access_token: String,
    /// Sealed; `None` when the provider gave none.
    pub refresh_token: Option<String>,
    pub token_type: String,
    pub scope: Option<String>,
    pub expires_at: Option<Timestamp>,
    pub refresh_at: Timestamp,
    pub refreshed_at: Timestamp,
    /// Why the connection needs the end user again.
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connection {
    pub namespace: Namespace,
    pub name: ConnectionName,
    pub integration: IntegrationName,
    /// Moves by one with every write; a swap names the one it read.
    pub version: u64,
    pub tokens: ConnectionWrite,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Connection {
    /// Its two tokens, re-sealed.
    pub fn resealed(&self, reseal: &Reseal) -> Result<(String, Option<String>), Error> {
        let access = reseal(&self.sealed_at(false), &self.tokens.access_token)?;
        let refresh = match &self.tokens.refresh_token {
            Some(sealed) => Some(reseal(&self.sealed_at(true), sealed)?),
            None => None,
        };
        Ok((access, refresh))
    }

    /// Where its access token (or its refresh token) is sealed.
    pub fn sealed_at(&self, refresh: bool) -> SealedRef {
        let (access, refresh_token) =
            SealedRef::tokens(&self.namespace, &self.integration, &self.name);
        if refresh { refresh_token } else { access }
    }
}

/// Where a sealed value lives: what it is bound to, so that a ciphertext
/// moved to another row or field does not open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SealedRef {
    ClientSecret {
        namespace: Namespace,
        integration: IntegrationName,
    },
    Verifier {
        state: String,
    },
    AccessToken {
        namespace: Namespace,
        integration: IntegrationName,
        connection: ConnectionName,
    },
    RefreshToken {
        namespace: Namespace,
        integration: IntegrationName,
        connection: ConnectionName,
    },
}

impl SealedRef {
    /// Where a connection's access token and refresh token are sealed.
    pub fn tokens(
        namespace: &Namespace,
        integration: &IntegrationName,
        connection: &ConnectionName,
    ) -> (SealedRef, SealedRef) {
        (
            SealedRef::AccessToken {
                namespace: namespace.clone(),
                integration: integration.clone(),
                connection: connection.clone(),
            },
            SealedRef::RefreshToken {
                namespace: namespace.clone(),
                integration: integration.clone(),
                connection: connection.clone(),
            },
        )
    }

    /// The additional authenticated data a value is sealed with.
    pub fn context(&self) -> String {
        match self {
            SealedRef::ClientSecret {
                namespace,
                integration,
            } => format!("keel.integration|{namespace}|{integration}|client_secret"),
            SealedRef::Verifier { state } => format!("keel.session|{state}|verifier"),
            SealedRef::AccessToken {
                namespace,
                integration,
                connection,
            } => format!("keel.connection|{namespace}|{integration}|{connection}|access_token"),
            SealedRef::RefreshToken {
                namespace,
                integration,
                connection,
            } => format!("keel.connection|{namespace}|{integration}|{connection}|refresh_token"),
        }
    }
}

/// Re-seals one value (with the keyring's active key); an error stops the
/// whole rewrite and changes nothing.
pub type Reseal = Arc<dyn Fn(&SealedRef, &str) -> Result<String, Error> + Send + Sync>;

pub fn integration_not_found(name: &IntegrationName) -> Error {
    Error::new(
        ErrorCode::NotFound,
        format!("integration {name:?} not found"),
    )
}

pub fn connection_not_found(name: &ConnectionName) -> Error {
    Error::new(
        ErrorCode::NotFound,
        format!("connection {name:?} not found"),
    )
}

#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Creates an integration or replaces its spec (and its secret, which
    /// the caller has already chosen: the new one or the stored one). True
    /// when new.
    async fn integration_put(
        &self,
        integration: &Integration,
        now: Timestamp,
    ) -> Result<(Integration, bool), Error>;

    async fn integration_get(
        &self,
        namespace: &Namespace,
        name: &IntegrationName,
    ) -> Result<Integration, Error>;

    async fn integrations_list(&self, namespace: &Namespace) -> Result<Vec<Integration>, Error>;

    /// 404 when absent, 409 while it has connections.
    async fn integration_delete(
        &self,
        namespace: &Namespace,
        name: &IntegrationName,
    ) -> Result<(), Error>;

    /// Stores a session (its state is random and new), and drops the
    /// sessions expired by `now`.
    async fn session_put(&self, session: &ConnectSession, now: Timestamp) -> Result<(), Error>;

    /// Takes a session: found once, and only before it expires.
    async fn session_take(
        &self,
        state: &str,
        now: Timestamp,
    ) -> Result<Option<ConnectSession>, Error>;

    /// Creates a connection, or replaces one's tokens when its end user
    /// connects again (its integration too); its version moves on.
    async fn connection_put(
        &self,
        namespace: &Namespace,
        name: &ConnectionName,
        integration: &IntegrationName,
        write: &ConnectionWrite,
        now: Timestamp,
    ) -> Result<Connection, Error>;

    /// Writes a connection only if its version is still `version`: the
    /// written connection, or `None` when another write came first (or it
    /// was deleted).
    async fn connection_swap(
        &self,
        namespace: &Namespace,
        name: &ConnectionName,
        version: u64,
        write: &ConnectionWrite,
        now: Timestamp,
    ) -> Result<Option<Connection>, Error>;

    async fn connection_get(
        &self,
        namespace: &Namespace,
        name: &ConnectionName,
    ) -> Result<Connection, Error>;

    /// A namespace's connections by name.
    async fn connections_list(&self, namespace: &Namespace) -> Result<Vec<Connection>, Error>;

    /// 404 when absent.
    async fn connection_delete(
        &self,
        namespace: &Namespace,
        name: &ConnectionName,
    ) -> Result<Connection, Error>;

    /// Active connections whose refresh time is at or before `before`,
    /// soonest first, at most `limit`.
    async fn connections_due(
        &self,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<Connection>, Error>;

    /// Re-seals every sealed value in one transaction; how many.
    async fn sealed_rewrite(&self, reseal: Reseal) -> Result<u64, Error>;
}
