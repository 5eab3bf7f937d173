//! Audit records as OTLP/HTTP JSON: log records for `/v1/logs`, spans for
//! `/v1/traces`.
//!
//! Every record keeps its exact line (the log record's body, the span's
//! `blastwall.audit.record` attribute), so a collector holds something it
//! can verify with the hash rule of `docs/audit-schema.md`. Attributes
//! follow the OpenTelemetry semantic conventions where one fits: a decision
//! is a GenAI tool call (`gen_ai.operation.name` = `execute_tool`,
//! `gen_ai.tool.name`: `http`, `exec`, `fs`, `sql`, or the MCP tool's name),
//! the session is `gen_ai.conversation.id`, and a network action carries
//! `http.request.method`, `server.address`, `server.port` and `url.path`.
//! blastwall's own facts are under `blastwall.*`.

use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use crate::schema::{Event, Kind};

/// OTLP severity numbers.
const SEVERITY_INFO: u32 = 9;
const SEVERITY_WARN: u32 = 13;

fn string(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

fn int(key: &str, value: u64) -> Value {
    // OTLP JSON writes 64-bit integers as strings.
    json!({"key": key, "value": {"intValue": value.to_string()}})
}

fn strings(key: &str, values: &[&str]) -> Value {
    let values: Vec<Value> = values.iter().map(|v| json!({"stringValue": v})).collect();
    json!({"key": key, "value": {"arrayValue": {"values": values}}})
}

fn time_nanos(ev: &Event) -> String {
    let nanos =
        u128::from(ev.time.unix_secs()) * 1_000_000_000 + u128::from(ev.time.subsec_nanos());
    nanos.to_string()
}

/// The tool name a decision's action is, for `gen_ai.tool.name`.
fn tool_name(action: &Value) -> String {
    match action["kind"].as_str() {
        Some("net") => "http".to_owned(),
        Some("mcp") => action["tool"].as_str().unwrap_or("mcp").to_owned(),
        Some(kind) => kind.to_owned(),
        None => "unknown".to_owned(),
    }
}

/// The attributes of one record.
fn attributes(ev: &Event) -> Vec<Value> {
    let mut out = vec![
        string("gen_ai.conversation.id", &ev.session),
        string("blastwall.session.id", &ev.session),
        int("blastwall.audit.seq", ev.seq),
        string("blastwall.audit.kind", ev.kind.as_str()),
        string("blastwall.audit.hash", &ev.hash.to_hex()),
        string("blastwall.audit.prev", &ev.prev.to_hex()),
    ];
    let d = &ev.data;
    match ev.kind {
        Kind::Decision => {
            let action = &d["action"];
            out.push(string("gen_ai.operation.name", "execute_tool"));
            out.push(string("gen_ai.tool.name", &tool_name(action)));
            if let Some(v) = d["verdict"].as_str() {
                out.push(string("blastwall.verdict", v));
            }
            if let Some(r) = d["rule"]["id"].as_str().or_else(|| d["rule"].as_str()) {
                out.push(string("blastwall.rule", r));
            }
            if let Some(r) = d["reason"].as_str() {
                out.push(string("blastwall.reason", r));
            }
            if let Some(labels) = d["labels"].as_array() {
                let labels: Vec<&str> = labels.iter().filter_map(Value::as_str).collect();
                out.push(strings("blastwall.labels", &labels));
            }
            if let Some(a) = d["approval"].as_str() {
                out.push(string("blastwall.approval.id", a));
            }
            match action["kind"].as_str() {
                Some("net") => {
                    if let Some(m) = action["method"].as_str() {
                        out.push(string("http.request.method", m));
                    }
                    if let Some(h) = action["host"].as_str() {
                        out.push(string("server.address", h));
                    }
                    if let Some(p) = action["port"].as_u64() {
                        out.push(int("server.port", p));
                    }
                    if let Some(p) = action["path"].as_str() {
                        out.push(string("url.path", p));
                    }
                    if let Some(u) = action["url"].as_str() {
                        out.push(string("url.full", u));
                    }
                }
                Some("exec") => {
                    if let Some(argv) = action["argv"].as_array() {
                        let argv: Vec<&str> = argv.iter().filter_map(Value::as_str).collect();
                        out.push(strings("process.command_args", &argv));
                    }
                }
                Some("fs") => {
                    if let Some(p) = action["path"].as_str() {
                        out.push(string("file.path", p));
                    }
                }
                _ => {}
            }
        }
        Kind::Outcome => {
            if let Some(o) = d["outcome"].as_str() {
                out.push(string("blastwall.outcome", o));
            }
            if let Some(s) = d["decision_seq"].as_u64() {
                out.push(int("blastwall.decision_seq", s));
            }
        }
        Kind::Alert => {
            if let Some(r) = d["rule"].as_str() {
                out.push(string("blastwall.alert.rule", r));
            }
            if let Some(r) = d["reason"].as_str() {
                out.push(string("blastwall.alert.reason", r));
            }
        }
        Kind::Checkpoint => {
            if let Some(s) = d["head_seq"].as_u64() {
                out.push(int("blastwall.checkpoint.head_seq", s));
            }
            for (key, member) in [
                ("blastwall.checkpoint.head_hash", "head_hash"),
                ("blastwall.checkpoint.key", "key"),
                ("blastwall.checkpoint.sig", "sig"),
            ] {
                if let Some(v) = d[member].as_str() {
                    out.push(string(key, v));
                }
            }
        }
        Kind::SessionStart | Kind::SessionEnd => {}
    }
    out
}

fn resource() -> Value {
    json!({"attributes": [string("service.name", "blastwall")]})
}

fn scope() -> Value {
    json!({"name": "blastwall.audit", "version": crate::SCHEMA_VERSION.to_string()})
}

/// The record's line as text (a line that is not UTF-8 cannot come from
/// the writer; it is sent lossily rather than dropped).
fn text(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    String::from_utf8_lossy(line).into_owned()
}

/// An `ExportLogsServiceRequest` holding `lines`.
pub(crate) fn logs(lines: &[&[u8]]) -> Vec<u8> {
    let records: Vec<Value> = lines
        .iter()
        .map(|line| {
            let body = text(line);
            match serde_json::from_slice::<Event>(line) {
                Ok(ev) => {
                    let warn = ev.kind == Kind::Alert;
                    json!({
                        "timeUnixNano": time_nanos(&ev),
                        "observedTimeUnixNano": time_nanos(&ev),
                        "severityNumber": if warn { SEVERITY_WARN } else { SEVERITY_INFO },
                        "severityText": if warn { "WARN" } else { "INFO" },
                        "eventName": format!("blastwall.audit.{}", ev.kind.as_str()),
                        "body": {"stringValue": body},
                        "attributes": attributes(&ev),
                    })
                }
                Err(_) => json!({
                    "severityNumber": SEVERITY_WARN,
                    "severityText": "WARN",
                    "body": {"stringValue": body},
                }),
            }
        })
        .collect();
    let request = json!({
        "resourceLogs": [{
            "resource": resource(),
            "scopeLogs": [{"scope": scope(), "logRecords": records}],
        }]
    });
    serde_json::to_vec(&request).unwrap_or_default()
}

/// An `ExportTraceServiceRequest` with one span per record: the trace is
/// the session (its id the first 16 bytes of SHA-256 of the session id),
/// the span id the first 8 bytes of the record's hash, the span instant (it
/// starts and ends at the record's time). A decision's span is named
/// `execute_tool {gen_ai.tool.name}`, as the GenAI conventions name a tool
/// call.
pub(crate) fn traces(lines: &[&[u8]]) -> Vec<u8> {
    let spans: Vec<Value> = lines
        .iter()
        .filter_map(|line| {
            serde_json::from_slice::<Event>(line)
                .ok()
                .map(|ev| (line, ev))
        })
        .map(|(line, ev)| {
            let trace_id = hex::encode(&Sha256::digest(ev.session.as_bytes())[..16]);
            let span_id = hex::encode(&ev.hash.as_bytes()[..8]);
            let name = if ev.kind == Kind::Decision {
                format!("execute_tool {}", tool_name(&ev.data["action"]))
            } else {
                format!("blastwall {}", ev.kind.as_str())
            };
            let mut attrs = attributes(&ev);
            attrs.push(string("blastwall.audit.record", &text(line)));
            let mut span = Map::new();
            span.insert("traceId".into(), json!(trace_id));
            span.insert("spanId".into(), json!(span_id));
            span.insert("name".into(), json!(name));
            span.insert("kind".into(), json!(1));
            span.insert("startTimeUnixNano".into(), json!(time_nanos(&ev)));
            span.insert("endTimeUnixNano".into(), json!(time_nanos(&ev)));
            span.insert("attributes".into(), Value::Array(attrs));
            if ev.kind == Kind::Alert {
                span.insert(
                    "status".into(),
                    json!({"code": 2, "message": ev.data["reason"]}),
                );
            }
            Value::Object(span)
        })
        .collect();
    let request = json!({
        "resourceSpans": [{
            "resource": resource(),
            "scopeSpans": [{"scope": scope(), "spans": spans}],
        }]
    });
    serde_json::to_vec(&request).unwrap_or_default()
}
