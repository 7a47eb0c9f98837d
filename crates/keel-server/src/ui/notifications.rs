//! Notifications: the list (`/ui/notifications`), searched by recipient,
//! a delivery's status and channel, with the namespace's channels and how
//! their recent deliveries went; and a notification's page
//! (`/ui/notifications/{id}`) with each delivery's attempts and what the
//! provider answered.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use keel_core::notification::DeliveryStatus;
use keel_store::{Notification, NotificationQuery};
use minijinja::{Value, context};
use serde::Deserialize;

use super::{NsQuery, Refused, Ui};

/// Notifications on a page; a channel's health counts this many of its
/// newest.
const PAGE: u32 = 50;
const HEALTH_WINDOW: u32 = 100;

#[derive(Deserialize)]
pub(super) struct Search {
    #[serde(flatten)]
    ns: NsQuery,
    #[serde(default)]
    recipient: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    channel: String,
    after: Option<String>,
}

fn view(ns: &str, n: &Notification) -> Value {
    context! {
        id => n.id.to_string(),
        link => format!("/ui/notifications/{}?ns={ns}", n.id),
        recipient => n.recipient.clone(),
        category => n.category.clone(),
        created_at => n.created_at.to_string(),
        subject => n.body["content"]["subject"].as_str().map(str::to_owned),
        deliveries => n.deliveries.iter().map(|d| context! {
            id => d.id.to_string(),
            channel => d.channel.clone(),
            status => d.status.as_str(),
            duplicate_of => d.duplicate_of.map(|f| f.to_string()),
            fallback_of => d.fallback_of.map(|f| f.to_string()),
            attempts => d.attempts.iter().map(|a| context! {
                at => a.at.to_string(), outcome => a.outcome.clone(),
                answer => a.answer.clone(), latency_ms => a.latency_ms,
            }).collect::<Vec<_>>(),
        }).collect::<Vec<_>>(),
    }
}

pub(super) async fn list(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Query(search): Query<Search>,
) -> Result<Response, Refused> {
    let (session, ns) = ui.reader(&headers, &search.ns).await?;
    let service = ui.engine.notifications();
    let status = match search.status.as_str() {
        "" => None,
        s => Some(DeliveryStatus::parse(s).ok_or_else(|| ui.bad(&format!("no status {s:?}")))?),
    };
    let before = match search.after.as_deref() {
        Some(a) => Some(
            a.parse()
                .map_err(|_| ui.bad("a cursor that is no notification id"))?,
        ),
        None => None,
    };
    let text = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let query = NotificationQuery {
        recipient: text(&search.recipient),
        status,
        channel: text(&search.channel),
        before,
        limit: PAGE,
    };
    let found = service
        .list_notifications(&ns, &query)
        .await
        .map_err(|e| ui.failed(&e))?;
    let next = (found.len() == PAGE as usize)
        .then(|| found.last())
        .flatten()
        .map(|last| {
            format!(
                "/ui/notifications?ns={ns}&recipient={}&status={}&channel={}&after={}",
                search.recipient, search.status, search.channel, last.id
            )
        });
    let mut channels = Vec::new();
    for channel in service
        .channels_list(&ns, None, 100)
        .await
        .map_err(|e| ui.failed(&e))?
    {
        let recent = NotificationQuery {
            channel: Some(channel.name.clone()),
            limit: HEALTH_WINDOW,
            ..NotificationQuery::default()
        };
        let mut counts = std::collections::BTreeMap::<&str, u32>::new();
        for n in service
            .list_notifications(&ns, &recent)
            .await
            .map_err(|e| ui.failed(&e))?
        {
            for d in n.deliveries.iter().filter(|d| d.channel == channel.name) {
                *counts.entry(d.status.as_str()).or_default() += 1;
            }
        }
        channels.push(context! {
            name => channel.name.clone(),
            kind => channel.spec.kind().as_str(),
            fallback => channel.spec.fallback.iter().map(ToString::to_string).collect::<Vec<_>>(),
            counts => counts.iter().map(|(s, n)| format!("{n} {s}")).collect::<Vec<_>>(),
            failing => counts.get("failed").copied().unwrap_or(0) + counts.get("unknown").copied().unwrap_or(0),
        });
    }
    Ok(ui.page(
        "notifications.html",
        Some(&session),
        ns.as_str(),
        context! {
            notifications => found.iter().map(|n| view(ns.as_str(), n)).collect::<Vec<_>>(),
            channels => channels,
            statuses => DeliveryStatus::ALL.map(DeliveryStatus::as_str),
            filter => context! { recipient => search.recipient, status => search.status, channel => search.channel },
            next => next,
        },
    ))
}

pub(super) async fn detail(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<NsQuery>,
) -> Result<Response, Refused> {
    let (session, ns) = ui.reader(&headers, &query).await?;
    let id = id.parse().map_err(|_| ui.bad("not a notification id"))?;
    let n = ui
        .engine
        .notifications()
        .get_notification(&ns, &id)
        .await
        .map_err(|e| ui.failed(&e))?;
    let request = serde_json::to_string_pretty(&n.body).unwrap_or_default();
    Ok(ui.page(
        "notification.html",
        Some(&session),
        ns.as_str(),
        context! { n => view(ns.as_str(), &n), request => request },
    ))
}
