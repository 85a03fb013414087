//! Test harness for Shoal's integration tests: starts real `shoal` processes on port 0 and
//! reads the address they print, finds real client tools, and offers a small typed client
//! for the registry API.
//!
//! A test that needs a missing tool calls `require_tool`: outside CI it prints a loud notice
//! and the test returns early; with `CI=true` it fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use sha2::{Digest as _, Sha256};

pub mod browser;
pub mod issuer;
pub mod linearizable;
pub mod moto;
pub mod netcut;
pub mod oci;
pub mod otlp;
pub mod region;
pub mod upstream;

/// The words of `text` that start with `prefix` and go on with `word` characters, where no
/// `word` character comes right before (`shoal_x` in `rate(shoal_x[5m])`, not in `my_shoal_x`).
pub fn words_with_prefix(
    text: &str,
    prefix: &str,
    word: impl Fn(u8) -> bool,
) -> std::collections::BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut out = std::collections::BTreeSet::new();
    let mut i = 0;
    while let Some(at) = text[i..].find(prefix) {
        let start = i + at;
        let after = start + prefix.len();
        let end = after + bytes[after..].iter().take_while(|b| word(**b)).count();
        let boundary = start == 0 || !word(bytes[start - 1]);
        if boundary && end > after {
            out.insert(text[start..end].to_string());
        }
        i = end.max(start + 1);
    }
    out
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// True if `tool` is on PATH. Otherwise: fails under `CI=true`, else says so loudly.
pub fn require_tool(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        let msg = format!(
            "\n!!!!!!!!!! TOOL MISSING: `{tool}` is not installed; this test did NOT run. \
             The README's test command installs it. !!!!!!!!!!\n"
        );
        if in_ci() {
            panic!("{msg}");
        }
        eprintln!("{msg}");
    }
    found
}

/// True if `python3` can import `module`. Otherwise: fails under `CI=true`, else says so loudly.
pub fn require_python_module(module: &str) -> bool {
    let found = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        let msg = format!(
            "\n!!!!!!!!!! PYTHON MODULE MISSING: `{module}` cannot be imported; this test did NOT run. \
             The README's test command installs it (pip install {module}). !!!!!!!!!!\n"
        );
        if in_ci() {
            panic!("{msg}");
        }
        eprintln!("{msg}");
    }
    found
}

/// True if a Docker engine answers. Otherwise: fails under `CI=true`, else says so loudly.
pub fn require_docker() -> bool {
    if !require_tool("docker") {
        return false;
    }
    let up = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !up {
        let msg = "\n!!!!!!!!!! DOCKER ENGINE DOWN: `docker info` failed; this test did NOT run. !!!!!!!!!!\n";
        if in_ci() {
            panic!("{msg}");
        }
        eprintln!("{msg}");
    }
    up
}

/// A workspace binary (`shoal`, `shoal-origin`) built next to this test binary.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build --workspace --bins`",
        bin.display()
    );
    bin
}

pub fn shoal_bin() -> PathBuf {
    bin("shoal")
}

/// Spawns `cmd` with stdout piped and stderr appended to `log`, and waits (60 s at most) for
/// its first stdout line, `listening on http://HOST:PORT`. Returns the child and the URL.
pub fn spawn_listening(mut cmd: Command, log: &Path) -> (Child, String) {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn process");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    // Lines other than the address (a first start's admin password) go to `<log>.stdout`.
    let mut other = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log.with_extension("stdout"))
        .unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("listening on ") {
                let _ = tx.send(line.clone());
            }
            let _ = writeln!(other, "{line}");
        }
    });
    let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) else {
        let _ = child.kill();
        panic!(
            "{cmd:?} did not print its address; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    };
    let url = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, url)
}

