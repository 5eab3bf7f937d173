//! Sinks against a loopback HTTP server started by each test: records
//! arrive complete and in order; a slow or dead sink never blocks
//! `append`; nothing is lost once it comes back; past the spool's bound
//! the log says so. Tests wait on events (a flush, a gate the test opens),
//! never on time; the caps are generous.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use blastwall_audit::sinks::{OtlpSignal, SinkConfig, SinkOptions, Sinks};
use blastwall_audit::{AuditLog, FsyncPolicy, Kind, read_events};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

use super::common::{SESSION, TestResult, sample_data, sample_kind};

const CAP: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
struct Request {
    path: String,
    body: Vec<u8>,
}

/// A loopback HTTP/1.1 server that records every request and answers 200
/// once its gate is open.
#[derive(Clone)]
struct Server {
    port: u16,
    received: Arc<Mutex<Vec<Request>>>,
    gate: Arc<(Mutex<bool>, Condvar)>,
}

impl Server {
    fn start(open: bool) -> Result<Server, std::io::Error> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        Server::serve(listener, open)
    }

    fn on_port(port: u16) -> Result<Server, std::io::Error> {
        Server::serve(TcpListener::bind(("127.0.0.1", port))?, true)
    }

    fn serve(listener: TcpListener, open: bool) -> Result<Server, std::io::Error> {
        let server = Server {
            port: listener.local_addr()?.port(),
            received: Arc::default(),
            gate: Arc::new((Mutex::new(open), Condvar::new())),
        };
        let s = server.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || s.handle(conn));
            }
        });
        Ok(server)
    }

    fn handle(&self, conn: TcpStream) {
        let Ok(mut write) = conn.try_clone() else {
            return;
        };
        let mut read = BufReader::new(conn);
        loop {
            let mut line = String::new();
            if read.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let path = line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            let mut length = 0usize;
            loop {
                let mut h = String::new();
                if read.read_line(&mut h).unwrap_or(0) == 0 {
                    return;
                }
                if h.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = h.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            if read.read_exact(&mut body).is_err() {
                return;
            }
            {
                let (open, cv) = &*self.gate;
                let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
                while !*open {
                    open = cv.wait(open).unwrap_or_else(|e| e.into_inner());
                }
            }
            self.received
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Request { path, body });
            if write
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_err()
            {
                return;
            }
        }
    }

    fn open(&self) {
        let (open, cv) = &*self.gate;
        *open.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requests(&self) -> Vec<Request> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every record the webhook got, in order of arrival.
    fn webhook_records(&self) -> Result<Vec<Value>, serde_json::Error> {
        let mut out = Vec::new();
        for r in self.requests() {
            let batch: Vec<Value> = serde_json::from_slice(&r.body)?;
            out.extend(batch);
        }
        Ok(out)
    }
}

/// A port nothing listens on (bound, then released).
fn dead_port() -> Result<u16, std::io::Error> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn quick() -> SinkOptions {
    SinkOptions {
        min_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        timeout: Duration::from_secs(10),
        ..SinkOptions::default()
    }
}

/// Writes `n` sample records (not sealed) with `sinks` as the tap.
fn write_with(path: &Path, sinks: &Arc<Sinks>, n: u64) -> TestResult {
    let mut log = AuditLog::create(path, SESSION, FsyncPolicy::Never)?.with_tap(Arc::clone(sinks));
    for i in 0..n {
        let kind = sample_kind(i, n, false);
        log.append(kind, sample_data(kind, i))?;
    }
    Ok(())
}

fn seqs(records: &[Value]) -> Vec<u64> {
    records.iter().filter_map(|r| r["seq"].as_u64()).collect()
}

