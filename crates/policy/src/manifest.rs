//! Reading a checked document into a [`Policy`]: the checks a shape cannot
//! express (host patterns, globs, paths, durations, duplicates, shadowed
//! rules, I8's limits on a project manifest), then compilation.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use blastwall_classify::graphql::OpType;
use blastwall_classify::{Label, Labels};
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use serde::Serialize;
use toml::de::{DeTable, DeValue};

use crate::check::{Val, check_table, int_value};
use crate::decide::{
    ExecMatcher, ExecRule, FsMatcher, GitRules, GqlCond, Meta, NetMatcher, NetRule, Policy,
    RuleRef, Verdict,
};
use crate::diag::{Diagnostic, Sink, Source};
use crate::host::{HostName, HostPattern};
use crate::schema::ROOT;
use crate::settings::{
    Alerts, ApprovalSettings, AuditSettings, AuditSink, Credential, DEFAULT_HIDDEN_HOME,
    DEFAULT_HIDDEN_PROJECT, FsyncMode, Limits, NonInteractive, Placement, ProjectMode, Resolve,
    Settings, Webhook,
};

/// Where a manifest comes from, which decides what it may say (I8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A `blastwall.toml` in a project: untrusted input. It may name
    /// credentials but not their sources, and grant rw paths only inside the
    /// project unless the user's config grants them.
    Project,
    /// The user's own config under `BLASTWALL_HOME`: credential sources and
    /// grants outside the project live here.
    User,
}

/// Grants and credential sources from the user's own config, which a
/// project manifest may only name.
#[derive(Debug, Clone, Default)]
pub struct UserGrants {
    /// Credentials with their sources.
    pub credentials: Vec<Credential>,
    /// Paths outside projects the user lets a project manifest grant read-write.
    pub write: Vec<PathBuf>,
    /// Paths the user lets a project manifest grant read-only.
    pub read: Vec<PathBuf>,
}

/// What the loader needs to know about the world, passed in (no I/O here).
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// Project or user config.
    pub origin: Origin,
    /// The project root: the manifest's directory.
    pub project_root: PathBuf,
    /// The home directory `~` stands for.
    pub home: PathBuf,
    /// The user's grants, when they were read.
    pub user: Option<&'a UserGrants>,
    /// Whether the manifest is being loaded to be enforced: then a
    /// credential the user's config does not define is an error (with
    /// `user: None` meaning no grants at all); otherwise a warning.
    pub enforce: bool,
}

/// A `[[test]]` case.
#[derive(Debug, Clone, Serialize)]
pub struct TestCase {
    /// Its name, if given.
    pub name: Option<String>,
    /// Where it stands in the manifest.
    pub at: RuleRef,
    /// The action.
    pub action: TestAction,
    /// The verdicts that pass.
    pub expect: Vec<Verdict>,
}

/// The action of a test case, before the caller reads any body file.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum TestAction {
    /// A request.
    Net {
        /// Method.
        method: String,
        /// URL.
        url: String,
        /// `Name: value` lines.
        headers: Vec<String>,
        /// Inline body.
        body: Option<String>,
        /// Body file, absolute.
        body_file: Option<PathBuf>,
    },
    /// A command line.
    Exec {
        /// argv.
        argv: Vec<String>,
    },
    /// A file access.
    Fs {
        /// read or write.
        op: crate::action::FsOp,
        /// Absolute path.
        path: PathBuf,
    },
}

/// A loaded policy and the warnings found on the way.
#[derive(Debug)]
pub struct Loaded {
    /// The compiled policy.
    pub policy: Policy,
    /// Warnings (e.g. shadowed rules).
    pub warnings: Vec<Diagnostic>,
}

/// Parses, checks and compiles a manifest. On failure, every problem found,
/// each with file:line:col.
pub fn load(source: &Source, cx: &Context<'_>) -> Result<Loaded, Vec<Diagnostic>> {
    let mut sink = Sink::new(source);
    let doc = match DeTable::parse(source.text()) {
        Ok(d) => d,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let msg = e.message().trim().to_owned();
            sink.error(span, format!("invalid TOML: {}", lowercase_first(&msg)));
            return Err(sink.finish());
        }
    };
    let whole = doc.span();
    check_table(doc.get_ref(), &ROOT, "", whole.clone(), &mut sink);
    let policy = Reader {
        sink: &mut sink,
        cx,
        file: source.name_arc(),
        source,
    }
    .read(doc.get_ref());
    if sink.has_errors() {
        return Err(sink.finish());
    }
    let diags = sink.finish();
    match policy {
        Some(policy) => Ok(Loaded {
            policy,
            warnings: diags,
        }),
        None => Err(diags),
    }
}

/// Reads the user's own config and returns the grants it holds.
pub fn load_user_grants(source: &Source, home: &Path) -> Result<UserGrants, Vec<Diagnostic>> {
    let cx = Context {
        origin: Origin::User,
        project_root: home.to_path_buf(),
        home: home.to_path_buf(),
        user: None,
        enforce: false,
    };
    let loaded = load(source, &cx)?;
    let s = loaded.policy.settings;
    Ok(UserGrants {
        credentials: s.credentials,
        write: s.write_paths,
        read: s.read_paths,
    })
}

fn lowercase_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Typed access to a checked table. Values of the wrong type read as absent:
/// the structural check has already reported them.
#[derive(Clone)]
struct Tbl<'a, 'i> {
    t: &'a DeTable<'i>,
    span: Range<usize>,
    empty: bool,
}

static EMPTY: std::sync::OnceLock<DeTable<'static>> = std::sync::OnceLock::new();

impl<'a, 'i> Tbl<'a, 'i> {
    fn new(t: &'a DeTable<'i>, span: Range<usize>) -> Self {
        Tbl {
            t,
            span,
            empty: false,
        }
    }

    fn get(&self, k: &str) -> Option<&'a Val<'i>> {
        if self.empty {
            return None;
        }
        self.t
            .iter()
            .find(|(key, _)| key.get_ref() == k)
            .map(|(_, v)| v)
    }

    /// The span of a key (for messages about the whole entry).
    fn key_span(&self, k: &str) -> Option<Range<usize>> {
        self.t
            .iter()
            .find(|(key, _)| key.get_ref() == k)
            .map(|(key, _)| key.span())
    }

