//! The compiled matcher and `decide()`: pure, no I/O, no allocation on the
//! common path (a request whose host has rules and whose body holds no
//! GraphQL).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use blastwall_classify::graphql::{Call, Inspection, OpType};
use blastwall_classify::{Label, Labels};
use globset::GlobSet;
use serde::Serialize;

use crate::action::{Action, ExecAction, FsAction, FsOp, GitPush, NetAction};
use crate::host::{HostName, HostPattern};
use crate::settings::{ProjectMode, Settings};

/// allow, ask or deny. Ordered by strictness: `Allow < Ask < Deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The action goes ahead.
    Allow,
    /// The action waits for a person's yes.
    Ask,
    /// The action is refused.
    Deny,
}

impl Verdict {
    /// The verdict as written in a manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Ask => "ask",
            Verdict::Deny => "deny",
        }
    }

    /// Parses a verdict as written in a manifest.
    pub fn parse(s: &str) -> Option<Verdict> {
        match s {
            "allow" => Some(Verdict::Allow),
            "ask" => Some(Verdict::Ask),
            "deny" => Some(Verdict::Deny),
            _ => None,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the rule that decided stands: the manifest's file, line and column
/// and the rule's path in the manifest (`network.rule[2]`), or a built-in
/// default (line 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RuleRef {
    /// The rule's path in the manifest, or the built-in default's name.
    pub id: Arc<str>,
    /// The manifest file.
    pub file: Arc<str>,
    /// 1-based line; 0 for a built-in default.
    pub line: u32,
    /// 1-based column; 0 for a built-in default.
    pub col: u32,
}

impl RuleRef {
    /// Whether the rule is a built-in default rather than a line of the manifest.
    pub fn is_builtin(&self) -> bool {
        self.line == 0
    }
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_builtin() {
            write!(f, "built-in {} ({})", self.id, self.file)
        } else {
            write!(f, "{}:{}:{} ({})", self.file, self.line, self.col, self.id)
        }
    }
}

/// The answer to "allow, ask or deny — by which rule, and why?".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The verdict.
    pub verdict: Verdict,
    /// The rule that decided.
    pub rule: RuleRef,
    /// Why, in words for the agent and the approver.
    pub reason: Arc<str>,
    /// The risk labels of the action (or of the GraphQL call that decided).
    pub labels: Labels,
    /// What part of the action decided, when it was one part of several
    /// (`mutation volumeDelete`, `ref refs/heads/main`), or the host when no
    /// rule names it.
    pub subject: Option<String>,
}

/// A rule's identity and the reason it gives.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub(crate) rule: RuleRef,
    pub(crate) reason: Arc<str>,
    pub(crate) verdict: Verdict,
}

impl Meta {
    fn decision(&self, labels: Labels, subject: Option<String>) -> Decision {
        Decision {
            verdict: self.verdict,
            rule: self.rule.clone(),
            reason: Arc::clone(&self.reason),
            labels,
            subject,
        }
    }
}

/// GraphQL conditions of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GqlCond {
    pub(crate) types: Option<Vec<OpType>>,
    pub(crate) fields: Option<Vec<String>>,
}

impl GqlCond {
    fn matches(&self, call: &Call) -> bool {
        self.types.as_ref().is_none_or(|t| t.contains(&call.op))
            && self.fields.as_ref().is_none_or(|f| f.contains(&call.field))
    }

    /// Whether every call this matches is also matched by `other`.
    fn within(&self, other: &GqlCond) -> bool {
        let types = match (&self.types, &other.types) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(b)) => a.iter().all(|t| b.contains(t)),
        };
        let fields = match (&self.fields, &other.fields) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(b)) => a.iter().all(|f| b.contains(f)),
        };
        types && fields
    }
}

/// A compiled network rule.
#[derive(Debug, Clone)]
pub(crate) struct NetRule {
    pub(crate) meta: Meta,
    pub(crate) hosts: Vec<HostPattern>,
    pub(crate) ports: Option<Vec<u16>>,
    pub(crate) methods: Option<Vec<String>>,
    pub(crate) paths: Option<(GlobSet, Vec<String>)>,
    pub(crate) graphql: Option<GqlCond>,
    pub(crate) labels: Option<Labels>,
}

