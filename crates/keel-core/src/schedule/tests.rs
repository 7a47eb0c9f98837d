//! Unit tests of schedules: specs, slots and the planner's decisions.

use serde_json::json;

use super::*;

fn at(text: &str) -> Timestamp {
    Timestamp::parse_rfc3339(text).unwrap_or_default()
}

fn spec(value: serde_json::Value) -> ScheduleSpec {
    let mut value = value;
    value["target"] = json!({"queue": "q", "job": {"payload": {}}});
    serde_json::from_value(value).unwrap_or_else(|e| panic!("spec: {e}"))
}

/// The next `n` slots after `from`, in UTC.
fn slots(cron: &str, zone: &str, from: &str, n: usize) -> Vec<String> {
    let spec = spec(json!({"cron": cron, "timezone": zone}));
    let cadence = spec.check().unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    let mut t = at(from);
    for _ in 0..n {
        match cadence.next_after(t) {
            Some(next) => {
                out.push(next.to_rfc3339());
                t = next;
            }
            None => break,
        }
    }
    out
}

#[test]
fn new_york_spring_gap_fires_once_at_the_first_valid_instant() {
    // 02:30 does not exist on 2026-03-08: the slot fires at 03:00 EDT.
    assert_eq!(
        slots("30 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", 2),
        ["2026-03-08T07:00:00.000Z", "2026-03-09T06:30:00.000Z"]
    );
}

#[test]
fn new_york_autumn_repeat_fires_once_at_the_first_occurrence() {
    // 01:30 happens twice on 2026-11-01 (EDT, then EST): once, in EDT.
    assert_eq!(
        slots("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", 2),
        ["2026-11-01T05:30:00.000Z", "2026-11-02T06:30:00.000Z"]
    );
}

#[test]
fn interval_crons_keep_their_real_interval_through_the_repeat() {
    // Every 30 minutes through the repeated hour: six slots, 30 min apart.
    let got = slots(
        "*/30 * * * *",
        "America/New_York",
        "2026-11-01T04:00:00Z",
        6,
    );
    assert_eq!(
        got,
        [
            "2026-11-01T04:30:00.000Z",
            "2026-11-01T05:00:00.000Z",
            "2026-11-01T05:30:00.000Z",
            "2026-11-01T06:00:00.000Z",
            "2026-11-01T06:30:00.000Z",
            "2026-11-01T07:00:00.000Z",
        ]
    );
}

#[test]
fn every_minute_keeps_its_interval_through_the_spring_gap() {
    let got = slots("* * * * *", "Europe/London", "2026-03-29T00:58:00Z", 4);
    assert_eq!(
        got,
        [
            "2026-03-29T00:59:00.000Z",
            "2026-03-29T01:00:00.000Z",
            "2026-03-29T01:01:00.000Z",
            "2026-03-29T01:02:00.000Z",
        ]
    );
}

#[test]
fn london_gap_and_repeat() {
    // 01:30 is skipped by the clocks on 2026-03-29 (01:00 -> 02:00 BST).
    assert_eq!(
        slots("30 1 * * *", "Europe/London", "2026-03-28T12:00:00Z", 2),
        ["2026-03-29T01:00:00.000Z", "2026-03-30T00:30:00.000Z"]
    );
    // 01:30 happens twice on 2026-10-25: once, in BST.
    assert_eq!(
        slots("30 1 * * *", "Europe/London", "2026-10-24T12:00:00Z", 2),
        ["2026-10-25T00:30:00.000Z", "2026-10-26T01:30:00.000Z"]
    );
}

#[test]
fn lord_howe_shifts_by_thirty_minutes() {
    // 2026-10-04: 02:00 -> 02:30 (+10:30 -> +11). 02:15 fires at 02:30.
    assert_eq!(
        slots(
            "15 2 * * *",
            "Australia/Lord_Howe",
            "2026-10-03T00:00:00Z",
            2
        ),
        ["2026-10-03T15:30:00.000Z", "2026-10-04T15:15:00.000Z"]
    );
    // 2026-04-05: 02:00 -> 01:30 (+11 -> +10:30). 01:45 fires once, at +11.
    assert_eq!(
        slots(
            "45 1 * * *",
            "Australia/Lord_Howe",
            "2026-04-04T00:00:00Z",
            2
        ),
        ["2026-04-04T14:45:00.000Z", "2026-04-05T15:15:00.000Z"]
    );
}

