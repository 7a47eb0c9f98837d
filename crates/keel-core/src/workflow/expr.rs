//! The one expression language of workflows: minijinja expressions, sandboxed
//! and with a fuel budget, for `if` conditions and for `${{ }}` input mapping.
//!
//! A string that is exactly one `${{ expr }}` keeps the JSON type of the value
//! (`"${{ input.count }}"` is a number); a string that mixes text and
//! expressions is rendered as text. Expressions see `input`, `steps.<name>`
//! (`output`, `state`, `attempts`, `error`), `run` (`id`, `workflow`,
//! `version`) and, inside `for_each`, `item` and `index`.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior, Value as JinjaValue};
use serde_json::Value;

/// Instructions one evaluation may run before it is stopped.
const FUEL: u64 = 20_000;

const OPEN: &str = "${{";
const CLOSE: &str = "}}";

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_fuel(Some(FUEL));
        // `steps.x.output.missing.deeper` is undefined, not an error: outputs
        // are whatever workers return.
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env
    })
}

/// Names an expression may start from, besides `item`/`index` in a fan-out.
pub const ROOTS: [&str; 3] = ["input", "steps", "run"];
pub const ITEM_ROOTS: [&str; 2] = ["item", "index"];

/// What an expression refers to, for validation.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct References {
    /// Top-level names (`input`, `steps`, ...).
    pub roots: BTreeSet<String>,
    /// Step names reached through `steps.<name>`.
    pub steps: BTreeSet<String>,
}

/// Parses an expression and lists what it refers to; the error is the parser's.
pub fn check(expr: &str) -> Result<References, String> {
    let compiled = env().compile_expression(expr).map_err(|e| describe(&e))?;
    let mut refs = References::default();
    for var in compiled.undeclared_variables(true) {
        let mut parts = var.split('.');
        let root = parts.next().unwrap_or_default().to_owned();
        if root == "steps"
            && let Some(step) = parts.next()
        {
            refs.steps.insert(step.to_owned());
        }
        refs.roots.insert(root);
    }
    Ok(refs)
}

/// Evaluates an expression against a context (a JSON object of roots).
pub fn eval(expr: &str, context: &Value) -> Result<Value, String> {
    if let Some(value) = plain_path(expr, context) {
        return Ok(value);
    }
    let compiled = env().compile_expression(expr).map_err(|e| describe(&e))?;
    let value = compiled
        .eval(JinjaValue::from(Serde(context)))
        .map_err(|e| describe(&e))?;
    to_json(&value)
}

/// Evaluates an `if` condition with Jinja truthiness.
pub fn eval_condition(expr: &str, context: &Value) -> Result<bool, String> {
    let compiled = env().compile_expression(expr).map_err(|e| describe(&e))?;
    let value = compiled
        .eval(JinjaValue::from(Serde(context)))
        .map_err(|e| describe(&e))?;
    Ok(value.is_true())
}

/// Words that minijinja reads as literals or operators, never as names.
const KEYWORDS: [&str; 13] = [
    "true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is", "if", "else",
];

/// The value of a plain path (`event.data.t0`, `steps.a.output`) read
/// straight from the context, as minijinja would answer it (a missing key,
/// or a key of something that is not an object, is undefined: null), without
/// compiling the expression: most templates hold nothing else, and a
/// subscription renders one per event. `None` for anything else.
fn plain_path(expr: &str, context: &Value) -> Option<Value> {
    let mut value = Some(context);
    for name in expr.split('.') {
        let mut chars = name.chars();
        let identifier = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !identifier || KEYWORDS.contains(&name) {
            return None;
        }
        value = value.and_then(Value::as_object).and_then(|o| o.get(name));
    }
    Some(value.cloned().unwrap_or(Value::Null))
}

fn to_json(value: &JinjaValue) -> Result<Value, String> {
    if value.is_undefined() || value.is_none() {
        return Ok(Value::Null);
    }
    serde_json::to_value(value).map_err(|e| format!("result is not JSON: {e}"))
}

fn describe(error: &minijinja::Error) -> String {
    match error.detail() {
        Some(detail) => format!("{}: {detail}", error.kind()),
        None => error.kind().to_string(),
    }
}

/// The `${{ }}` pieces of a template string, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    Text(&'a str),
    Expr(&'a str),
}

/// Splits a string into text and `${{ expr }}` pieces; an unclosed `${{` is an error.
pub fn pieces(text: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        if start > 0 {
            out.push(Piece::Text(&rest[..start]));
        }
        let after = &rest[start + OPEN.len()..];
        let end = after
            .find(CLOSE)
            .ok_or_else(|| format!("unclosed {OPEN} in {text:?}"))?;
        out.push(Piece::Expr(after[..end].trim()));
        rest = &after[end + CLOSE.len()..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

/// Every expression inside a JSON value's strings (keys included), for validation.
pub fn expressions_in(value: &Value, out: &mut Vec<String>) -> Result<(), String> {
    match value {
        Value::String(s) => collect(s, out),
        Value::Array(items) => items.iter().try_for_each(|v| expressions_in(v, out)),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            collect(k, out)?;
            expressions_in(v, out)
        }),
        _ => Ok(()),
    }
}

fn collect(text: &str, out: &mut Vec<String>) -> Result<(), String> {
    for piece in pieces(text)? {
        if let Piece::Expr(e) = piece {
            out.push(e.to_owned());
        }
    }
    Ok(())
}

