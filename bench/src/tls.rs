//! HTTPS targets: the certificates shoal-bench trusts beside the system's roots, and a
//! self-signed certificate for the loopback servers `compare` starts with TLS.
//!
//! Every HTTP client of shoal-bench is built from `client()`, so a certificate trusted
//! once (`--ca-cert`, or the one `compare` made) is trusted by the scenarios' clients and by
//! the start-up checks alike, without threading it through every call.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use serde::Serialize;

static TRUSTED: Mutex<Vec<reqwest::Certificate>> = Mutex::new(Vec::new());

/// Trusts the PEM certificate(s) in `path` for every client built after this.
pub fn trust_file(path: &Path) -> anyhow::Result<()> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .with_context(|| format!("{} holds no PEM certificate", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no PEM certificate", path.display());
    }
    TRUSTED.lock().expect("never poisoned").extend(certs);
    Ok(())
}

/// A client builder that trusts the system's roots and every certificate trusted here.
pub fn client() -> reqwest::ClientBuilder {
    let mut b = reqwest::Client::builder();
    for c in TRUSTED.lock().expect("never poisoned").iter() {
        b = b.add_root_certificate(c.clone());
    }
    b
}

/// A certificate and its key, as PEM files.
#[derive(Serialize, Debug, Clone)]
pub struct ServerCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A self-signed certificate for `127.0.0.1` and `localhost` in `dir`, trusted from now on.
pub fn loopback_cert(dir: &Path) -> anyhow::Result<ServerCert> {
    std::fs::create_dir_all(dir)?;
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .context("making a self-signed certificate")?;
    let pair = ServerCert {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(&pair.cert, made.cert.pem())?;
    std::fs::write(&pair.key, made.signing_key.serialize_pem())?;
    trust_file(&pair.cert)?;
    Ok(pair)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file without a certificate is refused by name, not trusted as nothing.
    #[test]
    fn a_file_without_a_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = trust_file(&path).unwrap_err().to_string();
        assert!(err.contains("empty.pem"), "{err}");
        let made = loopback_cert(dir.path()).unwrap();
        assert!(std::fs::read_to_string(made.cert)
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
