//! HTTPS on the public listener (`--tls-cert`/`--tls-key`) with a certificate the test
//! makes: clients that trust it get the registry, token realms say https, skopeo pushes
//! and pulls with verification on, plain HTTP on the port gets nothing, and a key that does
//! not fit the certificate stops the start with the file named.

use std::path::{Path, PathBuf};

use shoal_tests::oci::{noise, write_layout};
use shoal_tests::{admin_creds, basic, bin, require_tool, run_tool, tempdir, Node, ADMIN_PASSWORD};

/// A self-signed certificate for 127.0.0.1 in `dir`: (cert.pem, key.pem, the PEM).
fn certificate(dir: &Path) -> (PathBuf, PathBuf, String) {
    let made =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (cert, key, made.cert.pem())
}

fn tls_node(dir: &Path, cert: &Path, key: &Path) -> Node {
    Node::start_with(
        &dir.join("node"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
}

#[test]
fn the_node_serves_https_with_its_certificate() {
    let dir = tempdir();
    let (cert, key, pem) = certificate(dir.path());
    let node = tls_node(dir.path(), &cert, &key);
    assert!(node.url.starts_with("https://"), "{}", node.url);

    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let r = client.get(format!("{}/v2/", node.url)).send().unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.contains(&format!("realm=\"https://{}/auth/token\"", node.addr)),
        "{challenge}"
    );
    let r = client
        .get(format!("{}/v2/", node.url))
        .header("Authorization", basic("admin", ADMIN_PASSWORD))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .post(format!("{}/api/v1/namespaces", node.url))
        .header("Authorization", basic("admin", ADMIN_PASSWORD))
        .json(&serde_json::json!({"name": "acme"}))
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());

    // Plain HTTP on the TLS port: no registry answers.
    let plain = reqwest::blocking::get(format!("http://{}/v2/", node.addr));
    assert!(
        plain.map_or(true, |r| r.status() != 401 && r.status() != 200),
        "plain HTTP was served on the TLS port"
    );
    // A client that does not trust the certificate is refused by its own TLS check.
    assert!(reqwest::blocking::get(format!("{}/v2/", node.url)).is_err());

    if !require_tool("skopeo") {
        return;
    }
    let certs = dir.path().join("certs.d");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("ca.crt"), &pem).unwrap();
    let src = dir.path().join("src");
    // Larger than the zero-copy threshold, so the TLS path carries a big body.
    let digest = write_layout(&src, "v1", &[vec![("big.bin", noise(3, 6 << 20))]]);
    let creds = admin_creds();
    let image = format!("docker://{}/acme/app:v1", node.addr);
    let (ok, out) = run_tool(
        "skopeo",
        &[
            "copy",
            "--preserve-digests",
            "--dest-cert-dir",
            certs.to_str().unwrap(),
            "--dest-creds",
            &creds,
            &format!("oci:{}:v1", src.display()),
            &image,
        ],
        &[],
    );
    assert!(ok, "skopeo copy over TLS: {out}");
    let back = dir.path().join("back");
    let (ok, out) = run_tool(
        "skopeo",
        &[
            "copy",
            "--preserve-digests",
            "--src-cert-dir",
            certs.to_str().unwrap(),
            "--src-creds",
            &creds,
            &image,
            &format!("oci:{}:v1", back.display()),
        ],
        &[],
    );
    assert!(ok, "skopeo copy back over TLS: {out}");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(back.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());
}

#[test]
fn a_key_that_does_not_fit_stops_the_start() {
    let dir = tempdir();
    let (cert, _, _) = certificate(dir.path());
    let other = rcgen::KeyPair::generate().unwrap();
    let wrong = dir.path().join("wrong-key.pem");
    std::fs::write(&wrong, other.serialize_pem()).unwrap();
    let serve = |cert: &Path, key: &Path| {
        std::process::Command::new(bin("shoal"))
            .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert"])
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .arg("--data")
            .arg(dir.path().join("data"))
            .env("SHOAL_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .output()
            .unwrap()
    };
    let out = serve(&cert, &wrong);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not fit") && err.contains("wrong-key.pem"),
        "{err}"
    );
    let out = serve(&wrong, &wrong);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TLS certificate"), "{err}");
    let out = std::process::Command::new(bin("shoal"))
        .args(["serve", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .output()
        .unwrap();
    assert!(!out.status.success(), "--tls-cert without --tls-key");
}

/// A large blob over HTTPS, read again and again: the first read goes around the page
/// cache, the second through it, the later ones from mapped cache pages; every body and
/// range is byte-exact, and a range that ends in the blob's last page stops at its end.
#[test]
fn large_blobs_over_https_arrive_whole_on_every_read() {
    let dir = tempdir();
    let (cert, key, pem) = certificate(dir.path());
    let node = tls_node(dir.path(), &cert, &key);
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "authorization",
        basic("admin", ADMIN_PASSWORD).parse().unwrap(),
    );
    let reg = shoal_tests::Registry {
        base: node.url.clone(),
        http: reqwest::blocking::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
            .default_headers(headers)
            .build()
            .unwrap(),
    };
    reg.create_namespace("acme");
    const MIB: usize = 1 << 20;
    let blob = noise(7, 9 * MIB + 4097);
    let digest = reg.push_blob("acme/big", &blob);
    let url = reg.url(&format!("/v2/acme/big/blobs/{digest}"));
    for read in 1..=4 {
        let body = reg.http.get(&url).send().unwrap().bytes().unwrap();
        assert_eq!(shoal_tests::sha256(&body), digest, "read {read}");
    }
    for (start, end) in [(MIB + 1, 3 * MIB + 5), (blob.len() - 4100, blob.len() - 1)] {
        let r = reg
            .http
            .get(&url)
            .header("Range", format!("bytes={start}-{end}"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(&r.bytes().unwrap()[..], &blob[start..=end], "{start}-{end}");
    }
}
