//! The per-session certificate authority used to terminate the agent's TLS.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use blastwall_policy::{HostName, HostPattern};
use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType, GeneralSubtree,
    IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints,
};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::ProxyError;

/// The session CA: generated when the proxy starts, its key only in this
/// process's memory (never written, never inside the wall). Leaf
/// certificates share one session key and are cached per host.
pub struct SessionCa {
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    leaf_key: KeyPair,
    provider: Arc<rustls::crypto::CryptoProvider>,
    cache: Mutex<HashMap<HostName, Arc<ServerConfig>>>,
}

impl std::fmt::Debug for SessionCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCa").finish_non_exhaustive()
    }
}

fn ca_err(e: impl std::fmt::Display) -> ProxyError {
    ProxyError::Ca(e.to_string())
}

impl SessionCa {
    /// A new CA. With `constraints`, the CA certificate carries name
    /// constraints permitting only those hosts (a DNS constraint also
    /// covers subdomains, as RFC 5280 defines it).
    pub(crate) fn new(
        constraints: Option<&[HostPattern]>,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<SessionCa, ProxyError> {
        let key = KeyPair::generate().map_err(ca_err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(ca_err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "blastwall session CA");
        dn.push(DnType::OrganizationName, "blastwall");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        if let Some(hosts) = constraints {
            let permitted = hosts
                .iter()
                .map(|h| match h {
                    HostPattern::Exact(HostName::Domain(d)) | HostPattern::Subdomains(d) => {
                        GeneralSubtree::DnsName(d.clone())
                    }
                    HostPattern::Exact(HostName::Ip(ip)) => {
                        GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(*ip, full(*ip)))
                    }
                })
                .collect();
            params.name_constraints = Some(NameConstraints {
                permitted_subtrees: permitted,
                excluded_subtrees: Vec::new(),
            });
        }
        let cert = params.self_signed(&key).map_err(ca_err)?;
        let cert_pem = cert.pem();
        let cert_der = cert.der().clone();
        Ok(SessionCa {
            issuer: Issuer::new(params, key),
            cert_der,
            cert_pem,
            leaf_key: KeyPair::generate().map_err(ca_err)?,
            provider,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The TLS server configuration presenting a leaf for `host` (cached).
    pub(crate) fn server_config(&self, host: &HostName) -> Result<Arc<ServerConfig>, ProxyError> {
        if let Some(c) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(host)
        {
            return Ok(Arc::clone(c));
        }
        let name = match host {
            HostName::Domain(d) => d.clone(),
            HostName::Ip(ip) => ip.to_string(),
        };
        let mut params = CertificateParams::new(vec![name.clone()]).map_err(ca_err)?;
        params.distinguished_name = {
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, name);
            dn
        };
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = params
            .signed_by(&self.leaf_key, &self.issuer)
            .map_err(ca_err)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key.serialize_der()));
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| ProxyError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone(), self.cert_der.clone()], key)
            .map_err(|e| ProxyError::Tls(e.to_string()))?;
        // HTTP/2 first: each stream is decided on its own (see `h2.rs`).
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let config = Arc::new(config);
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(host.clone(), Arc::clone(&config));
        Ok(config)
    }
}

fn full(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}
