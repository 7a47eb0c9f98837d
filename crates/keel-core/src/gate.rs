//! Why a job is not running: the gates that hold a scheduled or ready job
//! back, decided from what the store knows of it and its queue (and when a
//! worker last asked for work), so `GET .../jobs/{id}` can answer "why is
//! this waiting?" the same way on every store.

use serde::{Deserialize, Serialize};

use crate::{JobId, JobState, Timestamp};

/// A worker that has not asked for work for this long counts as absent.
pub const NO_WORKER_AFTER_MS: u64 = 60_000;

/// Which gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GateKind {
    /// Not due yet (a delay, a retry's backoff): `eligible_at`.
    Scheduled,
    /// Its queue is paused.
    Paused,
    /// Its queue's rate limit lets the next job go at `eligible_at`
    /// (`limit` per period).
    RateLimit,
    /// Its queue has `limit` jobs leased already (`used`).
    Concurrency,
    /// Its flow key (`key`) has `limit` jobs leased already (`used`).
    KeyConcurrency,
    /// Its flow key's (`key`) rate limit lets the key's next job go at
    /// `eligible_at` (`limit` per period).
    KeyRateLimit,
    /// Its key (`key`) takes turns with the queue's other keys, and the job
    /// is `position` in its key's line (1: the key's next job).
    Fairness,
    /// An earlier job of its ordering key (`key`) runs or waits first:
    /// `blocking_job`.
    OrderingKey,
    /// No worker has asked this node for the queue's jobs in the last minute.
    NoWorker,
}

/// One gate, with what it is waiting on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Gate {
    pub gate: GateKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocking_job: Option<JobId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eligible_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
}

impl Gate {
    fn new(gate: GateKind) -> Self {
        Gate {
            gate,
            key: None,
            used: None,
            limit: None,
            blocking_job: None,
            eligible_at: None,
            position: None,
        }
    }

    /// The gate in words, for the CLI.
    pub fn describe(&self) -> String {
        match self.gate {
            GateKind::Scheduled => format!(
                "scheduled: due at {}",
                self.eligible_at.map(|t| t.to_string()).unwrap_or_default()
            ),
            GateKind::Paused => "the queue is paused".to_owned(),
            GateKind::RateLimit => format!(
                "rate limit: {} per period, next slot at {}",
                self.limit.unwrap_or(0),
                self.eligible_at.map(|t| t.to_string()).unwrap_or_default()
            ),
            GateKind::Concurrency => format!(
                "concurrency: {}/{} leased",
                self.used.unwrap_or(0),
                self.limit.unwrap_or(0)
            ),
            GateKind::KeyConcurrency => format!(
                "key {}: {}/{} leased",
                self.key.as_deref().unwrap_or_default(),
                self.used.unwrap_or(0),
                self.limit.unwrap_or(0)
            ),
            GateKind::KeyRateLimit => format!(
                "rate limit of key {}: {} per period, next slot at {}",
                self.key.as_deref().unwrap_or_default(),
                self.limit.unwrap_or(0),
                self.eligible_at.map(|t| t.to_string()).unwrap_or_default()
            ),
            GateKind::Fairness => format!(
                "fair share: key {} takes turns with the queue's other keys; this job is number {} in its line",
                self.key.as_deref().unwrap_or_default(),
                self.position.unwrap_or(0)
            ),
            GateKind::OrderingKey => format!(
                "ordering key {}: job {} goes first",
                self.key.as_deref().unwrap_or_default(),
                self.blocking_job.map(|j| j.to_string()).unwrap_or_default()
            ),
            GateKind::NoWorker => {
                "no worker asked for this queue's jobs in the last minute".to_owned()
            }
        }
    }
}

/// What the store knows of an unfinished job and its queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitFacts {
    pub state: JobState,
    pub run_at: Timestamp,
    pub paused: bool,
    /// Jobs of the queue leased now.
    pub leased: u64,
    pub max_concurrency: Option<u32>,
    /// The queue's rate limit and its state (the GCRA's TAT, µs).
    pub rate_limit: Option<crate::flow::Rate>,
    pub rate_tat_us: i64,
    pub ordering_key: Option<String>,
    /// The job that holds the ordering key, when it is another.
    pub key_holder: Option<JobId>,
    /// The job's flow key, the jobs of that key leased now and the
    /// queue's bound on them, when the queue has a `key`.
    pub flow_key: Option<String>,
    pub key_leased: u64,
    pub max_key_concurrency: Option<u32>,
    /// The queue's per-key rate limit and the job's key's state (µs).
    pub key_rate_limit: Option<crate::flow::Rate>,
    pub key_rate_tat_us: i64,
    /// When the queue shares by key: the job's place among its key's ready
    /// jobs (1: next).
    pub fair_position: Option<u64>,
}

