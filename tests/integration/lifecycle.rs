//! The node as a process: start, health, logs, clean shutdown on SIGTERM and SIGINT, restart
//! with everything kept, the CLI, and memory staying flat while 1 GiB streams through.

use std::io::Read;

use reqwest::blocking::Body;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use shoal_tests::{sha256, tempdir, Node};

#[test]
fn restart_keeps_namespaces_tags_manifests_and_blobs() {
    let dir = tempdir();
    let data = dir.path().join("node");
    let node = Node::start(&data);
    let reg = node.registry();
    reg.create_namespace("keep");
    let (digest, bytes) = reg.push_image("keep/app", "v1", b"layer that must survive");
    let status = node.stop();
    assert!(status.success(), "SIGTERM exits cleanly: {status:?}");

    let node = Node::start(&data);
    let reg = node.registry();
    let r = reg.get("/v2/keep/app/manifests/v1");
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().as_ref(), &bytes[..]);
    let layer = sha256(b"layer that must survive");
    assert_eq!(
        reg.get(&format!("/v2/keep/app/blobs/{layer}"))
            .bytes()
            .unwrap()
            .as_ref(),
        b"layer that must survive"
    );
    let v: Value = reg.get("/v2/keep/app/tags/list").json().unwrap();
    assert_eq!(v["tags"], serde_json::json!(["v1"]));
    let (ok, out, _) = node.cli(&["namespace", "list"]);
    assert!(ok && out.contains("keep"), "{out}");
    // Writes keep working after the restart (Raft re-elected itself).
    assert_eq!(
        reg.put_manifest("keep/app", "v2", shoal_tests::oci::OCI_MANIFEST, &bytes)
            .status(),
        201
    );
    assert_eq!(
        reg.get(&format!("/v2/keep/app/manifests/{digest}"))
            .status(),
        200
    );
    let status = node.stop_with("INT");
    assert!(status.success(), "SIGINT exits cleanly: {status:?}");
    let node = Node::start(&data);
    assert_eq!(
        node.registry().get("/v2/keep/app/manifests/v2").status(),
        200
    );
}

#[test]
fn health_and_readiness() {
    let dir = tempdir();
    let node = Node::start(&dir.path().join("node"));
    let reg = node.registry();
    assert_eq!(reg.get("/healthz").status(), 200);
    assert_eq!(reg.get("/readyz").status(), 200);
    assert_eq!(reg.get("/nothing-here").status(), 404);
}

#[test]
fn json_logs_have_one_line_per_request() {
    let dir = tempdir();
    let node = Node::start_with(&dir.path().join("node"), &["--log-format", "json"]);
    let reg = node.registry();
    reg.get("/v2/");
    reg.get("/v2/nosuch/repo/manifests/latest");
    let log = node.wait_for_log("/v2/nosuch/repo/manifests/latest");
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(!lines.is_empty(), "no JSON log lines in:\n{log}");
    let access: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "shoal::access")
        .collect();
    let miss = access
        .iter()
        .find(|l| l["path"] == "/v2/nosuch/repo/manifests/latest")
        .unwrap_or_else(|| panic!("no access line for the request:\n{log}"));
    assert_eq!(miss["method"], "GET");
    assert_eq!(miss["status"], 404);
    assert!(miss["bytes"].as_u64().unwrap() > 0);
    assert!(miss["duration_us"].as_u64().is_some());
    assert!(
        log.contains("created the admin user"),
        "the first start's admin is logged (never its password)"
    );
}

