//! Numbered migrations, applied at start under an advisory lock: nodes that
//! start together take turns, and each applies only what is missing.

use keel_core::Error;
use tokio_postgres::Client;

use crate::db;

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
    include_str!("../migrations/0024_notification_settings.sql"),
    include_str!("../migrations/0025_notifications.sql"),
    include_str!("../migrations/0026_monitors.sql"),
    include_str!("../migrations/0027_handlers.sql"),
    include_str!("../migrations/0028_projects.sql"),
    include_str!("../migrations/0029_connections.sql"),
];
/// The advisory lock key that serializes migrations ("keel" in ASCII).
const MIGRATION_LOCK: i64 = 0x6b65_656c;

/// Makes sure Keel's tables have a schema to go in: the first schema of
/// `search_path` that exists. When none does (a schema named for Keel in
/// the URL but not made yet, or `public` dropped), the first one named
/// there (or `public`) is created, so a first start needs no setup; a role
/// that may not create it is told what to run.
pub(crate) async fn ensure_schema(client: &Client) -> Result<(), Error> {
    let current: Option<String> = client
        .query_one("SELECT current_schema()", &[])
        .await
        .map_err(db)?
        .get(0);
    if current.is_some() {
        return Ok(());
    }
    let path: String = client
        .query_one("SHOW search_path", &[])
        .await
        .map_err(db)?
        .get(0);
    let quoted = format!("\"{}\"", first_schema(&path).replace('"', "\"\""));
    client
        .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {quoted}"))
        .await
        .map_err(|e| {
            Error::invalid(format!(
                "no schema of search_path ({path}) exists, and creating {quoted} failed ({e}): \
                 run CREATE SCHEMA {quoted} as a role that may, or name an existing schema in \
                 the URL's search_path"
            ))
        })
}

/// The schema to create for a `search_path` none of whose schemas exists:
/// its first entry but `$user` (quoted names kept as written, others
/// lowercased, as PostgreSQL reads them), else `public`.
fn first_schema(search_path: &str) -> String {
    search_path
        .split(',')
        .map(str::trim)
        .find(|s| !s.is_empty() && *s != "$user" && *s != "\"$user\"")
        .map(
            |s| match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                Some(quoted) => quoted.replace("\"\"", "\""),
                None => s.to_lowercase(),
            },
        )
        .unwrap_or_else(|| "public".to_owned())
}

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

    use super::{MIGRATIONS, first_schema};

    #[test]
    fn the_schema_to_create_is_the_first_one_search_path_names() {
        assert_eq!(first_schema("keel_app"), "keel_app");
        assert_eq!(first_schema("\"$user\", public"), "public");
        assert_eq!(first_schema("\"$user\""), "public");
        assert_eq!(first_schema("Keel, public"), "keel");
        assert_eq!(first_schema("\"My \"\"Keel\"\"\", public"), "My \"Keel\"");
        assert_eq!(first_schema(""), "public");
    }

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
