//! Bulk actions on a job search (`/ui/jobs/bulk`): redrive the dead jobs
//! the page's filter selects, or cancel its unfinished ones. The GET
//! counts what the action would touch and asks to confirm; the POST reads
//! the filter again and acts on what matches then (the page says when that
//! differs from what was confirmed). One action touches at most
//! [`BULK_BOUND`] jobs, the newest first, and says when more are left.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Form, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use keel_core::auth::{Access, Reach};
use keel_core::{ErrorCode, Job, JobId, JobState, Namespace, QueueName, QueueRef};
use keel_store::RedriveSelection;
use minijinja::context;
use serde::Deserialize;

use super::jobs::{Search, scan};
use super::{Refused, Session, Ui};

/// Most jobs one action touches (and, for a payload field, reads).
const BULK_BOUND: usize = 10_000;
/// Cancels in flight at once: the store commits them together.
const CANCELS_IN_FLIGHT: usize = 32;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Redrive,
    Cancel,
}

impl Action {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "redrive" => Some(Action::Redrive),
            "cancel" => Some(Action::Cancel),
            _ => None,
        }
    }

    /// The states of the jobs it applies to.
    fn states(self) -> &'static [JobState] {
        match self {
            Action::Redrive => &[JobState::Dead],
            Action::Cancel => &[JobState::Scheduled, JobState::Ready, JobState::Leased],
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Action::Redrive => "redrive",
            Action::Cancel => "cancel",
        }
    }
}

#[derive(Deserialize)]
pub(super) struct BulkQuery {
    #[serde(flatten)]
    search: Search,
    #[serde(default)]
    action: String,
}

/// The jobs an action would touch, newest first, and whether more match
/// past the bound.
async fn targets(
    ui: &Ui,
    ns: &Namespace,
    search: &Search,
    action: Action,
) -> Result<(Vec<Job>, bool), Refused> {
    let mut selection = search.selection(ui)?;
    selection.filter.cursor = None;
    let states = match selection.filter.state {
        Some(s) if action.states().contains(&s) => vec![s],
        Some(s) => {
            return Err(ui.bad(&format!(
                "this search is of {s} jobs, which cannot be {}d",
                action.verb()
            )));
        }
        None => action.states().to_vec(),
    };
    let mut jobs = Vec::new();
    let mut more = false;
    for state in states {
        let left = BULK_BOUND - jobs.len();
        if left == 0 {
            more = true;
            break;
        }
        selection.filter.state = Some(state);
        let found = scan(ui, ns, &selection, left, BULK_BOUND)
            .await
            .map_err(|e| ui.failed(&e))?;
        more |= found.next.is_some();
        jobs.extend(found.jobs);
    }
    Ok((jobs, more))
}

/// The session, namespace and action of a bulk request, checked.
async fn begin(
    ui: &Ui,
    headers: &HeaderMap,
    query: &BulkQuery,
) -> Result<(Session, Namespace, Action), Refused> {
    let session = ui.session(headers).await?;
    let ns = query.search.ns.namespace(ui)?;
    let action = Action::parse(&query.action).ok_or_else(|| ui.bad("no such bulk action"))?;
    ui.require(
        &session,
        Access::Operate,
        Reach::Namespace(ns.as_str()),
        &format!("{} jobs in bulk", action.verb()),
    )?;
    Ok((session, ns, action))
}

/// `GET /ui/jobs/bulk?action=...&<search>`: what the action would touch,
/// and a button to confirm.
pub(super) async fn confirm(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Query(query): Query<BulkQuery>,
) -> Result<Response, Refused> {
    let (session, ns, action) = begin(&ui, &headers, &query).await?;
    let (jobs, more) = targets(&ui, &ns, &query.search, action).await?;
    let search = query.search.query(&ns);
    Ok(ui.page(
        "bulk.html",
        Some(&session),
        ns.as_str(),
        context! {
            action => action.verb(),
            count => jobs.len(),
            more => more,
            bound => BULK_BOUND,
            sample => jobs.iter().take(20).map(|j| context! {
                id => j.id.to_string(), queue => j.queue.clone(), state => j.state.as_str(),
            }).collect::<Vec<_>>(),
            search => search,
        },
    ))
}

#[derive(Deserialize)]
pub(super) struct BulkForm {
    csrf: String,
    /// How many jobs the confirmation page counted.
    count: usize,
}

/// `POST /ui/jobs/bulk?action=...&<search>`: the action, on what the
/// filter selects now.
pub(super) async fn apply(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Query(query): Query<BulkQuery>,
    Form(form): Form<BulkForm>,
) -> Result<Response, Refused> {
    let (session, ns, action) = begin(&ui, &headers, &query).await?;
    ui.check_post(&headers, &session, &form.csrf)?;
    let (jobs, more) = targets(&ui, &ns, &query.search, action).await?;
    let done = match action {
        Action::Redrive => redrive(&ui, &ns, &jobs).await?,
        Action::Cancel => cancel(&ui, &ns, &jobs).await?,
    };
    Ok(ui.page(
        "bulk.html",
        Some(&session),
        ns.as_str(),
        context! {
            action => action.verb(),
            done => done,
            matched => jobs.len(),
            confirmed => form.count,
            more => more,
            bound => BULK_BOUND,
            search => query.search.query(&ns),
        },
    ))
}

/// Redrives `jobs`, a batch per queue; how many moved (a job no longer
/// dead stays as it is).
async fn redrive(ui: &Ui, ns: &Namespace, jobs: &[Job]) -> Result<usize, Refused> {
    let mut by_queue: BTreeMap<&str, Vec<JobId>> = BTreeMap::new();
    for job in jobs {
        by_queue.entry(&job.queue).or_default().push(job.id);
    }
    let mut moved = 0;
    for (queue, ids) in by_queue {
        let queue = QueueRef {
            namespace: ns.clone(),
            queue: QueueName::new(queue).map_err(|e| ui.bad(&e.message))?,
        };
        for batch in ids.chunks(ui.engine.limits().max_batch) {
            moved += ui
                .engine
                .jobs()
                .redrive(&queue, RedriveSelection::Ids(batch.to_vec()), None)
                .await
                .map_err(|e| ui.failed(&e))?
                .len();
        }
    }
    Ok(moved)
}

/// Cancels `jobs`, a few at a time; how many it cancelled (a job that
/// ended meanwhile is left as it ended).
async fn cancel(ui: &Ui, ns: &Namespace, jobs: &[Job]) -> Result<usize, Refused> {
    let mut cancelled = 0;
    for batch in jobs.chunks(CANCELS_IN_FLIGHT) {
        let mut set = tokio::task::JoinSet::new();
        for job in batch {
            let (engine, ns, id) = (ui.engine.clone(), ns.clone(), job.id);
            set.spawn(async move { engine.jobs().cancel(&ns, id).await });
        }
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(Ok(_)) => cancelled += 1,
                Ok(Err(e))
                    if matches!(e.code, ErrorCode::InvalidState | ErrorCode::JobNotFound) => {}
                Ok(Err(e)) => return Err(ui.failed(&e)),
                Err(e) => {
                    tracing::error!(error = %e, "a bulk cancel's task failed");
                    return Err(ui.failed(&keel_core::Error::internal("a cancel failed")));
                }
            }
        }
    }
    Ok(cancelled)
}
