//! Queue policy: the defaults a queue gives its jobs and the bounds it keeps.
//! A job's own fields win over its queue's policy, which wins over Keel's defaults.

use serde::{Deserialize, Serialize};

use crate::flow::FlowKey;
use crate::flow::fair::Fairness;
use crate::limits::{MAX_LEASE_MS, MIN_LEASE_MS};
use crate::{Backoff, EndpointName, Error};

pub const DEFAULT_MAX_ATTEMPTS: u32 = 20;
pub const DEFAULT_LEASE_MS: u64 = 30_000;
pub const DEFAULT_RETENTION_MS: u64 = 24 * 3_600_000;
pub const DEFAULT_DEAD_RETENTION_MS: u64 = 7 * 24 * 3_600_000;
/// Attempts beyond this make no sense for a job and would only hide a bug.
pub const MAX_ATTEMPTS_LIMIT: u32 = 1000;

/// The body of `PUT /v1/namespaces/{ns}/queues/{queue}`; omitted fields fall back
/// to Keel's defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueuePolicy {
    pub max_attempts: Option<u32>,
    pub backoff: Option<Backoff>,
    pub lease_ms: Option<u64>,
    /// Most jobs leased at once from this queue; none means no bound.
    pub max_concurrency: Option<u32>,
    /// Most jobs leased per period (a GCRA over the whole queue, across
    /// nodes); none means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<crate::flow::Rate>,
    /// Where each job's flow key comes from; the key limits and fairness
    /// below apply per key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<FlowKey>,
    /// Most jobs of one key leased at once, across nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_key_concurrency: Option<u32>,
    /// Most jobs of one key leased per period (a GCRA per key, across
    /// nodes); none means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_rate_limit: Option<crate::flow::Rate>,
    /// The keys' weights in the queue's fair share (equal when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fairness: Option<Fairness>,
    /// How long succeeded and cancelled jobs are kept before they are deleted.
    pub retention_ms: Option<u64>,
    /// How long dead jobs are kept, for inspection and redrive.
    pub dead_retention_ms: Option<u64>,
    /// Keel delivers this queue's jobs to an endpoint instead of waiting
    /// for pull workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<Push>,
    /// Keel runs this handler for each of the queue's jobs instead of
    /// waiting for pull workers (docs/handlers.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<crate::HandlerName>,
    /// Objectives Keel measures the queue against, with burn-rate alerts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<crate::slo::Slo>,
}

/// A push queue's endpoint and how many of its jobs are delivered at once
/// on each node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Push {
    pub endpoint: EndpointName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
}

impl Push {
    /// Deliveries in flight when the policy names none.
    pub const DEFAULT_CONCURRENCY: u32 = 16;

    pub fn concurrency(&self) -> u32 {
        self.concurrency.unwrap_or(Self::DEFAULT_CONCURRENCY)
    }
}

impl QueuePolicy {
    pub fn validate(&self) -> Result<(), Error> {
        if let Some(n) = self.max_attempts {
            check_max_attempts(n)?;
        }
        if let Some(b) = &self.backoff {
            b.validate()?;
        }
        if let Some(ms) = self.lease_ms {
            check_lease_ms(ms)?;
        }
        if self.max_concurrency == Some(0) {
            return Err(Error::invalid("max_concurrency must be at least 1"));
        }
        if let Some(rate) = &self.rate_limit {
            rate.check("rate_limit")?;
        }
        if let Some(rate) = &self.key_rate_limit {
            rate.check("key_rate_limit")?;
        }
        if self.key.is_none()
            && let Some(field) = [
                ("max_key_concurrency", self.max_key_concurrency.is_some()),
                ("key_rate_limit", self.key_rate_limit.is_some()),
                ("fairness", self.fairness.is_some()),
            ]
            .iter()
            .find_map(|(name, set)| set.then_some(name))
        {
            return Err(Error::invalid(format!(
                "{field} needs a key (\"tag:NAME\" or \"ordering_key\")"
            )));
        }
        if self.max_key_concurrency == Some(0) {
            return Err(Error::invalid("max_key_concurrency must be at least 1"));
        }
        if let Some(fairness) = &self.fairness {
            fairness.check()?;
        }
        if let Some(push) = &self.push
            && !(1..=crate::endpoint::MAX_IN_FLIGHT).contains(&push.concurrency())
        {
            return Err(Error::invalid(format!(
                "push.concurrency must be between 1 and {}",
                crate::endpoint::MAX_IN_FLIGHT
            )));
        }
        if self.push.is_some() && self.handler.is_some() {
            return Err(Error::invalid(
                "a queue's jobs go to an endpoint (push) or a handler, not both",
            ));
        }
        if let Some(slo) = &self.slo {
            slo.check()?;
        }
        Ok(())
    }

    pub fn max_attempts(&self) -> u32 {
        self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS)
    }

    pub fn backoff(&self) -> Backoff {
        self.backoff.unwrap_or_default()
    }

    pub fn lease_ms(&self) -> u64 {
        self.lease_ms.unwrap_or(DEFAULT_LEASE_MS)
    }

    pub fn retention_ms(&self) -> u64 {
        self.retention_ms.unwrap_or(DEFAULT_RETENTION_MS)
    }

    pub fn dead_retention_ms(&self) -> u64 {
        self.dead_retention_ms.unwrap_or(DEFAULT_DEAD_RETENTION_MS)
    }
}

pub fn check_max_attempts(n: u32) -> Result<(), Error> {
    if !(1..=MAX_ATTEMPTS_LIMIT).contains(&n) {
        return Err(Error::invalid(format!(
            "max_attempts must be between 1 and {MAX_ATTEMPTS_LIMIT}"
        )));
    }
    Ok(())
}

pub fn check_lease_ms(ms: u64) -> Result<(), Error> {
    if !(MIN_LEASE_MS..=MAX_LEASE_MS).contains(&ms) {
        return Err(Error::invalid(format!(
            "lease_ms must be between {MIN_LEASE_MS} and {MAX_LEASE_MS}"
        )));
    }
    Ok(())
}
