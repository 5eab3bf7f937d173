//! What an interceptor saw, as the one type every decision takes.

use std::path::PathBuf;

use blastwall_classify::graphql::{self, Inspection};
use blastwall_classify::{Label, Labels, git, http};
use serde::Serialize;

use crate::host::HostName;

/// An action the agent attempts, as an interceptor saw it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Action {
    /// A network request through the proxy.
    Net(NetAction),
    /// A command about to run.
    Exec(ExecAction),
    /// A file access.
    Fs(FsAction),
}

impl Action {
    /// The action's kind as a word (`net`, `exec`, `fs`).
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Net(_) => "net",
            Action::Exec(_) => "exec",
            Action::Fs(_) => "fs",
        }
    }
}

/// The URL scheme of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Plain HTTP (or `ws`).
    Http,
    /// HTTP over TLS (or `wss`).
    Https,
}

impl Scheme {
    /// The scheme's default port.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A ref update of a git push, with what the proxy could tell of its ancestry.
#[derive(Debug, Clone, Serialize)]
pub struct PushUpdate {
    /// The update as the client sent it.
    #[serde(flatten)]
    pub update: RefUpdateView,
    /// `Some(false)` when the pushed pack shows a fast-forward;
    /// `Some(true)` when it shows a rewrite, or cannot show a fast-forward
    /// (then `ancestry` says why); `None` with no pack to read (a deletion,
    /// `policy explain`, `policy test`).
    pub non_fast_forward: Option<bool>,
    /// Why the pack could not show a fast-forward, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ancestry: Option<String>,
}

/// A serialisable view of [`git::RefUpdate`].
#[derive(Debug, Clone, Serialize)]
pub struct RefUpdateView {
    /// Full ref name (`refs/heads/main`).
    pub name: String,
    /// Old object id (all zeros for a create).
    pub old: String,
    /// New object id (all zeros for a delete).
    pub new: String,
    /// Whether the update deletes the ref.
    pub delete: bool,
}

/// What was found in a git push body.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum GitPush {
    /// The ref updates, in order.
    Updates {
        /// Each ref update.
        updates: Vec<PushUpdate>,
    },
    /// The body could not be read as a push.
    Unreadable {
        /// Why.
        reason: String,
    },
}

/// A network request, normalised.
#[derive(Debug, Clone, Serialize)]
pub struct NetAction {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// The host, normalised (lower case, punycode, canonical IP).
    pub host: HostName,
    /// The port (the scheme's default when the URL has none).
    pub port: u16,
    /// The method, upper case.
    pub method: String,
    /// Methods named by method-override headers.
    pub method_overrides: Vec<String>,
    /// The normalised path, without the query.
    pub path: String,
    /// The query string, without `?`.
    pub query: Option<String>,
    /// Header names, lower case.
    pub header_names: Vec<String>,
    /// Hex SHA-256 of the body as it will be forwarded, when there is one.
    pub body_digest: Option<String>,
    /// GraphQL found in the body or query string, when it was inspected.
    pub graphql: Option<Inspection>,
    /// Ref updates, for a git push.
    pub git_push: Option<GitPush>,
    /// Labels of the method and its overrides (and of the URL, e.g. userinfo).
    pub labels: Labels,
}

/// Why a request could not be turned into an [`NetAction`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The URL does not parse.
    #[error("bad url `{url}`: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// Why.
        reason: String,
    },
    /// The scheme is not one the proxy speaks.
    #[error("unsupported scheme `{0}` (http, https, ws and wss go through the proxy)")]
    Scheme(String),
    /// The method is not an HTTP token.
    #[error("bad method `{0}`")]
    Method(String),
    /// A header line is not `Name: value`.
    #[error("bad header `{0}`: expected `Name: value`")]
    Header(String),
}

impl NetAction {
    /// Builds the action for a request: the URL is parsed and normalised
    /// (host case, trailing dot, IDN, IP notations, dot segments; userinfo is
    /// dropped from matching and labelled), method overrides are read from
    /// the headers, and the body is inspected for GraphQL when `inspect` is
    /// set and for ref updates when the request is a git push.
    pub fn from_request(
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
    ) -> Result<NetAction, RequestError> {
        if !http::is_valid_method(method) {
            return Err(RequestError::Method(method.to_owned()));
        }
        let parsed = url::Url::parse(url).map_err(|e| RequestError::BadUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        let scheme = match parsed.scheme() {
            "http" | "ws" => Scheme::Http,
            "https" | "wss" => Scheme::Https,
            other => return Err(RequestError::Scheme(other.to_owned())),
        };
        let raw_host = parsed.host_str().ok_or_else(|| RequestError::BadUrl {
            url: url.to_owned(),
            reason: "no host".into(),
        })?;
        let host = HostName::parse(raw_host).map_err(|reason| RequestError::BadUrl {
            url: url.to_owned(),
            reason,
        })?;
        let port = parsed.port().unwrap_or(scheme.default_port());
        let mut info = http::method_info(method, headers);
        // `?_method=DELETE` (and the same in a form body) is an override too.
        let content_type_is_form = headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("content-type")
                && v.to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
        });
        let mut params = parsed
            .query()
            .map(http::param_overrides)
            .unwrap_or_default();
        if content_type_is_form && let Some(b) = body {
            params.extend(http::param_overrides(&String::from_utf8_lossy(b)));
        }
        for m in params {
            if !info.overrides.contains(&m) {
                info.labels = info.labels.union(http::method_labels(&m));
                info.overrides.push(m);
            }
        }
        let mut labels = info.labels;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            labels.insert(Label::CredentialAccess);
        }
        let path = parsed.path().to_owned();
        let query = parsed.query().map(str::to_owned);
        let content_type = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.to_ascii_lowercase());
        let graphql = inspect_graphql(query.as_deref(), content_type.as_deref(), body);
        let git_push = (info.method == "POST" && path.ends_with("/git-receive-pack"))
            .then(|| read_push(body.unwrap_or_default()));
        Ok(NetAction {
            scheme,
            host,
            port,
            method: info.method,
            method_overrides: info.overrides,
            path,
            query,
            header_names: headers
                .iter()
                .map(|(k, _)| k.to_ascii_lowercase())
                .collect(),
            body_digest: body.map(digest),
            graphql,
            git_push,
            labels,
        })
    }
}

