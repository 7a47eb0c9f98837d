//! The scheduler driven by a fake driver: commands are carried out in memory,
//! work finishes when a test says so, time moves only when a test moves it.

use serde_json::json;

use super::*;
use crate::JobId;
use crate::workflow::definition::{Format, parse_source};

const PROVISION: &str = r#"
name: provision-account
timeout_ms: 86400000
steps:
  create_tenant:
    task: { queue: tenants, input: { org: "${{ input.org_id }}" } }
    retry: { max_attempts: 5, backoff: { base_ms: 500 } }
    compensate: delete_tenant
  charge:
    needs: [create_tenant]
    http: { method: POST, url: "${{ input.billing_url }}", body: { tenant: "${{ steps.create_tenant.output.id }}" } }
    compensate: refund
  welcome:
    needs: [charge]
    if: "steps.charge.output.status == 'paid'"
    task: { queue: email, input: { to: "${{ input.email }}" } }
  wait_activation:
    needs: [welcome]
    wait_for: { signal: activated, timeout_ms: 259200000 }
  delete_tenant: { task: { queue: tenants, input: { id: "${{ steps.create_tenant.output.id }}" } }, compensation: true }
  refund: { task: { queue: billing, input: { charge: "${{ steps.charge.output.id }}" } }, compensation: true }
"#;

fn def(yaml: &str) -> Definition {
    let value = parse_source(yaml, Format::Yaml).expect("parses");
    Definition::from_value(&value).expect("valid")
}

/// A run under test with an in-memory driver.
struct Sim {
    def: Definition,
    input: Value,
    id: RunId,
    state: RunState,
    now: Timestamp,
    next_job: u8,
    /// Work started and not yet finished: key → (step, item, handle, work).
    open: Vec<(String, Option<usize>, Handle, Work, String)>,
    keys: Vec<String>,
    cancelled: Vec<Handle>,
    wakes: Vec<Timestamp>,
    finished: usize,
}

impl Sim {
    fn new(yaml: &str, input: Value) -> Sim {
        let def = def(yaml);
        let now = Timestamp::from_millis(1_000_000);
        let state = new_run(&def, now, None);
        let mut sim = Sim {
            def,
            input,
            id: RunId::from_bytes([7; 16]),
            state,
            now,
            next_job: 0,
            open: Vec::new(),
            keys: Vec::new(),
            cancelled: Vec::new(),
            wakes: Vec::new(),
            finished: 0,
        };
        sim.advance();
        sim
    }