/// Renders every `${{ }}` in a JSON value against a context.
pub fn render(template: &Value, context: &Value) -> Result<Value, String> {
    Ok(match template {
        Value::String(s) => render_str(s, context)?,
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render(v, context))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                out.insert(render_text(k, context)?, render(v, context)?);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

/// A string template: one whole `${{ }}` keeps its JSON type, anything else is text.
pub fn render_str(text: &str, context: &Value) -> Result<Value, String> {
    let pieces = pieces(text)?;
    if let [Piece::Expr(e)] = pieces.as_slice() {
        return eval(e, context);
    }
    render_text(text, context).map(Value::String)
}

/// Renders a template as text: strings as they are, other values as JSON.
pub fn render_text(text: &str, context: &Value) -> Result<String, String> {
    let mut out = String::new();
    for piece in pieces(text)? {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Expr(e) => match eval(e, context)? {
                Value::String(s) => out.push_str(&s),
                Value::Null => {}
                other => out.push_str(&other.to_string()),
            },
        }
    }
    Ok(out)
}

/// An `if` may be written bare or wrapped in `${{ }}`.
pub fn condition_source(text: &str) -> &str {
    let t = text.trim();
    match t.strip_prefix(OPEN).and_then(|r| r.strip_suffix(CLOSE)) {
        Some(inner) if !inner.contains(OPEN) => inner.trim(),
        _ => t,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ctx() -> Value {
        json!({
            "input": {"org": "acme", "n": 3, "users": [{"email": "a@x"}]},
            "steps": {"charge": {"output": {"status": "paid", "id": 7}, "state": "succeeded"}},
            "run": {"id": "r1"},
        })
    }

    #[test]
    fn a_whole_expression_keeps_its_json_type() {
        assert_eq!(render_str("${{ input.n }}", &ctx()), Ok(json!(3)));
        assert_eq!(
            render_str(" ${{input.users}} ", &ctx()).map(|v| v.is_string()),
            Ok(true)
        );
        assert_eq!(
            render_str("${{input.users}}", &ctx()),
            Ok(json!([{"email": "a@x"}]))
        );
        assert_eq!(
            render_str("${{ steps.charge.output }}", &ctx()),
            Ok(json!({"status": "paid", "id": 7}))
        );
    }

    #[test]
    fn mixed_text_renders_values_as_text() {
        assert_eq!(
            render_str("org-${{ input.org }}-${{ input.n }}", &ctx()),
            Ok(json!("org-acme-3"))
        );
        assert_eq!(
            render_str("no templates", &ctx()),
            Ok(json!("no templates"))
        );
        assert_eq!(
            render_str("x${{ input.missing }}y", &ctx()),
            Ok(json!("xy"))
        );
    }

    #[test]
    fn render_walks_objects_and_arrays() {
        let template = json!({"to": "${{ input.users[0].email }}", "ids": ["${{ steps.charge.output.id }}", 1]});
        assert_eq!(
            render(&template, &ctx()),
            Ok(json!({"to": "a@x", "ids": [7, 1]}))
        );
    }

    #[test]
    fn missing_values_are_null_not_errors() {
        assert_eq!(
            render_str("${{ steps.charge.output.nope.deeper }}", &ctx()),
            Ok(Value::Null)
        );
    }

    #[test]
    fn plain_paths_answer_as_minijinja_does() {
        let c = ctx();
        let by_minijinja = |e: &str| {
            let compiled = env().compile_expression(e).unwrap();
            to_json(&compiled.eval(JinjaValue::from(Serde(&c))).unwrap())
        };
        for e in [
            "input",
            "input.n",
            "input.users",
            "steps.charge.output",
            "steps.charge.output.id",
            "input.missing.deeper",
            "input.org.length",
            "nothing",
        ] {
            assert_eq!(
                plain_path(e, &c).as_ref(),
                by_minijinja(e).as_ref().ok(),
                "{e}"
            );
        }
        for e in [
            "true",
            "input.n > 1",
            "input.users[0]",
            "input .n",
            "1",
            "input.0",
        ] {
            assert_eq!(plain_path(e, &c), None, "{e} is not a plain path");
        }
    }

    #[test]
    fn conditions_use_jinja_truthiness() {
        let c = ctx();
        assert_eq!(
            eval_condition("steps.charge.output.status == 'paid'", &c),
            Ok(true)
        );
        assert_eq!(eval_condition("input.n > 5", &c), Ok(false));
        assert_eq!(eval_condition("input.users", &c), Ok(true));
        assert_eq!(condition_source("${{ input.n > 1 }}"), "input.n > 1");
        assert_eq!(condition_source("input.n > 1"), "input.n > 1");
    }

    #[test]
    fn check_reports_roots_and_steps() {
        let refs = check("steps.charge.output.status == 'paid' and input.x and steps.b").unwrap();
        assert_eq!(refs.steps, ["b", "charge"].map(String::from).into());
        assert!(refs.roots.contains("input") && refs.roots.contains("steps"));
        assert!(check("steps.charge ==").is_err());
    }

    #[test]
    fn runaway_expressions_are_bounded() {
        for e in ["'ab' * 100000000", "range(1000000) | list | length"] {
            assert!(eval(e, &ctx()).is_err(), "{e} must be refused");
        }
    }

    #[test]
    fn unclosed_template_is_an_error() {
        assert!(pieces("a ${{ input.x").is_err());
        let mut out = Vec::new();
        assert!(expressions_in(&json!({"k": ["${{ a }}", "${{ b }}"]}), &mut out).is_ok());
        assert_eq!(out, ["a", "b"]);
    }
}
