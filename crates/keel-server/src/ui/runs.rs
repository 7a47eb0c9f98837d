//! Runs: the list (`/ui/runs`, by workflow, status and start time) and a
//! run's page (`/ui/runs/{id}`): its DAG coloured by step state, a
//! waterfall of its steps and their failed attempts, each step's record
//! and why it waits; signal, cancel (with or without compensation), retry.

use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use keel_core::auth::{Access, Reach};
use keel_core::workflow::definition::{Action, valid_signal};
use keel_core::workflow::{Definition, Handle, RunId, RunStatus, StepRecord, StepStatus};
use keel_core::{JobState, Namespace, Timestamp};
use keel_engine::workflows::{Hint, Op};
use keel_store::{RunFilter, StoredRun};
use minijinja::context;
use minijinja::value::Serde;
use serde::Deserialize;
use serde_json::Value as Json;

use super::draw::{self, Span};
use super::workflows::{dag_of, describe, parse};
use super::{CsrfForm, NsQuery, Refused, Session, Ui};

/// Runs shown on a page.
const PAGE: u32 = 50;

#[derive(Deserialize)]
pub(super) struct Search {
    #[serde(flatten)]
    ns: NsQuery,
    #[serde(default)]
    workflow: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    cursor: Option<String>,
}

/// A time from a form: RFC 3339, or what a `datetime-local` field sends
/// (`2026-11-29T10:30`, read as UTC).
fn time(ui: &Ui, field: &str, text: &str) -> Result<Option<Timestamp>, Refused> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    Timestamp::parse_rfc3339(text)
        .or_else(|| Timestamp::parse_rfc3339(&format!("{text}:00Z")))
        .or_else(|| Timestamp::parse_rfc3339(&format!("{text}Z")))
        .map(Some)
        .ok_or_else(|| ui.bad(&format!("{field} is not a time: {text}")))
}

fn may_read(ui: &Ui, session: &Session, ns: &Namespace) -> Result<(), Refused> {
    ui.require(
        session,
        Access::Read,
        Reach::Namespace(ns.as_str()),
        &format!("read namespace {ns}"),
    )
}

/// When a run ended, or `None` while it runs.
fn ended(run: &StoredRun) -> Option<Timestamp> {
    run.state.status.is_final().then_some(run.updated_at)
}

fn row(run: &StoredRun) -> minijinja::Value {
    let active: Vec<String> = run
        .state
        .steps
        .iter()
        .filter(|(_, r)| r.state.is_active())
        .map(|(n, _)| n.clone())
        .collect();
    context! {
        id => run.id.to_string(),
        workflow => run.workflow.clone(),
        version => run.version,
        status => run.state.status.as_str(),
        created_at => run.created_at.to_string(),
        took => ended(run).map(|end| draw::duration(end.millis_since(run.created_at))),
        active => active,
        error => run.state.error.clone(),
    }
}

pub(super) async fn list(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Query(search): Query<Search>,
) -> Result<Response, Refused> {
    let (session, ns) = ui.reader(&headers, &search.ns).await?;
    let filter = RunFilter {
        workflow: match search.workflow.trim() {
            "" => None,
            w => Some(w.to_owned()),
        },
        status: match search.status.as_str() {
            "" => None,
            s => Some(RunStatus::parse(s).ok_or_else(|| ui.bad("no such status"))?),
        },
        since: time(&ui, "since", &search.since)?,
        until: time(&ui, "until", &search.until)?,
        limit: PAGE,
        cursor: search.cursor.clone(),
    };
    let engine = &ui.engine;
    let page = engine
        .runs()
        .list(&ns, &filter)
        .await
        .map_err(|e| ui.failed(&e))?;
    let workflows = engine
        .workflows()
        .list(&ns)
        .await
        .map_err(|e| ui.failed(&e))?;
    let next = page.next_cursor.map(|cursor| {
        format!(
            "/ui/runs?ns={ns}&workflow={}&status={}&since={}&until={}&cursor={cursor}",
            search.workflow, search.status, search.since, search.until
        )
    });
    let empty = if workflows.is_empty() {
        format!("No workflows in {ns}: define one with PUT /v1/namespaces/{ns}/workflows/{{name}}.")
    } else if filter.workflow.is_none() && filter.status.is_none() && filter.since.is_none() {
        format!("No runs in {ns}: start one, or they were pruned after the run retention.")
    } else {
        "No run matches these filters.".to_owned()
    };
    Ok(ui.page(
        "runs.html",
        Some(&session),
        ns.as_str(),
        context! {
            statuses => RunStatus::ALL.map(RunStatus::as_str),
            workflows => workflows.iter().map(|w| w.name.clone()).collect::<Vec<_>>(),
            filter => context! {
                workflow => search.workflow, status => search.status,
                since => search.since, until => search.until,
            },
            runs => page.runs.iter().map(row).collect::<Vec<_>>(),
            next => next,
            empty => empty,
        },
    ))
}

