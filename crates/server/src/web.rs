//! `blastwall serve`: the approvals page, its JSON API and its live event
//! stream, on loopback by default.
//!
//! # Who gets in
//!
//! - **The `Host` header** must be one this server answers to:
//!   `127.0.0.1:PORT`, `localhost:PORT`, `[::1]:PORT` (and, when listening
//!   elsewhere, that address and the names given). A page on another site
//!   that rebinds its DNS name to 127.0.0.1 sends its own name and is
//!   refused (DNS rebinding).
//! - **The access token** (random, 256 bits) is in the URL `serve` prints.
//!   The first visit exchanges it for a session cookie (`HttpOnly`,
//!   `SameSite=Strict`) and is redirected to the same page without it.
//!   Every other request needs that cookie; the token is never put in
//!   `serve.json`, in a webhook or on the page.
//! - **Changes** are POSTs only, each with the session's CSRF token (a form
//!   field or an `X-CSRF-Token` header, bound to the cookie on the server)
//!   and an `Origin` equal to the page's own. A GET never changes anything.
//! - **Every response** carries a strict Content-Security-Policy
//!   (`default-src 'self'`, no inline script, `frame-ancestors 'none'`),
//!   `X-Frame-Options: DENY`, `nosniff`, `no-store`, and
//!   `Referrer-Policy: same-origin` (no referrer leaves the page;
//!   `no-referrer` would make the browser send `Origin: null` on the
//!   page's own POSTs, which the Origin check then refuses).
//!
//! Listening beyond loopback takes [`ServeConfig::allow_remote`] and still
//! needs the token; over plain HTTP the token and cookie then cross the
//! network in clear (docs/cli.md says so).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use blastwall_gate::{ApprovalStore, SqliteStore, StoreError};
use blastwall_session::Home;
use futures_util::stream::{self, Stream, StreamExt as _};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast;

use crate::decide::{Decided, decide};
use crate::feed::{self, Feed, FeedEvent};
use crate::page;
use crate::token;

/// The Content-Security-Policy of every response.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// How many browser sessions (cookies) are kept; the oldest goes first.
const MAX_SESSIONS: usize = 64;

