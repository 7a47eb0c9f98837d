//! Service level objectives measured: the job service tells this one what
//! it leased and what ended, the subscription service what it delivered and
//! which hand-offs failed; it counts per subject (queue or topic) and
//! minute in memory, only for those whose policy carries objectives (the
//! others cost one atomic load), and the SLO service (`services/slos.rs`)
//! adds the counts to the store's minute rows every pass, where every
//! node's counts meet. Statuses are computed from the store's sums
//! (`keel_core::slo::evaluate`), so every node answers the same; the
//! maintenance leader alone publishes the alerts that start or stop firing
//! on the namespace's `keel.alerts` topic.
//!
//! Counts of the pass in progress live in memory: a node killed loses at
//! most one pass of measurements (never an acknowledged write).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use keel_core::slo::{self, ALERTS, Alert, Objective, Slo, Status, Subject, Tally};
use keel_core::{Error, Namespace, QueueRef, Timestamp, TopicName};
use keel_store::{MinuteTally, SloStore};

/// The topic, in each namespace, that alerts are published on.
pub const ALERTS_TOPIC: &str = "keel.alerts";

/// One objective of one queue or topic, measured.
#[derive(Clone, Debug, PartialEq)]
pub struct SubjectStatus {
    pub subject: Subject,
    pub status: Status,
}

/// An alert that started or stopped firing.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub subject: Subject,
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

pub struct SloService {
    store: Arc<dyn SloStore>,
    /// Objectives by subject, as last read from the store or set here.
    objectives: RwLock<HashMap<Subject, Slo>>,
    /// Whether anything has objectives: the hooks' one check when nothing
    /// does.
    any: AtomicBool,
    /// Counted since the last flush, by subject and minute.
    pending: Mutex<HashMap<(Subject, i64), Tally>>,
    /// What the leader last saw of each alert, by subject, objective and
    /// alert.
    firing: Mutex<HashMap<(Subject, Objective, usize), bool>>,
}

impl SloService {
    pub(crate) fn new(store: Arc<dyn SloStore>) -> Self {
        SloService {
            store,
            objectives: RwLock::default(),
            any: AtomicBool::default(),
            pending: Mutex::default(),
            firing: Mutex::default(),
        }
    }

    /// Jobs of `queue` leased at `now`, each after its wait (ms).
    pub(crate) fn queue_leased(
        &self,
        queue: &QueueRef,
        now: Timestamp,
        waits: impl Iterator<Item = u64>,
    ) {
        self.count(
            || Subject::queue(queue),
            now,
            |tally, slo| {
                for wait in waits {
                    tally.waited(wait, slo.wait_p99_ms);
                }
            },
        );
    }

    /// Jobs of `queue` that ended at `now`: succeeded, or dead.
    pub(crate) fn queue_ended(&self, queue: &QueueRef, now: Timestamp, succeeded: u64, dead: u64) {
        if succeeded + dead > 0 {
            self.count(
                || Subject::queue(queue),
                now,
                |tally, _| {
                    tally.counts.succeeded += succeeded;
                    tally.counts.failed += dead;
                },
            );
        }
    }

    /// Events of `topic` delivered to a subscription at `now`, each after
    /// its age (ms); `handed_off` of them handed to a target (the others
    /// fetched by a consumer).
    pub(crate) fn topic_delivered(
        &self,
        namespace: &Namespace,
        topic: &TopicName,
        now: Timestamp,
        ages: impl Iterator<Item = u64>,
        handed_off: u64,
    ) {
        self.count(
            || Subject::topic(namespace, topic),
            now,
            |tally, slo| {
                for age in ages {
                    tally.waited(age, slo.wait_p99_ms);
                }
                tally.counts.succeeded += handed_off;
            },
        );
    }