#[test]
fn cron_extensions_and_seconds_parse() {
    assert_eq!(
        slots("0 0 L * *", "UTC", "2026-01-01T00:00:00Z", 2),
        ["2026-01-31T00:00:00.000Z", "2026-02-28T00:00:00.000Z"]
    );
    assert_eq!(
        slots("0 9 * * MON#2", "UTC", "2026-01-01T00:00:00Z", 1),
        ["2026-01-12T09:00:00.000Z"]
    );
    assert_eq!(
        slots("0 9 15W * *", "UTC", "2026-02-01T00:00:00Z", 1),
        ["2026-02-16T09:00:00.000Z"]
    );
    assert_eq!(
        slots("*/20 * * * * *", "UTC", "2026-01-01T00:00:00Z", 2),
        ["2026-01-01T00:00:20.000Z", "2026-01-01T00:00:40.000Z"]
    );
}

#[test]
fn bad_specs_are_refused_with_reasons() {
    let bad = |v: serde_json::Value| spec(v).check().err().map(|e| e.message);
    assert!(bad(json!({"cron": "61 * * * *"})).is_some_and(|m| m.contains("cron")));
    assert!(bad(json!({"cron": "0 0 0 1 1 * 2026"})).is_some());
    assert!(
        bad(json!({"cron": "* * * * *", "timezone": "Mars/Base"}))
            .is_some_and(|m| m.contains("IANA"))
    );
    assert!(bad(json!({"every_ms": 999})).is_some_and(|m| m.contains("every_ms")));
    assert!(bad(json!({"every_ms": 1000, "cron": "* * * * *"})).is_some());
    assert!(bad(json!({})).is_some());
    assert!(bad(json!({"every_ms": 1000, "jitter_ms": MAX_JITTER_MS + 1})).is_some());
}

#[test]
fn intervals_align_to_start_at_and_stop_at_end_at() {
    let s = spec(
        json!({"every_ms": 60_000, "start_at": "2026-01-01T00:00:30Z", "end_at": "2026-01-01T00:03:00Z"}),
    );
    let c = s.check().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.next_after(at("2025-12-31T00:00:00Z")),
        Some(at("2026-01-01T00:00:30Z"))
    );
    assert_eq!(
        c.next_after(at("2026-01-01T00:00:30Z")),
        Some(at("2026-01-01T00:01:30Z"))
    );
    assert_eq!(c.next_after(at("2026-01-01T00:02:30Z")), None);
}

fn planned(overlap: Overlap, busy: bool, next: &str, now: &str) -> (Plan, ScheduleState) {
    let mut s = spec(json!({"every_ms": 60_000}));
    s.overlap = overlap;
    let c = s.check().unwrap_or_else(|e| panic!("{e}"));
    let mut state = ScheduleState {
        next: Some(at(next)),
        ..ScheduleState::default()
    };
    let plan = plan("s", &s, &c, &mut state, busy, at(now));
    (plan, state)
}

fn outcomes(plan: &Plan) -> Vec<Outcome> {
    plan.decided.iter().map(|d| d.outcome).collect()
}

#[test]
fn a_due_slot_fires_once_and_the_next_is_planned() {
    let (plan, state) = planned(
        Overlap::Skip,
        false,
        "2026-01-01T00:01:00Z",
        "2026-01-01T00:01:00.200Z",
    );
    assert_eq!(plan.fire, [at("2026-01-01T00:01:00Z")]);
    assert_eq!(state.next, Some(at("2026-01-01T00:02:00Z")));
    // Not yet due: nothing.
    let (plan, _) = planned(
        Overlap::Skip,
        false,
        "2026-01-01T00:01:00Z",
        "2026-01-01T00:00:59.999Z",
    );
    assert!(plan.fire.is_empty() && plan.decided.is_empty());
}

#[test]
fn catch_up_fires_inside_the_window_and_misses_the_rest() {
    // Down for 3.5 minutes with a 60 s window (allow, so overlap is no
    // factor): the slots 210, 150 and 90 s late are missed, the one 30 s
    // late fires.
    let (plan, state) = planned(
        Overlap::Allow,
        false,
        "2026-01-01T00:01:00Z",
        "2026-01-01T00:04:30Z",
    );
    assert_eq!(
        outcomes(&plan),
        [
            Outcome::Missed,
            Outcome::Missed,
            Outcome::Missed,
            Outcome::Fired
        ]
    );
    assert_eq!(plan.fire, [at("2026-01-01T00:04:00Z")]);
    assert_eq!((state.missed, state.fired), (3, 1));
}

