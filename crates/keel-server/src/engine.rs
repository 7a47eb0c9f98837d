//! The engine: what every request handler and service shares.

use std::sync::Arc;

use keel_core::{Clock, Limits, Timestamp};
use keel_store::Store;

use crate::Shutdown;
use crate::rates::Rates;
use crate::workflows::Driver;

pub struct Engine {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
    pub shutdown: Shutdown,
    pub workflows: Arc<Driver>,
    pub(crate) rates: Rates,
}

/// How the engine treats the outside world.
#[derive(Clone, Debug, Default)]
pub struct EngineConfig {
    /// Let `http` steps call loopback, private and link-local addresses.
    pub allow_private_http: bool,
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        limits: Limits,
        shutdown: Shutdown,
        config: EngineConfig,
    ) -> Arc<Self> {
        let workflows = Driver::new(store.clone(), clock.clone(), config.allow_private_http);
        Arc::new(Engine {
            store,
            clock,
            limits,
            shutdown,
            workflows,
            rates: Rates::default(),
        })
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}