#[test]
fn a_webhook_gets_every_record_in_order_with_its_exact_bytes() -> TestResult {
    let server = Server::start(true)?;
    let dir = tempfile::tempdir()?;
    let sinks = Arc::new(Sinks::start_with(
        vec![SinkConfig::Webhook {
            url: server.url("/hook"),
        }],
        dir.path(),
        quick(),
    )?);
    let log = dir.path().join("audit.jsonl");
    write_with(&log, &sinks, 500)?;
    assert!(sinks.flush(CAP));
    let records = server.webhook_records()?;
    assert_eq!(seqs(&records), (0..500).collect::<Vec<_>>());
    assert!(server.requests().iter().all(|r| r.path == "/hook"));
    // The bodies hold the lines byte for byte.
    let text = std::fs::read_to_string(&log)?;
    let first = server.requests()[0].body.clone();
    let first_line = text.lines().next().ok_or("empty log")?;
    assert!(first.starts_with(format!("[{first_line}").as_bytes()));
    let status = sinks.status();
    assert_eq!(
        (status[0].sent, status[0].queued, status[0].spooled),
        (500, 0, 0)
    );
    Ok(())
}

#[test]
fn a_slow_sink_never_blocks_append_and_loses_nothing() -> TestResult {
    // The server holds every request until the test opens its gate: while
    // it is closed, the sink cannot deliver anything.
    let server = Server::start(false)?;
    let dir = tempfile::tempdir()?;
    let options = SinkOptions {
        memory_records: 64,
        ..quick()
    };
    // The spool directory need not exist yet.
    let spool = dir.path().join("spool");
    let sinks = Arc::new(Sinks::start_with(
        vec![SinkConfig::Webhook {
            url: server.url("/"),
        }],
        &spool,
        options,
    )?);
    // Every append returns though nothing can be delivered.
    write_with(&dir.path().join("audit.jsonl"), &sinks, 3000)?;
    let s = &sinks.status()[0];
    assert_eq!(s.sent, 0);
    assert!(s.spooled > 0, "{s:?}");
    assert!(std::fs::metadata(spool.join("sink-0.spool"))?.len() > 0);
    server.open();
    assert!(sinks.flush(CAP));
    assert_eq!(
        seqs(&server.webhook_records()?),
        (0..3000).collect::<Vec<_>>()
    );
    assert_eq!(std::fs::metadata(spool.join("sink-0.spool"))?.len(), 0);
    Ok(())
}

#[test]
fn a_dead_sink_gets_everything_once_it_comes_back() -> TestResult {
    let port = dead_port()?;
    let dir = tempfile::tempdir()?;
    let options = SinkOptions {
        memory_records: 50,
        ..quick()
    };
    let sinks = Arc::new(Sinks::start_with(
        vec![SinkConfig::Webhook {
            url: format!("http://127.0.0.1:{port}/in"),
        }],
        dir.path(),
        options,
    )?);
    write_with(&dir.path().join("audit.jsonl"), &sinks, 400)?;
    assert!(!sinks.flush(Duration::from_millis(1)));
    // It comes back on the same port.
    let server = Server::on_port(port)?;
    assert!(sinks.flush(CAP));
    assert_eq!(
        seqs(&server.webhook_records()?),
        (0..400).collect::<Vec<_>>()
    );
    let s = &sinks.status()[0];
    assert_eq!((s.sent, s.missed, s.behind), (400, 0, false));
    assert_eq!(s.last_error, None);
    Ok(())
}

