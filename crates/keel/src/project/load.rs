//! Reading a project directory: `keel.toml`, the definition files under
//! `resources/` (TOML, YAML or JSON, each kind's resources under its
//! section, by name) and the workflow files under `workflows/` (one
//! definition each). Every problem is collected with its file and line, so
//! one run of `keel validate` shows them all.

use std::fmt;
use std::path::{Path, PathBuf};

use keel_core::Namespace;
use keel_core::project::{Kind, Resource};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The project file.
pub(crate) const MANIFEST: &str = "keel.toml";
/// Where definition files live, at any depth.
pub(crate) const RESOURCES: &str = "resources";
/// Where workflow definitions live, one a file.
pub(crate) const WORKFLOWS: &str = "workflows";
/// Largest file read.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// `keel.toml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    name: String,
    #[serde(default = "default_namespace")]
    namespace: String,
    #[serde(default)]
    server: Option<String>,
}

fn default_namespace() -> String {
    "default".to_owned()
}

/// A project as read from its directory.
pub(crate) struct Project {
    pub name: String,
    /// Where definitions go unless their file says otherwise.
    pub namespace: Namespace,
    pub server: Option<String>,
    pub resources: Vec<Defined>,
}

/// A definition and where it is written.
pub(crate) struct Defined {
    pub resource: Resource,
    pub at: Place,
}

/// A file and a line (1-based; 0 when unknown).
#[derive(Clone, Debug)]
pub(crate) struct Place {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}", self.file, self.line)
        }
    }
}

/// One thing wrong, where.
#[derive(Debug)]
pub(crate) struct Problem {
    pub at: Place,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

fn problem(file: &str, line: usize, message: impl Into<String>) -> Problem {
    Problem {
        at: Place {
            file: file.to_owned(),
            line,
        },
        message: message.into(),
    }
}

/// Reads the project in `dir`: the project, or every problem found.
pub(crate) fn load(dir: &Path) -> Result<Project, Vec<Problem>> {
    let manifest_path = dir.join(MANIFEST);
    let text = read(&manifest_path, MANIFEST).map_err(|p| vec![p])?;
    let manifest: Manifest = toml::from_str(&text).map_err(|e| {
        let line = e.span().map_or(0, |s| line_of(&text, s.start));
        vec![problem(MANIFEST, line, e.message().to_owned())]
    })?;
    let mut problems = Vec::new();
    if let Err(e) = keel_core::ProjectName::new(&manifest.name) {
        problems.push(problem(MANIFEST, 1, format!("name: {}", e.message)));
    }
    let namespace = match Namespace::new(&manifest.namespace) {
        Ok(ns) => ns,
        Err(e) => {
            problems.push(problem(MANIFEST, 1, format!("namespace: {}", e.message)));
            return Err(problems);
        }
    };
    let mut resources = Vec::new();
    for path in files(&dir.join(RESOURCES), &["toml", "yaml", "yml", "json"]) {
        let shown = relative(dir, &path);
        match parse_file(&path, &shown) {
            Ok((value, text)) => {
                let file = File {
                    dir,
                    text: &text,
                    shown: &shown,
                };
                definitions(&value, &file, &namespace, &mut resources, &mut problems);
            }
            Err(p) => problems.push(p),
        }
    }
    for path in files(&dir.join(WORKFLOWS), &["yaml", "yml", "json"]) {
        let shown = relative(dir, &path);
        match parse_file(&path, &shown) {
            Ok((value, _)) => {
                let name = value
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
                    .unwrap_or_default();
                resources.push(Defined {
                    resource: Resource {
                        kind: Kind::Workflow,
                        namespace: namespace.clone(),
                        name,
                        spec: value,
                    },
                    at: Place {
                        file: shown,
                        line: 1,
                    },
                });
            }
            Err(p) => problems.push(p),
        }
    }
    if problems.is_empty() {
        Ok(Project {
            name: manifest.name,
            namespace,
            server: manifest.server,
            resources,
        })
    } else {
        Err(problems)
    }
}

/// A definition file being read: the project's directory, its text and
/// the name it is shown by.
struct File<'a> {
    dir: &'a Path,
    text: &'a str,
    shown: &'a str,
}

