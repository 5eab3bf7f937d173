//! A harness: a session (policy, gate, audit log), the proxy on a loopback
//! listener, and echo upstreams (plain and HTTPS with their own test CA).

use std::io::Read;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

use blastwall_audit::{AuditLog, FsyncPolicy};
use blastwall_gate::Gate;
use blastwall_policy::{Context, Origin, Source};
use blastwall_proxy::{BoundCredential, Proxy, ProxyConfig};
use blastwall_secrets::Secret;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::net::TcpListener;

pub const REAL_ECHO: &str = "real-echo-token-9f8e7d6c5b4a";
pub const REAL_RAILWAY: &str = "real-railway-token-0a1b2c3d4e5f";

/// What an upstream received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub host: String,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The body, gzip-decoded when it came gzip-encoded.
    pub body: String,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct Harness {
    /// Keeps the proxy and the upstreams running.
    _rt: tokio::runtime::Runtime,
    pub dir: tempfile::TempDir,
    pub proxy_url: String,
    pub ca_file: PathBuf,
    pub audit: PathBuf,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub env: Vec<(String, String)>,
    pub plain_port: u16,
    /// Where held asks wait, when the harness holds them.
    pub approvals: Option<Arc<blastwall_gate::SqliteStore>>,
}

const RULES: &str = r#"
[[network.rule]]
host = "echo.test"
verdict = "allow"
reason = "the echo server"

[[network.rule]]
host = "other.test"
verdict = "allow"
reason = "another allowed host"

[[network.rule]]
host = "denied.test"
verdict = "deny"
reason = "denied in the test manifest"

[[network.rule]]
host = "backboard.railway.app"
methods = ["POST", "GET"]
paths = ["/graphql/v2"]
graphql = { type = "query" }
verdict = "allow"
reason = "read-only queries of the Railway API"

[[network.rule]]
host = "backboard.railway.app"
methods = ["POST"]
paths = ["/graphql/v2"]
graphql = { type = "mutation", fields = ["customDomainCreate", "customDomainDelete"] }
verdict = "allow"
reason = "custom-domain changes are this token's job"

[[network.rule]]
host = "backboard.railway.app"
methods = ["POST"]
paths = ["/graphql/v2"]
graphql = { type = "mutation" }
verdict = "ask"
reason = "a Railway mutation outside custom domains can destroy production data"

[[network.rule]]
host = "grpc.test"
verdict = "allow"
reason = "an upstream that speaks HTTP/2"

[[credential]]
name = "echo"
env = "ECHO_TOKEN"
hosts = ["echo.test"]

[[credential]]
name = "railway"
env = "RAILWAY_TOKEN"
hosts = ["backboard.railway.app"]
"#;

/// A test CA and a server config for the upstream names.
fn upstream_tls(dir: &std::path::Path) -> (PathBuf, Arc<rustls::ServerConfig>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "upstream test CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![
        "echo.test".to_owned(),
        "other.test".to_owned(),
        "backboard.railway.app".to_owned(),
        "grpc.test".to_owned(),
    ])
    .unwrap()
    .signed_by(&leaf_key, &issuer)
    .unwrap();
    let path = dir.join("upstream-ca.pem");
    std::fs::write(&path, ca_cert.pem()).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)
    .unwrap();
    (path, Arc::new(cfg))
}

/// The upstream speaks HTTP/2 (ALPN `h2`) to a client that names
/// `grpc.test`, and ends each answer with gRPC's trailer; HTTP/1.1 otherwise.
const H2_UPSTREAM: &str = "grpc.test";

async fn serve_tls(
    sock: tokio::net::TcpStream,
    cfg: Arc<rustls::ServerConfig>,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    let acceptor = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), sock);
    let Ok(start) = acceptor.await else {
        return;
    };
    let h2 = start.client_hello().server_name() == Some(H2_UPSTREAM);
    let cfg = if h2 {
        let mut c = (*cfg).clone();
        c.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(c)
    } else {
        cfg
    };
    let Ok(s) = start.into_stream(cfg).await else {
        return;
    };
    if h2 {
        let svc = service_fn(move |r| {
            let seen = Arc::clone(&seen);
            async move {
                let resp = echo(r, seen).await?;
                Ok::<_, hyper::Error>(resp.map(|b| {
                    b.with_trailers(async {
                        let mut t = http::HeaderMap::new();
                        t.insert("grpc-status", http::HeaderValue::from_static("0"));
                        Some(Ok(t))
                    })
                }))
            }
        });
        let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .serve_connection(TokioIo::new(s), svc)
            .await;
    } else {
        let svc = service_fn(move |r| echo(r, Arc::clone(&seen)));
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(s), svc)
            .await;
    }
}