    fn str(&self, k: &str) -> Option<(&'a str, Range<usize>)> {
        match self.get(k).map(|v| (v.get_ref(), v.span())) {
            Some((DeValue::String(s), span)) => Some((s.as_ref(), span)),
            _ => None,
        }
    }

    fn bool(&self, k: &str) -> Option<bool> {
        match self.get(k).map(|v| v.get_ref()) {
            Some(DeValue::Boolean(b)) => Some(*b),
            _ => None,
        }
    }

    fn int(&self, k: &str) -> Option<i64> {
        self.get(k).and_then(|v| int_value(v.get_ref()))
    }

    /// A string or an array of strings, each with its span.
    fn strs(&self, k: &str) -> Option<Vec<(&'a str, Range<usize>)>> {
        let v = self.get(k)?;
        match v.get_ref() {
            DeValue::String(s) => Some(vec![(s.as_ref(), v.span())]),
            DeValue::Array(items) => Some(
                items
                    .iter()
                    .filter_map(|i| match i.get_ref() {
                        DeValue::String(s) => Some((s.as_ref(), i.span())),
                        _ => None,
                    })
                    .collect(),
            ),
            _ => None,
        }
    }

    fn table(&self, k: &str) -> Tbl<'a, 'i> {
        match self.get(k).map(|v| (v.get_ref(), v.span())) {
            Some((DeValue::Table(t), span)) => Tbl::new(t, span),
            _ => Tbl {
                t: EMPTY.get_or_init(DeTable::default),
                span: self.span.clone(),
                empty: true,
            },
        }
    }

