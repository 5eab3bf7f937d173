//! The loopback upstream every target ends at: hyper's HTTP/1.1 server on
//! two listeners, plain and TLS (a leaf for [`HOST`] from a fresh rcgen test
//! CA). `GET` answers a fixed 1 KiB body; `POST` reads the body whole and
//! answers the same 1 KiB.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::net::TcpListener;

/// The name the upstream's certificate is for, and the host every proxy is
/// asked for (each proxy maps it to the loopback listener).
pub(crate) const HOST: &str = "upstream.test";

/// Response (and POST request) body size.
pub(crate) const BODY: usize = 1024;

/// Writes a test CA to `ca_path` and returns a server configuration with a
/// leaf for [`HOST`] signed by it.
pub(crate) fn test_tls(ca_path: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "proxy-bench upstream CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate()?;
    let leaf = CertificateParams::new(vec![HOST.to_owned()])?.signed_by(&leaf_key, &issuer)?;
    std::fs::write(ca_path, ca_cert.pem())
        .with_context(|| format!("writing {}", ca_path.display()))?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)?;
    Ok(Arc::new(cfg))
}

async fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    body: Bytes,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    // Drain the request body (POST): the answer waits for all of it.
    let _ = req.into_body().collect().await;
    let mut resp = hyper::Response::new(Full::new(body));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/octet-stream"),
    );
    Ok(resp)
}

/// Accepts on `listener` until the runtime stops.
pub(crate) async fn serve(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) {
    let body = Bytes::from(vec![b'x'; BODY]);
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            continue;
        };
        let _ = sock.set_nodelay(true);
        let tls = tls.clone();
        let body = body.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |r| answer(r, body.clone()));
            let http = hyper::server::conn::http1::Builder::new();
            match tls {
                Some(cfg) => {
                    let Ok(s) = tokio_rustls::TlsAcceptor::from(cfg).accept(sock).await else {
                        return;
                    };
                    let _ = http.serve_connection(TokioIo::new(s), svc).await;
                }
                None => {
                    let _ = http.serve_connection(TokioIo::new(sock), svc).await;
                }
            }
        });
    }
}
