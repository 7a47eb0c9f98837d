//! Monitors on PostgreSQL: a result is one transaction under the monitor's
//! row lock (so results fold one after another, whichever node probed),
//! and an incident moves under its own row lock; the partial unique index
//! on unresolved incidents makes a second open one impossible even for
//! events that race on a new dedup key (the loser's insert waits, finds the
//! winner's row and joins it).

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use keel_core::monitor::{
    Incident, IncidentMove, IncidentStatus, MonitorSpec, MonitorState, NewIncident, Status,
    TimelineEntry, monitor_key,
};
use keel_core::{Error, IncidentId, Namespace, Timestamp};
use keel_store::codec::{decode, encode};
use keel_store::{
    IncidentQuery, IncidentRef, IncidentWrite, Monitor, MonitorStore, Moved, NewResult, OwnedJob,
    Recorded, StoredResult, UptimeHour, fold_result, hour_of, incident_not_found,
    monitor_not_found,
};
use tokio_postgres::Row;
use uuid::Uuid;

use crate::owner::OwnedRows;
use crate::{PostgresStore, db};

fn iid(id: &IncidentId) -> Uuid {
    Uuid::from_bytes(*id.as_bytes())
}

fn monitor_from_row(r: &Row) -> Result<Monitor, Error> {
    Ok(Monitor {
        name: r.get(0),
        spec: decode("monitor", r.get(1))?,
        token: r.get(2),
        state: decode("monitor state", r.get(3))?,
        incident: r
            .get::<_, Option<Uuid>>(4)
            .map(|u| IncidentId::from_bytes(*u.as_bytes())),
        created_at: Timestamp::from_millis(r.get(5)),
        updated_at: Timestamp::from_millis(r.get(6)),
    })
}

fn incident_from_row(r: &Row) -> Result<Incident, Error> {
    decode("incident", r.get(0))
}

async fn unresolved(
    tx: &impl GenericClient,
    ns: &str,
    key: &str,
) -> Result<Option<Incident>, Error> {
    tx.query_opt(
        include_str!("../queries/monitors/incident_unresolved.sql"),
        &[&ns, &key],
    )
    .await
    .map_err(db)?
    .map(|r| incident_from_row(&r))
    .transpose()
}

/// Inserts `incident` unless one is unresolved under its key; true when inserted.
async fn insert_incident(
    tx: &impl GenericClient,
    ns: &str,
    incident: &Incident,
) -> Result<bool, Error> {
    let inserted = tx
        .query_opt(
            include_str!("../queries/monitors/incident_insert.sql"),
            &[
                &ns,
                &iid(&incident.id),
                &incident.dedup_key,
                &incident.monitor,
                &incident.status.as_str(),
                &encode("incident", incident)?,
                &incident.updated_at.as_millis(),
            ],
        )
        .await
        .map_err(db)?;
    Ok(inserted.is_some())
}

async fn update_incident(
    tx: &impl GenericClient,
    ns: &str,
    incident: &Incident,
) -> Result<(), Error> {
    tx.execute(
        include_str!("../queries/monitors/incident_update.sql"),
        &[
            &ns,
            &iid(&incident.id),
            &incident.status.as_str(),
            &encode("incident", incident)?,
            &incident.updated_at.as_millis(),
        ],
    )
    .await
    .map_err(db)?;
    Ok(())
}

async fn set_state(
    tx: &impl GenericClient,
    ns: &str,
    name: &str,
    state: &MonitorState,
    incident: Option<IncidentId>,
) -> Result<(), Error> {
    tx.execute(
        include_str!("../queries/monitors/monitor_state.sql"),
        &[
            &ns,
            &name,
            &encode("monitor state", state)?,
            &incident.map(|i| iid(&i)),
        ],
    )
    .await
    .map_err(db)?;
    Ok(())
}

fn triggered_again(incident: &mut Incident, summary: &str, now: Timestamp) {
    let mut again = TimelineEntry::new(now, "triggered");
    again.text = Some(summary.to_owned());
    incident.timeline.push(again);
    incident.updated_at = now;
}