    fn with<R>(&mut self, f: impl FnOnce(&mut Machine<'_>) -> R) -> R {
        let meta = RunMeta {
            id: self.id,
            workflow: &self.def.name,
            version: 1,
            input: &self.input,
        };
        let mut m = Machine::new(&self.def, meta, self.state.clone());
        let r = f(&mut m);
        let commands = m.advance(self.now);
        let mut started = Vec::new();
        for c in commands {
            match c {
                Command::Start {
                    step,
                    item,
                    key,
                    work,
                } => {
                    self.next_job += 1;
                    let handle = Handle::Job {
                        id: JobId::from_bytes([self.next_job; 16]),
                        system: matches!(*work, Work::Http { .. }),
                    };
                    m.started(&step, item, handle);
                    self.keys.push(key.clone());
                    started.push((step, item, handle, *work, key));
                }
                Command::Cancel(h) => self.cancelled.push(h),
                Command::WakeAt(t) => self.wakes.push(t),
                Command::Finished => self.finished += 1,
            }
        }
        self.open
            .retain(|(_, _, h, _, _)| !self.cancelled.contains(h));
        self.open.extend(started);
        self.state = m.into_state();
        r
    }

    fn advance(&mut self) {
        self.with(|_| ());
    }

    fn open_steps(&self) -> Vec<String> {
        self.open
            .iter()
            .map(|(s, i, ..)| match i {
                Some(i) => format!("{s}[{i}]"),
                None => s.clone(),
            })
            .collect()
    }

    fn work(&self, step: &str) -> Work {
        self.open
            .iter()
            .find(|(s, ..)| s == step)
            .map(|(.., w, _)| w.clone())
            .unwrap_or_else(|| panic!("{step} is not open: {:?}", self.open_steps()))
    }

    fn finish(&mut self, step: &str, item: Option<usize>, result: Result<Value, &str>) {
        let pos = self
            .open
            .iter()
            .position(|(s, i, ..)| s == step && *i == item)
            .unwrap_or_else(|| panic!("{step} {item:?} is not open: {:?}", self.open_steps()));
        self.open.remove(pos);
        let now = self.now;
        self.with(|m| {
            m.observe(
                step,
                item,
                Outcome::Done {
                    attempts: 1,
                    result: result.map_err(str::to_owned),
                },
                now,
            );
        });
    }

    fn step(&self, name: &str) -> &StepRecord {
        &self.state.steps[name]
    }

    fn status(&self) -> RunStatus {
        self.state.status
    }
}

fn provision() -> Sim {
    Sim::new(
        PROVISION,
        json!({"org_id": "acme", "billing_url": "https://billing.example/charge", "email": "a@acme"}),
    )
}

#[test]
fn the_happy_path_runs_each_step_once_in_dependency_order() {
    let mut sim = provision();
    assert_eq!(sim.open_steps(), ["create_tenant"]);
    match sim.work("create_tenant") {
        Work::Task {
            queue,
            payload,
            max_attempts,
            ..
        } => {
            assert_eq!(queue.as_str(), "tenants");
            assert_eq!(payload, json!({"org": "acme"}));
            assert_eq!(max_attempts, 5);
        }
        other => panic!("{other:?}"),
    }
    sim.finish("create_tenant", None, Ok(json!({"id": "t1"})));
    // A step that went well keeps no job in the journal.
    let tenant = sim.step("create_tenant");
    assert_eq!((tenant.handle, tenant.last), (None, None));
    match sim.work("charge") {
        Work::Http { request, .. } => {
            assert_eq!(request.url, "https://billing.example/charge");
            assert_eq!(request.body, Some(json!({"tenant": "t1"})));
        }
        other => panic!("{other:?}"),
    }
    sim.finish("charge", None, Ok(json!({"status": "paid", "id": "c1"})));
    assert_eq!(sim.open_steps(), ["welcome"]);
    sim.finish("welcome", None, Ok(json!(null)));
    assert_eq!(sim.step("wait_activation").state, StepStatus::Waiting);
    assert_eq!(sim.status(), RunStatus::Running);
    sim.with(|m| {
        m.signal("activated", json!({"by": "user"}))
            .expect("running");
    });
    assert_eq!(sim.status(), RunStatus::Succeeded);
    assert_eq!(
        sim.step("wait_activation").output,
        Some(json!({"by": "user"}))
    );
    assert_eq!(
        sim.state.output.as_ref().unwrap()["create_tenant"],
        json!({"id": "t1"})
    );
    assert_eq!(sim.step("delete_tenant").state, StepStatus::Pending);
    assert_eq!(sim.finished, 1);
    // Every piece of work had its own key, made once.
    let mut keys = sim.keys.clone();
    keys.dedup();
    assert_eq!(keys.len(), 3);
}

#[test]
fn replaying_a_journal_makes_no_new_work() {
    let mut sim = provision();
    sim.finish("create_tenant", None, Ok(json!({"id": "t1"})));
    let before = sim.keys.len();
    // The driver crashed and advances the same journal again: same decisions, same keys.
    let state = sim.state.clone();
    sim.advance();
    sim.advance();
    assert_eq!(sim.keys.len(), before);
    assert_eq!(sim.state, state);
}

#[test]
fn a_false_condition_skips_the_step_and_its_dependents() {
    let mut sim = provision();
    sim.finish("create_tenant", None, Ok(json!({"id": "t1"})));
    sim.finish("charge", None, Ok(json!({"status": "declined"})));
    assert_eq!(sim.step("welcome").state, StepStatus::Skipped);
    assert_eq!(sim.step("wait_activation").state, StepStatus::Skipped);
    assert_eq!(sim.status(), RunStatus::Succeeded);
}

#[test]
fn a_condition_can_run_a_step_whose_needs_were_skipped() {
    let sim = Sim::new(
        r#"
name: w
steps:
  a: { if: "false", task: { queue: q } }
  b: { needs: [a], task: { queue: q } }
  c: { needs: [a], if: "steps.a.state == 'skipped'", task: { queue: q } }
"#,
        json!({}),
    );
    assert_eq!(sim.step("a").state, StepStatus::Skipped);
    assert_eq!(sim.step("b").state, StepStatus::Skipped);
    assert_eq!(sim.open_steps(), ["c"]);
}

#[test]
fn a_failed_step_compensates_completed_steps_newest_first() {
    let mut sim = provision();
    sim.finish("create_tenant", None, Ok(json!({"id": "t1"})));
    sim.finish("charge", None, Ok(json!({"status": "paid", "id": "c1"})));
    sim.finish("welcome", None, Err("smtp down"));
    assert_eq!(sim.status(), RunStatus::Running);
    assert_eq!(
        sim.state.error.as_deref(),
        Some("step welcome failed: smtp down")
    );
    // charge completed last, so refund runs first, then delete_tenant.
    assert_eq!(sim.open_steps(), ["refund"]);
    match sim.work("refund") {
        Work::Task { payload, .. } => assert_eq!(payload, json!({"charge": "c1"})),
        other => panic!("{other:?}"),
    }
    sim.finish("refund", None, Ok(json!(null)));
    assert_eq!(sim.open_steps(), ["delete_tenant"]);
    sim.finish("delete_tenant", None, Ok(json!(null)));
    assert_eq!(sim.status(), RunStatus::Compensated);
    assert_eq!(sim.step("wait_activation").state, StepStatus::Pending);
    assert_eq!(sim.finished, 1);
}

#[test]
fn a_failing_compensation_fails_the_run() {
    let mut sim = provision();
    sim.finish("create_tenant", None, Ok(json!({"id": "t1"})));
    sim.finish("charge", None, Err("card declined"));
    assert_eq!(sim.open_steps(), ["delete_tenant"]);
    sim.finish("delete_tenant", None, Err("tenant locked"));
    assert_eq!(sim.status(), RunStatus::Failed);
    assert_eq!(
        sim.state.error.as_deref(),
        Some("step charge failed: card declined")
    );
}

#[test]
fn a_failure_with_nothing_to_compensate_fails_and_can_be_retried() {
    let mut sim = provision();
    sim.finish("create_tenant", None, Err("quota"));
    assert_eq!(sim.status(), RunStatus::Failed);
    assert!(
        sim.step("create_tenant").last.is_some(),
        "a failed step keeps its job for the dashboard"
    );
    let first_key = sim.keys[0].clone();
    let now = sim.now;
    sim.with(|m| m.retry(now).expect("failed runs retry"));
    assert_eq!(sim.status(), RunStatus::Running);
    assert_eq!(sim.open_steps(), ["create_tenant"]);
    assert_ne!(sim.keys.last(), Some(&first_key), "a retry makes new work");
    sim.with(|m| {
        let err = m.retry(now).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidState);
    });
}

