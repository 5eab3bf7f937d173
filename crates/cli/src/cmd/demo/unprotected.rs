//! The half without the wall: the scripted agent runs without blastwall's
//! policy, but never without isolation. It runs in the sandbox crate's
//! disposable user, mount, pid and network namespaces, on a tmpfs root
//! with the system read-only, and sees of the machine only the scratch
//! world: its fake home and its project, both read-write. The mock
//! services answer on loopback inside that network namespace, reached by
//! name through an injected `/etc/hosts`, and trusted through an injected
//! CA bundle. A preflight run first checks, from inside, that the root is
//! a read-only tmpfs and that nothing of the real home or of the real
//! temporary directory is visible; the agent never starts otherwise.
//!
//! This runs in a child process (`blastwall demo --unprotected-job FILE`,
//! hidden), so that the agent's output can be captured on pipes.

use std::ffi::OsString;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use blastwall_mocks::TestCa;
use blastwall_mocks::http::Server;
use blastwall_sandbox::{Layer, SandboxSpec, SupervisorHooks};
use serde::{Deserialize, Serialize};

use super::world::{AGENT_ID_AS_ROOT, HOSTS, running_as_root};

/// Ports served inside the agent's network namespace.
pub(super) const TLS_PORT: u16 = 443;
pub(super) const HTTP_PORT: u16 = 80;
pub(super) const TCP_PORT: u16 = 4444;

/// What the parent hands the child.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Job {
    pub(super) script: String,
    pub(super) project: PathBuf,
    pub(super) home: PathBuf,
    pub(super) root: PathBuf,
    pub(super) token: String,
    pub(super) env: Vec<(String, String)>,
    pub(super) accept_missing: Vec<String>,
    /// Host paths that must not be visible inside.
    pub(super) must_not_see: Vec<PathBuf>,
}

const PREFLIGHT: &str = r#"
line=$(awk '$5 == "/"' /proc/self/mountinfo | tail -1)
fs=$(printf '%s\n' "$line" | sed 's/.* - \([^ ]*\) .*/\1/')
opts=$(printf '%s\n' "$line" | awk '{print $6}')
[ "$fs" = tmpfs ] || { echo "preflight: the root inside is $fs, not a tmpfs"; exit 1; }
case ",$opts," in *,ro,*) ;; *) echo "preflight: the root inside is writable ($opts)"; exit 1;; esac
for p in "$@"; do
  if [ -e "$p" ] || [ -L "$p" ]; then echo "preflight: $p of the real machine is visible inside"; exit 1; fi
done
echo "preflight: ok"
"#;

struct Hooks {
    world: super::world::World,
    ca: TestCa,
    servers: Vec<Server>,
    raw: Vec<blastwall_mocks::attacker::RawServer>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks").finish_non_exhaustive()
    }
}

impl SupervisorHooks for Hooks {
    fn loopback_listeners(&mut self, listeners: Vec<(u16, TcpListener)>) -> Result<(), String> {
        let tls = self.ca.server_config(&HOSTS).map_err(|e| e.to_string())?;
        for (port, l) in listeners {
            match port {
                TLS_PORT => self.servers.push(
                    blastwall_mocks::http::serve(l, Some(tls.clone()), self.world.router())
                        .map_err(|e| e.to_string())?,
                ),
                HTTP_PORT => self.servers.push(
                    blastwall_mocks::http::serve(l, None, self.world.router())
                        .map_err(|e| e.to_string())?,
                ),
                _ => self.raw.push(
                    self.world
                        .attacker()
                        .serve_tcp(l)
                        .map_err(|e| e.to_string())?,
                ),
            }
        }
        Ok(())
    }
}