async fn echo(
    req: hyper::Request<hyper::body::Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> Result<hyper::Response<Full<Bytes>>, hyper::Error> {
    let (parts, body) = req.into_parts();
    let raw = body.collect().await?.to_bytes();
    let gz = parts
        .headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes() == b"gzip");
    let body = if gz {
        let mut s = String::new();
        let _ = flate2::read::GzDecoder::new(&raw[..]).read_to_string(&mut s);
        s
    } else {
        String::from_utf8_lossy(&raw).into_owned()
    };
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    // HTTP/2 names the host in `:authority`.
    let host = parts
        .headers
        .get("host")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(String::new, |p| p.to_string());
    let auth = parts
        .headers
        .get("authorization")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let token = auth.strip_prefix("Bearer ").unwrap_or(&auth).to_owned();
    seen.lock().unwrap().push(Seen {
        host,
        version: format!("{:?}", parts.version),
        method: parts.method.to_string(),
        path: path.clone(),
        headers: headers.clone(),
        body: body.clone(),
    });
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&token);
    let echoed = serde_json::json!({
        "method": parts.method.to_string(),
        "path": path,
        "headers": headers.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>(),
        "body": body,
        "token_b64": b64,
        "token_urlenc": token.replace('-', "%2D"),
    });
    let mut resp = hyper::Response::builder()
        .header("x-echo-auth", auth.clone())
        .header("x-echo-b64", b64)
        .header("content-type", "application/json");
    if parts.uri.path() == "/redirect" {
        resp = resp
            .status(302)
            .header("location", format!("https://echo.test/next?token={token}"));
    }
    Ok(resp
        .body(Full::new(Bytes::from(echoed.to_string())))
        .unwrap())
}

async fn serve_upstream(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            return;
        };
        let seen = Arc::clone(&seen);
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(cfg) => serve_tls(sock, cfg, seen).await,
                None => {
                    let svc = service_fn(move |r| echo(r, Arc::clone(&seen)));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(sock), svc)
                        .await;
                }
            }
        });
    }
}

impl Harness {
    pub fn start() -> Harness {
        Harness::with_rules("")
    }

    /// `extra` rules go before the shared ones; `{plain}` in them is the plain upstream's port.
    pub fn with_rules(extra: &str) -> Harness {
        Harness::with(extra, None)
    }

    /// With `intercept`, only those hosts are intercepted; others pass through.
    pub fn with(extra: &str, intercept: Option<&[&str]>) -> Harness {
        Harness::with_limits(extra, intercept, blastwall_proxy::Limits::default())
    }

    /// With the proxy's limits set.
    pub fn with_limits(
        extra: &str,
        intercept: Option<&[&str]>,
        limits: blastwall_proxy::Limits,
    ) -> Harness {
        Harness::build(extra, intercept, limits, false)
    }

    /// Asks are held for a person (an in-memory approval store, 30 s
    /// timeout) instead of refused.
    pub fn with_approvals(extra: &str) -> Harness {
        Harness::build(extra, None, blastwall_proxy::Limits::default(), true)
    }

