//! Tag writes and reads through all three nodes of a region while its leader and followers
//! are killed with `kill -9`, frozen with `SIGSTOP` and cut off the plane with iptables (a
//! partition: the cut-off node still answers its clients); the recorded history is then
//! checked.
//!
//! What each read path promises (ARCHITECTURE.md, "Consistency"), and how it is checked:
//! - writes (`PUT` manifest by tag) and reads sent with `Shoal-Consistency: linearizable`
//!   (a read-index through the leader) are linearizable, on any node: Wing & Gong's search
//!   over each tag's history (`shoal_tests::linearizable::check`);
//! - plain reads come from the node's own replica: possibly stale, but never older than a
//!   write the same node acknowledged or a value it already showed, and never from the
//!   future (`check_local_reads`).
//!
//! A write whose outcome the client did not learn (a timeout, a 503) may or may not have
//! happened, and is checked that way. A request refused at connect (the node was down) did
//! nothing and is left out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::Client as Http;
use shoal_tests::linearizable::{self, Kind, LocalRead, Op, Write};
use shoal_tests::netcut::Cut;
use shoal_tests::oci::{image_manifest, OCI_MANIFEST};
use shoal_tests::region::Region;
use shoal_tests::{basic, require_tool, signal, tempdir, Registry, ADMIN_PASSWORD};

const TAGS: usize = 4;
const CLIENTS_PER_NODE: u64 = 2;
const REPO: &str = "lin/app";

/// One operation as a client saw it.
#[derive(Clone, Debug)]
struct Recorded {
    node: u64,
    tag: usize,
    call: u64,
    /// `None`: the outcome is unknown.
    ret: Option<u64>,
    what: What,
}

#[derive(Clone, Debug)]
enum What {
    Write(String),
    Read {
        linearizable: bool,
        value: Option<String>,
    },
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    KillLeader,
    KillFollower,
    StopLeader,
    StopFollower,
    /// Cut off the plane (iptables), its API still answering clients.
    PartitionLeader,
    PartitionFollower,
}