#[test]
fn overlap_policies() {
    let (p, _) = planned(
        Overlap::Skip,
        true,
        "2026-01-01T00:01:00Z",
        "2026-01-01T00:01:00Z",
    );
    assert_eq!(outcomes(&p), [Outcome::SkippedOverlap]);
    let (p, s) = planned(
        Overlap::BufferOne,
        true,
        "2026-01-01T00:01:00Z",
        "2026-01-01T00:02:00Z",
    );
    assert_eq!(outcomes(&p), [Outcome::Buffered, Outcome::SkippedOverlap]);
    assert_eq!(s.buffered, [at("2026-01-01T00:01:00Z")]);
    let (p, s) = planned(
        Overlap::BufferAll,
        true,
        "2026-01-01T00:01:00Z",
        "2026-01-01T00:02:00Z",
    );
    assert_eq!(outcomes(&p), [Outcome::Buffered, Outcome::Buffered]);
    assert_eq!(s.buffered.len(), 2);
    let (p, _) = planned(
        Overlap::CancelOther,
        true,
        "2026-01-01T00:01:00Z",
        "2026-01-01T00:01:00Z",
    );
    assert!(p.cancel_previous);
    assert_eq!(p.fire.len(), 1);
    let (p, _) = planned(
        Overlap::Allow,
        true,
        "2026-01-01T00:01:00Z",
        "2026-01-01T00:01:00Z",
    );
    assert_eq!(p.fire.len(), 1);
}

#[test]
fn a_buffered_slot_fires_when_the_previous_fire_ends() {
    let mut s = spec(json!({"every_ms": 60_000, "overlap": "buffer_one"}));
    s.overlap = Overlap::BufferOne;
    let c = s.check().unwrap_or_else(|e| panic!("{e}"));
    let mut state = ScheduleState {
        next: Some(at("2026-01-01T00:02:00Z")),
        buffered: vec![at("2026-01-01T00:01:00Z")],
        ..ScheduleState::default()
    };
    let p = plan("s", &s, &c, &mut state, false, at("2026-01-01T00:01:30Z"));
    assert_eq!(p.fire, [at("2026-01-01T00:01:00Z")]);
    assert!(state.buffered.is_empty());
    // Still busy: it stays buffered.
    let mut state = ScheduleState {
        next: Some(at("2026-01-01T00:02:00Z")),
        buffered: vec![at("2026-01-01T00:01:00Z")],
        ..ScheduleState::default()
    };
    let p = plan("s", &s, &c, &mut state, true, at("2026-01-01T00:01:30Z"));
    assert!(p.fire.is_empty());
    assert_eq!(state.buffered.len(), 1);
}

#[test]
fn paused_slots_are_recorded_not_fired() {
    let mut s = spec(json!({"every_ms": 60_000, "paused": true}));
    s.paused = true;
    let c = s.check().unwrap_or_else(|e| panic!("{e}"));
    let mut state = ScheduleState::start(&c, at("2026-01-01T00:00:30Z"));
    let p = plan("s", &s, &c, &mut state, false, at("2026-01-01T00:02:00Z"));
    assert!(p.fire.is_empty());
    assert_eq!(outcomes(&p), [Outcome::Paused, Outcome::Paused]);
}

#[test]
fn jitter_is_stable_and_bounded() {
    let t = at("2026-01-01T00:00:00Z");
    assert_eq!(jitter("a", t, 0), 0);
    assert_eq!(jitter("a", t, 5000), jitter("a", t, 5000));
    assert!((0..100).all(|i| jitter("a", t.plus_ms(i * 60_000), 5000) <= 5000));
}

#[test]
fn backfill_slots_are_bounded() {
    let s = spec(json!({"every_ms": 1000}));
    let c = s.check().unwrap_or_else(|e| panic!("{e}"));
    let got = slots_between(&c, at("2026-01-01T00:00:00Z"), at("2026-01-01T00:00:02Z"));
    assert_eq!(got.map(|v| v.len()).ok(), Some(3));
    assert!(slots_between(&c, at("2026-01-01T00:00:00Z"), at("2026-01-02T00:00:00Z")).is_err());
}