    fn tables(&self, k: &str) -> Vec<Tbl<'a, 'i>> {
        match self.get(k).map(|v| v.get_ref()) {
            Some(DeValue::Array(items)) => items
                .iter()
                .filter_map(|i| match i.get_ref() {
                    DeValue::Table(t) => Some(Tbl::new(t, i.span())),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    fn map(&self) -> Vec<(&'a str, Range<usize>, &'a Val<'i>)> {
        if self.empty {
            return Vec::new();
        }
        self.t
            .iter()
            .map(|(k, v)| (k.get_ref().as_ref(), k.span(), v))
            .collect()
    }
}

/// The hidden-path globs, compiled and as written.
type Hidden = (GlobSet, Vec<String>);

struct Reader<'r, 's, 'c> {
    sink: &'r mut Sink<'s>,
    cx: &'r Context<'c>,
    file: Arc<str>,
    source: &'s Source,
}

fn verdict_of(s: Option<(&str, Range<usize>)>) -> Option<(Verdict, Range<usize>)> {
    s.and_then(|(v, span)| Verdict::parse(v).map(|v| (v, span)))
}

impl Reader<'_, '_, '_> {
    fn rule_ref(&self, id: impl Into<Arc<str>>, span: &Range<usize>) -> RuleRef {
        let (line, col) = self.source.line_col(span.start);
        RuleRef {
            id: id.into(),
            file: Arc::clone(&self.file),
            line,
            col,
        }
    }

    fn builtin(&self, id: &str) -> RuleRef {
        RuleRef {
            id: Arc::from(id),
            file: Arc::clone(&self.file),
            line: 0,
            col: 0,
        }
    }

    fn read(&mut self, doc: &DeTable<'_>) -> Option<Policy> {
        let root = Tbl::new(doc, 0..0);
        let fs = root.table("filesystem");
        let project_mode = match fs.str("project").map(|(s, _)| s) {
            Some("ro") => ProjectMode::Ro,
            Some("rw") => ProjectMode::Rw,
            Some(_) | None => ProjectMode::Overlay,
        };
        let (read_paths, read_meta) = self.paths(&fs, "read");
        let (write_paths, write_meta) = self.paths(&fs, "write");
        self.check_grants(&fs, &write_paths, "write");
        self.check_grants(&fs, &read_paths, "read");
        let (hidden, hidden_meta) = self.hidden(&fs)?;

        let network = root.table("network");
        let net = self.network(&network)?;
        let resolve = self.resolve(&network.table("resolve"));
        let upstream_ca = network
            .strs("upstream_ca")
            .unwrap_or_default()
            .into_iter()
            .map(|(p, _)| self.abs_path(p))
            .collect();

        let credentials = self.credentials(&root, &net);
        let exec = self.exec(&root.table("exec"))?;
        let approval = self.approval(&root.table("approval"));
        let audit = self.audit(&root.table("audit"));
        let limits = self.limits(&root.table("limits"));
        let accept_missing = root
            .table("sandbox")
            .strs("accept_missing")
            .unwrap_or_default()
            .into_iter()
            .map(|(s, _)| s.to_owned())
            .collect();
        let env = root.table("env");
        let env_pass = self.env_pass(&env);
        let env_set = env
            .table("set")
            .map()
            .into_iter()
            .filter_map(|(k, _, v)| match v.get_ref() {
                DeValue::String(s) => Some((k.to_owned(), s.to_string())),
                _ => None,
            })
            .collect();
        let tests = self.tests(&root);

        let project_meta = Meta {
            rule: fs.key_span("project").map_or_else(
                || self.builtin("filesystem.project"),
                |s| self.rule_ref("filesystem.project", &s),
            ),
            reason: Arc::from("the project is visible inside"),
            verdict: Verdict::Allow,
        };
        let settings = Settings {
            project_name: root.table("project").str("name").map(|(s, _)| s.to_owned()),
            project_root: self.cx.project_root.clone(),
            home: self.cx.home.clone(),
            project_mode,
            read_paths: read_paths.clone(),
            write_paths: write_paths.clone(),
            hidden: hidden.1,
            credentials,
            resolve,
            upstream_ca,
            approval,
            audit,
            limits,
            accept_missing,
            env_pass,
            env_set,
            has_exec_rules: !exec.rules.is_empty(),
        };
        let fs = FsMatcher {
            hidden: hidden.0,
            hidden_meta,
            write: write_paths.into_iter().zip(write_meta).collect(),
            read: read_paths.into_iter().zip(read_meta).collect(),
            project: project_meta,
            builtin: Arc::clone(&self.file),
        };
        Some(Policy {
            net,
            exec,
            fs,
            settings,
            tests,
            file: Arc::clone(&self.file),
        })
    }

    // ---- paths -------------------------------------------------------

    /// `~/x` → home, absolute stays, relative → under the project; then
    /// lexically normalised (`..` cannot climb above `/`).
    fn abs_path(&self, p: &str) -> PathBuf {
        let joined = if p == "~" {
            self.cx.home.clone()
        } else if let Some(rest) = p.strip_prefix("~/") {
            self.cx.home.join(rest)
        } else if Path::new(p).is_absolute() {
            PathBuf::from(p)
        } else {
            self.cx.project_root.join(p)
        };
        normalize(&joined)
    }

    fn paths(&mut self, t: &Tbl<'_, '_>, key: &str) -> (Vec<PathBuf>, Vec<Meta>) {
        let mut out = Vec::new();
        let mut metas = Vec::new();
        let mut seen: HashMap<PathBuf, Range<usize>> = HashMap::new();
        for (i, (p, span)) in t.strs(key).unwrap_or_default().into_iter().enumerate() {
            if p.is_empty() {
                self.sink
                    .error(span, format!("`filesystem.{key}[{i}]` is empty"));
                continue;
            }
            if p.starts_with('~') && p != "~" && !p.starts_with("~/") {
                self.sink.error(
                    span,
                    format!("`{p}`: only `~/` (your own home) is understood, not `~user`"),
                );
                continue;
            }
            let abs = self.abs_path(p);
            if abs == Path::new("/") {
                self.sink.error(
                    span,
                    format!("`filesystem.{key}[{i}]` grants the whole file system; name the directories needed"),
                );
                continue;
            }
            if let Some(prev) = seen.get(&abs) {
                let (l, c) = self.source.line_col(prev.start);
                self.sink.error(
                    span,
                    format!("duplicate path `{p}` in `filesystem.{key}` (first at {l}:{c})"),
                );
                continue;
            }
            seen.insert(abs.clone(), span.clone());
            let verdict = Verdict::Allow;
            metas.push(Meta {
                rule: self.rule_ref(format!("filesystem.{key}[{i}]"), &span),
                reason: Arc::from(match key {
                    "write" => "granted read-write by the manifest",
                    _ => "granted read-only by the manifest",
                }),
                verdict,
            });
            out.push(abs);
        }
        (out, metas)
    }

    /// I8: a project manifest grants rw only inside the project, unless the
    /// user's own config grants the path.
    fn check_grants(&mut self, t: &Tbl<'_, '_>, paths: &[PathBuf], key: &str) {
        if self.cx.origin != Origin::Project {
            return;
        }
        let spans = t.strs(key).unwrap_or_default();
        for (p, (raw, span)) in paths.iter().zip(spans) {
            if p.starts_with(&self.cx.project_root) {
                continue;
            }
            // Reads outside the home show what the system shows anyway;
            // reads of the user's own files need the user's grant.
            if key == "read" && !p.starts_with(&self.cx.home) {
                continue;
            }
            let granted = self.cx.user.is_some_and(|u| match key {
                "write" => u.write.iter().any(|g| p.starts_with(g)),
                _ => u.write.iter().chain(&u.read).any(|g| p.starts_with(g)),
            });
            if !granted && key == "read" {
                self.sink.error(
                    span,
                    format!(
                        "`{raw}` is in your home directory, outside the project: a project manifest may grant it only when your own config does (filesystem.read or filesystem.write in $BLASTWALL_HOME/config.toml)"
                    ),
                );
                continue;
            }
            if !granted {
                self.sink.error(
                    span,
                    format!(
                        "`{raw}` is outside the project: a project manifest may grant read-write only inside the project ({}); grant it in your own config (filesystem.write in $BLASTWALL_HOME/config.toml) if you mean it",
                        self.cx.project_root.display()
                    ),
                );
            }
        }
    }

    fn hidden(&mut self, fs: &Tbl<'_, '_>) -> Option<(Hidden, Vec<Meta>)> {
        let mut b = GlobSetBuilder::new();
        let mut pats = Vec::new();
        let mut metas = Vec::new();
        let home = self.cx.home.display().to_string();
        let root = self.cx.project_root.display().to_string();
        let builtin = Meta {
            rule: self.builtin("filesystem.hide (defaults)"),
            reason: Arc::from("a secret path, hidden inside the wall"),
            verdict: Verdict::Deny,
        };
        let mut add = |pat: String, meta: Meta, b: &mut GlobSetBuilder| -> Result<(), String> {
            for p in [pat.clone(), format!("{pat}/**")] {
                let g = glob(&escape_glob_prefix(&p))?;
                b.add(g);
                metas.push(meta.clone());
            }
            pats.push(pat);
            Ok(())
        };
        for rel in DEFAULT_HIDDEN_HOME {
            let p = format!("{}/{rel}", home.trim_end_matches('/'));
            if add(p, builtin.clone(), &mut b).is_err() {
                self.sink.error(
                    0..0,
                    format!("home directory {home} cannot be used in a glob"),
                );
            }
        }
        for rel in DEFAULT_HIDDEN_PROJECT {
            let p = format!("{}/{rel}", root.trim_end_matches('/'));
            if add(p, builtin.clone(), &mut b).is_err() {
                self.sink.error(
                    0..0,
                    format!("project root {root} cannot be used in a glob"),
                );
            }
        }
        for (i, (raw, span)) in fs.strs("hide").unwrap_or_default().into_iter().enumerate() {
            let base = if raw == "~" || raw.starts_with("~/") || Path::new(raw).is_absolute() {
                self.abs_path(raw).display().to_string()
            } else {
                format!(
                    "{}/{}",
                    root.trim_end_matches('/'),
                    raw.trim_start_matches("./")
                )
            };
            let meta = Meta {
                rule: self.rule_ref(format!("filesystem.hide[{i}]"), &span),
                reason: Arc::from("hidden by the manifest"),
                verdict: Verdict::Deny,
            };
            if let Err(e) = add(base, meta, &mut b) {
                self.sink.error(
                    span,
                    format!("bad glob `{raw}` in `filesystem.hide[{i}]`: {e}"),
                );
            }
        }
        match b.build() {
            Ok(set) => Some(((set, pats), metas)),
            Err(e) => {
                self.sink.error(0..0, format!("hidden paths: {e}"));
                None
            }
        }
    }

    // ---- network -----------------------------------------------------

    fn verdict_meta(
        &mut self,
        t: &Tbl<'_, '_>,
        key: &str,
        id: &str,
        default: Verdict,
        reason: &str,
    ) -> Meta {
        match verdict_of(t.str(key)) {
            Some((v, span)) => Meta {
                rule: self.rule_ref(id.to_owned(), &span),
                reason: Arc::from(reason),
                verdict: v,
            },
            None => Meta {
                rule: self.builtin(id),
                reason: Arc::from(reason),
                verdict: default,
            },
        }
    }

    fn network(&mut self, n: &Tbl<'_, '_>) -> Option<NetMatcher> {
        let default = self.verdict_meta(
            n,
            "default",
            "network.default",
            Verdict::Deny,
            "no network rule allows this request (default deny)",
        );
        let default = if default.verdict == Verdict::Ask {
            Meta {
                reason: Arc::from(
                    "no network rule matches this request; the default asks a person",
                ),
                ..default
            }
        } else {
            default
        };
        let mut rules: Vec<NetRule> = Vec::new();
        for (i, t) in n.tables("rule").into_iter().enumerate() {
            if let Some(r) = self.net_rule(&t, i) {
                rules.push(r);
            }
        }
        // Duplicates are errors; rules that can never decide are warnings.
        for (i, r) in rules.iter().enumerate() {
            for e in rules.get(..i).unwrap_or_default() {
                let here = &r.meta.rule;
                let there = &e.meta.rule;
                if r.same_conditions(e) {
                    self.sink.error(
                        self.span_of(here),
                        format!(
                            "duplicate rule: `{}` has the same conditions as `{}` at {}:{}",
                            here.id, there.id, there.line, there.col
                        ),
                    );
                    break;
                }
                if r.shadowed_by(e) {
                    self.sink.warn(
                        self.span_of(here),
                        format!(
                            "`{}` never decides: `{}` at {}:{} matches every request it does and comes first",
                            here.id, there.id, there.line, there.col
                        ),
                    );
                    break;
                }
            }
        }
        let git = self.git(&n.table("git"))?;
        let mut m = NetMatcher {
            rules,
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default,
            git,
        };
        m.index();
        Some(m)
    }

    fn span_of(&self, r: &RuleRef) -> Range<usize> {
        // Recover the byte offset of a line:col (only used for messages).
        let text = self.source.text();
        let mut line = 1u32;
        for (i, ch) in text.char_indices() {
            if line == r.line {
                let col_off: usize = text
                    .get(i..)
                    .unwrap_or_default()
                    .chars()
                    .take(r.col.saturating_sub(1) as usize)
                    .map(char::len_utf8)
                    .sum();
                return (i + col_off)..(i + col_off);
            }
            if ch == '\n' {
                line += 1;
            }
        }
        0..0
    }

    fn host_patterns(&mut self, items: Vec<(&str, Range<usize>)>, path: &str) -> Vec<HostPattern> {
        let mut out: Vec<HostPattern> = Vec::new();
        for (raw, span) in items {
            match HostPattern::parse(raw) {
                Ok(p) => {
                    if out.contains(&p) {
                        self.sink
                            .error(span, format!("host `{raw}` is listed twice in `{path}`"));
                    } else {
                        out.push(p);
                    }
                }
                Err(e) => self
                    .sink
                    .error(span, format!("bad host pattern in `{path}`: {e}")),
            }
        }
        out
    }

    fn net_rule(&mut self, t: &Tbl<'_, '_>, i: usize) -> Option<NetRule> {
        let id = format!("network.rule[{i}]");
        let hosts = self.host_patterns(t.strs("host").unwrap_or_default(), &format!("{id}.host"));
        if t.get("host").is_some()
            && hosts.is_empty()
            && t.strs("host").is_some_and(|h| h.is_empty())
        {
            self.sink.error(
                t.span.clone(),
                format!("`{id}.host` is empty: a rule names at least one host"),
            );
        }
        let ports = t.get("ports").and_then(|v| match v.get_ref() {
            DeValue::Array(items) => Some(
                items
                    .iter()
                    .filter_map(|x| int_value(x.get_ref()).and_then(|n| u16::try_from(n).ok()))
                    .collect::<Vec<u16>>(),
            ),
            _ => None,
        });
        let methods = t.strs("methods").map(|ms| {
            ms.into_iter()
                .filter_map(|(m, span)| {
                    let up = m.to_ascii_uppercase();
                    if m == "*" {
                        self.sink.error(
                            span,
                            format!("`{id}.methods`: leave `methods` out to match any method"),
                        );
                        None
                    } else if !blastwall_classify::http::is_valid_method(m) {
                        self.sink
                            .error(span, format!("`{id}.methods`: `{m}` is not an HTTP method"));
                        None
                    } else {
                        Some(up)
                    }
                })
                .collect::<Vec<_>>()
        });
        let paths = match t.strs("paths") {
            Some(ps) => {
                let mut b = GlobSetBuilder::new();
                let mut raw = Vec::new();
                for (p, span) in ps {
                    if !p.starts_with('/') && !p.starts_with('*') {
                        self.sink.error(
                            span,
                            format!("bad glob `{p}` in `{id}.paths`: a path glob starts with `/`"),
                        );
                        continue;
                    }
                    match glob(p) {
                        Ok(g) => {
                            b.add(g);
                            raw.push(p.to_owned());
                        }
                        Err(e) => self
                            .sink
                            .error(span, format!("bad glob `{p}` in `{id}.paths`: {e}")),
                    }
                }
                match b.build() {
                    Ok(set) => Some((set, raw)),
                    Err(e) => {
                        self.sink
                            .error(t.span.clone(), format!("`{id}.paths`: {e}"));
                        None
                    }
                }
            }
            None => None,
        };
        let graphql = t.get("graphql").map(|_| {
            let g = t.table("graphql");
            let types = g.strs("type").map(|ts| {
                ts.into_iter()
                    .filter_map(|(s, _)| match s {
                        "query" => Some(OpType::Query),
                        "mutation" => Some(OpType::Mutation),
                        "subscription" => Some(OpType::Subscription),
                        _ => None,
                    })
                    .collect()
            });
            let fields = g.strs("fields").map(|fs| {
                fs.into_iter()
                    .filter_map(|(f, span)| {
                        if is_graphql_name(f) {
                            Some(f.to_owned())
                        } else {
                            self.sink.error(
                                span,
                                format!("`{id}.graphql.fields`: `{f}` is not a GraphQL field name"),
                            );
                            None
                        }
                    })
                    .collect()
            });
            GqlCond { types, fields }
        });
        let labels = t.strs("labels").map(|ls| labels_of(&ls));
        let (verdict, vspan) = verdict_of(t.str("verdict"))?;
        let reason = match t.str("reason") {
            Some((r, _)) => Arc::from(r),
            None => Arc::from(match verdict {
                Verdict::Allow => "allowed by the manifest",
                Verdict::Ask => "needs a person's yes",
                Verdict::Deny => "denied by the manifest",
            }),
        };
        let _ = vspan;
        Some(NetRule {
            meta: Meta {
                rule: self.rule_ref(id, &t.span),
                reason,
                verdict,
            },
            hosts,
            ports,
            methods,
            paths,
            graphql,
            labels,
        })
    }

    fn git(&mut self, g: &Tbl<'_, '_>) -> Option<GitRules> {
        let mut b = GlobSetBuilder::new();
        let protected = g.strs("protected");
        let list = protected
            .clone()
            .unwrap_or_else(|| vec![("main", 0..0), ("master", 0..0)]);
        for (p, span) in list {
            match glob(p) {
                Ok(x) => {
                    b.add(x);
                }
                Err(e) => self.sink.error(
                    span,
                    format!("bad glob `{p}` in `network.git.protected`: {e}"),
                ),
            }
        }
        let protected = match b.build() {
            Ok(s) => s,
            Err(e) => {
                self.sink
                    .error(g.span.clone(), format!("`network.git.protected`: {e}"));
                return None;
            }
        };
        Some(GitRules {
            protected,
            on_protected: self.git_meta(g, "on_protected", "a push to a protected ref"),
            on_delete: self.git_meta(
                g,
                "on_delete",
                "a ref deletion cannot be undone by the agent:",
            ),
            on_force: self.git_meta(g, "on_force", "a non-fast-forward push rewrites history:"),
        })
    }

    fn git_meta(&mut self, g: &Tbl<'_, '_>, key: &str, what: &str) -> Meta {
        let id = format!("network.git.{key}");
        let mut m = self.verdict_meta(g, key, &id, Verdict::Ask, "");
        m.reason = Arc::from(match m.verdict {
            Verdict::Allow => format!("{what} allowed by the manifest"),
            Verdict::Ask => format!("{what} needs a person's yes"),
            Verdict::Deny => format!("{what} denied by the manifest"),
        });
        m
    }

    fn resolve(&mut self, r: &Tbl<'_, '_>) -> Vec<Resolve> {
        let mut out: Vec<Resolve> = Vec::new();
        for (k, kspan, v) in r.map() {
            let Some((host, port)) = k.rsplit_once(':') else {
                self.sink.error(
                    kspan,
                    format!("`network.resolve` key `{k}` must be `host:port`"),
                );
                continue;
            };
            let host = match HostName::parse(host) {
                Ok(HostName::Domain(d)) => HostName::Domain(d),
                Ok(HostName::Ip(_)) => {
                    self.sink.error(
                        kspan,
                        format!("`network.resolve` key `{k}`: an IP address needs no resolving"),
                    );
                    continue;
                }
                Err(e) => {
                    self.sink
                        .error(kspan, format!("`network.resolve` key `{k}`: {e}"));
                    continue;
                }
            };
            let Ok(port) = port.parse::<u16>() else {
                self.sink.error(
                    kspan,
                    format!("`network.resolve` key `{k}`: `{port}` is not a port"),
                );
                continue;
            };
            let DeValue::String(addr) = v.get_ref() else {
                continue;
            };
            let Ok(addr) = addr.parse::<SocketAddr>() else {
                self.sink.error(v.span(), format!("`network.resolve.\"{k}\"` must be an address with a port (`127.0.0.1:8443`), found `{addr}`"));
                continue;
            };
            if out.iter().any(|x| x.host == host && x.port == port) {
                self.sink
                    .error(kspan, format!("`network.resolve`: `{k}` is given twice"));
                continue;
            }
            out.push(Resolve { host, port, addr });
        }
        out
    }

    // ---- credentials -------------------------------------------------

    fn credentials(&mut self, root: &Tbl<'_, '_>, net: &NetMatcher) -> Vec<Credential> {
        let mut out: Vec<Credential> = Vec::new();
        let mut envs: HashMap<String, Range<usize>> = HashMap::new();
        for (i, t) in root.tables("credential").into_iter().enumerate() {
            let id = format!("credential[{i}]");
            let Some((name, nspan)) = t.str("name") else {
                continue;
            };
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                || name.is_empty()
            {
                self.sink.error(
                    nspan.clone(),
                    format!("`{id}.name` `{name}` must be letters, digits, `-` or `_`"),
                );
            }
            if out.iter().any(|c| c.name == name) {
                self.sink.error(
                    nspan.clone(),
                    format!("credential `{name}` is declared twice"),
                );
                continue;
            }
            let env = t.str("env").map_or_else(
                || name.to_ascii_uppercase().replace('-', "_"),
                |(e, _)| e.to_owned(),
            );
            let espan = t.str("env").map_or(nspan.clone(), |(_, s)| s);
            if !is_env_name(&env) {
                self.sink.error(
                    espan.clone(),
                    format!("`{id}.env` `{env}` is not a valid variable name"),
                );
            }
            if let Some(prev) = envs.get(&env) {
                let (l, c) = self.source.line_col(prev.start);
                self.sink.error(espan.clone(), format!("variable `{env}` already holds another credential's placeholder (at {l}:{c})"));
            }
            envs.insert(env.clone(), espan);
            let hosts =
                self.host_patterns(t.strs("hosts").unwrap_or_default(), &format!("{id}.hosts"));
            let placement = match (t.str("query"), t.str("header")) {
                (Some((q, _)), None) => Placement::Query { name: q.to_owned() },
                (Some((_, qspan)), Some(_)) => {
                    self.sink
                        .error(qspan, format!("`{id}`: give `header` or `query`, not both"));
                    Placement::Query {
                        name: String::new(),
                    }
                }
                (None, h) => {
                    let name = h.map_or("Authorization", |(h, _)| h).to_owned();
                    let prefix = t.str("prefix").map_or_else(
                        || {
                            if name.eq_ignore_ascii_case("authorization") {
                                "Bearer ".to_owned()
                            } else {
                                String::new()
                            }
                        },
                        |(p, _)| p.to_owned(),
                    );
                    Placement::Header { name, prefix }
                }
            };
            let ttl = t
                .str("ttl")
                .and_then(|(s, span)| self.duration(s, span, &format!("{id}.ttl")));
            let mut source = match (self.cx.origin, t.str("source")) {
                (Origin::Project, Some((_, span))) => {
                    self.sink.error(
                        span,
                        format!("`{id}.source`: a project manifest may not name a credential source; define `{name}` with its source in your own config ($BLASTWALL_HOME/config.toml) and name it here (I8)"),
                    );
                    None
                }
                (Origin::User, Some((s, span))) => {
                    if !["store:", "env:", "file:", "command:"]
                        .iter()
                        .any(|p| s.starts_with(p))
                    {
                        self.sink.error(span, format!("`{id}.source` `{s}` must start with store:, env:, file: or command:"));
                    }
                    Some(s.to_owned())
                }
                (Origin::User, None) => {
                    self.sink.error(
                        t.span.clone(),
                        format!("`{id}`: a credential in your own config needs a `source`"),
                    );
                    None
                }
                (Origin::Project, None) => None,
            };
            // I8: a project manifest may only narrow the hosts the user's
            // config binds the credential to.
            let no_grants = UserGrants::default();
            let user = match (self.cx.user, self.cx.enforce) {
                (Some(u), _) => Some(u),
                (None, true) => Some(&no_grants),
                (None, false) => None,
            };
            if self.cx.origin == Origin::Project
                && let Some(user) = user
            {
                match user.credentials.iter().find(|c| c.name == name) {
                        None if self.cx.enforce => self.sink.error(
                            nspan.clone(),
                            format!("credential `{name}` is not defined in your own config ($BLASTWALL_HOME/config.toml); add it there with its source and hosts"),
                        ),
                        None => self.sink.warn(
                            nspan.clone(),
                            format!("credential `{name}` is not defined in your own config ($BLASTWALL_HOME/config.toml): `run` will refuse this manifest until it is"),
                        ),
                        Some(u) => {
                            // The source comes from the user's own config only.
                            source.clone_from(&u.source);
                            for h in &hosts {
                                if !u.hosts.iter().any(|uh| h.within(uh)) {
                                    self.sink.error(
                                        nspan.clone(),
                                        format!("credential `{name}`: host `{h}` is not among the hosts your own config binds it to"),
                                    );
                                }
                            }
                        }
                    }
            }
            for h in &hosts {
                let named = net
                    .rules
                    .iter()
                    .any(|r| r.hosts.iter().any(|rh| h.within(rh) || rh.within(h)));
                if !named && self.cx.origin == Origin::Project {
                    self.sink.warn(
                        t.span.clone(),
                        format!("credential `{name}` is bound to `{h}`, which no network rule names: it can never be sent"),
                    );
                }
            }
            out.push(Credential {
                name: name.to_owned(),
                env,
                hosts,
                placement,
                ttl,
                source,
            });
        }
        out
    }

    // ---- exec --------------------------------------------------------

    fn exec(&mut self, e: &Tbl<'_, '_>) -> Option<ExecMatcher> {
        let default = self.verdict_meta(
            e,
            "default",
            "exec.default",
            Verdict::Allow,
            "no exec rule matches this command",
        );
        let mut rules = Vec::new();
        for (i, t) in e.tables("rule").into_iter().enumerate() {
            let id = format!("exec.rule[{i}]");
            let program = match t.strs("program") {
                Some(ps) => {
                    let mut by_base = GlobSetBuilder::new();
                    let mut by_path = GlobSetBuilder::new();
                    for (p, span) in ps {
                        match glob(p) {
                            Ok(g) if p.contains('/') => {
                                by_path.add(g);
                            }
                            Ok(g) => {
                                by_base.add(g);
                            }
                            Err(err) => self
                                .sink
                                .error(span, format!("bad glob `{p}` in `{id}.program`: {err}")),
                        }
                    }
                    match (by_base.build(), by_path.build()) {
                        (Ok(a), Ok(b)) => Some((a, b)),
                        (Err(err), _) | (_, Err(err)) => {
                            self.sink
                                .error(t.span.clone(), format!("`{id}.program`: {err}"));
                            None
                        }
                    }
                }
                None => None,
            };
            let mut args = Vec::new();
            for (a, span) in t.strs("args").unwrap_or_default() {
                match GlobBuilder::new(a).build() {
                    Ok(g) => args.push(g.compile_matcher()),
                    Err(err) => self
                        .sink
                        .error(span, format!("bad glob `{a}` in `{id}.args`: {err}")),
                }
            }
            let labels = t.strs("labels").map(|ls| labels_of(&ls));
            if program.is_none() && args.is_empty() && labels.is_none() {
                self.sink.error(t.span.clone(), format!("`{id}` has no condition (program, args or labels): it would match every command; use `exec.default`"));
            }
            let Some((verdict, _)) = verdict_of(t.str("verdict")) else {
                continue;
            };
            let reason = t.str("reason").map_or_else(
                || {
                    Arc::from(match verdict {
                        Verdict::Allow => "allowed by the manifest",
                        Verdict::Ask => "needs a person's yes",
                        Verdict::Deny => "denied by the manifest",
                    })
                },
                |(r, _)| Arc::from(r),
            );
            rules.push(ExecRule {
                meta: Meta {
                    rule: self.rule_ref(id, &t.span),
                    reason,
                    verdict,
                },
                program,
                args,
                labels,
            });
        }
        Some(ExecMatcher { rules, default })
    }

    // ---- approval, audit, limits, env ------------------------------

    fn duration(&mut self, s: &str, span: Range<usize>, what: &str) -> Option<Duration> {
        match parse_duration(s) {
            Ok(d) => Some(d),
            Err(e) => {
                self.sink.error(span, format!("`{what}`: {e}"));
                None
            }
        }
    }

    fn size(&mut self, s: &str, span: Range<usize>, what: &str) -> Option<u64> {
        match parse_size(s) {
            Ok(n) => Some(n),
            Err(e) => {
                self.sink.error(span, format!("`{what}`: {e}"));
                None
            }
        }
    }

    fn approval(&mut self, a: &Tbl<'_, '_>) -> ApprovalSettings {
        let timeout = match a.str("timeout") {
            Some((s, span)) => match self.duration(s, span.clone(), "approval.timeout") {
                Some(d) if d > Duration::from_secs(24 * 3600) => {
                    self.sink
                        .error(span, "`approval.timeout` is at most 24h".to_owned());
                    d
                }
                Some(d) if d.is_zero() => {
                    self.sink
                        .error(span, "`approval.timeout` must be longer than 0s".to_owned());
                    d
                }
                Some(d) => d,
                None => Duration::from_secs(300),
            },
            None => Duration::from_secs(300),
        };
        let channels = a.strs("channels").map_or_else(
            || vec!["terminal".into(), "watch".into(), "web".into()],
            |c| c.into_iter().map(|(s, _)| s.to_owned()).collect(),
        );
        let webhook_t = a.table("webhook");
        let webhook = webhook_t.str("url").map(|(u, span)| {
            self.check_url(u, span, "approval.webhook.url");
            Webhook {
                url: u.to_owned(),
                format: webhook_t
                    .str("format")
                    .map_or("json", |(f, _)| f)
                    .to_owned(),
            }
        });
        let non_interactive = match a.str("non_interactive") {
            Some(("webhook", span)) => {
                if webhook.is_none() {
                    self.sink.error(
                        span,
                        "`approval.non_interactive = \"webhook\"` needs `[approval.webhook]`"
                            .to_owned(),
                    );
                }
                NonInteractive::Webhook
            }
            Some(("wait", _)) => NonInteractive::Wait,
            Some(_) | None => NonInteractive::Deny,
        };
        if channels.iter().any(|c| c == "webhook")
            && webhook.is_none()
            && let Some(span) = a.key_span("channels")
        {
            self.sink.error(
                span,
                "the `webhook` channel needs `[approval.webhook]` with a `url`".to_owned(),
            );
        }
        ApprovalSettings {
            timeout,
            channels,
            non_interactive,
            webhook,
        }
    }

    fn check_url(&mut self, u: &str, span: Range<usize>, what: &str) {
        match url::Url::parse(u) {
            Ok(p) if p.scheme() == "https" || p.scheme() == "http" => {}
            Ok(p) => self.sink.error(
                span,
                format!("`{what}`: scheme `{}` is not http or https", p.scheme()),
            ),
            Err(e) => self
                .sink
                .error(span, format!("`{what}`: bad url `{u}`: {e}")),
        }
    }

    fn audit(&mut self, a: &Tbl<'_, '_>) -> AuditSettings {
        let fsync = match a.str("fsync").map(|(s, _)| s) {
            Some("always") => FsyncMode::Always,
            Some(_) | None => FsyncMode::SideEffects,
        };
        let mut sinks = Vec::new();
        for (i, s) in a.tables("sinks").into_iter().enumerate() {
            let id = format!("audit.sinks[{i}]");
            let kind = s.str("type").map(|(k, _)| k);
            let allowed: &[&str] = match kind {
                Some("file") => &["type", "path"],
                Some("otlp") => &["type", "endpoint", "signal"],
                Some("webhook") => &["type", "url"],
                Some(_) | None => continue,
            };
            for (k, kspan, _) in s.map() {
                if !allowed.contains(&k) {
                    self.sink.error(
                        kspan,
                        format!(
                            "`{id}.{k}` does not apply to a `{}` sink",
                            kind.unwrap_or_default()
                        ),
                    );
                }
            }
            match kind {
                Some("file") => match s.str("path") {
                    Some((p, span)) => {
                        let abs = self.abs_path(p);
                        if self.cx.origin == Origin::Project && !abs.starts_with(&self.cx.project_root) {
                            self.sink.error(span, format!("`{id}.path` `{p}` is outside the project: a project manifest may write files only inside the project; put this sink in your own config"));
                        }
                        sinks.push(AuditSink::File { path: Some(abs) });
                    }
                    None => self.sink.error(s.span.clone(), format!("`{id}`: a file sink needs `path` (the session's own log is always written)")),
                },
                Some("otlp") => match s.str("endpoint") {
                    Some((e, span)) => {
                        self.check_url(e, span, &format!("{id}.endpoint"));
                        sinks.push(AuditSink::Otlp {
                            endpoint: e.to_owned(),
                            signal: s.str("signal").map_or("logs", |(x, _)| x).to_owned(),
                        });
                    }
                    None => self.sink.error(
                        s.span.clone(),
                        format!("`{id}`: an otlp sink needs `endpoint`"),
                    ),
                },
                Some(_) => match s.str("url") {
                    Some((u, span)) => {
                        self.check_url(u, span, &format!("{id}.url"));
                        sinks.push(AuditSink::Webhook { url: u.to_owned() });
                    }
                    None => self.sink.error(
                        s.span.clone(),
                        format!("`{id}`: a webhook sink needs `url`"),
                    ),
                },
                None => {}
            }
        }
        let al = a.table("alerts");
        let burst = al.table("deny_burst");
        let deny_burst_count = burst
            .int("count")
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(10);
        let deny_burst_window = burst
            .str("window")
            .and_then(|(s, span)| self.duration(s, span, "audit.alerts.deny_burst.window"))
            .unwrap_or(Duration::from_secs(60));
        AuditSettings {
            fsync,
            sinks,
            alerts: Alerts {
                first_contact: al.bool("first_contact").unwrap_or(true),
                placeholder_leak: al.bool("placeholder_leak").unwrap_or(true),
                hidden_path: al.bool("hidden_path").unwrap_or(true),
                destructive_ask: al.bool("destructive_ask").unwrap_or(true),
                deny_burst_count,
                deny_burst_window,
            },
        }
    }

    fn limits(&mut self, l: &Tbl<'_, '_>) -> Limits {
        const GIB: u64 = 1 << 30;
        Limits {
            memory: l
                .str("memory")
                .and_then(|(s, span)| self.size(s, span, "limits.memory"))
                .unwrap_or(4 * GIB),
            pids: l
                .int("pids")
                .and_then(|n| u64::try_from(n).ok())
                .unwrap_or(1024),
            cpu: l
                .str("cpu")
                .and_then(|(s, span)| self.duration(s, span, "limits.cpu")),
            overlay: l
                .str("overlay")
                .and_then(|(s, span)| self.size(s, span, "limits.overlay"))
                .unwrap_or(10 * GIB),
        }
    }

    fn env_pass(&mut self, env: &Tbl<'_, '_>) -> Vec<String> {
        let mut out = Vec::new();
        for (name, span) in env.strs("pass").unwrap_or_default() {
            if !is_env_name(name) {
                self.sink
                    .error(span, format!("`env.pass`: `{name}` is not a variable name"));
                continue;
            }
            out.push(name.to_owned());
        }
        for (k, span, _) in env.table("set").map() {
            if !is_env_name(k) {
                self.sink
                    .error(span, format!("`env.set`: `{k}` is not a variable name"));
            }
        }
        out
    }

    // ---- tests ---------------------------------------------------------

    fn tests(&mut self, root: &Tbl<'_, '_>) -> Vec<TestCase> {
        let mut out = Vec::new();
        for (i, t) in root.tables("test").into_iter().enumerate() {
            let id = format!("test[{i}]");
            let present: Vec<&str> = ["net", "exec", "fs"]
                .into_iter()
                .filter(|k| t.get(k).is_some())
                .collect();
            if present.len() != 1 {
                self.sink.error(
                    t.span.clone(),
                    format!(
                        "`{id}` needs exactly one of `net`, `exec` or `fs` (found {})",
                        if present.is_empty() {
                            "none".to_owned()
                        } else {
                            present.join(", ")
                        }
                    ),
                );
                continue;
            }
            let action = match present.first().copied() {
                Some("net") => {
                    let n = t.table("net");
                    let Some((url, uspan)) = n.str("url") else {
                        continue;
                    };
                    if let Err(e) = url::Url::parse(url) {
                        self.sink
                            .error(uspan, format!("`{id}.net.url`: bad url `{url}`: {e}"));
                    }
                    let headers: Vec<String> = n
                        .strs("headers")
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(h, _)| h.to_owned())
                        .collect();
                    if let Err(e) = crate::action::parse_header_lines(&headers) {
                        self.sink
                            .error(n.span.clone(), format!("`{id}.net.headers`: {e}"));
                    }
                    if let (Some(_), Some((_, span))) = (n.get("body"), n.str("body_file")) {
                        self.sink.error(
                            span,
                            format!("`{id}.net`: give `body` or `body_file`, not both"),
                        );
                    }
                    TestAction::Net {
                        method: n.str("method").map_or("GET", |(m, _)| m).to_owned(),
                        url: url.to_owned(),
                        headers,
                        body: n.str("body").map(|(b, _)| b.to_owned()),
                        body_file: n.str("body_file").map(|(p, _)| self.abs_path(p)),
                    }
                }
                Some("exec") => {
                    let argv: Vec<String> = t
                        .strs("exec")
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(a, _)| a.to_owned())
                        .collect();
                    if argv.is_empty() {
                        self.sink
                            .error(t.span.clone(), format!("`{id}.exec` is empty"));
                        continue;
                    }
                    TestAction::Exec { argv }
                }
                Some(_) | None => {
                    let f = t.table("fs");
                    let Some((p, _)) = f.str("path") else {
                        continue;
                    };
                    let op = match f.str("op").map(|(o, _)| o) {
                        Some("write") => crate::action::FsOp::Write,
                        Some(_) | None => crate::action::FsOp::Read,
                    };
                    TestAction::Fs {
                        op,
                        path: self.abs_path(p),
                    }
                }
            };
            let expect = t
                .strs("expect")
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(v, _)| Verdict::parse(v))
                .collect::<Vec<_>>();
            if expect.is_empty() {
                continue;
            }
            out.push(TestCase {
                name: t.str("name").map(|(n, _)| n.to_owned()),
                at: self.rule_ref(id, &t.span),
                action,
                expect,
            });
        }
        out
    }
}

