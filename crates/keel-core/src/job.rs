//! The job state machine.
//!
//! ```text
//! scheduled → ready → leased → succeeded
//!                        ├──→ scheduled (retry after backoff) / ready (no delay)
//!                        └──→ dead (attempts spent, or retry refused)
//! any non-final state → cancelled;  dead → ready (redrive)
//! ```
//!
//! [`JobLifecycle`] holds the fields a transition changes and decides every
//! transition; stores persist the result atomically. Nothing here reads a clock
//! or a random source: `now` and the jitter draw are arguments.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::limits::{MAX_PRIORITY, MIN_PRIORITY};
use crate::policy::{check_lease_ms, check_max_attempts};
use crate::{Backoff, Error, ErrorCode, JobId, Limits, QueuePolicy, Timestamp};

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Scheduled,
    Ready,
    Leased,
    Succeeded,
    Dead,
    Cancelled,
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Scheduled,
        JobState::Ready,
        JobState::Leased,
        JobState::Succeeded,
        JobState::Dead,
        JobState::Cancelled,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            JobState::Scheduled => "scheduled",
            JobState::Ready => "ready",
            JobState::Leased => "leased",
            JobState::Succeeded => "succeeded",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        JobState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Final states take no more transitions (but for redrive of `dead`).
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Dead | JobState::Cancelled
        )
    }
}

/// What a client asks to enqueue, as it arrives; [`JobRequest::validate`] turns
/// it into a [`NewJob`] or says every reason it can't.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    #[schema(value_type = serde_json::Value)]
    pub payload: Box<RawValue>,
    pub priority: Option<i64>,
    #[schema(format = DateTime)]
    pub run_at: Option<String>,
    pub delay_ms: Option<u64>,
    pub max_attempts: Option<u32>,
    pub backoff: Option<Backoff>,
    pub lease_ms: Option<u64>,
    pub idempotency_key: Option<String>,
    pub ordering_key: Option<String>,
    pub tags: Option<BTreeMap<String, String>>,
    pub debounce: Option<Debounce>,
    /// The trace the job belongs to; when absent, the enqueue request's own
    /// (its `traceparent` header, or the server's span under `otel`).
    pub traceparent: Option<crate::TraceParent>,
    /// The entity the job works on (`{"type","key"}`): jobs of one object
    /// run one at a time (it is their ordering key), and a handler reads and
    /// writes its state.
    #[serde(default)]
    pub object: Option<crate::handler::ObjectRef>,
}

/// `{"key","window_ms"}`: enqueues of one key within a window collapse into
/// one job. The window opens at the first enqueue of the key, whose job runs
/// when it closes (or at its own `run_at` if later); every enqueue of the key
/// until then replaces that job's payload. A key whose job has started opens
/// a new window: the latency from the first enqueue is bounded by the
/// window, however steady the stream of enqueues.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Debounce {
    pub key: String,
    pub window_ms: u64,
}

/// The longest debounce window: a day.
pub const MAX_DEBOUNCE_WINDOW_MS: u64 = 24 * 3_600_000;

/// A validated job with every default resolved, ready to be stored.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub payload: Box<RawValue>,
    pub priority: i16,
    pub run_at: Timestamp,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub lease_ms: u64,
    pub idempotency_key: Option<String>,
    pub ordering_key: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// Enqueues of this key (per queue) collapse into this job while it
    /// waits for its first attempt (see [`Debounce`]).
    pub debounce_key: Option<String>,
    /// Handed to whoever leases the job, to continue the trace.
    pub traceparent: Option<crate::TraceParent>,
}

impl NewJob {
    /// A job of `payload` due at `run_at`, as a queue without a policy
    /// makes one that asks for nothing else: default attempts, backoff and
    /// lease; no priority, keys, tags or trace.
    pub fn new(payload: Box<RawValue>, run_at: Timestamp) -> NewJob {
        let policy = QueuePolicy::default();
        NewJob {
            payload,
            priority: 0,
            run_at,
            max_attempts: policy.max_attempts(),
            backoff: policy.backoff(),
            lease_ms: policy.lease_ms(),
            idempotency_key: None,
            ordering_key: None,
            tags: BTreeMap::new(),
            debounce_key: None,
            traceparent: None,
        }
    }
}