impl NetRule {
    fn port_ok(&self, port: u16) -> bool {
        match &self.ports {
            Some(p) => p.contains(&port),
            None => port == 443 || port == 80,
        }
    }

    fn method_ok(&self, m: &str) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|ms| ms.iter().any(|x| x == m))
    }

    fn path_ok(&self, path: &str) -> bool {
        self.paths.as_ref().is_none_or(|(g, _)| g.is_match(path))
    }

    fn matches(&self, a: &NetAction, method: &str, call: Option<&Call>) -> bool {
        if !(self.port_ok(a.port) && self.method_ok(method) && self.path_ok(&a.path)) {
            return false;
        }
        match (&self.graphql, call) {
            (Some(g), Some(c)) if !g.matches(c) => return false,
            (Some(_), None) => return false,
            (Some(_) | None, Some(_)) | (None, None) => {}
        }
        let labels = call.map_or(a.labels, |c| a.labels.union(c.labels));
        self.labels.is_none_or(|l| l.intersects(labels))
    }

    /// Whether every request this rule matches is also matched by `earlier`
    /// (so this rule can never decide). Conservative: `false` when unsure.
    pub(crate) fn shadowed_by(&self, earlier: &NetRule) -> bool {
        let hosts = self
            .hosts
            .iter()
            .all(|h| earlier.hosts.iter().any(|e| h.within(e)));
        let ports = match (&self.ports, &earlier.ports) {
            (_, None) => self
                .ports
                .as_ref()
                .is_none_or(|p| p.iter().all(|x| *x == 80 || *x == 443)),
            (None, Some(e)) => e.contains(&80) && e.contains(&443),
            (Some(a), Some(e)) => a.iter().all(|x| e.contains(x)),
        };
        let methods = match (&self.methods, &earlier.methods) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(e)) => a.iter().all(|x| e.contains(x)),
        };
        let paths = match (&self.paths, &earlier.paths) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some((_, a)), Some((_, e))) => a.iter().all(|x| e.contains(x)),
        };
        let graphql = match (&self.graphql, &earlier.graphql) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(e)) => a.within(e),
        };
        let labels = match (&self.labels, &earlier.labels) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(e)) => e.contains_all(*a),
        };
        hosts && ports && methods && paths && graphql && labels
    }

    /// Whether the two rules have the same conditions.
    pub(crate) fn same_conditions(&self, other: &NetRule) -> bool {
        self.shadowed_by(other) && other.shadowed_by(self)
    }
}

/// Git push rules.
#[derive(Debug, Clone)]
pub(crate) struct GitRules {
    pub(crate) protected: GlobSet,
    pub(crate) on_protected: Meta,
    pub(crate) on_delete: Meta,
    pub(crate) on_force: Meta,
}

/// The compiled network rules.
#[derive(Debug, Clone)]
pub(crate) struct NetMatcher {
    pub(crate) rules: Vec<NetRule>,
    pub(crate) exact: HashMap<HostName, Vec<usize>>,
    pub(crate) wildcard: HashMap<String, Vec<usize>>,
    pub(crate) default: Meta,
    pub(crate) git: GitRules,
}

impl NetMatcher {
    pub(crate) fn index(&mut self) {
        self.exact.clear();
        self.wildcard.clear();
        for (i, r) in self.rules.iter().enumerate() {
            for h in &r.hosts {
                match h {
                    HostPattern::Exact(name) => {
                        let v = self.exact.entry(name.clone()).or_default();
                        if v.last() != Some(&i) {
                            v.push(i);
                        }
                    }
                    HostPattern::Subdomains(d) => {
                        let v = self.wildcard.entry(d.clone()).or_default();
                        if v.last() != Some(&i) {
                            v.push(i);
                        }
                    }
                }
            }
        }
        // Each suffix's list also holds the rules of every shorter suffix
        // (`*.example.com` is in the list of `b.example.com`), so the longest
        // suffix of a host that has a list gives all its wildcard rules.
        let keys: Vec<String> = self.wildcard.keys().cloned().collect();
        let mut merged = HashMap::new();
        for k in &keys {
            let mut all: Vec<usize> = Vec::new();
            for k2 in &keys {
                if k2 == k || crate::host::is_subdomain(k, k2) {
                    all.extend(self.wildcard.get(k2).into_iter().flatten());
                }
            }
            all.sort_unstable();
            all.dedup();
            merged.insert(k.clone(), all);
        }
        self.wildcard = merged;
    }