#[test]
fn tag_writes_and_reads_are_linearizable_while_nodes_die_freeze_and_are_cut_off() {
    if !require_tool("iptables") {
        return;
    }
    let dir = tempdir();
    let mut region = Region::start(dir.path(), 3, 3);
    let admin = Registry::new(&region.api_url(1));
    admin.create_namespace("lin");
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = admin.push_blob(REPO, config);
    let layer = b"one layer under every manifest";
    let layer_digest = admin.push_blob(REPO, layer);
    let manifest = move |seq: &str| {
        let mut m: serde_json::Value = serde_json::from_slice(&image_manifest(
            &config_digest,
            config.len(),
            &[(&layer_digest, layer.len())],
            None,
        ))
        .unwrap();
        m["annotations"] = serde_json::json!({"seq": seq});
        serde_json::to_vec(&m).unwrap()
    };

    // A misspelt consistency is refused, not served stale.
    let r = admin
        .http
        .get(admin.url(&format!("/v2/{REPO}/manifests/t0")))
        .header("Shoal-Consistency", "linearisable")
        .send()
        .unwrap();
    assert_eq!(shoal_tests::error_code(r), (400, "BAD_REQUEST".to_string()));

    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let history = Arc::new(Mutex::new(Vec::<Recorded>::new()));
    let unexpected = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut clients = Vec::new();
    for node in 1..=3u64 {
        for k in 0..CLIENTS_PER_NODE {
            let client = Client {
                node,
                base: region.api_url(node),
                id: node * 10 + k,
                start,
                stop: stop.clone(),
                history: history.clone(),
                unexpected: unexpected.clone(),
            };
            let manifest = manifest.clone();
            clients.push(std::thread::spawn(move || client.run(manifest)));
        }
    }

    let faults = [
        Fault::KillLeader,
        Fault::StopFollower,
        Fault::PartitionLeader,
        Fault::KillFollower,
        Fault::StopLeader,
        Fault::PartitionFollower,
        Fault::KillLeader,
        Fault::StopFollower,
    ];
    let mut injected = Vec::new();
    for fault in faults {
        std::thread::sleep(Duration::from_millis(1500));
        let leader = region.leader();
        let victim = match fault {
            Fault::KillLeader | Fault::StopLeader | Fault::PartitionLeader => leader,
            Fault::KillFollower | Fault::StopFollower | Fault::PartitionFollower => {
                (1..=3).find(|&n| n != leader).unwrap()
            }
        };
        match fault {
            Fault::KillLeader | Fault::KillFollower => {
                region.kill(victim);
                std::thread::sleep(Duration::from_millis(1000));
                region.start_node(victim);
            }
            Fault::StopLeader | Fault::StopFollower => {
                let pid = region.node(victim).pid();
                signal(pid, "STOP");
                std::thread::sleep(Duration::from_millis(2000));
                signal(pid, "CONT");
            }
            Fault::PartitionLeader | Fault::PartitionFollower => {
                // A leader cut off keeps its clients and believes it leads for a while:
                // the case a read-index exists for.
                let _cut = Cut::port(region.plane_port(victim));
                std::thread::sleep(Duration::from_millis(2500));
            }
        }
        injected.push(format!("{fault:?} (node {victim})"));
    }
    std::thread::sleep(Duration::from_millis(2000));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }

    let unexpected = unexpected.lock().unwrap();
    assert!(
        unexpected.is_empty(),
        "answers no fault explains: {unexpected:#?}"
    );
    let history = history.lock().unwrap().clone();
    let mut totals = [0usize; 4]; // acknowledged writes, unknown writes, lin reads, local reads
    for tag in 0..TAGS {
        let ops: Vec<&Recorded> = history.iter().filter(|o| o.tag == tag).collect();
        let mut checked: Vec<Op<String>> = Vec::new();
        let mut local = Vec::new();
        let mut via = Vec::new();
        for o in &ops {
            let kind = match &o.what {
                What::Write(d) => {
                    totals[o.ret.is_none() as usize] += 1;
                    Kind::Write(d.clone())
                }
                What::Read {
                    linearizable: true,
                    value,
                } => {
                    totals[2] += 1;
                    Kind::Read(value.clone())
                }
                What::Read {
                    linearizable: false,
                    value,
                } => {
                    totals[3] += 1;
                    local.push(LocalRead {
                        node: o.node,
                        call: o.call,
                        ret: o.ret.unwrap(),
                        value: value.clone(),
                    });
                    continue;
                }
            };
            checked.push(Op {
                call: o.call,
                ret: o.ret,
                kind,
            });
            via.push(o.node);
        }
        if let Err(why) = linearizable::check(&checked) {
            panic!("tag t{tag}: {why}; the history is in {}", keep(tag, &ops));
        }
        let writes: Vec<Write<'_, String>> = checked
            .iter()
            .zip(&via)
            .filter(|(op, _)| matches!(op.kind, Kind::Write(_)))
            .map(|(op, &node)| Write { node, op })
            .collect();
        if let Err(why) = linearizable::check_local_reads(&writes, &local) {
            panic!("tag t{tag}: {why}; the history is in {}", keep(tag, &ops));
        }
    }
    eprintln!(
        "linearizability: {} operations on {TAGS} tags checked ({} writes acknowledged, {} with an unknown outcome, {} read-index reads, {} local reads); faults: {injected:?}",
        history.len(),
        totals[0],
        totals[1],
        totals[2],
        totals[3]
    );
    // A history too thin to say anything fails rather than passes.
    assert!(
        totals[0] >= 100 && totals[2] >= 50 && totals[3] >= 50,
        "too few operations to check: {totals:?}"
    );
    let seen_values = history
        .iter()
        .filter(|o| {
            matches!(
                &o.what,
                What::Read {
                    linearizable: true,
                    value: Some(_)
                }
            )
        })
        .count();
    assert!(seen_values > 0, "no read-index read saw a write");
    assert_eq!(injected.len(), faults.len());
}