/// The run named by the path, in the query's namespace.
pub(super) async fn run(
    ui: &Ui,
    id: &str,
    query: &NsQuery,
) -> Result<(Namespace, StoredRun), Refused> {
    let ns = query.namespace(ui)?;
    let id: RunId = id.parse().map_err(|_| ui.bad("not a run id"))?;
    let run = ui
        .engine
        .runs()
        .get(&ns, id)
        .await
        .map_err(|e| ui.failed(&e))?;
    Ok((ns, run))
}

/// What a step's page row shows, and what the waterfall draws of it.
struct StepView<'a> {
    name: &'a str,
    record: Option<&'a StepRecord>,
    /// Why it has not finished, when it has not.
    waiting: Option<String>,
    /// When its failed attempts ended (a task's job's errors).
    failures: Vec<Timestamp>,
    max_attempts: u32,
}

impl StepView<'_> {
    fn class(&self) -> &'static str {
        self.record.map_or("pending", |r| r.state.as_str())
    }
}

/// Why a step is not done yet, in words.
async fn why_waiting(
    ui: &Ui,
    ns: &Namespace,
    run: &StoredRun,
    definition: &Definition,
    name: &str,
    record: Option<&StepRecord>,
) -> Result<(Option<String>, Vec<Timestamp>), keel_core::Error> {
    let step = definition.steps.get(name);
    let state = record.map_or(StepStatus::Pending, |r| r.state);
    let mut failures = Vec::new();
    let mut waiting = None;
    if let Some(Handle::Job { id, system: false }) = record.and_then(|r| r.handle.or(r.last)) {
        match ui.engine.jobs().get(ns, id).await {
            Ok(job) => {
                failures = job.errors.iter().map(|e| e.at).collect();
                if matches!(job.state, JobState::Scheduled | JobState::Ready) {
                    let gates = ui.engine.jobs().waiting(ns, &job).await?;
                    let words: Vec<String> = gates.iter().map(|g| g.describe()).collect();
                    waiting = Some(if words.is_empty() {
                        format!("job {id} is ready: no worker of its queue has leased it yet")
                    } else {
                        format!("job {id}: {}", words.join("; "))
                    });
                } else if job.state == JobState::Leased {
                    waiting = Some(format!(
                        "job {id} is with a worker (attempt {} of {})",
                        job.attempt, job.max_attempts
                    ));
                }
            }
            Err(e) if e.code == keel_core::ErrorCode::JobNotFound => {}
            Err(e) => return Err(e),
        }
    }
    if run.state.status == RunStatus::Running && waiting.is_none() {
        waiting = match state {
            StepStatus::Pending => step.map(|s| {
                let open: Vec<&str> = s
                    .needs
                    .iter()
                    .filter(|n| {
                        run.state.steps.get(n.as_str()).map(|r| r.state)
                            != Some(StepStatus::Succeeded)
                    })
                    .map(String::as_str)
                    .collect();
                if open.is_empty() {
                    "starts at the run's next advance".to_owned()
                } else {
                    format!("needs {}", open.join(", "))
                }
            }),
            StepStatus::Waiting | StepStatus::Running => step.map(|s| {
                let until = record
                    .and_then(|r| r.wake_at)
                    .map(|t| format!(" (until {t})"))
                    .unwrap_or_default();
                match &s.action {
                    Action::Workflow { name, .. } => format!("its child run of {name}{until}"),
                    action => format!("{}{until}", describe(action)),
                }
            }),
            _ => None,
        };
    }
    Ok((waiting, failures))
}

