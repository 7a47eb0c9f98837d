//! Schedules: a write applies only under the revision it read (so a slot
//! cannot fire twice), with its ledger rows and its jobs or not at all; the
//! ledger keeps the newest rows; due schedules come earliest first.

use keel_core::Error;
use keel_core::schedule::{LEDGER_KEEP, Outcome, ScheduleSpec, ScheduleState};

use super::*;
use crate::{LedgerEntry, ScheduleWrite, schedule_not_found};

cases![
    a_schedule_is_created_once_and_read_back_after_a_restart,
    a_fire_under_a_stale_revision_writes_nothing,
    the_ledger_keeps_the_newest_rows_and_replaces_a_buffered_slot,
    due_schedules_come_earliest_first_and_delete_takes_the_ledger,
];

fn spec() -> ScheduleSpec {
    serde_json::from_value(serde_json::json!({
        "every_ms": 60_000,
        "target": {"queue": "reports", "job": {"payload": {"k": 1}}},
    }))
    .unwrap()
}

pub(super) fn write(name: &str, rev: u64, next: Timestamp) -> ScheduleWrite {
    ScheduleWrite {
        namespace: ns(),
        name: name.into(),
        rev,
        spec: spec(),
        state: ScheduleState {
            next: Some(next),
            ..ScheduleState::default()
        },
        due_at: Some(next),
        ledger: Vec::new(),
        jobs: Vec::new(),
    }
}

fn entry(nominal: Timestamp, outcome: Outcome, seq: u64) -> LedgerEntry {
    LedgerEntry {
        nominal_time: nominal,
        fired_at: (outcome == Outcome::Fired).then_some(nominal),
        outcome,
        target_id: (outcome == Outcome::Fired).then(|| format!("t{seq}")),
        seq,
    }
}

/// The fire of `nominal` under `rev`: the state moves on, the ledger row
/// and a job owned by the schedule come with it.
fn fire(rev: u64, nominal: Timestamp, seq: u64, job_id: u8) -> ScheduleWrite {
    let mut w = write("daily", rev, nominal.plus_ms(60_000));
    w.state.ledger_seq = seq;
    w.state.fired = seq;
    w.ledger = vec![entry(nominal, Outcome::Fired, seq)];
    w.jobs = vec![OwnedJob {
        queue: queue("reports"),
        id: JobId::from_bytes([job_id; 16]),
        job: job("{}"),
        owner: Some(JobOwner::Schedule {
            schedule: "daily".into(),
            nominal,
        }),
    }];
    w
}

async fn one(
    store: &dyn Store,
    w: ScheduleWrite,
    now: Timestamp,
) -> Result<crate::Schedule, Error> {
    let mut answers = store.schedules_write(vec![w], now).await.unwrap();
    answers.pop().unwrap()
}

async fn a_schedule_is_created_once_and_read_back_after_a_restart(h: Harness) {
    let created = one(&*h.store, write("daily", 0, at(60_000)), T0)
        .await
        .unwrap();
    assert_eq!(
        (created.rev, created.due_at, created.created_at),
        (1, Some(at(60_000)), T0)
    );
    // A second create of the same name is refused: someone else made it.
    let again = one(&*h.store, write("daily", 0, at(1)), T0)
        .await
        .unwrap_err();
    assert_eq!(again.code, ErrorCode::Conflict);
    h.store.close().await;
    let s = (h.reopen)().await;
    let got = s.schedule_get(&ns(), "daily").await.unwrap();
    assert_eq!(got, created);
    assert_eq!(got.spec, spec());
    let missing = s.schedule_get(&ns(), "nope").await.unwrap_err();
    assert_eq!(missing, schedule_not_found("nope"));
    // Namespaces do not see each other's schedules.
    let other = Namespace::new("other").unwrap();
    assert!(s.schedules_list(&other).await.unwrap().is_empty());
    assert_eq!(s.schedules_list(&ns()).await.unwrap().len(), 1);
}

