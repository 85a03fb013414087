//! A real S3-compatible server for tests: moto's `moto_server` on a free loopback port, with
//! the few bucket calls tests make themselves (create a bucket, list its keys) spoken as
//! plain HTTP (moto does not check signatures).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::require_tool;

/// The credentials a `shoal-origin` on moto is started with.
pub const CREDENTIALS: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_REGION", "us-east-1"),
];

pub struct Moto {
    pub url: String,
    child: Child,
}

impl Moto {
    /// Starts `moto_server`, or `None` if it is missing (a failure under `CI=true`).
    pub fn start() -> Option<Moto> {
        if !require_tool("moto_server") {
            return None;
        }
        let mut child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start moto_server");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("Running on ").nth(1) {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("moto prints its address");
        Some(Moto { url, child })
    }

    pub fn create_bucket(&self, bucket: &str) {
        let r = reqwest::blocking::Client::new()
            .put(format!("{}/{bucket}", self.url))
            .send()
            .unwrap();
        assert!(r.status().is_success(), "create bucket: {}", r.status());
    }

    /// Every key in `bucket` under `prefix` (ListObjectsV2, page by page).
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let http = reqwest::blocking::Client::new();
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("list-type", "2".to_string()),
                ("prefix", prefix.to_string()),
            ];
            if let Some(t) = &token {
                query.push(("continuation-token", t.clone()));
            }
            let xml = http
                .get(format!("{}/{bucket}", self.url))
                .query(&query)
                .send()
                .unwrap()
                .text()
                .unwrap();
            keys.extend(between_all(&xml, "<Key>", "</Key>"));
            token = between_all(&xml, "<NextContinuationToken>", "</NextContinuationToken>")
                .into_iter()
                .next();
            if token.is_none() {
                return keys;
            }
        }
    }
}

/// Every text between `open` and `close` in `s`.
fn between_all(s: &str, open: &str, close: &str) -> Vec<String> {
    s.split(open)
        .skip(1)
        .filter_map(|rest| rest.split(close).next().map(str::to_string))
        .collect()
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
