//! The in-app inbox over HTTP: pages newest first with the unread count,
//! marks (seen, read, archived) by id or all at once, and a Server-Sent
//! Events stream of new messages whose event ids are the messages' ids, so
//! a client reconnecting with `Last-Event-ID` gets every message after it
//! once, in order.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use keel_api::notifications::{
    InboxAnswer, InboxMarkAnswer, InboxMarkRequest, InboxMessageAnswer, InboxPageParams,
};
use keel_core::{Error, Namespace};
use keel_engine::Engine;
use keel_store::{InboxMark, InboxMessage, InboxPage};
use tokio::sync::Notify;

use crate::api::ApiError;
use crate::api::extract::{JsonBody, QueryParams, RecipientPath};

type Api<T> = Result<T, ApiError>;

const INBOX_PAGE: u32 = 50;
/// Messages read per look while a stream catches up.
const STREAM_BATCH: u32 = 100;

fn message(m: InboxMessage) -> InboxMessageAnswer {
    let text = |k: &str| m.content[k].as_str().unwrap_or_default().to_owned();
    InboxMessageAnswer {
        id: m.seq,
        notification: m.notification.to_string(),
        delivery: m.delivery.to_string(),
        category: m.category.clone(),
        title: text("title"),
        body: text("body"),
        url: m.content["url"].as_str().map(str::to_owned),
        created_at: m.created_at,
        seen_at: m.seen_at,
        read_at: m.read_at,
        archived_at: m.archived_at,
    }
}

#[utoipa::path(get, path = "/namespaces/{ns}/inbox/{id}", tag = "notifications",
    summary = "A recipient's in-app messages, newest first, with the unread count",
    params(InboxPageParams),
    responses((status = 200, description = "OK", body = InboxAnswer)))]
pub(in crate::api) async fn inbox_list(
    State(engine): State<Arc<Engine>>,
    RecipientPath(ns, recipient): RecipientPath,
    QueryParams(page): QueryParams<InboxPageParams>,
) -> Api<Json<InboxAnswer>> {
    let limit = page.limit.unwrap_or(INBOX_PAGE);
    let found = engine
        .notifications()
        .inbox(&ns, &recipient, InboxPage::Before(page.after), limit)
        .await?;
    let next_cursor = (found.messages.len() == limit as usize)
        .then(|| found.messages.last().map(|m| m.seq.to_string()))
        .flatten();
    Ok(Json(InboxAnswer {
        messages: found.messages.into_iter().map(message).collect(),
        unread: found.unread,
        next_cursor,
    }))
}

async fn mark(
    engine: &Engine,
    (ns, recipient): (Namespace, String),
    mark: InboxMark,
    request: InboxMarkRequest,
) -> Api<Json<InboxMarkAnswer>> {
    let seqs = match (request.ids, request.all) {
        (Some(ids), false) => Some(ids),
        (None, true) => None,
        _ => return Err(ApiError(Error::invalid("give ids, or all: true"))),
    };
    let changed = engine
        .notifications()
        .inbox_mark(&ns, &recipient, mark, seqs)
        .await?;
    Ok(Json(InboxMarkAnswer { changed }))
}

#[utoipa::path(post, path = "/namespaces/{ns}/inbox/{id}/read", tag = "notifications",
    summary = "Mark in-app messages read", request_body = InboxMarkRequest,
    responses((status = 200, description = "OK", body = InboxMarkAnswer)))]
pub(in crate::api) async fn inbox_read(
    State(engine): State<Arc<Engine>>,
    RecipientPath(ns, recipient): RecipientPath,
    JsonBody(request): JsonBody<InboxMarkRequest>,
) -> Api<Json<InboxMarkAnswer>> {
    mark(&engine, (ns, recipient), InboxMark::Read, request).await
}

#[utoipa::path(post, path = "/namespaces/{ns}/inbox/{id}/seen", tag = "notifications",
    summary = "Mark in-app messages seen", request_body = InboxMarkRequest,
    responses((status = 200, description = "OK", body = InboxMarkAnswer)))]
