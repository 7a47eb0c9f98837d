//! The overview of a namespace (`/ui?ns=`): each queue's jobs by state,
//! pause switch and objectives; topics; subscriptions and their lag. Pause
//! and resume are the page's one action (an operator's).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use keel_core::auth::{Access, Reach};
use keel_core::slo::{ALERTS, Kind, Objective, Status};
use keel_core::{JobState, Namespace, QueueName, QueueRef};
use keel_engine::slos::SubjectStatus;
use minijinja::value::Serde;
use minijinja::{Value, context};
use serde::Serialize;

use super::{CsrfForm, NsQuery, Refused, Session, Ui};

/// The states shown, in a job's order through them.
const STATES: [JobState; 4] = [
    JobState::Scheduled,
    JobState::Ready,
    JobState::Leased,
    JobState::Dead,
];

#[derive(Serialize)]
struct QueueRow {
    name: String,
    counts: Vec<u64>,
    paused: bool,
    slos: Vec<SloBadge>,
}

#[derive(Serialize)]
struct SloBadge {
    objective: &'static str,
    target: String,
    value: String,
    /// `ok`, `burning` (spending faster than the budget lasts) or `firing`.
    health: &'static str,
    firing: String,
    burn_1h: String,
    burn_5m: String,
}

fn badge(status: &Status) -> SloBadge {
    let show = |v: f64| match status.objective {
        Objective::WaitP99Ms => format!("{v:.0} ms"),
        Objective::SuccessRatio => format!("{:.3} %", v * 100.0),
    };
    let firing: Vec<&str> = ALERTS
        .iter()
        .zip(status.firing)
        .filter(|(_, f)| *f)
        .map(|(a, _)| a.severity.as_str())
        .collect();
    let health = if !firing.is_empty() {
        "firing"
    } else if status.burn_rates[keel_core::slo::HOUR] > 1.0 {
        "burning"
    } else {
        "ok"
    };
    SloBadge {
        objective: status.objective.as_str(),
        target: show(status.target),
        value: status.value.map_or("–".to_owned(), show),
        health,
        firing: firing.join(", "),
        burn_1h: format!("{:.2}", status.burn_rates[keel_core::slo::HOUR]),
        burn_5m: format!("{:.2}", status.burn_rates[0]),
    }
}

fn badges(statuses: &[SubjectStatus], kind: Kind, name: &str) -> Vec<SloBadge> {
    statuses
        .iter()
        .filter(|s| s.subject.kind == kind && s.subject.name == name)
        .map(|s| badge(&s.status))
        .collect()
}

pub(super) async fn page(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Query(query): Query<NsQuery>,
) -> Result<Response, Refused> {
    let session = ui.session(&headers).await?;
    let ns = query.namespace(&ui)?;
    ui.require(
        &session,
        Access::Read,
        Reach::Namespace(ns.as_str()),
        &format!("read namespace {ns}"),
    )?;
    overview(&ui, &session, &ns)
        .await
        .map_err(|e| ui.failed(&e))
}

async fn overview(
    ui: &Ui,
    session: &Session,
    ns: &Namespace,
) -> Result<Response, keel_core::Error> {
    let engine = &ui.engine;
    let store = &*engine.store;
    let statuses = engine.slos.statuses(store, Some(ns), engine.now()).await?;
    let mut counts: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for depth in store.queue_depths().await? {
        if depth.queue.namespace != *ns {
            continue;
        }
        let row = counts
            .entry(depth.queue.queue.to_string())
            .or_insert_with(|| vec![0; STATES.len()]);
        if let Some(i) = STATES.iter().position(|s| *s == depth.state) {
            row[i] += depth.count;
        }
    }
    for (queue, _) in store.queue_policies().await? {
        if queue.namespace == *ns {
            counts
                .entry(queue.queue.to_string())
                .or_insert_with(|| vec![0; STATES.len()]);
        }
    }
    let mut queues = Vec::with_capacity(counts.len());
    for (name, counts) in counts {
        let queue = QueueRef {
            namespace: ns.clone(),
            queue: QueueName::new(&name)?,
        };
        let stats = store.queue_stats(&queue).await?;
        queues.push(QueueRow {
            slos: badges(&statuses, Kind::Queue, &name),
            name,
            counts,
            paused: stats.paused,
        });
    }
    let topics: Vec<_> = store
        .topics_list(ns)
        .await?
        .into_iter()
        .map(|t| {
            let name = t.name.to_string();
            context! {
                slos => Value::from(Serde(badges(&statuses, Kind::Topic, &name))),
                name => name,
                events => t.events,
                head_seq => t.head_seq,
            }
        })
        .collect();
    let subscriptions: Vec<_> = store
        .subscriptions_list(Some(ns), None)
        .await?
        .into_iter()
        .map(|s| {
            context! {
                lag => s.lag(),
                name => s.name,
                topic => s.spec.topic.to_string(),
                paused => s.paused,
            }
        })
        .collect();
    let can_operate = session.may(Access::Operate, Reach::Namespace(ns.as_str()));
    Ok(ui.page(
        "overview.html",
        Some(session),
        ns.as_str(),
        context! {
            states => STATES.map(JobState::as_str),
            queues => Value::from(Serde(&queues)),
            topics => topics,
            subscriptions => subscriptions,
            can_operate => can_operate,
        },
    ))
}

/// `POST /ui/queues/{queue}/pause` or `.../resume`.
pub(super) async fn queue_action(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path((queue, action)): Path<(String, String)>,
    Query(query): Query<NsQuery>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, Refused> {
    let session = ui.session(&headers).await?;
    ui.check_post(&headers, &session, &form.csrf)?;
    let ns = query.namespace(&ui)?;
    let queue = QueueRef {
        namespace: ns.clone(),
        queue: QueueName::new(&queue).map_err(|e| ui.bad(&e.message))?,
    };
    let reach = Reach::Resource {
        namespace: ns.as_str(),
        kind: "queue",
        name: queue.queue.as_str(),
    };
    ui.require(
        &session,
        Access::Operate,
        reach,
        &format!("pause or resume {}", queue.queue),
    )?;
    let paused = match action.as_str() {
        "pause" => true,
        "resume" => false,
        _ => return Err(ui.error(StatusCode::NOT_FOUND, "no such action").into()),
    };
    let engine = &ui.engine;
    engine
        .store
        .queue_pause(&queue, paused, engine.now())
        .await
        .map_err(|e| ui.failed(&e))?;
    Ok(Redirect::to(&format!("/ui?ns={ns}")).into_response())
}
