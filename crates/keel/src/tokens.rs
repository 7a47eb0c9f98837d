//! `keel token`: create, list and revoke API tokens. `create` with
//! `--data-dir` or `--database-url` writes straight to the store, with no
//! server running and no token needed: how the first admin token is made.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use keel_client::{Role, TokenAnswer, TokenRequest};
use keel_core::auth::Grant;
use keel_core::{Limits, SystemClock, Timestamp};
use keel_engine::tokens::{Expiry, issue};

use crate::StoreChoice;
use crate::admin::{Target, print_json};

#[derive(Args)]
pub(crate) struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Creates a token and prints it (the only time it is shown).
    Create(CreateArgs),
    /// Every token, newest first (never a secret).
    List,
    /// Revokes a token: refused on every node within a second.
    Revoke { id: String },
}

#[derive(Args)]
struct CreateArgs {
    #[arg(long)]
    name: String,
    /// reader, publisher, worker, operator or admin.
    #[arg(long, value_parser = parse_role)]
    role: Role,
    /// Namespaces the token reaches, comma-separated; `*` for all (an
    /// admin's default).
    #[arg(long, value_delimiter = ',')]
    namespaces: Vec<String>,
    /// Only these resources, comma-separated `kind:name` patterns
    /// (`queue:emails*,topic:orders`).
    #[arg(long, value_delimiter = ',')]
    resources: Vec<String>,
    /// Lifetime in ms (default: 90 days).
    #[arg(long, conflicts_with = "never_expires")]
    expires_in_ms: Option<u64>,
    /// The token never expires.
    #[arg(long)]
    never_expires: bool,
    /// Write straight to this embedded store (no server needed).
    #[arg(long, conflicts_with = "database_url")]
    data_dir: Option<PathBuf>,
    /// Write straight to this PostgreSQL store (no server needed).
    #[arg(long)]
    database_url: Option<String>,
}

fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(text).map_err(|e| e.message)
}

pub(crate) async fn token(args: TokenArgs) -> anyhow::Result<()> {
    let target = &args.target;
    let tokens = match args.command {
        TokenCommand::Create(create) => return create_token(create, target).await,
        TokenCommand::List => target.client()?.list_tokens().await?.tokens,
        TokenCommand::Revoke { id } => vec![target.client()?.revoke_token(&id).await?],
    };
    if target.json {
        return print_json(&tokens);
    }
    if tokens.is_empty() {
        println!("no tokens");
    }
    for t in &tokens {
        print_token(t);
    }
    Ok(())
}

async fn create_token(args: CreateArgs, target: &Target) -> anyhow::Result<()> {
    let namespaces = match (args.namespaces.is_empty(), args.role) {
        (true, Role::Admin) => None,
        (true, _) => anyhow::bail!("give --namespaces (or --namespaces '*' for all)"),
        (false, _) => Some(args.namespaces),
    };
    let resources = (!args.resources.is_empty()).then_some(args.resources);
    let store = match (args.data_dir, args.database_url) {
        (Some(dir), _) => Some(StoreChoice::Embedded(dir)),
        (None, Some(url)) => Some(StoreChoice::Postgres(url)),
        (None, None) => None,
    };
    let (about, secret, place) = match store {
        Some(choice) => {
            let place = match &choice {
                StoreChoice::Embedded(dir) => format!("in the store at {}", dir.display()),
                StoreChoice::Postgres(_) => "in the database of --database-url".to_owned(),
            };
            let expiry = match (args.never_expires, args.expires_in_ms) {
                (true, _) => Expiry::Never,
                (false, Some(ms)) => Expiry::In(ms),
                (false, None) => Expiry::Default,
            };
            let grant = Grant {
                role: args.role,
                namespaces: namespaces.unwrap_or_else(|| vec!["*".to_owned()]),
                resources,
            };
            let store = choice.open(&Limits::default()).await?;
            let now = keel_core::Clock::now(&SystemClock);
            let issued = issue(&*store, now, &args.name, grant, expiry).await;
            store.close().await;
            let issued = issued.map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let t = issued.token;
            let about = TokenAnswer {
                id: t.id,
                name: t.name,
                role: t.grant.role,
                namespaces: t.grant.namespaces,
                resources: t.grant.resources,
                created_at: t.created_at,
                expires_at: t.expires_at,
                last_used_at: None,
                revoked_at: None,
            };
            (about, issued.secret, place)
        }
        None => {
            let request = TokenRequest {
                name: args.name,
                role: args.role,
                namespaces,
                resources,
                recipient: None,
                expires_in_ms: match (args.never_expires, args.expires_in_ms) {
                    (true, _) => Some(None),
                    (false, ms) => ms.map(Some),
                },
            };
            let created = target.client()?.create_token(&request).await?;
            // Said when the server is the default one, which the user did
            // not name: `keel dev` may be the one listening there.
            let place = if target.server() == crate::admin::DEFAULT_SERVER {
                format!(
                    "on the server at {} (the default: --server or KEEL_SERVER names another)",
                    target.server()
                )
            } else {
                format!("on the server at {}", target.server())
            };
            (created.about, created.token, place)
        }
    };
    if target.json {
        return print_json(&serde_json::json!({"about": about, "token": secret}));
    }
    println!("{secret}");
    note(&about, &place);
    Ok(())
}

/// Stdout holds the token alone, for scripts; the person reads this.
#[allow(
    clippy::print_stderr,
    reason = "a note for the person, kept off stdout so scripts read the token alone"
)]
fn note(t: &TokenAnswer, place: &str) {
    let expiry = t.expires_at.map_or_else(
        || "never expires".to_owned(),
        |at| {
            format!(
                "expires {} (--expires-in-ms, or --never-expires)",
                at.to_rfc3339()
            )
        },
    );
    eprintln!(
        "token {} ({}, namespaces {}) created {place}; {expiry}; keep it now: it is shown only this once",
        t.id,
        t.role,
        t.namespaces.join(",")
    );
}

fn print_token(t: &TokenAnswer) {
    let when = |at: Option<Timestamp>| at.map_or("never".to_owned(), Timestamp::to_rfc3339);
    let state = if t.revoked_at.is_some() {
        "revoked".to_owned()
    } else {
        format!("expires {}", when(t.expires_at))
    };
    println!(
        "{}  {}  {}  namespaces {}{}  {}  last used {}",
        t.id,
        t.name,
        t.role,
        t.namespaces.join(","),
        t.resources
            .as_ref()
            .map_or(String::new(), |r| format!("  resources {}", r.join(","))),
        state,
        when(t.last_used_at),
    );
}
