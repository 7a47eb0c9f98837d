//! The overview of a namespace (`/ui?ns=`): each queue's jobs by state,
//! oldest ready job, last hour (a chart of completions and failures, the
//! failure rate, wait p50 and p99: what this node saw), pause switch and
//! objectives; runs running and ended in the last hour by status; topics; subscriptions and their lag. Pause
//! and resume are the page's one action (an operator's).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use keel_core::auth::{Access, Reach};
use keel_core::slo::{ALERTS, Kind, Objective, Status};
use keel_core::workflow::RunStatus;
use keel_core::{JobState, Namespace, QueueName, QueueRef, Timestamp};
use keel_engine::Hour;
use keel_engine::slos::SubjectStatus;
use minijinja::value::Serde;
use minijinja::{Value, context};
use serde::Serialize;

use super::draw;
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
    /// How long the oldest ready job has waited.
    oldest_ready: Option<String>,
    hour: HourView,
}

/// A queue's last hour on this node: completions and failures a minute,
/// charted; the failure rate; the waits of the jobs leased.
#[derive(Serialize)]
struct HourView {
    chart: draw::Spark,
    completed: u64,
    failed: u64,
    failure_rate: Option<String>,
    wait_p50: Option<String>,
    wait_p99: Option<String>,
    /// No job was leased from the queue in the last ten minutes.
    idle: bool,
}

fn hour_view(hour: &Hour) -> HourView {
    let completed: Vec<u64> = hour.minutes.iter().map(|m| m.completed).collect();
    let failed: Vec<u64> = hour.minutes.iter().map(|m| m.failed).collect();
    let (done, bad) = (completed.iter().sum::<u64>(), failed.iter().sum::<u64>());
    let wait = |q: f64| {
        hour.waits
            .quantile(q)
            .map(|ms| draw::duration(ms.round() as u64))
    };
    HourView {
        chart: draw::spark(&[&completed, &failed]),
        completed: done,
        failed: bad,
        failure_rate: (done + bad > 0)
            .then(|| format!("{:.1} %", 100.0 * bad as f64 / (done + bad) as f64)),
        wait_p50: wait(0.5),
        wait_p99: wait(0.99),
        idle: hour.minutes.iter().rev().take(10).all(|m| m.leased == 0),
    }
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
    let ctx = context(&ui, &session, &ns).await?;
    Ok(ui.live_page(
        "overview.html",
        &session,
        &ns,
        ctx,
        &format!("/ui/live?ns={ns}"),
    ))
}

/// What the overview shows, for the page and its live stream.
pub(super) async fn context(ui: &Ui, session: &Session, ns: &Namespace) -> Result<Value, Refused> {
    ui.require(
        session,
        Access::Read,
        Reach::Namespace(ns.as_str()),
        &format!("read namespace {ns}"),
    )?;
    gather(ui, session, ns).await.map_err(|e| ui.failed(&e))
}

async fn gather(ui: &Ui, session: &Session, ns: &Namespace) -> Result<Value, keel_core::Error> {
    let engine = &ui.engine;
    let statuses = engine.slos().statuses(Some(ns), engine.now()).await?;
    let mut counts: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for depth in engine.queues().depths().await? {
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
    for (queue, _) in engine.queues().policies().await? {
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
        let stats = engine.queues().status(&queue).await?.stats;
        let now = engine.now();
        queues.push(QueueRow {
            slos: badges(&statuses, Kind::Queue, &name),
            name,
            counts,
            paused: stats.paused,
            oldest_ready: stats
                .oldest_ready_at
                .map(|t| draw::duration(now.millis_since(t))),
            hour: hour_view(&engine.queues().hour(&queue)),
        });
    }
    let topics: Vec<_> = engine
        .topics()
        .list(ns)
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
    let subscriptions: Vec<_> = engine
        .subscriptions()
        .list(Some(ns), None)
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
    let hour_ago = Timestamp::from_millis(engine.now().as_millis() - 3_600_000);
    let runs = engine.runs().count(ns, hour_ago).await?;
    let runs: Vec<_> = RunStatus::ALL
        .iter()
        .map(|status| {
            let n = runs
                .iter()
                .find(|(s, _)| s == status)
                .map_or(0, |(_, n)| *n);
            context! { status => status.as_str(), count => n }
        })
        .collect();
    let can_operate = session.may(Access::Operate, Reach::Namespace(ns.as_str()));
    Ok(context! {
            states => STATES.map(JobState::as_str),
            queues => Value::from(Serde(&queues)),
            topics => topics,
            subscriptions => subscriptions,
            runs => runs,
            can_operate => can_operate,
    })
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
        .queues()
        .pause(&queue, paused)
        .await
        .map_err(|e| ui.failed(&e))?;
    Ok(Redirect::to(&format!("/ui?ns={ns}")).into_response())
}
