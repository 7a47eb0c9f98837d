//! An import's template: the JSON a record becomes (a job's payload, an
//! event's data). It is JSON whose strings may name a record's fields:
//! `"{{email}}"` alone is the field's value (a CSV field as a string, an
//! NDJSON field as it is), `"{{age:number}}"`, `"{{active:bool}}"` and
//! `"{{extra:json}}"` convert a CSV field (empty: `null`), and
//! `"Dear {{name}}"` puts fields inside a string. The template is compiled
//! once into literal JSON text and holes, so a record costs one pass.

use keel_core::Error;
use serde_json::Value;

/// How a hole's field is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// CSV: a JSON string; NDJSON: the field's JSON as it is.
    Plain,
    Number,
    Bool,
    Json,
}

/// A field a template names, as the record gives it.
pub(super) enum Field<'a> {
    /// A CSV field.
    Text(&'a str),
    /// An NDJSON field.
    Json(&'a Value),
    Missing,
}

#[derive(Debug)]
enum Piece {
    /// JSON text written as it is.
    Literal(String),
    /// A whole JSON value: the field `name` converted by `kind`.
    Value(usize, Kind),
    /// A field written inside a JSON string (escaped, without quotes).
    Inside(usize),
}

/// A compiled template. `names` are the fields it uses, in the order its
/// holes number them; a record is asked for them by that number.
#[derive(Debug)]
pub struct Template {
    pieces: Vec<Piece>,
    pub(super) names: Vec<String>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, Error> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| Error::invalid(format!("the template is not JSON: {e}")))?;
        let mut t = Template {
            pieces: Vec::new(),
            names: Vec::new(),
        };
        let mut lit = String::new();
        t.walk(&value, &mut lit)?;
        t.flush(&mut lit);
        Ok(t)
    }

    fn flush(&mut self, lit: &mut String) {
        if !lit.is_empty() {
            self.pieces.push(Piece::Literal(std::mem::take(lit)));
        }
    }

    fn name(&mut self, name: &str) -> Result<usize, Error> {
        let name = name.trim();
        if name.is_empty() {
            return Err(Error::invalid("the template has an empty {{}}"));
        }
        if let Some(i) = self.names.iter().position(|n| n == name) {
            return Ok(i);
        }
        self.names.push(name.to_owned());
        Ok(self.names.len() - 1)
    }

    fn walk(&mut self, value: &Value, lit: &mut String) -> Result<(), Error> {
        match value {
            Value::String(s) => self.string(s, lit)?,
            Value::Array(items) => {
                lit.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        lit.push(',');
                    }
                    self.walk(item, lit)?;
                }
                lit.push(']');
            }
            Value::Object(fields) => {
                lit.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        lit.push(',');
                    }
                    push_json_string(lit, k);
                    lit.push(':');
                    self.walk(v, lit)?;
                }
                lit.push('}');
            }
            other => lit.push_str(&other.to_string()),
        }
        Ok(())
    }

    fn string(&mut self, s: &str, lit: &mut String) -> Result<(), Error> {
        if let Some(inner) = whole_hole(s) {
            let (name, kind) = match inner.split_once(':') {
                None => (inner, Kind::Plain),
                Some((name, "number")) => (name, Kind::Number),
                Some((name, "bool")) => (name, Kind::Bool),
                Some((name, "json")) => (name, Kind::Json),
                Some((_, other)) => {
                    return Err(Error::invalid(format!(
                        "the template's {{{{{inner}}}}}: {other:?} is not a conversion (number, bool, json)"
                    )));
                }
            };
            let i = self.name(name)?;
            self.flush(lit);
            self.pieces.push(Piece::Value(i, kind));
            return Ok(());
        }
        lit.push('"');
        let mut rest = s;
        while let Some(at) = rest.find("{{") {
            let Some(end) = rest[at..].find("}}") else {
                break;
            };
            push_escaped(lit, &rest[..at]);
            let i = self.name(&rest[at + 2..at + end])?;
            self.flush(lit);
            self.pieces.push(Piece::Inside(i));
            rest = &rest[at + end + 2..];
        }
        push_escaped(lit, rest);
        lit.push('"');
        Ok(())
    }

    /// Writes the record's JSON into `out`; `field(i)` answers the field
    /// `names[i]`. An error says which field could not be converted.
    pub(super) fn render<'a>(
        &self,
        field: impl Fn(usize) -> Field<'a>,
        out: &mut String,
    ) -> Result<(), String> {
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Value(i, kind) => write_value(out, field(*i), *kind)
                    .map_err(|why| format!("field {}: {why}", self.names[*i]))?,
                Piece::Inside(i) => match field(*i) {
                    Field::Text(s) => push_escaped(out, s),
                    Field::Json(Value::String(s)) => push_escaped(out, s),
                    Field::Json(v) => push_escaped(out, &v.to_string()),
                    Field::Missing => {}
                },
            }
        }
        Ok(())
    }
}