/// A running `shoal-origin serve` process.
pub struct Origin {
    pub url: String,
    pub secret: String,
    pub log: PathBuf,
    child: Option<Child>,
    /// The flags and environment it was started with (minus `--listen`), for `restart`.
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Origin {
    /// Serves the directory `root` with `secret`.
    pub fn start(root: &Path, secret: &str) -> Origin {
        let log = root.with_extension("log");
        Origin::start_args(&["--root", root.to_str().unwrap()], &log, secret, &[])
    }

    pub fn start_args(args: &[&str], log: &Path, secret: &str, env: &[(&str, &str)]) -> Origin {
        let mut origin = Origin {
            url: String::new(),
            secret: secret.to_string(),
            log: log.to_path_buf(),
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        origin.spawn("127.0.0.1:0");
        origin
    }

    /// Runs `shoal-origin serve` on `listen` with this origin's flags, secret and log.
    fn spawn(&mut self, listen: &str) {
        let mut cmd = Command::new(bin("shoal-origin"));
        cmd.args(["serve", "--listen", listen])
            .args(&self.args)
            .env("SHOAL_ORIGIN_SECRET", &self.secret)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let (child, url) = spawn_listening(cmd, &self.log);
        self.url = url;
        self.child = Some(child);
    }

    /// A node using this origin, its data in `data`.
    pub fn node(&self, data: &Path) -> Node {
        self.node_with(data, &[])
    }

    /// Another handle on the same origin (not owning the process) that hands its nodes
    /// `secret` instead of the right one.
    pub fn with_secret(other: &Origin, secret: &str) -> Origin {
        Origin {
            url: other.url.clone(),
            secret: secret.to_string(),
            log: other.log.clone(),
            child: None,
            args: other.args.clone(),
            env: other.env.clone(),
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running `shoal serve` process.
/// The admin password every test node starts with (`SHOAL_ADMIN_PASSWORD`).
pub const ADMIN_PASSWORD: &str = "test-admin-password-0123";

/// `admin:PASSWORD`, for clients' `--creds` flags.
pub fn admin_creds() -> String {
    format!("admin:{ADMIN_PASSWORD}")
}

pub struct Node {
    /// `http://127.0.0.1:PORT` (`https://` with `--tls-cert`)
    pub url: String,
    /// `127.0.0.1:PORT`
    pub addr: String,
    pub data: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// Starts a node on a free port with its data in `data`.
    pub fn start(data: &Path) -> Node {
        Node::start_with(data, &[])
    }

    pub fn start_with(data: &Path, extra: &[&str]) -> Node {
        Node::start_env(data, extra, &[])
    }

    /// Starts a node with extra flags and environment variables.
    pub fn start_env(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Node {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend(extra);
        Node::start_listen(data, &all, env)
    }

    /// Starts a node whose flags (`extra`) include its own `--listen`.
    pub fn start_listen(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Node {
        std::fs::create_dir_all(data).unwrap();
        let log = data.with_extension("log");
        let mut cmd = Command::new(bin("shoal"));
        cmd.args(["serve", "--data"])
            .arg(data)
            .args(extra)
            .env("SHOAL_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .envs(env.iter().copied());
        let (child, url) = spawn_listening(cmd, &log);
        Node {
            addr: url
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                .to_string(),
            url,
            data: data.to_path_buf(),
            log,
            child: Some(child),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("node running").id()
    }

    /// Sends `signal` (e.g. "TERM", "INT") and waits for the process to exit.
    pub fn stop_with(mut self, signal: &str) -> ExitStatus {
        let mut child = self.child.take().expect("node running");
        crate::signal(child.id(), signal);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("shoal did not exit within 30 s of SIG{signal}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9`: no chance to flush or say goodbye.
    pub fn kill9(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn stop(self) -> ExitStatus {
        self.stop_with("TERM")
    }

    /// `VmHWM` (peak resident set) of the node in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc status")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (up to 10 s) until the node's log has a line containing `needle`; returns the
    /// whole log. The access line of a request is written after its response, so a test
    /// reading the log right after a response must wait for it.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log_text();
            if log.contains(needle) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A client signed in as the admin.
    pub fn registry(&self) -> Registry {
        Registry::new(&self.url)
    }

    /// Creates a credential through the CLI as the admin; returns (id, username, password).
    pub fn credential(&self, args: &[&str]) -> (String, String, String) {
        self.credential_as("admin", ADMIN_PASSWORD, args)
    }

    /// `credential` signed in as `user`.
    pub fn credential_as(
        &self,
        user: &str,
        password: &str,
        args: &[&str],
    ) -> (String, String, String) {
        let mut all = vec!["credential", "create", "--json"];
        all.extend(args);
        let (ok, out, err) = self.cli_as(user, password, &all);
        assert!(ok, "credential create {args:?}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let field = |k: &str| v[k].as_str().unwrap().to_string();
        (field("id"), field("username"), field("password"))
    }

    /// Runs `shoal <group> --server URL <rest>` against this node as the admin and returns
    /// (success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        self.cli_as("admin", ADMIN_PASSWORD, args)
    }

    /// `cli` that must succeed; returns its stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.cli(args);
        assert!(ok, "{args:?}: {out}{err}");
        out
    }

    /// `cli` with `SHOAL_USERNAME`/`SHOAL_PASSWORD` set to `user`/`password`.
    pub fn cli_as(&self, user: &str, password: &str, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(shoal_bin())
            .args(&args[..1])
            .args(["--server", &self.url])
            .args(&args[1..])
            .env("SHOAL_USERNAME", user)
            .env("SHOAL_PASSWORD", password)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A thin client for the registry API, for tests that speak HTTP directly.
pub struct Registry {
    pub base: String,
    pub http: Client,
}

impl Registry {
    /// A client that sends the admin's Basic credentials with every request.
    pub fn new(base: &str) -> Registry {
        Registry::with_auth(base, Some(&basic("admin", ADMIN_PASSWORD)))
    }

    /// A client without credentials.
    pub fn anonymous(base: &str) -> Registry {
        Registry::with_auth(base, None)
    }

    /// A client that sends `authorization` (e.g. `basic(u, p)` or `Bearer …`) with every request.
    pub fn with_auth(base: &str, authorization: Option<&str>) -> Registry {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(a) = authorization {
            headers.insert("authorization", a.parse().unwrap());
        }
        Registry {
            base: base.to_string(),
            http: Client::builder()
                .timeout(Duration::from_secs(600))
                .redirect(reqwest::redirect::Policy::none())
                .default_headers(headers)
                .build()
                .unwrap(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn create_namespace(&self, name: &str) {
        let r = self
            .http
            .post(self.url("/api/v1/namespaces"))
            .json(&serde_json::json!({"name": name}))
            .send()
            .unwrap();
        assert_eq!(
            r.status(),
            201,
            "create namespace {name}: {}",
            r.text().unwrap()
        );
    }

    /// Monolithic push (`POST ?digest=`); returns the digest.
    pub fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let d = sha256(bytes);
        let r = self
            .http
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/?digest={d}")))
            .header("Content-Type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .unwrap();
        assert_eq!(r.status(), 201, "push blob: {}", r.text().unwrap());
        d
    }

    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Response {
        self.http
            .put(self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("Content-Type", media_type)
            .body(bytes.to_vec())
            .send()
            .unwrap()
    }

    pub fn get(&self, path: &str) -> Response {
        self.http.get(self.url(path)).send().unwrap()
    }

    /// Pushes a config and one layer and an OCI manifest over them, tagged `tag`.
    /// Returns (manifest digest, manifest bytes).
    pub fn push_image(&self, repo: &str, tag: &str, layer: &[u8]) -> (String, Vec<u8>) {
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let c = self.push_blob(repo, config);
        let l = self.push_blob(repo, layer);
        let m = oci::image_manifest(&c, config.len(), &[(&l, layer.len())], None);
        let r = self.put_manifest(repo, tag, oci::OCI_MANIFEST, &m);
        assert_eq!(r.status(), 201, "put manifest: {}", r.text().unwrap());
        (sha256(&m), m)
    }
}

/// The `Authorization` value of Basic credentials.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    let raw = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// Reads an error response's first OCI error code.
pub fn error_code(r: Response) -> (u16, String) {
    let status = r.status().as_u16();
    let mut body = String::new();
    let _ = r.take(1 << 20).read_to_string(&mut body);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    let code = v["errors"][0]["code"].as_str().unwrap_or("").to_string();
    assert!(
        status < 400 || !code.is_empty(),
        "error response without an OCI error body: {status} {body}"
    );
    (status, code)
}

/// Runs `program args…` to completion; returns (success, stdout followed by stderr).
pub fn run_tool(program: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `skopeo copy` between two image references (plain HTTP allowed on both sides), keeping
/// digests; returns (success, output).
pub fn skopeo_copy(src: &str, dest: &str) -> (bool, String) {
    let creds = admin_creds();
    let mut args = vec![
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
    ];
    if src.starts_with("docker://") {
        args.extend(["--src-creds", &creds]);
    }
    if dest.starts_with("docker://") {
        args.extend(["--dest-creds", &creds]);
    }
    args.extend([src, dest]);
    run_tool("skopeo", &args, &[])
}

/// A node in a fresh temporary directory with namespace `ns` created. Keep the directory
/// alive as long as the node.
pub fn node_with_namespace(ns: &str) -> (tempfile::TempDir, Node) {
    let dir = tempdir();
    let node = Node::start(&dir.path().join("node"));
    node.registry().create_namespace(ns);
    (dir, node)
}

/// A fresh temporary directory for one test.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("shoal-test-")
        .tempdir()
        .unwrap()
}

impl Origin {
    /// A node using this origin with extra flags (e.g. `--cache-max-bytes 3MiB`).
    pub fn node_with(&self, data: &Path, extra: &[&str]) -> Node {
        let mut args = vec!["--origin", self.url.as_str()];
        args.extend(extra);
        Node::start_env(
            data,
            &args,
            &[("SHOAL_ORIGIN_SECRET", self.secret.as_str())],
        )
    }

    /// Starts the origin again with the same flags on the same address (killing it first if
    /// it still runs), so nodes configured with its URL reach it again without a restart.
    /// Its log goes on in the same file.
    pub fn restart(&mut self) {
        self.kill();
        let was = self.url.clone();
        self.spawn(was.trim_start_matches("http://"));
        assert_eq!(self.url, was, "the origin came back on another address");
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("origin running").id()
    }

    /// Sends `sig` ("STOP", "CONT", …) to the origin process.
    pub fn signal(&self, sig: &str) {
        signal(self.pid(), sig);
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Sends `sig` ("STOP", "CONT", "KILL", …) to process `pid`; a test freezes a process with
/// STOP to hold a transfer where it is (its sockets stay open) without racing it.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{sig} {pid} failed");
}

/// How many blob GETs of `digest` the origin has logged (lines with `blob read` and the
/// digest), across its restarts.
pub fn origin_reads(origin: &Origin, digest: &str) -> usize {
    origin
        .log_text()
        .lines()
        .filter(|l| l.contains("blob read") && l.contains(digest))
        .count()
}

/// Polls `ok` until it holds, for 20 s at most: caches, logs and metrics settle after the
/// response that caused them.
pub fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The value of one series of `node`'s `GET /metrics` (Prometheus text), e.g.
/// `shoal_cache_hits_total` or `shoal_blob_bytes_total{source="cache"}`. The labels given
/// must all be on a series for it to count; matching series are summed. A metric never
/// touched may be absent from the output: that reads as 0.
pub fn metric(node: &Node, series: &str) -> f64 {
    let r = reqwest::blocking::get(format!("{}/metrics", node.url)).expect("GET /metrics");
    assert_eq!(r.status(), 200, "GET /metrics on {}", node.url);
    sum_series(&r.text().unwrap(), series)
}

/// Sums the samples of `text` (Prometheus text format) that `series` names.
pub fn sum_series(text: &str, series: &str) -> f64 {
    let (name, want) = parse_series(series);
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let end = if l.contains('{') {
                l.find('}')? + 1
            } else {
                l.find(char::is_whitespace)?
            };
            let (n, labels) = parse_series(&l[..end]);
            let value = l[end..].split_whitespace().next()?.parse::<f64>().ok()?;
            (n == name && want.iter().all(|w| labels.contains(w))).then_some(value)
        })
        .sum()
}

fn parse_series(s: &str) -> (&str, Vec<(String, String)>) {
    let Some((name, rest)) = s.split_once('{') else {
        return (s.trim(), Vec::new());
    };
    let labels = rest
        .trim_end_matches('}')
        .split(',')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        })
        .collect();
    (name.trim(), labels)
}

/// The containerd socket of Docker's engine on this kind of machine.
pub const CONTAINERD_SOCKET: &str = "/var/run/docker/containerd/containerd.sock";

/// Whether `ctr`, skopeo, the Docker engine and its containerd socket are all here; outside
/// CI a missing one is a loud notice, under `CI=true` a failure.
pub fn require_containerd() -> bool {
    if !require_tool("ctr") || !require_tool("skopeo") || !require_docker() {
        return false;
    }
    if !Path::new(CONTAINERD_SOCKET).exists() {
        let msg = format!("\n!!!!!!!!!! containerd socket {CONTAINERD_SOCKET} is missing; this test did NOT run. !!!!!!!!!!\n");
        assert!(!in_ci(), "{msg}");
        eprintln!("{msg}");
        return false;
    }
    true
}

/// `ctr` against Docker's containerd, in containerd namespace `namespace`.
pub fn ctr(namespace: &str, args: &[&str]) -> (bool, String) {
    let all: Vec<&str> = ["--address", CONTAINERD_SOCKET, "--namespace", namespace]
        .iter()
        .chain(args)
        .copied()
        .collect();
    run_tool("ctr", &all, &[])
}
