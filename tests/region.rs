//! A multi-node region for tests: a cluster CA and node certificates made with the real
//! `shoal cluster` commands, one origin service, node 1 bootstrapping and the others joining.
//! Ports are chosen up front and kept, so a node restarted on the same data dir keeps the
//! addresses recorded in the membership.

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{shoal_bin, Node, Origin};

pub const SECRET: &str = "region-secret-0123456789";

pub struct Region {
    pub dir: PathBuf,
    pub origin: Origin,
    /// Index i holds node id i + 1; `None` once stopped or killed.
    pub nodes: Vec<Option<Node>>,
    ports: Vec<(u16, u16)>,
    voters: usize,
    /// Extra flags for every node.
    pub extra: Vec<String>,
    /// Start nodes as a Kubernetes StatefulSet does: `SHOAL_NODE_ORDINAL` = id − 1 and the
    /// same `--join` for every pod, instead of `--node-id` and `--bootstrap`.
    pub by_ordinal: bool,
}

fn free_tcp() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn shoal(args: &[&str]) {
    let out = Command::new(shoal_bin()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "shoal {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Region {
    /// Starts `n` nodes wanting `voters` voters and waits until all are members.
    pub fn start(dir: &Path, n: usize, voters: usize) -> Region {
        Region::start_with(dir, n, voters, &[])
    }

    /// `start`, every node with the flags `extra`.
    pub fn start_with(dir: &Path, n: usize, voters: usize, extra: &[&str]) -> Region {
        let mut region = Region::prepare(dir, n, voters, extra);
        for id in 1..=n as u64 {
            region.start_node(id);
            if id == 1 {
                region.wait_for(|s| s["leader"] == 1, "node 1 leads the new region");
            }
        }
        region.wait_members(n);
        region.wait_ready();
        region
    }

    /// Makes the CA, `n` node certificates, ports and the origin, but starts no node.
    pub fn prepare(dir: &Path, n: usize, voters: usize, extra: &[&str]) -> Region {
        let ca = dir.join("ca");
        shoal(&["cluster", "init", "--dir", ca.to_str().unwrap()]);
        let origin = Origin::start(&dir.join("origin"), SECRET);
        let mut region = Region {
            dir: dir.to_path_buf(),
            origin,
            nodes: Vec::new(),
            ports: Vec::new(),
            voters,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            by_ordinal: false,
        };
        for id in 1..=n as u64 {
            let id = id.to_string();
            shoal(&[
                "cluster",
                "cert",
                "--dir",
                ca.to_str().unwrap(),
                "--node-id",
                &id,
            ]);
            region.ports.push(region.distinct_ports());
            region.nodes.push(None);
        }
        region
    }

    /// The UDP port of node `id`'s cluster plane.
    pub fn plane_port(&self, id: u64) -> u16 {
        self.ports[id as usize - 1].1
    }

    pub fn api_url(&self, id: u64) -> String {
        format!("http://127.0.0.1:{}", self.ports[id as usize - 1].0)
    }

    /// Starts (or restarts) node `id` on its data dir and ports.
    pub fn start_node(&mut self, id: u64) {
        let (api, cluster) = self.ports[id as usize - 1];
        let data = self.dir.join(format!("node-{id}"));
        let tls = self.dir.join(format!("ca/node-{id}"));
        let id_s = id.to_string();
        let listen = format!("127.0.0.1:{api}");
        let cluster_listen = format!("127.0.0.1:{cluster}");
        let voters = self.voters.to_string();
        let join = self.api_url(1);
        let ordinal = (id - 1).to_string();
        let mut args = vec![
            "--cluster-listen",
            &cluster_listen,
            "--cluster-tls",
            tls.to_str().unwrap(),
            "--voters",
            &voters,
            "--listen",
            &listen,
        ];
        let mut env = vec![("SHOAL_ORIGIN_SECRET", SECRET)];
        if self.by_ordinal {
            args.extend(["--join", &join]);
            env.push(("SHOAL_NODE_ORDINAL", &ordinal));
        } else {
            args.extend(["--node-id", &id_s]);
            if id == 1 {
                args.push("--bootstrap");
            } else {
                args.extend(["--join", &join]);
            }
        }
        let mut all = vec!["--origin", &self.origin.url];
        all.extend(args);
        all.extend(self.extra.iter().map(String::as_str));
        let node = Node::start_listen(&data, &all, &env);
        self.nodes[id as usize - 1] = Some(node);
    }

    pub fn node(&self, id: u64) -> &Node {
        self.nodes[id as usize - 1]
            .as_ref()
            .expect("node is running")
    }

    pub fn running(&self) -> impl Iterator<Item = (u64, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (i as u64 + 1, n)))
    }

    /// `GET /api/v1/cluster` on node `id`, as the admin (a node that has not joined yet
    /// knows no admin and answers `Null`).
    pub fn status(&self, id: u64) -> Value {
        reqwest::blocking::Client::new()
            .get(format!("{}/api/v1/cluster", self.api_url(id)))
            .basic_auth("admin", Some(crate::ADMIN_PASSWORD))
            .send()
            .and_then(|r| r.json())
            .unwrap_or(Value::Null)
    }

    /// Polls every running node's status until `pred` holds on one of them (30 s at most).
    pub fn wait_for(&self, pred: impl Fn(&Value) -> bool, what: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for (id, _) in self.running() {
                let s = self.status(id);
                if pred(&s) {
                    return s;
                }
            }
            if Instant::now() > deadline {
                let all: Vec<Value> = self.running().map(|(id, _)| self.status(id)).collect();
                panic!(
                    "timed out waiting until {what}; statuses: {all:#?}\n{}",
                    self.warnings()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the leader lists `n` members with the wanted number of voters.
    pub fn wait_members(&self, n: usize) -> Value {
        let voters = self.voters.min(n);
        self.wait_for(
            |s| {
                let ms = s["members"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                s["leader"] == s["node_id"]
                    && ms.len() == n
                    && ms.iter().filter(|m| m["voter"] == true).count() == voters
            },
            &format!("{n} members, {voters} of them voters"),
        )
    }

    /// The warnings and errors in every running node's log (the last 20 each), for a
    /// failure's message: the region's directory is gone once the test ends.
    fn warnings(&self) -> String {
        let mut out = String::new();
        for (id, node) in self.running() {
            let log = node.log_text();
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .collect();
            out += &format!("node {id}, warnings and errors in its log:\n");
            for l in &lines[lines.len().saturating_sub(20)..] {
                out += &format!("  {l}\n");
            }
        }
        out
    }

    /// `GET /readyz` on node `id`: its status and body (status 0 and the error when the
    /// request fails).
    pub fn readyz(&self, id: u64) -> (u16, String) {
        match reqwest::blocking::get(format!("{}/readyz", self.api_url(id))) {
            Ok(r) => (r.status().as_u16(), r.text().unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        }
    }

    /// Waits until every running node answers `/readyz` with 200 (30 s at most): a member
    /// the leader lists may not have applied the region's records yet.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for (id, _) in self.running() {
            loop {
                let (status, body) = self.readyz(id);
                if status == 200 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {id} is not ready after 30 s: {status} {body}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// The id of the current leader, as the running nodes agree.
    pub fn leader(&self) -> u64 {
        let s = self.wait_for(
            |s| s["leader"].is_u64() && s["leader"] == s["node_id"],
            "a leader exists",
        );
        s["node_id"].as_u64().unwrap()
    }

    /// A free API port and a free plane port that no node of this region has: the OS may
    /// hand a port it just released out again, and two nodes on one port fail to start.
    fn distinct_ports(&self) -> (u16, u16) {
        loop {
            let ports = (free_tcp(), free_udp());
            let taken = self
                .ports
                .iter()
                .any(|(api, plane)| *api == ports.0 || *plane == ports.1);
            if !taken {
                return ports;
            }
        }
    }

    /// Gives node `id` new API and cluster ports, as a node rescheduled elsewhere gets new
    /// addresses (start it again with `start_node`).
    pub fn move_node(&mut self, id: u64) {
        self.ports[id as usize - 1] = self.distinct_ports();
    }

    /// `kill -9` node `id`.
    pub fn kill(&mut self, id: u64) {
        if let Some(node) = self.nodes[id as usize - 1].take() {
            node.kill9();
        }
    }
}
