//! A topic's page (`/ui/topics/{topic}`): its policy, its subscriptions
//! with their lag and target, and a live tail of its newest events.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use keel_core::auth::{Access, Reach};
use keel_core::{Namespace, TopicName};
use keel_store::EventQuery;
use minijinja::{Value, context};

use super::draw;
use super::{NsQuery, Refused, Session, Ui};

/// Events in the tail.
const TAIL: u64 = 50;
/// Characters of an event's data shown in the tail.
const DATA_CHARS: usize = 200;

pub(super) async fn page(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(topic): Path<String>,
    Query(query): Query<NsQuery>,
) -> Result<Response, Refused> {
    let session = ui.session(&headers).await?;
    let ns = query.namespace(&ui)?;
    let stream = format!("/ui/live/topics/{topic}?ns={ns}");
    let ctx = context(&ui, &session, &ns, &topic).await?;
    Ok(ui.live_page("topic.html", &session, &ns, ctx, &stream))
}

fn excerpt(text: &str) -> String {
    if text.chars().count() <= DATA_CHARS {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(DATA_CHARS - 1).collect();
    short.push('…');
    short
}

/// What a topic's page shows, for the page and its live stream.
pub(super) async fn context(
    ui: &Ui,
    session: &Session,
    ns: &Namespace,
    topic: &str,
) -> Result<Value, Refused> {
    ui.require(
        session,
        Access::Read,
        Reach::Namespace(ns.as_str()),
        &format!("read namespace {ns}"),
    )?;
    let topic = TopicName::new(topic).map_err(|e| ui.bad(&e.message))?;
    let engine = &ui.engine;
    let found = engine
        .topics()
        .get(ns, &topic)
        .await
        .map_err(|e| ui.failed(&e))?;
    let query = EventQuery {
        after: found.head_seq.saturating_sub(TAIL),
        key: None,
        kind: None,
        limit: TAIL as u32,
    };
    let events = engine
        .topics()
        .events(ns, &topic, &query)
        .await
        .map_err(|e| ui.failed(&e))?;
    let tail: Vec<Value> = events
        .iter()
        .rev()
        .map(|e| {
            context! {
                seq => e.seq,
                id => e.event.id.clone(),
                kind => e.event.kind.clone(),
                key => e.event.key.clone(),
                time => e.event.time.to_string(),
                data => excerpt(&e.event.data),
            }
        })
        .collect();
    let subscriptions: Vec<Value> = engine
        .subscriptions()
        .list(Some(ns), Some(&topic))
        .await
        .map_err(|e| ui.failed(&e))?
        .into_iter()
        .map(|s| {
            let target = s
                .spec
                .target
                .as_ref()
                .and_then(|t| serde_json::to_string(t).ok())
                .unwrap_or_else(|| "pulled by consumers (fetch and commit)".to_owned());
            context! {
                lag => s.lag(),
                name => s.name,
                position => s.position,
                paused => s.paused,
                target => target,
            }
        })
        .collect();
    let policy = &found.policy;
    Ok(context! {
        topic => context! {
            name => found.name.to_string(),
            head_seq => found.head_seq,
            events => found.events,
            created_at => found.created_at.to_string(),
            retention => draw::duration(policy.retention_ms),
            dedup_window => draw::duration(policy.dedup_window_ms),
        },
        tail => tail,
        subscriptions => subscriptions,
    })
}
