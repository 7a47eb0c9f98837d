//! The Rust client and worker SDK for Keel's HTTP API.
//!
//! [`Client`] enqueues and inspects jobs; [`Worker`] runs an async handler per
//! leased job with bounded concurrency, batch leasing (long-poll), automatic
//! heartbeats, batched acknowledgements and a graceful drain.
//!
//! The SDK speaks only the public HTTP contract and shares no code with the
//! server: what it does, any HTTP client can do.

mod client;
mod worker;

pub use client::{
    Client, ClientError, Enqueued, Job, JobPage, JobSpec, LeasedJob, ListQuery,
    install_tls_provider,
};
pub use worker::{JobFailure, Worker, WorkerOptions};