/// The gates holding the job back at `now`; `since_lease_ms` is how long
/// ago a worker last asked for the queue's jobs (none: never). Empty for a
/// job that is not waiting or that the next lease call takes.
pub fn gates(facts: &WaitFacts, since_lease_ms: Option<u64>, now: Timestamp) -> Vec<Gate> {
    let mut gates = Vec::new();
    match facts.state {
        JobState::Scheduled => gates.push(Gate {
            eligible_at: Some(facts.run_at),
            ..Gate::new(GateKind::Scheduled)
        }),
        JobState::Ready => {}
        _ => return gates,
    }
    if facts.paused {
        gates.push(Gate::new(GateKind::Paused));
    }
    if let Some(rate) = facts.rate_limit
        && let Some(next) = rate.allowed(facts.rate_tat_us, now, 1).next_at
    {
        gates.push(Gate {
            limit: Some(u64::from(rate.limit)),
            eligible_at: Some(next),
            ..Gate::new(GateKind::RateLimit)
        });
    }
    if let Some(limit) = facts.max_concurrency
        && facts.leased >= u64::from(limit)
    {
        gates.push(Gate {
            used: Some(facts.leased),
            limit: Some(u64::from(limit)),
            ..Gate::new(GateKind::Concurrency)
        });
    }
    if let Some(limit) = facts.max_key_concurrency
        && facts.key_leased >= u64::from(limit)
    {
        gates.push(Gate {
            key: facts.flow_key.clone(),
            used: Some(facts.key_leased),
            limit: Some(u64::from(limit)),
            ..Gate::new(GateKind::KeyConcurrency)
        });
    }
    if let Some(rate) = facts.key_rate_limit
        && let Some(next) = rate.allowed(facts.key_rate_tat_us, now, 1).next_at
    {
        gates.push(Gate {
            key: facts.flow_key.clone(),
            limit: Some(u64::from(rate.limit)),
            eligible_at: Some(next),
            ..Gate::new(GateKind::KeyRateLimit)
        });
    }
    if let Some(position) = facts.fair_position.filter(|&p| p > 1) {
        gates.push(Gate {
            key: facts.flow_key.clone(),
            position: Some(position),
            ..Gate::new(GateKind::Fairness)
        });
    }
    if let Some(holder) = facts.key_holder {
        gates.push(Gate {
            key: facts.ordering_key.clone(),
            blocking_job: Some(holder),
            ..Gate::new(GateKind::OrderingKey)
        });
    }
    if since_lease_ms.is_none_or(|ms| ms >= NO_WORKER_AFTER_MS) {
        gates.push(Gate::new(GateKind::NoWorker));
    }
    gates
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_millis(1_000_000);

    fn facts(state: JobState) -> WaitFacts {
        WaitFacts {
            state,
            run_at: Timestamp::from_millis(5_000),
            paused: false,
            leased: 0,
            max_concurrency: None,
            rate_limit: None,
            rate_tat_us: 0,
            ordering_key: None,
            key_holder: None,
            flow_key: None,
            key_leased: 0,
            max_key_concurrency: None,
            key_rate_limit: None,
            key_rate_tat_us: 0,
            fair_position: None,
        }
    }

    fn kinds(gates: &[Gate]) -> Vec<GateKind> {
        gates.iter().map(|g| g.gate).collect()
    }

    #[test]
    fn a_ready_job_with_a_worker_waits_on_nothing() {
        assert!(gates(&facts(JobState::Ready), Some(0), NOW).is_empty());
        assert!(gates(&facts(JobState::Leased), None, NOW).is_empty());
    }

    #[test]
    fn every_gate_that_holds_is_listed() {
        let holder = JobId::from_bytes([7; 16]);
        let held = WaitFacts {
            paused: true,
            leased: 3,
            max_concurrency: Some(3),
            rate_limit: Some(crate::flow::Rate {
                limit: 10,
                period_ms: 1000,
                burst: Some(1),
            }),
            rate_tat_us: NOW.plus_ms(100).as_millis() * 1000,
            ordering_key: Some("acme".into()),
            key_holder: Some(holder),
            flow_key: Some("acme".into()),
            key_leased: 2,
            max_key_concurrency: Some(2),
            key_rate_limit: Some(crate::flow::Rate {
                limit: 5,
                period_ms: 1000,
                burst: Some(1),
            }),
            key_rate_tat_us: NOW.plus_ms(200).as_millis() * 1000,
            fair_position: Some(4),
            ..facts(JobState::Scheduled)
        };
        let all = gates(&held, Some(60_000), NOW);
        assert_eq!(
            kinds(&all),
            [
                GateKind::Scheduled,
                GateKind::Paused,
                GateKind::RateLimit,
                GateKind::Concurrency,
                GateKind::KeyConcurrency,
                GateKind::KeyRateLimit,
                GateKind::Fairness,
                GateKind::OrderingKey,
                GateKind::NoWorker
            ]
        );
        assert_eq!(all[0].eligible_at, Some(Timestamp::from_millis(5_000)));
        assert_eq!(all[2].eligible_at, Some(NOW.plus_ms(100)));
        assert_eq!((all[3].used, all[3].limit), (Some(3), Some(3)));
        assert_eq!(all[4].describe(), "key acme: 2/2 leased");
        assert_eq!(all[5].eligible_at, Some(NOW.plus_ms(200)));
        assert_eq!(all[5].key.as_deref(), Some("acme"));
        assert_eq!(all[6].position, Some(4));
        assert_eq!(all[7].blocking_job, Some(holder));
        assert_eq!(
            all[7].describe(),
            format!("ordering key acme: job {holder} goes first")
        );
        let room = WaitFacts {
            leased: 2,
            ..held.clone()
        };
        let recent = Some(59_999);
        let later = NOW.plus_ms(100);
        assert!(!kinds(&gates(&room, recent, later)).contains(&GateKind::Concurrency));
        assert!(!kinds(&gates(&room, recent, later)).contains(&GateKind::NoWorker));
        assert!(!kinds(&gates(&room, recent, later)).contains(&GateKind::RateLimit));
        let next_in_line = WaitFacts {
            fair_position: Some(1),
            ..held
        };
        let all = kinds(&gates(&next_in_line, recent, NOW.plus_ms(200)));
        assert!(!all.contains(&GateKind::Fairness));
        assert!(!all.contains(&GateKind::KeyRateLimit));
    }
}
