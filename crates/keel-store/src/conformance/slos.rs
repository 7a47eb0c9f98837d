//! SLO minutes: tallies from several writers add up, sums cover their
//! windows and no more, subjects (a queue and a topic of one name) and
//! namespaces stay apart, objectives are found from queue and topic
//! policies, and old minutes are pruned.

use keel_core::slo::{Counts, Histogram, Slo, Subject, Tally, WINDOWS, minute, window_starts};
use keel_core::{TopicName, TopicPolicy};

use super::*;
use crate::MinuteTally;

cases![
    tallies_add_up_per_minute_and_sum_over_windows,
    objectives_come_from_queue_policies,
];

fn tally(waits: &[u64], slow: u64, succeeded: u64, failed: u64) -> Tally {
    let mut t = Tally::default();
    for &ms in waits {
        t.waited(ms, None);
    }
    t.counts.slow = slow;
    t.counts.succeeded = succeeded;
    t.counts.failed = failed;
    t
}

fn at_minute(subject: &Subject, minute: i64, tally: Tally) -> MinuteTally {
    MinuteTally {
        subject: subject.clone(),
        minute,
        tally,
    }
}

async fn tallies_add_up_per_minute_and_sum_over_windows(h: Harness) {
    let s = h.store.clone();
    let q = Subject::queue(&queue("q"));
    let theirs = Subject::queue(&QueueRef {
        namespace: Namespace::new("other").unwrap(),
        queue: QueueName::new("q").unwrap(),
    });
    let topic = Subject::topic(&ns(), &TopicName::new("q").unwrap());
    let now = at(100 * 60_000);
    let m = minute(now);
    // Two nodes count the current minute; one counted 10 minutes ago, and
    // one minute is older than the month.
    s.slo_record(vec![
        at_minute(&q, m, tally(&[1, 70], 1, 5, 1)),
        at_minute(&q, m - 10, tally(&[3], 0, 2, 0)),
        at_minute(&theirs, m, tally(&[1], 0, 100, 0)),
        at_minute(&topic, m, tally(&[], 0, 7, 3)),
    ])
    .await
    .unwrap();
    s.slo_record(vec![
        at_minute(&q, m, tally(&[2], 0, 1, 0)),
        at_minute(&q, m - WINDOWS[5].minutes, tally(&[1], 0, 50, 50)),
    ])
    .await
    .unwrap();
    s.close().await;
    let s = (h.reopen)().await;
    let sums = s.slo_sums(&q, window_starts(now)).await.unwrap();
    let current = Counts {
        waits: 3,
        slow: 1,
        succeeded: 6,
        failed: 1,
    };
    assert_eq!(sums[0], current, "5m: the current minute, both nodes");
    let with_older = Counts {
        waits: 4,
        slow: 1,
        succeeded: 8,
        failed: 1,
    };
    assert_eq!(sums[1], with_older, "30m: and the minute 10 ago");
    assert_eq!(sums[5], with_older, "30d: not the minute before it");
    let waits = s.slo_waits(&q, m - 59).await.unwrap();
    let mut expected = Histogram::default();
    for ms in [1, 70, 3, 2] {
        expected.record(ms);
    }
    assert_eq!(waits, expected);
    assert_eq!(
        s.slo_sums(&theirs, window_starts(now)).await.unwrap()[0].succeeded,
        100
    );
    assert_eq!(
        s.slo_sums(&topic, window_starts(now)).await.unwrap()[0],
        Counts {
            waits: 0,
            slow: 0,
            succeeded: 7,
            failed: 3,
        }
    );
    assert_eq!(
        s.slo_waits(&Subject::queue(&queue("none")), m - 59)
            .await
            .unwrap(),
        Histogram::default()
    );
    assert_eq!(s.slo_prune(m - WINDOWS[5].minutes + 1).await.unwrap(), 1);
    assert_eq!(s.slo_sums(&q, [i64::MIN; 6]).await.unwrap()[0], with_older);
}

async fn objectives_come_from_queue_policies(h: Harness) {
    let s = h.store.clone();
    assert_eq!(s.slo_objectives().await.unwrap(), []);
    let slo = Slo {
        wait_p99_ms: Some(50),
        success_ratio: Some(0.9995),
    };
    let with = QueuePolicy {
        slo: Some(slo),
        ..QueuePolicy::default()
    };
    s.queue_policy_set(&queue("measured"), with.clone(), T0)
        .await
        .unwrap();
    s.queue_policy_set(&queue("plain"), QueuePolicy::default(), T0)
        .await
        .unwrap();
    s.queue_policy_set(&queue("dropped"), with, T0)
        .await
        .unwrap();
    s.queue_policy_set(&queue("dropped"), QueuePolicy::default(), at(1))
        .await
        .unwrap();
    let orders = TopicName::new("orders").unwrap();
    let topic_slo = Slo {
        wait_p99_ms: Some(1_000),
        success_ratio: None,
    };
    let with = TopicPolicy {
        slo: Some(topic_slo),
        ..TopicPolicy::default()
    };
    s.topic_put(&ns(), &orders, &with, T0).await.unwrap();
    let (stored, _) = s.topic_put(&ns(), &orders, &with, at(1)).await.unwrap();
    assert_eq!(stored.policy.slo, Some(topic_slo));
    s.topic_put(
        &ns(),
        &TopicName::new("plain").unwrap(),
        &TopicPolicy::default(),
        T0,
    )
    .await
    .unwrap();
    s.close().await;
    let s = (h.reopen)().await;
    let found = s.slo_objectives().await.unwrap();
    assert_eq!(
        found,
        [
            crate::Objectives {
                subject: Subject::queue(&queue("measured")),
                slo
            },
            crate::Objectives {
                subject: Subject::topic(&ns(), &orders),
                slo: topic_slo
            }
        ]
    );
    assert_eq!(
        s.topic_get(&ns(), &orders).await.unwrap().policy.slo,
        Some(topic_slo)
    );
}