impl PostgresStore {
    async fn record(&self, mut new: NewResult, now: Timestamp) -> Result<Recorded, Error> {
        let ns = new.namespace.as_str().to_owned();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let monitor = tx
            .query_opt(
                include_str!("../queries/monitors/monitor_lock.sql"),
                &[&ns, &new.monitor],
            )
            .await
            .map_err(db)?
            .map(|r| monitor_from_row(&r))
            .transpose()?
            .ok_or_else(|| monitor_not_found(&new.monitor))?;
        let open = unresolved(&tx, &ns, &monitor_key(&new.monitor)).await?;
        let mut folded = fold_result(&monitor, open, &mut new, now);
        let jobs = std::mem::take(&mut folded.jobs);
        set_state(&tx, &ns, &new.monitor, &folded.state, folded.open).await?;
        tx.execute(
            include_str!("../queries/monitors/result_insert.sql"),
            &[
                &ns,
                &new.monitor,
                &new.result.at.as_millis(),
                &encode("result", &new.result)?,
            ],
        )
        .await
        .map_err(db)?;
        if folded.up + folded.down > 0 {
            tx.execute(
                include_str!("../queries/monitors/hour_add.sql"),
                &[
                    &ns,
                    &new.monitor,
                    &hour_of(new.result.at).as_millis(),
                    &(folded.up as i64),
                    &(folded.down as i64),
                ],
            )
            .await
            .map_err(db)?;
        }
        match &folded.incident {
            IncidentWrite::Insert(incident) => {
                // The monitor's row lock is held: no other write opens
                // this key's incident meanwhile.
                insert_incident(&tx, &ns, incident).await?;
            }
            IncidentWrite::Update(incident) => update_incident(&tx, &ns, incident).await?,
            IncidentWrite::None => {}
        }
        let woken = self
            .insert_owned(&tx, OwnedRows::new(&jobs, now)?, now)
            .await?;
        tx.commit().await.map_err(db)?;
        self.wake(woken, now);
        let incident = match folded.incident {
            IncidentWrite::Insert(i) | IncidentWrite::Update(i) => Some(i),
            IncidentWrite::None => None,
        };
        Ok(Recorded {
            monitor: Monitor {
                state: folded.state,
                incident: folded.open,
                ..monitor
            },
            change: folded.change,
            incident,
        })
    }

    async fn open_incident(
        &self,
        ns: &str,
        new: NewIncident,
        jobs: Vec<OwnedJob>,
        now: Timestamp,
    ) -> Result<(Incident, bool), Error> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let incident = new.clone().open(now);
        if insert_incident(&tx, ns, &incident).await? {
            let woken = self
                .insert_owned(&tx, OwnedRows::new(&jobs, now)?, now)
                .await?;
            tx.commit().await.map_err(db)?;
            self.wake(woken, now);
            return Ok((incident, true));
        }
        let mut current = unresolved(&tx, ns, &new.dedup_key)
            .await?
            .ok_or_else(|| incident_not_found(&IncidentRef::Key(new.dedup_key.clone())))?;
        triggered_again(&mut current, &new.summary, now);
        update_incident(&tx, ns, &current).await?;
        tx.commit().await.map_err(db)?;
        Ok((current, false))
    }

    async fn move_incident(
        &self,
        ns: &str,
        which: &IncidentRef,
        change: IncidentMove,
        jobs: Vec<OwnedJob>,
        now: Timestamp,
    ) -> Result<Moved, Error> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let current = match which {
            IncidentRef::Id(id) => tx
                .query_opt(
                    include_str!("../queries/monitors/incident_lock.sql"),
                    &[&ns, &iid(id)],
                )
                .await
                .map_err(db)?
                .map(|r| incident_from_row(&r))
                .transpose()?,
            IncidentRef::Key(key) => unresolved(&tx, ns, key).await?,
        }
        .ok_or_else(|| incident_not_found(which))?;
        if !change.applies(&current) {
            return Ok(Moved {
                incident: current,
                applied: false,
            });
        }
        let mut incident = current;
        change.apply(&mut incident, now);
        update_incident(&tx, ns, &incident).await?;
        if let (Some(name), IncidentStatus::Resolved) = (&incident.monitor, incident.status) {
            let monitor = tx
                .query_opt(
                    include_str!("../queries/monitors/monitor_lock.sql"),
                    &[&ns, name],
                )
                .await
                .map_err(db)?
                .map(|r| monitor_from_row(&r))
                .transpose()?;
            // Resolved while its monitor is still down: the monitor starts
            // counting failures again, so a fault that lasts opens a new one.
            if let Some(m) = monitor.filter(|m| m.incident == Some(incident.id)) {
                let mut state = m.state;
                if state.status == Status::Down {
                    state.status = Status::Failing;
                    state.failures = 0;
                }
                set_state(&tx, ns, name, &state, None).await?;
            }
        }
        let woken = self
            .insert_owned(&tx, OwnedRows::new(&jobs, now)?, now)
            .await?;
        tx.commit().await.map_err(db)?;
        self.wake(woken, now);
        Ok(Moved {
            incident,
            applied: true,
        })
    }
}

