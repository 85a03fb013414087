//! HTTPS on the public listener (`--tls-cert`, `--tls-key`).
//!
//! Pingora loads the files only when its listener starts, inside `run`, after the node has
//! announced its address, and a bad file there ends the process without a useful word. So
//! the pair is loaded and matched here first, with rustls, and a bad certificate or key
//! fails the start with the file named. Bodies over TLS go through Pingora (no `sendfile`:
//! the bytes must be encrypted in user space).

use std::path::{Path, PathBuf};

use pingora::listeners::tls::TlsSettings;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// PEM certificate chain, the node's certificate first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

fn bad(path: &Path, what: &str, e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("{what} {}: {e}", path.display()),
    )
}

impl TlsFiles {
    /// Checks that the files hold a certificate chain and its private key, then hands them
    /// to Pingora.
    pub fn settings(&self) -> std::io::Result<TlsSettings> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| bad(&self.cert, "reading the TLS certificate", e))?
            .collect::<Result<_, _>>()
            .map_err(|e| bad(&self.cert, "reading the TLS certificate", e))?;
        if certs.is_empty() {
            return Err(bad(
                &self.cert,
                "the TLS certificate file",
                "holds no certificate",
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| bad(&self.key, "reading the TLS key", e))?;
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| bad(&self.key, "the TLS key does not fit the certificate", e))?;
        let utf8 = |p: &Path| {
            p.to_str()
                .map(str::to_string)
                .ok_or_else(|| bad(p, "the TLS file name", "is not UTF-8"))
        };
        TlsSettings::intermediate(&utf8(&self.cert)?, &utf8(&self.key)?)
            .map_err(|e| bad(&self.cert, "the TLS settings", e))
    }
}