#[test]
fn parallel_branches_are_cancelled_when_one_fails() {
    let mut sim = Sim::new(
        r#"
name: w
steps:
  a: { task: { queue: q } }
  b: { task: { queue: q } }
  c: { needs: [a, b], task: { queue: q } }
"#,
        json!({}),
    );
    assert_eq!(sim.open_steps(), ["a", "b"]);
    sim.finish("a", None, Err("boom"));
    assert_eq!(sim.status(), RunStatus::Failed);
    assert_eq!(sim.step("b").state, StepStatus::Cancelled);
    assert_eq!(sim.cancelled.len(), 1);
    assert_eq!(sim.step("c").state, StepStatus::Pending);
}

#[test]
fn sleeps_and_wait_timeouts_follow_the_injected_clock() {
    let mut sim = Sim::new(
        r#"
name: w
steps:
  nap: { sleep: { duration_ms: 5000 } }
  wait: { needs: [nap], wait_for: { signal: go, timeout_ms: 1000 } }
"#,
        json!({}),
    );
    assert_eq!(sim.step("nap").state, StepStatus::Waiting);
    let t0 = sim.now;
    assert_eq!(sim.wakes, [t0.plus_ms(5000)]);
    sim.now = t0.plus_ms(4999);
    sim.advance();
    assert_eq!(sim.step("nap").state, StepStatus::Waiting);
    sim.now = t0.plus_ms(5000);
    sim.advance();
    assert_eq!(sim.step("nap").state, StepStatus::Succeeded);
    assert_eq!(sim.step("wait").state, StepStatus::Waiting);
    assert_eq!(sim.wakes.last(), Some(&t0.plus_ms(6000)));
    sim.now = t0.plus_ms(6000);
    sim.advance();
    assert_eq!(sim.step("wait").state, StepStatus::Failed);
    assert!(
        sim.step("wait")
            .error
            .as_deref()
            .unwrap()
            .contains("timed out")
    );
    assert_eq!(sim.status(), RunStatus::Failed);
}