async fn a_fire_under_a_stale_revision_writes_nothing(h: Harness) {
    let s = &*h.store;
    one(s, write("daily", 0, at(60_000)), T0).await.unwrap();
    // Two nodes read revision 1 and both fire the slot: one write applies.
    let answers = s
        .schedules_write(
            vec![fire(1, at(60_000), 1, 1), fire(1, at(60_000), 1, 2)],
            at(60_000),
        )
        .await
        .unwrap();
    // A backend may apply a batch's writes in parallel: either may win.
    let winner = answers.iter().position(Result::is_ok).unwrap();
    let loser = &answers[1 - winner];
    assert_eq!(loser.as_ref().unwrap_err().code, ErrorCode::Conflict);
    assert_eq!(answers[winner].as_ref().unwrap().rev, 2);
    // Exactly one job: the winner's; the loser's was never created.
    let (won, lost) = (winner as u8 + 1, 2 - winner as u8);
    s.job_get(&ns(), JobId::from_bytes([won; 16]))
        .await
        .unwrap();
    let lost = s
        .job_get(&ns(), JobId::from_bytes([lost; 16]))
        .await
        .unwrap_err();
    assert_eq!(lost.code, ErrorCode::JobNotFound);
    let leased = lease(s, &queue("reports"), 10, at(60_001)).await;
    assert_eq!(leased.len(), 1);
    let ledger = s.schedule_ledger(&ns(), "daily", 10).await.unwrap();
    assert_eq!(ledger, [entry(at(60_000), Outcome::Fired, 1)]);
}

async fn the_ledger_keeps_the_newest_rows_and_replaces_a_buffered_slot(h: Harness) {
    let s = &*h.store;
    one(s, write("daily", 0, at(60_000)), T0).await.unwrap();
    let total = LEDGER_KEEP + 5;
    let mut rev = 1;
    for seq in 1..=total {
        let mut w = write("daily", rev, at((seq + 1) * 60_000));
        w.state.ledger_seq = seq;
        w.ledger = vec![entry(at(seq * 60_000), Outcome::SkippedOverlap, seq)];
        rev = one(s, w, at(seq * 60_000)).await.unwrap().rev;
    }
    let ledger = s.schedule_ledger(&ns(), "daily", 1000).await.unwrap();
    assert_eq!(ledger.len() as u64, LEDGER_KEEP);
    assert_eq!(ledger[0].seq, total, "newest first");
    assert_eq!(ledger.last().unwrap().seq, total - LEDGER_KEEP + 1);
    // A buffered slot that fires later replaces its row: one fate per slot.
    let slot = at(total * 60_000 + 60_000);
    let mut w = write("daily", rev, slot.plus_ms(60_000));
    w.state.ledger_seq = total + 1;
    w.ledger = vec![entry(slot, Outcome::Buffered, total + 1)];
    rev = one(s, w, slot).await.unwrap().rev;
    let mut w = write("daily", rev, slot.plus_ms(60_000));
    w.state.ledger_seq = total + 2;
    w.ledger = vec![entry(slot, Outcome::Fired, total + 2)];
    one(s, w, slot.plus_ms(10)).await.unwrap();
    let newest = s.schedule_ledger(&ns(), "daily", 2).await.unwrap();
    assert_eq!(newest[0], entry(slot, Outcome::Fired, total + 2));
    assert_eq!(newest[1].outcome, Outcome::SkippedOverlap);
}

async fn due_schedules_come_earliest_first_and_delete_takes_the_ledger(h: Harness) {
    let s = &*h.store;
    let writes = vec![
        write("c", 0, at(3000)),
        write("a", 0, at(1000)),
        write("b", 0, at(2000)),
    ];
    for answer in s.schedules_write(writes, T0).await.unwrap() {
        answer.unwrap();
    }
    let mut ended = write("ended", 0, at(1));
    ended.state.next = None;
    ended.due_at = None;
    one(s, ended, T0).await.unwrap();
    assert_eq!(s.schedules_next_due().await.unwrap(), Some(at(1000)));
    let due: Vec<String> = s
        .schedules_due(at(2500), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(due, ["a", "b"]);
    assert_eq!(s.schedules_due(at(2500), 1).await.unwrap().len(), 1);
    let mut w = write("a", 1, at(9000));
    w.state.ledger_seq = 1;
    w.ledger = vec![entry(at(1000), Outcome::Fired, 1)];
    one(s, w, at(1000)).await.unwrap();
    s.schedule_delete(&ns(), "a").await.unwrap();
    assert_eq!(
        s.schedule_delete(&ns(), "a").await.unwrap_err(),
        schedule_not_found("a")
    );
    // A schedule made again under the name starts with an empty ledger.
    one(s, write("a", 0, at(9000)), at(2000)).await.unwrap();
    assert!(s.schedule_ledger(&ns(), "a", 10).await.unwrap().is_empty());
}
