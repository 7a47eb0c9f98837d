//! Schedules: the list (`/ui/schedules`) with each one's cadence and next
//! fire, and a schedule's page (`/ui/schedules/{name}`) with its next
//! fires (in UTC and its zone) and its ledger: what became of each slot.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use keel_api::schedules::ScheduleAnswer;
use keel_core::schedule::ScheduleTarget;
use minijinja::{Value, context};

use super::{NsQuery, Refused, Ui, draw};
use crate::api::schedules::{answer, full};

/// A schedule as the pages show it; its ledger when it was read.
fn view(ns: &str, s: &ScheduleAnswer) -> Value {
    let spec = &s.spec;
    let cadence = match (&spec.cron, spec.every_ms) {
        (Some(cron), _) => format!("cron {cron} ({})", spec.timezone),
        (None, Some(ms)) => format!("every {}", draw::duration(ms)),
        (None, None) => String::new(),
    };
    // Where a slot's fire went: a job's or a run's page (an event has none).
    let link = |id: &str| match &spec.target {
        ScheduleTarget::Job { .. } => Some(format!("/ui/jobs/{id}?ns={ns}")),
        ScheduleTarget::Run { .. } => Some(format!("/ui/runs/{id}?ns={ns}")),
        ScheduleTarget::Event { .. } => None,
    };
    let target = match &spec.target {
        ScheduleTarget::Job { queue, .. } => format!("a job on {queue}"),
        ScheduleTarget::Event { topic, .. } => format!("an event on {topic}"),
        ScheduleTarget::Run { workflow, .. } => format!("a run of {workflow}"),
    };
    context! {
        name => s.name.clone(),
        cadence => cadence,
        target => target,
        paused => spec.paused,
        overlap => serde_json::to_value(spec.overlap).ok().and_then(|v| v.as_str().map(str::to_owned)),
        fired => s.fired,
        skipped => s.skipped,
        missed => s.missed,
        buffered => s.buffered,
        next => s.next_fire_times.iter().map(|f| context! {
            utc => f.utc.to_string(), local => f.local.clone(),
        }).collect::<Vec<_>>(),
        recent => s.recent.iter().map(|slot| context! {
            nominal => slot.nominal_time.to_string(),
            fired_at => slot.fired_at.map(|t| t.to_string()),
            outcome => slot.outcome.as_str(),
            target_id => slot.target_id.clone(),
            link => slot.target_id.as_deref().and_then(link),
        }).collect::<Vec<_>>(),
    }
}

pub(super) async fn list(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Query(query): Query<NsQuery>,
) -> Result<Response, Refused> {
    let (session, ns) = ui.reader(&headers, &query).await?;
    let schedules: Vec<Value> = ui
        .engine
        .schedules()
        .list(&ns)
        .await
        .map_err(|e| ui.failed(&e))?
        .into_iter()
        .map(|s| view(ns.as_str(), &answer(s, Vec::new())))
        .collect();
    Ok(ui.page(
        "schedules.html",
        Some(&session),
        ns.as_str(),
        context! { schedules => schedules },
    ))
}

pub(super) async fn detail(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query<NsQuery>,
) -> Result<Response, Refused> {
    let (session, ns) = ui.reader(&headers, &query).await?;
    let engine = &ui.engine;
    let schedule = engine
        .schedules()
        .get(&ns, &name)
        .await
        .map_err(|e| ui.failed(&e))?;
    let schedule = full(engine, schedule).await.map_err(|e| ui.failed(&e.0))?;
    Ok(ui.page(
        "schedule.html",
        Some(&session),
        ns.as_str(),
        context! { schedule => view(ns.as_str(), &schedule) },
    ))
}
