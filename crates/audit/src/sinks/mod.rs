//! Sinks: copies of the audit log sent elsewhere as it is written (a file,
//! an OpenTelemetry collector, a webhook), without ever slowing the agent.
//!
//! The session's own log is written first and is always complete; a sink
//! is a copy. [`Sinks::offer`] (called by the writer through its
//! [`crate::LineTap`], for every record, checkpoints included) only queues:
//! each sink has its own background thread that delivers in order, in
//! batches, and retries with backoff while the sink is slow or down. So:
//!
//! - **A slow or dead sink never blocks `append`.** `offer` takes a short
//!   lock and either pushes the line into the sink's memory queue or, once
//!   that holds [`SinkOptions::memory_records`] records, appends it to the
//!   sink's spool file under the session directory (`sink-N.spool`, mode
//!   0600, one record per line: a `write(2)` into the page cache, no
//!   network, no `fsync`). The delivery thread empties the memory queue
//!   first, then the spool, in order; new records keep going to the spool
//!   until it is empty, so order holds.
//! - **Nothing is lost while the spool has room.** A record leaves the queue
//!   only once the sink accepted it (a 2xx answer, or the file write
//!   returned); after a failure the same batch is sent again.
//! - **At the bound.** When the spool reaches [`SinkOptions::spool_max_bytes`]
//!   (64 MiB by default), further records are not queued for that sink: it
//!   is marked *behind*, and [`Sinks::take_alerts`] hands the writer one
//!   `alert` record (`rule` `sink.behind`, the sink, the first seq it
//!   misses), which goes into the session's log. When the sink has caught
//!   up with what it holds, a `sink.resumed` alert says how many records it
//!   missed and from which seq to which. Those records are in the session's
//!   log: re-feed the sink from it (`blastwall log --session S --json`,
//!   from the first missed seq).
//! - **At the end of a session** the supervisor calls [`Sinks::flush`]
//!   with a deadline: what is still queued when it passes stays in the
//!   spool file and in the log.
//!
//! Delivery: the file sink appends the lines and `fdatasync`s each batch;
//! the webhook sink `POST`s a JSON array of the records, each with its
//! exact bytes (`[line,line,…]`), so a receiver can check the hashes; the
//! OTLP sink `POST`s OTLP/HTTP JSON to `<endpoint>/v1/logs` (log records)
//! or `<endpoint>/v1/traces` (one span per record), with the attributes
//! described in the `otlp` module. HTTP is HTTP/1.1 from a small client of
//! this crate (`http`), over TLS with rustls and the webpki roots for
//! `https://` URLs.

mod http;
mod otlp;

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use crate::line;
use crate::writer::LineTap;

/// Which OTLP signal a sink sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OtlpSignal {
    /// Log records, to `<endpoint>/v1/logs`.
    Logs,
    /// Spans, to `<endpoint>/v1/traces`.
    Traces,
}

impl std::str::FromStr for OtlpSignal {
    type Err = String;

    /// `logs`, or `spans` / `traces` (the manifest's `[audit] sinks`
    /// spelling is `spans`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "logs" => Ok(OtlpSignal::Logs),
            "spans" | "traces" => Ok(OtlpSignal::Traces),
            other => Err(format!(
                "unknown OTLP signal {other:?}: expected logs or spans"
            )),
        }
    }
}

/// One sink, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkConfig {
    /// An extra copy of the log in a file (appended to, created 0600).
    File {
        /// The file.
        path: PathBuf,
    },
    /// An OpenTelemetry collector's OTLP/HTTP endpoint, e.g.
    /// `http://127.0.0.1:4318`.
    Otlp {
        /// The endpoint; `/v1/logs` or `/v1/traces` is appended.
        endpoint: String,
        /// What to send.
        signal: OtlpSignal,
    },
    /// A URL that gets a `POST` of each batch of records as a JSON array.
    Webhook {
        /// The URL.
        url: String,
    },
}

impl SinkConfig {
    /// A short name for messages and alerts, e.g. `otlp http://…/v1/logs`.
    pub fn name(&self) -> String {
        match self {
            SinkConfig::File { path } => format!("file {}", path.display()),
            SinkConfig::Otlp { endpoint, signal } => {
                let suffix = match signal {
                    OtlpSignal::Logs => "/v1/logs",
                    OtlpSignal::Traces => "/v1/traces",
                };
                format!("otlp {}{suffix}", endpoint.trim_end_matches('/'))
            }
            SinkConfig::Webhook { url } => format!("webhook {url}"),
        }
    }
}

