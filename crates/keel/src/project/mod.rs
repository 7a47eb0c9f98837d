//! A project directory and the commands on it: `keel validate` and `keel
//! lint` (offline), `keel test` (on a Keel of its own, `testing.rs`), `keel plan` (the server computes the diff; exit code 0
//! no change, 2 changes, 1 error), `keel apply` (a saved plan, or a fresh
//! one once confirmed) and `keel versions` (list, show, rollback). The
//! layout is `load.rs`'s; the offline checks are `check.rs`'s.

mod check;
mod load;
mod testing;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use keel_client::{Client, VersionAnswer, VersionSummary};
use keel_core::project::{Action, Plan};
use keel_core::{Clock, SystemClock};

use crate::admin::{Target, print_json};

/// A command's way to end with an exit code other than 0 or 1, and no
/// error message (`keel plan`'s 2: there are changes).
#[derive(Debug)]
pub(crate) struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}

impl std::error::Error for Exit {}

#[derive(Args)]
pub(crate) struct DirArgs {
    /// The project directory (holding keel.toml).
    #[arg(long = "dir", short = 'C', default_value = ".", global = true)]
    dir: PathBuf,
}

#[derive(Args)]
pub(crate) struct TestArgs {
    #[command(flatten)]
    dir: DirArgs,
    /// Only the test files whose path holds this.
    filter: Option<String>,
}

#[derive(Args)]
pub(crate) struct PlanArgs {
    #[command(flatten)]
    dir: DirArgs,
    /// Also write the plan to FILE, for `keel apply FILE`.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    target: Target,
}

#[derive(Args)]
pub(crate) struct ApplyArgs {
    /// A plan written by `keel plan --out`: applied as reviewed, without
    /// asking. Without it, the project is planned afresh and shown first.
    plan: Option<PathBuf>,
    #[command(flatten)]
    dir: DirArgs,
    /// Apply without asking.
    #[arg(long)]
    yes: bool,
    /// Why, kept with the version.
    #[arg(long)]
    note: Option<String>,
    #[command(flatten)]
    target: Target,
}

#[derive(Args)]
pub(crate) struct VersionsArgs {
    #[command(subcommand)]
    command: VersionsCommand,
    #[command(flatten)]
    dir: DirArgs,
    /// The project, when not the one in the directory.
    #[arg(long, global = true)]
    project: Option<String>,
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand)]
enum VersionsCommand {
    /// The project's versions, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One version: its changes and its definitions.
    Show { version: u64 },
    /// Plans a return to VERSION's definitions and applies it as a new
    /// version.
    Rollback {
        version: u64,
        /// Apply without asking.
        #[arg(long)]
        yes: bool,
    },
}

/// `keel validate`: exit 1 with every problem, each at its file and line.
pub(crate) async fn validate(args: &DirArgs) -> anyhow::Result<()> {
    let project = read(&args.dir)?;
    let (mut problems, previews) = check::validate(&project.resources, SystemClock.now());
    problems.extend(check::handlers(&project.resources).await);
    if !problems.is_empty() {
        fail(&problems)?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}: {} resources, valid",
        project.name,
        project.resources.len()
    )?;
    for line in previews {
        writeln!(out, "  {line}")?;
    }
    Ok(())
}

/// `keel lint`: exit 1 when a rule finds something.
pub(crate) fn lint(args: &DirArgs) -> anyhow::Result<()> {
    let project = read(&args.dir)?;
    let found = check::lint(&project.resources);
    if !found.is_empty() {
        fail(&found)?;
    }
    println!("{}: nothing to report", project.name);
    Ok(())
}

/// `keel test`: exit 1 when a test fails.
pub(crate) async fn test(args: TestArgs) -> anyhow::Result<()> {
    let project = read(&args.dir.dir)?;
    let (mut problems, _) = check::validate(&project.resources, SystemClock.now());
    problems.extend(check::handlers(&project.resources).await);
    if !problems.is_empty() {
        fail(&problems)?;
    }
    if testing::run(&args.dir.dir, &project, args.filter.as_deref()).await? {
        Ok(())
    } else {
        Err(Exit(1).into())
    }
}

pub(crate) async fn plan(args: PlanArgs) -> anyhow::Result<()> {
    let (project, client) = open(&args.dir.dir, &args.target)?;
    let plan = client
        .plan(&project.name, check::resources(&project.resources))
        .await?;
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_vec_pretty(&plan)?)
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    if args.target.json {
        print_json(&plan)?;
    } else {
        show(&plan)?;
    }
    if plan.changes.is_empty() {
        Ok(())
    } else {
        Err(Exit(2).into())
    }
}

pub(crate) async fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let (plan, client) = match &args.plan {
        Some(file) => {
            let text =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let plan: Plan = serde_json::from_slice(&text).with_context(|| {
                format!("{} is not a plan from `keel plan --out`", file.display())
            })?;
            let server = load::load(&args.dir.dir).ok().and_then(|p| p.server);
            (plan, args.target.client_or(server.as_deref())?)
        }
        None => {
            let (project, client) = open(&args.dir.dir, &args.target)?;
            let plan = client
                .plan(&project.name, check::resources(&project.resources))
                .await?;
            if !args.target.json {
                show(&plan)?;
            }
            if !plan.changes.is_empty() && !args.yes && !confirm()? {
                anyhow::bail!("not applied");
            }
            (plan, client)
        }
    };
    let base = plan.base_version;
    let applied = client.apply(plan, args.note).await?;
    report(&applied, base, args.target.json)
}

