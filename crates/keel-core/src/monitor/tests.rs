//! The monitor's rules: specs refused with their reason, answers judged,
//! counters folded into incidents, thresholds crossed once, moves that do
//! not apply once an acknowledgement or another step came first.

use serde_json::json;

use super::*;
use crate::IncidentId;

fn spec(value: Value) -> MonitorSpec {
    serde_json::from_value(value).unwrap()
}

fn http() -> MonitorSpec {
    spec(json!({"http": {"url": "https://example.com/health"}}))
}

fn result(ok: bool) -> ProbeResult {
    ProbeResult {
        kind: ResultKind::Probe,
        ok: Some(ok),
        at: Timestamp::from_millis(1),
        latency_ms: Some(3),
        error: None,
        tls_days_left: None,
        body: None,
    }
}

#[test]
fn specs_are_refused_with_their_reason() {
    http().check().unwrap();
    let refused = |v: Value, needle: &str| {
        let e = spec(v).check().unwrap_err();
        assert!(e.message.contains(needle), "{}", e.message);
    };
    refused(json!({}), "exactly one");
    refused(
        json!({"http": {"url": "https://a"}, "tcp": {"host": "a", "port": 1}}),
        "exactly one",
    );
    refused(json!({"http": {"url": "ftp://a"}}), "http or https");
    refused(
        json!({"http": {"url": "https://a"}, "interval_ms": 1000}),
        "interval_ms",
    );
    refused(
        json!({"http": {"url": "https://a", "expect": {"status": ["2xx"]}}}),
        "expect.status",
    );
    refused(
        json!({"http": {"url": "https://a", "expect": {"json": {"path": "status", "equals": 1}}}}),
        "expect.json.path",
    );
    refused(
        json!({"http": {"url": "https://a", "method": "TRACE"}}),
        "http.method",
    );
    refused(json!({"tcp": {"host": "a", "port": 0}}), "tcp");
    refused(json!({"heartbeat": {"cron": "nope"}}), "heartbeat");
    refused(json!({"heartbeat": {"period_ms": 10}}), "period_ms");
    refused(
        json!({"http": {"url": "https://a"}, "confirm_after": 0}),
        "confirm_after",
    );
    spec(json!({"heartbeat": {"cron": "*/5 * * * *", "grace_ms": 60000}}))
        .check()
        .unwrap();
}

#[test]
fn answers_are_judged_against_the_expectations() {
    let probe = spec(json!({"http": {"url": "https://a", "expect": {
        "status": ["200-299", "304"], "body_contains": "ok",
        "json": {"path": "$.checks[1].status", "equals": "ok"}, "max_latency_ms": 100}}}))
    .http
    .unwrap();
    let body = br#"{"checks":[{"status":"x"},{"status":"ok"}]}"#;
    probe.judge(200, body, 10).unwrap();
    assert!(
        probe
            .judge(500, body, 10)
            .unwrap_err()
            .contains("status 500")
    );
    assert!(probe.judge(200, body, 101).unwrap_err().contains("101 ms"));
    let wrong = br#"{"checks":[{"status":"ok"},{"status":"bad"}]}"#;
    assert!(
        probe
            .judge(304, wrong, 1)
            .unwrap_err()
            .contains("expected \"ok\"")
    );
    assert!(
        probe
            .judge(200, b"ok but not json", 1)
            .unwrap_err()
            .contains("not JSON")
    );
}

#[test]
fn json_paths_become_pointers() {
    assert_eq!(json_pointer("$").as_deref(), Some(""));
    assert_eq!(json_pointer("$.a.b[2].c").as_deref(), Some("/a/b/2/c"));
    assert_eq!(json_pointer("$.a/b").as_deref(), Some("/a~1b"));
    assert!(json_pointer("a.b").is_none());
    assert!(json_pointer("$..a").is_none());
    assert!(json_pointer("$.a[x]").is_none());
}

#[test]
fn an_incident_opens_on_the_confirming_failure_and_resolves_on_recovery() {
    let spec = http();
    let mut state = MonitorState::default();
    let mut changes = Vec::new();
    for ok in [
        true, false, true, false, false, false, true, false, true, true, true,
    ] {
        let (next, change) = fold(state, &result(ok), &spec);
        state = next;
        changes.push((state.status, change));
    }
    use Change::*;
    use Status::*;
    assert_eq!(
        changes,
        [
            (Up, None),
            (Failing, None),
            (Up, None),
            (Failing, None),
            (Down, Open),
            (Down, None),
            (Down, None),
            (Down, None),
            (Down, None),
            (Up, Resolve),
            (Up, None),
        ]
    );
}

#[test]
fn a_start_ping_is_recorded_not_judged() {
    let spec = http();
    let start = ProbeResult {
        ok: Option::None,
        kind: ResultKind::Ping,
        ..result(true)
    };
    let (state, change) = fold(MonitorState::default(), &start, &spec);
    assert_eq!((state.status, change), (Status::Pending, Change::None));
    assert_eq!(state.last_ping_at, Option::None);
}

#[test]
fn tls_thresholds_are_crossed_once_each_largest_first() {
    assert_eq!(tls_thresholds(14, 20), Vec::<i64>::new());
    assert_eq!(tls_thresholds(14, 14), vec![14]);
    assert_eq!(tls_thresholds(14, 6), vec![14, 7]);
    assert_eq!(tls_thresholds(30, 0), vec![30, 14, 7, 1]);
    assert_eq!(tls_thresholds(20, 10), vec![20, 14]);
}

