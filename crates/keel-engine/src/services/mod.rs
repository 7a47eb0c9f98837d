//! Background services. Each has the same shape: built from the services and
//! store traits it uses (never the whole engine), then `run(shutdown)` until
//! the shutdown fires, finishing the pass it is in. [`start`] is where they
//! are assembled from the engine's parts.

mod deliveries;
mod handlers;
mod maintenance;
mod notifier;
mod prober;
mod pusher;
mod queue_worker;
mod refresher;
mod retention;
mod slos;
mod steps;
mod timer;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

pub use deliveries::Deliveries;
pub use handlers::{EffectsWorker, HandlerRunner};
pub use maintenance::Maintenance;
pub use notifier::Notifier;
pub use prober::Prober;
pub use pusher::Pusher;
pub(crate) use queue_worker::ack_all;
pub use refresher::Refresher;
pub use retention::Retention;
pub use slos::Slos;
pub use steps::{RunSweep, StepRunner};
pub use timer::Timer;

use crate::{Engine, Shutdown};

/// The running services, to be joined at shutdown.
pub struct Services(Vec<JoinHandle<()>>);

pub fn start(engine: Arc<Engine>, shutdown: Shutdown) -> Services {
    let store = engine.store();
    let signal = store.ready_signal();
    let clock = engine.clock();
    let slo_every = Duration::from_millis(engine.config().slo_pass_ms);
    let services = vec![
        tokio::spawn(
            Maintenance::new(
                engine.jobs().clone(),
                store.clone(),
                signal.clone(),
                clock.clone(),
            )
            .run(shutdown.clone()),
        ),
        tokio::spawn(
            Retention::new(store.clone(), clock.clone(), engine.config().clone())
                .run(shutdown.clone()),
        ),
        tokio::spawn(
            StepRunner::new(
                engine.jobs().clone(),
                engine.workflows().clone(),
                engine.notifications().clone(),
                clock.clone(),
            )
            .run(shutdown.clone()),
        ),
        tokio::spawn(
            Deliveries::new(
                engine.subscriptions().clone(),
                engine.workflows().clone(),
                signal.clone(),
            )
            .run(shutdown.clone()),
        ),
        tokio::spawn(
            Notifier::new(
                engine.notifications().clone(),
                engine.jobs().clone(),
                engine.queues().clone(),
            )
            .run(shutdown.clone()),
        ),
        tokio::spawn(
            Prober::new(
                engine.monitors().clone(),
                engine.jobs().clone(),
                engine.queues().clone(),
            )
            .run(shutdown.clone()),
        ),
        tokio::spawn(Refresher::new(engine.connections().clone()).run(shutdown.clone())),
        tokio::spawn(HandlerRunner::new(engine.handlers().clone()).run(shutdown.clone())),
        tokio::spawn(EffectsWorker::new(engine.handlers().clone()).run(shutdown.clone())),
        tokio::spawn(
            Pusher::new(
                engine.endpoints().clone(),
                engine.jobs().clone(),
                engine.queues().clone(),
                clock.clone(),
            )
            .run(shutdown.clone()),
        ),
        tokio::spawn(
            Timer::new(
                engine.schedules().clone(),
                store.clone(),
                signal,
                clock.clone(),
                store.sole_writer(),
            )
            .run(shutdown.clone()),
        ),
        tokio::spawn(
            Slos::new(
                (
                    engine.slos().clone(),
                    engine.topics().clone(),
                    engine.monitors().clone(),
                ),
                store.clone(),
                clock.clone(),
                slo_every,
            )
            .run(shutdown.clone()),
        ),
        tokio::spawn(
            RunSweep::new(engine.workflows().clone(), store.clone(), store.clone()).run(shutdown),
        ),
    ];
    Services(services)
}

impl Services {
    pub async fn join(self) {
        for handle in self.0 {
            let _ = handle.await;
        }
    }
}