impl JobRequest {
    /// A request for `payload` with every field at its default.
    pub fn new(payload: Box<RawValue>) -> JobRequest {
        JobRequest {
            payload,
            priority: None,
            run_at: None,
            delay_ms: None,
            max_attempts: None,
            backoff: None,
            lease_ms: None,
            idempotency_key: None,
            ordering_key: None,
            tags: None,
            debounce: None,
            traceparent: None,
            object: None,
        }
    }

    pub fn validate(
        self,
        policy: &QueuePolicy,
        limits: &Limits,
        now: Timestamp,
    ) -> Result<NewJob, Error> {
        if self.payload.get().len() > limits.max_payload_bytes {
            return Err(Error::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "payload is {} bytes, over the limit of {}",
                    self.payload.get().len(),
                    limits.max_payload_bytes
                ),
            ));
        }
        let priority = self.priority.unwrap_or(0);
        if !(MIN_PRIORITY..=MAX_PRIORITY).contains(&priority) {
            return Err(Error::invalid(format!(
                "priority must be between {MIN_PRIORITY} and {MAX_PRIORITY}"
            )));
        }
        let run_at = match (self.run_at, self.delay_ms) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid("give run_at or delay_ms, not both"));
            }
            (Some(text), None) => Timestamp::parse_rfc3339(&text)
                .ok_or_else(|| Error::invalid("run_at must be an RFC 3339 time"))?,
            (None, Some(ms)) => now.plus_ms(ms),
            (None, None) => now,
        };
        let run_at = match &self.debounce {
            Some(debounce) => {
                if self.idempotency_key.is_some() {
                    return Err(Error::invalid("give idempotency_key or debounce, not both"));
                }
                check_key("debounce.key", &debounce.key, limits)?;
                if !(1..=MAX_DEBOUNCE_WINDOW_MS).contains(&debounce.window_ms) {
                    return Err(Error::invalid(format!(
                        "debounce.window_ms must be between 1 and {MAX_DEBOUNCE_WINDOW_MS}"
                    )));
                }
                run_at.max(now.plus_ms(debounce.window_ms))
            }
            None => run_at,
        };
        let max_attempts = self.max_attempts.unwrap_or(policy.max_attempts());
        check_max_attempts(max_attempts)?;
        let backoff = self.backoff.unwrap_or(policy.backoff());
        backoff.validate()?;
        let lease_ms = self.lease_ms.unwrap_or(policy.lease_ms());
        check_lease_ms(lease_ms)?;
        for (what, key) in [
            ("idempotency_key", &self.idempotency_key),
            ("ordering_key", &self.ordering_key),
        ] {
            if let Some(key) = key {
                check_key(what, key, limits)?;
            }
        }
        let mut tags = self.tags.unwrap_or_default();
        if tags.len() > limits.max_tags {
            return Err(Error::invalid(format!(
                "a job may have at most {} tags",
                limits.max_tags
            )));
        }
        for (k, v) in &tags {
            check_key("tag key", k, limits)?;
            if v.len() > limits.max_key_len {
                return Err(Error::invalid(format!(
                    "tag value of {k:?} is longer than {} bytes",
                    limits.max_key_len
                )));
            }
        }
        if tags.keys().any(|k| k.starts_with("keel.object.")) {
            return Err(Error::invalid(
                "tag keys starting with keel.object. are Keel's (give object instead)",
            ));
        }
        let ordering_key = match (self.object, self.ordering_key) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "give object or ordering_key, not both: an object's jobs are ordered by it",
                ));
            }
            (Some(object), None) => {
                object.check()?;
                let key = object.ordering_key();
                tags.insert(crate::handler::state::TYPE_TAG.to_owned(), object.kind);
                tags.insert(crate::handler::state::KEY_TAG.to_owned(), object.key);
                Some(key)
            }
            (None, key) => key,
        };
        Ok(NewJob {
            payload: self.payload,
            priority: priority as i16,
            run_at,
            max_attempts,
            backoff,
            lease_ms,
            idempotency_key: self.idempotency_key,
            debounce_key: self.debounce.map(|d| d.key),
            ordering_key,
            tags,
            traceparent: self.traceparent,
        })
    }
}

