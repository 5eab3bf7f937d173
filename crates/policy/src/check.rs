//! The structural check: walks a parsed document against [`crate::schema`]
//! and reports every problem, not just the first.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diag::{Sink, did_you_mean};
use crate::schema::{TableSchema, Ty};

pub(crate) type Val<'i> = Spanned<DeValue<'i>>;

/// The TOML type name of a value, for messages.
pub(crate) fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// An integer value, if it is one that fits i64.
pub(crate) fn int_value(v: &DeValue<'_>) -> Option<i64> {
    match v {
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
        DeValue::String(_)
        | DeValue::Float(_)
        | DeValue::Boolean(_)
        | DeValue::Datetime(_)
        | DeValue::Array(_)
        | DeValue::Table(_) => None,
    }
}

fn ty_desc(ty: &Ty) -> String {
    match ty {
        Ty::Str => "a string".into(),
        Ty::Int { min, max } if min == max => format!("the integer {min}"),
        Ty::Int { min, max } => format!("an integer from {min} to {max}"),
        Ty::Bool => "true or false".into(),
        Ty::Enum(vals) => one_of(vals),
        Ty::StrOrList => "a string or an array of strings".into(),
        Ty::EnumOrList(vals) => format!("{} (or an array of them)", one_of(vals)),
        Ty::List(item) => format!("an array of {}", plural(item)),
        Ty::Table(_) | Ty::Map(_) => "a table".into(),
        Ty::Tables(_) => "an array of tables ([[…]])".into(),
        Ty::Reserved(_) => "nothing (reserved)".into(),
    }
}

fn plural(ty: &Ty) -> String {
    match ty {
        Ty::Str => "strings".into(),
        Ty::Int { min, max } => format!("integers from {min} to {max}"),
        Ty::Bool => "booleans".into(),
        Ty::Enum(vals) => format!("values from {}", vals.join(", ")),
        Ty::StrOrList
        | Ty::EnumOrList(_)
        | Ty::List(_)
        | Ty::Table(_)
        | Ty::Map(_)
        | Ty::Tables(_)
        | Ty::Reserved(_) => ty_desc(ty),
    }
}

fn one_of(vals: &[&str]) -> String {
    let quoted: Vec<String> = vals.iter().map(|v| format!("\"{v}\"")).collect();
    match quoted.as_slice() {
        [one] => one.clone(),
        _ => format!("one of {}", quoted.join(", ")),
    }
}

/// Checks a table against its schema; `path` names it in messages
/// (`network.rule[2]`), `span` is where a missing key is reported.
pub(crate) fn check_table(
    table: &DeTable<'_>,
    schema: &TableSchema,
    path: &str,
    span: Range<usize>,
    sink: &mut Sink<'_>,
) {
    for (key, value) in table {
        let name: &str = key.get_ref();
        let Some(field) = schema.field(name) else {
            let at = if path.is_empty() {
                "at the top level".to_owned()
            } else {
                format!("in [{path}]")
            };
            let mut msg = format!("unknown key `{name}` {at}");
            match did_you_mean(name, schema.fields.iter().map(|f| f.name)) {
                Some(s) => msg.push_str(&format!("; did you mean `{s}`?")),
                None => {
                    let keys: Vec<&str> = schema.fields.iter().map(|f| f.name).collect();
                    msg.push_str(&format!("; expected one of: {}", keys.join(", ")));
                }
            }
            sink.error(key.span(), msg);
            continue;
        };
        let child = if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        };
        check_value(value, &field.ty, &child, sink);
    }
    for field in schema.fields.iter().filter(|f| f.required) {
        if !table.keys().any(|k| k.get_ref() == field.name) {
            let at = if path.is_empty() {
                "the manifest".to_owned()
            } else {
                format!("[{path}]")
            };
            sink.error(
                span.clone(),
                format!(
                    "missing key `{}` in {at}: expected {}",
                    field.name,
                    ty_desc(&field.ty)
                ),
            );
        }
    }
}