fn labels_of(ls: &[(&str, Range<usize>)]) -> Labels {
    let v: Vec<Label> = ls.iter().filter_map(|(s, _)| Label::parse(s)).collect();
    Labels::of(&v)
}

fn is_env_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

fn is_graphql_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// A glob where `*` stays within a path segment and `**` crosses them.
fn glob(p: &str) -> Result<Glob, String> {
    GlobBuilder::new(p)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| e.kind().to_string())
}

/// Escapes glob metacharacters in the fixed prefix (home, project root) of a
/// pattern so a directory named `[x]` is not read as a class.
fn escape_glob_prefix(p: &str) -> String {
    // Only the part before the first `**` or wildcard the manifest wrote can
    // come from the environment; escaping the whole of a default pattern's
    // prefix is enough because defaults hold no metacharacters but `**`.
    let (prefix, rest) = match p.find("/**") {
        Some(i) => p.split_at(i),
        None => (p, ""),
    };
    let mut out = String::with_capacity(p.len());
    for ch in prefix.chars() {
        if matches!(ch, '[' | ']' | '{' | '}' | '?' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push_str(rest);
    out
}

/// Lexical normalisation: `.` dropped, `..` pops (never above the root).
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::RootDir => out.push("/"),
            Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(x) => out.push(x),
        }
    }
    out
}

