//! Jobs: a search over a namespace's jobs (`/ui/jobs`) by queue, state,
//! tag, id or a payload field, and a job's page (`/ui/jobs/{id}`) with its
//! payload, result, every failed attempt, "attempt N of M" and why it
//! waits; cancel, and for a dead job an edited payload redriven.
//!
//! A payload field (`payload.customer = 42`) is matched by a bounded scan
//! of the newest jobs the other filters select, never by a full scan: the
//! page says when the bound stopped it.

use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use keel_core::auth::{Access, Reach};
use keel_core::{Job, JobId, JobState, Namespace, QueueName, QueueRef};
use keel_store::{JobFilter, RedriveSelection};
use minijinja::context;
use serde::Deserialize;
use serde_json::Value as Json;
use serde_json::value::RawValue;

use super::{NsQuery, Refused, Session, Ui};

/// Jobs shown on a page.
const PAGE: u32 = 50;
/// Most jobs a payload search reads before it stops and says so.
const SCAN_BOUND: usize = 10_000;

#[derive(Deserialize)]
pub(super) struct Search {
    #[serde(flatten)]
    pub ns: NsQuery,
    #[serde(default)]
    queue: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    q: String,
    cursor: Option<String>,
}

/// `payload.a.b = value`: the path, and the value as JSON (a bare word is
/// a string).
fn payload_match(q: &str) -> Option<(Vec<String>, Json)> {
    let (path, value) = q.split_once('=')?;
    let path = path.trim().strip_prefix("payload.")?;
    let value = value.trim();
    let value = serde_json::from_str(value).unwrap_or_else(|_| Json::String(value.to_owned()));
    Some((path.split('.').map(str::to_owned).collect(), value))
}

fn matches(job: &Job, path: &[String], value: &Json) -> bool {
    let Ok(payload) = serde_json::from_str::<Json>(job.payload.get()) else {
        return false;
    };
    path.iter()
        .try_fold(&payload, |v, key| v.get(key))
        .is_some_and(|found| found == value)
}

fn row(job: &Job) -> minijinja::Value {
    context! {
        id => job.id.to_string(),
        queue => job.queue.clone(),
        state => job.state.as_str(),
        attempt => job.attempt,
        max_attempts => job.max_attempts,
        last_error => job.errors.last().map(|e| e.message.clone()),
        created_at => job.created_at.to_string(),
    }
}

/// What a search selects: the store's filter and a payload field to match.
pub(super) struct Selection {
    pub filter: JobFilter,
    pub payload: Option<(Vec<String>, Json)>,
}

impl Search {
    /// This search as a query string (without its cursor), for links.
    pub(super) fn query(&self, ns: &Namespace) -> String {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("ns", ns.as_str())
            .append_pair("queue", &self.queue)
            .append_pair("state", &self.state)
            .append_pair("tag", &self.tag)
            .append_pair("q", &self.q)
            .finish()
    }

    /// The filter this search reads as; a job id in `q` is not one.
    pub(super) fn selection(&self, ui: &Ui) -> Result<Selection, Refused> {
        let payload = match self.q.trim() {
            "" => None,
            q => Some(payload_match(q).ok_or_else(|| {
                ui.bad("search for a job id, or a payload field: payload.customer = 42")
            })?),
        };
        let filter = JobFilter {
            queue: match self.queue.trim() {
                "" => None,
                q => Some(QueueName::new(q).map_err(|e| ui.bad(&e.message))?),
            },
            state: match self.state.as_str() {
                "" => None,
                s => Some(JobState::parse(s).ok_or_else(|| ui.bad("no such state"))?),
            },
            tag: match self.tag.trim() {
                "" => None,
                t => Some(keel_core::job::parse_tag(t).map_err(|e| ui.bad(&e.message))?),
            },
            limit: PAGE,
            cursor: self.cursor.clone(),
        };
        Ok(Selection { filter, payload })
    }
}

/// What a [`scan`] found.
pub(super) struct Found {
    pub jobs: Vec<Job>,
    /// Jobs read.
    pub read: usize,
    /// Where the next read would start; `None` when nothing is left.
    pub next: Option<String>,
}

