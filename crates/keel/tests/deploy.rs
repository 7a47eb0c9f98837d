//! The monitoring files in `deploy/` against the metrics Keel has: every
//! metric an alert rule or a dashboard panel names is one the engine
//! records (`keel-engine/src/metrics.rs`), and what a live server exposes
//! follows Prometheus's conventions (base units, `_total` counters, no ids
//! as labels). `promtool check rules` and `promtool test rules` run in
//! `scripts/test`.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed check")]

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use common::Server;
use serde_json::json;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `keel_...` word in a text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("keel_") {
        let word: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + word.len()..];
        names.insert(word);
    }
    names
}

/// A histogram's series are its name with `_bucket`, `_sum` or `_count`.
fn base_name(series: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| series.strip_suffix(suffix))
        .unwrap_or(series)
}

/// The name of every metric the code records: the first `"keel_..."`
/// string after each `counter!(`, `gauge!(` and `histogram!(` in the
/// crates that record them.
fn recorded_metrics() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut dirs = vec![
        repo_root().join("crates/keel-engine/src"),
        repo_root().join("crates/keel-store-sqlite/src"),
        repo_root().join("crates/keel-store-postgres/src"),
    ];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for mac in ["counter!(", "gauge!(", "histogram!("] {
                for (at, _) in text.match_indices(mac) {
                    let after = &text[at + mac.len()..];
                    let quoted = after.trim_start().strip_prefix('"').unwrap_or_default();
                    if let Some(name) = metric_names(quoted.split('"').next().unwrap_or_default())
                        .into_iter()
                        .next()
                    {
                        names.insert(name);
                    }
                }
            }
        }
    }
    names
}

#[test]
fn every_metric_the_deploy_files_name_is_one_keel_records() {
    let recorded = recorded_metrics();
    assert!(
        recorded.contains("keel_jobs_enqueued_total")
            && recorded.contains("keel_store_commit_seconds")
    );
    let mut named = 0;
    for file in [
        "deploy/prometheus/keel-alerts.yml",
        "deploy/grafana/keel-dashboard.json",
    ] {
        let text = std::fs::read_to_string(repo_root().join(file)).unwrap();
        if file.ends_with(".json") {
            let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(!dashboard["panels"].as_array().unwrap().is_empty());
        }
        for series in metric_names(&text) {
            named += 1;
            assert!(
                recorded.contains(base_name(&series)),
                "{file} names {series}, which Keel does not record"
            );
        }
    }
    assert!(named >= 15, "only {named} metrics named");
}

#[tokio::test]
async fn the_exposed_metrics_follow_prometheus_conventions() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir, &[]).await;
    s.enqueue("q", json!({"payload": {}, "max_attempts": 1}))
        .await;
    let leased = s.lease("q", json!({"max_jobs": 1, "wait_ms": 0})).await;
    let (status, _) = s
        .post(
            &format!(
                "/namespaces/default/jobs/{}/fail",
                leased[0]["id"].as_str().unwrap()
            ),
            json!({"lease_token": leased[0]["lease_token"], "error": "boom"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .post(
            "/namespaces/default/topics/t/events",
            json!({"data": {"n": 1}}),
        )
        .await;
    assert_eq!(status, 201);
    let text = reqwest::get(format!("{}/metrics", s.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut types = 0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            if !name.starts_with("keel_") {
                continue;
            }
            types += 1;
            match kind {
                "counter" => assert!(name.ends_with("_total"), "counter {name}"),
                "histogram" | "summary" => assert!(
                    name.ends_with("_seconds") || name.ends_with("_size"),
                    "{kind} {name} is in no base unit"
                ),
                "gauge" => assert!(!name.ends_with("_total"), "gauge {name}"),
                other => panic!("{name}: type {other}"),
            }
            assert!(!name.contains("_ms") && !name.contains("milli"), "{name}");
        } else if line.starts_with("keel_") {
            let labels = line
                .split_once('{')
                .and_then(|(_, l)| l.split_once('}'))
                .map_or("", |(l, _)| l);
            for pair in labels.split(',').filter(|p| !p.is_empty()) {
                let key = pair.split_once('=').unwrap().0;
                assert!(
                    !["id", "job_id", "run_id", "event_id", "token", "worker_id"].contains(&key),
                    "an id as a label: {line}"
                );
            }
        }
    }
    assert!(types >= 5, "only {types} keel metrics exposed:\n{text}");
}
