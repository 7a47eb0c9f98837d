//! Every parser of what a client sends, fed what proptest makes up: none
//! panics, and the ones with a written form read back what they wrote.
//! Workflow definitions (YAML and JSON, as text and as JSON values),
//! expressions and templates, cron specs and time zones, `traceparent`,
//! tags, RFC 3339 times and subscription cursors.
//!
//! A fixed budget here (proptest's 256 cases a property); the long mode is
//! `PROPTEST_CASES=100000 cargo nextest run -p keel-core --test untrusted_input`.
//! A failure's input is kept by proptest and belongs in a regression case below.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

use keel_core::schedule::ScheduleSpec;
use keel_core::workflow::{Definition, Format, definition, expr};
use keel_core::{Timestamp, TraceParent, job, subscription};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Arbitrary JSON, a few levels deep, with the keys a definition uses.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
        "\\$\\{\\{ [a-z._]{0,12} \\}\\}".prop_map(Value::String),
    ];
    let keys = prop_oneof![
        Just("name".to_owned()),
        Just("steps".to_owned()),
        Just("task".to_owned()),
        Just("queue".to_owned()),
        Just("needs".to_owned()),
        Just("if".to_owned()),
        Just("http".to_owned()),
        Just("url".to_owned()),
        Just("retry".to_owned()),
        Just("compensate".to_owned()),
        Just("wait_for".to_owned()),
        Just("sleep_ms".to_owned()),
        Just("for_each".to_owned()),
        Just("workflow".to_owned()),
        "[a-z_]{1,8}",
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Text near an expression: operators, filters, brackets and quotes.
fn expression() -> impl Strategy<Value = String> {
    "[a-z0-9_.()\\[\\]'\" |+*/%<>=!~-]{0,40}"
}

proptest! {
    #[test]
    fn definitions_from_any_text_are_parsed_or_refused(text in ".{0,400}") {
        for format in [Format::Yaml, Format::Json] {
            if let Ok(value) = definition::parse_source(&text, format) {
                let _ = Definition::from_value(&value);
            }
        }
    }

    #[test]
    fn definitions_from_any_json_are_checked_or_refused(value in json_value()) {
        let _ = Definition::from_value(&value);
        let _ = Definition::from_value(&json!({"name": "w", "steps": value}));
    }

    #[test]
    fn expressions_are_checked_and_evaluated_or_refused(text in expression(), context in json_value()) {
        let _ = expr::check(&text);
        let _ = expr::eval(&text, &json!({"input": context, "steps": {}}));
        let _ = expr::eval_condition(&text, &json!({"input": context}));
        let _ = expr::render_text(&format!("a ${{{{ {text} }}}} b"), &json!({"input": context}));
        let _ = expr::render(&json!({"x": format!("${{{{ {text} }}}}")}), &json!({"input": context}));
    }

    #[test]
    fn templates_with_any_text_render_or_refuse(text in ".{0,80}") {
        let _ = expr::pieces(&text);
        let _ = expr::render_text(&text, &json!({}));
    }

    #[test]
    fn cron_specs_and_zones_are_read_or_refused(
        cron in "[0-9*/,LW#?A-Z -]{0,40}",
        zone in prop_oneof![Just("UTC".to_owned()), Just("Europe/London".to_owned()), "[A-Za-z/_+-]{0,20}"],
        after in 0i64..4_102_444_800_000,
    ) {
        let spec = json!({"cron": cron, "timezone": zone, "target": {"queue": "q", "job": {"payload": 1}}});
        if let Ok(spec) = serde_json::from_value::<ScheduleSpec>(spec)
            && let Ok(cadence) = spec.check()
            && let Some(next) = cadence.next_after(Timestamp::from_millis(after))
        {
            prop_assert!(next.as_millis() > after);
            let _ = cadence.local(next);
        }
    }

    #[test]
    fn traceparents_are_read_exactly_or_refused(text in "[0-9a-f-]{0,60}") {
        if let Some(parsed) = TraceParent::parse(&text) {
            prop_assert_eq!(parsed.as_str(), text.as_str());
        }
    }

    #[test]
    fn well_formed_traceparents_read_back(
        trace in "[0-9a-f]{32}", parent in "[0-9a-f]{16}", flags in any::<u8>(),
    ) {
        let text = format!("00-{trace}-{parent}-{flags:02x}");
        let valid = trace != "0".repeat(32) && parent != "0".repeat(16);
        let parsed = TraceParent::parse(&text);
        prop_assert_eq!(parsed.is_some(), valid, "{}", text);
        if let Some(parsed) = parsed {
            prop_assert_eq!(parsed.trace_id(), trace.as_str());
            prop_assert_eq!(parsed.parent_id(), parent.as_str());
            prop_assert_eq!(parsed.flags(), flags);
        }
    }

    #[test]
    fn tags_are_split_or_refused(text in ".{0,40}") {
        if let Ok((key, value)) = job::parse_tag(&text) {
            prop_assert!(!key.is_empty());
            prop_assert!(text.contains(&key) && text.contains(&value));
        }
    }

    #[test]
    fn rfc3339_times_are_read_or_refused(text in "[0-9TZ:.+-]{0,32}") {
        let _ = Timestamp::parse_rfc3339(&text);
    }

    #[test]
    fn times_read_back_what_they_wrote(ms in 0i64..253_402_300_799_000) {
        let t = Timestamp::from_millis(ms);
        prop_assert_eq!(Timestamp::parse_rfc3339(&t.to_rfc3339()), Some(t));
    }

    #[test]
    fn cursors_read_back_or_refuse(text in ".{0,40}", token in any::<u64>(), last in any::<u64>()) {
        let _ = subscription::cursor_last(&text);
        prop_assert_eq!(subscription::cursor_last(&subscription::cursor(token, last)), Some(last));
    }
}