/// How the sinks queue and retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkOptions {
    /// Records held in memory per sink before the spool file is used.
    pub memory_records: usize,
    /// The spool file's size at which a sink is marked behind.
    pub spool_max_bytes: u64,
    /// The most records in one delivery.
    pub batch_records: usize,
    /// Connect, send and answer timeout of one HTTP request.
    pub timeout: Duration,
    /// The first wait after a failed delivery; it doubles up to
    /// `max_backoff`.
    pub min_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for SinkOptions {
    /// 4096 records in memory, a 64 MiB spool, batches of 256, 5 s
    /// timeouts, retries from 100 ms backing off to 10 s.
    fn default() -> Self {
        SinkOptions {
            memory_records: 4096,
            spool_max_bytes: 64 * 1024 * 1024,
            batch_records: 256,
            timeout: Duration::from_secs(5),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// A sink that could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The URL or endpoint is not one the sink can send to.
    #[error("audit sink {name}: {reason}")]
    BadTarget {
        /// The sink.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A file (the file sink's, or a spool) could not be opened.
    #[error("audit sink {name}: cannot open {}: {error}", path.display())]
    Open {
        /// The sink.
        name: String,
        /// The file.
        path: PathBuf,
        /// The error from the operating system.
        error: io::Error,
    },
    /// The delivery thread could not be started.
    #[error("audit sink {name}: cannot start its thread: {error}")]
    Thread {
        /// The sink.
        name: String,
        /// The error from the operating system.
        error: io::Error,
    },
}

/// How one sink stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SinkStatus {
    /// The sink's name ([`SinkConfig::name`]).
    pub name: String,
    /// Records delivered.
    pub sent: u64,
    /// Records waiting in memory.
    pub queued: u64,
    /// Records waiting in the spool file.
    pub spooled: u64,
    /// Records not queued because the spool was full (they are in the
    /// session's log).
    pub missed: u64,
    /// Whether the sink is missing records now.
    pub behind: bool,
    /// The last delivery error, if the last attempt failed.
    pub last_error: Option<String>,
}

/// The sinks of one session: a queue and a delivery thread each.
#[derive(Debug)]
pub struct Sinks {
    sinks: Vec<Arc<Shared>>,
    threads: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    name: String,
    options: SinkOptions,
    queue: Mutex<Queue>,
    wake: Condvar,
}

#[derive(Debug)]
struct Queue {
    mem: VecDeque<Vec<u8>>,
    spool: Spool,
    /// Records taken by the delivery thread and not yet acknowledged.
    in_flight: usize,
    stop: bool,
    sent: u64,
    missed: u64,
    /// The seqs of the first and last record missed since the sink fell
    /// behind.
    missed_range: Option<(u64, u64)>,
    last_error: Option<String>,
    alerts: Vec<Value>,
}

/// A sink's spool file: records appended at `write_off`, delivered from
/// `read_off`.
#[derive(Debug)]
struct Spool {
    path: PathBuf,
    file: Option<File>,
    write_off: u64,
    read_off: u64,
    records: u64,
}

impl Spool {
    fn is_empty(&self) -> bool {
        self.records == 0
    }

    fn append(&mut self, line: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&self.path)?;
            self.file = Some(file);
        }
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("spool not open"));
        };
        file.write_all_at(line, self.write_off)?;
        self.write_off += u64::try_from(line.len()).unwrap_or(u64::MAX);
        self.records += 1;
        Ok(())
    }

    /// Up to `max` whole records from `read_off`, and their byte length.
    fn peek(&self, max: usize) -> io::Result<(Vec<Vec<u8>>, u64)> {
        let Some(file) = &self.file else {
            return Ok((Vec::new(), 0));
        };
        let want = self.write_off - self.read_off;
        let chunk = want.clamp(1, 4 * 1024 * 1024);
        let mut buf = vec![0u8; usize::try_from(chunk).unwrap_or(usize::MAX)];
        let n = file.read_at(&mut buf, self.read_off)?;
        buf.truncate(n);
        let mut out = Vec::new();
        let mut used = 0u64;
        for rec in buf.split_inclusive(|&b| b == b'\n') {
            if out.len() >= max || !rec.ends_with(b"\n") {
                break;
            }
            used += u64::try_from(rec.len()).unwrap_or(u64::MAX);
            out.push(rec.to_vec());
        }
        if out.is_empty() && n > 0 {
            // A record longer than the chunk: read it whole.
            let end = buf.len();
            let mut whole = buf;
            let mut off = self.read_off + u64::try_from(end).unwrap_or(u64::MAX);
            let mut byte = [0u8; 64 * 1024];
            while !whole.ends_with(b"\n") && off < self.write_off {
                let k = file.read_at(&mut byte, off)?;
                if k == 0 {
                    break;
                }
                whole.extend_from_slice(&byte[..k]);
                off += u64::try_from(k).unwrap_or(u64::MAX);
            }
            if let Some(pos) = whole.iter().position(|&b| b == b'\n') {
                whole.truncate(pos + 1);
                used = u64::try_from(whole.len()).unwrap_or(u64::MAX);
                out.push(whole);
            }
        }
        Ok((out, used))
    }

    fn consume(&mut self, records: usize, bytes: u64) -> io::Result<()> {
        self.read_off += bytes;
        self.records = self
            .records
            .saturating_sub(u64::try_from(records).unwrap_or(u64::MAX));
        if self.records == 0 {
            self.read_off = 0;
            self.write_off = 0;
            if let Some(file) = &self.file {
                file.set_len(0)?;
            }
        }
        Ok(())
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, Queue> {
    // A delivery thread that panicked left the queue consistent (every
    // change is a single step under the lock): keep using it.
    shared.queue.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The seq of a record line, from its fixed prefix.
fn seq_of(line: &[u8]) -> Option<u64> {
    line::prefix(line).map(|(_, seq)| seq)
}

impl Sinks {
    /// Starts one delivery thread per sink, with [`SinkOptions::default`];
    /// spool files go in `spool_dir` (in the session directory; created,
    /// mode 0700, if missing).
    pub fn start(configs: Vec<SinkConfig>, spool_dir: &Path) -> Result<Sinks, SinkError> {
        Sinks::start_with(configs, spool_dir, SinkOptions::default())
    }

    /// Starts the sinks with `options`.
    pub fn start_with(
        configs: Vec<SinkConfig>,
        spool_dir: &Path,
        options: SinkOptions,
    ) -> Result<Sinks, SinkError> {
        let mut sinks = Sinks {
            sinks: Vec::new(),
            threads: Vec::new(),
        };
        if !configs.is_empty() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(spool_dir)
                .map_err(|error| SinkError::Open {
                    name: "spool".to_owned(),
                    path: spool_dir.to_path_buf(),
                    error,
                })?;
        }
        for (i, config) in configs.into_iter().enumerate() {
            let name = config.name();
            let deliver = Deliver::new(&config, &options)?;
            let shared = Arc::new(Shared {
                name: name.clone(),
                options: options.clone(),
                queue: Mutex::new(Queue {
                    mem: VecDeque::new(),
                    spool: Spool {
                        path: spool_dir.join(format!("sink-{i}.spool")),
                        file: None,
                        write_off: 0,
                        read_off: 0,
                        records: 0,
                    },
                    in_flight: 0,
                    stop: false,
                    sent: 0,
                    missed: 0,
                    missed_range: None,
                    last_error: None,
                    alerts: Vec::new(),
                }),
                wake: Condvar::new(),
            });
            let worker = Arc::clone(&shared);
            let thread = std::thread::Builder::new()
                .name(format!("audit-sink-{i}"))
                .spawn(move || run(&worker, deliver))
                .map_err(|error| SinkError::Thread { name, error })?;
            sinks.sinks.push(shared);
            sinks.threads.push(thread);
        }
        Ok(sinks)
    }

    /// Queues one record line (newline included) for every sink. Never
    /// waits for a sink: see the module docs for what happens when one is
    /// slow, down, or far behind.
    pub fn offer(&self, line: &[u8]) {
        for shared in &self.sinks {
            let mut q = lock(shared);
            // The delivery thread sleeps only when it has nothing to send:
            // wake it (and a waiting `flush`) only then, so a busy sink
            // costs `offer` no system call.
            let idle = q.mem.is_empty() && q.spool.is_empty();
            let behind = q.missed_range.is_some();
            if q.spool.is_empty() && !behind && q.mem.len() < shared.options.memory_records {
                q.mem.push_back(line.to_vec());
            } else if !behind && q.spool.write_off < shared.options.spool_max_bytes {
                if let Err(e) = q.spool.append(line) {
                    miss(
                        &mut q,
                        shared,
                        line,
                        &format!("cannot write its spool file: {e}"),
                    );
                }
            } else {
                let reason = format!(
                    "its spool file reached {} bytes",
                    shared.options.spool_max_bytes
                );
                miss(&mut q, shared, line, &reason);
            }
            drop(q);
            if idle {
                shared.wake.notify_all();
            }
        }
    }

    /// Each sink's state.
    pub fn status(&self) -> Vec<SinkStatus> {
        self.sinks
            .iter()
            .map(|s| {
                let q = lock(s);
                SinkStatus {
                    name: s.name.clone(),
                    sent: q.sent,
                    queued: u64::try_from(q.mem.len()).unwrap_or(u64::MAX),
                    spooled: q.spool.records,
                    missed: q.missed,
                    behind: q.missed_range.is_some(),
                    last_error: q.last_error.clone(),
                }
            })
            .collect()
    }

    /// The alerts the sinks raised since the last call (`sink.behind`,
    /// `sink.resumed`), each the `data` of an `alert` record.
    pub fn take_alerts(&self) -> Vec<Value> {
        self.sinks
            .iter()
            .flat_map(|s| std::mem::take(&mut lock(s).alerts))
            .collect()
    }

    /// Waits until every sink has delivered everything queued, or until
    /// `timeout` has passed; `true` if everything was delivered.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        for shared in &self.sinks {
            let mut q = lock(shared);
            while !(q.mem.is_empty() && q.spool.is_empty() && q.in_flight == 0) {
                let now = Instant::now();
                if now >= deadline {
                    return false;
                }
                q = shared
                    .wake
                    .wait_timeout(q, deadline - now)
                    .map(|(q, _)| q)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
        }
        true
    }

    /// Flushes for at most `timeout`, stops the delivery threads and
    /// returns each sink's final state. What was not delivered stays in the
    /// spool files (and is in the session's log).
    pub fn shutdown(mut self, timeout: Duration) -> Vec<SinkStatus> {
        self.flush(timeout);
        let status = self.status();
        self.stop();
        status
    }

    fn stop(&mut self) {
        for shared in &self.sinks {
            lock(shared).stop = true;
            shared.wake.notify_all();
        }
        // A thread in the middle of a request finishes it (at most the
        // timeout) and then sees `stop`; it is not waited for.
        self.threads.clear();
    }
}

