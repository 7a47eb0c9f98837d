//! The HTTP API's wire contract: the request and answer types of each
//! domain, shared by the server (`keel-server`) and the Rust client
//! (`keel-client`), so that the two cannot drift apart, and ready for an
//! OpenAPI generator. One module per domain, as everywhere in Keel.
//!
//! Job types that carry payloads are generic over the payload's type: the
//! server passes payloads through untouched (`Box<RawValue>`, the default), a
//! client reads them as any `Deserialize` type (`serde_json::Value` in
//! `keel-client`). A run's input and outputs are `Value`s: the engine reads
//! them to evaluate expressions, so they always have that form.
//!
//! Architecture invariant: no HTTP, store or engine type appears here.

pub mod audit;
pub mod connections;
pub mod endpoints;
pub mod error;
pub mod handlers;
pub mod health;
pub mod imports;
pub mod jobs;
pub mod monitors;
pub mod namespaces;
pub mod notifications;
pub mod projects;
pub mod queues;
pub mod runs;
pub mod schedules;
pub mod slos;
pub mod sources;
pub mod subscriptions;
pub mod tokens;
pub mod topics;
pub mod workflows;

pub use error::{ErrorBody, ErrorDetail};
