//! The HTTP API's wire contract: the request and answer types of each
//! domain, shared by the server (`keel-server`) and the Rust client
//! (`keel-client`), so that the two cannot drift apart, and ready for an
//! OpenAPI generator. One module per domain, as everywhere in Keel; the jobs
//! and queues domains are here, workflows and runs still answer with types
//! of the server's own and move here next.
//!
//! Types that carry payloads are generic over the payload's type: the server
//! passes payloads through untouched (`Box<RawValue>`, the default), a client
//! reads them as any `Deserialize` type (`serde_json::Value` in `keel-client`).
//!
//! Architecture invariant: no HTTP, store or engine type appears here.

pub mod error;
pub mod jobs;
pub mod queues;

pub use error::{ErrorBody, ErrorDetail};