#[async_trait]
impl MonitorStore for PostgresStore {
    async fn monitor_put(
        &self,
        namespace: &Namespace,
        name: &str,
        spec: &MonitorSpec,
        token: &str,
        now: Timestamp,
    ) -> Result<(Monitor, bool), Error> {
        let row = self
            .client()
            .await?
            .query_one(
                include_str!("../queries/monitors/monitor_put.sql"),
                &[
                    &namespace.as_str(),
                    &name,
                    &encode("monitor", spec)?,
                    &token,
                    &encode("monitor state", &MonitorState::default())?,
                    &now.as_millis(),
                ],
            )
            .await
            .map_err(db)?;
        Ok((monitor_from_row(&row)?, row.get(7)))
    }

    async fn monitor_get(
        &self,
        namespace: &Namespace,
        name: &str,
    ) -> Result<Option<Monitor>, Error> {
        self.client()
            .await?
            .query_opt(
                include_str!("../queries/monitors/monitor_get.sql"),
                &[&namespace.as_str(), &name],
            )
            .await
            .map_err(db)?
            .map(|r| monitor_from_row(&r))
            .transpose()
    }

    async fn monitors_list(
        &self,
        namespace: &Namespace,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Monitor>, Error> {
        self.client()
            .await?
            .query(
                include_str!("../queries/monitors/monitors_list.sql"),
                &[&namespace.as_str(), &after, &i64::from(limit)],
            )
            .await
            .map_err(db)?
            .iter()
            .map(monitor_from_row)
            .collect()
    }

    async fn monitor_delete(
        &self,
        namespace: &Namespace,
        name: &str,
        now: Timestamp,
    ) -> Result<bool, Error> {
        let ns = namespace.as_str();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db)?;
        let gone = tx
            .query_opt(
                include_str!("../queries/monitors/monitor_delete.sql"),
                &[&ns, &name],
            )
            .await
            .map_err(db)?
            .is_some();
        if gone && let Some(mut incident) = unresolved(&tx, ns, &monitor_key(name)).await? {
            IncidentMove::Resolve {
                by: "the monitor was deleted".into(),
            }
            .apply(&mut incident, now);
            update_incident(&tx, ns, &incident).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(gone)
    }

    async fn monitor_by_token(&self, token: &str) -> Result<Option<(Namespace, String)>, Error> {
        let row = self
            .client()
            .await?
            .query_opt(
                include_str!("../queries/monitors/monitor_by_token.sql"),
                &[&token],
            )
            .await
            .map_err(db)?;
        row.map(|r| Namespace::new(r.get(0)).map(|ns| (ns, r.get(1))))
            .transpose()
    }

    async fn monitor_record(&self, result: NewResult, now: Timestamp) -> Result<Recorded, Error> {
        self.record(result, now).await
    }

    async fn monitor_results(
        &self,
        namespace: &Namespace,
        name: &str,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<StoredResult>, Error> {
        let client = self.client().await?;
        let (ns, limit) = (namespace.as_str(), i64::from(limit));
        let rows = match after {
            Some(after) => client
                .query(
                    include_str!("../queries/monitors/results_after.sql"),
                    &[&ns, &name, &(after as i64), &limit],
                )
                .await
                .map_err(db)?,
            None => {
                let mut rows = client
                    .query(
                        include_str!("../queries/monitors/results_last.sql"),
                        &[&ns, &name, &limit],
                    )
                    .await
                    .map_err(db)?;
                rows.reverse();
                rows
            }
        };
        rows.iter()
            .map(|r| {
                Ok(StoredResult {
                    seq: r.get::<_, i64>(0) as u64,
                    result: decode("result", r.get(1))?,
                })
            })
            .collect()
    }

    async fn monitor_uptime(
        &self,
        namespace: &Namespace,
        name: &str,
        since: Timestamp,
    ) -> Result<Vec<UptimeHour>, Error> {
        let rows = self
            .client()
            .await?
            .query(
                include_str!("../queries/monitors/uptime.sql"),
                &[&namespace.as_str(), &name, &since.as_millis()],
            )
            .await
            .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| UptimeHour {
                hour: Timestamp::from_millis(r.get(0)),
                up: r.get::<_, i64>(1) as u64,
                down: r.get::<_, i64>(2) as u64,
            })
            .collect())
    }

