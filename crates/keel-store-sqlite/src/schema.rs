//! Numbered migrations, applied in order at open and recorded in
//! `PRAGMA user_version`, all in one transaction.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_jobs.sql"),
    include_str!("../migrations/0002_workflows.sql"),
    include_str!("../migrations/0003_finished_runs.sql"),
    include_str!("../migrations/0004_job_owner.sql"),
    include_str!("../migrations/0005_topics.sql"),
    include_str!("../migrations/0006_subscriptions.sql"),
    include_str!("../migrations/0007_sources.sql"),
    include_str!("../migrations/0008_endpoints.sql"),
    include_str!("../migrations/0009_schedules.sql"),
    include_str!("../migrations/0010_flow_keys.sql"),
    include_str!("../migrations/0011_tokens.sql"),
    include_str!("../migrations/0012_audit.sql"),
    include_str!("../migrations/0013_namespaces.sql"),
    include_str!("../migrations/0014_slo_minutes.sql"),
    include_str!("../migrations/0015_traceparent.sql"),
    include_str!("../migrations/0016_lease_epoch.sql"),
    include_str!("../migrations/0017_notification_settings.sql"),
    include_str!("../migrations/0018_notifications.sql"),
    include_str!("../migrations/0019_monitors.sql"),
    include_str!("../migrations/0020_handlers.sql"),
    include_str!("../migrations/0021_projects.sql"),
    include_str!("../migrations/0022_connections.sql"),
];

pub(crate) fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)?;
    let applied: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (n, sql) in (0i64..).zip(MIGRATIONS).skip(applied as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", n + 1)?;
    }
    tx.commit()
}
