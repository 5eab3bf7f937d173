//! The manifest's shape, defined once: the checker walks a parsed document
//! against it (unknown keys with a did-you-mean, wrong types, values out of
//! an enumeration, missing keys) and [`json_schema`] publishes the same
//! definition as a JSON Schema. The typed reader in `manifest` then reads
//! only documents this walk accepted, and adds the checks a shape cannot
//! express (globs, host patterns, paths, duplicates).

use serde_json::{Map, Value, json};

/// The type a key's value must have.
#[derive(Debug)]
pub(crate) enum Ty {
    /// A string.
    Str,
    /// An integer within bounds.
    Int { min: i64, max: i64 },
    /// `true` or `false`.
    Bool,
    /// One of a fixed set of strings.
    Enum(&'static [&'static str]),
    /// A string, or an array of strings.
    StrOrList,
    /// A string, or an array of strings, each one of a fixed set.
    EnumOrList(&'static [&'static str]),
    /// An array whose items have one type.
    List(&'static Ty),
    /// A table with known keys.
    Table(&'static TableSchema),
    /// An array of tables with known keys (`[[x]]`).
    Tables(&'static TableSchema),
    /// A table whose keys are free and whose values have one type.
    Map(&'static Ty),
    /// A section reserved for a later version: present is an error.
    Reserved(&'static str),
}

/// One key of a table.
#[derive(Debug)]
pub(crate) struct Field {
    pub(crate) name: &'static str,
    pub(crate) ty: Ty,
    pub(crate) required: bool,
    pub(crate) doc: &'static str,
}

/// A table's keys.
#[derive(Debug)]
pub(crate) struct TableSchema {
    pub(crate) doc: &'static str,
    pub(crate) fields: &'static [Field],
}

impl TableSchema {
    pub(crate) fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

const fn opt(name: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field {
        name,
        ty,
        required: false,
        doc,
    }
}

const fn req(name: &'static str, ty: Ty, doc: &'static str) -> Field {
    Field {
        name,
        ty,
        required: true,
        doc,
    }
}

/// Verdict names as written in a manifest.
pub(crate) const VERDICTS: &[&str] = &["allow", "ask", "deny"];
const DEFAULT_VERDICTS: &[&str] = &["ask", "deny"];
const PROJECT_MODES: &[&str] = &["overlay", "ro", "rw"];
const GRAPHQL_TYPES: &[&str] = &["query", "mutation", "subscription"];
pub(crate) const LABELS: &[&str] = &[
    "read",
    "write",
    "destructive",
    "irreversible",
    "credential-access",
    "exfiltration",
    "opaque",
];
const FS_OPS: &[&str] = &["read", "write"];
const CHANNELS: &[&str] = &["terminal", "watch", "web", "webhook"];
const NON_INTERACTIVE: &[&str] = &["deny", "wait", "webhook"];
const WEBHOOK_FORMATS: &[&str] = &["slack", "discord", "json"];
const FSYNC: &[&str] = &["always", "side-effects"];
const SINK_TYPES: &[&str] = &["file", "otlp", "webhook"];
const OTLP_SIGNALS: &[&str] = &["logs", "spans"];
/// The sandbox's optional layers, by the names `blastwall doctor` and the
/// session record use.
pub(crate) const LAYERS: &[&str] = &[
    "landlock",
    "landlock-net",
    "landlock-scope",
    "seccomp",
    "cgroup",
    "cgroup-namespace",
];

static GRAPHQL: TableSchema = TableSchema {
    doc: "GraphQL conditions: the rule matches one root-field call of a GraphQL request. Every call of every operation (aliases, fragments, batches and operationName notwithstanding) is decided on its own; the strictest verdict wins.",
    fields: &[
        opt(
            "type",
            Ty::EnumOrList(GRAPHQL_TYPES),
            "Operation types this rule covers (`query`, `mutation`, `subscription`); any when absent.",
        ),
        opt(
            "fields",
            Ty::List(&Ty::Str),
            "Root fields this rule covers, exact names (the schema's field, never the client-chosen alias or operation name); any when absent.",
        ),
    ],
};

static NET_RULE: TableSchema = TableSchema {
    doc: "A network rule. Rules are tried in order; the first whose every condition holds decides.",
    fields: &[
        req(
            "host",
            Ty::StrOrList,
            "Host name(s): `api.example.com`, or `*.example.com` for any subdomain (not the apex). IP literals are written as such. Case and a trailing dot are ignored; IDNs may be written in Unicode or punycode.",
        ),
        opt(
            "ports",
            Ty::List(&Ty::Int { min: 1, max: 65535 }),
            "Ports; when absent, 443 and 80 (the default ports of https and http).",
        ),
        opt(
            "methods",
            Ty::StrOrList,
            "HTTP methods; any when absent. Method-override headers count as the method they name.",
        ),
        opt(
            "paths",
            Ty::StrOrList,
            "Path globs (`*` within a segment, `**` across segments, `?`, `[a-z]`, `{a,b}`); any when absent. Matched against the normalised path without the query.",
        ),
        opt("graphql", Ty::Table(&GRAPHQL), GRAPHQL.doc),
        opt(
            "labels",
            Ty::EnumOrList(LABELS),
            "Risk labels: the rule matches when the request (or GraphQL call) carries any of them.",
        ),
        req(
            "verdict",
            Ty::Enum(VERDICTS),
            "`allow`, `ask` (hold for a person's yes) or `deny`.",
        ),
        opt(
            "reason",
            Ty::Str,
            "Why, in words the agent and the approver read.",
        ),
    ],
};

static GIT: TableSchema = TableSchema {
    doc: "Rules for git pushes over HTTPS (`git-receive-pack`): each ref update is decided after the host's rules allowed the request; the stricter verdict wins.",
    fields: &[
        opt(
            "protected",
            Ty::List(&Ty::Str),
            "Protected refs, as globs over branch names (`main`, `release/*`) or full ref names (`refs/tags/*`). Default `[\"main\", \"master\"]`.",
        ),
        opt(
            "on_protected",
            Ty::Enum(VERDICTS),
            "Verdict for any update of a protected ref. Default `ask`.",
        ),
        opt(
            "on_delete",
            Ty::Enum(VERDICTS),
            "Verdict for a ref deletion. Default `ask`.",
        ),
        opt(
            "on_force",
            Ty::Enum(VERDICTS),
            "Verdict for a non-fast-forward update, as far as the proxy can tell. Default `ask`.",
        ),
    ],
};

static NETWORK: TableSchema = TableSchema {
    doc: "Egress: everything the agent sends leaves through blastwall's proxy and is decided here.",
    fields: &[
        opt(
            "default",
            Ty::Enum(DEFAULT_VERDICTS),
            "Verdict for a request no rule matches: `deny` (default) or `ask`. `allow` is not accepted: write a rule.",
        ),
        opt("rule", Ty::Tables(&NET_RULE), NET_RULE.doc),
        opt("git", Ty::Table(&GIT), GIT.doc),
        opt(
            "resolve",
            Ty::Map(&Ty::Str),
            "`\"host:port\" = \"127.0.0.1:8443\"`: connect to this address for exactly that host and port (like curl's --resolve); the address is thereby declared, nothing else on loopback is.",
        ),
        opt(
            "upstream_ca",
            Ty::List(&Ty::Str),
            "Extra PEM files of CAs trusted for upstream TLS (beside the system roots), relative to the manifest.",
        ),
    ],
};

static FILESYSTEM: TableSchema = TableSchema {
    doc: "What the agent sees of the file system.",
    fields: &[
        opt(
            "project",
            Ty::Enum(PROJECT_MODES),
            "How the project (the manifest's directory) is mounted: `overlay` (default: writes land in the session's overlay for diff/commit/discard), `ro`, or `rw`.",
        ),
        opt(
            "read",
            Ty::List(&Ty::Str),
            "Extra read-only paths (`~/` is the home directory; relative paths are under the project). In a project manifest, paths in your home outside the project only when your own config grants them.",
        ),
        opt(
            "write",
            Ty::List(&Ty::Str),
            "Extra read-write paths. In a project manifest, only paths inside the project, or granted in your own config.",
        ),
        opt(
            "hide",
            Ty::List(&Ty::Str),
            "Extra hidden path globs, on top of the defaults (`~/.aws`, `~/.ssh`, … and `.env*` in the project).",
        ),
    ],
};

static CREDENTIAL: TableSchema = TableSchema {
    doc: "A credential: inside the wall the variable `env` holds a per-session placeholder; the proxy swaps in the real value only on requests to `hosts`, in the declared place.",
    fields: &[
        req(
            "name",
            Ty::Str,
            "The credential's name; its source is defined in your own config under this name.",
        ),
        opt(
            "env",
            Ty::Str,
            "The variable holding the placeholder inside. Default: the name upper-cased.",
        ),
        req(
            "hosts",
            Ty::StrOrList,
            "Hosts the real value may be sent to (same patterns as network rules).",
        ),
        opt(
            "header",
            Ty::Str,
            "The header it is sent in. Default `Authorization`.",
        ),
        opt(
            "prefix",
            Ty::Str,
            "What precedes the value in the header. Default `Bearer ` for `Authorization`, empty otherwise.",
        ),
        opt(
            "query",
            Ty::Str,
            "Send it as this query parameter instead of a header (only where declared).",
        ),
        opt(
            "ttl",
            Ty::Str,
            "How long the placeholder lives (`30m`, `8h`); at most the session.",
        ),
        opt(
            "source",
            Ty::Str,
            "Only in your own config: `store:NAME`, `env:VAR`, `file:PATH` or `command:PROGRAM ARGS`. A project manifest may not name a source.",
        ),
    ],
};

static EXEC_RULE: TableSchema = TableSchema {
    doc: "An exec rule, tried in order.",
    fields: &[
        opt(
            "program",
            Ty::StrOrList,
            "Program glob(s), matched against the basename of argv[0] (or the full path when the glob has a `/`).",
        ),
        opt(
            "args",
            Ty::List(&Ty::Str),
            "Argument globs that must each match some argument.",
        ),
        opt(
            "labels",
            Ty::EnumOrList(LABELS),
            "Risk labels from the command classifier: the rule matches when the command carries any of them.",
        ),
        req("verdict", Ty::Enum(VERDICTS), "`allow`, `ask` or `deny`."),
        opt("reason", Ty::Str, "Why."),
    ],
};

static EXEC: TableSchema = TableSchema {
    doc: "Commands. Parsed and explained; `run` lists them as not enforced until the exec interceptor lands.",
    fields: &[
        opt(
            "default",
            Ty::Enum(VERDICTS),
            "Verdict for a command no rule matches. Default `allow`.",
        ),
        opt("rule", Ty::Tables(&EXEC_RULE), EXEC_RULE.doc),
    ],
};

static WEBHOOK: TableSchema = TableSchema {
    doc: "An outgoing webhook.",
    fields: &[
        req("url", Ty::Str, "Where to post."),
        opt(
            "format",
            Ty::Enum(WEBHOOK_FORMATS),
            "`slack`, `discord` or `json` (default).",
        ),
    ],
};

static APPROVAL: TableSchema = TableSchema {
    doc: "How an `ask` reaches a person.",
    fields: &[
        opt(
            "timeout",
            Ty::Str,
            "How long an ask waits (`5m` default, at most `24h`).",
        ),
        opt(
            "on_timeout",
            Ty::Enum(&["deny"]),
            "What a timed-out ask becomes: `deny` (the only value: silence is never a yes).",
        ),
        opt(
            "channels",
            Ty::EnumOrList(CHANNELS),
            "Where asks are shown: `terminal`, `watch`, `web`, `webhook`. Default all but `webhook`.",
        ),
        opt(
            "non_interactive",
            Ty::Enum(NON_INTERACTIVE),
            "With no terminal (CI): `deny` at once (default), `wait` for `approve`, `watch` or the page, or `webhook` (post it and wait).",
        ),
        opt("webhook", Ty::Table(&WEBHOOK), WEBHOOK.doc),
    ],
};

static SINK: TableSchema = TableSchema {
    doc: "An audit sink.",
    fields: &[
        req("type", Ty::Enum(SINK_TYPES), "`file`, `otlp` or `webhook`."),
        opt(
            "path",
            Ty::Str,
            "For `file` (required): an extra copy of the log, inside the project for a project manifest (the session's own log is always written).",
        ),
        opt("endpoint", Ty::Str, "For `otlp`: the collector's URL."),
        opt(
            "signal",
            Ty::Enum(OTLP_SIGNALS),
            "For `otlp`: `logs` (default) or `spans`.",
        ),
        opt("url", Ty::Str, "For `webhook`: where to post."),
    ],
};

static BURST: TableSchema = TableSchema {
    doc: "A burst threshold.",
    fields: &[
        req(
            "count",
            Ty::Int {
                min: 1,
                max: 1_000_000,
            },
            "How many.",
        ),
        req("window", Ty::Str, "Within how long (`60s`)."),
    ],
};

static ALERTS: TableSchema = TableSchema {
    doc: "Anomaly rules that raise alerts.",
    fields: &[
        opt(
            "first_contact",
            Ty::Bool,
            "Alert on the first request to an undeclared host. Default true.",
        ),
        opt(
            "placeholder_leak",
            Ty::Bool,
            "Alert when a placeholder is sent outside its hosts. Default true.",
        ),
        opt(
            "hidden_path",
            Ty::Bool,
            "Alert on an attempt on a hidden path. Default true.",
        ),
        opt(
            "destructive_ask",
            Ty::Bool,
            "Alert on any ask labelled destructive. Default true.",
        ),
        opt(
            "deny_burst",
            Ty::Table(&BURST),
            "Alert on N denials within a window. Default 10 in 60s.",
        ),
    ],
};

static AUDIT: TableSchema = TableSchema {
    doc: "The write-ahead audit log.",
    fields: &[
        opt(
            "fsync",
            Ty::Enum(FSYNC),
            "`side-effects` (default: an action with side effects is durable before release, reads are group-committed) or `always`.",
        ),
        opt("sinks", Ty::Tables(&SINK), SINK.doc),
        opt("alerts", Ty::Table(&ALERTS), ALERTS.doc),
    ],
};

static LIMITS: TableSchema = TableSchema {
    doc: "Resource limits of the sandbox.",
    fields: &[
        opt("memory", Ty::Str, "Memory (`4GiB`). Default 4GiB."),
        opt(
            "pids",
            Ty::Int {
                min: 1,
                max: 4_194_304,
            },
            "Processes and threads. Default 1024.",
        ),
        opt("cpu", Ty::Str, "CPU time (`2h`). Default none."),
        opt(
            "overlay",
            Ty::Str,
            "Bytes written to the project overlay (`10GiB`). Default 10GiB.",
        ),
    ],
};

static SANDBOX: TableSchema = TableSchema {
    doc: "The wall itself.",
    fields: &[opt(
        "accept_missing",
        Ty::EnumOrList(LAYERS),
        "Layers `run` may start without when this host cannot apply them (the session records which were in force). Default none: a missing layer stops `run`.",
    )],
};

static ENV: TableSchema = TableSchema {
    doc: "The environment inside: an allowlist, never the host's.",
    fields: &[
        opt(
            "pass",
            Ty::List(&Ty::Str),
            "Host variables passed in by name, on top of PATH, TERM, LANG, LC_*, TZ, HOME, USER, SHELL.",
        ),
        opt("set", Ty::Map(&Ty::Str), "Variables set inside."),
    ],
};

static TEST_NET: TableSchema = TableSchema {
    doc: "A network request.",
    fields: &[
        opt("method", Ty::Str, "Default `GET`."),
        req("url", Ty::Str, "The absolute URL."),
        opt("headers", Ty::List(&Ty::Str), "`\"Name: value\"` lines."),
        opt("body", Ty::Str, "The body."),
        opt(
            "body_file",
            Ty::Str,
            "The body, from a file relative to the manifest.",
        ),
    ],
};

static TEST_FS: TableSchema = TableSchema {
    doc: "A file access.",
    fields: &[
        req("op", Ty::Enum(FS_OPS), "`read` or `write`."),
        req(
            "path",
            Ty::Str,
            "The path (`~/` and project-relative allowed).",
        ),
    ],
};

static TEST: TableSchema = TableSchema {
    doc: "A test case `blastwall policy test` runs: one action and the verdict expected.",
    fields: &[
        opt("name", Ty::Str, "What the case shows."),
        opt("net", Ty::Table(&TEST_NET), TEST_NET.doc),
        opt("exec", Ty::List(&Ty::Str), "A command line (argv)."),
        opt("fs", Ty::Table(&TEST_FS), TEST_FS.doc),
        req(
            "expect",
            Ty::EnumOrList(VERDICTS),
            "The verdict expected, or a list of acceptable verdicts.",
        ),
    ],
};

static PROJECT: TableSchema = TableSchema {
    doc: "About the project.",
    fields: &[opt("name", Ty::Str, "A name for sessions and approvals.")],
};

/// The top level of `blastwall.toml`.
pub(crate) static ROOT: TableSchema = TableSchema {
    doc: "blastwall.toml: the capability declaration of an AI agent.",
    fields: &[
        req(
            "version",
            Ty::Int { min: 1, max: 1 },
            "The manifest format version: `1`.",
        ),
        opt("project", Ty::Table(&PROJECT), PROJECT.doc),
        opt("filesystem", Ty::Table(&FILESYSTEM), FILESYSTEM.doc),
        opt("network", Ty::Table(&NETWORK), NETWORK.doc),
        opt("credential", Ty::Tables(&CREDENTIAL), CREDENTIAL.doc),
        opt("exec", Ty::Table(&EXEC), EXEC.doc),
        opt("approval", Ty::Table(&APPROVAL), APPROVAL.doc),
        opt("audit", Ty::Table(&AUDIT), AUDIT.doc),
        opt("limits", Ty::Table(&LIMITS), LIMITS.doc),
        opt("sandbox", Ty::Table(&SANDBOX), SANDBOX.doc),
        opt("env", Ty::Table(&ENV), ENV.doc),
        opt(
            "sql",
            Ty::Reserved("SQL statement rules"),
            "Reserved: SQL statement rules (not yet supported; present is an error).",
        ),
        opt(
            "mcp",
            Ty::Reserved("MCP tool rules"),
            "Reserved: MCP tool rules (not yet supported; present is an error).",
        ),
        opt("test", Ty::Tables(&TEST), TEST.doc),
    ],
};

/// The manifest's JSON Schema (draft 2020-12), generated from the same
/// definition the checker uses, so the two cannot drift apart.
pub fn json_schema() -> Value {
    let mut root = table_schema(&ROOT);
    if let Value::Object(m) = &mut root {
        m.insert(
            "$schema".into(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
        m.insert(
            "$id".into(),
            json!("https://blastwall.dev/schema/blastwall.toml/v1.json"),
        );
        m.insert("title".into(), json!("blastwall.toml"));
    }
    root
}

fn table_schema(t: &TableSchema) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for f in t.fields {
        let mut v = ty_schema(&f.ty);
        if let Value::Object(m) = &mut v {
            m.entry("description").or_insert(json!(f.doc));
        }
        props.insert(f.name.into(), v);
        if f.required {
            required.push(json!(f.name));
        }
    }
    let mut m = Map::new();
    m.insert("type".into(), json!("object"));
    m.insert("description".into(), json!(t.doc));
    m.insert("properties".into(), Value::Object(props));
    m.insert("additionalProperties".into(), json!(false));
    if !required.is_empty() {
        m.insert("required".into(), Value::Array(required));
    }
    Value::Object(m)
}

fn ty_schema(ty: &Ty) -> Value {
    match ty {
        Ty::Str => json!({"type": "string"}),
        Ty::Int { min, max } => json!({"type": "integer", "minimum": min, "maximum": max}),
        Ty::Bool => json!({"type": "boolean"}),
        Ty::Enum(values) => json!({"enum": values}),
        Ty::StrOrList => json!({"oneOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "string"}}
        ]}),
        Ty::EnumOrList(values) => json!({"oneOf": [
            {"enum": values},
            {"type": "array", "items": {"enum": values}}
        ]}),
        Ty::List(item) => json!({"type": "array", "items": ty_schema(item)}),
        Ty::Table(t) => table_schema(t),
        Ty::Tables(t) => json!({"type": "array", "items": table_schema(t)}),
        Ty::Map(v) => json!({"type": "object", "additionalProperties": ty_schema(v)}),
        Ty::Reserved(what) => {
            json!({"not": {}, "description": format!("reserved: {what} are not yet supported")})
        }
    }
}