/// How `serve` runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// `BLASTWALL_HOME`.
    pub home: Home,
    /// Where to listen (`127.0.0.1:4477` by default).
    pub listen: SocketAddr,
    /// Whether a non-loopback `listen` is allowed (an explicit flag).
    pub allow_remote: bool,
    /// Further `Host` values to answer to (`name` or `name:port`), for a
    /// non-loopback listener reached by name.
    pub hosts: Vec<String>,
    /// Who decides, as recorded: `uid 1000 (ana) via web`.
    pub by: String,
    /// How often running sessions' logs and the store are re-read.
    pub poll: Duration,
    /// Write `$BLASTWALL_HOME/serve.json` (the page's URL, no token).
    pub record: bool,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A non-loopback address without the flag.
    #[error(
        "{0} is not a loopback address: listening beyond loopback needs --allow-remote (the access token is still required; over plain HTTP it crosses the network in clear)"
    )]
    NotLoopback(SocketAddr),
    /// The port is taken or not ours.
    #[error(
        "cannot listen on {addr}: {source} (another `blastwall serve`? `--port 0` picks a free port)"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The approval store cannot be opened.
    #[error("cannot open the approval store: {0}")]
    Store(#[from] StoreError),
    /// No randomness for the token.
    #[error(transparent)]
    Random(#[from] token::NoRandom),
    /// Serving failed.
    #[error("serving failed: {0}")]
    Io(std::io::Error),
}

#[derive(Debug)]
struct WebSession {
    csrf: String,
    flash: Option<String>,
    created: u64,
}

/// A message to the event streams.
#[derive(Debug, Clone)]
enum Push {
    Audit(Arc<FeedEvent>),
    Approvals(usize),
}

struct App {
    home: Home,
    store: Arc<dyn ApprovalStore>,
    token: String,
    hosts: Vec<String>,
    cookie: String,
    sessions: Mutex<HashMap<String, WebSession>>,
    counter: Mutex<u64>,
    recent: Mutex<VecDeque<Arc<FeedEvent>>>,
    pushes: broadcast::Sender<Push>,
    /// Set once the server is stopping: event streams end, so a graceful
    /// shutdown does not wait on open pages.
    closing: tokio::sync::watch::Sender<bool>,
    by: String,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl App {
    fn host_ok(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.hosts.contains(&host)
    }

    fn new_session(&self) -> Result<String, token::NoRandom> {
        let cookie = token::random_hex(32)?;
        let csrf = token::random_hex(32)?;
        let created = {
            let mut c = lock(&self.counter);
            *c += 1;
            *c
        };
        let mut s = lock(&self.sessions);
        if s.len() >= MAX_SESSIONS
            && let Some(oldest) = s
                .iter()
                .min_by_key(|(_, v)| v.created)
                .map(|(k, _)| k.clone())
        {
            s.remove(&oldest);
        }
        s.insert(
            cookie.clone(),
            WebSession {
                csrf,
                flash: None,
                created,
            },
        );
        Ok(cookie)
    }

    /// The CSRF token of the session whose cookie is `cookie`.
    fn csrf_of(&self, cookie: &str) -> Option<String> {
        let s = lock(&self.sessions);
        s.iter()
            .find(|(k, _)| token::same(k, cookie))
            .map(|(_, v)| v.csrf.clone())
    }

    fn take_flash(&self, cookie: &str) -> Option<String> {
        lock(&self.sessions)
            .get_mut(cookie)
            .and_then(|s| s.flash.take())
    }

    fn set_flash(&self, cookie: &str, flash: String) {
        if let Some(s) = lock(&self.sessions).get_mut(cookie) {
            s.flash = Some(flash);
        }
    }
}

/// The cookie and CSRF token of the request's browser session.
#[derive(Debug, Clone)]
struct Authed {
    cookie: String,
    csrf: String,
}

/// A bound server, not yet serving.
#[derive(Debug)]
pub struct Server {
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    base: String,
    poll: Duration,
    record: bool,
}

fn host_port(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

impl Server {
    /// Checks the address, binds, opens the store, makes the token.
    /// Call inside a tokio runtime.
    pub async fn bind(cfg: &ServeConfig) -> Result<Server, ServeError> {
        let ip = cfg.listen.ip();
        if !ip.is_loopback() && !cfg.allow_remote {
            return Err(ServeError::NotLoopback(cfg.listen));
        }
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let local = listener.local_addr().map_err(ServeError::Io)?;
        let port = local.port();
        let mut hosts = vec![
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
        ];
        // The listen address itself (127.0.0.2 is loopback too).
        let own = host_port(ip, port);
        if !ip.is_unspecified() && !hosts.contains(&own) {
            hosts.push(own);
        }
        let named: Vec<String> = cfg
            .hosts
            .iter()
            .map(|h| {
                let h = h.to_ascii_lowercase();
                let has_port = h
                    .rsplit_once(':')
                    .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
                    && !(h.starts_with('[') && h.ends_with(']'));
                if has_port { h } else { format!("{h}:{port}") }
            })
            .collect();
        hosts.extend(named.iter().cloned());
        // The URL to print: the listen address, or for an unspecified one
        // (0.0.0.0) the first name given, else loopback.
        let base_host = if ip.is_unspecified() {
            named
                .first()
                .cloned()
                .unwrap_or_else(|| format!("127.0.0.1:{port}"))
        } else {
            host_port(ip, port)
        };
        let base = format!("http://{base_host}/");
        cfg.home.ensure().map_err(|e| {
            ServeError::Io(std::io::Error::other(format!(
                "{}: {e}",
                cfg.home.root().display()
            )))
        })?;
        let store = SqliteStore::open(&cfg.home.approvals_db())?;
        let (pushes, _) = broadcast::channel(1024);
        let app = App {
            home: cfg.home.clone(),
            store: Arc::new(store),
            token: token::random_hex(32)?,
            hosts,
            cookie: format!("blastwall_{port}"),
            sessions: Mutex::new(HashMap::new()),
            counter: Mutex::new(0),
            recent: Mutex::new(VecDeque::new()),
            pushes,
            closing: tokio::sync::watch::channel(false).0,
            by: cfg.by.clone(),
        };
        if cfg.record {
            // Best effort: without it a webhook says to run `serve`.
            let _ = crate::serve_file::write(&cfg.home, &base);
        }
        Ok(Server {
            listener,
            app: Arc::new(app),
            base,
            poll: cfg.poll,
            record: cfg.record,
        })
    }

    /// The page's URL without the token (what `serve.json` records).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The URL to open: the base URL with the access token.
    pub fn url(&self) -> String {
        format!("{}?token={}", self.base, self.app.token)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    /// Serves until `shutdown` completes.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let stop = Arc::new(AtomicBool::new(false));
        let poller = spawn_poller(Arc::clone(&self.app), self.poll, Arc::clone(&stop));
        let app = router(Arc::clone(&self.app));
        let closing = self.app.closing.clone();
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                let _ = closing.send(true);
            })
            .await;
        stop.store(true, Ordering::SeqCst);
        if self.record {
            crate::serve_file::remove(&self.app.home);
        }
        drop(poller);
        served.map_err(ServeError::Io)
    }
}

/// Follows the running sessions and the store on a thread of its own (the
/// reads are blocking file and SQLite reads), pushing what changed.
fn spawn_poller(
    app: Arc<App>,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> Option<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("blastwall-serve-feed".into())
        .spawn(move || {
            let mut feed = Feed::new(app.home.clone());
            let mut last = None;
            while !stop.load(Ordering::SeqCst) {
                for e in feed.poll() {
                    let e = Arc::new(e);
                    {
                        let mut r = lock(&app.recent);
                        r.push_back(Arc::clone(&e));
                        while r.len() > feed::RECENT {
                            r.pop_front();
                        }
                    }
                    let _ = app.pushes.send(Push::Audit(e));
                }
                let fp = feed::pending_fingerprint(&*app.store);
                if last.as_ref() != Some(&fp) {
                    let n = if fp.is_empty() {
                        0
                    } else {
                        fp.split(',').count()
                    };
                    last = Some(fp);
                    let _ = app.pushes.send(Push::Approvals(n));
                }
                std::thread::sleep(every);
            }
        })
        .ok()
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(app_js))
        .route("/app.css", get(app_css))
        .route("/api/approvals", get(api_approvals))
        .route("/api/sessions", get(api_sessions))
        .route("/api/events", get(api_events))
        .route("/approvals/{id}/{action}", post(decide_route))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(Arc::clone(&app), guard))
        .layer(middleware::map_response(security_headers))
        .with_state(app)
}