pub(in crate::api) async fn inbox_seen(
    State(engine): State<Arc<Engine>>,
    RecipientPath(ns, recipient): RecipientPath,
    JsonBody(request): JsonBody<InboxMarkRequest>,
) -> Api<Json<InboxMarkAnswer>> {
    mark(&engine, (ns, recipient), InboxMark::Seen, request).await
}

#[utoipa::path(post, path = "/namespaces/{ns}/inbox/{id}/archive", tag = "notifications",
    summary = "Archive in-app messages (they leave the inbox's pages and its unread count)",
    request_body = InboxMarkRequest,
    responses((status = 200, description = "OK", body = InboxMarkAnswer)))]
pub(in crate::api) async fn inbox_archive(
    State(engine): State<Arc<Engine>>,
    RecipientPath(ns, recipient): RecipientPath,
    JsonBody(request): JsonBody<InboxMarkRequest>,
) -> Api<Json<InboxMarkAnswer>> {
    mark(&engine, (ns, recipient), InboxMark::Archived, request).await
}

/// A stream's place: the last id sent, and what is read but not yet sent.
struct Follow {
    engine: Arc<Engine>,
    namespace: Namespace,
    recipient: String,
    after: u64,
    ready: VecDeque<InboxMessage>,
    watch: Arc<Notify>,
}

impl Follow {
    async fn next(&mut self) -> Option<InboxMessage> {
        let shutdown = self.engine.shutdown().clone();
        let notifications = self.engine.notifications().clone();
        loop {
            if let Some(m) = self.ready.pop_front() {
                self.after = m.seq;
                return Some(m);
            }
            // Listening before the look: a message written during it wakes us.
            let watch = self.watch.clone();
            let woken = watch.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let page = InboxPage::After(self.after);
            match notifications
                .inbox(&self.namespace, &self.recipient, page, STREAM_BATCH)
                .await
            {
                Ok(found) if !found.messages.is_empty() => {
                    self.ready.extend(found.messages);
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "an inbox stream cannot read"),
            }
            let poll = async {
                match notifications.inbox_poll() {
                    Some(every) => tokio::time::sleep(every).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = woken => {}
                () = poll => {}
                () = shutdown.clone().wait() => return None,
            }
        }
    }
}

#[utoipa::path(get, path = "/namespaces/{ns}/inbox/{id}/stream", tag = "notifications",
    summary = "New in-app messages as Server-Sent Events (`message`, id = the message's id); resumes after Last-Event-ID",
    params(("Last-Event-ID" = Option<u64>, Header, description = "the last message id received: the stream starts after it (else after the newest now)")),
    responses((status = 200, description = "an event stream", content_type = "text/event-stream", body = String)))]
pub(in crate::api) async fn inbox_stream(
    State(engine): State<Arc<Engine>>,
    RecipientPath(ns, recipient): RecipientPath,
    headers: HeaderMap,
) -> Api<Response> {
    keel_core::notification::check_recipient_id(&recipient)?;
    let watch = engine.notifications().inbox_watch(&ns, &recipient);
    let after = match headers.get("last-event-id") {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| ApiError(Error::invalid("Last-Event-ID must be a message id")))?,
        None => engine
            .notifications()
            .inbox(&ns, &recipient, InboxPage::Before(None), 1)
            .await?
            .messages
            .first()
            .map_or(0, |m| m.seq),
    };
    let follow = Follow {
        engine,
        namespace: ns,
        recipient,
        after,
        ready: VecDeque::new(),
        watch,
    };
    let events = futures_util::stream::unfold(follow, |mut follow| async move {
        let m = follow.next().await?;
        let id = m.seq.to_string();
        let data = serde_json::to_string(&message(m)).unwrap_or_default();
        let event = Event::default().event("message").id(id).data(data);
        Some((Ok::<_, Infallible>(event), follow))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}
