//! The cluster's certificate authority and the TLS configuration of the QUIC plane.
//!
//! `shoal cluster init` makes a CA; `shoal cluster cert` issues each node a certificate whose
//! name is `shoal-node-<id>`, usable as server and client. The plane requires a certificate
//! from the CA on both sides of every connection, and a caller connects to a member by the
//! name its membership id implies, so a node cannot speak for another id. Files:
//!
//! ```text
//! <dir>/ca.pem, <dir>/ca-key.pem                      the CA (keep ca-key.pem off the nodes)
//! <dir>/node-<id>/ca.pem, node.pem, node-key.pem      what node <id> runs with (--cluster-tls)
//! ```
//!
//! The ring provider is named explicitly: the tree holds both ring and aws-lc-rs.

use std::path::Path;
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose as Eku, IsCa, Issuer,
    KeyPair, KeyUsagePurpose as Ku,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::{Error, NodeId, Result};

/// The plane's protocol, named after the metadata format it carries (`format::CURRENT`):
/// nodes of different formats fail the handshake instead of misreading each other.
pub const ALPN: &[u8] = b"shoal-cluster/6";

/// The TLS name of node `id`'s certificate.
pub fn node_name(id: NodeId) -> String {
    format!("shoal-node-{id}")
}

fn tls_err(e: impl std::fmt::Display) -> Error {
    Error::Tls(e.to_string())
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(tls_err)?;
    f.write_all(contents.as_bytes()).map_err(tls_err)
}

/// Creates a new cluster CA in `dir`; refuses to overwrite an existing one.
pub fn init_ca(dir: &Path) -> Result<()> {
    if dir.join("ca.pem").exists() {
        return Err(tls_err(format!(
            "{} already holds a cluster CA",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).map_err(tls_err)?;
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::CommonName, "shoal cluster CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![Ku::KeyCertSign, Ku::CrlSign, Ku::DigitalSignature];
    let key = KeyPair::generate().map_err(tls_err)?;
    let cert = p.self_signed(&key).map_err(tls_err)?;
    std::fs::write(dir.join("ca.pem"), cert.pem()).map_err(tls_err)?;
    write_private(&dir.join("ca-key.pem"), &key.serialize_pem())
}

/// Issues node `id` a certificate signed by the CA in `dir`, into `dir/node-<id>/`.
/// `hosts` are extra DNS names or IP addresses the certificate is valid for.
pub fn issue_node_cert(dir: &Path, id: NodeId, hosts: &[String]) -> Result<std::path::PathBuf> {
    let ca_pem = std::fs::read_to_string(dir.join("ca.pem")).map_err(tls_err)?;
    let ca_key =
        KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca-key.pem")).map_err(tls_err)?)
            .map_err(tls_err)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(tls_err)?;
    let mut names = vec![
        node_name(id),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ];
    names.extend(hosts.iter().cloned());
    let mut p = CertificateParams::new(names).map_err(tls_err)?;
    p.distinguished_name.push(DnType::CommonName, node_name(id));
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![Ku::DigitalSignature];
    p.extended_key_usages = vec![Eku::ServerAuth, Eku::ClientAuth];
    p.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().map_err(tls_err)?;
    let cert = p.signed_by(&key, &issuer).map_err(tls_err)?;
    let out = dir.join(format!("node-{id}"));
    std::fs::create_dir_all(&out).map_err(tls_err)?;
    std::fs::write(out.join("ca.pem"), ca_pem).map_err(tls_err)?;
    std::fs::write(out.join("node.pem"), cert.pem()).map_err(tls_err)?;
    write_private(&out.join("node-key.pem"), &key.serialize_pem())?;
    Ok(out)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Server and client configuration of one node's QUIC endpoint.
pub struct PlaneTls {
    pub server: quinn::ServerConfig,
    pub client: quinn::ClientConfig,
}

/// Loads a node's `ca.pem`, `node.pem` and `node-key.pem` from `dir` (its `--cluster-tls`).
pub fn load(dir: &Path) -> Result<PlaneTls> {
    let read_certs = |name: &str| -> Result<Vec<CertificateDer<'static>>> {
        CertificateDer::pem_file_iter(dir.join(name))
            .map_err(|e| tls_err(format!("{}: {e}", dir.join(name).display())))?
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(tls_err)
    };
    let key = || {
        PrivateKeyDer::from_pem_file(dir.join("node-key.pem"))
            .map_err(|e| tls_err(format!("{}: {e}", dir.join("node-key.pem").display())))
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in read_certs("ca.pem")? {
        roots.add(c).map_err(tls_err)?;
    }
    let roots = Arc::new(roots);
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(tls_err)?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(read_certs("node.pem")?, key()?)
        .map_err(tls_err)?;
    server.alpn_protocols = vec![ALPN.to_vec()];
    let mut client = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_root_certificates(roots)
        .with_client_auth_cert(read_certs("node.pem")?, key()?)
        .map_err(tls_err)?;
    client.alpn_protocols = vec![ALPN.to_vec()];
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(
        QuicServerConfig::try_from(server).map_err(tls_err)?,
    ));
    let mut transport = quinn::TransportConfig::default();
    // A peer that stops answering is declared gone after 3 s, so cached connections to a dead
    // node fail fast instead of swallowing requests.
    transport.keep_alive_interval(Some(std::time::Duration::from_millis(500)));
    transport.max_idle_timeout(Some(
        std::time::Duration::from_secs(3)
            .try_into()
            .expect("3 s fits"),
    ));
    let transport = Arc::new(transport);
    server.transport_config(transport.clone());
    let mut client = quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(client).map_err(tls_err)?,
    ));
    client.transport_config(transport);
    Ok(PlaneTls { server, client })
}

/// The node id a peer's certificate names (`shoal-node-<id>` in its common name).
pub fn peer_id(conn: &quinn::Connection) -> Option<NodeId> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    let (_, x509) = x509_parser::parse_x509_certificate(certs.first()?.as_ref()).ok()?;
    let cn = x509.subject().iter_common_name().next()?.as_str().ok()?;
    cn.strip_prefix("shoal-node-")?.parse().ok()
}

#[cfg(test)]
mod alpn_tests {
    /// A format change that forgets the plane would let nodes of two formats misread
    /// each other's messages.
    #[test]
    fn the_alpn_names_the_current_format() {
        let expected = format!("shoal-cluster/{}", crate::format::CURRENT);
        assert_eq!(super::ALPN, expected.as_bytes());
    }
}