pub(super) async fn detail(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<NsQuery>,
) -> Result<Response, Refused> {
    let session = ui.session(&headers).await?;
    let (ns, run) = run(&ui, &id, &query).await?;
    let stream = format!("/ui/live/runs/{}?ns={ns}", run.id);
    let ctx = context(&ui, &session, &ns, run).await?;
    Ok(ui.live_page("run.html", &session, &ns, ctx, &stream))
}

/// What a run's page shows, for the page and its live stream.
pub(super) async fn context(
    ui: &Ui,
    session: &Session,
    ns: &Namespace,
    run: StoredRun,
) -> Result<minijinja::Value, Refused> {
    may_read(ui, session, ns)?;
    let version = ui
        .engine
        .workflows()
        .stored(ns, &run.workflow, Some(run.version))
        .await
        .map_err(|e| ui.failed(&e))?;
    let definition = parse(ui, &version.definition)?;
    // The DAG's steps, then the compensations that ran.
    let mut views = Vec::new();
    for (name, step) in &definition.steps {
        let record = run.state.steps.get(name);
        if step.compensation && record.is_none() {
            continue;
        }
        let (waiting, failures) = why_waiting(ui, ns, &run, &definition, name, record)
            .await
            .map_err(|e| ui.failed(&e))?;
        views.push(StepView {
            name,
            record,
            waiting,
            failures,
            max_attempts: step.max_attempts,
        });
    }
    // In the order they ran, as the waterfall draws them.
    views.sort_by_key(|v| {
        let started = v.record.and_then(|r| r.started_at);
        (started.is_none(), started, v.name)
    });
    let class_of = |name: &str| {
        views
            .iter()
            .find(|v| v.name == name)
            .map_or("pending", StepView::class)
    };
    let dag = dag_of(&definition, class_of);
    let now = ui.engine.now();
    let waterfall = draw::waterfall(
        views
            .iter()
            .map(|v| Span {
                name: v.name,
                class: v.class(),
                started: v.record.and_then(|r| r.started_at),
                finished: v.record.and_then(|r| r.finished_at),
                failures: v.failures.clone(),
            })
            .collect(),
        run.created_at,
        ended(&run).unwrap_or(now),
    );
    let steps: Vec<_> = views.iter().map(|v| step_view(ns, v)).collect();
    let pretty = |v: &Json| serde_json::to_string_pretty(v).unwrap_or_default();
    let input = serde_json::from_str::<Json>(&run.input)
        .map(|v| pretty(&v))
        .unwrap_or_else(|_| run.input.clone());
    let running = run.state.status == RunStatus::Running;
    let took = draw::duration(ended(&run).unwrap_or(now).millis_since(run.created_at));
    let operate = session.may(Access::Operate, Reach::Namespace(ns.as_str()));
    Ok(context! {
        run => context! {
            id => run.id.to_string(),
            workflow => run.workflow,
            version => run.version,
            status => run.state.status.as_str(),
            created_at => run.created_at.to_string(),
            updated_at => run.updated_at.to_string(),
            took => took,
            input => input,
            output => run.state.output.as_ref().map(pretty),
            error => run.state.error,
            compensating => run.state.compensating,
            cancelling => run.state.cancelling,
            signals => run.state.signals.keys().cloned().collect::<Vec<_>>(),
            parent => run.state.parent.as_ref().map(|p| p.run.to_string()),
        },
        dag => Serde(dag),
        waterfall => Serde(waterfall),
        steps => steps,
        can_signal => running && session.may(Access::Publish, Reach::Namespace(ns.as_str())),
        can_cancel => running && operate,
        can_retry => run.state.status == RunStatus::Failed && operate,
    })
}

