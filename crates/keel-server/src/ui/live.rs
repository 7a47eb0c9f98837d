//! Live pages: one Server-Sent Events stream per page (`/ui/live...`)
//! sends the page's changing part — its template's `live` block — again
//! whenever it changed; `assets/live.js` puts it in place. The server
//! renders the part every [`LIVE_MS`] and sends nothing while it stays as
//! the page (or the last event) showed it, so an idle page costs one
//! render per tick and no traffic. The stream ends when the session does
//! (a revoked token, a logout) or the server shuts down.

use std::convert::Infallible;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use keel_core::Namespace;
use serde::Deserialize;

use super::{NsQuery, Refused, Ui, jobs, overview, runs, topics};

/// How often a live part is rendered again.
const LIVE_MS: u64 = 2_000;

/// Which version of its live part a page shows: a hash of the HTML.
pub(super) fn version(html: &str) -> String {
    let mut hasher = DefaultHasher::new();
    html.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

#[derive(Deserialize)]
pub(super) struct LiveQuery {
    #[serde(flatten)]
    ns: NsQuery,
    /// The version the page shows.
    #[serde(default)]
    v: String,
}

/// A live page: what it is of, to render its part again.
enum Page {
    Overview(Namespace),
    Job(String, NsQuery),
    Run(String, NsQuery),
    Topic(Namespace, String),
}

impl Page {
    /// The page's live part, as it is now (an error ends the stream: the
    /// job was pruned, the session lost its grant).
    async fn render(&self, ui: &Ui, headers: &HeaderMap) -> Result<String, Refused> {
        let session = ui.session(headers).await?;
        let (template, ns, ctx) = match self {
            Page::Overview(ns) => (
                "overview.html",
                ns.clone(),
                overview::context(ui, &session, ns).await?,
            ),
            Page::Job(id, query) => {
                let (ns, job) = jobs::job(ui, id, query).await?;
                let ctx = jobs::context(ui, &session, &ns, job).await?;
                ("job.html", ns, ctx)
            }
            Page::Run(id, query) => {
                let (ns, run) = runs::run(ui, id, query).await?;
                let ctx = runs::context(ui, &session, &ns, run).await?;
                ("run.html", ns, ctx)
            }
            Page::Topic(ns, topic) => (
                "topic.html",
                ns.clone(),
                topics::context(ui, &session, ns, topic).await?,
            ),
        };
        ui.render(template, Some(&session), ns.as_str(), ctx, Some("live"))
            .map_err(|e| {
                tracing::error!(error = %e, template, "a live part failed to render");
                Refused::from(ui.error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the page failed to render",
                ))
            })
    }
}

/// `GET /ui/live?ns=`: the overview's stream.
pub(super) async fn overview(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Query(query): Query<LiveQuery>,
) -> Result<Response, Refused> {
    let ns = query.ns.namespace(&ui)?;
    stream(ui, headers, Page::Overview(ns), query.v).await
}

/// `GET /ui/live/jobs/{id}?ns=`: a job's stream.
pub(super) async fn job(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<LiveQuery>,
) -> Result<Response, Refused> {
    stream(ui, headers, Page::Job(id, query.ns), query.v).await
}

/// `GET /ui/live/runs/{id}?ns=`: a run's stream.
pub(super) async fn run(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<LiveQuery>,
) -> Result<Response, Refused> {
    stream(ui, headers, Page::Run(id, query.ns), query.v).await
}

/// `GET /ui/live/topics/{topic}?ns=`: a topic's stream.
pub(super) async fn topic(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(topic): Path<String>,
    Query(query): Query<LiveQuery>,
) -> Result<Response, Refused> {
    let ns = query.ns.namespace(&ui)?;
    stream(ui, headers, Page::Topic(ns, topic), query.v).await
}

struct Live {
    ui: Arc<Ui>,
    headers: HeaderMap,
    page: Page,
    /// The version the browser shows.
    shown: String,
    /// Rendered when the stream opened, to send at once if it changed.
    first: Option<String>,
}

impl Live {
    /// The next part to send; `None` ends the stream.
    async fn next(&mut self) -> Option<String> {
        if let Some(html) = self.first.take()
            && version(&html) != self.shown
        {
            self.shown = version(&html);
            return Some(html);
        }
        loop {
            let shutdown = self.ui.engine.shutdown().clone();
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(LIVE_MS)) => {}
                () = shutdown.wait() => return None,
            }
            let html = self.page.render(&self.ui, &self.headers).await.ok()?;
            let now = version(&html);
            if now != self.shown {
                self.shown = now;
                return Some(html);
            }
        }
    }
}

/// The stream of `page`, whose browser shows version `shown`. Refusals
/// (no session, no such job) answer as the page would.
async fn stream(
    ui: Arc<Ui>,
    headers: HeaderMap,
    page: Page,
    shown: String,
) -> Result<Response, Refused> {
    let first = page.render(&ui, &headers).await?;
    let live = Live {
        ui,
        headers,
        page,
        shown,
        first: Some(first),
    };
    let events = futures_util::stream::unfold(live, |mut live| async move {
        let html = live.next().await?;
        let event = Event::default().event("live").data(html);
        Some((Ok::<_, Infallible>(event), live))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}