/// The jobs `selection` matches, newest first, read a batch at a time
/// until `want` match or `bound` jobs were read.
pub(super) async fn scan(
    ui: &Ui,
    ns: &Namespace,
    selection: &Selection,
    want: usize,
    bound: usize,
) -> Result<Found, keel_core::Error> {
    let max_batch = ui.engine.limits().max_batch;
    let mut filter = selection.filter.clone();
    // Without a payload field every job read matches: read no more than wanted.
    filter.limit = match selection.payload {
        None => want.min(max_batch),
        Some(_) => max_batch,
    } as u32;
    let mut found = Vec::new();
    let mut read = 0;
    loop {
        let page = ui.engine.jobs().list(ns, &filter).await?;
        read += page.jobs.len();
        found.extend(page.jobs.into_iter().filter(|j| {
            selection
                .payload
                .as_ref()
                .is_none_or(|(path, value)| matches(j, path, value))
        }));
        if found.len() >= want || read >= bound || page.next_cursor.is_none() {
            found.truncate(want);
            return Ok(Found {
                jobs: found,
                read,
                next: page.next_cursor,
            });
        }
        filter.cursor = page.next_cursor;
    }
}

pub(super) async fn list(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Query(search): Query<Search>,
) -> Result<Response, Refused> {
    let session = ui.session(&headers).await?;
    let ns = search.ns.namespace(&ui)?;
    ui.require(
        &session,
        Access::ReadJobs,
        Reach::Namespace(ns.as_str()),
        &format!("read the jobs of {ns}"),
    )?;
    if let Ok(id) = search.q.trim().parse::<JobId>() {
        return Ok(Redirect::to(&format!("/ui/jobs/{id}?ns={ns}")).into_response());
    }
    let selection = search.selection(&ui)?;
    let found = scan(&ui, &ns, &selection, PAGE as usize, SCAN_BOUND)
        .await
        .map_err(|e| ui.failed(&e))?;
    let query = search.query(&ns);
    let (next, notice) = match (&selection.payload, found.next) {
        (None, Some(cursor)) => (Some(format!("/ui/jobs?{query}&cursor={cursor}")), None),
        // A payload search shows its first page of matches, and says when
        // the bound stopped it.
        (Some(_), Some(_)) if found.read >= SCAN_BOUND => (
            None,
            Some(format!(
                "Searched the newest {} jobs these filters select and stopped there: \
                 narrow by queue, state or tag to search further.",
                found.read
            )),
        ),
        _ => (None, None),
    };
    let filter = &selection.filter;
    let empty = if filter.queue.is_none() && filter.state.is_none() && selection.payload.is_none() {
        format!("No jobs in {ns}: enqueue one, or it was pruned after its queue's retention.")
    } else {
        "No job matches these filters.".to_owned()
    };
    let operate = session.may(Access::Operate, Reach::Namespace(ns.as_str()));
    let state = filter.state;
    Ok(ui.page(
        "jobs.html",
        Some(&session),
        ns.as_str(),
        context! {
            states => JobState::ALL.map(JobState::as_str),
            filter => context! {
                queue => search.queue, state => search.state, tag => search.tag, q => search.q,
            },
            jobs => found.jobs.iter().map(row).collect::<Vec<_>>(),
            next => next,
            notice => notice,
            empty => empty,
            query => query,
            can_redrive => operate && state.is_none_or(|s| s == JobState::Dead),
            can_cancel => operate && state.is_none_or(|s| !s.is_final()),
        },
    ))
}

/// The job named by the path, in the query's namespace.
pub(super) async fn job(ui: &Ui, id: &str, ns: &NsQuery) -> Result<(Namespace, Job), Refused> {
    let ns = ns.namespace(ui)?;
    let id: JobId = id.parse().map_err(|_| ui.bad("not a job id"))?;
    let job = ui
        .engine
        .jobs()
        .get(&ns, id)
        .await
        .map_err(|e| ui.failed(&e))?;
    Ok((ns, job))
}

fn queue_reach<'a>(ns: &'a Namespace, job: &'a Job) -> Reach<'a> {
    Reach::Resource {
        namespace: ns.as_str(),
        kind: "queue",
        name: &job.queue,
    }
}

pub(super) async fn detail(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<NsQuery>,
) -> Result<Response, Refused> {
    let session = ui.session(&headers).await?;
    let (ns, job) = job(&ui, &id, &query).await?;
    let stream = format!("/ui/live/jobs/{}?ns={ns}", job.id);
    let ctx = context(&ui, &session, &ns, job).await?;
    Ok(ui.live_page("job.html", &session, &ns, ctx, &stream))
}

