//! Background services. Each has the same shape: built from the engine, then
//! `run(shutdown)` until the shutdown fires, finishing the pass it is in.

mod deliveries;
mod maintenance;
mod pusher;
mod retention;
mod slos;
mod steps;
mod timer;

use std::sync::Arc;

use tokio::task::JoinHandle;

pub use deliveries::Deliveries;
pub use maintenance::Maintenance;
pub use pusher::Pusher;
pub use retention::Retention;
pub use slos::Slos;
pub use steps::{RunSweep, StepRunner};
pub use timer::Timer;

use crate::{Engine, Shutdown};

/// The running services, to be joined at shutdown.
pub struct Services(Vec<JoinHandle<()>>);

pub fn start(engine: Arc<Engine>, shutdown: Shutdown) -> Services {
    Services(vec![
        tokio::spawn(Maintenance::new(engine.clone()).run(shutdown.clone())),
        tokio::spawn(Retention::new(engine.clone()).run(shutdown.clone())),
        tokio::spawn(StepRunner::new(engine.clone()).run(shutdown.clone())),
        tokio::spawn(Deliveries::new(engine.clone()).run(shutdown.clone())),
        tokio::spawn(Pusher::new(engine.clone()).run(shutdown.clone())),
        tokio::spawn(Timer::new(engine.clone()).run(shutdown.clone())),
        tokio::spawn(Slos::new(engine.clone()).run(shutdown.clone())),
        tokio::spawn(RunSweep::new(engine).run(shutdown)),
    ])
}

impl Services {
    pub async fn join(self) {
        for handle in self.0 {
            let _ = handle.await;
        }
    }
}
