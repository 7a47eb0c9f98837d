//! The dashboard at `/ui`: pages rendered on the server from minijinja
//! templates and one stylesheet, all embedded in the binary, so building
//! Keel needs no toolchain but Rust and a page is one request.
//!
//! Who is looking (`session.rs`): with tokens required, the browser logs
//! in with an API token, kept in an `HttpOnly`, `SameSite=Strict` cookie
//! scoped to `/ui` (`Secure` over HTTPS); every page checks it as the API
//! checks a bearer token, and shows only the buttons the token's role may
//! use — the server refuses the others anyway. Every state change is a
//! POST that carries a CSRF token (a SHA-256 of a per-process secret and
//! the session's token, which a page of another site can neither read nor
//! compute) and whose `Origin`, when the browser sends one, is this host.
//! Without tokens (`--auth off`, `keel dev`) a banner says so. This file
//! holds the router, the templates and how a page is rendered.
//!
//! One module per page: `overview.rs` (queues, topics, subscriptions,
//! objectives; pause and resume), `jobs.rs` (search, a job's page, cancel,
//! redrive with an edited payload), `bulk.rs` (redrive or cancel what a
//! search selects, after a count and a confirmation), `workflows.rs`
//! (definitions, their versions and DAG), `runs.rs` (runs by workflow, status and time; a
//! run's DAG, waterfall and steps; signal, cancel, retry); `draw.rs` lays
//! out the SVG pictures they show; `topics.rs` (a topic's subscriptions
//! and the tail of its events), `schedules.rs` (next fires and the
//! ledger), `endpoints.rs` (health and the attempts log),
//! `notifications.rs` (search, each delivery's attempts, the channels'
//! recent outcomes), `handlers.rs` (handlers with this node's invocations
//! and their logs), `monitors.rs` (monitors, incidents, an incident's
//! timeline; acknowledge, resolve, note), and for admins
//! `tokens.rs` and `audit.rs`; `live.rs` keeps the overview, a job's, a
//! run's and a topic's page current over one Server-Sent Events stream
//! each.

mod audit;
mod bulk;
mod draw;
mod endpoints;
mod handlers;
mod jobs;
mod live;
mod monitors;
mod notifications;
mod overview;
mod runs;
mod schedules;
mod session;
mod tokens;
mod topics;
mod workflows;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use keel_core::Namespace;
use keel_core::auth::{Access, Reach};
use keel_engine::Engine;
use minijinja::{Environment, Value, context};
use serde::Deserialize;

use crate::api::AuthConfig;
use session::{CsrfForm, Session};

/// What every page shares.
struct Ui {
    engine: Arc<Engine>,
    /// Pages need a logged-in token.
    required: bool,
    /// Cookies only over HTTPS.
    secure: bool,
    /// Mixed into every CSRF token; made at start.
    csrf_key: [u8; 32],
    templates: Environment<'static>,
}

/// The dashboard's routes; `secure` when served over HTTPS.
pub fn router(engine: Arc<Engine>, auth: AuthConfig, secure: bool) -> Router {
    let mut csrf_key = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut csrf_key)
        .unwrap_or_else(|_| unreachable!("the system has randomness"));
    let ui = Arc::new(Ui {
        engine,
        required: auth.required,
        secure,
        csrf_key,
        templates: templates(),
    });
    Router::new()
        .route("/ui", get(overview::page))
        .route("/ui/", get(overview::page))
        .route("/ui/login", get(session::login_form).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route("/ui/queues/{queue}/{action}", post(overview::queue_action))
        .route("/ui/jobs", get(jobs::list))
        .route("/ui/jobs/bulk", get(bulk::confirm).post(bulk::apply))
        .route("/ui/jobs/{id}", get(jobs::detail))
        .route("/ui/jobs/{id}/redrive", post(jobs::redrive))
        .route("/ui/jobs/{id}/cancel", post(jobs::cancel))
        .route("/ui/workflows", get(workflows::list))
        .route("/ui/workflows/{name}", get(workflows::detail))
        .route("/ui/runs", get(runs::list))
        .route("/ui/runs/{id}", get(runs::detail))
        .route("/ui/runs/{id}/signal", post(runs::signal))
        .route("/ui/runs/{id}/cancel", post(runs::cancel))
        .route("/ui/runs/{id}/retry", post(runs::retry))
        .route("/ui/topics/{topic}", get(topics::page))
        .route("/ui/schedules", get(schedules::list))
        .route("/ui/schedules/{name}", get(schedules::detail))
        .route("/ui/endpoints", get(endpoints::list))
        .route("/ui/endpoints/{name}", get(endpoints::detail))
        .route("/ui/handlers", get(handlers::list))
        .route("/ui/handlers/{name}", get(handlers::detail))
        .route("/ui/monitors", get(monitors::monitors))
        .route("/ui/incidents", get(monitors::incidents))
        .route("/ui/incidents/{id}", get(monitors::incident))
        .route("/ui/incidents/{id}/{action}", post(monitors::act))
        .route("/ui/notifications", get(notifications::list))
        .route("/ui/notifications/{id}", get(notifications::detail))
        .route("/ui/tokens", get(tokens::list))
        .route("/ui/audit", get(audit::list))
        .route("/ui/assets/keel.css", get(stylesheet))
        .route("/ui/assets/keel.svg", get(icon))
        .route("/ui/assets/live.js", get(script))
        .route("/ui/live", get(live::overview))
        .route("/ui/live/jobs/{id}", get(live::job))
        .route("/ui/live/runs/{id}", get(live::run))
        .route("/ui/live/topics/{topic}", get(live::topic))
        .layer(middleware::from_fn(headers))
        .with_state(ui)
}

