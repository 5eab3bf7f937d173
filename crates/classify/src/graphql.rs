//! GraphQL documents as a policy sees them: every root field every operation
//! calls, whatever the aliases, fragments, batching or `operationName` say.
//!
//! # What is listed
//!
//! [`inspect_body`], [`inspect_document`] and [`inspect_query_string`] list
//! the root-field [`Call`]s of **every** operation of the document, in
//! document order, whatever `operationName` says: `operationName` is chosen
//! by the client, and a server that ignores it, or picks another operation
//! than the one named, must not turn a listed read into an unlisted delete.
//! A policy takes the strictest verdict over all the calls.
//!
//! - Aliases are resolved: `a: volumeDelete(…)` is a call of `volumeDelete`
//!   with alias `a`.
//! - Fragment spreads and inline fragments on the root selection set are
//!   expanded, recursively; a spread of an unknown fragment, two fragments
//!   of one name, or spreads in a cycle make the document
//!   [`Opaque::BadFragment`].
//! - The `{ … }` shorthand is a query.
//! - Fields under `@skip`/`@include` are listed all the same (the condition
//!   may be a variable the proxy does not evaluate).
//! - `__typename` at the root is a call like any other.
//! - Words inside string arguments, comments, aliases or nested selections
//!   never make calls: the document is parsed (by `graphql-parser`), not
//!   searched.
//!
//! # What is opaque
//!
//! Whatever cannot be reduced to that list is an [`Inspection::Opaque`]:
//! empty bodies, bodies that are not JSON or not GraphQL requests, JSON with
//! a duplicate key at any depth (servers disagree on which copy wins),
//! persisted queries whose document is not in the request (or whose hash
//! does not match the document sent), documents with no operation, and
//! anything past the bounds [`MAX_BODY`], [`MAX_BATCH`], [`MAX_OPERATIONS`],
//! [`MAX_CALLS`], [`MAX_FRAGMENT_DEPTH`] and [`MAX_NESTING`].
//!
//! # Labels
//!
//! Each call is labelled by [`field_labels`]: `read` for a query or
//! subscription, `write` for a mutation, and `destructive` (plus
//! `irreversible`) when a word of the field name is in
//! [`DESTRUCTIVE_IRREVERSIBLE_WORDS`] or [`DESTRUCTIVE_WORDS`].

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::fmt;

use graphql_parser::query::{
    Definition, FragmentDefinition, OperationDefinition, Selection, SelectionSet,
};
use serde::Serialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::text::{self, Pair};
use crate::{Label, Labels};

/// The largest body (or document, or query string) inspected, in bytes.
/// Anything larger is [`Opaque::TooLarge`].
pub const MAX_BODY: usize = 1 << 20;

/// The most requests a batched JSON array may hold.
pub const MAX_BATCH: usize = 64;

/// The most operations inspected over a whole body (all batched requests).
pub const MAX_OPERATIONS: usize = 64;

/// The most root-field calls listed over a whole body, after expanding
/// fragments (a fragment spread twice counts twice).
pub const MAX_CALLS: usize = 1024;

/// The deepest chain of fragment spreads and inline fragments followed from
/// a root selection set.
pub const MAX_FRAGMENT_DEPTH: usize = 16;

/// The deepest nesting of `{`, `[` and `(` (outside strings and comments) a
/// document may have. Checked before parsing, so that the parser's stack
/// use is bounded by this crate and not only by the parser's own counter.
pub const MAX_NESTING: usize = 40;

/// The most selections (fields, spreads, inline fragments) visited while
/// expanding the root selection sets of one body.
const MAX_WORK: usize = 16 * 1024;

/// Field-name words that mark a call `destructive` and `irreversible`:
/// deleting state, with no undo on the caller's side.
pub const DESTRUCTIVE_IRREVERSIBLE_WORDS: &[&str] = &[
    "delete",
    "deletes",
    "deletion",
    "remove",
    "removes",
    "removal",
    "destroy",
    "destroys",
    "drop",
    "drops",
    "purge",
    "purges",
    "wipe",
    "wipes",
    "erase",
    "erases",
    "truncate",
    "truncates",
];