async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    res
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn refuse(status: StatusCode, title: &str, why: &str) -> Response {
    html(status, page::refusal(title, why))
}

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Host check, token exchange, cookie, and for changes the Origin.
async fn guard(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if !app.host_ok(&host) {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "wrong host",
            "this server answers only to its own address (127.0.0.1, localhost or [::1] with its port)",
        );
    }
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    if get
        && req.uri().path() == "/"
        && let Some(t) = query_param(req.uri().query(), "token")
    {
        if !token::same(t, &app.token) {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "wrong token",
                "this access token is not the one `blastwall serve` printed",
            );
        }
        let cookie = match app.new_session() {
            Ok(c) => c,
            Err(e) => {
                return refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "no session",
                    &e.to_string(),
                );
            }
        };
        let set = format!("{}={cookie}; Path=/; HttpOnly; SameSite=Strict", app.cookie);
        let mut res = Response::new(Body::empty());
        *res.status_mut() = StatusCode::SEE_OTHER;
        if let Ok(v) = HeaderValue::from_str(&set) {
            res.headers_mut().insert(header::SET_COOKIE, v);
        }
        res.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/"));
        return res;
    }
    let Some(authed) = cookie_value(req.headers(), &app.cookie).and_then(|c| {
        app.csrf_of(c).map(|csrf| Authed {
            cookie: c.to_owned(),
            csrf,
        })
    }) else {
        // A link followed from another site (a chat message) comes without
        // the SameSite=Strict cookie: reload once, same-site, to send it.
        let h = req.headers();
        let cross_nav = get
            && h.get("sec-fetch-site").is_some_and(|v| v == "cross-site")
            && h.get("sec-fetch-mode").is_some_and(|v| v == "navigate");
        if cross_nav {
            return html(StatusCode::OK, page::reload());
        }
        return refuse(
            StatusCode::UNAUTHORIZED,
            "not signed in",
            "open the URL that `blastwall serve` printed (it carries the access token) in this browser first",
        );
    };
    if !get {
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .unwrap_or("");
        let own = format!("http://{}", host.to_ascii_lowercase());
        if !origin.eq_ignore_ascii_case(&own) {
            return refuse(
                StatusCode::FORBIDDEN,
                "cross-origin request refused",
                "a change must come from this page itself (its Origin header must be the page's own)",
            );
        }
    }
    req.extensions_mut().insert(authed);
    next.run(req).await
}

async fn not_found() -> Response {
    refuse(StatusCode::NOT_FOUND, "not found", "no such page")
}

async fn index(
    State(app): State<Arc<App>>,
    axum::Extension(authed): axum::Extension<Authed>,
) -> Response {
    let approvals = match feed::approvals(&*app.store, false) {
        Ok(a) => a,
        Err(e) => {
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store error",
                &e.to_string(),
            );
        }
    };
    let sessions = feed::sessions(&app.home, 50);
    let events: Vec<FeedEvent> = lock(&app.recent).iter().map(|e| (**e).clone()).collect();
    let flash = app.take_flash(&authed.cookie);
    html(
        StatusCode::OK,
        page::index(
            &approvals,
            &sessions,
            &events,
            &authed.csrf,
            flash.as_deref(),
        ),
    )
}