    /// The rules naming `host`, in manifest order, without allocating.
    fn candidates<'a>(&'a self, host: &'a HostName) -> Candidates<'a> {
        let exact = self.exact.get(host).map_or(&[][..], Vec::as_slice);
        let mut wild: &[usize] = &[];
        if let HostName::Domain(d) = host {
            let mut rest = d.as_str();
            while let Some((_, tail)) = rest.split_once('.') {
                if let Some(v) = self.wildcard.get(tail) {
                    wild = v;
                    break;
                }
                rest = tail;
            }
        }
        Candidates {
            rules: &self.rules,
            exact,
            wild,
        }
    }

    fn decide(&self, a: &NetAction) -> Decision {
        let calls: &[Call] = match &a.graphql {
            Some(Inspection::Calls { calls }) => calls,
            Some(Inspection::Opaque { .. }) | None => &[],
        };
        let methods =
            std::iter::once(a.method.as_str()).chain(a.method_overrides.iter().map(String::as_str));

        // GraphQL the rules need to see but could not be read: the strictest
        // verdict the host's rules give, and never `allow`.
        let cands = self.candidates(&a.host);
        let inspected = !calls.is_empty();
        if !inspected {
            let needs = cands.clone().any(|r| {
                r.graphql.is_some()
                    && r.port_ok(a.port)
                    && r.path_ok(&a.path)
                    && methods.clone().any(|m| r.method_ok(m))
            });
            if needs {
                return self.opaque(a, methods);
            }
        }

        let mut best: Option<Decision> = None;
        for m in methods {
            if calls.is_empty() {
                let d = self.unit(cands.clone(), a, m, None);
                keep_strictest(&mut best, d);
            } else {
                for c in calls {
                    let d = self.unit(cands.clone(), a, m, Some(c));
                    keep_strictest(&mut best, d);
                }
            }
        }
        let mut d = best.unwrap_or_else(|| self.default.decision(a.labels, Some(host_subject(a))));
        if d.verdict != Verdict::Deny
            && let Some(push) = &a.git_push
        {
            self.git_push(push, &mut d);
        }
        d
    }

    fn unit(
        &self,
        cands: Candidates<'_>,
        a: &NetAction,
        method: &str,
        call: Option<&Call>,
    ) -> Decision {
        let labels = call.map_or(a.labels, |c| a.labels.union(c.labels));
        let subject = || call.map(|c| format!("{} {}", c.op.as_str(), c.field));
        for r in cands {
            if r.matches(a, method, call) {
                return r.meta.decision(labels, subject());
            }
        }
        let subject = subject().or_else(|| Some(host_subject(a)));
        self.default.decision(labels, subject)
    }