fn spec_for(job: &Job, argv: Vec<OsString>, ca_pem: &str) -> SandboxSpec {
    // The sandbox mounts its `home` as a read-only tmpfs and would cover a
    // read-write grant of that same path: give it an empty directory of the
    // world as its home, and the world's fake home as a plain grant ($HOME
    // points at it).
    let mut spec = SandboxSpec::new(argv, job.project.clone(), job.root.join("sandbox-home"));
    spec.project_mode = blastwall_sandbox::ProjectMode::ReadWrite;
    spec.rw_paths = vec![job.home.clone()];
    spec.loopback_listeners = vec![TLS_PORT, HTTP_PORT, TCP_PORT];
    spec.hostname = "dev-laptop".into();
    if running_as_root() {
        spec.identity = blastwall_sandbox::Identity {
            uid: AGENT_ID_AS_ROOT,
            gid: AGENT_ID_AS_ROOT,
            host_uid: AGENT_ID_AS_ROOT,
            host_gid: AGENT_ID_AS_ROOT,
        };
    }
    spec.accept_missing = job
        .accept_missing
        .iter()
        .filter_map(|n| Layer::ALL.into_iter().find(|l| l.name() == n))
        .collect();
    // Names of the mocked hosts resolve to loopback, inside only.
    let mut hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    hosts.push_str(&format!("\n127.0.0.1 {}\n", HOSTS.join(" ")));
    spec.injected.push(blastwall_sandbox::InjectedFile {
        path: "/etc/hosts".into(),
        contents: hosts.into_bytes(),
    });
    // The mocks' CA beside the system's, inside only.
    let system = Path::new("/etc/ssl/certs/ca-certificates.crt");
    let bundle = if system.is_file() {
        system.to_path_buf()
    } else {
        job.home.join(".demo-ca.pem")
    };
    let mut contents = std::fs::read(system).unwrap_or_default();
    contents.push(b'\n');
    contents.extend_from_slice(ca_pem.as_bytes());
    spec.injected.push(blastwall_sandbox::InjectedFile {
        path: bundle.clone(),
        contents,
    });
    let mut env: Vec<(OsString, OsString)> = vec![
        ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
        ("HOME".into(), job.home.clone().into()),
        ("USER".into(), "dev".into()),
        ("LANG".into(), "C.UTF-8".into()),
        ("SHELL".into(), "/bin/sh".into()),
    ];
    for k in [
        "SSL_CERT_FILE",
        "CURL_CA_BUNDLE",
        "GIT_SSL_CAINFO",
        "REQUESTS_CA_BUNDLE",
    ] {
        env.push((k.into(), bundle.clone().into()));
    }
    for (k, v) in &job.env {
        env.push((k.into(), v.into()));
    }
    spec.env = env;
    spec
}

/// The child's side: preflight, then the agent, mocks served meanwhile.
/// Exits with the agent's status; 125 when the preflight refused.
pub(super) fn run_job(file: &Path) -> anyhow::Result<crate::Status> {
    let job: Job = serde_json::from_slice(
        &std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?,
    )?;
    let world = super::world::World::attach(&job.root, &job.token);
    let ca = TestCa::new("blastwall demo mock CA")?;
    let ca_pem = ca.cert_pem().to_owned();
    let mut hooks = Hooks {
        world,
        ca,
        servers: Vec::new(),
        raw: Vec::new(),
    };
    let mut pre_argv: Vec<OsString> = vec![
        "sh".into(),
        "-c".into(),
        PREFLIGHT.into(),
        "preflight".into(),
    ];
    pre_argv.extend(job.must_not_see.iter().map(|p| p.clone().into_os_string()));
    let pre = spec_for(&job, pre_argv, &ca_pem);
    let out = run_in_thread(&pre, &mut hooks).context("the preflight sandbox did not start")?;
    if out != 0 {
        bail!(
            "the preflight refused to start the unprotected run (see above): the scratch world is not isolated from this machine"
        );
    }
    hooks.servers.clear();
    hooks.raw.clear();
    let spec = spec_for(
        &job,
        vec!["sh".into(), "-c".into(), job.script.clone().into()],
        &ca_pem,
    );
    let code = run_in_thread(&spec, &mut hooks).context("the sandbox did not start")?;
    // Let the raw recorders write what they got.
    std::thread::sleep(std::time::Duration::from_millis(200));
    drop(hooks);
    Ok(crate::Status::Code(
        u8::try_from(code.clamp(0, 255)).unwrap_or(1),
    ))
}

/// The sandbox's parent-death signal follows the creating thread: run it
/// from a thread that lives exactly as long as the sandbox.
fn run_in_thread(spec: &SandboxSpec, hooks: &mut Hooks) -> anyhow::Result<i32> {
    let r = std::thread::scope(|s| s.spawn(|| blastwall_sandbox::run(spec, hooks)).join());
    match r {
        Ok(Ok(out)) => Ok(out.status.as_shell_code()),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => bail!("the supervisor thread panicked"),
    }
}