pub(crate) async fn versions(args: VersionsArgs) -> anyhow::Result<()> {
    let (name, client) = match &args.project {
        Some(name) => (name.clone(), args.target.client()?),
        None => {
            let (project, client) = open(&args.dir.dir, &args.target)?;
            (project.name, client)
        }
    };
    match args.command {
        VersionsCommand::List { limit } => {
            let list = client.project_versions(&name, limit).await?;
            if args.target.json {
                return print_json(&list);
            }
            let mut out = std::io::stdout().lock();
            for v in &list.versions {
                writeln!(out, "{}", summary_line(v))?;
            }
            Ok(())
        }
        VersionsCommand::Show { version } => {
            let answer = client.project_version(&name, version).await?;
            if args.target.json {
                return print_json(&answer);
            }
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", summary_line(&answer.summary))?;
            for change in &answer.changes {
                writeln!(out, "  {}", change_line(change))?;
            }
            for r in &answer.resources {
                writeln!(out, "  {} {}/{}", r.kind.as_str(), r.namespace, r.name)?;
            }
            Ok(())
        }
        VersionsCommand::Rollback { version, yes } => {
            let old = client.project_version(&name, version).await?;
            let plan = client.plan(&name, old.resources).await?;
            if !args.target.json {
                show(&plan)?;
            }
            if !plan.changes.is_empty() && !yes && !confirm()? {
                anyhow::bail!("not rolled back");
            }
            let base = plan.base_version;
            let applied = client
                .apply(plan, Some(format!("rollback to version {version}")))
                .await?;
            report(&applied, base, args.target.json)
        }
    }
}

/// The project in `dir`, or exit 1 with its problems.
fn read(dir: &Path) -> anyhow::Result<load::Project> {
    match load::load(dir) {
        Ok(project) => Ok(project),
        Err(problems) => {
            fail(&problems)?;
            unreachable!("fail always returns an error")
        }
    }
}

/// The project, checked offline, and a client for its server.
fn open(dir: &Path, target: &Target) -> anyhow::Result<(load::Project, Client)> {
    let project = read(dir)?;
    let (problems, _) = check::validate(&project.resources, SystemClock.now());
    if !problems.is_empty() {
        fail(&problems)?;
    }
    let client = target.client_or(project.server.as_deref())?;
    Ok((project, client))
}

fn fail(problems: &[load::Problem]) -> anyhow::Result<()> {
    let mut err = std::io::stderr().lock();
    for p in problems {
        writeln!(err, "{p}")?;
    }
    anyhow::bail!(
        "{} problem{}",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    )
}

fn confirm() -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("not on a terminal: give --yes to apply without asking");
    }
    print!("Apply these changes? Only 'yes' applies: ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}

fn show(plan: &Plan) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if plan.changes.is_empty() {
        writeln!(
            out,
            "No changes: project {} matches the server (version {}).",
            plan.project, plan.base_version
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "Project {} (version {}) would change:",
        plan.project, plan.base_version
    )?;
    let mut counts = [0usize; 4];
    for change in &plan.changes {
        counts[change.action as usize] += 1;
        writeln!(out, "  {}", change_line(change))?;
    }
    writeln!(
        out,
        "{} to create, {} to update, {} to delete, {} to release.",
        counts[Action::Create as usize],
        counts[Action::Update as usize],
        counts[Action::Delete as usize],
        counts[Action::Release as usize]
    )?;
    Ok(())
}

fn change_line(change: &keel_core::project::Change) -> String {
    let (mark, verb) = match change.action {
        Action::Create => ('+', "create"),
        Action::Update => ('~', "update"),
        Action::Delete => ('-', "delete"),
        Action::Release => ('=', "release"),
    };
    let mut line = format!(
        "{mark} {verb} {} {}/{}",
        change.kind.as_str(),
        change.namespace,
        change.name
    );
    if !change.fields.is_empty() {
        line.push_str(&format!(": {}", change.fields.join(", ")));
    }
    if change.action == Action::Release {
        line.push_str(" (kept; no longer owned)");
    }
    line
}

fn summary_line(v: &VersionSummary) -> String {
    let mut line = format!(
        "{} v{}  {}  {}  {} resources, {} changes",
        v.project,
        v.version,
        v.state.as_str(),
        v.created_at,
        v.resource_count,
        v.change_count
    );
    if !v.note.is_empty() {
        line.push_str(&format!("  ({})", v.note));
    }
    if let Some(error) = &v.error {
        line.push_str(&format!("\n  failed: {error}"));
    }
    line
}

fn report(applied: &VersionAnswer, base: u64, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(applied);
    }
    let v = &applied.summary;
    if v.version == base {
        println!(
            "No changes: project {} stays at version {}.",
            v.project, v.version
        );
    } else {
        println!(
            "Applied version {} of project {}: {} changes.",
            v.version, v.project, v.change_count
        );
    }
    Ok(())
}
