//! Service level objectives measured: the job service tells this one what
//! it leased and what ended; it counts per queue and minute in memory, only
//! for queues whose policy carries objectives (a queue without costs one
//! atomic load), and the SLO service (`services/slos.rs`) adds the counts to
//! the store's minute rows every pass, where every node's counts meet.
//! Statuses are computed from the store's sums (`keel_core::slo::evaluate`),
//! so every node answers the same; the maintenance leader alone publishes
//! the alerts that start or stop firing on the namespace's `keel.alerts`
//! topic.
//!
//! Counts of the pass in progress live in memory: a node killed loses at
//! most one pass of measurements (never an acknowledged write).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};

use keel_core::slo::{self, ALERTS, Alert, Objective, Slo, Status, Tally, WINDOWS};
use keel_core::{Error, Namespace, QueueRef, Timestamp};
use keel_store::{MinuteTally, Store};

/// The topic, in each namespace, that alerts are published on.
pub const ALERTS_TOPIC: &str = "keel.alerts";

/// One objective of one queue, measured.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueStatus {
    pub queue: QueueRef,
    pub status: Status,
}

/// An alert that started or stopped firing.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub queue: QueueRef,
    pub status: Status,
    /// Which of [`ALERTS`].
    pub alert: usize,
    pub firing: bool,
}

impl Transition {
    pub fn alert(&self) -> &'static Alert {
        &ALERTS[self.alert]
    }
}

#[derive(Default)]
pub struct SloService {
    /// Objectives by queue, as last read from the store or set here.
    objectives: RwLock<HashMap<QueueRef, Slo>>,
    /// Whether any queue has objectives: the hooks' one check when none do.
    any: AtomicBool,
    /// Counted since the last flush, by queue and minute.
    pending: Mutex<HashMap<(QueueRef, i64), Tally>>,
    /// What the leader last saw of each alert, by queue, objective and alert.
    firing: Mutex<HashMap<(QueueRef, Objective, usize), bool>>,
}

impl SloService {
    /// Jobs of `queue` leased at `now`, each after its wait (ms).
    pub(crate) fn leased(
        &self,
        queue: &QueueRef,
        now: Timestamp,
        waits: impl Iterator<Item = u64>,
    ) {
        let Some(slo) = self.objective(queue) else {
            return;
        };
        self.count(queue, now, |tally| {
            for wait in waits {
                tally.leased(wait, slo.wait_p99_ms);
            }
        });
    }

    /// Jobs of `queue` that ended at `now`: succeeded, or dead.
    pub(crate) fn ended(&self, queue: &QueueRef, now: Timestamp, succeeded: u64, dead: u64) {
        if succeeded + dead == 0 || self.objective(queue).is_none() {
            return;
        }
        self.count(queue, now, |tally| {
            tally.counts.succeeded += succeeded;
            tally.counts.dead += dead;
        });
    }

    fn objective(&self, queue: &QueueRef) -> Option<Slo> {
        if !self.any.load(Ordering::Relaxed) {
            return None;
        }
        let objectives = self
            .objectives
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        objectives.get(queue).copied()
    }

    fn count(&self, queue: &QueueRef, now: Timestamp, add: impl FnOnce(&mut Tally)) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        add(pending
            .entry((queue.clone(), slo::minute(now)))
            .or_default());
    }

    /// A queue's objectives as just set through this node, so that they
    /// count from now rather than from the next refresh.
    pub fn policy_set(&self, queue: &QueueRef, slo: Option<Slo>) {
        let mut objectives = self
            .objectives
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match slo {
            Some(slo) => objectives.insert(queue.clone(), slo),
            None => objectives.remove(queue),
        };
        self.any.store(!objectives.is_empty(), Ordering::Relaxed);
    }

    /// Reads every queue's objectives from the store (set through any node).
    pub async fn refresh(&self, store: &dyn Store) -> Result<(), Error> {
        let found: HashMap<QueueRef, Slo> = store
            .slo_objectives()
            .await?
            .into_iter()
            .map(|o| (o.queue, o.slo))
            .collect();
        let mut objectives = self
            .objectives
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        self.any.store(!found.is_empty(), Ordering::Relaxed);
        *objectives = found;
        Ok(())
    }

    /// Adds what this node counted to the store; kept for the next flush
    /// when the store refuses.
    pub async fn flush(&self, store: &dyn Store) -> Result<(), Error> {
        let taken =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        if taken.is_empty() {
            return Ok(());
        }
        let tallies: Vec<MinuteTally> = taken
            .iter()
            .map(|((queue, minute), tally)| MinuteTally {
                queue: queue.clone(),
                minute: *minute,
                tally: *tally,
            })
            .collect();
        if let Err(e) = store.slo_record(tallies).await {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            for (key, tally) in taken {
                pending.entry(key).or_default().add(&tally);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Every objective of the queues in `namespace` (all namespaces with
    /// `None`), measured at `now` from what the store holds.
    pub async fn statuses(
        &self,
        store: &dyn Store,
        namespace: Option<&Namespace>,
        now: Timestamp,
    ) -> Result<Vec<QueueStatus>, Error> {
        let mut statuses = Vec::new();
        for found in store.slo_objectives().await? {
            if namespace.is_some_and(|ns| *ns != found.queue.namespace) {
                continue;
            }
            let starts = slo::window_starts(now);
            let sums = store.slo_sums(&found.queue, starts).await?;
            let hour = WINDOWS.iter().position(|w| w.name == "1h").unwrap_or(0);
            let waits = if found.slo.wait_p99_ms.is_some() {
                store.slo_waits(&found.queue, starts[hour]).await?
            } else {
                slo::Histogram::default()
            };
            for (objective, target) in found.slo.objectives() {
                statuses.push(QueueStatus {
                    queue: found.queue.clone(),
                    status: slo::evaluate(objective, target, &sums, &waits),
                });
            }
        }
        Ok(statuses)
    }

    /// The alerts of `statuses` that started or stopped firing since the
    /// last call; an alert never seen before counts as not firing, so a
    /// node that just became the leader announces those firing now.
    pub fn transitions(&self, statuses: &[QueueStatus]) -> Vec<Transition> {
        let mut seen = self.firing.lock().unwrap_or_else(PoisonError::into_inner);
        let mut kept = HashMap::new();
        let mut changed = Vec::new();
        for s in statuses {
            for (alert, &firing) in s.status.firing.iter().enumerate() {
                let key = (s.queue.clone(), s.status.objective, alert);
                if seen.get(&key).copied().unwrap_or(false) != firing {
                    changed.push(Transition {
                        queue: s.queue.clone(),
                        status: s.status.clone(),
                        alert,
                        firing,
                    });
                }
                kept.insert(key, firing);
            }
        }
        *seen = kept;
        changed
    }

    /// Takes a transition back (its event could not be published), so the
    /// next pass finds it again.
    pub fn undo(&self, t: &Transition) {
        self.firing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((t.queue.clone(), t.status.objective, t.alert), !t.firing);
    }

    /// Forgets what the alerts were (this node stopped leading: whoever
    /// leads next announces what fires).
    pub fn forget_alerts(&self) {
        self.firing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}