fn step_view(ns: &Namespace, v: &StepView<'_>) -> minijinja::Value {
    let r = v.record;
    // An HTTP step's job is on Keel's own queue, which has no page.
    let link = r.and_then(|r| r.handle.or(r.last)).and_then(|h| match h {
        Handle::Job { id, system: false } => Some(format!("/ui/jobs/{id}?ns={ns}")),
        Handle::Job { system: true, .. } => None,
        Handle::Run { id } => Some(format!("/ui/runs/{id}?ns={ns}")),
    });
    let items = r.filter(|r| !r.items.is_empty()).map(|r| {
        let done = r
            .items
            .iter()
            .filter(|i| i.state == StepStatus::Succeeded)
            .count();
        let failed = r
            .items
            .iter()
            .filter(|i| i.state == StepStatus::Failed)
            .count();
        format!("{} items: {done} succeeded, {failed} failed", r.items.len())
    });
    context! {
        name => v.name,
        state => v.class(),
        attempts => r.map_or(0, |r| r.attempts),
        max_attempts => v.max_attempts,
        started_at => r.and_then(|r| r.started_at).map(|t| t.to_string()),
        took => r.and_then(|r| Some(draw::duration(r.finished_at?.millis_since(r.started_at?)))),
        error => r.and_then(|r| r.error.clone()),
        waiting => v.waiting.clone(),
        link => link,
        items => items,
    }
}

#[derive(Deserialize)]
pub(super) struct SignalForm {
    csrf: String,
    signal: String,
    #[serde(default)]
    payload: String,
}

/// `POST /ui/runs/{id}/signal`: the payload is JSON, or empty for `null`.
pub(super) async fn signal(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<NsQuery>,
    Form(form): Form<SignalForm>,
) -> Result<Response, Refused> {
    let (_, ns, run) = acting(
        &ui,
        &headers,
        &id,
        &query,
        &form.csrf,
        Access::Publish,
        "signal runs",
    )
    .await?;
    let signal = form.signal.trim();
    if !valid_signal(signal) {
        return Err(ui.bad("a signal name is 1 to 64 characters of a-z, A-Z, 0-9, '-', '_' or '.'"));
    }
    if form.payload.len() > ui.engine.limits().max_payload_bytes {
        return Err(ui.bad("the payload is larger than --max-payload-bytes"));
    }
    let payload = match form.payload.trim() {
        "" => Json::Null,
        text => serde_json::from_str(text)
            .map_err(|e| ui.bad(&format!("the payload is not JSON: {e}")))?,
    };
    advance(&ui, &ns, run, Op::Signal(signal.to_owned(), payload)).await
}

#[derive(Deserialize)]
pub(super) struct CancelForm {
    csrf: String,
    /// A checkbox: present when ticked.
    compensate: Option<String>,
}

/// `POST /ui/runs/{id}/cancel`.
pub(super) async fn cancel(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<NsQuery>,
    Form(form): Form<CancelForm>,
) -> Result<Response, Refused> {
    let (session, ns, run) = acting(
        &ui,
        &headers,
        &id,
        &query,
        &form.csrf,
        Access::Operate,
        "cancel runs",
    )
    .await?;
    let by = session
        .caller
        .as_ref()
        .map(|c| format!("{} (token {}, dashboard)", c.name(), c.token_id()));
    let op = Op::Cancel {
        compensate: form.compensate.is_some(),
        by,
    };
    advance(&ui, &ns, run, op).await
}

/// `POST /ui/runs/{id}/retry`.
pub(super) async fn retry(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<NsQuery>,
    Form(form): Form<CsrfForm>,
) -> Result<Response, Refused> {
    let (_, ns, run) = acting(
        &ui,
        &headers,
        &id,
        &query,
        &form.csrf,
        Access::Operate,
        "retry runs",
    )
    .await?;
    advance(&ui, &ns, run, Op::Retry).await
}

/// The session, namespace and run of an action on a run, once the form
/// and the session's grant (`access`, to do `what`) are checked.
async fn acting(
    ui: &Ui,
    headers: &HeaderMap,
    id: &str,
    query: &NsQuery,
    csrf: &str,
    access: Access,
    what: &str,
) -> Result<(Session, Namespace, RunId), Refused> {
    let session = ui.session(headers).await?;
    ui.check_post(headers, &session, csrf)?;
    let (ns, run) = run(ui, id, query).await?;
    ui.require(&session, access, Reach::Namespace(ns.as_str()), what)?;
    Ok((session, ns, run.id))
}

/// Applies `op` to a run and shows the run.
async fn advance(ui: &Ui, ns: &Namespace, id: RunId, op: Op) -> Result<Response, Refused> {
    ui.engine
        .workflows()
        .advance(ns, id, Hint::Nothing, op)
        .await
        .map_err(|e| ui.failed(&e))?;
    Ok(Redirect::to(&format!("/ui/runs/{id}?ns={ns}")).into_response())
}
