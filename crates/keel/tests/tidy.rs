//! What ARCHITECTURE.md says of the code, held by a test (rust-analyzer's
//! `tidy.rs` habit): every source file says why it exists (`//!`), no
//! non-test file outgrows what one reader holds (600 lines), the HTTP layer
//! reaches no store, and no engine service or background task holds the
//! whole engine. Reads the source tree; runs no binary.

#![allow(clippy::unwrap_used, reason = "a test: a panic is a failed check")]

use std::path::{Path, PathBuf};

/// The most lines a file that is not a test may have.
const MAX_LINES: usize = 600;

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The part of a source file that is not its `#[cfg(test)]` module.
fn non_test(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

/// Test code: the integration tests, `tests.rs` modules and the store
/// conformance suite (a test suite that ships as a feature).
fn is_test(path: &Path) -> bool {
    let text = path.to_string_lossy();
    text.contains("/tests/") || text.contains("/conformance/") || text.ends_with("/tests.rs")
}

#[test]
fn every_source_file_opens_with_its_reason() {
    let missing: Vec<String> = rust_files(&crates_dir())
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains("/target/"))
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(missing.is_empty(), "no `//!` module doc: {missing:#?}");
}

#[test]
fn no_file_outside_the_tests_grows_past_600_lines() {
    let long: Vec<String> = rust_files(&crates_dir())
        .into_iter()
        .filter(|p| !is_test(p))
        .filter_map(|p| {
            let lines = std::fs::read_to_string(&p).unwrap().lines().count();
            (lines > MAX_LINES).then(|| format!("{} ({lines} lines)", p.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these along their domain: {long:#?}");
}

/// The lines of the non-test code under `crates/{dir}` (its files but
/// `skip`, relative to it) for which `bad` holds, comments aside.
fn lines_where(dir: &str, skip: &[&str], bad: impl Fn(&str) -> bool) -> Vec<String> {
    let root = crates_dir().join(dir);
    let mut found = Vec::new();
    for path in rust_files(&root) {
        let relative = path
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if skip.contains(&relative.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (n, line) in non_test(&text).lines().enumerate() {
            if bad(line.split("//").next().unwrap_or("")) {
                found.push(format!("{dir}/{relative}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn the_http_layer_reaches_no_store() {
    let found = lines_where("keel-server/src", &[], |code| {
        code.contains(".store.")
            || code.trim_end().ends_with(".store")
            || code.contains(".store()")
            || code.contains("dyn Store")
            || code.contains("keel_store::Store")
    });
    assert!(
        found.is_empty(),
        "keel-server calls the engine's services, never the store: {found:#?}"
    );
}

#[test]
fn only_retention_holds_the_whole_store_in_the_engine() {
    // Every service holds its own domain's store trait; retention prunes
    // every domain's history, and the engine assembles the services.
    let skip = ["engine.rs", "services/retention.rs"];
    let found = lines_where("keel-engine/src", &skip, |code| {
        code.contains("dyn Store>") || code.contains("&dyn Store")
    });
    assert!(found.is_empty(), "hold a domain's store trait: {found:#?}");
}

#[test]
fn no_engine_service_holds_the_whole_engine() {
    let assembles = ["engine.rs", "lib.rs", "services/mod.rs"];
    let found = lines_where("keel-engine/src", &assembles, |code| {
        code.contains("Arc<Engine>") || code.contains("&Engine") || code.contains("crate::Engine")
    });
    assert!(
        found.is_empty(),
        "services hold their store trait and the services they call: {found:#?}"
    );
}