fn check_key(what: &str, key: &str, limits: &Limits) -> Result<(), Error> {
    if key.is_empty() || key.len() > limits.max_key_len {
        return Err(Error::invalid(format!(
            "{what} must be 1 to {} bytes",
            limits.max_key_len
        )));
    }
    Ok(())
}

/// How a worker wants a failure handled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retry {
    /// `false` sends the job to `dead` at once.
    pub retry: bool,
    /// Overrides the backoff delay for this retry.
    pub retry_after_ms: Option<u64>,
}

/// The result of a lease: the new lease number and when it runs out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseGrant {
    pub lease_seq: u64,
    pub expires_at: Timestamp,
}

/// What a transition did, for counting and for waking leasers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// The job can be leased now.
    Ready,
    /// The job waits for its `run_at`.
    Scheduled,
    Dead,
}

/// The part of a job that transitions change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobLifecycle {
    pub state: JobState,
    /// Leases taken in the current round of attempts (reset by redrive).
    pub attempt: u32,
    pub max_attempts: u32,
    pub run_at: Timestamp,
    /// Leases taken over the job's whole life; the fencing number in lease tokens.
    pub lease_seq: u64,
    pub lease_expires_at: Option<Timestamp>,
}

impl JobLifecycle {
    pub fn new(job: &NewJob, now: Timestamp) -> Self {
        JobLifecycle {
            state: if job.run_at > now {
                JobState::Scheduled
            } else {
                JobState::Ready
            },
            attempt: 0,
            max_attempts: job.max_attempts,
            run_at: job.run_at,
            lease_seq: 0,
            lease_expires_at: None,
        }
    }

    fn wrong_state(&self, action: &str) -> Error {
        Error::new(
            ErrorCode::InvalidState,
            format!("cannot {action} a job that is {}", self.state.as_str()),
        )
    }

    /// `scheduled` → `ready` once `run_at` has come. Returns whether it moved.
    pub fn promote(&mut self, now: Timestamp) -> bool {
        if self.state == JobState::Scheduled && self.run_at <= now {
            self.state = JobState::Ready;
            return true;
        }
        false
    }

    pub fn lease(&mut self, now: Timestamp, lease_ms: u64) -> Result<LeaseGrant, Error> {
        self.lease_as(now, lease_ms, self.lease_seq + 1)
    }

    /// [`JobLifecycle::lease`] under a fencing number the caller chose: a
    /// store that hands leases out before they are durable draws them from a
    /// counter no earlier lease (before a crash, or rolled back) can reach.
    /// The number must exceed every earlier one of the job.
    pub fn lease_as(
        &mut self,
        now: Timestamp,
        lease_ms: u64,
        lease_seq: u64,
    ) -> Result<LeaseGrant, Error> {
        if self.state != JobState::Ready {
            return Err(self.wrong_state("lease"));
        }
        if lease_seq <= self.lease_seq {
            return Err(Error::internal(format!(
                "lease number {lease_seq} does not exceed the job's last, {}",
                self.lease_seq
            )));
        }
        self.state = JobState::Leased;
        self.attempt += 1;
        self.lease_seq = lease_seq;
        let expires_at = now.plus_ms(lease_ms);
        self.lease_expires_at = Some(expires_at);
        Ok(LeaseGrant {
            lease_seq: self.lease_seq,
            expires_at,
        })
    }

    /// Whether `lease_seq` names the current, unexpired lease. A lease past its
    /// expiry is lost even before maintenance has reclaimed it: the clock, not
    /// the reclaimer's timing, decides.
    pub fn check_lease(&self, lease_seq: u64, now: Timestamp) -> Result<(), Error> {
        match self.lease_expires_at {
            Some(expires_at)
                if self.state == JobState::Leased
                    && self.lease_seq == lease_seq
                    && now < expires_at =>
            {
                Ok(())
            }
            _ => Err(Error::lease_lost()),
        }
    }

    pub fn heartbeat(
        &mut self,
        lease_seq: u64,
        now: Timestamp,
        lease_ms: u64,
    ) -> Result<Timestamp, Error> {
        self.check_lease(lease_seq, now)?;
        let expires_at = now.plus_ms(lease_ms);
        self.lease_expires_at = Some(expires_at);
        Ok(expires_at)
    }