    fn build(
        extra: &str,
        intercept: Option<&[&str]>,
        limits: blastwall_proxy::Limits,
        hold: bool,
    ) -> Harness {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (ca_path, tls) = upstream_tls(dir.path());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (plain_port, tls_port) = rt.block_on(async {
            let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let secure = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let ports = (
                plain.local_addr().unwrap().port(),
                secure.local_addr().unwrap().port(),
            );
            tokio::spawn(serve_upstream(plain, None, Arc::clone(&seen)));
            tokio::spawn(serve_upstream(secure, Some(tls), Arc::clone(&seen)));
            ports
        });
        let manifest = format!(
            "version = 1\n[network]\ndefault = \"deny\"\nupstream_ca = [\"{ca}\"]\n\n[network.resolve]\n\"echo.test:80\" = \"127.0.0.1:{plain_port}\"\n\"echo.test:443\" = \"127.0.0.1:{tls_port}\"\n\"other.test:443\" = \"127.0.0.1:{tls_port}\"\n\"other.test:80\" = \"127.0.0.1:{plain_port}\"\n\"backboard.railway.app:443\" = \"127.0.0.1:{tls_port}\"\n\"grpc.test:443\" = \"127.0.0.1:{tls_port}\"\n{}\n{RULES}",
            extra.replace("{plain}", &plain_port.to_string()),
            ca = ca_path.display(),
        );
        let cx = Context {
            origin: Origin::Project,
            project_root: dir.path().to_path_buf(),
            home: dir.path().join("home"),
            user: None,
            enforce: false,
        };
        let loaded = blastwall_policy::load(&Source::new("blastwall.toml", manifest.as_str()), &cx)
            .unwrap_or_else(|d| panic!("manifest: {d:?}\n{manifest}"));
        let policy = Arc::new(loaded.policy);
        let audit = dir.path().join("audit.jsonl");
        let log = AuditLog::create(&audit, "s1", FsyncPolicy::Batch).unwrap();
        let gate = Gate::new(Arc::clone(&policy), log);
        let (gate, approvals) = if hold {
            let store = Arc::new(blastwall_gate::SqliteStore::in_memory().unwrap());
            let cfg = blastwall_gate::ApprovalConfig {
                timeout: std::time::Duration::from_secs(30),
                poll: std::time::Duration::from_millis(20),
                ..blastwall_gate::ApprovalConfig::default()
            };
            let dyn_store: Arc<dyn blastwall_gate::ApprovalStore> = store.clone();
            let queue = blastwall_gate::Queue::new(dyn_store, "s1", cfg);
            (gate.with_approvals(queue), Some(store))
        } else {
            (gate, None)
        };
        let gate = Arc::new(gate);
        gate.start(serde_json::json!({})).unwrap();
        let creds = policy
            .settings()
            .credentials
            .iter()
            .map(|c| {
                let real = if c.name == "echo" {
                    REAL_ECHO
                } else {
                    REAL_RAILWAY
                };
                BoundCredential::new(c.clone(), Secret::from(real)).unwrap()
            })
            .collect();
        let mut cfg = ProxyConfig::from_policy(policy, gate, creds).unwrap();
        cfg.limits = limits;
        if let Some(list) = intercept {
            cfg.intercept = blastwall_proxy::Intercept::Only(
                list.iter()
                    .map(|h| blastwall_policy::HostPattern::parse(h).unwrap())
                    .collect(),
            );
        }
        let proxy = Proxy::new(cfg).unwrap();
        let ca_file = dir.path().join("session-ca.pem");
        // The session CA, and the upstream CA for tunnels passed through untouched.
        let bundle = format!(
            "{}{}",
            proxy.ca_pem(),
            std::fs::read_to_string(&ca_path).unwrap()
        );
        std::fs::write(&ca_file, bundle).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let env = proxy.placeholder_env();
        let _guard = rt.enter();
        rt.spawn(proxy.serve(listener));
        drop(_guard);
        Harness {
            _rt: rt,
            dir,
            proxy_url: format!("http://127.0.0.1:{port}"),
            ca_file,
            audit,
            seen,
            env,
            plain_port,
            approvals,
        }
    }

    pub fn placeholder(&self, var: &str) -> String {
        self.env
            .iter()
            .find(|(k, _)| k == var)
            .map(|(_, v)| v.clone())
            .unwrap()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Runs curl through the proxy; returns (status, headers and body as text).
    pub fn curl(&self, args: &[&str]) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-sS", "-i", "--max-time", "10", "-x", &self.proxy_url])
            .arg("--cacert")
            .arg(&self.ca_file)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .output()
            .expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (status_of(&text), text)
    }

    /// Runs a python3 urllib request through the proxy; returns (status, body).
    pub fn python(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        let script = r#"
import json, ssl, sys, urllib.request, urllib.error
proxy, cafile, method, url, headers = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
body = sys.stdin.buffer.read() or None
ctx = ssl.create_default_context(cafile=cafile)
opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy, "https": proxy}), urllib.request.HTTPSHandler(context=ctx))
req = urllib.request.Request(url, data=body, headers=headers, method=method)
try:
    r = opener.open(req, timeout=10)
    print(r.status); print(r.read().decode(errors="replace"))
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode(errors="replace"))
"#;
        let hdrs: serde_json::Map<String, serde_json::Value> = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
            .collect();
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&self.proxy_url)
            .arg(&self.ca_file)
            .arg(method)
            .arg(url)
            .arg(serde_json::Value::Object(hdrs).to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .spawn()
            .expect("python3 runs");
        {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(body).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let status = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0);
        (status, text + &String::from_utf8_lossy(&out.stderr))
    }

    /// Sends raw bytes to the proxy; returns what came back until close (or 10 s).
    pub fn raw(&self, bytes: &[u8]) -> String {
        use std::io::Write;
        let addr = self.proxy_url.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        s.write_all(bytes).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// The audit log's records, after checking it verifies.
    pub fn audit_events(&self) -> Vec<serde_json::Value> {
        blastwall_audit::verify(&self.audit).expect("the audit log verifies");
        std::fs::read_to_string(&self.audit)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn status_of(text: &str) -> u16 {
    // The last status line (after any 100 Continue / CONNECT 200), on
    // HTTP/1.x (`HTTP/1.1 200 OK`) or HTTP/2 (`HTTP/2 200`).
    let mut last = 0;
    for line in text.lines() {
        let code = if let Some(rest) = line.strip_prefix("HTTP/1.") {
            rest.get(2..5)
        } else if let Some(rest) = line.strip_prefix("HTTP/2 ") {
            rest.get(..3)
        } else {
            None
        };
        if let Some(c) = code.and_then(|c| c.parse().ok()).filter(|c| *c != 100) {
            last = c;
        }
    }
    last
}

/// The status of the response to the request itself (not the CONNECT's 200).
pub fn final_status(text: &str) -> u16 {
    status_of(text)
}
