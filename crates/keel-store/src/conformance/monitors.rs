//! Monitors. A monitor is put (keeping its counters and token), read,
//! listed, found by its token and deleted with its history. A result folds
//! into the counters with the incident it opens or resolves and the jobs
//! that go with it, all in one write that survives a reopen; an incident
//! moves only when the move applies to it as stored; events open at most
//! one unresolved incident per dedup key.

use keel_core::IncidentId;
use keel_core::monitor::{
    Change, IncidentMove, IncidentStatus, MonitorSpec, NewIncident, PageTarget, ProbeResult,
    ResultKind, Severity, Status, monitor_key,
};
use serde_json::json;

use super::*;
use crate::{IncidentQuery, IncidentRef, NewResult, hour_of};

cases![
    a_monitor_is_put_read_listed_found_by_token_and_deleted,
    results_open_one_incident_with_its_jobs_and_recovery_resolves_it,
    an_incident_moves_only_when_the_move_applies,
    events_open_one_unresolved_incident_per_key,
    old_results_and_hours_are_pruned,
    a_certificate_threshold_starts_its_job_once_across_a_reopen,
];

fn spec(confirm: u32) -> MonitorSpec {
    serde_json::from_value(
        json!({"http": {"url": "https://example.com"}, "confirm_after": confirm}),
    )
    .unwrap()
}

fn incident(id: u8, key: &str, monitor: Option<&str>) -> NewIncident {
    NewIncident {
        id: IncidentId::from_bytes([id; 16]),
        dedup_key: key.to_owned(),
        monitor: monitor.map(str::to_owned),
        summary: format!("{key} is down"),
        severity: Severity::Critical,
        source: None,
        details: None,
        escalation: None,
    }
}

fn page_job(id: u8) -> OwnedJob {
    OwnedJob {
        queue: queue("keel.monitor"),
        id: JobId::from_bytes([id; 16]),
        job: job(&format!("{id}")),
        owner: None,
    }
}

fn result(ok: bool, t: Timestamp) -> NewResult {
    NewResult {
        namespace: ns(),
        monitor: "api".to_owned(),
        result: ProbeResult {
            kind: ResultKind::Probe,
            ok: Some(ok),
            at: t,
            latency_ms: Some(5),
            error: (!ok).then(|| "status 500".to_owned()),
            tls_days_left: None,
            body: None,
        },
        open: incident(1, &monitor_key("api"), Some("api")),
        on_open: vec![page_job(10)],
        on_resolve: vec![page_job(11)],
        resolving: Some(IncidentId::from_bytes([1; 16])),
        on_tls: Vec::new(),
    }
}

