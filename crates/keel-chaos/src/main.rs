//! `keel-chaos`: Keel under the faults we can inject on one machine, with a
//! history of every client operation and a checker's verdict on it (lost,
//! duplicated, reordered, unexpected). `scripts/chaos <scenario>` runs it;
//! docs/reliability.md has the scenarios and the last figures.
//!
//! Every scenario is bounded in time and exits non-zero on a violation.

mod cluster;
mod history;
mod powerfs;
mod relay;
mod scenarios;
mod streamed;
mod workload;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scenario {
    /// kill -9 of the embedded node at random moments under load.
    Kill9,
    /// Power cuts of the embedded node under load: kill -9, then the disk
    /// keeps a random part of what no fsync covered (a FUSE filesystem).
    PowerLoss,
    /// Three nodes on PostgreSQL, a random one killed with -9 each cycle.
    PgKill,
    /// Three nodes on PostgreSQL, one paused (SIGSTOP) past its leases.
    PgPause,
    /// Three nodes on PostgreSQL, one cut off from the database (a relay
    /// that stops moving bytes) past its leases, then healed.
    PgPartition,
    /// Three nodes on PostgreSQL, and PostgreSQL itself restarted under
    /// load (`pg_ctlcluster ... restart -m fast`: its sessions are ended).
    PgRestart,
    /// fsync fails with EIO under load (libfiu's `fiu-run`): the node stops
    /// instead of acknowledging, and nothing it acknowledged before is lost.
    Eio,
    /// The disk fills up under load (a small tmpfs): 507s, reads go on,
    /// writes again once space is freed.
    DiskFull,
    /// 1,000s of slow connections (silent, trickling) against the defaults.
    Slowloris,
    /// Enqueues at twice the measured capacity, open loop: shed with 503 and
    /// `Retry-After`, memory and admitted latency bounded, recovery after.
    Overload,
    /// Mixed load for a long while: memory, descriptors and threads stay flat.
    Soak,
}

#[derive(Parser)]
#[command(about = "Keel under injected faults, with a history checker")]
struct Args {
    scenario: Scenario,
    /// The keel binary under test.
    #[arg(long, default_value = "target/release/keel")]
    keel: PathBuf,
    /// Fault cycles (kill -9, pauses, fills).
    #[arg(long, default_value_t = 10)]
    cycles: usize,
    /// How long a load-only scenario runs (soak), in seconds.
    #[arg(long, default_value_t = 60)]
    secs: u64,
    /// Connections of the slowloris.
    #[arg(long, default_value_t = 5000)]
    connections: usize,
    /// The slowloris's server's header timeout, in ms (default: Keel's own).
    #[arg(long, default_value_t = 30_000)]
    header_timeout_ms: u64,
    /// PostgreSQL for the pg-* scenarios (a schema of its own is made).
    #[arg(
        long,
        env = "KEEL_TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,
}

pub(crate) struct Settings {
    pub(crate) keel: PathBuf,
    pub(crate) cycles: usize,
    pub(crate) duration: Duration,
    pub(crate) connections: usize,
    pub(crate) header_timeout: Duration,
    pub(crate) database_url: String,
}

#[allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool: its report is its output"
)]
fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // reqwest is built without a TLS provider of its own (the workspace's
    // rustls is on ring); the chaos clients speak plain HTTP, but a client
    // still needs one installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = Settings {
        keel: args.keel,
        cycles: args.cycles,
        duration: Duration::from_secs(args.secs),
        connections: args.connections,
        header_timeout: Duration::from_millis(args.header_timeout_ms),
        database_url: args.database_url,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(scenarios::run(args.scenario, &settings)) {
        Ok(report) => {
            println!("{report}");
            if report.passed() {
                std::process::ExitCode::SUCCESS
            } else {
                eprintln!("FAILED: {:?}", args.scenario);
                std::process::ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
