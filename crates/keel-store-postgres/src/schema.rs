//! Numbered migrations, applied at start under an advisory lock: nodes that
//! start together take turns, and each applies only what is missing.

use tokio_postgres::Client;

const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_jobs.sql"),
    include_str!("../migrations/0002_workflows.sql"),
    include_str!("../migrations/0003_unfinished_jobs.sql"),
    include_str!("../migrations/0004_finished_runs.sql"),
    include_str!("../migrations/0005_hot_run_updates.sql"),
    include_str!("../migrations/0006_job_owner.sql"),
    include_str!("../migrations/0007_runnable_jobs.sql"),
    include_str!("../migrations/0008_topics.sql"),
    include_str!("../migrations/0009_subscriptions.sql"),
    include_str!("../migrations/0010_outbox.sql"),
    include_str!("../migrations/0011_sources.sql"),
    include_str!("../migrations/0012_endpoints.sql"),
    include_str!("../migrations/0013_schedules.sql"),
    include_str!("../migrations/0014_queue_rate.sql"),
    include_str!("../migrations/0015_flow_keys.sql"),
    include_str!("../migrations/0016_key_rate.sql"),
    include_str!("../migrations/0017_one_leased_index.sql"),
    include_str!("../migrations/0018_tokens.sql"),
    include_str!("../migrations/0019_audit.sql"),
    include_str!("../migrations/0020_namespaces.sql"),
    include_str!("../migrations/0021_slo_minutes.sql"),
    include_str!("../migrations/0022_traceparent.sql"),
    include_str!("../migrations/0023_outbox_enqueue_flow_key.sql"),
];
/// The advisory lock key that serializes migrations ("keel" in ASCII).
const MIGRATION_LOCK: i64 = 0x6b65_656c;

pub(crate) async fn migrate(client: &mut Client) -> Result<(), tokio_postgres::Error> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let applied = apply_missing(client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    applied
}

async fn apply_missing(client: &mut Client) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS keel_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
    let done: i32 = client
        .query_one("SELECT coalesce(max(version), 0) FROM keel_migrations", &[])
        .await?
        .get(0);
    for (version, sql) in (1..).zip(MIGRATIONS).skip(done as usize) {
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO keel_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await?;
        tx.commit().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, reason = "a test: a panic is a failed check")]

    use super::MIGRATIONS;

    /// The columns of a statement's `INSERT INTO keel_jobs (...)`.
    fn job_columns(sql: &str) -> Vec<String> {
        let start = sql
            .rfind("INSERT INTO keel_jobs (")
            .expect("an insert into keel_jobs")
            + "INSERT INTO keel_jobs (".len();
        let end = start + sql[start..].find(')').expect("a closed column list");
        sql[start..end]
            .split(',')
            .map(|c| c.trim().to_owned())
            .collect()
    }

    /// Every statement that writes a new job writes the same columns: the
    /// batch insert (`insert_rows.sql`, which the run statements share),
    /// the one-row insert (kept for its speed: enqueue_single) and the
    /// outbox's `enqueue()`, re-created by a migration whenever a column is
    /// added (it once missed the flow key, and keyed leases never saw its
    /// jobs).
    #[test]
    fn every_job_insert_writes_the_same_columns() {
        use crate::jobs::rows::{INSERT_JOBS, RUN_INSERT_WITH_JOBS, RUN_UPDATE_WITH_JOBS};
        let api = job_columns(include_str!("../queries/jobs/insert_job.sql"));
        let others = [
            ("INSERT_JOBS", INSERT_JOBS),
            ("RUN_INSERT_WITH_JOBS", RUN_INSERT_WITH_JOBS),
            ("RUN_UPDATE_WITH_JOBS", RUN_UPDATE_WITH_JOBS),
        ];
        for (name, sql) in others {
            assert_eq!(job_columns(sql), api, "{name}");
        }
        let outbox = MIGRATIONS
            .iter()
            .rev()
            .find(|m| m.contains("FUNCTION enqueue("))
            .expect("a migration that defines enqueue()");
        assert_eq!(job_columns(outbox), api, "the newest enqueue()");
    }
}