async fn a_monitor_is_put_read_listed_found_by_token_and_deleted(h: Harness) {
    let s = h.store.clone();
    let (m, created) = s
        .monitor_put(&ns(), "api", &spec(2), "tok-a", T0)
        .await
        .unwrap();
    assert!(created);
    assert_eq!(
        (m.token.as_str(), m.state.status),
        ("tok-a", Status::Pending)
    );
    s.monitor_record(result(true, at(1)), at(1)).await.unwrap();
    // A second put changes the spec, keeps the token and the counters.
    let (m, created) = s
        .monitor_put(&ns(), "api", &spec(3), "tok-b", at(2))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!((m.token.as_str(), m.state.status), ("tok-a", Status::Up));
    assert_eq!((m.spec.confirm_after, m.updated_at), (3, at(2)));
    s.monitor_put(&ns(), "web", &spec(2), "tok-w", at(3))
        .await
        .unwrap();
    let names: Vec<_> = s
        .monitors_list(&ns(), None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["api", "web"]);
    assert_eq!(
        s.monitors_list(&ns(), Some("api"), 10).await.unwrap().len(),
        1
    );
    assert_eq!(
        s.monitor_by_token("tok-w").await.unwrap(),
        Some((ns(), "web".to_owned()))
    );
    assert!(s.monitor_by_token("nope").await.unwrap().is_none());
    assert!(s.monitor_delete(&ns(), "api", at(4)).await.unwrap());
    assert!(!s.monitor_delete(&ns(), "api", at(4)).await.unwrap());
    assert!(s.monitor_get(&ns(), "api").await.unwrap().is_none());
    assert!(
        s.monitor_results(&ns(), "api", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let err = s
        .monitor_record(result(true, at(5)), at(5))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
}

async fn results_open_one_incident_with_its_jobs_and_recovery_resolves_it(h: Harness) {
    let s = h.store.clone();
    s.monitor_put(&ns(), "api", &spec(2), "tok", T0)
        .await
        .unwrap();
    let first = s.monitor_record(result(false, at(1)), at(1)).await.unwrap();
    assert_eq!(
        (first.change, first.monitor.state.status),
        (Change::None, Status::Failing)
    );
    let opened = s.monitor_record(result(false, at(2)), at(2)).await.unwrap();
    assert_eq!(opened.change, Change::Open);
    let incident = opened.incident.unwrap();
    assert_eq!(opened.monitor.incident, Some(incident.id));
    for t in 3..6 {
        let more = s.monitor_record(result(false, at(t)), at(t)).await.unwrap();
        assert_eq!(more.change, Change::None);
    }
    // Only the opening wrote its jobs.
    let paged = lease(&*s, &queue("keel.monitor"), 10, at(6)).await;
    assert_eq!(payloads(&paged), ["10"]);
    s.close().await;
    let s = (h.reopen)().await;
    let m = s.monitor_get(&ns(), "api").await.unwrap().unwrap();
    assert_eq!(
        (m.state.status, m.state.failures, m.incident),
        (Status::Down, 5, Some(incident.id))
    );
    s.monitor_record(result(true, at(7)), at(7)).await.unwrap();
    let resolved = s.monitor_record(result(true, at(8)), at(8)).await.unwrap();
    assert_eq!(resolved.change, Change::Resolve);
    assert_eq!(
        resolved.incident.as_ref().unwrap().status,
        IncidentStatus::Resolved
    );
    assert_eq!(resolved.monitor.incident, None);
    let stored = s.incident_get(&ns(), &incident.id).await.unwrap().unwrap();
    assert_eq!(stored.resolved_at, Some(at(8)));
    let notices = lease(&*s, &queue("keel.monitor"), 10, at(9)).await;
    assert_eq!(payloads(&notices), ["11"]);
    // Results in order; the last ones, then those after a seq.
    let last = s.monitor_results(&ns(), "api", None, 3).await.unwrap();
    assert_eq!(
        last.iter().map(|r| r.result.at).collect::<Vec<_>>(),
        [at(5), at(7), at(8)]
    );
    let after = s
        .monitor_results(&ns(), "api", Some(last[0].seq), 10)
        .await
        .unwrap();
    assert_eq!(after.len(), 2);
    // The hour counts as down what came while the incident was open (the
    // confirming failure to the last success before recovery), the rest up.
    let hours = s.monitor_uptime(&ns(), "api", hour_of(T0)).await.unwrap();
    assert_eq!(hours.len(), 1);
    assert_eq!((hours[0].up, hours[0].down), (2, 5));
}

async fn an_incident_moves_only_when_the_move_applies(h: Harness) {
    let s = h.store.clone();
    s.monitor_put(&ns(), "api", &spec(1), "tok", T0)
        .await
        .unwrap();
    let opened = s.monitor_record(result(false, at(1)), at(1)).await.unwrap();
    let id = opened.incident.unwrap().id;
    let which = IncidentRef::Id(id);
    let page = |step| IncidentMove::Page {
        step,
        pages: vec![PageTarget {
            channel: keel_core::ChannelName::new("mail").unwrap(),
            to: Some("alice".into()),
        }],
    };
    let moved = s
        .incident_move(&ns(), &which, page(0), vec![page_job(20)], at(2))
        .await
        .unwrap();
    assert!(moved.applied);
    assert_eq!((moved.incident.step, moved.incident.paged.len()), (1, 1));
    let again = s
        .incident_move(&ns(), &which, page(0), vec![page_job(21)], at(3))
        .await
        .unwrap();
    assert!(!again.applied, "a step pages once");
    let ack = IncidentMove::Acknowledge { by: "alice".into() };
    assert!(
        s.incident_move(&ns(), &which, ack, vec![], at(4))
            .await
            .unwrap()
            .applied
    );
    let late = s
        .incident_move(&ns(), &which, page(1), vec![page_job(22)], at(5))
        .await
        .unwrap();
    assert!(!late.applied, "no page after an acknowledgement");
    let jobs = lease(&*s, &queue("keel.monitor"), 10, at(6)).await;
    assert_eq!(payloads(&jobs), ["10", "20"]);
    // Resolved by hand while still down: the monitor counts failures again,
    // and a new incident opens under the same key.
    let resolve = IncidentMove::Resolve { by: "bob".into() };
    let done = s
        .incident_move(&ns(), &which, resolve, vec![], at(7))
        .await
        .unwrap();
    assert_eq!(done.incident.status, IncidentStatus::Resolved);
    let m = s.monitor_get(&ns(), "api").await.unwrap().unwrap();
    assert_eq!((m.state.status, m.incident), (Status::Failing, None));
    let mut next = result(false, at(8));
    next.open = incident(2, &monitor_key("api"), Some("api"));
    next.on_open = vec![page_job(12)];
    let reopened = s.monitor_record(next, at(8)).await.unwrap();
    assert_eq!(reopened.change, Change::Open);
    assert_eq!(
        reopened.incident.unwrap().id,
        IncidentId::from_bytes([2; 16])
    );
    let missing = IncidentRef::Id(IncidentId::from_bytes([9; 16]));
    let note = IncidentMove::Note {
        by: "x".into(),
        text: "y".into(),
    };
    let err = s
        .incident_move(&ns(), &missing, note, vec![], at(9))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
}

async fn events_open_one_unresolved_incident_per_key(h: Harness) {
    let s = h.store.clone();
    let (first, created) = s
        .incident_open(&ns(), incident(1, "db", None), vec![page_job(30)], at(1))
        .await
        .unwrap();
    assert!(created);
    let (same, created) = s
        .incident_open(&ns(), incident(2, "db", None), vec![page_job(31)], at(2))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(same.id, first.id);
    assert_eq!(same.timeline.last().unwrap().kind, "triggered");
    let found = s.incident_by_key(&ns(), "db").await.unwrap().unwrap();
    assert_eq!(found.id, first.id);
    let by_key = IncidentRef::Key("db".into());
    let resolve = IncidentMove::Resolve { by: "api".into() };
    assert!(
        s.incident_move(&ns(), &by_key, resolve.clone(), vec![], at(3))
            .await
            .unwrap()
            .applied
    );
    let err = s
        .incident_move(&ns(), &by_key, resolve, vec![], at(4))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    let (third, created) = s
        .incident_open(&ns(), incident(3, "db", None), vec![], at(5))
        .await
        .unwrap();
    assert!(created);
    assert_ne!(third.id, first.id);
    let open = IncidentQuery {
        status: Some(IncidentStatus::Open),
        limit: 10,
        ..IncidentQuery::default()
    };
    let listed = s.incidents_list(&ns(), &open).await.unwrap();
    assert_eq!(listed.iter().map(|i| i.id).collect::<Vec<_>>(), [third.id]);
    let all = IncidentQuery {
        limit: 10,
        ..IncidentQuery::default()
    };
    let listed = s.incidents_list(&ns(), &all).await.unwrap();
    assert_eq!(
        listed.iter().map(|i| i.id).collect::<Vec<_>>(),
        [third.id, first.id]
    );
    let older = IncidentQuery {
        before: Some(third.id),
        ..all
    };
    assert_eq!(s.incidents_list(&ns(), &older).await.unwrap().len(), 1);
    let jobs = lease(&*s, &queue("keel.monitor"), 10, at(6)).await;
    assert_eq!(payloads(&jobs), ["30"]);
}

async fn old_results_and_hours_are_pruned(h: Harness) {
    let s = h.store.clone();
    s.monitor_put(&ns(), "api", &spec(2), "tok", T0)
        .await
        .unwrap();
    let hour = 3_600_000;
    for t in [0, hour, 2 * hour] {
        s.monitor_record(result(true, at(t)), at(t)).await.unwrap();
    }
    let gone = s
        .monitors_prune(at(hour), hour_of(at(2 * hour)), 100)
        .await
        .unwrap();
    assert_eq!(gone, 1 + 2);
    assert_eq!(
        s.monitor_results(&ns(), "api", None, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(s.monitor_uptime(&ns(), "api", T0).await.unwrap().len(), 1);
}

async fn a_certificate_threshold_starts_its_job_once_across_a_reopen(h: Harness) {
    let s = h.store.clone();
    let spec: MonitorSpec = serde_json::from_value(
        json!({"http": {"url": "https://example.com", "tls_expiry_days": 14}}),
    )
    .unwrap();
    s.monitor_put(&ns(), "api", &spec, "tok", T0).await.unwrap();
    let expiring = |t: u64, job: u8| {
        let mut new = result(true, at(t));
        new.result.tls_days_left = Some(10);
        new.on_tls = vec![page_job(job)];
        new
    };
    s.monitor_record(expiring(1, 40), at(1)).await.unwrap();
    s.close().await;
    let s = (h.reopen)().await;
    let again = s.monitor_record(expiring(2, 41), at(2)).await.unwrap();
    assert_eq!(again.monitor.state.tls_warned, Some(14));
    let jobs = lease(&*s, &queue("keel.monitor"), 10, at(3)).await;
    assert_eq!(payloads(&jobs), ["40"]);
}