/// The pages' templates, embedded in the binary (a unit test renders each).
fn templates() -> Environment<'static> {
    let mut templates = Environment::new();
    // A missing value (`None`) shows as nothing, not as "none".
    templates.set_formatter(|out, state, value| {
        if value.is_none() {
            return Ok(());
        }
        minijinja::escape_formatter(out, state, value)
    });
    for (name, source) in TEMPLATES {
        templates
            .add_template(name, source)
            .unwrap_or_else(|e| unreachable!("template {name} parses: {e}"));
    }
    templates
}

const TEMPLATES: [(&str, &str); 26] = [
    ("base.html", include_str!("templates/base.html")),
    ("login.html", include_str!("templates/login.html")),
    ("error.html", include_str!("templates/error.html")),
    ("overview.html", include_str!("templates/overview.html")),
    ("jobs.html", include_str!("templates/jobs.html")),
    ("job.html", include_str!("templates/job.html")),
    ("dag.html", include_str!("templates/dag.html")),
    ("workflows.html", include_str!("templates/workflows.html")),
    ("workflow.html", include_str!("templates/workflow.html")),
    ("runs.html", include_str!("templates/runs.html")),
    ("run.html", include_str!("templates/run.html")),
    ("bulk.html", include_str!("templates/bulk.html")),
    ("topic.html", include_str!("templates/topic.html")),
    ("schedules.html", include_str!("templates/schedules.html")),
    ("schedule.html", include_str!("templates/schedule.html")),
    ("endpoints.html", include_str!("templates/endpoints.html")),
    ("endpoint.html", include_str!("templates/endpoint.html")),
    (
        "notifications.html",
        include_str!("templates/notifications.html"),
    ),
    (
        "notification.html",
        include_str!("templates/notification.html"),
    ),
    ("handlers.html", include_str!("templates/handlers.html")),
    ("handler.html", include_str!("templates/handler.html")),
    ("monitors.html", include_str!("templates/monitors.html")),
    ("incidents.html", include_str!("templates/incidents.html")),
    ("incident.html", include_str!("templates/incident.html")),
    ("tokens.html", include_str!("templates/tokens.html")),
    ("audit.html", include_str!("templates/audit.html")),
];

/// Every answer: no caching, no framing, no inline script, no sniffing,
/// no referrer to other sites (same-origin: with `no-referrer` a browser
/// sends `Origin: null` on its own forms, which [`same_origin`] refuses).
async fn headers(req: axum::extract::Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; form-action 'self'"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    res
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/keel.css"),
    )
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("assets/live.js"),
    )
}

async fn icon() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "image/svg+xml")],
        include_str!("assets/keel.svg"),
    )
}

/// An answer that ends a request early: the login page, a refusal (boxed:
/// a response is large to carry in every `Result`).
struct Refused(Box<Response>);

impl From<Response> for Refused {
    fn from(res: Response) -> Self {
        Refused(Box::new(res))
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        *self.0
    }
}

/// `?ns=`: the namespace a page shows, `default` when absent.
#[derive(Deserialize)]
struct NsQuery {
    ns: Option<String>,
}

impl NsQuery {
    fn namespace(&self, ui: &Ui) -> Result<Namespace, Refused> {
        Namespace::new(self.ns.as_deref().unwrap_or("default")).map_err(|e| ui.bad(&e.message))
    }
}

