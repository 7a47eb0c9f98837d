//! One-click unsubscribe (RFC 8058): the link an e-mail carries. A mail
//! client POSTs `List-Unsubscribe=One-Click` to it; a person who opens it
//! gets a page whose one button does the same. The link is its own
//! authority (Keel signed it), so the route needs no token, and it can do
//! nothing but turn one category off on one channel for one recipient.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Html;
use keel_api::notifications::Unsubscribed;
use keel_engine::Engine;

use crate::api::ApiError;

type Api<T> = Result<T, ApiError>;

#[utoipa::path(post, path = "/unsubscribe/{token}", tag = "notifications",
    summary = "Follow an e-mail's one-click unsubscribe link (RFC 8058): its category off on its channel for its recipient",
    params(("token" = String, Path, description = "the link's signed token")),
    request_body(content = Option<String>, description = "List-Unsubscribe=One-Click (any body is taken)", content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "unsubscribed", body = Unsubscribed)))]
pub(in crate::api) async fn unsubscribe(
    State(engine): State<Arc<Engine>>,
    Path(token): Path<String>,
) -> Api<Json<Unsubscribed>> {
    let done = engine.notifications().unsubscribe(&token).await?;
    Ok(Json(Unsubscribed {
        recipient: done.recipient,
        category: done.category,
        channel: done.channel,
    }))
}

#[utoipa::path(get, path = "/unsubscribe/{token}", tag = "notifications",
    summary = "The page an unsubscribe link opens in a browser: one button that POSTs the link",
    params(("token" = String, Path, description = "the link's signed token")),
    responses((status = 200, description = "a page", content_type = "text/html", body = String)))]
pub(in crate::api) async fn unsubscribe_page(
    State(engine): State<Arc<Engine>>,
    Path(token): Path<String>,
) -> Api<Html<String>> {
    let what = engine.notifications().unsubscribe_read(&token).await?;
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    Ok(Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Unsubscribe</title></head><body>\
         <p>Stop messages of “{}” to {} on {}?</p>\
         <form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
         <button type=\"submit\">Unsubscribe</button></form></body></html>",
        escape(&what.category),
        escape(&what.recipient),
        escape(&what.channel)
    )))
}