#[test]
fn past_the_spool_bound_the_log_records_that_the_sink_is_behind() -> TestResult {
    let port = dead_port()?;
    let dir = tempfile::tempdir()?;
    let options = SinkOptions {
        memory_records: 5,
        spool_max_bytes: 4000,
        ..quick()
    };
    let sinks = Arc::new(Sinks::start_with(
        vec![SinkConfig::Webhook {
            url: format!("http://127.0.0.1:{port}/"),
        }],
        dir.path(),
        options,
    )?);
    let path = dir.path().join("audit.jsonl");
    let mut log =
        AuditLog::create(&path, SESSION, FsyncPolicy::Never)?.with_tap(Arc::clone(&sinks));
    log.append(Kind::SessionStart, json!({}))?;
    for i in 1..60 {
        log.append(Kind::Decision, sample_data(Kind::Decision, i))?;
    }
    let s = &sinks.status()[0];
    assert!(s.behind && s.missed > 0, "{s:?}");
    // The sink comes back and catches up with what it held.
    let server = Server::on_port(port)?;
    assert!(sinks.flush(CAP));
    log.append(Kind::SessionEnd, json!({}))?;
    drop(log);
    let alerts: Vec<Value> = read_events(&path)?
        .into_iter()
        .filter(|e| e.kind == Kind::Alert)
        .map(|e| e.data)
        .collect();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert_eq!(alerts[0]["rule"], "sink.behind");
    assert_eq!(alerts[1]["rule"], "sink.resumed");
    let first_missed = alerts[0]["first_missed_seq"].as_u64().ok_or("no seq")?;
    let last_missed = alerts[1]["last_missed_seq"].as_u64().ok_or("no seq")?;
    // What it got: the log up to the first miss, then from the resumption
    // on (the `sink.resumed` alert and session-end), in order.
    assert!(sinks.flush(CAP));
    let got = seqs(&server.webhook_records()?);
    let end = read_events(&path)?.len() as u64;
    let expected: Vec<u64> = (0..first_missed).chain(last_missed + 1..end).collect();
    assert_eq!(got, expected);
    assert_eq!(alerts[1]["missed"].as_u64(), Some(sinks.status()[0].missed));
    Ok(())
}