    /// A hand-off of `n` events of `topic` failed at `now`.
    pub(crate) fn topic_failed(
        &self,
        namespace: &Namespace,
        topic: &TopicName,
        now: Timestamp,
        n: u64,
    ) {
        if n > 0 {
            self.count(
                || Subject::topic(namespace, topic),
                now,
                |tally, _| tally.counts.failed += n,
            );
        }
    }

    /// Adds to the subject's tally of this minute when it has objectives
    /// (the subject is made only when something has).
    fn count(
        &self,
        subject: impl FnOnce() -> Subject,
        now: Timestamp,
        add: impl FnOnce(&mut Tally, &Slo),
    ) {
        if !self.any.load(Ordering::Relaxed) {
            return;
        }
        let subject = subject();
        let Some(slo) = self
            .objectives
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&subject)
            .copied()
        else {
            return;
        };
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        add(
            pending.entry((subject, slo::minute(now))).or_default(),
            &slo,
        );
    }

    /// A queue's or topic's objectives as just set through this node, so
    /// that they count from now rather than from the next refresh.
    pub fn policy_set(&self, subject: Subject, slo: Option<Slo>) {
        let mut objectives = self
            .objectives
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match slo {
            Some(slo) => objectives.insert(subject, slo),
            None => objectives.remove(&subject),
        };
        self.any.store(!objectives.is_empty(), Ordering::Relaxed);
    }

    /// Reads every subject's objectives from the store (set through any
    /// node).
    pub async fn refresh(&self) -> Result<(), Error> {
        let found: HashMap<Subject, Slo> = self
            .store
            .slo_objectives()
            .await?
            .into_iter()
            .map(|o| (o.subject, o.slo))
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
    pub async fn flush(&self) -> Result<(), Error> {
        let taken =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        if taken.is_empty() {
            return Ok(());
        }
        let tallies: Vec<MinuteTally> = taken
            .iter()
            .map(|((subject, minute), tally)| MinuteTally {
                subject: subject.clone(),
                minute: *minute,
                tally: *tally,
            })
            .collect();
        if let Err(e) = self.store.slo_record(tallies).await {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            for (key, tally) in taken {
                pending.entry(key).or_default().add(&tally);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Every objective of the queues and topics in `namespace` (all
    /// namespaces with `None`), measured at `now` from what the store holds.
    pub async fn statuses(
        &self,
        namespace: Option<&Namespace>,
        now: Timestamp,
    ) -> Result<Vec<SubjectStatus>, Error> {
        let mut statuses = Vec::new();
        for found in self.store.slo_objectives().await? {
            if namespace.is_some_and(|ns| *ns != found.subject.namespace) {
                continue;
            }
            let starts = slo::window_starts(now);
            let sums = self.store.slo_sums(&found.subject, starts).await?;
            let waits = if found.slo.wait_p99_ms.is_some() {
                self.store
                    .slo_waits(&found.subject, starts[slo::HOUR])
                    .await?
            } else {
                slo::Histogram::default()
            };
            for (objective, target) in found.slo.objectives() {
                statuses.push(SubjectStatus {
                    subject: found.subject.clone(),
                    status: slo::evaluate(objective, target, &sums, &waits),
                });
            }
        }
        Ok(statuses)
    }

    /// The alerts of `statuses` that started or stopped firing since the
    /// last call; an alert never seen before counts as not firing, so a
    /// node that just became the leader announces those firing now.
    pub fn transitions(&self, statuses: &[SubjectStatus]) -> Vec<Transition> {
        let mut seen = self.firing.lock().unwrap_or_else(PoisonError::into_inner);
        let mut kept = HashMap::new();
        let mut changed = Vec::new();
        for s in statuses {
            for (alert, &firing) in s.status.firing.iter().enumerate() {
                let key = (s.subject.clone(), s.status.objective, alert);
                if seen.get(&key).copied().unwrap_or(false) != firing {
                    changed.push(Transition {
                        subject: s.subject.clone(),
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
            .insert((t.subject.clone(), t.status.objective, t.alert), !t.firing);
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