/// Field-name words that mark a call `destructive`: state lost or access cut,
/// but not necessarily for good. (`rollBack`, as the two words `roll` `back`,
/// counts as `rollback`.)
pub const DESTRUCTIVE_WORDS: &[&str] = &[
    "revoke",
    "revokes",
    "reset",
    "resets",
    "terminate",
    "terminates",
    "termination",
    "kill",
    "kills",
    "detach",
    "detaches",
    "disconnect",
    "disconnects",
    "uninstall",
    "uninstalls",
    "rollback",
    "rollbacks",
];

/// The type of a GraphQL operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    /// `query` or the `{ … }` shorthand.
    Query,
    /// `mutation`.
    Mutation,
    /// `subscription`.
    Subscription,
}

impl OpType {
    /// The keyword as written in a document and a manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            OpType::Query => "query",
            OpType::Mutation => "mutation",
            OpType::Subscription => "subscription",
        }
    }
}

/// One root field called by one operation: the unit a GraphQL rule decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Call {
    /// The operation's type.
    pub op: OpType,
    /// The operation's name as the client wrote it (client-chosen, never trusted for a verdict).
    pub operation_name: Option<String>,
    /// The root field called (`volumeDelete`), after resolving aliases and fragment spreads.
    pub field: String,
    /// The alias the client gave the field, if any.
    pub alias: Option<String>,
    /// Index of the request in a batched JSON array (0 when not batched).
    pub batch_index: usize,
    /// Labels from the operation type and the field name (`write`, `destructive`, …).
    pub labels: Labels,
    /// The field's scalar arguments as text (`volumeId` → `vol_prod`), a
    /// variable resolved from the request's `variables` where it is a
    /// scalar there. For people (an approval's summary), never for a
    /// verdict: at most [`MAX_ARGS`] of them, each cut at [`MAX_ARG_CHARS`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<(String, String)>,
}

/// How many arguments of a call are kept for its summary.
pub const MAX_ARGS: usize = 8;
/// How many characters of an argument's value are kept.
pub const MAX_ARG_CHARS: usize = 256;

/// Why a body could not be reduced to a list of calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "kebab-case")]
pub enum Opaque {
    /// No body (or an empty one) where GraphQL was expected.
    Empty,
    /// The body is not JSON, or not a GraphQL request object or array of them.
    NotJson(String),
    /// The JSON carries duplicate keys (a parser differential waiting to happen),
    /// or, over GET, a parameter is repeated or the parameters differ
    /// depending on whether `;` separates them as `&` does.
    DuplicateKey(String),
    /// The `query` string does not parse as a GraphQL document.
    Syntax(String),
    /// A persisted-query hash with no document: the operation is unknown.
    PersistedQuery,
    /// The document has several operations and no `operationName` picks one,
    /// or `operationName` names none of them. (Calls of every operation are
    /// still listed where the document parsed; this marks the ambiguity.)
    ///
    /// Not produced by this crate's inspectors today: they list the calls of
    /// every operation whatever `operationName` says.
    UnknownOperation(String),
    /// A fragment spread names no fragment, or fragments spread in a cycle.
    BadFragment(String),
    /// The body is past the inspection bound.
    TooLarge,
    /// Past the bound on operations, fields or nesting the inspector walks.
    TooComplex,
}

/// What a GraphQL inspection found. `Calls` is never empty: every
/// operation selects at least one field, and every fragment too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Inspection {
    /// Every root field called, in every operation of every batched request.
    Calls {
        /// The calls, in document order.
        calls: Vec<Call>,
    },
    /// The body could not be fully inspected; a policy must give it the
    /// strictest verdict the host allows, never `allow`.
    Opaque {
        /// Why.
        reason: Opaque,
    },
}

impl Inspection {
    /// The calls found; empty for an opaque inspection.
    pub fn calls(&self) -> &[Call] {
        match self {
            Inspection::Calls { calls } => calls,
            Inspection::Opaque { .. } => &[],
        }
    }

    /// Why the inspection is opaque, if it is.
    pub fn opaque_reason(&self) -> Option<&Opaque> {
        match self {
            Inspection::Calls { .. } => None,
            Inspection::Opaque { reason } => Some(reason),
        }
    }

    /// The union of every call's labels, or `{opaque}` for an opaque inspection.
    pub fn labels(&self) -> Labels {
        match self {
            Inspection::Calls { calls } => calls
                .iter()
                .fold(Labels::EMPTY, |acc, c| acc.union(c.labels)),
            Inspection::Opaque { .. } => Labels::of(&[Label::Opaque]),
        }
    }