#[test]
fn a_signal_sent_before_the_wait_is_not_lost() {
    let mut sim = Sim::new(
        r#"
name: w
steps:
  a: { task: { queue: q } }
  wait: { needs: [a], wait_for: { signal: go } }
"#,
        json!({}),
    );
    sim.with(|m| m.signal("go", json!(42)).expect("running"));
    sim.finish("a", None, Ok(json!(1)));
    assert_eq!(sim.step("wait").output, Some(json!(42)));
    assert_eq!(sim.status(), RunStatus::Succeeded);
}

#[test]
fn the_run_timeout_fails_and_compensates() {
    let mut sim = Sim::new(
        r#"
name: w
timeout_ms: 1000
steps:
  a: { task: { queue: q }, compensate: undo }
  b: { needs: [a], task: { queue: q } }
  undo: { task: { queue: q }, compensation: true }
"#,
        json!({}),
    );
    sim.finish("a", None, Ok(json!(1)));
    sim.now = sim.now.plus_ms(1000);
    sim.advance();
    assert_eq!(sim.state.error.as_deref(), Some("the run timed out"));
    assert_eq!(sim.open_steps(), ["undo"]);
    sim.finish("undo", None, Ok(json!(null)));
    assert_eq!(sim.status(), RunStatus::Compensated);
}

#[test]
fn cancel_stops_work_and_ends_the_run() {
    let mut sim = provision();
    let now = sim.now;
    sim.with(|m| m.cancel(now, false, None).expect("running"));
    assert_eq!(sim.status(), RunStatus::Cancelled);
    assert_eq!(sim.cancelled.len(), 1);
    assert_eq!(sim.step("create_tenant").state, StepStatus::Cancelled);
    sim.with(|m| {
        assert_eq!(
            m.cancel(now, true, None).unwrap_err().code,
            ErrorCode::InvalidState
        );
        assert_eq!(
            m.signal("x", json!(1)).unwrap_err().code,
            ErrorCode::InvalidState
        );
    });
}

#[test]
fn cancel_with_compensate_undoes_completed_steps_then_ends_cancelled() {
    let mut sim = provision();
    sim.finish("create_tenant", None, Ok(json!({"id": "t1"})));
    sim.finish("charge", None, Ok(json!({"status": "paid", "id": "c1"})));
    assert_eq!(sim.open_steps(), ["welcome"]);
    let now = sim.now;
    sim.with(|m| m.cancel(now, true, None).expect("running"));
    assert_eq!(sim.step("welcome").state, StepStatus::Cancelled);
    assert_eq!(sim.cancelled.len(), 1, "welcome's job was cancelled");
    assert_eq!(sim.status(), RunStatus::Running, "compensating first");
    assert_eq!(sim.open_steps(), ["refund"]);
    sim.finish("refund", None, Ok(json!(null)));
    assert_eq!(sim.open_steps(), ["delete_tenant"]);
    sim.with(|m| {
        assert_eq!(
            m.cancel(now, true, None).unwrap_err().code,
            ErrorCode::InvalidState,
            "a compensating run is not compensated twice"
        );
    });
    sim.finish("delete_tenant", None, Ok(json!(null)));
    assert_eq!(sim.status(), RunStatus::Cancelled);
    assert_eq!(sim.state.error.as_deref(), Some("cancelled"));
    assert_eq!(sim.step("wait_activation").state, StepStatus::Pending);
    assert_eq!(sim.finished, 1);
}

