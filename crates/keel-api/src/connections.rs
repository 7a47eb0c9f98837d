//! The connections domain: integrations (their client secret goes in,
//! never out), connect sessions, connections (their tokens never come
//! out), calls made as a connection, and the keys' rotation
//! (docs/connections.md).

use keel_core::Timestamp;
use keel_core::connection::{ClientAuth, ConnectionStatus, Provider};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `PUT .../integrations/{name}` takes `keel_core::connection::IntegrationSpec`.
pub use keel_core::connection::IntegrationSpec as IntegrationRequest;
pub use keel_core::connection::{ConnectAnswer, ConnectRequest, ProxyAnswer, ProxyRequest};

/// An integration as the API shows it: its secret is only said to be set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IntegrationAnswer {
    pub name: String,
    pub provider: Provider,
    pub client_id: String,
    pub client_secret_set: bool,
    /// The provider's URLs and the API origins, with the template applied.
    pub auth_url: String,
    pub token_url: String,
    pub api_base: Vec<String>,
    pub scopes: Vec<String>,
    pub pkce: bool,
    pub client_auth: ClientAuth,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_url: Option<String>,
    pub topic: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IntegrationList {
    pub integrations: Vec<IntegrationAnswer>,
}

/// A connection as the API shows it: never its tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConnectionAnswer {
    pub name: String,
    pub integration: String,
    pub status: ConnectionStatus,
    /// Moves by one with every write (a connect, a refresh).
    pub version: u64,
    pub token_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub has_refresh_token: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    pub refresh_at: Timestamp,
    pub refreshed_at: Timestamp,
    /// Why it needs its end user again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConnectionList {
    pub connections: Vec<ConnectionAnswer>,
}

/// What `POST /v1/keys/rotate` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeysRotated {
    /// The new key's id: every sealed value is now sealed with it.
    pub active: u32,
    /// Values re-sealed.
    pub resealed: u64,
}