    fn opaque(reason: Opaque) -> Inspection {
        Inspection::Opaque { reason }
    }

    fn from_result(r: Result<Vec<Call>, Opaque>) -> Inspection {
        match r {
            Ok(calls) => Inspection::Calls { calls },
            Err(reason) => Inspection::Opaque { reason },
        }
    }
}

/// The labels of a call of `field` in an operation of type `op`: `read` for
/// a query or subscription, `write` for a mutation; `destructive` and
/// `irreversible` when a word of the name (split at case changes, `_` and
/// `-`) is in [`DESTRUCTIVE_IRREVERSIBLE_WORDS`]; `destructive` when one is
/// in [`DESTRUCTIVE_WORDS`]. `volumeDelete` and `delete_volume` are
/// destructive; `customDomainCreate` is a plain write; `volumedelete`, one
/// word, is not recognised.
pub fn field_labels(op: OpType, field: &str) -> Labels {
    let mut labels = match op {
        OpType::Query | OpType::Subscription => Labels::of(&[Label::Read]),
        OpType::Mutation => Labels::of(&[Label::Write]),
    };
    let words = text::words(field);
    let has = |list: &[&str]| words.iter().any(|w| list.contains(&w.as_str()));
    let roll_back = words
        .windows(2)
        .any(|w| matches!(w, [a, b] if a == "roll" && b == "back"));
    if has(DESTRUCTIVE_IRREVERSIBLE_WORDS) {
        labels.insert(Label::Destructive);
        labels.insert(Label::Irreversible);
    }
    if has(DESTRUCTIVE_WORDS) || roll_back {
        labels.insert(Label::Destructive);
    }
    labels
}

// ---------------------------------------------------------------------------
// Entry points

/// Inspects a GraphQL-over-HTTP JSON body (`Content-Type: application/json`):
/// one request object `{query, operationName, variables, extensions}`, or a
/// batched array of them (`Call::batch_index` is the position in the array).
///
/// Any opaque request makes the whole body opaque. Besides the cases listed
/// in the [module documentation](self):
/// - a request with no `query` (or a null one) is
///   [`Opaque::PersistedQuery`] when it carries `extensions.persistedQuery`
///   or a document id (`id`, `documentId`, `doc_id`, `queryId`), and
///   [`Opaque::NotJson`] otherwise;
/// - a request with both a `query` and a document id, or with a `query` and
///   an `extensions.persistedQuery` whose `sha256Hash` is not the SHA-256 of
///   that query, is [`Opaque::PersistedQuery`] too: a server may run the
///   stored document instead of the one sent;
/// - `query` must be a string, `operationName` a string or null, and
///   `extensions` an object or null.
pub fn inspect_body(body: &[u8]) -> Inspection {
    if body.len() > MAX_BODY {
        return Inspection::opaque(Opaque::TooLarge);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Inspection::opaque(Opaque::Empty);
    }
    let requests = match parse_json_body(body) {
        Ok(r) => r,
        Err(reason) => return Inspection::opaque(reason),
    };
    if requests.is_empty() {
        return Inspection::opaque(Opaque::Empty);
    }
    let mut budget = Budget::default();
    let mut calls = Vec::new();
    for (index, req) in requests.iter().enumerate() {
        if let Err(reason) = inspect_request(req, index, &mut budget, &mut calls) {
            return Inspection::opaque(reason);
        }
    }
    Inspection::Calls { calls }
}

/// Inspects a raw GraphQL document (`Content-Type: application/graphql`).
/// An empty or blank document is [`Opaque::Empty`].
pub fn inspect_document(doc: &str) -> Inspection {
    if doc.len() > MAX_BODY {
        return Inspection::opaque(Opaque::TooLarge);
    }
    if doc.trim().is_empty() {
        return Inspection::opaque(Opaque::Empty);
    }
    let mut calls = Vec::new();
    let r = document_calls(doc, 0, &mut Budget::default(), &mut calls).map(|()| calls);
    Inspection::from_result(r)
}