/// `s` is exactly `{{inner}}` with no other braces inside.
fn whole_hole(s: &str) -> Option<&str> {
    let inner = s.strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}")).then_some(inner.trim())
}

fn write_value(out: &mut String, field: Field<'_>, kind: Kind) -> Result<(), String> {
    match (field, kind) {
        (Field::Missing, _) => out.push_str("null"),
        (Field::Json(v), Kind::Plain | Kind::Json) => out.push_str(&v.to_string()),
        (Field::Json(v), Kind::Number) if v.is_number() || v.is_null() => {
            out.push_str(&v.to_string());
        }
        (Field::Json(v), Kind::Bool) if v.is_boolean() || v.is_null() => {
            out.push_str(&v.to_string());
        }
        (Field::Json(Value::String(s)), kind) => write_value(out, Field::Text(s), kind)?,
        (Field::Json(v), _) => return Err(format!("{v} is not a {kind:?}")),
        (Field::Text(s), Kind::Plain) => push_json_string(out, s),
        (Field::Text(s), _) if s.trim().is_empty() => out.push_str("null"),
        (Field::Text(s), Kind::Number) => {
            let n: serde_json::Number =
                serde_json::from_str(s.trim()).map_err(|_| format!("{s:?} is not a number"))?;
            out.push_str(&n.to_string());
        }
        (Field::Text(s), Kind::Bool) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => out.push_str("true"),
            "false" | "0" | "no" => out.push_str("false"),
            _ => return Err(format!("{s:?} is not true or false")),
        },
        (Field::Text(s), Kind::Json) => {
            let v: &serde_json::value::RawValue =
                serde_json::from_str(s).map_err(|e| format!("not JSON: {e}"))?;
            out.push_str(v.get());
        }
    }
    Ok(())
}

pub(super) fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    push_escaped(out, s);
    out.push('"');
}

/// `s` escaped as the inside of a JSON string.
fn push_escaped(out: &mut String, s: &str) {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    out.push_str(&quoted[1..quoted.len().saturating_sub(1).max(1)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(t: &Template, fields: &[(&str, &str)]) -> Result<Value, String> {
        let mut out = String::new();
        t.render(
            |i| {
                fields
                    .iter()
                    .find(|(n, _)| *n == t.names[i])
                    .map_or(Field::Missing, |(_, v)| Field::Text(v))
            },
            &mut out,
        )?;
        Ok(serde_json::from_str(&out).unwrap())
    }

    #[test]
    fn fields_fill_values_and_strings() {
        let t = Template::parse(
            r#"{"user":{"email":"{{email}}","age":"{{age:number}}","on":"{{on:bool}}"},
                "note":"Dear {{name}}, \"hi\"","extra":"{{x:json}}","fixed":[1,true,null]}"#,
        )
        .unwrap();
        let v = render(
            &t,
            &[
                ("email", "a@b.c"),
                ("age", " 42 "),
                ("on", "yes"),
                ("name", "Ann \"A\""),
                ("x", r#"{"k":[1]}"#),
            ],
        )
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"user":{"email":"a@b.c","age":42,"on":true},
                "note":"Dear Ann \"A\", \"hi\"","extra":{"k":[1]},"fixed":[1,true,null]})
        );
    }

    #[test]
    fn a_bad_conversion_names_the_field() {
        let t = Template::parse(r#"{"age":"{{age:number}}"}"#).unwrap();
        let e = render(&t, &[("age", "old")]).unwrap_err();
        assert!(e.contains("field age") && e.contains("not a number"), "{e}");
        assert_eq!(render(&t, &[("age", "")]).unwrap()["age"], Value::Null);
        assert!(Template::parse(r#"{"a":"{{a:date}}"}"#).is_err());
        assert!(Template::parse("{nope").is_err());
    }

    #[test]
    fn ndjson_fields_keep_their_type() {
        let t = Template::parse(r#"{"n":"{{n}}","s":"id {{n}}","b":"{{b:bool}}"}"#).unwrap();
        let record = serde_json::json!({"n": 7, "b": "true"});
        let mut out = String::new();
        t.render(
            |i| record.get(&t.names[i]).map_or(Field::Missing, Field::Json),
            &mut out,
        )
        .unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v, serde_json::json!({"n":7,"s":"id 7","b":true}));
    }
}