#[test]
fn monitors_spread_over_their_interval() {
    let a = http().schedule_spec(offset("ns", "a")).unwrap();
    let b = http().schedule_spec(offset("ns", "b")).unwrap();
    assert_ne!(a.start_at, b.start_at);
    assert!(a.start_at.unwrap().as_millis() < 60_000);
    a.check().unwrap();
}

fn policy() -> EscalationPolicy {
    serde_json::from_value(json!({"steps": [
        {"notify": [{"channel": "mail", "to": "alice"}], "wait_ms": 60000},
        {"notify": [{"channel": "slack"}], "wait_ms": 60000}], "repeat": 1}))
    .unwrap()
}

#[test]
fn a_policy_repeats_its_steps() {
    let p = policy();
    p.check().unwrap();
    assert!(p.resolve_notify);
    assert_eq!(p.total_steps(), 4);
    assert_eq!(p.step(2).unwrap().notify[0].to.as_deref(), Some("alice"));
    assert!(p.step(4).is_none());
}

fn incident() -> Incident {
    NewIncident {
        id: IncidentId::from_bytes([1; 16]),
        dedup_key: monitor_key("api"),
        monitor: Some("api".into()),
        summary: "api is down".into(),
        severity: Severity::Critical,
        source: None,
        details: None,
        escalation: Some("oncall".into()),
    }
    .open(Timestamp::from_millis(1))
}

#[test]
fn a_page_decided_after_an_acknowledgement_does_not_apply() {
    let mut inc = incident();
    let now = Timestamp::from_millis(2);
    let page = |step| IncidentMove::Page {
        step,
        pages: policy().steps[0].notify.clone(),
    };
    assert!(page(0).applies(&inc));
    page(0).apply(&mut inc, now);
    assert_eq!(inc.step, 1);
    assert!(!page(0).applies(&inc), "a step pages once");
    let ack = IncidentMove::Acknowledge { by: "alice".into() };
    assert!(ack.applies(&inc));
    ack.apply(&mut inc, now);
    assert!(!page(1).applies(&inc), "no page after an acknowledgement");
    assert!(!ack.applies(&inc));
    let resolve = IncidentMove::Resolve { by: "bob".into() };
    resolve.apply(&mut inc, now);
    assert_eq!(inc.status, IncidentStatus::Resolved);
    assert!(!resolve.applies(&inc));
    let kinds: Vec<_> = inc.timeline.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["opened", "paged", "acknowledged", "resolved"]);
    assert_eq!(inc.paged.len(), 1);
}

#[test]
fn events_are_checked() {
    let event = |v: Value| serde_json::from_value::<IncidentEvent>(v).unwrap().check();
    event(json!({"dedup_key": "db", "action": "trigger", "summary": "db down"})).unwrap();
    assert!(event(json!({"dedup_key": "db", "action": "trigger"})).is_err());
    assert!(event(json!({"dedup_key": "", "action": "resolve"})).is_err());
    assert!(event(json!({"dedup_key": "monitor/api", "action": "resolve"})).is_err());
}

#[test]
fn maintenance_windows_open_and_cover() {
    let range: MaintenanceSpec = serde_json::from_value(json!({
        "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T01:00:00Z", "monitors": ["api"]}))
    .unwrap();
    range.check().unwrap();
    let t = |s: &str| Timestamp::parse_rfc3339(s).unwrap();
    assert!(range.active(t("2026-01-01T00:30:00Z")));
    assert!(!range.active(t("2026-01-01T01:00:00Z")));
    let labels = BTreeMap::from([("team".to_owned(), "db".to_owned())]);
    assert!(range.covers("api", &BTreeMap::new()));
    assert!(!range.covers("web", &labels));
    let nightly: MaintenanceSpec = serde_json::from_value(json!({
        "cron": "0 2 * * *", "duration_ms": 1_800_000, "labels": {"team": "db"}}))
    .unwrap();
    nightly.check().unwrap();
    assert!(nightly.active(t("2026-03-04T02:10:00Z")));
    assert!(!nightly.active(t("2026-03-04T02:30:00Z")));
    assert!(!nightly.active(t("2026-03-04T01:59:00Z")));
    assert!(nightly.covers("web", &labels));
    assert!(!nightly.covers("web", &BTreeMap::new()));
    let bad: MaintenanceSpec = serde_json::from_value(json!({"cron": "0 2 * * *"})).unwrap();
    assert!(bad.check().is_err());
}

#[test]
fn each_tls_threshold_warns_once_until_the_certificate_is_renewed() {
    let spec = spec(json!({"http": {"url": "https://a", "tls_expiry_days": 14}}));
    let mut state = MonitorState::default();
    let mut warned = Vec::new();
    for days in [40, 20, 14, 13, 12, 7, 6, 0, 0, 90, 30, 14] {
        let result = ProbeResult {
            tls_days_left: Some(days),
            ..result(true)
        };
        warned.push(tls_warning(&mut state, &result, &spec));
    }
    let some = Option::Some;
    let none = Option::None;
    assert_eq!(
        warned,
        [
            none,
            none,
            some(14),
            none,
            none,
            some(7),
            none,
            some(1),
            none,
            none,
            none,
            some(14)
        ]
    );
    // A monitor that does not ask is never warned.
    let quiet = http();
    let result = ProbeResult {
        tls_days_left: Some(1),
        ..result(true)
    };
    assert_eq!(
        tls_warning(&mut MonitorState::default(), &result, &quiet),
        None
    );
}