/// Inspects GraphQL over GET: the query string of the URL (a leading `?` is
/// ignored), with `query`, `operationName`, `variables` and `extensions`
/// parameters, percent-decoded with `+` as a space.
///
/// Returns `None` when there is no `query` parameter, no `extensions`
/// parameter and no document-id parameter (`documentId`, `doc_id`,
/// `queryId`): the request is not GraphQL. Otherwise:
/// - a repeated `query`, `operationName`, `variables` or `extensions`, or
///   parameters that read differently when `;` also separates them (some
///   servers split on it), is [`Opaque::DuplicateKey`];
/// - `extensions` is parsed as strict JSON, and `persistedQuery` in it is
///   handled as in [`inspect_body`];
/// - a `query` that is not UTF-8 once decoded is [`Opaque::Syntax`].
///
/// The same function reads an `application/x-www-form-urlencoded` POST
/// body. Some servers (`express-graphql`, `graphql-http`) read `query` from
/// the URL of a POST before its body: a proxy must inspect both and keep
/// every call.
pub fn inspect_query_string(qs: &str) -> Option<Inspection> {
    if qs.len() > MAX_BODY {
        return Some(Inspection::opaque(Opaque::TooLarge));
    }
    let amp = graphql_params(&text::form_pairs(qs, &['&']));
    let semi = graphql_params(&text::form_pairs(qs, &['&', ';']));
    if amp.is_empty() && semi.is_empty() {
        return None;
    }
    if amp != semi {
        return Some(Inspection::opaque(Opaque::DuplicateKey(
            "query parameters read differently when ';' separates them".to_owned(),
        )));
    }
    let has = |name: &str| amp.iter().any(|p| p.name == name);
    if !has("query") && !has("extensions") && !DOC_ID_PARAMS.iter().any(|n| has(n)) {
        return None;
    }
    let mut seen = HashSet::new();
    for p in &amp {
        if !seen.insert(p.name.as_str()) {
            return Some(Inspection::opaque(Opaque::DuplicateKey(format!(
                "query parameter {:?} given more than once",
                p.name
            ))));
        }
    }
    Some(Inspection::from_result(get_request(&amp)))
}

// ---------------------------------------------------------------------------
// Requests

/// Top-level keys kept from a request object; everything else is only
/// checked for duplicate keys, never built (`variables` is kept to name the
/// target of a call to a person, never for a verdict). The last four name a
/// stored document instead of sending one.
const KEPT_KEYS: &[&str] = &[
    "query",
    "operationName",
    "variables",
    "extensions",
    "id",
    "documentId",
    "doc_id",
    "queryId",
];

/// Query-string parameters naming a stored document (`id` is left out: it
/// is too common a parameter name on non-GraphQL endpoints).
const DOC_ID_PARAMS: &[&str] = &["documentId", "doc_id", "queryId"];

/// The GET parameters that make up a GraphQL request.
const GET_PARAMS: &[&str] = &[
    "query",
    "operationName",
    "variables",
    "extensions",
    "documentId",
    "doc_id",
    "queryId",
];

fn graphql_params(pairs: &[Pair]) -> Vec<Pair> {
    pairs
        .iter()
        .filter(|p| GET_PARAMS.contains(&p.name.as_str()))
        .cloned()
        .collect()
}

/// One request object, reduced to the keys an inspection needs.
#[derive(Debug, Default)]
struct RawRequest {
    query: Option<Value>,
    operation_name: Option<Value>,
    variables: Option<Value>,
    extensions: Option<Value>,
    /// Whether a non-null document id (`id`, `documentId`, …) is present.
    doc_id: bool,
}

fn get_request(params: &[Pair]) -> Result<Vec<Call>, Opaque> {
    let mut req = RawRequest::default();
    for p in params {
        let value = p.value.clone().unwrap_or_default();
        match p.name.as_str() {
            "query" => {
                let q = String::from_utf8(value)
                    .map_err(|_| Opaque::Syntax("query parameter is not utf-8".to_owned()))?;
                req.query = Some(Value::String(q));
            }
            "extensions" => {
                req.extensions = Some(parse_strict_json(&value)?);
            }
            "variables" => {
                req.variables = parse_strict_json(&value).ok();
            }
            name if DOC_ID_PARAMS.contains(&name) => req.doc_id = true,
            // `operationName` is never used for a verdict, and `variables`
            // cannot add calls; both were checked for repetition.
            _ => {}
        }
    }
    let mut calls = Vec::new();
    inspect_request(&req, 0, &mut Budget::default(), &mut calls)?;
    Ok(calls)
}