impl Drop for Sinks {
    fn drop(&mut self) {
        self.stop();
    }
}

impl LineTap for Sinks {
    fn offer(&self, line: &[u8]) {
        Sinks::offer(self, line);
    }

    fn take_alerts(&self) -> Vec<Value> {
        Sinks::take_alerts(self)
    }
}

/// Records a line the sink will not get; the first one raises `sink.behind`.
fn miss(q: &mut Queue, shared: &Shared, line: &[u8], why: &str) {
    let seq = seq_of(line).unwrap_or(0);
    q.missed += 1;
    match &mut q.missed_range {
        Some((_, last)) => *last = seq,
        None => {
            q.missed_range = Some((seq, seq));
            q.alerts.push(json!({
                "rule": "sink.behind",
                "reason": format!(
                    "audit sink {} is behind ({why}): it misses records from seq {seq} on; the session's log has them",
                    shared.name
                ),
                "sink": shared.name,
                "first_missed_seq": seq,
            }));
        }
    }
}

/// How one sink delivers a batch.
#[derive(Debug)]
enum Deliver {
    File { path: PathBuf, file: File },
    Webhook(http::Client),
    Otlp(http::Client, OtlpSignal),
}

impl Deliver {
    fn new(config: &SinkConfig, options: &SinkOptions) -> Result<Deliver, SinkError> {
        let name = config.name();
        let bad = |reason: String| SinkError::BadTarget {
            name: name.clone(),
            reason,
        };
        match config {
            SinkConfig::File { path } => {
                // Never through a symlink at the last component (the caller
                // checks the directories above it).
                let file = OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(path)
                    .map_err(|error| SinkError::Open {
                        name: name.clone(),
                        path: path.clone(),
                        error,
                    })?;
                Ok(Deliver::File {
                    path: path.clone(),
                    file,
                })
            }
            SinkConfig::Webhook { url } => {
                let target = http::Target::parse(url).map_err(bad)?;
                Ok(Deliver::Webhook(
                    http::Client::new(target, options.timeout).map_err(bad)?,
                ))
            }
            SinkConfig::Otlp { endpoint, signal } => {
                let target = http::Target::parse(endpoint).map_err(bad)?;
                let target = target.join(match signal {
                    OtlpSignal::Logs => "/v1/logs",
                    OtlpSignal::Traces => "/v1/traces",
                });
                Ok(Deliver::Otlp(
                    http::Client::new(target, options.timeout).map_err(bad)?,
                    *signal,
                ))
            }
        }
    }

