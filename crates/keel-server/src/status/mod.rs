//! Public status pages, outside the API and the dashboard: `/status/{slug}`
//! (server-rendered HTML, no JavaScript), `/status/{slug}.json`, and SVG
//! badges at `/status/{slug}/badge/{monitor}.svg` (`?show=uptime` for the
//! 30 days' uptime, the state otherwise). Read-only and cacheable; only
//! what a public page names is shown, and no incident's details.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use keel_core::ErrorCode;
use keel_engine::Engine;
use keel_engine::monitors::{DAYS, StatusView};
use minijinja::{Environment, context};
use serde::Deserialize;

use crate::api::ApiError;

const PAGE: &str = include_str!("page.html");
const STYLE: &str = include_str!("status.css");
/// How long a browser or a proxy may keep a page or a badge.
const CACHE: &str = "public, max-age=30";

struct Pages {
    engine: Arc<Engine>,
    templates: Environment<'static>,
}

pub(crate) fn router(engine: Arc<Engine>) -> Router {
    let mut templates = Environment::new();
    templates
        .add_template("page.html", PAGE)
        .unwrap_or_else(|e| unreachable!("the status page template parses: {e}"));
    let pages = Arc::new(Pages { engine, templates });
    Router::new()
        .route("/status/{page}", get(page))
        .route("/status/{slug}/badge/{file}", get(badge))
        .route("/status-assets/status.css", get(style))
        .with_state(pages)
}

fn cached(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'self'; img-src 'self'"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

async fn view(pages: &Pages, slug: &str) -> Result<Arc<StatusView>, Response> {
    pages
        .engine
        .monitors()
        .status_view(slug)
        .await
        .map_err(|e| ApiError::from(e).into_response())
}

async fn page(State(pages): State<Arc<Pages>>, Path(page): Path<String>) -> Response {
    if let Some(slug) = page.strip_suffix(".json") {
        return match view(&pages, slug).await {
            Ok(view) => cached(axum::Json(&*view).into_response()),
            Err(res) => res,
        };
    }
    let view = match view(&pages, &page).await {
        Ok(view) => view,
        Err(res) => return res,
    };
    let rendered = pages
        .templates
        .get_template("page.html")
        .and_then(|t| t.render(context! { view => shown(&view), slug => &page, days => DAYS }));
    match rendered {
        Ok(html) => cached(Html(html).into_response()),
        Err(e) => {
            tracing::error!(error = %e, "a status page failed to render");
            ApiError::from(keel_core::Error::internal("the page failed to render")).into_response()
        }
    }
}

/// The view as the template reads it.
fn shown(view: &StatusView) -> minijinja::Value {
    context! {
        title => view.title.clone(),
        overall => view.overall,
        generated_at => view.generated_at.to_string(),
        components => view.components.iter().map(|c| context! {
            name => c.name.clone(), status => c.status, uptime => c.uptime, days => c.days.clone(),
        }).collect::<Vec<_>>(),
        incidents => view.incidents.iter().map(|i| context! {
            summary => i.summary.clone(), status => i.status,
            opened_at => i.opened_at.to_string(),
            resolved_at => i.resolved_at.map(|t| t.to_string()),
            notes => i.notes.iter().map(|(at, text)| vec![at.to_string(), text.clone()]).collect::<Vec<_>>(),
        }).collect::<Vec<_>>(),
    }
}

#[derive(Deserialize)]
struct BadgeQuery {
    #[serde(default)]
    show: String,
}

async fn badge(
    State(pages): State<Arc<Pages>>,
    Path((slug, file)): Path<(String, String)>,
    Query(query): Query<BadgeQuery>,
) -> Response {
    let not_found = || {
        ApiError::from(keel_core::Error::new(ErrorCode::NotFound, "no such badge")).into_response()
    };
    let Some(monitor) = file.strip_suffix(".svg") else {
        return not_found();
    };
    let view = match view(&pages, &slug).await {
        Ok(view) => view,
        Err(res) => return res,
    };
    let Some(component) = view.components.iter().find(|c| c.name == monitor) else {
        return not_found();
    };
    let (value, color) = if query.show == "uptime" {
        let last30 = &component.days[component.days.len().saturating_sub(30)..];
        let judged: Vec<f64> = last30.iter().flatten().copied().collect();
        match judged.is_empty() {
            true => ("no data".to_owned(), "#9f9f9f"),
            false => {
                let share = judged.iter().sum::<f64>() / judged.len() as f64;
                let color = if share >= 0.999 {
                    "#1f9d55"
                } else if share >= 0.99 {
                    "#d98e04"
                } else {
                    "#cc1f1a"
                };
                (format!("{:.2}%", share * 100.0), color)
            }
        }
    } else {
        let color = match component.status {
            "up" => "#1f9d55",
            "down" => "#cc1f1a",
            "failing" => "#d98e04",
            _ => "#9f9f9f",
        };
        (component.status.to_owned(), color)
    };
    let svg = draw(&component.name, &value, color);
    cached(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

/// A flat two-part badge. The label is a monitor's name (letters, digits,
/// `-`, `_`, `.`) and the value is made here, so neither needs escaping.
fn draw(label: &str, value: &str, color: &str) -> String {
    let width = |text: &str| 10 + 7 * text.chars().count();
    let (left, right) = (width(label), width(value));
    let total = left + right;
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" aria-label="{label}: {value}"><title>{label}: {value}</title><rect width="{left}" height="20" fill="#555"/><rect x="{left}" width="{right}" height="20" fill="{color}"/><g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11"><text x="{lx}" y="14">{label}</text><text x="{rx}" y="14">{value}</text></g></svg>"##,
        lx = left / 2,
        rx = left + right / 2,
    )
}

async fn style() -> Response {
    cached(([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test: a panic is a failed check")]

    use keel_engine::monitors::{Component, PublicIncident};

    use super::*;

    #[test]
    fn the_page_escapes_what_it_shows_and_draws_a_bar_a_day() {
        let mut templates = Environment::new();
        templates.add_template("page.html", PAGE).unwrap();
        let view = StatusView {
            title: "<script>".into(),
            overall: "outage",
            components: vec![Component {
                name: "api".into(),
                status: "down",
                uptime: Some(0.5),
                days: vec![None, Some(1.0), Some(0.995), Some(0.2)],
            }],
            incidents: vec![PublicIncident {
                monitor: "api".into(),
                status: "open",
                summary: "api is down".into(),
                opened_at: keel_core::Timestamp::from_millis(0),
                resolved_at: None,
                notes: vec![(keel_core::Timestamp::from_millis(1), "<b>".into())],
            }],
            generated_at: keel_core::Timestamp::from_millis(2),
        };
        let html = templates
            .get_template("page.html")
            .unwrap()
            .render(context! { view => shown(&view), slug => "s", days => DAYS })
            .unwrap();
        assert!(
            !html.contains("<script>") && !html.contains("<b>"),
            "{html}"
        );
        for class in ["bar none", "bar full", "bar partial", "bar bad"] {
            assert_eq!(html.matches(class).count(), 1, "{class}");
        }
        assert!(html.contains("50.0% over 90 days"), "{html}");
    }

    #[test]
    fn a_badge_is_as_wide_as_its_text() {
        let svg = draw("api", "99.95%", "#1f9d55");
        assert!(svg.starts_with("<svg") && svg.contains(">99.95%</text>"));
        assert!(svg.contains("width=\"83\""), "{svg}");
    }
}
