//! Inputs for blastwall's benchmarks (DESIGN.md §8): a generated 200-rule
//! manifest and the request bodies the GraphQL benches inspect. The benches
//! themselves live in `benches/`, and the proxy's side-by-side bench is the
//! `proxy-bench` binary (`src/bin/proxy-bench/`, run by `proxy.sh`); see
//! `README.md` for how to run them and the figures from the last run.
//!
//! The manifest is generated rather than checked in so that its shape is
//! stated once, here, and the counts in the README stay true.
#![forbid(unsafe_code)]

use std::fmt::Write as _;

/// The project root the benches load the manifest for (never touched: the
/// loader does no I/O).
pub const PROJECT_ROOT: &str = "/work/bench-project";

/// The home directory `~` stands for.
pub const HOME: &str = "/home/bench";

/// Exact hosts that carry two rules each (read allowed, admin writes held).
pub const PAIR_HOSTS: usize = 40;

/// Wildcard rules, `*.example-N.com` for N in `0..WILDCARDS`.
pub const WILDCARDS: usize = 40;

/// GraphQL hosts, `gql-N.example.io`, plus Railway's API (PocketOS).
pub const GRAPHQL_HOSTS: usize = 4;

/// GraphQL rules on each `gql-N.example.io` host.
pub const GRAPHQL_RULES_PER_HOST: usize = 9;

/// Label rules (deny what a classifier marks destructive on file hosts).
pub const LABEL_RULES: usize = 17;

/// Rules on the one busy host [`BUSY_HOST`], placed last in the manifest.
pub const BUSY_RULES: usize = 20;

/// A host named by [`BUSY_RULES`] exact rules at the end of the manifest, and
/// also covered by the wildcard rule `*.example-39.com`.
pub const BUSY_HOST: &str = "api.example-39.com";

/// The GraphQL host of the PocketOS incident.
pub const RAILWAY_HOST: &str = "backboard.railway.app";

/// The network rules in [`manifest`]: 80 on pair hosts, 40 wildcard, 36 on
/// `gql-0..4`, 17 label rules, 3 on Railway's API, 4 on `gql-4.example.io`
/// and 20 on the busy host: 200.
pub const NET_RULES: usize = 200;

/// The manifest text: [`NET_RULES`] network rules mixing exact hosts with
/// method and path globs, wildcard hosts, GraphQL type/field rules and label
/// rules, with allow, ask and deny mixed; a few exec rules and file-system
/// grants besides.
pub fn manifest() -> String {
    let mut m = String::with_capacity(64 * 1024);
    m.push_str(
        "version = 1\n\n[project]\nname = \"bench\"\n\n[filesystem]\nproject = \"overlay\"\n\
         read = [\"/opt/sdk\", \"/usr/share/doc\"]\nwrite = [\"target\"]\n\n\
         [network]\ndefault = \"deny\"\n\n",
    );
    // 80: two rules on each of 40 exact hosts.
    for i in 0..PAIR_HOSTS {
        rule(
            &mut m,
            &format!("\"svc-{i}.internal.example.net\""),
            &[
                "methods = [\"GET\", \"HEAD\"]",
                "paths = [\"/v1/items/**\", \"/v1/users/*\", \"/healthz\"]",
            ],
            "allow",
        );
        rule(
            &mut m,
            &format!("\"svc-{i}.internal.example.net\""),
            &[
                "methods = [\"POST\", \"PUT\", \"PATCH\", \"DELETE\"]",
                "paths = [\"/v1/admin/**\"]",
            ],
            if i % 2 == 0 { "ask" } else { "deny" },
        );
    }
    // 40: wildcard hosts.
    for n in 0..WILDCARDS {
        let verdict = match n % 3 {
            0 => "allow",
            1 => "ask",
            _ => "deny",
        };
        rule(
            &mut m,
            &format!("\"*.example-{n}.com\""),
            &["methods = [\"GET\"]", "paths = [\"/public/**\"]"],
            verdict,
        );
    }
    // 36: GraphQL rules, 9 on each of 4 GraphQL hosts.
    for h in 0..GRAPHQL_HOSTS {
        let host = format!("\"gql-{h}.example.io\"");
        let post = "methods = [\"POST\"]";
        let path = "paths = [\"/graphql\"]";
        rule(
            &mut m,
            &host,
            &[post, path, "graphql = { type = \"query\" }"],
            "allow",
        );
        for j in 0..GRAPHQL_RULES_PER_HOST - 3 {
            let verdict = if j % 2 == 0 { "allow" } else { "ask" };
            let g = format!(
                "graphql = {{ type = \"mutation\", fields = [\"thing{j}Create\", \"thing{j}Update\"] }}"
            );
            rule(&mut m, &host, &[post, path, &g], verdict);
        }
        rule(
            &mut m,
            &host,
            &[
                post,
                path,
                "graphql = { type = \"mutation\", fields = [\"projectDelete\", \"volumeDelete\"] }",
            ],
            "deny",
        );
        rule(
            &mut m,
            &host,
            &[post, path, "graphql = { type = \"mutation\" }"],
            "ask",
        );
    }
    // 17: label rules on file hosts.
    for k in 0..LABEL_RULES {
        rule(
            &mut m,
            &format!("[\"files-{k}.example.org\", \"blobs-{k}.example.org\"]"),
            &["labels = [\"destructive\", \"irreversible\"]"],
            "deny",
        );
    }
    // 3: the PocketOS rules on Railway's API (examples/pocketos.toml).
    let railway = format!("\"{RAILWAY_HOST}\"");
    rule(
        &mut m,
        &railway,
        &[
            "methods = [\"POST\", \"GET\"]",
            "paths = [\"/graphql/v2\"]",
            "graphql = { type = \"query\" }",
        ],
        "allow",
    );
    rule(
        &mut m,
        &railway,
        &[
            "methods = [\"POST\"]",
            "paths = [\"/graphql/v2\"]",
            "graphql = { type = \"mutation\", fields = [\"customDomainCreate\", \"customDomainDelete\"] }",
        ],
        "allow",
    );
    rule(
        &mut m,
        &railway,
        &[
            "methods = [\"POST\"]",
            "paths = [\"/graphql/v2\"]",
            "graphql = { type = \"mutation\" }",
        ],
        "ask",
    );
    // 4: GraphQL subscriptions and a label rule on a fifth GraphQL host.
    let gql5 = "\"gql-4.example.io\"";
    for (extra, verdict) in [
        ("graphql = { type = \"subscription\" }", "ask"),
        ("graphql = { type = \"query\" }", "allow"),
        ("labels = [\"destructive\"]", "deny"),
        ("graphql = { type = \"mutation\" }", "ask"),
    ] {
        rule(&mut m, gql5, &["paths = [\"/graphql\"]", extra], verdict);
    }
    // 20: the busy host, last; the GET the benches send matches only the
    // last of these.
    for b in 0..BUSY_RULES - 1 {
        let (methods, verdict) = match b % 4 {
            0 => ("[\"POST\"]", "ask"),
            1 => ("[\"PUT\", \"PATCH\"]", "ask"),
            2 => ("[\"DELETE\"]", "deny"),
            _ => ("[\"GET\", \"HEAD\"]", "allow"),
        };
        rule(
            &mut m,
            &format!("\"{BUSY_HOST}\""),
            &[
                &format!("methods = {methods}"),
                &format!("paths = [\"/v2/area-{b}/**\", \"/v2/area-{b}-*/items/*\"]"),
            ],
            verdict,
        );
    }
    rule(
        &mut m,
        &format!("\"{BUSY_HOST}\""),
        &[
            "methods = [\"GET\"]",
            "paths = [\"/v2/repos/*/releases/**\", \"/v2/repos/*/tags\"]",
        ],
        "allow",
    );
    // Exec rules (not counted in the 200).
    m.push_str(
        "[exec]\ndefault = \"allow\"\n\n\
         [[exec.rule]]\nprogram = [\"rm\", \"shred\"]\nlabels = [\"destructive\"]\nverdict = \"deny\"\n\n\
         [[exec.rule]]\nprogram = \"git\"\nargs = [\"push\", \"--force*\"]\nverdict = \"ask\"\n\n\
         [[exec.rule]]\nprogram = [\"curl\", \"wget\"]\nverdict = \"ask\"\n\n\
         [[exec.rule]]\nprogram = \"docker\"\nverdict = \"deny\"\n\n\
         [[exec.rule]]\nprogram = \"cargo\"\nargs = [\"test\"]\nverdict = \"allow\"\n",
    );
    m
}