    fn send(&mut self, batch: &[Vec<u8>]) -> Result<(), String> {
        match self {
            Deliver::File { path, file } => {
                let bytes = batch.concat();
                file.write_all(&bytes)
                    .and_then(|()| file.sync_data())
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))
            }
            Deliver::Webhook(client) => {
                let mut body = Vec::with_capacity(batch.iter().map(Vec::len).sum::<usize>() + 2);
                body.push(b'[');
                for (i, line) in batch.iter().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(line.strip_suffix(b"\n").unwrap_or(line));
                }
                body.push(b']');
                client.post("application/json", &body)
            }
            Deliver::Otlp(client, signal) => {
                let lines: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
                let body = match signal {
                    OtlpSignal::Logs => otlp::logs(&lines),
                    OtlpSignal::Traces => otlp::traces(&lines),
                };
                client.post("application/json", &body)
            }
        }
    }
}

/// Where a batch came from, to acknowledge it.
enum Taken {
    Mem(usize),
    Spool(usize, u64),
}

/// The delivery thread of one sink.
fn run(shared: &Shared, mut deliver: Deliver) {
    let options = &shared.options;
    let mut backoff = options.min_backoff;
    loop {
        // Take a batch (a copy: it leaves the queue only once delivered).
        let (batch, taken) = {
            let mut q = lock(shared);
            loop {
                if q.stop {
                    return;
                }
                if !q.mem.is_empty() || !q.spool.is_empty() {
                    break;
                }
                q = shared.wake.wait(q).unwrap_or_else(PoisonError::into_inner);
            }
            if q.mem.is_empty() {
                match q.spool.peek(options.batch_records) {
                    Ok((batch, bytes)) => {
                        let n = batch.len();
                        q.in_flight = n;
                        (batch, Taken::Spool(n, bytes))
                    }
                    Err(e) => {
                        q.last_error = Some(format!("cannot read the spool file: {e}"));
                        drop(q);
                        std::thread::sleep(options.max_backoff);
                        continue;
                    }
                }
            } else {
                let n = q.mem.len().min(options.batch_records);
                q.in_flight = n;
                (
                    q.mem.iter().take(n).cloned().collect::<Vec<_>>(),
                    Taken::Mem(n),
                )
            }
        };
        let result = deliver.send(&batch);
        let mut q = lock(shared);
        q.in_flight = 0;
        match result {
            Ok(()) => {
                backoff = options.min_backoff;
                q.last_error = None;
                q.sent += u64::try_from(batch.len()).unwrap_or(u64::MAX);
                match taken {
                    Taken::Mem(n) => {
                        q.mem.drain(..n);
                    }
                    Taken::Spool(n, bytes) => {
                        if let Err(e) = q.spool.consume(n, bytes) {
                            q.last_error = Some(format!("cannot truncate the spool file: {e}"));
                        }
                    }
                }
                let caught_up = q.mem.is_empty() && q.spool.is_empty();
                if caught_up && let Some((first, last)) = q.missed_range.take() {
                    let missed = q.missed;
                    q.alerts.push(json!({
                        "rule": "sink.resumed",
                        "reason": format!(
                            "audit sink {} caught up; it missed {missed} record(s), seq {first} to {last}: re-feed them from the session's log",
                            shared.name
                        ),
                        "sink": shared.name,
                        "missed": missed,
                        "first_missed_seq": first,
                        "last_missed_seq": last,
                    }));
                }
                drop(q);
                shared.wake.notify_all();
            }
            Err(e) => {
                q.last_error = Some(e);
                // Wait before the next attempt, waking early only to stop.
                let until = Instant::now() + backoff;
                loop {
                    if q.stop {
                        return;
                    }
                    let now = Instant::now();
                    if now >= until {
                        break;
                    }
                    q = shared
                        .wake
                        .wait_timeout(q, until - now)
                        .map(|(q, _)| q)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
                drop(q);
                shared.wake.notify_all();
                backoff = (backoff * 2).min(options.max_backoff);
            }
        }
    }
}
