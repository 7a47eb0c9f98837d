//! What a client sends and gets back around connections: a connect
//! session asked for and answered, and a call made as a connection.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{ConnectionName, Timestamp};

/// What a connect session is asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectRequest {
    /// The connection's name: usually the end user's id in your app.
    #[schema(value_type = String)]
    pub connection: ConnectionName,
    /// Where the end user's browser goes once connected.
    #[serde(default)]
    pub return_to: Option<String>,
    /// Scopes for this connection instead of the integration's.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
}

/// Where to send the end user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConnectAnswer {
    pub authorize_url: String,
    pub state: String,
    pub expires_at: Timestamp,
}

/// A call made as a connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyRequest {
    #[serde(default = "get")]
    pub method: String,
    /// An absolute URL on one of the integration's `api_base` origins.
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
}

fn get() -> String {
    "GET".to_owned()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProxyAnswer {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}
