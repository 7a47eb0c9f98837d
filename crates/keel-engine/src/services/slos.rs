//! The SLO pass, every few seconds on every node: adds what the node
//! counted to the store, re-reads the queues' and topics' objectives, measures each
//! objective from the store's sums into the `keel_slo_` gauges, and, on the
//! maintenance leader alone, publishes each alert that starts or stops
//! firing as an event on its namespace's `keel.alerts` topic, and opens or
//! resolves its incident (keyed `slo/{kind}/{name}/{objective}/{window}`,
//! paged through the namespace's `default` escalation policy if it has one).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use keel_core::monitor::{Action, IncidentEvent, Severity};
use keel_core::{Clock, Error, ErrorCode, NewEvent, TopicName};
use keel_store::MaintenanceStore;
use serde_json::json;

use crate::monitors::MonitorService;
use crate::slos::{ALERTS_TOPIC, SloService, Transition};
use crate::topics::TopicService;
use crate::{Shutdown, metrics};

pub struct Slos {
    slos: Arc<SloService>,
    /// Where alerts are published, like any event.
    topics: Arc<TopicService>,
    /// Where an alert opens its incident.
    monitors: Arc<MonitorService>,
    leader: Arc<dyn MaintenanceStore>,
    clock: Arc<dyn Clock>,
    every: Duration,
}

impl Slos {
    pub fn new(
        (slos, topics, monitors): (Arc<SloService>, Arc<TopicService>, Arc<MonitorService>),
        leader: Arc<dyn MaintenanceStore>,
        clock: Arc<dyn Clock>,
        every: Duration,
    ) -> Self {
        Slos {
            slos,
            topics,
            monitors,
            leader,
            clock,
            every,
        }
    }

