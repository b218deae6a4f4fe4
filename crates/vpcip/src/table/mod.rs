//! Output for people (aligned tables) and for scripts (JSON).

use serde::Serialize;
use serde_json::Value;

use crate::cli::Output;

mod rows;

pub use rows::GatewayHealth;

/// A resource shown as one row of a list.
pub trait Tabular {
    const HEADER: &'static [&'static str];
    fn row(&self) -> Vec<String>;
}

pub fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| -> String {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s += c;
            } else {
                s += &format!("{c:<w$}  ");
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out += &line(r.clone());
    }
    out
}

/// The field `--field` asks for, when it does (set once, at start).
pub static FIELD: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// `v`'s field `name` as a line: a string bare, anything else as JSON.
fn field_of(v: &Value, name: &str) -> anyhow::Result<String> {
    match v.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Null) => Ok(String::new()),
        Some(other) => Ok(other.to_string()),
        None => {
            let fields: Vec<&str> = match v {
                Value::Object(m) => m.keys().map(String::as_str).collect(),
                _ => vec![],
            };
            anyhow::bail!(
                "--field {name}: no such field here; the fields are {}",
                fields.join(", ")
            )
        }
    }
}

/// The columns `--columns` asks for, when it does (set once, at start).
pub static COLUMNS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// `v` as YAML: maps and lists in block style, strings double-quoted with
/// JSON's escapes (which YAML's double-quoted scalars take), numbers,
/// booleans and `null` as they are. Keys are identifiers, written bare.
pub fn to_yaml(v: &Value) -> String {
    fn scalar(v: &Value) -> String {
        match v {
            Value::String(s) => Value::String(s.clone()).to_string(),
            other => other.to_string(),
        }
    }
    fn emit(v: &Value, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, val) in m {
                    match val {
                        Value::Object(c) if !c.is_empty() => {
                            out.push_str(&format!("{pad}{k}:\n"));
                            emit(val, indent + 2, out);
                        }
                        Value::Array(a) if !a.is_empty() => {
                            out.push_str(&format!("{pad}{k}:\n"));
                            emit(val, indent, out);
                        }
                        _ => out.push_str(&format!("{pad}{k}: {}\n", inline(val))),
                    }
                }
            }
            Value::Array(a) if !a.is_empty() => {
                for item in a {
                    match item {
                        Value::Object(c) if !c.is_empty() => {
                            // The first key on the dash's line.
                            let mut inner = String::new();
                            emit(item, indent + 2, &mut inner);
                            out.push_str(&format!("{pad}- {}", &inner[indent + 2..]));
                        }
                        Value::Array(c) if !c.is_empty() => {
                            out.push_str(&format!("{pad}-\n"));
                            emit(item, indent + 2, out);
                        }
                        _ => out.push_str(&format!("{pad}- {}\n", inline(item))),
                    }
                }
            }
            other => out.push_str(&format!("{pad}{}\n", inline(other))),
        }
    }
    fn inline(v: &Value) -> String {
        match v {
            Value::Object(_) => "{}".into(),
            Value::Array(_) => "[]".into(),
            other => scalar(other),
        }
    }
    let mut out = String::new();
    emit(v, 0, &mut out);
    out
}

/// A record or a list for scripts: JSON (pretty) or YAML.
pub fn print_value(v: &Value, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Yaml => print!("{}", to_yaml(v)),
        _ => println!("{}", serde_json::to_string_pretty(v)?),
    }
    Ok(())
}

/// `rows` under `header`, reduced to the columns `--columns` names (by
/// heading, any case), in its order; all when it names none.
pub fn select_columns(
    header: &[&str],
    rows: Vec<Vec<String>>,
) -> anyhow::Result<(Vec<String>, Vec<Vec<String>>)> {
    let Some(wanted) = COLUMNS.get().filter(|c| !c.is_empty()) else {
        return Ok((header.iter().map(|h| (*h).to_string()).collect(), rows));
    };
    let mut idx = Vec::new();
    for w in wanted {
        let i = header
            .iter()
            .position(|h| h.eq_ignore_ascii_case(w.trim()))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "--columns {w}: no such column here; the columns are {}",
                    header.join(", ")
                )
            })?;
        idx.push(i);
    }
    let head = idx.iter().map(|i| header[*i].to_string()).collect();
    let rows = rows
        .into_iter()
        .map(|r| {
            idx.iter()
                .map(|i| r.get(*i).cloned().unwrap_or_default())
                .collect()
        })
        .collect();
    Ok((head, rows))
}

pub fn print_list<T: Tabular + Serialize>(items: &[T], output: Output) -> anyhow::Result<()> {
    if let Some(name) = FIELD.get() {
        for item in items {
            println!("{}", field_of(&serde_json::to_value(item)?, name)?);
        }
        return Ok(());
    }
    match output {
        Output::Json | Output::Yaml => print_value(&serde_json::to_value(items)?, output)?,
        Output::Table => {
            let rows: Vec<Vec<String>> = items.iter().map(Tabular::row).collect();
            let (head, rows) = select_columns(T::HEADER, rows)?;
            let head: Vec<&str> = head.iter().map(String::as_str).collect();
            print!("{}", render_table(&head, &rows));
        }
    }
    Ok(())
}

/// One resource: its fields, one per line (JSON with `-o json`).
pub fn print_one<T: Serialize>(item: &T, output: Output) -> anyhow::Result<()> {
    let v = serde_json::to_value(item)?;
    if let Some(name) = FIELD.get() {
        println!("{}", field_of(&v, name)?);
        return Ok(());
    }
    match output {
        Output::Json | Output::Yaml => print_value(&v, output)?,
        Output::Table => print!("{}", render_fields(&in_order(item)?)),
    }
    Ok(())
}

/// A record's fields in the order its type declares them (an `id`, a
/// `name`, then what matters most), where a JSON value would sort them.
fn in_order<T: Serialize>(item: &T) -> anyhow::Result<Value> {
    let text = serde_json::to_string(item)?;
    Ok(
        match serde_json::from_str::<indexmap::IndexMap<String, Value>>(&text) {
            Ok(fields) => Value::Array(
                fields
                    .into_iter()
                    .map(|(k, v)| Value::Array(vec![Value::String(k), v]))
                    .collect(),
            ),
            Err(_) => serde_json::from_str(&text)?,
        },
    )
}

/// One record's fields, one per line: from an object (sorted), or from
/// `[name, value]` pairs in their order (see `in_order`).
pub fn render_fields(v: &Value) -> String {
    let pairs: Vec<(String, &Value)> = match v {
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), v)).collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(|p| match p {
                Value::Array(kv) if kv.len() == 2 => {
                    Some((kv[0].as_str().unwrap_or_default().to_string(), &kv[1]))
                }
                _ => None,
            })
            .collect(),
        other => return format!("{other}\n"),
    };
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, val) in pairs {
        let shown = match val {
            Value::Null => "-".to_string(),
            Value::String(s) => s.clone(),
            Value::Array(a) if a.iter().all(|x| x.is_string()) => {
                let parts: Vec<&str> = a.iter().filter_map(Value::as_str).collect();
                if parts.is_empty() {
                    "-".into()
                } else {
                    parts.join(", ")
                }
            }
            other => other.to_string(),
        };
        out += &format!("{k:<width$}  {shown}\n");
    }
    out
}

#[cfg(test)]
mod tests;