    async fn incident_open(
        &self,
        namespace: &Namespace,
        incident: NewIncident,
        jobs: Vec<OwnedJob>,
        now: Timestamp,
    ) -> Result<(Incident, bool), Error> {
        self.open_incident(namespace.as_str(), incident, jobs, now)
            .await
    }

    async fn incident_move(
        &self,
        namespace: &Namespace,
        incident: &IncidentRef,
        change: IncidentMove,
        jobs: Vec<OwnedJob>,
        now: Timestamp,
    ) -> Result<Moved, Error> {
        self.move_incident(namespace.as_str(), incident, change, jobs, now)
            .await
    }

    async fn incident_get(
        &self,
        namespace: &Namespace,
        id: &IncidentId,
    ) -> Result<Option<Incident>, Error> {
        self.client()
            .await?
            .query_opt(
                include_str!("../queries/monitors/incident_get.sql"),
                &[&namespace.as_str(), &iid(id)],
            )
            .await
            .map_err(db)?
            .map(|r| incident_from_row(&r))
            .transpose()
    }

    async fn incident_by_key(
        &self,
        namespace: &Namespace,
        dedup_key: &str,
    ) -> Result<Option<Incident>, Error> {
        self.client()
            .await?
            .query_opt(
                include_str!("../queries/monitors/incident_by_key.sql"),
                &[&namespace.as_str(), &dedup_key],
            )
            .await
            .map_err(db)?
            .map(|r| incident_from_row(&r))
            .transpose()
    }

    async fn incidents_list(
        &self,
        namespace: &Namespace,
        query: &IncidentQuery,
    ) -> Result<Vec<Incident>, Error> {
        self.client()
            .await?
            .query(
                include_str!("../queries/monitors/incidents_list.sql"),
                &[
                    &namespace.as_str(),
                    &query.status.map(IncidentStatus::as_str),
                    &query.monitor,
                    &query.before.as_ref().map(iid),
                    &i64::from(query.limit),
                ],
            )
            .await
            .map_err(db)?
            .iter()
            .map(incident_from_row)
            .collect()
    }

    async fn monitors_prune(
        &self,
        results_before: Timestamp,
        hours_before: Timestamp,
        limit: u32,
    ) -> Result<u64, Error> {
        let row = self
            .client()
            .await?
            .query_one(
                include_str!("../queries/monitors/prune.sql"),
                &[
                    &results_before.as_millis(),
                    &hours_before.as_millis(),
                    &i64::from(limit),
                ],
            )
            .await
            .map_err(db)?;
        Ok(row.get::<_, i64>(0) as u64)
    }
}