fn inspect_request(
    req: &RawRequest,
    batch_index: usize,
    budget: &mut Budget,
    out: &mut Vec<Call>,
) -> Result<(), Opaque> {
    let at = |what: String| {
        if batch_index == 0 {
            what
        } else {
            format!("request {batch_index}: {what}")
        }
    };
    match &req.operation_name {
        None | Some(Value::Null | Value::String(_)) => {}
        Some(other) => {
            return Err(Opaque::NotJson(at(format!(
                "operationName is {}, not a string",
                json_kind(other)
            ))));
        }
    }
    let persisted = match &req.extensions {
        None | Some(Value::Null) => None,
        Some(Value::Object(ext)) => ext.get("persistedQuery").filter(|v| !v.is_null()),
        Some(other) => {
            return Err(Opaque::NotJson(at(format!(
                "extensions is {}, not an object",
                json_kind(other)
            ))));
        }
    };
    let query = match &req.query {
        None | Some(Value::Null) => {
            return Err(if persisted.is_some() || req.doc_id {
                Opaque::PersistedQuery
            } else {
                Opaque::NotJson(at("no \"query\" string".to_owned()))
            });
        }
        Some(Value::String(q)) => q,
        Some(other) => {
            return Err(Opaque::NotJson(at(format!(
                "query is {}, not a string",
                json_kind(other)
            ))));
        }
    };
    if req.doc_id {
        return Err(Opaque::PersistedQuery);
    }
    if let Some(pq) = persisted {
        let claimed = pq.get("sha256Hash").and_then(Value::as_str);
        let actual = sha256_hex(query);
        if !claimed.is_some_and(|h| h.eq_ignore_ascii_case(&actual)) {
            return Err(Opaque::PersistedQuery);
        }
    }
    let first = out.len();
    document_calls(query, batch_index, budget, out)?;
    if let Some(Value::Object(vars)) = &req.variables {
        for call in out.iter_mut().skip(first) {
            for (_, v) in &mut call.args {
                if let Some(name) = v.strip_prefix('$')
                    && let Some(text) = vars.get(name).and_then(scalar_text)
                {
                    *v = text;
                }
            }
        }
    }
    Ok(())
}

/// A JSON scalar as text, cut at [`MAX_ARG_CHARS`].
fn scalar_text(v: &Value) -> Option<String> {
    let t = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null | Value::Array(_) | Value::Object(_) => return None,
    };
    Some(cut(t))
}

fn cut(mut t: String) -> String {
    if let Some((i, _)) = t.char_indices().nth(MAX_ARG_CHARS) {
        t.truncate(i);
    }
    t
}

/// A GraphQL argument value as text: scalars as written, a variable as
/// `$name`, lists and objects left out.
fn arg_text<'a>(v: &graphql_parser::query::Value<'a, &'a str>) -> Option<String> {
    use graphql_parser::query::Value as V;
    let t = match v {
        V::Variable(name) => format!("${name}"),
        V::Int(n) => n.as_i64().map_or_else(String::new, |n| n.to_string()),
        V::Float(f) => f.to_string(),
        V::String(s) => s.clone(),
        V::Boolean(b) => b.to_string(),
        V::Enum(e) => (*e).to_owned(),
        V::Null | V::List(_) | V::Object(_) => return None,
    };
    Some(cut(t))
}

fn sha256_hex(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

const HEX: [u8; 16] = *b"0123456789abcdef";

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

// ---------------------------------------------------------------------------
// Strict JSON: serde_json keeps the last of duplicate keys; other parsers keep
// the first. These seeds refuse duplicates at any depth.

/// What went wrong while deserialising, beyond what serde_json's error says.
#[derive(Debug, Default)]
struct Strictness {
    duplicate: RefCell<Option<String>>,
    too_complex: Cell<bool>,
}

impl Strictness {
    fn duplicate<E: de::Error>(&self, key: &str) -> E {
        *self.duplicate.borrow_mut() = Some(key.to_owned());
        E::custom(format_args!("duplicate key {key:?}"))
    }

    /// Turns a serde_json error into the [`Opaque`] it stands for.
    fn opaque(&self, e: &serde_json::Error) -> Opaque {
        if let Some(key) = self.duplicate.borrow().as_deref() {
            return Opaque::DuplicateKey(text::detail(key));
        }
        if self.too_complex.get() {
            return Opaque::TooComplex;
        }
        Opaque::NotJson(text::detail(&e.to_string()))
    }
}

/// Parses `bytes` as one JSON value, refusing duplicate keys at any depth.
fn parse_strict_json(bytes: &[u8]) -> Result<Value, Opaque> {
    let strict = Strictness::default();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = Build(&strict)
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| strict.opaque(&e))?;
    Ok(v)
}