    pub async fn run(self, shutdown: Shutdown) {
        let every = self.every;
        // Objectives set before a restart count from the start, not from
        // the first pass.
        if let Err(e) = self.slos.refresh().await {
            tracing::warn!(error = %e, "reading the SLO objectives failed");
        }
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = shutdown.clone().wait() => {
                    // What this node counted last is not left behind.
                    let _ = self.slos.flush().await;
                    return;
                }
            }
            if let Err(e) = self.pass().await {
                tracing::warn!(error = %e, "SLO pass failed");
            }
        }
    }

    /// One pass; public so that tests drive it with their own clock.
    pub async fn pass(&self) -> Result<(), Error> {
        self.slos.flush().await?;
        self.slos.refresh().await?;
        let statuses = self.slos.statuses(None, self.clock.now()).await?;
        for s in &statuses {
            metrics::slo_status(&s.subject, &s.status);
        }
        if matches!(self.leader.maintenance_leader().await, Ok(true)) {
            for transition in self.slos.transitions(&statuses) {
                if let Err(e) = self.publish(&transition).await {
                    self.slos.undo(&transition);
                    return Err(e);
                }
            }
        } else {
            self.slos.forget_alerts();
        }
        metrics::slo_pass();
        Ok(())
    }

    async fn publish(&self, t: &Transition) -> Result<(), Error> {
        let alert = t.alert();
        let state = if t.firing { "firing" } else { "resolved" };
        let objective = t.status.objective.as_str();
        let data = json!({
            "state": state,
            "namespace": t.subject.namespace.as_str(),
            "kind": t.subject.kind,
            "name": t.subject.name,
            "objective": objective,
            "target": t.status.target,
            "value": t.status.value,
            "severity": alert.severity,
            "long_window": alert.long_window().name,
            "short_window": alert.short_window().name,
            "factor": alert.factor,
            "burn_rate_long": t.status.burn_rates[alert.long],
            "burn_rate_short": t.status.burn_rates[alert.short],
            "budget_remaining": t.status.budget_remaining,
        });
        let now = self.clock.now();
        let event = NewEvent {
            id: self.topics.new_id(),
            generated_id: true,
            kind: format!("keel.slo.{state}"),
            source: "keel/slo".to_owned(),
            key: Some(format!(
                "{}/{}/{objective}/{}",
                t.subject.kind.as_str(),
                t.subject.name,
                alert.long_window().name
            )),
            time: now,
            data: data.to_string(),
            headers: BTreeMap::new(),
        };
        let topic = TopicName::new(ALERTS_TOPIC)?;
        self.topics
            .publish(&t.subject.namespace, &topic, vec![event])
            .await?;
        let incident = IncidentEvent {
            dedup_key: format!(
                "slo/{}/{}/{objective}/{}",
                t.subject.kind.as_str(),
                t.subject.name,
                alert.long_window().name
            ),
            action: if t.firing {
                Action::Trigger
            } else {
                Action::Resolve
            },
            summary: Some(format!(
                "{} {} burns its {objective} error budget ({} window)",
                t.subject.kind.as_str(),
                t.subject.name,
                alert.long_window().name
            )),
            severity: Some(match alert.severity {
                keel_core::slo::Severity::Page => Severity::Critical,
                keel_core::slo::Severity::Ticket => Severity::Warning,
            }),
            source: Some("keel/slo".to_owned()),
            details: Some(data),
            escalation: None,
        };
        match self
            .monitors
            .event(&t.subject.namespace, incident, "keel/slo")
            .await
        {
            Ok(_) => {}
            // Resolved by hand already.
            Err(e) if e.code == ErrorCode::NotFound && !t.firing => {}
            Err(e) => return Err(e),
        }
        if t.firing {
            tracing::warn!(subject = %t.subject, objective, window = alert.long_window().name, "SLO alert firing");
        } else {
            tracing::info!(subject = %t.subject, objective, window = alert.long_window().name, "SLO alert resolved");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test: a panic is a failed check")]

    use keel_core::job::{JobRequest, Retry};
    use keel_core::slo::Slo;
    use keel_core::{Clock, Limits, Namespace, QueueName, QueuePolicy, QueueRef, Timestamp};
    use keel_store::{Ack, AckOutcome, EventQuery, LeaseRequest, Store};
    use keel_store_sqlite::SqliteStore;

    use super::*;
    use crate::manual_clock::ManualClock;
    use crate::{Engine, EngineConfig, ShutdownTrigger};

    struct Node {
        engine: Arc<Engine>,
        store: Arc<dyn Store>,
        clock: Arc<ManualClock>,
        queue: QueueRef,
        _dir: tempfile::TempDir,
        _trigger: ShutdownTrigger,
    }

    async fn node(slo: Slo) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(dir.path(), &Limits::default()).unwrap());
        let clock = ManualClock::at(Timestamp::from_millis(1_800_000_000_000));
        let (trigger, shutdown) = ShutdownTrigger::new();
        let engine = Engine::new(
            store.clone(),
            clock.clone(),
            Limits::default(),
            shutdown,
            EngineConfig::default(),
        );
        let queue = QueueRef {
            namespace: Namespace::new("acme").unwrap(),
            queue: QueueName::new("emails").unwrap(),
        };
        let policy = QueuePolicy {
            max_attempts: Some(1),
            slo: Some(slo),
            ..QueuePolicy::default()
        };
        store
            .queue_policy_set(&queue, policy, clock.now())
            .await
            .unwrap();
        Node {
            engine,
            store,
            clock,
            queue,
            _dir: dir,
            _trigger: trigger,
        }
    }

    impl Node {
        /// Enqueues `n` jobs, lets `wait_ms` pass, leases them all, then
        /// completes the first `succeed` and fails the rest for good.
        async fn work(&self, n: usize, wait_ms: i64, succeed: usize) {
            let jobs = (0..n)
                .map(|_| serde_json::from_str::<JobRequest>(r#"{"payload":{}}"#).unwrap())
                .collect();
            self.engine
                .jobs()
                .enqueue_batch(&self.queue, jobs)
                .await
                .unwrap();
            self.clock.advance(wait_ms);
            let req = LeaseRequest {
                queue: self.queue.clone(),
                worker_id: "w".into(),
                max_jobs: n as u32,
                lease_ms: None,
            };
            let leased = self
                .engine
                .jobs()
                .lease(&req, Duration::ZERO)
                .await
                .unwrap();
            assert_eq!(leased.len(), n);
            let acks = leased
                .iter()
                .enumerate()
                .map(|(i, job)| Ack {
                    token: job.lease_token,
                    outcome: if i < succeed {
                        AckOutcome::Complete { result: None }
                    } else {
                        AckOutcome::Fail {
                            message: "boom".into(),
                            retry: Retry {
                                retry: false,
                                retry_after_ms: None,
                            },
                        }
                    },
                })
                .collect();
            self.engine
                .jobs()
                .ack(&self.queue.namespace, acks)
                .await
                .unwrap();
        }

        /// The SLO pass of this node.
        fn pass(&self) -> Slos {
            Slos::new(
                (
                    self.engine.slos().clone(),
                    self.engine.topics().clone(),
                    self.engine.monitors().clone(),
                ),
                self.store.clone(),
                self.clock.clone(),
                Duration::from_secs(10),
            )
        }

        /// Every objective measured now, from the store.
        async fn statuses(&self) -> Vec<crate::slos::SubjectStatus> {
            let namespace = Some(&self.queue.namespace);
            self.engine
                .slos()
                .statuses(namespace, self.clock.now())
                .await
                .unwrap()
        }

        async fn alerts(&self) -> Vec<serde_json::Value> {
            let query = EventQuery {
                after: 0,
                key: None,
                kind: None,
                limit: 100,
            };
            let topic = TopicName::new(ALERTS_TOPIC).unwrap();
            match self
                .store
                .events_read(&self.queue.namespace, &topic, &query)
                .await
            {
                Ok(events) => events
                    .iter()
                    .map(|e| serde_json::from_str(&e.event.data).unwrap())
                    .collect(),
                Err(_) => Vec::new(),
            }
        }
    }

    #[tokio::test]
    async fn burning_the_budget_fires_the_page_then_resolves_it() {
        let node = node(Slo {
            wait_p99_ms: Some(50),
            success_ratio: Some(0.99),
        })
        .await;
        node.engine.slos().refresh().await.unwrap();
        let slos = node.pass();
        // 100 jobs: 90 leased fast and succeeded, 10 after 200 ms and dead.
        node.work(90, 1, 90).await;
        node.work(10, 200, 0).await;
        slos.pass().await.unwrap();

        let statuses = node.statuses().await;
        assert_eq!(statuses.len(), 2);
        let wait = &statuses[0].status;
        assert_eq!(wait.objective, keel_core::slo::Objective::WaitP99Ms);
        assert_eq!((wait.good, wait.total), (90, 100));
        // 10 % slow against a 1 % budget: a burn rate of 10 everywhere,
        // under the page's 14.4 and over the ticket's 1.
        assert!((wait.burn_rates[0] - 10.0).abs() < 1e-9);
        assert_eq!(wait.firing, [false, true, true]);
        assert!(wait.value.unwrap() > 100.0 && wait.value.unwrap() <= 200.0);
        let success = &statuses[1].status;
        assert_eq!((success.good, success.total), (90, 100));
        assert_eq!(success.value, Some(0.9));
        assert!((success.burn_rates[2] - 10.0).abs() < 1e-6);

        let fired = node.alerts().await;
        assert_eq!(fired.len(), 4, "{fired:#?}");
        assert!(fired.iter().all(|a| a["state"] == "firing"));
        assert_eq!(fired[0]["kind"], "queue");
        assert_eq!(fired[0]["name"], "emails");
        assert_eq!(fired[0]["long_window"], "6h");
        assert_eq!(fired[1]["severity"], "ticket");

        // Nothing changed: nothing more is published.
        slos.pass().await.unwrap();
        assert_eq!(node.alerts().await.len(), 4);

        // Ten minutes later, 100 more jobs all fast and succeeded: the
        // 6 hours burn at 5x (10 bad of 200), under the page's 6: it
        // resolves; the ticket (3 days and 6 hours over 1x) holds.
        node.clock.advance(10 * 60_000);
        node.work(100, 1, 100).await;
        slos.pass().await.unwrap();
        let all = node.alerts().await;
        let resolved = &all[4..];
        assert_eq!(resolved.len(), 2, "{all:#?}");
        assert!(
            resolved
                .iter()
                .all(|a| a["state"] == "resolved" && a["long_window"] == "6h")
        );
        // Each alert opened its incident; the resolved ones resolved theirs.
        let ns = &node.queue.namespace;
        let incidents = |status| {
            let query = keel_store::IncidentQuery {
                status: Some(status),
                limit: 10,
                ..keel_store::IncidentQuery::default()
            };
            let monitors = node.engine.monitors().clone();
            async move { monitors.incidents(ns, &query).await.unwrap() }
        };
        use keel_core::monitor::IncidentStatus;
        let open = incidents(IncidentStatus::Open).await;
        assert_eq!(open.len(), 2);
        assert!(
            open.iter().all(|i| i.dedup_key.ends_with("/3d")),
            "{open:#?}"
        );
        let resolved = incidents(IncidentStatus::Resolved).await;
        let mut keys: Vec<&str> = resolved.iter().map(|i| i.dedup_key.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "slo/queue/emails/success_ratio/6h",
                "slo/queue/emails/wait_p99_ms/6h"
            ]
        );
    }

    #[tokio::test]
    async fn queues_without_objectives_count_nothing() {
        let node = node(Slo {
            wait_p99_ms: Some(50),
            success_ratio: None,
        })
        .await;
        // Objectives not read yet: the hooks count nothing.
        node.work(5, 100, 5).await;
        let slos = node.pass();
        slos.pass().await.unwrap();
        let statuses = node.statuses().await;
        assert_eq!(statuses.len(), 1);
        assert_eq!(statuses[0].status.total, 0);
        // Read now (the pass refreshed them): counted from here on.
        node.work(5, 100, 5).await;
        slos.pass().await.unwrap();
        let statuses = node.statuses().await;
        assert_eq!((statuses[0].status.good, statuses[0].status.total), (0, 5));
    }
}
