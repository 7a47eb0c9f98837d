//! Status pages: a namespace's public page of some monitors at
//! `/status/{slug}`. A slug is unique across namespaces, so pages are kept
//! in Keel's own namespace under their slug, each naming its namespace.
//! What a page shows (each monitor's state and 90 days of daily uptime
//! from the hourly rollups, open and recent incidents with their notes) is
//! read only for the monitors the page names, and kept a few seconds per
//! node: a page under a traffic spike reads the store once per interval.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use keel_core::monitor::{IncidentStatus, Status, StatusPageSpec};
use keel_core::{Error, ErrorCode, MonitorName, Namespace, Timestamp};
use keel_store::{IncidentQuery, Setting, UptimeHour};
use serde::{Deserialize, Serialize};

use super::{MonitorService, uptime_of};
use crate::notifications::Named;
use crate::workflows::SYSTEM_NAMESPACE;

/// How long a node keeps a page's view.
const FRESH_FOR: Duration = Duration::from_secs(10);
/// Days of bars.
pub const DAYS: u64 = 90;
/// Resolved incidents shown: those resolved within this long.
const RECENT_MS: u64 = 7 * 24 * 3_600_000;
const DAY_MS: i64 = 24 * 3_600_000;

/// A page as kept: its namespace and spec.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Kept {
    namespace: String,
    spec: StatusPageSpec,
}

/// What a status page shows.
#[derive(Clone, Debug, Serialize)]
pub struct StatusView {
    pub title: String,
    /// `operational`, `degraded` (something failing) or `outage` (something down).
    pub overall: &'static str,
    pub components: Vec<Component>,
    pub incidents: Vec<PublicIncident>,
    pub generated_at: Timestamp,
}

#[derive(Clone, Debug, Serialize)]
pub struct Component {
    pub name: String,
    pub status: &'static str,
    /// Uptime over the 90 days, and per day, oldest first (`None`: no data).
    pub uptime: Option<f64>,
    pub days: Vec<Option<f64>>,
}

/// An incident as the public sees it: no details, no source, no pages.
#[derive(Clone, Debug, Serialize)]
pub struct PublicIncident {
    pub monitor: String,
    pub status: &'static str,
    pub summary: String,
    pub opened_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
    pub notes: Vec<(Timestamp, String)>,
}

/// Each node's recent views, by slug.
#[derive(Default)]
pub(crate) struct Views(Mutex<HashMap<String, (Instant, Arc<StatusView>)>>);

fn system() -> Result<Namespace, Error> {
    Namespace::new(SYSTEM_NAMESPACE)
}

fn not_found(slug: &str) -> Error {
    Error::new(
        ErrorCode::NotFound,
        format!("status page {slug:?} not found"),
    )
}

impl MonitorService {
    /// Creates or replaces a namespace's status page; 409 when another
    /// namespace has the slug.
    pub async fn status_page_put(
        &self,
        namespace: &Namespace,
        slug: &str,
        spec: &StatusPageSpec,
    ) -> Result<(Named<StatusPageSpec>, bool), Error> {
        MonitorName::new(slug)
            .map_err(|_| Error::invalid(format!("slug {slug:?} is not a valid name")))?;
        spec.check()?;
        self.owned(namespace, slug, true).await?;
        let kept = Kept {
            namespace: namespace.to_string(),
            spec: spec.clone(),
        };
        let (stored, created) = self
            .notifications
            .put(&system()?, Setting::StatusPage, slug, &kept)
            .await?;
        self.views.forget(slug);
        Ok((
            Named {
                name: stored.name,
                spec: spec.clone(),
                created_at: stored.created_at,
                updated_at: stored.updated_at,
            },
            created,
        ))
    }

    pub async fn status_page(
        &self,
        namespace: &Namespace,
        slug: &str,
    ) -> Result<Named<StatusPageSpec>, Error> {
        self.owned(namespace, slug, false)
            .await?
            .ok_or_else(|| not_found(slug))
    }

