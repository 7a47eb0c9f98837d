//! Reads of jobs on PostgreSQL: one by id (with its errors), what holds a
//! waiting job back, and newest-first pages; no side effects.

use deadpool_postgres::GenericClient;
use keel_core::gate::WaitFacts;
use keel_core::{Error, Job, JobId, Namespace, Timestamp};
use keel_store::{JobFilter, JobPage};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::rows::{attach_errors, job_from_row, state_of};
use crate::jobs::from_json;
use crate::{PostgresStore, db, job_id, uuid};

impl PostgresStore {
    pub(super) async fn read_job(&self, namespace: &Namespace, id: JobId) -> Result<Job, Error> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {} FROM keel_jobs WHERE id = $1 AND namespace = $2",
            include_str!("../../queries/jobs/job_columns.sql").trim()
        );
        let stmt = client.prepare_cached(&sql).await.map_err(db)?;
        let row = client
            .query_opt(&stmt, &[&uuid(id), &namespace.as_str()])
            .await
            .map_err(db)?;
        let Some(row) = row else {
            return Err(Error::job_not_found(id));
        };
        let (_, mut job) = job_from_row(&row)?;
        attach_errors(&client, &mut job).await?;
        Ok(job)
    }

    pub(super) async fn read_wait_facts(
        &self,
        namespace: &Namespace,
        id: JobId,
    ) -> Result<WaitFacts, Error> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(include_str!("../../queries/jobs/job_waiting.sql"))
            .await
            .map_err(db)?;
        let row = client
            .query_opt(&stmt, &[&uuid(id), &namespace.as_str()])
            .await
            .map_err(db)?
            .ok_or_else(|| Error::job_not_found(id))?;
        Ok(WaitFacts {
            state: state_of(row.get(0))?,
            run_at: Timestamp::from_millis(row.get(1)),
            ordering_key: row.get(2),
            paused: row.get(3),
            max_concurrency: row
                .get::<_, Option<i64>>(4)
                .and_then(|n| u32::try_from(n).ok()),
            leased: u64::try_from(row.get::<_, i64>(5)).unwrap_or(0),
            key_holder: row.get::<_, Option<Uuid>>(6).map(job_id),
            rate_limit: row
                .get::<_, Option<&str>>(7)
                .filter(|text| *text != "null")
                .map(from_json)
                .transpose()?,
            rate_tat_us: row.get(8),
            flow_key: row.get::<_, bool>(12).then(|| row.get(9)),
            key_leased: u64::try_from(row.get::<_, i64>(10)).unwrap_or(0),
            max_key_concurrency: row
                .get::<_, Option<i64>>(11)
                .and_then(|n| u32::try_from(n).ok()),
            key_rate_limit: row
                .get::<_, Option<&str>>(13)
                .filter(|text| *text != "null")
                .map(from_json)
                .transpose()?,
            key_rate_tat_us: row.get(14),
            fair_position: row
                .get::<_, Option<i64>>(15)
                .and_then(|n| u64::try_from(n).ok()),
        })
    }

    pub(super) async fn read_page(
        &self,
        namespace: &Namespace,
        filter: &JobFilter,
    ) -> Result<JobPage, Error> {
        let client = self.client().await?;
        let mut sql = format!(
            "SELECT {} FROM keel_jobs WHERE namespace = $1",
            include_str!("../../queries/jobs/job_columns.sql").trim()
        );
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = vec![Box::new(namespace.to_string())];
        if let Some(queue) = &filter.queue {
            args.push(Box::new(queue.to_string()));
            sql.push_str(&format!(" AND queue = ${}", args.len()));
        }
        if let Some(state) = filter.state {
            // A literal so that `state = 'dead'` can use its partial index.
            sql.push_str(&format!(" AND state = '{}'", state.as_str()));
        }
        if let Some((key, value)) = &filter.tag {
            let mut tag = serde_json::Map::new();
            tag.insert(key.clone(), serde_json::Value::String(value.clone()));
            args.push(Box::new(serde_json::Value::Object(tag).to_string()));
            sql.push_str(&format!(" AND tags @> ${}::text::jsonb", args.len()));
        }
        if let Some(cursor) = &filter.cursor {
            let before: i64 = cursor
                .parse()
                .map_err(|_| Error::invalid("cursor is not one this server gave out"))?;
            args.push(Box::new(before));
            sql.push_str(&format!(" AND seq < ${}", args.len()));
        }
        args.push(Box::new(i64::from(filter.limit) + 1));
        sql.push_str(&format!(" ORDER BY seq DESC LIMIT ${}", args.len()));
        let params: Vec<&(dyn ToSql + Sync)> = args
            .iter()
            .map(|a| a.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let rows = client.query(&sql, &params).await.map_err(db)?;
        let mut jobs: Vec<(i64, Job)> = rows.iter().map(job_from_row).collect::<Result<_, _>>()?;
        let more = jobs.len() > filter.limit as usize;
        jobs.truncate(filter.limit as usize);
        let next_cursor = more
            .then(|| jobs.last().map(|(seq, _)| seq.to_string()))
            .flatten();
        let mut page = Vec::with_capacity(jobs.len());
        for (_, mut job) in jobs {
            attach_errors(&client, &mut job).await?;
            page.push(job);
        }
        Ok(JobPage {
            jobs: page,
            next_cursor,
        })
    }
}