impl Ui {
    /// A page from `template` with what every page shows.
    fn page(&self, template: &str, session: Option<&Session>, ns: &str, ctx: Value) -> Response {
        match self.render(template, session, ns, ctx, None) {
            Ok(html) => Html(html).into_response(),
            Err(e) => {
                tracing::error!(error = %e, template, "a dashboard page failed to render");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the page failed to render",
                )
                    .into_response()
            }
        }
    }

    /// A live page (see `live.rs`): the page, told where its stream is and
    /// which version of its live part it shows.
    fn live_page(
        &self,
        template: &str,
        session: &Session,
        ns: &Namespace,
        ctx: Value,
        stream: &str,
    ) -> Response {
        let shown = self
            .render(
                template,
                Some(session),
                ns.as_str(),
                ctx.clone(),
                Some("live"),
            )
            .map(|html| live::version(&html))
            .unwrap_or_default();
        let ctx = context! { live => context! { stream => stream, version => shown }, ..ctx };
        self.page(template, Some(session), ns.as_str(), ctx)
    }

    /// `template` rendered with what every page shows; only its `block`
    /// when one is named (a live page's changing part).
    fn render(
        &self,
        template: &str,
        session: Option<&Session>,
        ns: &str,
        ctx: Value,
        block: Option<&str>,
    ) -> Result<String, minijinja::Error> {
        let who = session.and_then(|s| s.caller.as_ref()).map(|c| {
            context! { name => c.name(), role => c.grant().role.as_str() }
        });
        let common = context! {
            ns => ns,
            who => who,
            open => !self.required,
            csrf => session.map(|s| self.csrf(s)),
            admin => session.is_some_and(|s| s.may(Access::Admin, Reach::All)),
        };
        let merged = context! { ..ctx, ..common };
        let template = self.templates.get_template(template)?;
        match block {
            None => template.render(merged),
            // The rest of the page is rendered too (and dropped): it may
            // name the stream, which a part does not know.
            Some(block) => template
                .render_captured_to(context! { live => context! {}, ..merged }, std::io::sink())?
                .with_state_mut(|state| state.render_block(block)),
        }
    }

    /// A 400 page.
    fn bad(&self, message: &str) -> Refused {
        self.error(StatusCode::BAD_REQUEST, message).into()
    }

    /// The page of an error from the engine or the store, with the status
    /// the API would answer.
    fn failed(&self, e: &keel_core::Error) -> Refused {
        let status =
            StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        self.error(status, &e.message).into()
    }

    fn error(&self, status: StatusCode, message: &str) -> Response {
        let mut res = self.page(
            "error.html",
            None,
            "default",
            context! { message => message },
        );
        *res.status_mut() = status;
        res
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test: a panic is a failed check")]

    use super::*;

    #[test]
    fn every_template_renders_and_escapes_what_it_shows() {
        let templates = templates();
        for (name, _) in TEMPLATES {
            if name == "dag.html" {
                continue;
            }
            let html = templates
                .get_template(name)
                .unwrap()
                .render(context! {
                    name => "<script>",
                    live => context! { stream => "/ui/live", version => "0" },
                    sample => Vec::<Value>::new(),
                    topic => context! { name => "<script>", head_seq => 0 },
                    schedule => context! { name => "<script>", cadence => "<script>" },
                    endpoint => context! { name => "<script>", url => "<script>" },
                    n => context! {
                        id => "<script>", recipient => "<script>", deliveries => vec![context! {
                            channel => "<script>", status => "failed", attempts => vec![context! {
                                outcome => "failed", answer => "<script>",
                            }],
                        }],
                    },
                    request => "<script>",
                    monitors => vec![context! { name => "<script>", target => "<script>", status => "down" }],
                    handlers => vec![context! { name => "<script>", link => "/ui", kind => "js" }],
                    handler => context! { name => "<script>", source => "<script>", allow_http => vec!["<script>"] },
                    recent => vec![context! { job => "<script>", error => "<script>", logs => vec!["<script>"] }],
                    incidents => vec![context! { summary => "<script>", dedup_key => "<script>", status => "open" }],
                    incident => context! {
                        id => "<script>", summary => "<script>", status => "open", dedup_key => "<script>",
                        timeline => vec![context! { kind => "<script>", text => "<script>", pages => vec!["<script>"] }],
                    },
                    dag => context! { width => 0, height => 0, nodes => Vec::<Value>::new(), edges => Vec::<Value>::new() },
                    waterfall => context! { width => 0, height => 0, rows => Vec::<Value>::new(), ticks => Vec::<Value>::new() },
                    run => context! { id => "<script>", status => "failed", input => "<script>", error => "<script>" },
                    ns => "<b>ns</b>",
                    open => true,
                    message => "<script>",
                    queues => Vec::<Value>::new(),
                    filter => context! { queue => "<script>", state => "", tag => "", q => "" },
                    job => context! {
                        id => "<script>", queue => "q", state => "dead", attempt => 1,
                        max_attempts => 1, payload => "<script>", errors => Vec::<Value>::new(),
                    },
                })
                .unwrap();
            assert!(html.starts_with("<!doctype html>"), "{name}");
            assert!(
                !html.contains("<b>ns</b>") && !html.contains("<script>"),
                "{name}: {html}"
            );
        }
    }

    #[test]
    fn a_missing_value_shows_as_nothing() {
        let mut templates = templates();
        templates
            .add_template("t.html", "[{{ gone }}|{{ here }}]")
            .unwrap();
        let html = templates
            .get_template("t.html")
            .unwrap()
            .render(context! { gone => None::<String>, here => "<b>" })
            .unwrap();
        assert_eq!(html, "[|&lt;b&gt;]");
    }
}