/// A reader of `len` pseudo-random bytes that hashes what it hands out.
struct Generated {
    left: u64,
    x: u64,
    hasher: std::sync::Arc<std::sync::Mutex<Sha256>>,
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize & !7;
        let n = if n == 0 {
            self.left.min(buf.len() as u64) as usize
        } else {
            n
        };
        for chunk in buf[..n].chunks_mut(8) {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            chunk.copy_from_slice(&self.x.to_le_bytes()[..chunk.len()]);
        }
        self.hasher.lock().unwrap().update(&buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

/// Guards "no blob is ever held whole in memory": 1 GiB in and out, peak RSS under 100 MiB.
#[test]
fn one_gib_push_and_pull_stream_with_flat_memory() {
    const SIZE: u64 = 1 << 30;
    let dir = tempdir();
    let node = Node::start(&dir.path().join("node"));
    let reg = node.registry();
    reg.create_namespace("big");
    let hasher = std::sync::Arc::new(std::sync::Mutex::new(Sha256::new()));
    let body = Generated {
        left: SIZE,
        x: 0x1234_5678_9abc_def1,
        hasher: hasher.clone(),
    };
    let r = reg
        .http
        .post(reg.url("/v2/big/blob/blobs/uploads/"))
        .send()
        .unwrap();
    let loc = r.headers()["Location"].to_str().unwrap().to_string();
    let r = reg
        .http
        .patch(reg.url(&loc))
        .body(Body::new(body))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let digest = format!(
        "sha256:{}",
        hex::encode(hasher.lock().unwrap().clone().finalize())
    );
    let r = reg
        .http
        .put(reg.url(&format!("{loc}?digest={digest}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text());

    let mut r = reg.get(&format!("/v2/big/blob/blobs/{digest}"));
    assert_eq!(r.status(), 200);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
        h.update(&buf[..n]);
    }
    assert_eq!(total, SIZE);
    assert_eq!(format!("sha256:{}", hex::encode(h.finalize())), digest);
    let peak = node.peak_rss_kib();
    eprintln!(
        "peak RSS of the node after a 1 GiB push and pull: {} MiB",
        peak / 1024
    );
    assert!(
        peak < 100 * 1024,
        "peak RSS {peak} KiB is not under 100 MiB"
    );
}

/// `shoal serve --config FILE`: the node takes its settings from the file (a flag still
/// wins), and `shoal config check` names a bad key and its line.
#[test]
fn a_node_runs_from_its_config_file() {
    use shoal_tests::{bin, spawn_listening, Registry, ADMIN_PASSWORD};
    let dir = tempdir();
    let data = dir.path().join("node");
    let file = dir.path().join("shoal.toml");
    std::fs::write(
        &file,
        format!(
            "listen = \"127.0.0.1:0\"\ndata = \"{}\"\nregion = \"nl-01\"\nmetrics-auth = true\n",
            data.display()
        ),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(bin("shoal"));
    cmd.args(["serve", "--config"])
        .arg(&file)
        .args(["--threads", "1"])
        .env("SHOAL_ADMIN_PASSWORD", ADMIN_PASSWORD);
    let (mut child, url) = spawn_listening(cmd, &dir.path().join("node.log"));
    let admin = Registry::new(&url);
    admin.create_namespace("from-file");
    let ns: Value = admin.get("/api/v1/namespaces/from-file").json().unwrap();
    assert_eq!(ns["region"], "nl-01", "the file's region");
    assert_eq!(
        Registry::anonymous(&url).get("/metrics").status(),
        401,
        "metrics-auth from the file"
    );
    assert!(data.join("meta").exists(), "the file's data directory");
    let _ = child.kill();
    let _ = child.wait();

    std::fs::write(&file, "listen = \"127.0.0.1:0\"\n\nthreds = 2\n").unwrap();
    let out = std::process::Command::new(bin("shoal"))
        .args(["config", "check"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":3: threds: no such setting"), "{err}");
    let out = std::process::Command::new(bin("shoal"))
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a node does not start on a bad file"
    );
}

/// The log a person reads: a first start and a restart log no ERROR and none of openraft's
/// internals, and each start says in one line what the node is.
#[test]
fn start_up_logs_read_cleanly() {
    let dir = tempdir();
    let data = dir.path().join("node");
    let first_run = Node::start(&data);
    // A request answered: the node is past its start-up, so the signal finds it serving.
    assert_eq!(first_run.registry().get("/healthz").status(), 200);
    let log_path = first_run.log.clone();
    first_run.stop();
    // Where the restart's lines begin (the first process has exited: its log is whole).
    let offset = std::fs::read_to_string(&log_path).unwrap().len();
    let node = Node::start(&data);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let log = loop {
        let text = node.log_text()[offset..].to_string();
        if text.contains("node ready") {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no start line on the restart:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // The restart's lines. (The first run's shutdown may still log openraft's own error
    // for a call that met its core stopping.)
    assert!(
        log.contains("recovering the metadata group from disk"),
        "{log}"
    );
    assert!(!log.contains(" ERROR "), "an ERROR at start:\n{log}");
    assert!(
        !log.contains("openraft::"),
        "openraft's internals at info:\n{log}"
    );
    let whole = node.log_text();
    let first = &whole[..offset];
    assert!(
        !first
            .split("SIGTERM")
            .next()
            .unwrap_or("")
            .contains("openraft::"),
        "openraft's internals at info on the first start:\n{first}"
    );
    let ready: Vec<&str> = log.lines().filter(|l| l.contains("node ready")).collect();
    assert_eq!(ready.len(), 1, "{log}");
    for field in [
        "version=",
        "commit",
        "node_id=1",
        "region=local",
        "data=",
        "origin=embedded",
        "listen=127.0.0.1:",
        "cluster=single node",
    ] {
        assert!(
            ready[0].contains(field),
            "{field} missing from {}",
            ready[0]
        );
    }
}