    /// A namespace's status pages by slug.
    pub async fn status_pages(
        &self,
        namespace: &Namespace,
    ) -> Result<Vec<Named<StatusPageSpec>>, Error> {
        let mut pages = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page: Vec<Named<Kept>> = self
                .notifications
                .list(&system()?, Setting::StatusPage, after.as_deref(), 500)
                .await?;
            let full = page.len() == 500;
            after = page.last().map(|p| p.name.clone());
            pages.extend(
                page.into_iter()
                    .filter(|p| p.spec.namespace == namespace.as_str())
                    .map(unkept),
            );
            if !full {
                return Ok(pages);
            }
        }
    }

    pub async fn status_page_delete(&self, namespace: &Namespace, slug: &str) -> Result<(), Error> {
        self.status_page(namespace, slug).await?;
        self.views.forget(slug);
        self.notifications
            .delete(&system()?, &[Setting::StatusPage], slug)
            .await
    }

    /// The page under `slug` if `namespace` has it; with `claim`, 409 when
    /// another namespace has it (and `None` when nobody does).
    async fn owned(
        &self,
        namespace: &Namespace,
        slug: &str,
        claim: bool,
    ) -> Result<Option<Named<StatusPageSpec>>, Error> {
        let kept: Named<Kept> = match self
            .notifications
            .get(&system()?, Setting::StatusPage, slug)
            .await
        {
            Ok(kept) => kept,
            Err(e) if e.code == ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if kept.spec.namespace == namespace.as_str() {
            return Ok(Some(unkept(kept)));
        }
        if claim {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!("status page {slug:?} belongs to another namespace"),
            ));
        }
        Err(not_found(slug))
    }

    /// What `/status/{slug}` shows; 404 for a page that is not public.
    pub async fn status_view(&self, slug: &str) -> Result<Arc<StatusView>, Error> {
        if let Some(view) = self.views.fresh(slug) {
            return Ok(view);
        }
        let kept: Named<Kept> = self
            .notifications
            .get(&system()?, Setting::StatusPage, slug)
            .await
            .map_err(|e| match e.code {
                ErrorCode::NotFound => not_found(slug),
                _ => e,
            })?;
        if !kept.spec.spec.public {
            return Err(not_found(slug));
        }
        let namespace = Namespace::new(&kept.spec.namespace)?;
        let view = Arc::new(self.render_view(&namespace, &kept.spec.spec).await?);
        self.views.keep(slug, view.clone());
        Ok(view)
    }

    async fn render_view(
        &self,
        namespace: &Namespace,
        spec: &StatusPageSpec,
    ) -> Result<StatusView, Error> {
        let now = self.clock.now();
        let today = now.as_millis().div_euclid(DAY_MS) * DAY_MS;
        let first_day = today - (DAYS as i64 - 1) * DAY_MS;
        let mut components = Vec::new();
        let mut worst = Status::Up;
        for name in &spec.monitors {
            let Some(monitor) = self.store.monitor_get(namespace, name).await? else {
                continue;
            };
            let hours = self
                .store
                .monitor_uptime(namespace, name, Timestamp::from_millis(first_day))
                .await?;
            let status = monitor.state.status;
            worst = match (worst, status) {
                (_, Status::Down) | (Status::Down, _) => Status::Down,
                (_, Status::Failing) | (Status::Failing, _) => Status::Failing,
                _ => Status::Up,
            };
            components.push(Component {
                name: name.clone(),
                status: status.as_str(),
                uptime: uptime_of(&hours),
                days: daily(&hours, first_day),
            });
        }
        let mut incidents = Vec::new();
        for status in [
            IncidentStatus::Open,
            IncidentStatus::Acknowledged,
            IncidentStatus::Resolved,
        ] {
            for name in &spec.monitors {
                let query = IncidentQuery {
                    status: Some(status),
                    monitor: Some(name.clone()),
                    before: None,
                    limit: 10,
                };
                for i in self.store.incidents_list(namespace, &query).await? {
                    if i.resolved_at
                        .is_some_and(|r| now.millis_since(r) > RECENT_MS)
                    {
                        continue;
                    }
                    incidents.push(PublicIncident {
                        monitor: name.clone(),
                        status: i.status.as_str(),
                        summary: format!("{name} is down"),
                        opened_at: i.opened_at,
                        resolved_at: i.resolved_at,
                        notes: i
                            .timeline
                            .iter()
                            .filter(|e| e.kind == "note")
                            .filter_map(|e| Some((e.at, e.text.clone()?)))
                            .collect(),
                    });
                }
            }
        }
        incidents.sort_by_key(|i| std::cmp::Reverse(i.opened_at));
        Ok(StatusView {
            title: spec.title.clone(),
            overall: match worst {
                Status::Down => "outage",
                Status::Failing => "degraded",
                _ => "operational",
            },
            components,
            incidents,
            generated_at: now,
        })
    }
}

/// The hours folded into days from `first_day` on: 90 of them.
fn daily(hours: &[UptimeHour], first_day: i64) -> Vec<Option<f64>> {
    let mut days = vec![(0u64, 0u64); DAYS as usize];
    for h in hours {
        let day = (h.hour.as_millis() - first_day).div_euclid(DAY_MS);
        if let Some(slot) = usize::try_from(day).ok().and_then(|d| days.get_mut(d)) {
            slot.0 += h.up;
            slot.1 += h.down;
        }
    }
    days.into_iter()
        .map(|(up, down)| (up + down > 0).then(|| up as f64 / (up + down) as f64))
        .collect()
}

fn unkept(kept: Named<Kept>) -> Named<StatusPageSpec> {
    Named {
        name: kept.name,
        spec: kept.spec.spec,
        created_at: kept.created_at,
        updated_at: kept.updated_at,
    }
}

impl Views {
    fn fresh(&self, slug: &str) -> Option<Arc<StatusView>> {
        let views = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        views
            .get(slug)
            .filter(|(at, _)| at.elapsed() < FRESH_FOR)
            .map(|(_, view)| view.clone())
    }

    fn keep(&self, slug: &str, view: Arc<StatusView>) {
        let mut views = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        views.retain(|_, (at, _)| at.elapsed() < FRESH_FOR);
        views.insert(slug.to_owned(), (Instant::now(), view));
    }

    fn forget(&self, slug: &str) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(slug);
    }
}