    fn opaque<'m>(
        &self,
        a: &NetAction,
        methods: impl Iterator<Item = &'m str> + Clone,
    ) -> Decision {
        let mut labels = a.labels;
        labels.insert(Label::Opaque);
        let mut strictest: Option<&NetRule> = None;
        for r in self.candidates(&a.host) {
            if r.port_ok(a.port)
                && r.path_ok(&a.path)
                && methods.clone().any(|m| r.method_ok(m))
                && strictest.is_none_or(|s| r.meta.verdict > s.meta.verdict)
            {
                strictest = Some(r);
            }
        }
        let why = match &a.graphql {
            Some(Inspection::Opaque { reason }) => opaque_words(reason),
            Some(Inspection::Calls { .. }) => "the GraphQL request names no operation".to_owned(),
            None => "the request carries no GraphQL document to inspect".to_owned(),
        };
        let (verdict, rule) = match strictest {
            Some(r) => (r.meta.verdict.max(Verdict::Ask), r.meta.rule.clone()),
            None => (Verdict::Deny, self.default.rule.clone()),
        };
        Decision {
            verdict,
            rule,
            reason: Arc::from(format!(
                "{why}; given the strictest verdict this host's rules allow, never allow"
            )),
            labels,
            subject: Some("graphql (uninspectable)".to_owned()),
        }
    }

    fn git_push(&self, push: &GitPush, d: &mut Decision) {
        match push {
            GitPush::Unreadable { reason } => {
                let v = self.git.on_delete.verdict.max(Verdict::Ask);
                if v > d.verdict {
                    *d = Decision {
                        verdict: v,
                        rule: self.git.on_delete.rule.clone(),
                        reason: Arc::from(format!(
                            "the push's ref updates could not be read ({reason}); a person must look"
                        )),
                        labels: d.labels.union(Labels::of(&[Label::Write, Label::Opaque])),
                        subject: Some("git push".into()),
                    };
                }
            }
            GitPush::Updates { updates } => {
                for u in updates {
                    let name = &u.update.name;
                    let branch = name.strip_prefix("refs/heads/").unwrap_or(name);
                    let mut labels = d.labels.union(Labels::of(&[Label::Write]));
                    let mut candidates: Vec<&Meta> = Vec::new();
                    if u.update.delete {
                        labels.insert(Label::Destructive);
                        labels.insert(Label::Irreversible);
                        candidates.push(&self.git.on_delete);
                    }
                    if u.non_fast_forward == Some(true) {
                        labels.insert(Label::Destructive);
                        candidates.push(&self.git.on_force);
                    }
                    if self.git.protected.is_match(branch) || self.git.protected.is_match(name) {
                        candidates.push(&self.git.on_protected);
                    }
                    if let Some(m) = candidates.into_iter().max_by_key(|m| m.verdict)
                        && m.verdict > d.verdict
                    {
                        *d = m.decision(labels, Some(format!("ref {name}")));
                    }
                }
            }
        }
    }
}

fn host_subject(a: &NetAction) -> String {
    format!("host {}:{}", a.host, a.port)
}

fn opaque_words(o: &blastwall_classify::graphql::Opaque) -> String {
    use blastwall_classify::graphql::Opaque;
    match o {
        Opaque::Empty => "the GraphQL request has no body".into(),
        Opaque::NotJson(d) => format!("the body is not a GraphQL request ({d})"),
        Opaque::DuplicateKey(k) => format!("the body repeats the JSON key `{k}`"),
        Opaque::Syntax(d) => format!("the GraphQL document does not parse ({d})"),
        Opaque::PersistedQuery => {
            "a persisted-query hash with no document: the operation is unknown".into()
        }
        Opaque::UnknownOperation(d) => format!("the operation to run is ambiguous ({d})"),
        Opaque::BadFragment(d) => format!("a fragment cannot be resolved ({d})"),
        Opaque::TooLarge => "the body is past the inspection bound".into(),
        Opaque::TooComplex => "the document is past the inspection bound".into(),
    }
}

fn keep_strictest(best: &mut Option<Decision>, d: Decision) {
    match best {
        Some(b) if b.verdict >= d.verdict => {}
        Some(_) | None => *best = Some(d),
    }
}

struct Candidates<'a> {
    rules: &'a [NetRule],
    exact: &'a [usize],
    wild: &'a [usize],
}

impl<'a> Iterator for Candidates<'a> {
    type Item = &'a NetRule;

    fn next(&mut self) -> Option<&'a NetRule> {
        let idx = match (self.exact.split_first(), self.wild.split_first()) {
            (Some((&e, er)), Some((&w, wr))) => {
                if e <= w {
                    self.exact = er;
                    if e == w {
                        self.wild = wr;
                    }
                    e
                } else {
                    self.wild = wr;
                    w
                }
            }
            (Some((&e, er)), None) => {
                self.exact = er;
                e
            }
            (None, Some((&w, wr))) => {
                self.wild = wr;
                w
            }
            (None, None) => return None,
        };
        self.rules.get(idx)
    }
}

impl Clone for Candidates<'_> {
    fn clone(&self) -> Self {
        Candidates {
            rules: self.rules,
            exact: self.exact,
            wild: self.wild,
        }
    }
}

/// A compiled exec rule.
#[derive(Debug, Clone)]
pub(crate) struct ExecRule {
    pub(crate) meta: Meta,
    pub(crate) program: Option<(GlobSet, GlobSet)>,
    pub(crate) args: Vec<globset::GlobMatcher>,
    pub(crate) labels: Option<Labels>,
}

