//! Owner hooks: when an owned job ends, its owner hears how. One place maps
//! each kind of [`JobOwner`] to the service that owns it, so a new domain
//! (deliveries, schedules, notifications) adds one arm here and nothing in
//! the job path.

use std::sync::{Arc, OnceLock};

use keel_core::Namespace;
use keel_store::{AckOutcome, Acked, JobOwner};

use crate::notifications::NotificationService;
use crate::workflows::Driver;

/// The owners are built after the job service they hear from (they make
/// their jobs through it), so each is bound once, when the engine is
/// assembled.
#[derive(Default)]
pub(crate) struct Owners {
    workflows: OnceLock<Arc<Driver>>,
    notifications: OnceLock<Arc<NotificationService>>,
}

impl Owners {
    pub(crate) fn bind_workflows(&self, workflows: Arc<Driver>) {
        let _ = self.workflows.set(workflows);
    }

    pub(crate) fn bind_notifications(&self, notifications: Arc<NotificationService>) {
        let _ = self.notifications.set(notifications);
    }

    /// `acked` is how a job ended (`ack`: the worker's outcome, `None` for a
    /// cancel or an expiry); its owner, if any, hears it in the background.
    pub(crate) fn job_ended(&self, namespace: &Namespace, acked: &Acked, ack: Option<&AckOutcome>) {
        if !acked.state.is_final() {
            return;
        }
        match &acked.owner {
            Some(JobOwner::Run { run, .. }) => {
                if let Some(workflows) = self.workflows.get() {
                    workflows.step_job_ended(namespace, *run, acked, ack);
                }
            }
            // The notifier settles a delivery before it acks; a delivery's job
            // that ended otherwise (cancelled, or its lease expired on the
            // last attempt) is settled here.
            Some(JobOwner::Notification { .. }) if ack.is_none() => {
                if let Some(notifications) = self.notifications.get() {
                    notifications.job_ended_unsent(namespace, acked.id);
                }
            }
            // A delivery is done with once handed off: its retries and dead
            // letter are the job core's, and the subscription has moved on.
            // A schedule looks at its last fire's job when its next slot or
            // a buffered slot comes due, and needs no word here.
            Some(
                JobOwner::Subscription { .. }
                | JobOwner::Schedule { .. }
                | JobOwner::Notification { .. },
            )
            | None => {}
        }
    }
}