/// What a job's page shows, for the page and its live stream.
pub(super) async fn context(
    ui: &Ui,
    session: &Session,
    ns: &Namespace,
    job: Job,
) -> Result<minijinja::Value, Refused> {
    ui.require(
        session,
        Access::ReadJobs,
        Reach::Namespace(ns.as_str()),
        &format!("read the jobs of {ns}"),
    )?;
    let unfinished = matches!(
        job.state,
        JobState::Scheduled | JobState::Ready | JobState::Leased
    );
    let waiting = if matches!(job.state, JobState::Scheduled | JobState::Ready) {
        let gates = ui
            .engine
            .jobs()
            .waiting(ns, &job)
            .await
            .map_err(|e| ui.failed(&e))?;
        Some(gates.iter().map(|g| g.describe()).collect::<Vec<_>>())
    } else {
        None
    };
    let pretty = |raw: &RawValue| {
        serde_json::from_str::<Json>(raw.get())
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or_else(|_| raw.get().to_owned())
    };
    let can_redrive =
        job.state == JobState::Dead && session.may(Access::Operate, queue_reach(ns, &job));
    let can_cancel = unfinished && session.may(Access::Operate, Reach::Namespace(ns.as_str()));
    Ok(context! {
        job => context! {
            id => job.id.to_string(),
            queue => job.queue,
            state => job.state.as_str(),
            attempt => job.attempt,
            max_attempts => job.max_attempts,
            priority => job.priority,
            run_at => job.run_at.to_string(),
            created_at => job.created_at.to_string(),
            ordering_key => job.ordering_key,
            trace_id => job.traceparent.as_ref().map(|t| t.trace_id().to_owned()),
            tags => job.tags,
            payload => pretty(&job.payload),
            result => job.result.as_deref().map(pretty),
            errors => job.errors.iter().map(|e| context! {
                attempt => e.attempt, at => e.at.to_string(), message => e.message.clone(),
            }).collect::<Vec<_>>(),
        },
        waiting => waiting,
        can_redrive => can_redrive,
        can_cancel => can_cancel,
    })
}

#[derive(Deserialize)]
pub(super) struct RedriveForm {
    csrf: String,
    payload: String,
}

/// `POST /ui/jobs/{id}/redrive`: a dead job back to ready with the
/// payload as edited (it must still be JSON within the payload limit).
pub(super) async fn redrive(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<NsQuery>,
    Form(form): Form<RedriveForm>,
) -> Result<Response, Refused> {
    let session = ui.session(&headers).await?;
    ui.check_post(&headers, &session, &form.csrf)?;
    let (ns, job) = job(&ui, &id, &query).await?;
    ui.require(
        &session,
        Access::Operate,
        queue_reach(&ns, &job),
        &format!("redrive the jobs of {}", job.queue),
    )?;
    if form.payload.len() > ui.engine.limits().max_payload_bytes {
        return Err(ui.bad("the payload is larger than --max-payload-bytes"));
    }
    let payload: Json = serde_json::from_str(&form.payload)
        .map_err(|e| ui.bad(&format!("the payload is not JSON: {e}")))?;
    let payload = serde_json::value::to_raw_value(&payload)
        .map_err(|e| ui.bad(&format!("the payload is not JSON: {e}")))?;
    let queue = QueueRef {
        namespace: ns.clone(),
        queue: QueueName::new(&job.queue).map_err(|e| ui.bad(&e.message))?,
    };
    let moved = ui
        .engine
        .jobs()
        .redrive(&queue, RedriveSelection::Ids(vec![job.id]), Some(payload))
        .await
        .map_err(|e| ui.failed(&e))?;
    if moved.is_empty() {
        return Err(ui
            .error(
                StatusCode::CONFLICT,
                "only a dead job is redriven; this one is not dead",
            )
            .into());
    }
    Ok(Redirect::to(&format!("/ui/jobs/{id}?ns={ns}")).into_response())
}

/// `POST /ui/jobs/{id}/cancel`.
pub(super) async fn cancel(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<NsQuery>,
    Form(form): Form<super::CsrfForm>,
) -> Result<Response, Refused> {
    let session = ui.session(&headers).await?;
    ui.check_post(&headers, &session, &form.csrf)?;
    let (ns, job) = job(&ui, &id, &query).await?;
    ui.require(
        &session,
        Access::Operate,
        Reach::Namespace(ns.as_str()),
        "cancel jobs",
    )?;
    ui.engine
        .jobs()
        .cancel(&ns, job.id)
        .await
        .map_err(|e| ui.failed(&e))?;
    Ok(Redirect::to(&format!("/ui/jobs/{id}?ns={ns}")).into_response())
}