/// The resources of one definition file: an optional `namespace` (the
/// project's when absent) and each kind's section.
fn definitions(
    value: &Value,
    file: &File<'_>,
    project_namespace: &Namespace,
    out: &mut Vec<Defined>,
    problems: &mut Vec<Problem>,
) {
    let (text, shown) = (file.text, file.shown);
    let Some(top) = value.as_object() else {
        problems.push(problem(
            shown,
            1,
            "a definition file holds a table of sections",
        ));
        return;
    };
    let namespace = match top.get("namespace") {
        None => project_namespace.clone(),
        Some(v) => match v.as_str().map(Namespace::new) {
            Some(Ok(ns)) => ns,
            _ => {
                problems.push(problem(
                    shown,
                    line_of_key(text, "namespace", 0),
                    "namespace: not a valid namespace name",
                ));
                return;
            }
        },
    };
    for (section, entries) in top {
        if section == "namespace" {
            continue;
        }
        let section_line = line_of_key(text, section, 0);
        let Some(kind) = Kind::from_section(section) else {
            let known: Vec<&str> = Kind::ALL.iter().map(|k| k.section()).collect();
            problems.push(problem(
                shown,
                section_line,
                format!(
                    "unknown section {section:?} (expected namespace or one of: {})",
                    known.join(", ")
                ),
            ));
            continue;
        };
        let Some(entries) = entries.as_object() else {
            problems.push(problem(
                shown,
                section_line,
                format!("{section}: a table of resources by name"),
            ));
            continue;
        };
        for (name, spec) in entries {
            let line = line_of_key(text, name, section_line);
            let spec = if kind == Kind::Handler {
                match with_code(file.dir, spec) {
                    Ok(spec) => spec,
                    Err(message) => {
                        problems.push(problem(shown, line, format!("handler {name}: {message}")));
                        continue;
                    }
                }
            } else {
                spec.clone()
            };
            out.push(Defined {
                resource: Resource {
                    kind,
                    namespace: namespace.clone(),
                    name: name.clone(),
                    spec,
                },
                at: Place {
                    file: shown.to_owned(),
                    line,
                },
            });
        }
    }
}

/// A handler's definition with its `code` file (relative to the project's
/// directory) read in: `.js` or `.mjs` as `js`, `.wasm` as `wasm` in base64.
fn with_code(dir: &Path, spec: &Value) -> Result<Value, String> {
    use base64::Engine as _;
    let mut spec = spec.clone();
    let Some(object) = spec.as_object_mut() else {
        return Err("a table of settings with `code`".to_owned());
    };
    let Some(code) = object.remove("code") else {
        return Ok(spec);
    };
    let path = code
        .as_str()
        .ok_or("code: the path of a .js or .wasm file")?
        .to_owned();
    let bytes =
        std::fs::read(dir.join(&path)).map_err(|e| format!("code: cannot read {path}: {e}"))?;
    let (key, value) = match Path::new(&path).extension().and_then(|e| e.to_str()) {
        Some("js" | "mjs") => (
            "js",
            String::from_utf8(bytes).map_err(|_| format!("code: {path} is not UTF-8"))?,
        ),
        Some("wasm") => (
            "wasm",
            base64::engine::general_purpose::STANDARD.encode(bytes),
        ),
        _ => return Err(format!("code: {path} is neither .js nor .wasm")),
    };
    object.insert(key.to_owned(), Value::String(value));
    Ok(spec)
}