    pub fn complete(&mut self, lease_seq: u64, now: Timestamp) -> Result<(), Error> {
        self.check_lease(lease_seq, now)?;
        self.state = JobState::Succeeded;
        self.lease_expires_at = None;
        Ok(())
    }

    /// A failed attempt: back to `scheduled` after the backoff (or `ready` when
    /// the delay is zero), or `dead` when attempts are spent or `retry` is false.
    /// `unit` is a uniform draw in `[0, 1)` for the jitter.
    pub fn fail(
        &mut self,
        lease_seq: u64,
        now: Timestamp,
        retry: Retry,
        backoff: &Backoff,
        unit: f64,
    ) -> Result<Transition, Error> {
        self.check_lease(lease_seq, now)?;
        self.lease_expires_at = None;
        if !retry.retry || self.attempt >= self.max_attempts {
            self.state = JobState::Dead;
            return Ok(Transition::Dead);
        }
        let delay = retry
            .retry_after_ms
            .unwrap_or_else(|| backoff.delay_ms(self.attempt, unit));
        self.run_at = now.plus_ms(delay);
        Ok(self.ready_or_scheduled(now))
    }

    fn ready_or_scheduled(&mut self, now: Timestamp) -> Transition {
        if self.run_at <= now {
            self.state = JobState::Ready;
            Transition::Ready
        } else {
            self.state = JobState::Scheduled;
            Transition::Scheduled
        }
    }

    /// Reclaims a lease that ran out: a failed attempt that returns the job to
    /// `ready` at once, or sends it to `dead` when it was the last attempt.
    /// `None` when the lease has not expired (or there is none).
    pub fn expire(&mut self, now: Timestamp) -> Option<Transition> {
        match self.lease_expires_at {
            Some(expires_at) if self.state == JobState::Leased && expires_at <= now => {
                self.lease_expires_at = None;
                if self.attempt >= self.max_attempts {
                    self.state = JobState::Dead;
                    Some(Transition::Dead)
                } else {
                    self.state = JobState::Ready;
                    self.run_at = now;
                    Some(Transition::Ready)
                }
            }
            _ => None,
        }
    }

    pub fn cancel(&mut self) -> Result<(), Error> {
        if self.state.is_final() {
            return Err(self.wrong_state("cancel"));
        }
        self.state = JobState::Cancelled;
        self.lease_expires_at = None;
        Ok(())
    }

    /// `dead` → `ready` with a fresh round of attempts. `lease_seq` is kept, so
    /// tokens from before the redrive stay stale.
    pub fn redrive(&mut self, now: Timestamp) -> Result<(), Error> {
        if self.state != JobState::Dead {
            return Err(self.wrong_state("redrive"));
        }
        self.state = JobState::Ready;
        self.attempt = 0;
        self.run_at = now;
        Ok(())
    }
}

/// One failed attempt, as kept in the job's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttemptError {
    pub attempt: u32,
    pub message: String,
    pub at: Timestamp,
}

/// A job as stored, everything about it (the API shows it as
/// `keel_api::jobs::Job`).
#[derive(Clone, Debug)]
pub struct Job {
    pub id: JobId,
    pub queue: String,
    pub state: JobState,
    pub payload: Box<RawValue>,
    pub priority: i16,
    pub attempt: u32,
    pub max_attempts: u32,
    pub run_at: Timestamp,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub result: Option<Box<RawValue>>,
    pub errors: Vec<AttemptError>,
    pub tags: BTreeMap<String, String>,
    pub ordering_key: Option<String>,
    pub idempotency_key: Option<String>,
    pub lease_expires_at: Option<Timestamp>,
    pub lease_ms: u64,
    pub backoff: Backoff,
    pub traceparent: Option<crate::TraceParent>,
}

/// A tag as people write it: `key:value` (the API's query form) or
/// `key=value` (how tags are set), split at the first of the two, so one
/// syntax works everywhere and the other is accepted.
pub fn parse_tag(text: &str) -> Result<(String, String), Error> {
    let at = text.find([':', '=']).filter(|&at| at > 0).ok_or_else(|| {
        Error::invalid(format!("a tag is key:value (or key=value), not {text:?}"))
    })?;
    Ok((text[..at].to_owned(), text[at + 1..].to_owned()))
}

#[cfg(test)]
mod tests;