fn rule(m: &mut String, host: &str, conditions: &[&str], verdict: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(m, "[[network.rule]]\nhost = {host}");
    for c in conditions {
        let _ = writeln!(m, "{c}");
    }
    let _ = writeln!(m, "verdict = \"{verdict}\"\n");
}

/// A small GraphQL query body.
pub const SMALL_QUERY: &str = r#"{"query":"query { me { email } }"}"#;

/// The PocketOS call: `volumeDelete` on the production volume
/// (shared/scenarios/pocketos.md).
pub const VOLUME_DELETE: &str = r#"{"query":"mutation { volumeDelete(volumeId: \"vol_prod\") }"}"#;

/// One document with three calls: a query and two mutations.
pub const THREE_CALLS: &str = r#"{"query":"query Me { me { email } } mutation Add { customDomainCreate(input: {domain: \"pocketos.app\", serviceId: \"svc\"}) { id } } mutation Wipe { volumeDelete(volumeId: \"vol_prod\") }"}"#;

/// A batched JSON array of ten requests, one operation each, mixing queries
/// and mutations, aliases, variables and a fragment.
pub fn batch_of_ten() -> String {
    let items = [
        r#"{"query":"{ me { email } }"}"#,
        r#"{"query":"query Projects { projects(first: 10) { edges { node { id name } } } }"}"#,
        r#"{"query":"mutation { customDomainCreate(input: {domain: \"a.app\", serviceId: \"s\"}) { id } }"}"#,
        r#"{"query":"query V($id: String!) { volume(id: $id) { id name sizeMB } }","variables":{"id":"vol_1"}}"#,
        r#"{"query":"mutation { a: volumeDelete(volumeId: \"vol_prod\") }"}"#,
        r#"{"query":"query { ...Me } fragment Me on Query { me { id email } }"}"#,
        r#"{"query":"mutation Up($i: ServiceUpdateInput!) { serviceUpdate(input: $i) { id } }","variables":{"i":{"name":"x"}}}"#,
        r#"{"query":"query { deployments(first: 5) { edges { node { id status } } } }","operationName":null}"#,
        r#"{"query":"mutation { customDomainDelete(id: \"cd_1\") }"}"#,
        r#"{"query":"subscription { deploymentLogs(id: \"d1\") { message } }"}"#,
    ];
    format!("[{}]", items.join(","))
}
