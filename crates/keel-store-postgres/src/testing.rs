//! Test support: a schema of its own for one test, on the server named by
//! `KEEL_TEST_DATABASE_URL` (default: PostgreSQL on 127.0.0.1:5432). Used by
//! this crate's conformance tests and by the multi-node tests of the binary.

use tokio_postgres::NoTls;

pub fn base_url() -> String {
    std::env::var("KEEL_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Dropped with the test: the backends of its connections are ended first
/// (they carry the schema as `application_name`), so that no transaction a
/// test left open holds the locks `DROP SCHEMA` needs.
pub struct TestSchema {
    pub name: String,
}

impl TestSchema {
    /// Creates `{prefix}_{random}`.
    pub async fn create(prefix: &str) -> Result<Self, tokio_postgres::Error> {
        let name = format!("{prefix}_{:016x}", fastrand::u64(..));
        let (client, connection) = tokio_postgres::connect(&base_url(), NoTls).await?;
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await?;
        Ok(TestSchema { name })
    }

    /// A name for a schema this test expects to be created (by the store at
    /// its first start); dropped with the test like one `create` made.
    pub fn reserve(prefix: &str) -> Self {
        TestSchema {
            name: format!("{prefix}_{:016x}", fastrand::u64(..)),
        }
    }

    /// A database URL whose connections use this schema.
    pub fn url(&self) -> String {
        let base = base_url();
        let separator = if base.contains('?') { '&' } else { '?' };
        format!(
            "{base}{separator}options=-c%20search_path%3D{s}&application_name={s}",
            s = self.name
        )
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which must not be blocked on
        // itself: do the async work on a thread and runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&base_url(), NoTls).await?;
                tokio::spawn(connection);
                client
                    .execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", &[&name])
                    .await?;
                client.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE")).await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            tracing::warn!(schema = %self.name, "could not drop a test schema");
        }
    }
}
