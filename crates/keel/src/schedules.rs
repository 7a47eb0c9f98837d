//! `keel schedule`: configure schedules, read their next slots and ledger,
//! pause, resume, trigger and backfill them.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use keel_client::{ScheduleAnswer, ScheduleRequest, SlotAnswer, Timestamp};

use crate::admin::{Target, named_spec, print_json};

#[derive(Args)]
pub(crate) struct ScheduleArgs {
    #[command(subcommand)]
    command: ScheduleCommand,
    #[command(flatten)]
    target: Target,
}

#[derive(Subcommand)]
enum ScheduleCommand {
    /// Creates or updates a schedule from a YAML or JSON file: `name` plus
    /// the fields of `PUT .../schedules/{name}`.
    Put {
        file: PathBuf,
    },
    /// The namespace's schedules.
    List,
    /// One schedule: its next slots and its ledger.
    Get {
        name: String,
    },
    /// Slots pass as `paused` until it resumes.
    Pause {
        name: String,
    },
    Resume {
        name: String,
    },
    /// Fires now, outside the cron.
    Trigger {
        name: String,
    },
    /// Fires every slot between two RFC 3339 times, under the overlap policy.
    Backfill {
        name: String,
        #[arg(long, value_parser = parse_time)]
        from: Timestamp,
        #[arg(long, value_parser = parse_time)]
        to: Timestamp,
    },
}

fn parse_time(text: &str) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339(text).ok_or_else(|| format!("{text:?} is not an RFC 3339 time"))
}

pub(crate) async fn schedule(args: ScheduleArgs) -> anyhow::Result<()> {
    let target = &args.target;
    let client = target.client()?;
    let ns = &target.namespace;
    let (schedules, slots) = match args.command {
        ScheduleCommand::Put { file } => {
            let (name, request): (String, ScheduleRequest) = named_spec(&file, "schedule")?;
            (vec![client.put_schedule(ns, &name, &request).await?], None)
        }
        ScheduleCommand::List => (client.list_schedules(ns).await?.schedules, None),
        ScheduleCommand::Get { name } => (vec![client.get_schedule(ns, &name).await?], None),
        ScheduleCommand::Pause { name } => {
            (vec![client.pause_schedule(ns, &name, true).await?], None)
        }
        ScheduleCommand::Resume { name } => {
            (vec![client.pause_schedule(ns, &name, false).await?], None)
        }
        ScheduleCommand::Trigger { name } => (
            Vec::new(),
            Some(vec![client.trigger_schedule(ns, &name).await?]),
        ),
        ScheduleCommand::Backfill { name, from, to } => (
            Vec::new(),
            Some(client.backfill_schedule(ns, &name, from, to).await?.slots),
        ),
    };
    if let Some(slots) = slots {
        if target.json {
            return print_json(&slots);
        }
        if slots.is_empty() {
            println!("no slots in that range (or all fired already)");
        }
        slots.iter().for_each(print_slot);
        return Ok(());
    }
    if target.json {
        return print_json(&schedules);
    }
    if schedules.is_empty() {
        println!("no schedules");
    }
    let one = schedules.len() == 1;
    for s in &schedules {
        print_schedule(s, one);
    }
    Ok(())
}

fn print_schedule(s: &ScheduleAnswer, detail: bool) {
    let cadence = match (&s.spec.cron, s.spec.every_ms) {
        (Some(cron), _) => format!("cron {cron:?} {}", s.spec.timezone),
        (None, Some(ms)) => format!("every {ms} ms"),
        (None, None) => String::new(),
    };
    let state = if s.spec.paused { "  PAUSED" } else { "" };
    println!(
        "{}  {cadence}{state}  fired {} skipped {} missed {}",
        s.name, s.fired, s.skipped, s.missed
    );
    for next in s.next_fire_times.iter().take(if detail { 5 } else { 1 }) {
        println!("  next {} ({})", next.utc, next.local);
    }
    if detail {
        s.recent.iter().for_each(print_slot);
    }
}

fn print_slot(slot: &SlotAnswer) {
    let fired = slot
        .fired_at
        .map(|t| format!(" at {t}"))
        .unwrap_or_default();
    let target = slot
        .target_id
        .as_deref()
        .map(|t| format!(" → {t}"))
        .unwrap_or_default();
    println!(
        "  slot {}  {}{fired}{target}",
        slot.nominal_time,
        serde_json::to_value(slot.outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    );
}