#[test]
fn cancel_with_compensate_and_nothing_completed_ends_at_once() {
    let mut sim = provision();
    let now = sim.now;
    sim.with(|m| m.cancel(now, true, None).expect("running"));
    assert_eq!(sim.status(), RunStatus::Cancelled);
    assert_eq!(sim.step("create_tenant").state, StepStatus::Cancelled);
    assert_eq!(sim.finished, 1);
}

#[test]
fn for_each_fans_out_with_a_bound_and_collects_outputs_in_order() {
    let mut sim = Sim::new(
        r#"
name: w
steps:
  each:
    for_each:
      items: "${{ input.users }}"
      max_parallel: 2
      step: { task: { queue: mail, input: { to: "${{ item }}", n: "${{ index }}" } } }
"#,
        json!({"users": ["a", "b", "c"]}),
    );
    assert_eq!(sim.open_steps(), ["each[0]", "each[1]"]);
    sim.finish("each", Some(1), Ok(json!("B")));
    assert_eq!(sim.open_steps(), ["each[0]", "each[2]"]);
    match &sim.open[1].3 {
        Work::Task { payload, .. } => assert_eq!(payload, &json!({"to": "c", "n": 2})),
        other => panic!("{other:?}"),
    }
    sim.finish("each", Some(2), Ok(json!("C")));
    sim.finish("each", Some(0), Ok(json!("A")));
    assert_eq!(sim.step("each").output, Some(json!(["A", "B", "C"])));
    assert_eq!(sim.status(), RunStatus::Succeeded);
}

#[test]
fn for_each_over_nothing_succeeds_and_a_failed_item_fails_the_step() {
    let empty = Sim::new(
        "name: w\nsteps:\n  each: { for_each: { items: [], step: { task: { queue: q } } } }\n",
        json!({}),
    );
    assert_eq!(empty.step("each").output, Some(json!([])));
    assert_eq!(empty.status(), RunStatus::Succeeded);

    let mut sim = Sim::new(
        "name: w\nsteps:\n  each: { for_each: { items: [1, 2], step: { task: { queue: q } } } }\n",
        json!({}),
    );
    sim.finish("each", Some(0), Err("nope"));
    assert_eq!(sim.status(), RunStatus::Failed);
    assert_eq!(
        sim.step("each").error.as_deref(),
        Some("item 0 failed: nope")
    );
    assert_eq!(sim.cancelled.len(), 1, "the other item's job is cancelled");
}

#[test]
fn child_runs_are_retried_with_new_keys() {
    let mut sim = Sim::new(
        r#"
name: w
steps:
  child: { workflow: { name: other, input: { x: "${{ input.x }}" } }, retry: { max_attempts: 2 } }
"#,
        json!({"x": 5}),
    );
    match sim.work("child") {
        Work::Child {
            workflow, input, ..
        } => {
            assert_eq!(workflow, "other");
            assert_eq!(input, json!({"x": 5}));
        }
        other => panic!("{other:?}"),
    }
    sim.finish("child", None, Err("child failed"));
    assert_eq!(sim.step("child").attempts, 2);
    assert_eq!(sim.open_steps(), ["child"]);
    assert_ne!(sim.keys[0], sim.keys[1]);
    sim.finish("child", None, Ok(json!({"done": true})));
    assert_eq!(sim.status(), RunStatus::Succeeded);
}

#[test]
fn template_errors_fail_the_step_with_their_message() {
    let mut sim = Sim::new(
        "name: w\nsteps:\n  a: { task: { queue: q, input: \"${{ input.n / 0 }}\" } }\n",
        json!({"n": 1}),
    );
    assert_eq!(sim.status(), RunStatus::Failed);
    assert!(
        sim.step("a")
            .error
            .as_deref()
            .unwrap()
            .starts_with("task.input")
    );
    sim.advance();
}