/// Parses a body as a request object or a batched array of them.
fn parse_json_body(body: &[u8]) -> Result<Vec<RawRequest>, Opaque> {
    let strict = Strictness::default();
    let mut de = serde_json::Deserializer::from_slice(body);
    let r = Body(&strict)
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| strict.opaque(&e))?;
    Ok(r)
}

/// Seed for the whole body: an object or an array of objects.
struct Body<'s>(&'s Strictness);

impl<'de> DeserializeSeed<'de> for Body<'_> {
    type Value = Vec<RawRequest>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Body<'_> {
    type Value = Vec<RawRequest>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a GraphQL request object or an array of them")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Ok(vec![Request(self.0).visit_map(map)?])
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(req) = seq.next_element_seed(Request(self.0))? {
            if out.len() >= MAX_BATCH {
                self.0.too_complex.set(true);
                return Err(de::Error::custom("batch too large"));
            }
            out.push(req);
        }
        Ok(out)
    }
}

/// Seed for one request object.
struct Request<'s>(&'s Strictness);

impl<'de> DeserializeSeed<'de> for Request<'_> {
    type Value = RawRequest;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Request<'_> {
    type Value = RawRequest;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a GraphQL request object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut req = RawRequest::default();
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                return Err(self.0.duplicate(&key));
            }
            if KEPT_KEYS.contains(&key.as_str()) {
                let v = map.next_value_seed(Build(self.0))?;
                match key.as_str() {
                    "query" => req.query = Some(v),
                    "operationName" => req.operation_name = Some(v),
                    "variables" => req.variables = Some(v),
                    "extensions" => req.extensions = Some(v),
                    _ => req.doc_id |= !v.is_null(),
                }
            } else {
                map.next_value_seed(Check(self.0))?;
            }
            seen.insert(key);
        }
        Ok(req)
    }
}

/// Seed that builds a [`Value`], refusing duplicate keys.
struct Build<'s>(&'s Strictness);

impl<'de> DeserializeSeed<'de> for Build<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Build<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Build(self.0))? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(self.0.duplicate(&key));
            }
            let v = map.next_value_seed(Build(self.0))?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// Seed that only checks a value for duplicate keys, building nothing
/// (serde's `IgnoredAny` plus the duplicate-key test).
struct Check<'s>(&'s Strictness);

impl<'de> DeserializeSeed<'de> for Check<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Check(self.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                return Err(self.0.duplicate(&key));
            }
            map.next_value_seed(Check(self.0))?;
            seen.insert(key);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Documents

/// Bounds shared by every document of one body.
#[derive(Debug, Default)]
struct Budget {
    operations: usize,
    work: usize,
}

/// Lists the root calls of every operation of `doc` into `out`.
fn document_calls(
    doc: &str,
    batch_index: usize,
    budget: &mut Budget,
    out: &mut Vec<Call>,
) -> Result<(), Opaque> {
    if doc.len() > MAX_BODY {
        return Err(Opaque::TooLarge);
    }
    if nesting_exceeds(doc, MAX_NESTING) {
        return Err(Opaque::TooComplex);
    }
    let parsed = graphql_parser::query::parse_query::<&str>(doc)
        .map_err(|e| Opaque::Syntax(text::detail(&e.to_string())))?;

    let mut fragments: HashMap<&str, &FragmentDefinition<'_, &str>> = HashMap::new();
    for def in &parsed.definitions {
        if let Definition::Fragment(f) = def
            && fragments.insert(f.name, f).is_some()
        {
            return Err(Opaque::BadFragment(text::detail(&format!(
                "fragment {} is defined more than once",
                f.name
            ))));
        }
    }

    let mut operations = 0usize;
    for def in &parsed.definitions {
        let (op, name, set) = match def {
            Definition::Fragment(_) => continue,
            Definition::Operation(OperationDefinition::SelectionSet(s)) => (OpType::Query, None, s),
            Definition::Operation(OperationDefinition::Query(q)) => {
                (OpType::Query, q.name, &q.selection_set)
            }
            Definition::Operation(OperationDefinition::Mutation(m)) => {
                (OpType::Mutation, m.name, &m.selection_set)
            }
            Definition::Operation(OperationDefinition::Subscription(s)) => {
                (OpType::Subscription, s.name, &s.selection_set)
            }
        };
        operations += 1;
        budget.operations += 1;
        if budget.operations > MAX_OPERATIONS {
            return Err(Opaque::TooComplex);
        }
        let mut walk = Walk {
            op,
            operation_name: name,
            batch_index,
            fragments: &fragments,
            stack: Vec::new(),
            budget,
            out,
        };
        walk.selection_set(set)?;
    }
    if operations == 0 {
        return Err(Opaque::Syntax(
            "the document defines no operation".to_owned(),
        ));
    }
    Ok(())
}

