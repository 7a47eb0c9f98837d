//! The engine: what every request handler and service shares.

use std::sync::Arc;

use keel_core::{Clock, Limits, Timestamp};
use keel_store::Store;

use crate::Shutdown;
use crate::rates::Rates;

pub struct Engine {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
    pub shutdown: Shutdown,
    pub(crate) rates: Rates,
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        limits: Limits,
        shutdown: Shutdown,
    ) -> Arc<Self> {
        Arc::new(Engine {
            store,
            clock,
            limits,
            shutdown,
            rates: Rates::default(),
        })
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}
