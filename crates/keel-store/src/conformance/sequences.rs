//! Random interleavings of leases, acks, heartbeats, cancels and time.

use super::*;

#[derive(Clone, Debug)]
enum Op {
    Lease(u32),
    /// Ack the n-th token ever handed out (stale or not).
    Complete(usize),
    Fail(usize, bool),
    Heartbeat(usize),
    Cancel(usize),
    /// Move time and run maintenance.
    Advance(u64),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        (1u32..4).prop_map(Op::Lease),
        (0usize..32).prop_map(Op::Complete),
        (0usize..32, any::<bool>()).prop_map(|(n, retry)| Op::Fail(n, retry)),
        (0usize..32).prop_map(Op::Heartbeat),
        (0usize..8).prop_map(Op::Cancel),
        prop_oneof![Just(10u64), Just(1_000), Just(31_000)].prop_map(Op::Advance),
    ]
}

/// Whatever workers and time do: every job is in exactly one state (none is
/// lost), a job is completed at most once, only with the newest token, and no
/// token is handed out twice.
pub(super) fn random_operation_sequences_lose_nothing(
    open: impl Fn() -> Pin<Box<dyn Future<Output = Harness>>>,
) {
    use proptest::prelude::*;
    use std::collections::{HashMap, HashSet};
    let config = ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    };
    proptest!(config, |(ops in proptest::collection::vec(op(), 1..60))| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let h = open().await;
            let q = queue("prop");
            let mut jobs: Vec<NewJob> = (0..8).map(|i| job(&i.to_string())).collect();
            jobs[1].ordering_key = Some("k".into());
            jobs[2].ordering_key = Some("k".into());
            jobs[3].max_attempts = 1;
            let ids = enqueue(&*h.store, &q, jobs).await;
            let mut now = T0;
            let mut tokens: Vec<LeaseToken> = Vec::new();
            let mut newest: HashMap<JobId, u64> = HashMap::new();
            let mut completed: HashSet<JobId> = HashSet::new();
            for op in ops {
                match op {
                    Op::Lease(n) => {
                        for leased in lease(&*h.store, &q, n, now).await {
                            prop_assert!(!tokens.contains(&leased.lease_token), "a token handed out twice");
                            prop_assert!(!completed.contains(&leased.id), "a completed job leased again");
                            newest.insert(leased.id, leased.lease_token.lease_seq);
                            tokens.push(leased.lease_token);
                        }
                    }
                    Op::Complete(n) | Op::Fail(n, _) | Op::Heartbeat(n) if n >= tokens.len() => {}
                    Op::Complete(n) => {
                        let token = tokens[n];
                        if ack(&*h.store, token, complete(), now).await.is_ok() {
                            prop_assert!(completed.insert(token.job), "completed twice");
                            prop_assert_eq!(newest.get(&token.job), Some(&token.lease_seq), "a stale token completed");
                        }
                    }
                    Op::Fail(n, retry) => {
                        let token = tokens[n];
                        if ack(&*h.store, token, fail(retry), now).await.is_ok() {
                            prop_assert_eq!(newest.get(&token.job), Some(&token.lease_seq), "a stale token failed");
                        }
                    }
                    Op::Heartbeat(n) => {
                        let token = tokens[n];
                        if h.store.job_heartbeat(&ns(), token, None, now).await.is_ok() {
                            prop_assert_eq!(newest.get(&token.job), Some(&token.lease_seq), "a stale token heartbeat");
                        }
                    }
                    Op::Cancel(n) => {
                        let _ = h.store.job_cancel(&ns(), ids[n], now).await;
                    }
                    Op::Advance(ms) => {
                        now = now.plus_ms(ms);
                        h.store.maintenance_run(now).await.unwrap();
                    }
                }
                let stats = h.store.queue_stats(&q).await.unwrap();
                prop_assert_eq!(stats.counts.values().sum::<u64>(), ids.len() as u64, "a job was lost or doubled");
                prop_assert_eq!(stats.counts.get(&JobState::Succeeded).copied().unwrap_or(0), completed.len() as u64);
            }
            for id in &ids {
                let job = h.store.job_get(&ns(), *id).await.unwrap();
                prop_assert_eq!(job.state == JobState::Succeeded, completed.contains(id));
                prop_assert!(job.attempt <= job.max_attempts);
            }
            h.store.close().await;
            Ok(())
        })?;
    });
}