/// The expansion of one operation's root selection set.
struct Walk<'a, 'd, 'b> {
    op: OpType,
    operation_name: Option<&'d str>,
    batch_index: usize,
    fragments: &'a HashMap<&'d str, &'a FragmentDefinition<'d, &'d str>>,
    /// Fragments and inline fragments being expanded, outermost first
    /// (`None` for an inline fragment).
    stack: Vec<Option<&'d str>>,
    budget: &'b mut Budget,
    out: &'b mut Vec<Call>,
}

impl<'a, 'd> Walk<'a, 'd, '_> {
    fn selection_set(&mut self, set: &'a SelectionSet<'d, &'d str>) -> Result<(), Opaque> {
        for item in &set.items {
            self.budget.work += 1;
            if self.budget.work > MAX_WORK {
                return Err(Opaque::TooComplex);
            }
            match item {
                Selection::Field(f) => {
                    if self.out.len() >= MAX_CALLS {
                        return Err(Opaque::TooComplex);
                    }
                    self.out.push(Call {
                        op: self.op,
                        operation_name: self.operation_name.map(str::to_owned),
                        field: f.name.to_owned(),
                        alias: f.alias.map(str::to_owned),
                        batch_index: self.batch_index,
                        labels: field_labels(self.op, f.name),
                        args: f
                            .arguments
                            .iter()
                            .filter_map(|(k, v)| Some(((*k).to_owned(), arg_text(v)?)))
                            .take(MAX_ARGS)
                            .collect(),
                    });
                }
                Selection::InlineFragment(inline) => {
                    self.enter(None)?;
                    self.selection_set(&inline.selection_set)?;
                    self.stack.pop();
                }
                Selection::FragmentSpread(spread) => {
                    let name = spread.fragment_name;
                    let Some(fragment) = self.fragments.get(name).copied() else {
                        return Err(Opaque::BadFragment(text::detail(&format!(
                            "unknown fragment {name}"
                        ))));
                    };
                    if self.stack.contains(&Some(name)) {
                        return Err(Opaque::BadFragment(text::detail(&format!(
                            "fragment {name} spreads itself"
                        ))));
                    }
                    self.enter(Some(name))?;
                    self.selection_set(&fragment.selection_set)?;
                    self.stack.pop();
                }
            }
        }
        Ok(())
    }

    fn enter(&mut self, fragment: Option<&'d str>) -> Result<(), Opaque> {
        if self.stack.len() >= MAX_FRAGMENT_DEPTH {
            return Err(Opaque::TooComplex);
        }
        self.stack.push(fragment);
        Ok(())
    }
}