/// One client: a loop of random operations on random tags through one node, each recorded
/// with its call and return times, until `stop`.
struct Client {
    node: u64,
    base: String,
    id: u64,
    start: Instant,
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<Vec<Recorded>>>,
    unexpected: Arc<Mutex<Vec<String>>>,
}

impl Client {
    fn run(self, manifest: impl Fn(&str) -> Vec<u8>) {
        let Client {
            node,
            base,
            id: client_id,
            start,
            stop,
            history,
            unexpected,
        } = self;
        let http = Http::builder()
            .timeout(Duration::from_secs(4))
            .build()
            .unwrap();
        let auth = basic("admin", ADMIN_PASSWORD);
        let mut rng = client_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut seq = 0u64;
        let now = || start.elapsed().as_nanos() as u64;
        while !stop.load(Ordering::Relaxed) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let tag = (rng % TAGS as u64) as usize;
            let url = format!("{base}/v2/{REPO}/manifests/t{tag}");
            let roll = (rng >> 8) % 10;
            let call = now();
            let (sent, what) = if roll < 4 {
                seq += 1;
                let body = manifest(&format!("c{client_id}-{seq}"));
                let digest = shoal_tests::sha256(&body);
                let r = http
                    .put(&url)
                    .header("Authorization", &auth)
                    .header("Content-Type", OCI_MANIFEST)
                    .body(body)
                    .send();
                (r, What::Write(digest))
            } else {
                let linearizable = roll >= 7;
                let mut get = http
                    .get(&url)
                    .header("Authorization", &auth)
                    .header("Accept", OCI_MANIFEST);
                if linearizable {
                    get = get.header("Shoal-Consistency", "linearizable");
                }
                (
                    get.send(),
                    What::Read {
                        linearizable,
                        value: None,
                    },
                )
            };
            let ret = now();
            let status = match &sent {
                Ok(r) => Some(r.status().as_u16()),
                Err(e) if e.is_connect() => {
                    // The node is down: nothing was sent, nothing happened.
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                Err(_) => None,
            };
            let record = |ret, what| Recorded {
                node,
                tag,
                call,
                ret,
                what,
            };
            let op = match (what, status) {
                (What::Write(d), Some(201)) => record(Some(ret), What::Write(d)),
                (What::Write(d), Some(s)) if s >= 500 => record(None, What::Write(d)),
                (What::Write(d), None) => record(None, What::Write(d)),
                (What::Read { linearizable, .. }, Some(200)) => {
                    let value = sent
                        .unwrap()
                        .headers()
                        .get("docker-content-digest")
                        .map(|v| v.to_str().unwrap().to_string());
                    record(
                        Some(ret),
                        What::Read {
                            linearizable,
                            value,
                        },
                    )
                }
                (What::Read { linearizable, .. }, Some(404)) => record(
                    Some(ret),
                    What::Read {
                        linearizable,
                        value: None,
                    },
                ),
                (What::Read { .. }, None) => continue,
                (What::Read { .. }, Some(s)) if s >= 500 => continue,
                (what, status) => {
                    let body = sent.map(|r| r.text().unwrap_or_default());
                    unexpected
                        .lock()
                        .unwrap()
                        .push(format!("{what:?} on node {node}: {status:?} {body:?}"));
                    continue;
                }
            };
            history.lock().unwrap().push(op);
        }
    }
}

/// Writes a failed tag's history where it outlives the test's directory; returns the path.
fn keep(tag: usize, ops: &[&Recorded]) -> String {
    let path = std::env::temp_dir().join(format!(
        "shoal-linearizability-{}-t{tag}.txt",
        std::process::id()
    ));
    let text: String = ops.iter().map(|o| format!("{o:?}\n")).collect();
    std::fs::write(&path, text).expect("write the history");
    path.display().to_string()
}