fn mismatch(v: &Val<'_>, ty: &Ty, path: &str, sink: &mut Sink<'_>) {
    sink.error(
        v.span(),
        format!(
            "`{path}` must be {}, found {}",
            ty_desc(ty),
            type_name(v.get_ref())
        ),
    );
}

fn check_enum(v: &Val<'_>, s: &str, vals: &[&str], path: &str, sink: &mut Sink<'_>) {
    if vals.contains(&s) {
        return;
    }
    let mut msg = format!("`{path}` cannot be \"{s}\": expected {}", one_of(vals));
    if let Some(m) = did_you_mean(s, vals.iter().copied()) {
        msg.push_str(&format!("; did you mean \"{m}\"?"));
    }
    sink.error(v.span(), msg);
}

pub(crate) fn check_value(v: &Val<'_>, ty: &Ty, path: &str, sink: &mut Sink<'_>) {
    match (ty, v.get_ref()) {
        (Ty::Reserved(what), _) => sink.error(
            v.span(),
            format!(
                "`{path}` is reserved: {what} are not yet supported by this version of blastwall; remove the section (it would not be enforced)"
            ),
        ),
        (Ty::Str, DeValue::String(_)) | (Ty::Bool, DeValue::Boolean(_)) => {}
        (Ty::Int { min, max }, DeValue::Integer(_)) => match int_value(v.get_ref()) {
            Some(n) if (*min..=*max).contains(&n) => {}
            _ => sink.error(
                v.span(),
                format!("`{path}` must be {}", ty_desc(ty)),
            ),
        },
        (Ty::Enum(vals), DeValue::String(s)) => check_enum(v, s, vals, path, sink),
        (Ty::StrOrList, DeValue::String(_)) => {}
        (Ty::StrOrList, DeValue::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                check_value(item, &Ty::Str, &format!("{path}[{i}]"), sink);
            }
        }
        (Ty::EnumOrList(vals), DeValue::String(s)) => check_enum(v, s, vals, path, sink),
        (Ty::EnumOrList(vals), DeValue::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item.get_ref() {
                    DeValue::String(s) => check_enum(item, s, vals, &format!("{path}[{i}]"), sink),
                    DeValue::Integer(_)
                    | DeValue::Float(_)
                    | DeValue::Boolean(_)
                    | DeValue::Datetime(_)
                    | DeValue::Array(_)
                    | DeValue::Table(_) => mismatch(item, &Ty::Enum(vals), &format!("{path}[{i}]"), sink),
                }
            }
        }
        (Ty::List(item_ty), DeValue::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                check_value(item, item_ty, &format!("{path}[{i}]"), sink);
            }
        }
        (Ty::Table(schema), DeValue::Table(t)) => check_table(t, schema, path, v.span(), sink),
        (Ty::Tables(schema), DeValue::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                match item.get_ref() {
                    DeValue::Table(t) => check_table(t, schema, &p, item.span(), sink),
                    DeValue::String(_)
                    | DeValue::Integer(_)
                    | DeValue::Float(_)
                    | DeValue::Boolean(_)
                    | DeValue::Datetime(_)
                    | DeValue::Array(_) => mismatch(item, &Ty::Table(schema), &p, sink),
                }
            }
        }
        (Ty::Map(value_ty), DeValue::Table(t)) => {
            for (k, item) in t {
                check_value(item, value_ty, &format!("{path}.\"{}\"", k.get_ref()), sink);
            }
        }
        (
            Ty::Str
            | Ty::Bool
            | Ty::Int { .. }
            | Ty::Enum(_)
            | Ty::StrOrList
            | Ty::EnumOrList(_)
            | Ty::List(_)
            | Ty::Table(_)
            | Ty::Tables(_)
            | Ty::Map(_),
            _,
        ) => mismatch(v, ty, path, sink),
    }
}