/// Whether `{`, `[` and `(` nest deeper than `max` in `doc`, outside
/// strings, block strings and comments.
///
/// This mirrors `graphql-parser`'s tokenizer (0.4): a comment runs from `#`
/// to `\r` or `\n`; a string ends at an unescaped `"` and fails at a
/// newline; a block string ends at the first non-overlapping `"""` not
/// preceded by `\`. Where the tokenizer would fail, the scan stops: the
/// parser goes no further either.
fn nesting_exceeds(doc: &str, max: usize) -> bool {
    let mut depth = 0usize;
    let mut rest = doc;
    while let Some(c) = rest.chars().next() {
        let after = rest.get(c.len_utf8()..).unwrap_or("");
        match c {
            '#' => {
                rest = match after.find(['\r', '\n']) {
                    Some(i) => after.get(i..).unwrap_or(""),
                    None => "",
                };
                continue;
            }
            '"' => {
                let Some(next) = skip_string(after) else {
                    return false;
                };
                rest = next;
                continue;
            }
            '(' | '[' | '{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        rest = after;
    }
    false
}

/// Skips a string whose opening `"` was just read; returns what follows it,
/// or `None` where the tokenizer would fail (unterminated string).
fn skip_string(after_quote: &str) -> Option<&str> {
    if let Some(tail) = after_quote.strip_prefix("\"\"") {
        for (end, _) in tail.match_indices("\"\"\"") {
            if !tail.get(..end).unwrap_or("").ends_with('\\') {
                return tail.get(end + 3..);
            }
        }
        return None;
    }
    let mut escaped = false;
    for (i, c) in after_quote.char_indices() {
        match c {
            '"' if !escaped => return after_quote.get(i + 1..),
            '\n' => return None,
            _ => {}
        }
        escaped = !escaped && c == '\\';
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn fields(i: &Inspection) -> Vec<(OpType, &str)> {
        i.calls().iter().map(|c| (c.op, c.field.as_str())).collect()
    }

    #[test]
    fn labels_from_op_type_and_words() {
        let l = |op, f| field_labels(op, f);
        assert_eq!(l(OpType::Query, "me"), Labels::of(&[Label::Read]));
        assert_eq!(
            l(OpType::Mutation, "customDomainCreate"),
            Labels::of(&[Label::Write])
        );
        let di = Labels::of(&[Label::Write, Label::Destructive, Label::Irreversible]);
        assert_eq!(l(OpType::Mutation, "volumeDelete"), di);
        assert_eq!(l(OpType::Mutation, "deleteVolume"), di);
        assert_eq!(l(OpType::Mutation, "delete_volume"), di);
        assert_eq!(l(OpType::Mutation, "PurgeCache"), di);
        let d = Labels::of(&[Label::Write, Label::Destructive]);
        assert_eq!(l(OpType::Mutation, "tokenRevoke"), d);
        assert_eq!(l(OpType::Mutation, "deploymentRollBack"), d);
        assert_eq!(l(OpType::Mutation, "deploymentRollback"), d);
        assert_eq!(
            l(OpType::Mutation, "volumedelete"),
            Labels::of(&[Label::Write])
        );
        assert_eq!(
            l(OpType::Mutation, "dropdownSet"),
            Labels::of(&[Label::Write])
        );
        assert_eq!(
            l(OpType::Query, "deletedItems"),
            Labels::of(&[Label::Read]),
            "deleted is not in the list"
        );
    }

    #[test]
    fn nesting_scan_skips_strings_and_comments() {
        assert!(!nesting_exceeds("{ a(x: \"{{{{{{\") }", 3));
        assert!(!nesting_exceeds("{ a # {{{{{{\n }", 3));
        assert!(!nesting_exceeds(
            "{ a(x: \"\"\"{{{{{{\\\"\"\"{{{{\"\"\") }",
            3
        ));
        assert!(nesting_exceeds("{{{{", 3));
        assert!(!nesting_exceeds("{{{", 3));
        assert!(nesting_exceeds("{ a # x\r{{{{ }", 3));
        assert!(!nesting_exceeds("{ a(x: \"\\\"{{{{\") }", 3));
    }

    #[test]
    fn deep_nesting_is_too_complex_not_a_crash() {
        let doc = format!("{}{}", "{a".repeat(200), "}".repeat(200));
        assert_eq!(
            inspect_document(&doc),
            Inspection::opaque(Opaque::TooComplex)
        );
        let doc = format!("{}{}", "{a".repeat(MAX_NESTING), "}".repeat(MAX_NESTING));
        assert_eq!(fields(&inspect_document(&doc)), [(OpType::Query, "a")]);
    }

    #[test]
    fn strict_json_refuses_nested_duplicates() {
        assert_eq!(
            parse_strict_json(br#"{"a":{"b":1,"b":2}}"#),
            Err(Opaque::DuplicateKey("b".to_owned()))
        );
        assert!(parse_strict_json(br#"{"a":{"b":1,"c":[{"b":2}]}}"#).is_ok());
        let body = br#"{"query":"{ me }","variables":{"x":{"y":1,"y":2}}}"#;
        assert!(matches!(
            inspect_body(body),
            Inspection::Opaque {
                reason: Opaque::DuplicateKey(_)
            }
        ));
    }

    #[test]
    fn sha256_of_empty_string() {
        assert_eq!(
            sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
