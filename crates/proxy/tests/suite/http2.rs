//! HTTP/2 inside an intercepted tunnel: ALPN picks `h2`, every stream is
//! decided on its own (several at once on one connection), credentials are
//! swapped in and back as on HTTP/1.1, and what HTTP/2 allows a client to
//! say twice (`:authority` and `Host`) must agree.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::common::{Harness, REAL_ECHO, REAL_RAILWAY};

const BLOCKED: &str = r#"
[[network.rule]]
host = "echo.test"
paths = ["/blocked/**"]
verdict = "deny"
reason = "blocked paths of the echo server"
"#;

/// curl's `-w` report after each transfer: the protocol and the status.
const REPORT: &str = "\n@@%{http_version} %{http_code}@@\n";

fn reports(text: &str) -> Vec<String> {
    text.split("@@")
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn curl_speaks_http2_and_each_stream_on_one_connection_is_decided() {
    let h = Harness::with_rules(BLOCKED);
    // `-Z` sends the three on one connection at once, as streams.
    let (_, text) = h.curl(&[
        "--http2",
        "-Z",
        "--parallel-immediate",
        "-w",
        REPORT,
        "https://echo.test/a",
        "https://echo.test/blocked/b",
        "https://echo.test/c",
    ]);
    let mut got = reports(&text);
    got.sort();
    assert_eq!(vec!["2 200", "2 200", "2 403"], got, "{text}");
    assert!(text.contains("blocked paths of the echo server"), "{text}");
    let mut paths: Vec<String> = h.seen().into_iter().map(|s| s.path).collect();
    paths.sort();
    assert_eq!(vec!["/a".to_owned(), "/c".to_owned()], paths);
    let events = h.audit_events();
    let verdicts: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["kind"] == "decision")
        .map(|e| {
            (
                e["data"]["action"]["path"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                e["data"]["verdict"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(
        verdicts.contains(&("/blocked/b".into(), "deny".into())),
        "{verdicts:?}"
    );
    assert_eq!(
        2,
        verdicts.iter().filter(|(_, v)| v == "allow").count(),
        "{verdicts:?}"
    );
}

#[test]
fn the_placeholder_is_swapped_in_and_the_real_token_never_comes_back_on_either_protocol() {
    let h = Harness::start();
    let ph = h.placeholder("ECHO_TOKEN");
    for proto in ["--http1.1", "--http2"] {
        let auth = format!("Authorization: Bearer {ph}");
        let (_, text) = h.curl(&[proto, "-w", REPORT, "-H", &auth, "https://echo.test/me"]);
        let want = if proto == "--http2" {
            "2 200"
        } else {
            "1.1 200"
        };
        assert_eq!(vec![want.to_owned()], reports(&text), "{text}");
        assert!(!text.contains(REAL_ECHO), "{proto}: {text}");
        assert!(
            text.contains(&ph),
            "{proto}: the echo shows the placeholder: {text}"
        );
    }
    let seen = h.seen();
    assert_eq!(2, seen.len());
    for s in &seen {
        assert_eq!(
            Some(format!("Bearer {REAL_ECHO}").as_str()),
            s.header("authorization")
        );
    }
}

#[test]
fn volume_delete_over_http2_never_arrives_while_a_query_does() {
    let h = Harness::start();
    let ph = h.placeholder("RAILWAY_TOKEN");
    let auth = format!("Authorization: Bearer {ph}");
    let me = r#"{"query":"query { me { id } }"}"#;
    let del = r#"{"query":"mutation { volumeDelete(volumeId: \"vol_prod\") }"}"#;
    let url = "https://backboard.railway.app/graphql/v2";
    // `--next` starts over: the proxy and the CA are given again.
    let ca = h.ca_file.display().to_string();
    let post = |body: &'static str| -> Vec<&str> {
        vec![
            "--http2",
            "-w",
            REPORT,
            "-H",
            &auth,
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
            url,
        ]
    };
    let mut args = vec!["-Z", "--parallel-immediate"];
    args.extend(post(me));
    args.extend(["--next", "-x", &h.proxy_url, "--cacert", &ca]);
    args.extend(post(del));
    let (_, text) = h.curl(&args);
    let mut got = reports(&text);
    got.sort();
    assert_eq!(vec!["2 200", "2 403"], got, "{text}");
    assert!(!text.contains(REAL_RAILWAY), "{text}");
    let seen = h.seen();
    assert_eq!(1, seen.len(), "only the query arrives");
    assert!(seen[0].body.contains("me"), "{:?}", seen[0].body);
    assert!(seen.iter().all(|s| !s.body.contains("volumeDelete")));
    assert_eq!(
        Some(format!("Bearer {REAL_RAILWAY}").as_str()),
        seen[0].header("authorization")
    );
}

/// An HTTP/2 client of our own through `CONNECT host:443`: it can say
/// things curl will not, such as a `Host` header that disagrees with
/// `:authority`.
async fn h2_client(
    h: &Harness,
    host: &str,
) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let addr = h.proxy_url.trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.unwrap());
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let mut roots = rustls::RootCertStore::empty();
    for c in blastwall_proxy::load_pem_certs(&h.ca_file).unwrap() {
        roots.add(c).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let name = rustls_pki_types::ServerName::try_from(host.to_owned()).unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(Some(&b"h2"[..]), tls.get_ref().1.alpn_protocol());
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// Runs a client's side of a test on a runtime of its own.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A request without a body.
fn bare(method: http::Method, url: &str) -> http::Request<Full<Bytes>> {
    http::Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

async fn send(
    c: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    req: http::Request<Full<Bytes>>,
) -> (u16, String) {
    c.ready().await.unwrap();
    let resp = c.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn a_host_header_disagreeing_with_authority_is_refused_and_the_connection_goes_on() {
    let h = Harness::start();
    block_on(async {
        let mut c = h2_client(&h, "echo.test").await;
        let req = http::Request::get("https://echo.test/x")
            .header("host", "other.test")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (status, body) = send(&mut c, req).await;
        assert_eq!(400, status, "{body}");
        assert!(body.contains("proxy.framing"), "{body}");
        assert!(body.contains(":authority"), "{body}");
        // A HEAD refused the same way gets the status and no body.
        let req = http::Request::head("https://echo.test/x")
            .header("host", "other.test")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (status, body) = send(&mut c, req).await;
        assert_eq!((400, String::new()), (status, body));
        // The :authority names another host than the tunnel's.
        let req = bare(http::Method::GET, "https://other.test/y");
        let (status, body) = send(&mut c, req).await;
        assert_eq!(400, status, "{body}");
        assert!(body.contains("proxy.host-mismatch"), "{body}");
        // The same connection still carries an honest request.
        let req = bare(http::Method::GET, "https://echo.test/ok");
        let (status, body) = send(&mut c, req).await;
        assert_eq!(200, status, "{body}");
    });
    let paths: Vec<String> = h.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(vec!["/ok".to_owned()], paths);
}

#[test]
fn a_body_past_the_bound_is_refused_and_never_forwarded() {
    let limits = blastwall_proxy::Limits {
        max_request_body: 4096,
        ..blastwall_proxy::Limits::default()
    };
    let h = Harness::with_limits("", None, limits);
    block_on(async {
        let mut c = h2_client(&h, "echo.test").await;
        // Past the bound as its Content-Length says, and as its DATA frames do.
        let req = http::Request::post("https://echo.test/upload")
            .body(Full::new(Bytes::from(vec![b'x'; 10_000])))
            .unwrap();
        let (status, body) = send(&mut c, req).await;
        assert_eq!(413, status, "{body}");
        let req = http::Request::post("https://echo.test/small")
            .body(Full::new(Bytes::from_static(b"hello")))
            .unwrap();
        let (status, body) = send(&mut c, req).await;
        assert_eq!(200, status, "{body}");
    });
    let seen = h.seen();
    assert_eq!(1, seen.len());
    assert_eq!("/small", seen[0].path);
    assert_eq!("hello", seen[0].body);
}

#[test]
fn an_upstream_that_speaks_http2_gets_it_and_its_trailers_come_back() {
    let h = Harness::start();
    // An HTTP/1.1 agent: the upstream still gets HTTP/2; trailers have no
    // way back to a client that did not ask for them.
    let (_, text) = h.curl(&["--http1.1", "-w", REPORT, "https://grpc.test/one"]);
    assert_eq!(vec!["1.1 200".to_owned()], reports(&text), "{text}");
    block_on(async {
        let mut c = h2_client(&h, "grpc.test").await;
        for path in ["/two", "/three"] {
            let req = http::Request::post(format!("https://grpc.test{path}"))
                .header("te", "trailers")
                .header("content-type", "application/grpc")
                .body(Full::new(Bytes::from_static(b"\0\0\0\0\x02hi")))
                .unwrap();
            c.ready().await.unwrap();
            let resp = c.send_request(req).await.unwrap();
            assert_eq!(200, resp.status().as_u16());
            let body = resp.into_body().collect().await.unwrap();
            let trailers = body.trailers().cloned().unwrap_or_default();
            assert_eq!(
                Some("0"),
                trailers.get("grpc-status").and_then(|v| v.to_str().ok()),
                "{trailers:?}"
            );
        }
    });
    let seen = h.seen();
    let got: Vec<(String, String)> = seen
        .iter()
        .map(|s| (s.path.clone(), s.version.clone()))
        .collect();
    assert_eq!(
        vec![
            ("/one".to_owned(), "HTTP/2.0".to_owned()),
            ("/two".to_owned(), "HTTP/2.0".to_owned()),
            ("/three".to_owned(), "HTTP/2.0".to_owned()),
        ],
        got
    );
    assert!(seen.iter().all(|s| s.host == "grpc.test"), "{seen:?}");
    assert_eq!(Some("trailers"), seen[1].header("te"));
}

/// The pending approvals, waiting until there are `n`.
fn pending(store: &blastwall_gate::SqliteStore, n: usize) -> Vec<blastwall_gate::Approval> {
    use blastwall_gate::ApprovalStore as _;
    let start = std::time::Instant::now();
    loop {
        let q = blastwall_gate::Query {
            session: None,
            states: vec![blastwall_gate::State::Pending],
            limit: 100,
        };
        let got = store.list(&q).unwrap();
        if got.len() >= n {
            return got;
        }
        assert!(
            start.elapsed().as_secs() < 20,
            "{} pending, not {n}",
            got.len()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn a_held_stream_holds_up_no_other_and_a_cancelled_one_is_abandoned() {
    use blastwall_gate::{ApprovalStore as _, State};
    let h = Harness::with_approvals(
        "[[network.rule]]\nhost = \"echo.test\"\nmethods = [\"DELETE\"]\nverdict = \"ask\"\nreason = \"deletes wait for a person\"\n",
    );
    let store = h.approvals.clone().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = h2_client(&h, "echo.test").await;
        let delete = |path: &str| bare(http::Method::DELETE, &format!("https://echo.test{path}"));
        // 1. A DELETE is held; a GET on the same connection goes through
        //    meanwhile.
        let mut held_c = c.clone();
        let held = tokio::spawn(async move { send(&mut held_c, delete("/vol")).await });
        let s = Arc::clone(&store);
        let first = tokio::task::spawn_blocking(move || pending(&s, 1))
            .await
            .unwrap();
        let mut get_c = c.clone();
        let get = bare(http::Method::GET, "https://echo.test/ok");
        let (status, body) = send(&mut get_c, get).await;
        assert_eq!(200, status, "{body}");
        assert!(!held.is_finished(), "the DELETE waits for a person");
        // 2. A yes releases it, once.
        store
            .transition(
                &first[0].id,
                &[State::Pending],
                State::Approved,
                blastwall_gate::now_ns(),
                Some("tester"),
                None,
            )
            .unwrap()
            .unwrap();
        let (status, body) = held.await.unwrap();
        assert_eq!(200, status, "{body}");
        // 3. A second DELETE whose stream the agent cancels is abandoned:
        //    a later yes sends nothing.
        let mut cancel_c = c.clone();
        let cancelled = tokio::spawn(async move { send(&mut cancel_c, delete("/vol2")).await });
        let s = Arc::clone(&store);
        let id = first[0].id.clone();
        let second = tokio::task::spawn_blocking(move || {
            pending(&s, 1).into_iter().find(|a| a.id != id).unwrap()
        })
        .await
        .unwrap();
        cancelled.abort(); // drops the request: hyper resets the stream
        let start = std::time::Instant::now();
        loop {
            let a = store.get(&second.id).unwrap().unwrap();
            if a.state == State::Abandoned {
                break;
            }
            assert!(start.elapsed().as_secs() < 10, "still {}", a.state);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let late = store
            .transition(
                &second.id,
                &[State::Pending],
                State::Approved,
                blastwall_gate::now_ns(),
                Some("tester"),
                None,
            )
            .unwrap();
        assert!(late.is_none(), "an abandoned ask cannot be approved");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    });
    let mut paths: Vec<(String, String)> =
        h.seen().into_iter().map(|s| (s.method, s.path)).collect();
    paths.sort();
    assert_eq!(
        vec![
            ("DELETE".to_owned(), "/vol".to_owned()),
            ("GET".to_owned(), "/ok".to_owned()),
        ],
        paths
    );
}

#[test]
fn an_idle_http2_connection_is_closed_like_an_http1_one() {
    let limits = blastwall_proxy::Limits {
        idle_timeout: std::time::Duration::from_millis(300),
        ..blastwall_proxy::Limits::default()
    };
    let h = Harness::with_limits("", None, limits);
    block_on(async {
        let mut c = h2_client(&h, "echo.test").await;
        let req = bare(http::Method::GET, "https://echo.test/once");
        assert_eq!(200, send(&mut c, req).await.0);
        let start = std::time::Instant::now();
        while !c.is_closed() {
            assert!(start.elapsed().as_secs() < 5, "still open after 5 s");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(start.elapsed().as_millis() >= 200, "{:?}", start.elapsed());
    });
}

// HTTP/2 lets a client split `cookie` into several fields: an HTTP/1.1
// upstream gets them as one, joined by "; ". A head with more fields than
// an HTTP/1.1 head may have is refused the same way (431).
#[test]
fn split_cookies_arrive_joined_and_too_many_fields_are_refused() {
    // A host without a bound credential: its cookies are the agent's own.
    let h = Harness::start();
    block_on(async {
        let mut c = h2_client(&h, "other.test").await;
        let req = http::Request::get("https://other.test/cookies")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (status, body) = send(&mut c, req).await;
        assert_eq!(200, status, "{body}");
        let mut req = http::Request::get("https://other.test/many");
        for i in 0..200 {
            req = req.header(format!("x-field-{i}"), "v");
        }
        let (status, body) = send(&mut c, req.body(Full::new(Bytes::new())).unwrap()).await;
        assert_eq!(431, status, "{body}");
        assert!(body.contains("proxy.framing"), "{body}");
    });
    let seen = h.seen();
    assert_eq!(1, seen.len(), "the refused head must not be forwarded");
    assert_eq!("HTTP/1.1", seen[0].version);
    let cookies: Vec<&str> = seen[0]
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("cookie"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(vec!["a=1; b=2"], cookies);
}

// CONNECT is a request for a tunnel of the proxy's own: inside an
// intercepted tunnel it is refused, over HTTP/2 as over HTTP/1.1, and the
// upstream never hears of it.
#[test]
fn a_connect_inside_an_http2_tunnel_is_refused() {
    let h = Harness::start();
    block_on(async {
        let mut c = h2_client(&h, "echo.test").await;
        let req = http::Request::builder()
            .method(http::Method::CONNECT)
            .uri("echo.test:443")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let (status, body) = send(&mut c, req).await;
        assert_eq!(400, status, "{body}");
        assert!(body.contains("proxy.framing"), "{body}");
        assert!(body.contains("CONNECT inside a tunnel"), "{body}");
    });
    assert!(h.seen().is_empty());
}