#[test]
fn the_run_output_template_shapes_the_result() {
    let mut sim = Sim::new(
        "name: w\noutput: { total: \"${{ steps.a.output.n + 1 }}\" }\nsteps:\n  a: { task: { queue: q } }\n",
        json!({}),
    );
    sim.finish("a", None, Ok(json!({"n": 41})));
    assert_eq!(sim.state.output, Some(json!({"total": 42})));
}

#[test]
fn progress_updates_attempts_without_finishing() {
    let mut sim = provision();
    let now = sim.now;
    sim.with(|m| {
        m.observe(
            "create_tenant",
            None,
            Outcome::Progress { attempts: 3 },
            now,
        );
    });
    assert_eq!(sim.step("create_tenant").attempts, 3);
    assert_eq!(sim.step("create_tenant").state, StepStatus::Running);
}

#[test]
fn a_wait_for_event_takes_the_first_matching_event_published_after_it_started() {
    let yaml = r#"
name: w
steps:
  paid:
    wait_for: { event: { topic: orders, if: "event.data.order == input.order" }, timeout_ms: 60000 }
"#;
    let mut sim = Sim::new(yaml, json!({"order": 7}));
    assert_eq!(sim.step("paid").state, StepStatus::Waiting);
    assert_eq!(sim.step("paid").event_after, Some(0));
    let event = |seq: u64, order: i64| json!({"seq": seq, "data": {"order": order}});
    let now = sim.now;
    assert!(!sim.with(|m| m.event("orders", 1, &event(1, 3), now)));
    assert!(!sim.with(|m| m.event("invoices", 2, &event(2, 7), now)));
    assert_eq!(sim.status(), RunStatus::Running);
    assert!(sim.with(|m| m.event("orders", 3, &event(3, 7), now)));
    assert_eq!(sim.step("paid").output, Some(event(3, 7)));
    assert_eq!(sim.status(), RunStatus::Succeeded);

    // Events at or below the head when the step started do not count, and
    // the wait times out like a signal's.
    let def = def(yaml);
    let input = json!({"order": 7});
    let meta = RunMeta {
        id: RunId::from_bytes([9; 16]),
        workflow: "w",
        version: 1,
        input: &input,
    };
    let start = Timestamp::from_millis(1_000_000);
    let heads = std::collections::BTreeMap::from([("orders".to_owned(), 10)]);
    let mut m = Machine::new(&def, meta, new_run(&def, start, None)).with_event_heads(heads);
    m.advance(start);
    assert_eq!(m.state().steps["paid"].event_after, Some(10));
    assert!(!m.event("orders", 10, &event(10, 7), start));
    m.advance(start.plus_ms(60_000));
    let rec = &m.state().steps["paid"];
    assert_eq!(rec.state, StepStatus::Failed);
    assert!(
        rec.error
            .as_deref()
            .is_some_and(|e| e.contains("timed out waiting for an event"))
    );
}

#[test]
fn a_wait_for_names_a_signal_or_an_event_but_not_both() {
    let bad = |yaml: &str| {
        let value = parse_source(yaml, Format::Yaml).expect("parses");
        Definition::from_value(&value).unwrap_err()
    };
    let both = bad("name: w\nsteps:\n  s: { wait_for: { signal: go, event: { topic: t } } }\n");
    assert!(
        both.iter().any(|p| p.message.contains("exactly one")),
        "{both:?}"
    );
    let topic = bad("name: w\nsteps:\n  s: { wait_for: { event: { topic: 'a b' } } }\n");
    assert!(
        topic.iter().any(|p| p.path.ends_with("event.topic")),
        "{topic:?}"
    );
    let root = bad("name: w\nsteps:\n  s: { wait_for: { event: { topic: t, if: 'nope.x' } } }\n");
    assert!(
        root.iter().any(|p| p.message.contains("unknown name")),
        "{root:?}"
    );
}