/// The compiled exec rules.
#[derive(Debug, Clone)]
pub(crate) struct ExecMatcher {
    pub(crate) rules: Vec<ExecRule>,
    pub(crate) default: Meta,
}

impl ExecMatcher {
    fn decide(&self, a: &ExecAction) -> Decision {
        let prog = a.argv.first().map_or("", String::as_str);
        let base = prog.rsplit('/').next().unwrap_or(prog);
        let args = a.argv.get(1..).unwrap_or_default();
        for r in &self.rules {
            let prog_ok = r
                .program
                .as_ref()
                .is_none_or(|(by_base, by_path)| by_base.is_match(base) || by_path.is_match(prog));
            let args_ok = r.args.iter().all(|g| args.iter().any(|x| g.is_match(x)));
            let labels_ok = r.labels.is_none_or(|l| l.intersects(a.labels));
            if prog_ok && args_ok && labels_ok {
                return r.meta.decision(a.labels, None);
            }
        }
        self.default.decision(a.labels, None)
    }
}

/// The compiled file-system view.
#[derive(Debug, Clone)]
pub(crate) struct FsMatcher {
    pub(crate) hidden: GlobSet,
    pub(crate) hidden_meta: Vec<Meta>,
    pub(crate) write: Vec<(PathBuf, Meta)>,
    pub(crate) read: Vec<(PathBuf, Meta)>,
    pub(crate) project: Meta,
    pub(crate) builtin: Arc<str>,
}

/// Host files hidden inside whatever the manifest says: they hold secrets or
/// switch the whole machine.
const HOST_SECRETS: &[&str] = &[
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/shadow-",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssh/ssh_host_*",
    "/root",
    "/var/log",
    "/proc/kcore",
    "/proc/keys",
    "/proc/sysrq-trigger",
];

impl FsMatcher {
    fn builtin(&self, id: &str, verdict: Verdict, reason: &str, labels: Labels) -> Decision {
        Decision {
            verdict,
            rule: RuleRef {
                id: Arc::from(id),
                file: Arc::clone(&self.builtin),
                line: 0,
                col: 0,
            },
            reason: Arc::from(reason),
            labels,
            subject: None,
        }
    }

    fn decide(&self, a: &FsAction, s: &Settings) -> Decision {
        let p = a.path.as_path();
        let write = a.op == FsOp::Write;
        let mut write_labels = Labels::EMPTY;
        if write {
            write_labels.insert(Label::Write);
        }
        if let Some(i) = self.hidden.matches(p).first() {
            let meta = self.hidden_meta.get(*i).unwrap_or(&self.project);
            let mut labels = write_labels;
            labels.insert(Label::CredentialAccess);
            return meta.decision(labels, Some(p.display().to_string()));
        }
        let under_home = under(p, &s.home);
        for secret in HOST_SECRETS {
            let hit = match secret.strip_suffix('*') {
                Some(prefix) => p.to_string_lossy().starts_with(prefix),
                None => under(p, Path::new(secret)),
            };
            if hit && !(*secret == "/root" && under_home) {
                return self.builtin(
                    "filesystem.host-secrets",
                    Verdict::Deny,
                    "host secrets and global switches are absent inside the wall",
                    write_labels,
                );
            }
        }
        // The most specific grant wins, so `~/.claude` read-write with
        // `~/.claude/settings.json` read-only keeps the settings read-only.
        let grant_w = most_specific(&self.write, p);
        let grant_r = most_specific(&self.read, p);
        if let Some((depth, m)) = grant_w
            && grant_r.is_none_or(|(rd, _)| rd < depth)
        {
            return m.decision(write_labels, None);
        }
        if under(p, &s.project_root) {
            return match (a.op, s.project_mode) {
                (FsOp::Read, _) | (FsOp::Write, ProjectMode::Rw) => {
                    self.project.decision(write_labels, None)
                }
                (FsOp::Write, ProjectMode::Overlay) => Decision {
                    reason: Arc::from(
                        "writes land in the session's overlay; they reach the project only through `blastwall commit`",
                    ),
                    ..self.project.decision(write_labels, None)
                },
                (FsOp::Write, ProjectMode::Ro) => Decision {
                    verdict: Verdict::Deny,
                    reason: Arc::from(
                        "the project is mounted read-only (filesystem.project = \"ro\")",
                    ),
                    ..self.project.decision(write_labels, None)
                },
            };
        }
        if let Some((_, m)) = grant_r {
            return match a.op {
                FsOp::Read => m.decision(write_labels, None),
                FsOp::Write => Decision {
                    verdict: Verdict::Deny,
                    reason: Arc::from("granted read-only"),
                    ..m.decision(write_labels, None)
                },
            };
        }
        if under_home {
            return self.builtin(
                "filesystem.home",
                Verdict::Deny,
                "the home directory inside is private and empty except what the manifest grants",
                write_labels,
            );
        }
        if p.starts_with("/tmp") || p.starts_with("/var/tmp") || p.starts_with("/dev/shm") {
            return self.builtin(
                "filesystem.tmp",
                Verdict::Allow,
                "a private temporary directory of the session",
                write_labels,
            );
        }
        match a.op {
            FsOp::Read => self.builtin(
                "filesystem.system",
                Verdict::Allow,
                "the system is visible read-only",
                write_labels,
            ),
            FsOp::Write => self.builtin(
                "filesystem.system",
                Verdict::Deny,
                "the system is read-only inside the wall",
                write_labels,
            ),
        }
    }
}