/// A file's content as JSON, by its extension, and its text.
pub(crate) fn parse_file(path: &Path, shown: &str) -> Result<(Value, String), Problem> {
    let text = read(path, shown)?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let value = match ext {
        "toml" => toml::from_str::<Value>(&text).map_err(|e| {
            let line = e.span().map_or(0, |s| line_of(&text, s.start));
            problem(shown, line, e.message().to_owned())
        })?,
        "json" => serde_json::from_str::<Unique>(&text)
            .and_then(|_| serde_json::from_str::<Value>(&text))
            .map_err(|e| problem(shown, e.line(), e.to_string()))?,
        // Through YAML's own value first: it refuses a key written twice.
        _ => serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text)
            .and_then(serde_yaml_ng::from_value::<Value>)
            .map_err(|e| {
                let line = e.location().map_or(0, |l| l.line());
                problem(shown, line, e.to_string())
            })?,
    };
    Ok((empty_as_table(value), text))
}

/// JSON read only to refuse an object with a key written twice (which
/// `serde_json`'s own value would keep the last of, silently).
struct Unique;

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueVisitor {
    type Value = Unique;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_unit<E>(self) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
        while seq.next_element::<Unique>()?.is_some() {}
        Ok(Unique)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
            }
            map.next_value::<Unique>()?;
        }
        Ok(Unique)
    }
}

/// An empty YAML file is `null`: no sections.
fn empty_as_table(value: Value) -> Value {
    match value {
        Value::Null => Value::Object(Map::new()),
        other => other,
    }
}

fn read(path: &Path, shown: &str) -> Result<String, Problem> {
    let meta =
        std::fs::metadata(path).map_err(|e| problem(shown, 0, format!("cannot read: {e}")))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(problem(
            shown,
            0,
            format!("larger than {MAX_FILE_BYTES} bytes"),
        ));
    }
    std::fs::read_to_string(path).map_err(|e| problem(shown, 0, format!("cannot read: {e}")))
}

/// Files under `dir` with one of `extensions`, in name order; hidden files
/// and directories are skipped.
pub(crate) fn files(dir: &Path, extensions: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(here) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&here) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if hidden {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| extensions.contains(&e))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

pub(crate) fn relative(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |t| t.matches('\n').count() + 1)
}

/// The first line at or after `from` where `key` is written as a key: a
/// TOML header or dotted name (`[topics.orders]`, `orders =`), a YAML key
/// (`orders:`) or a JSON member (`"orders":`). 0 when not found.
fn line_of_key(text: &str, key: &str, from: usize) -> usize {
    let quoted = format!("\"{key}\"");
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, line)| {
            let line = line.trim_start().trim_start_matches('[').trim_start();
            let rest = line
                .strip_prefix(&quoted)
                .or_else(|| line.strip_prefix(key))
                .or_else(|| {
                    line.split_once('.')
                        .and_then(|(_, after)| after.strip_prefix(key))
                });
            rest.is_some_and(|r| {
                let r = r.trim_start();
                r.starts_with(':') || r.starts_with('=') || r.starts_with(']') || r.starts_with('.')
            })
        })
        .map_or(0, |(i, _)| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_key_written_twice_is_refused_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        std::fs::write(&path, "{\n  \"topics\": {\"a\": {}},\n  \"topics\": {}\n}").unwrap();
        let problem = parse_file(&path, "a.json").unwrap_err();
        assert_eq!(problem.at.line, 3, "{problem}");
        assert!(
            problem.message.contains("duplicate key \"topics\""),
            "{problem}"
        );
        std::fs::write(&path, "{\"topics\": {\"a\": [1, {\"b\": null}]}}").unwrap();
        assert!(parse_file(&path, "a.json").is_ok());
    }

    #[test]
    fn a_key_is_found_on_its_line_in_each_format() {
        let toml = "namespace = \"x\"\n[topics.orders]\nretention_ms = 1\n";
        assert_eq!(line_of_key(toml, "orders", 0), 2);
        let yaml = "topics:\n  orders:\n    retention_ms: 1\nqueues:\n  orders: {}\n";
        assert_eq!(line_of_key(yaml, "orders", 0), 2);
        assert_eq!(
            line_of_key(yaml, "orders", line_of_key(yaml, "queues", 0)),
            5
        );
        let json = "{\n  \"topics\": {\n    \"orders\": {}\n  }\n}";
        assert_eq!(line_of_key(json, "orders", 0), 3);
        assert_eq!(line_of_key(json, "missing", 0), 0);
    }
}