#[test]
fn otlp_logs_carry_the_record_and_genai_attributes() -> TestResult {
    let server = Server::start(true)?;
    let dir = tempfile::tempdir()?;
    let sinks = Arc::new(Sinks::start_with(
        vec![SinkConfig::Otlp {
            endpoint: server.url("/"),
            signal: OtlpSignal::Logs,
        }],
        dir.path(),
        quick(),
    )?);
    let path = dir.path().join("audit.jsonl");
    let mut log =
        AuditLog::create(&path, SESSION, FsyncPolicy::Never)?.with_tap(Arc::clone(&sinks));
    log.append(Kind::SessionStart, json!({}))?;
    log.append(
        Kind::Decision,
        json!({"action": {"kind": "net", "method": "GET", "host": "api.github.com", "port": 443, "path": "/user"},
               "verdict": "allow", "rule": {"id": "network.rule[0]"}, "reason": "ok", "labels": ["read"]}),
    )?;
    log.append(
        Kind::Alert,
        json!({"rule": "anomaly.first-contact", "reason": "x"}),
    )?;
    drop(log);
    assert!(sinks.flush(CAP));
    let reqs = server.requests();
    assert!(reqs.iter().all(|r| r.path == "/v1/logs"), "{reqs:?}");
    let mut records = Vec::new();
    for r in &reqs {
        let v: Value = serde_json::from_slice(&r.body)?;
        let logs = v["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
            .as_array()
            .ok_or("no logRecords")?
            .clone();
        records.extend(logs);
    }
    assert_eq!(records.len(), 3);
    let lines: Vec<String> = std::fs::read_to_string(&path)?
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(records[1]["body"]["stringValue"], lines[1].as_str());
    let attr = |rec: &Value, key: &str| -> Value {
        rec["attributes"]
            .as_array()
            .and_then(|a| a.iter().find(|kv| kv["key"] == key))
            .map(|kv| kv["value"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(
        attr(&records[1], "gen_ai.tool.name"),
        json!({"stringValue": "http"})
    );
    assert_eq!(
        attr(&records[1], "gen_ai.operation.name"),
        json!({"stringValue": "execute_tool"})
    );
    assert_eq!(
        attr(&records[1], "server.address"),
        json!({"stringValue": "api.github.com"})
    );
    assert_eq!(
        attr(&records[1], "blastwall.audit.seq"),
        json!({"intValue": "1"})
    );
    assert_eq!(records[2]["severityText"], "WARN");
    assert_eq!(records[0]["timeUnixNano"].as_str().map(str::len), Some(19));
    Ok(())
}

#[test]
fn otlp_traces_are_one_span_per_record_in_the_session_trace() -> TestResult {
    let server = Server::start(true)?;
    let dir = tempfile::tempdir()?;
    let sinks = Arc::new(Sinks::start_with(
        vec![SinkConfig::Otlp {
            endpoint: server.url("/otel/"),
            signal: OtlpSignal::Traces,
        }],
        dir.path(),
        quick(),
    )?);
    write_with(&dir.path().join("audit.jsonl"), &sinks, 4)?;
    assert!(sinks.flush(CAP));
    let reqs = server.requests();
    assert!(reqs.iter().all(|r| r.path == "/otel/v1/traces"), "{reqs:?}");
    let mut spans = Vec::new();
    for r in &reqs {
        let v: Value = serde_json::from_slice(&r.body)?;
        spans.extend(
            v["resourceSpans"][0]["scopeSpans"][0]["spans"]
                .as_array()
                .ok_or("no spans")?
                .clone(),
        );
    }
    assert_eq!(spans.len(), 4);
    assert!(spans.iter().all(|s| s["traceId"] == spans[0]["traceId"]));
    assert_eq!(spans[0]["traceId"].as_str().map(str::len), Some(32));
    assert_eq!(spans[1]["name"], "execute_tool http");
    assert_eq!(spans[0]["name"], "blastwall session-start");
    Ok(())
}

#[test]
fn a_file_sink_is_a_byte_for_byte_copy() -> TestResult {
    let dir = tempfile::tempdir()?;
    let copy = dir.path().join("copy.jsonl");
    let sinks = Arc::new(Sinks::start_with(
        vec![SinkConfig::File { path: copy.clone() }],
        dir.path(),
        quick(),
    )?);
    let path = dir.path().join("audit.jsonl");
    write_with(&path, &sinks, 300)?;
    assert!(sinks.flush(CAP));
    assert_eq!(std::fs::read(&copy)?, std::fs::read(&path)?);
    Ok(())
}

#[test]
fn bad_sink_urls_are_refused_at_start() -> TestResult {
    let dir = tempfile::tempdir()?;
    for url in [
        "ftp://example.com/x",
        "not a url",
        "http://user:pw@example.com/",
    ] {
        let e = Sinks::start(
            vec![SinkConfig::Webhook {
                url: url.to_owned(),
            }],
            dir.path(),
        );
        assert!(e.is_err(), "{url}");
    }
    Ok(())
}

/// The request bodies a server received.
type Bodies = Arc<Mutex<Vec<Vec<u8>>>>;

/// A server that answers every request with a chunked body and then closes
/// the connection, or with a 503 the first `fail` times.
fn awkward_server(fail: usize) -> Result<(u16, Bodies), std::io::Error> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let got: Bodies = Arc::default();
    let store = Arc::clone(&got);
    std::thread::spawn(move || {
        let mut failures = 0;
        for conn in listener.incoming().flatten() {
            let Ok(mut write) = conn.try_clone() else {
                continue;
            };
            let mut read = BufReader::new(conn);
            let mut length = 0usize;
            let mut line = String::new();
            while read.read_line(&mut line).unwrap_or(0) > 0 {
                if line.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0u8; length];
            if read.read_exact(&mut body).is_err() {
                continue;
            }
            let answer: &[u8] = if failures < fail {
                failures += 1;
                b"HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy"
            } else {
                store.lock().unwrap_or_else(|e| e.into_inner()).push(body);
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nok\r\n0\r\n\r\n"
            };
            let _ = write.write_all(answer);
        }
    });
    Ok((port, got))
}

#[test]
fn chunked_answers_closed_connections_and_errors_are_handled() -> TestResult {
    let (port, got) = awkward_server(3)?;
    let dir = tempfile::tempdir()?;
    let options = SinkOptions {
        batch_records: 7,
        ..quick()
    };
    let sinks = Arc::new(Sinks::start_with(
        vec![SinkConfig::Webhook {
            url: format!("http://127.0.0.1:{port}/x"),
        }],
        dir.path(),
        options,
    )?);
    write_with(&dir.path().join("audit.jsonl"), &sinks, 50)?;
    assert!(sinks.flush(CAP));
    let mut records = Vec::new();
    for body in got.lock().map_err(|e| e.to_string())?.iter() {
        let batch: Vec<Value> = serde_json::from_slice(body)?;
        records.extend(batch);
    }
    assert_eq!(seqs(&records), (0..50).collect::<Vec<_>>());
    Ok(())
}