/// Parses `Name: value` header lines.
pub fn parse_header_lines(lines: &[String]) -> Result<Vec<(String, String)>, RequestError> {
    lines
        .iter()
        .map(|l| match l.split_once(':') {
            Some((k, v)) if !k.trim().is_empty() && !k.contains(' ') => {
                Ok((k.trim().to_owned(), v.trim().to_owned()))
            }
            Some(_) | None => Err(RequestError::Header(l.clone())),
        })
        .collect()
}

fn inspect_graphql(
    query: Option<&str>,
    content_type: Option<&str>,
    body: Option<&[u8]>,
) -> Option<Inspection> {
    if let Some(b) = body.filter(|b| !b.is_empty()) {
        if content_type.is_some_and(|c| c.starts_with("application/graphql") && !c.contains("json"))
        {
            return Some(match std::str::from_utf8(b) {
                Ok(doc) => graphql::inspect_document(doc),
                Err(_) => Inspection::Opaque {
                    reason: graphql::Opaque::Syntax("document is not UTF-8".into()),
                },
            });
        }
        return Some(graphql::inspect_body(b));
    }
    query.and_then(graphql::inspect_query_string)
}

fn read_push(body: &[u8]) -> GitPush {
    match git::receive_pack_commands(body) {
        Ok((updates, end)) => {
            let pack = blastwall_classify::pack::find_pack(body, end);
            let hash_len = updates.first().map_or(20, |u| u.new.len() / 2);
            let commits = pack.map(|p| blastwall_classify::pack::read_commits(p, hash_len));
            GitPush::Updates {
                updates: updates
                    .into_iter()
                    .map(|u| {
                        let (non_fast_forward, ancestry) = match (&u.kind, &commits) {
                            (git::RefUpdateKind::Update, Some(c)) => {
                                match c.ancestry(&u.old, &u.new) {
                                    blastwall_classify::pack::Ancestry::FastForward => {
                                        (Some(false), None)
                                    }
                                    blastwall_classify::pack::Ancestry::NotFastForward => {
                                        (Some(true), None)
                                    }
                                    blastwall_classify::pack::Ancestry::Unknown(why) => {
                                        (Some(true), Some(why.to_owned()))
                                    }
                                }
                            }
                            _ => (None, None),
                        };
                        PushUpdate {
                            update: RefUpdateView {
                                delete: matches!(u.kind, git::RefUpdateKind::Delete),
                                name: u.name,
                                old: u.old,
                                new: u.new,
                            },
                            non_fast_forward,
                            ancestry,
                        }
                    })
                    .collect(),
            }
        }
        Err(e) => GitPush::Unreadable {
            reason: e.to_string(),
        },
    }
}

fn digest(body: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(body))
}

/// A command about to run.
#[derive(Debug, Clone, Serialize)]
pub struct ExecAction {
    /// The command line.
    pub argv: Vec<String>,
    /// Where it runs.
    #[serde(serialize_with = "serialize_opt_path")]
    pub cwd: Option<PathBuf>,
    /// Labels from the command classifier.
    pub labels: Labels,
}

impl ExecAction {
    /// Builds the action, classifying the command line.
    pub fn new(argv: Vec<String>, cwd: Option<PathBuf>) -> ExecAction {
        let labels = blastwall_classify::argv::argv_labels(&argv);
        ExecAction { argv, cwd, labels }
    }
}

/// A file operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsOp {
    /// Read (open, list, stat).
    Read,
    /// Create, change or delete.
    Write,
}

/// A file access.
#[derive(Debug, Clone, Serialize)]
pub struct FsAction {
    /// Read or write.
    pub op: FsOp,
    /// The absolute, lexically normalised path.
    #[serde(serialize_with = "serialize_path")]
    pub path: PathBuf,
}

/// A path as the audit log writes bytes: a string if it is UTF-8, else
/// `{"hex": "…"}` (`blastwall_audit::bytes::bytes_to_json`), so that an
/// action always serializes.
fn serialize_path<S: serde::Serializer>(path: &std::path::Path, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap as _;
    use std::os::unix::ffi::OsStrExt as _;
    let bytes = path.as_os_str().as_bytes();
    match std::str::from_utf8(bytes) {
        Ok(text) => s.serialize_str(text),
        Err(_) => {
            let mut map = s.serialize_map(Some(1))?;
            map.serialize_entry("hex", &hex::encode(bytes))?;
            map.end()
        }
    }
}

fn serialize_opt_path<S: serde::Serializer>(
    path: &Option<PathBuf>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match path {
        Some(p) => serialize_path(p, s),
        None => s.serialize_none(),
    }
}