async fn app_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        page::APP_JS,
    )
        .into_response()
}

async fn app_css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        page::APP_CSS,
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    all: Option<String>,
}

async fn api_approvals(State(app): State<Arc<App>>, Query(q): Query<ListQuery>) -> Response {
    let all = q.all.as_deref().is_some_and(|v| v != "0" && v != "false");
    match feed::approvals(&*app.store, all) {
        Ok(a) => axum::Json(json!({ "approvals": a })).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

async fn api_sessions(State(app): State<Arc<App>>) -> Response {
    axum::Json(json!({ "sessions": feed::sessions(&app.home, 0) })).into_response()
}

fn sse_event(p: &Push) -> SseEvent {
    match p {
        Push::Audit(e) => SseEvent::default()
            .event("audit")
            .json_data(&**e)
            .unwrap_or_else(|_| SseEvent::default().comment("unserializable")),
        Push::Approvals(n) => SseEvent::default()
            .event("approvals")
            .data(format!("{{\"pending\":{n}}}")),
    }
}

/// Server-Sent Events: `hello`, the pending count, the recent `audit` events, then live
/// `audit` and `approvals` (the pending set changed) events.
async fn api_events(
    State(app): State<Arc<App>>,
) -> Sse<impl Stream<Item = Result<SseEvent, std::convert::Infallible>>> {
    let rx = app.pushes.subscribe();
    let recent: Vec<Arc<FeedEvent>> = lock(&app.recent).iter().cloned().collect();
    let pending = feed::approvals(&*app.store, false).map_or(0, |a| a.len());
    let hello = stream::iter([
        Ok(SseEvent::default().event("hello").data("{}")),
        Ok(sse_event(&Push::Approvals(pending))),
    ]);
    let past = stream::iter(
        recent
            .into_iter()
            .map(|e| Ok(sse_event(&Push::Audit(e))))
            .collect::<Vec<_>>(),
    );
    let closing = app.closing.subscribe();
    let live = stream::unfold((rx, closing), |(mut rx, mut closing)| async move {
        if *closing.borrow() {
            return None;
        }
        let got = tokio::select! {
            got = rx.recv() => got,
            _ = closing.changed() => return None,
        };
        match got {
            Ok(p) => Some((Ok(sse_event(&p)), (rx, closing))),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                let e = SseEvent::default()
                    .event("lagged")
                    .data(format!("{{\"missed\":{n}}}"));
                Some((Ok(e), (rx, closing)))
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    });
    Sse::new(hello.chain(past).chain(live))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[derive(Debug, Deserialize)]
struct DecideForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

async fn decide_route(
    State(app): State<Arc<App>>,
    axum::Extension(authed): axum::Extension<Authed>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let approve = match action.as_str() {
        "approve" => true,
        "deny" => false,
        _ => return not_found().await,
    };
    if !page::is_approval_id(&id) {
        return not_found().await;
    }
    let form: DecideForm = serde_urlencoded::from_bytes(&body).unwrap_or(DecideForm {
        csrf: None,
        note: None,
    });
    let given = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(form.csrf);
    if !given.is_some_and(|g| token::same(&g, &authed.csrf)) {
        return refuse(
            StatusCode::FORBIDDEN,
            "missing or wrong CSRF token",
            "reload the page and try again",
        );
    }
    let note: Option<String> = form.note.map(|n| n.chars().take(300).collect());
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let home = app.home.clone();
    let store = Arc::clone(&app.store);
    let by = app.by.clone();
    let id2 = id.clone();
    let result = tokio::task::spawn_blocking(move || {
        decide(&home, &*store, &id2, approve, &by, note.as_deref())
    })
    .await;
    let decided = match result {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => {
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store error",
                &e.to_string(),
            );
        }
        Err(e) => {
            return refuse(StatusCode::INTERNAL_SERVER_ERROR, "failed", &e.to_string());
        }
    };
    let message = decided.message(&id);
    let done = matches!(decided, Decided::Done { .. });
    if wants_json {
        let status = if done {
            StatusCode::OK
        } else {
            StatusCode::CONFLICT
        };
        return (
            status,
            axum::Json(json!({"id": id, "done": done, "message": message, "decision": decided})),
        )
            .into_response();
    }
    app.set_flash(&authed.cookie, message);
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::SEE_OTHER;
    res.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/"));
    res
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