/// `30s`, `5m`, `8h`, `2d`, or combinations like `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let mut total: u64 = 0;
    let mut num = String::new();
    let mut any = false;
    for ch in s.trim().chars() {
        if ch.is_ascii_digit() {
            num.push(ch);
            continue;
        }
        let mult = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => {
                return Err(format!(
                    "bad duration `{s}`: expected a number and a unit (s, m, h, d), e.g. `5m`"
                ));
            }
        };
        let n: u64 = num
            .parse()
            .map_err(|_| format!("bad duration `{s}`: expected a number before `{ch}`"))?;
        total = n
            .checked_mul(mult)
            .and_then(|x| total.checked_add(x))
            .ok_or_else(|| format!("duration `{s}` is too long"))?;
        num.clear();
        any = true;
    }
    if !num.is_empty() || !any {
        return Err(format!(
            "bad duration `{s}`: expected a number and a unit (s, m, h, d), e.g. `5m`"
        ));
    }
    Ok(Duration::from_secs(total))
}

/// `512MiB`, `4GiB`, `10G` (binary), `100MB` (decimal), `1024` bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("bad size `{s}`: expected a number and a unit, e.g. `4GiB`"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        u => {
            return Err(format!(
                "bad size `{s}`: unknown unit `{u}` (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size `{s}` is too large"))
}