fn most_specific<'a>(list: &'a [(PathBuf, Meta)], p: &Path) -> Option<(usize, &'a Meta)> {
    list.iter()
        .filter(|(d, _)| under(p, d))
        .map(|(d, m)| (depth(d), m))
        .max_by_key(|(n, _)| *n)
}

fn depth(d: &Path) -> usize {
    d.as_os_str()
        .as_encoded_bytes()
        .iter()
        .filter(|b| **b == b'/')
        .count()
}

/// `Path::starts_with` for absolute, lexically normalised paths, on bytes.
fn under(p: &Path, dir: &Path) -> bool {
    let p = p.as_os_str().as_encoded_bytes();
    let d = dir.as_os_str().as_encoded_bytes();
    let d = d.strip_suffix(b"/").unwrap_or(d);
    p.starts_with(d) && matches!(p.get(d.len()), None | Some(b'/'))
}

/// A compiled manifest: the rules, ready for [`Policy::decide`], and the settings.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) net: NetMatcher,
    pub(crate) exec: ExecMatcher,
    pub(crate) fs: FsMatcher,
    pub(crate) settings: Settings,
    pub(crate) tests: Vec<crate::manifest::TestCase>,
    pub(crate) file: Arc<str>,
}

impl Policy {
    /// Allow, ask or deny — by which rule, and why. Pure: no I/O.
    pub fn decide(&self, action: &Action) -> Decision {
        match action {
            Action::Net(a) => self.net.decide(a),
            Action::Exec(a) => self.exec.decide(a),
            Action::Fs(a) => self.fs.decide(a, &self.settings),
        }
    }

    /// Whether a request to this host, port, method and path must have its
    /// body read (a rule there looks at GraphQL, or it is a git push), so
    /// the proxy knows before it forwards.
    pub fn needs_body(&self, host: &HostName, port: u16, method: &str, path: &str) -> bool {
        (method == "POST" && path.ends_with("/git-receive-pack"))
            || self
                .net
                .candidates(host)
                .any(|r| r.graphql.is_some() && r.port_ok(port) && r.path_ok(path))
    }

    /// The settings that are not rules.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The `[[test]]` cases the manifest carries.
    pub fn tests(&self) -> &[crate::manifest::TestCase] {
        &self.tests
    }

    /// The manifest's file name as given.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The ports network rules name explicitly (`ports = [...]`), sorted,
    /// without duplicates: where programs that ignore the proxy variables
    /// may also be caught inside.
    pub fn declared_ports(&self) -> Vec<u16> {
        let mut v: Vec<u16> = self
            .net
            .rules
            .iter()
            .filter_map(|r| r.ports.as_ref())
            .flatten()
            .copied()
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// How many network rules there are.
    pub fn net_rule_count(&self) -> usize {
        self.net.rules.len()
    }

    /// Whether `path` is hidden inside.
    pub fn is_hidden(&self, path: &Path) -> bool {
        self.fs.hidden.is_match(path)
    }
}
