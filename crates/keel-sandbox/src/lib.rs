//! Runs customers' handlers, WebAssembly modules and JavaScript, inside
//! Keel's process without trusting them (docs/design.md, "Handlers").
//!
//! Everything a handler can do goes through the two functions of the
//! handler ABI ([`abi`]); the [`Host`] the engine passes in answers them
//! (state, HTTP, publish, enqueue, clock). JavaScript runs in QuickJS
//! compiled to WebAssembly (`js/engine.wasm`, built from sources by
//! `scripts/build-js-engine`), the same sandbox as any module: no native
//! JavaScript engine shares Keel's memory with tenants' code.

pub mod abi;
mod guest;
mod js;
mod sandbox;
mod snapshot;

pub use abi::Op;
pub use keel_core::handler::{Caps, HandlerLimits, Limit};
pub use sandbox::{Failure, Invocation, MAX_MODULE_BYTES, Prepared, Refused, Sandbox};

/// What a handler's host calls reach: the engine's side of one invocation.
#[async_trait::async_trait]
pub trait Host: Send {
    /// Answers one call: the value the guest sees as `ok`, or an error
    /// message it sees thrown. `request` is the guest's JSON, unchecked.
    async fn call(&mut self, op: Op, request: &[u8]) -> Result<serde_json::Value, String>;

    /// The time the guest sees (`Date.now()`, the clock call), in ms since
    /// the Unix epoch: the engine's injected clock.
    fn now_ms(&self) -> i64;
}
