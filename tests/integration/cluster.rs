//! A region of several real `shoal` processes on loopback sharing one origin service: writes
//! through any node (forwarded to the leader), reads from any replica, learners past the
//! voter count, a leader killed with `kill -9`, runtime removal, no quorum, whole-region
//! restart, and a node without a certificate from the cluster CA.

use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_tests::oci::{noise, write_layout, OCI_MANIFEST};
use shoal_tests::region::{Region, SECRET};
use shoal_tests::{
    admin_creds, error_code, require_tool, run_tool, shoal_bin, skopeo_copy, tempdir, Node,
    Registry,
};

fn voters(s: &Value) -> Vec<u64> {
    let ms = s["members"].as_array().cloned().unwrap_or_default();
    ms.iter()
        .filter(|m| m["voter"] == true)
        .filter_map(|m| m["id"].as_u64())
        .collect()
}

#[test]
fn writes_through_any_node_and_reads_from_every_replica() {
    let dir = tempdir();
    let region = Region::start(dir.path(), 4, 3);
    let status = region.wait_members(4);
    assert_eq!(
        voters(&status).len(),
        3,
        "the fourth node stays a learner: {status:#}"
    );
    let leader = region.leader();
    let learner = (1..=4).find(|id| !voters(&status).contains(id)).unwrap();
    let follower = (1..=4).find(|id| *id != leader && *id != learner).unwrap();

    // A namespace created through the learner, an image pushed through a follower.
    let (ok, out, err) = region.node(learner).cli(&["namespace", "create", "acme"]);
    assert!(ok, "{out}{err}");
    let reg = region.node(follower).registry();
    let (digest, bytes) = reg.push_image("acme/app", "v1", b"replicated layer");
    // Read-your-writes on the node that took the write, then every replica converges.
    assert_eq!(
        reg.get("/v2/acme/app/manifests/v1")
            .bytes()
            .unwrap()
            .as_ref(),
        &bytes[..]
    );
    for (id, node) in region.running() {
        let r = wait_ok(&node.registry(), "/v2/acme/app/manifests/v1");
        assert_eq!(r, bytes, "node {id} serves the manifest");
        let layer = shoal_tests::sha256(b"replicated layer");
        let r = node.registry().get(&format!("/v2/acme/app/blobs/{layer}"));
        assert_eq!(
            r.status(),
            200,
            "node {id} serves the blob from the shared origin"
        );
    }
    assert_eq!(
        region
            .node(leader)
            .registry()
            .get(&format!("/v2/acme/app/manifests/{digest}"))
            .status(),
        200
    );

    if require_tool("skopeo") {
        let src = dir.path().join("src");
        let layout_digest = write_layout(
            &src,
            "v1",
            &[
                vec![("a.txt", b"through two nodes\n".to_vec())],
                vec![("b.bin", noise(41, 500_000))],
            ],
        );
        let push = format!("docker://{}/acme/sk:v1", region.node(learner).addr);
        let pull = format!("docker://{}/acme/sk:v1", region.node(leader).addr);
        let (ok, out) = skopeo_copy(&format!("oci:{}:v1", src.display()), &push);
        assert!(ok, "skopeo push through the learner: {out}");
        let (ok, out) = run_tool(
            "skopeo",
            &[
                "inspect",
                "--creds",
                &admin_creds(),
                "--tls-verify=false",
                &pull,
            ],
            &[],
        );
        assert!(ok, "skopeo inspect through the leader: {out}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["Digest"], Value::String(layout_digest));
    }
    let (ok, out, _) = region.node(follower).cli(&["cluster", "status"]);
    assert!(
        ok && out.contains("learner") && out.contains("leader"),
        "{out}"
    );
}

/// Polls `path` until it answers 200 (replication lag), for at most 10 s.
fn wait_ok(reg: &Registry, path: &str) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = reg.get(path);
        if r.status() == 200 {
            return r.bytes().unwrap().to_vec();
        }
        assert!(Instant::now() < deadline, "{path} never became readable");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn leader_killed_then_a_new_leader_takes_writes() {
    let dir = tempdir();
    let mut region = Region::start(dir.path(), 3, 3);
    let leader = region.leader();
    let survivor = (1..=3).find(|id| *id != leader).unwrap();
    region.node(survivor).registry().create_namespace("acme");
    let mut acknowledged = Vec::new();
    for i in 0..5 {
        let id = (i % 3) + 1;
        let reg = region.node(id).registry();
        let (_, bytes) = reg.push_image(
            "acme/k",
            &format!("before-{i}"),
            format!("layer {i}").as_bytes(),
        );
        acknowledged.push((format!("before-{i}"), bytes));
    }
    let killed_at = Instant::now();
    region.kill(leader);
    let new_leader = region.wait_for(
        |s| s["leader"].is_u64() && s["leader"] != leader && s["leader"] == s["node_id"],
        "a new leader is elected",
    )["node_id"]
        .as_u64()
        .unwrap();
    let reg = region.node(survivor).registry();
    let first_write = loop {
        let r = reg.put_manifest("acme/k", "after", OCI_MANIFEST, &acknowledged[0].1);
        if r.status() == 201 {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "writes never resumed: {}",
            r.status()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("leader {leader} killed; node {new_leader} leads; first write after {first_write:?}");
    for (id, node) in region.running() {
        for (tag, bytes) in &acknowledged {
            let got = wait_ok(&node.registry(), &format!("/v2/acme/k/manifests/{tag}"));
            assert_eq!(&got, bytes, "node {id} lost acknowledged tag {tag}");
        }
    }
}

#[test]
fn without_quorum_writes_fail_fast_and_reads_go_on() {
    let dir = tempdir();
    let mut region = Region::start(dir.path(), 3, 3);
    region.node(1).registry().create_namespace("acme");
    let (_, bytes) = region
        .node(1)
        .registry()
        .push_image("acme/q", "v1", b"quorum layer");
    let leader = region.leader();
    let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    region.kill(others[0]);
    region.kill(others[1]);
    let reg = region.node(leader).registry();
    let started = Instant::now();
    let r = reg.put_manifest("acme/q", "v2", OCI_MANIFEST, &bytes);
    let took = started.elapsed();
    assert_eq!(error_code(r), (503, "UNAVAILABLE".into()));
    // Generous bound: it guards against hanging, it is not a latency target.
    assert!(
        took < Duration::from_secs(20),
        "a write without quorum hung for {took:?}"
    );
    assert_eq!(
        reg.get("/v2/acme/q/manifests/v1").status(),
        200,
        "reads keep working"
    );
}

#[test]
fn members_are_removed_at_runtime_including_the_leader() {
    let dir = tempdir();
    let region = Region::start(dir.path(), 4, 3);
    region.wait_members(4);
    let (ok, out, err) = region.node(2).cli(&["cluster", "remove-node", "4"]);
    assert!(ok, "{out}{err}");
    region.wait_for(
        |s| s["members"].as_array().is_some_and(|m| m.len() == 3),
        "node 4 is gone",
    );
    // The removed node tells load balancers to stop sending it clients, and says why.
    let removed = region.node(4).url.clone();
    let deadline = Instant::now() + Duration::from_secs(15);
    let reason = loop {
        let r = reqwest::blocking::get(format!("{removed}/readyz")).unwrap();
        if r.status().as_u16() == 503 {
            let body: serde_json::Value = r.json().unwrap();
            break body["reason"].as_str().unwrap_or_default().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "a removed node still says it is ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(reason.contains("removed from the region"), "{reason}");
    // Node 4 was a learner, never told of its removal: it asks the others, and then stops
    // answering from its replica, which would only grow staler.
    while error_code(reqwest::blocking::get(format!("{removed}/v2/")).unwrap()).0 != 503 {
        assert!(
            Instant::now() < deadline,
            "a removed node still serves its replica"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = reqwest::blocking::get(format!("{removed}/v2/_catalog")).unwrap();
    let body = r.text().unwrap();
    assert!(
        body.contains("UNAVAILABLE") && body.contains("node 4 was removed from the region"),
        "{body}"
    );
    let log = region.node(4).wait_for_log("no longer a member");
    assert!(log.contains("no longer a member"), "{log}");
    assert_eq!(region.readyz(1).0, 200, "members stay ready");
    let leader = region.leader();
    let other = (1..=3).find(|id| *id != leader).unwrap();
    // Writes keep flowing through another node while the leader leaves: with a handover
    // they wait for the successor instead of failing while the region has no leader.
    let reg = region.node(other).registry();
    reg.create_namespace("during");
    let (_, manifest) = reg.push_image("during/r", "v0", b"handover layer");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, url) = (stop.clone(), region.api_url(other));
        std::thread::spawn(move || {
            let reg = Registry::new(&url);
            let mut results = Vec::new();
            for i in 0.. {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let started = Instant::now();
                let r = reg.put_manifest("during/r", &format!("t{i}"), OCI_MANIFEST, &manifest);
                results.push((r.status().as_u16(), started.elapsed()));
            }
            results
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let (ok, out, err) = region
        .node(other)
        .cli(&["cluster", "remove-node", &leader.to_string()]);
    assert!(ok, "removing the leader: {out}{err}");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let results = writer.join().unwrap();
    let slowest = results.iter().map(|(_, d)| *d).max().unwrap();
    eprintln!(
        "{} writes during the leader's removal, slowest {slowest:?}",
        results.len()
    );
    assert!(
        results.iter().all(|(status, _)| *status == 201),
        "every write during a handover succeeds: {:?}",
        results
            .iter()
            .filter(|(s, _)| *s != 201)
            .collect::<Vec<_>>()
    );
    region
        .node(leader)
        .wait_for_log("handed leadership over to node");
    let s = region.wait_for(
        |s| {
            s["leader"].is_u64()
                && s["leader"] != leader
                && s["leader"] == s["node_id"]
                && s["members"].as_array().is_some_and(|m| m.len() == 2)
        },
        "the old leader is out and another leads",
    );
    assert!(!voters(&s).contains(&leader));
    let reg = region.node(other).registry();
    reg.create_namespace("after-removal");
}

#[test]
fn whole_region_restart_loses_nothing() {
    let dir = tempdir();
    let mut region = Region::start(dir.path(), 3, 3);
    region.node(2).registry().create_namespace("acme");
    let (digest, bytes) = region
        .node(3)
        .registry()
        .push_image("acme/r", "v1", b"restart layer");
    for id in 1..=3 {
        if let Some(node) = region.nodes[id - 1].take() {
            assert!(node.stop().success());
        }
    }
    // Alone, a restarted member has no quorum and has heard from no leader since it
    // started: it is not ready, not even in the first seconds (it used to answer 200 until
    // the leader it remembered had been silent for 3 s).
    region.start_node(2);
    let alone = Instant::now();
    while alone.elapsed() < Duration::from_secs(4) {
        let (status, body) = region.readyz(2);
        assert_eq!(status, 503, "{body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    for id in [1, 3] {
        region.start_node(id);
    }
    region.leader();
    region.wait_ready();
    for (id, node) in region.running() {
        let got = wait_ok(&node.registry(), "/v2/acme/r/manifests/v1");
        assert_eq!(got, bytes, "node {id} after the restart");
        assert_eq!(
            node.registry()
                .get(&format!("/v2/acme/r/manifests/{digest}"))
                .status(),
            200
        );
    }
    let r = region
        .node(1)
        .registry()
        .put_manifest("acme/r", "v2", OCI_MANIFEST, &bytes);
    assert_eq!(r.status(), 201, "writes work after the restart");
}

#[test]
fn a_node_without_a_cluster_certificate_cannot_join() {
    let dir = tempdir();
    let region = Region::start(dir.path(), 1, 3);
    let rogue_ca = dir.path().join("rogue-ca");
    for args in [
        vec!["cluster", "init", "--dir", rogue_ca.to_str().unwrap()],
        vec![
            "cluster",
            "cert",
            "--dir",
            rogue_ca.to_str().unwrap(),
            "--node-id",
            "9",
        ],
    ] {
        let out = std::process::Command::new(shoal_bin())
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let tls = rogue_ca.join("node-9");
    let rogue = Node::start_env(
        &dir.path().join("rogue"),
        &[
            "--node-id",
            "9",
            "--cluster-listen",
            "127.0.0.1:0",
            "--cluster-tls",
            tls.to_str().unwrap(),
            "--origin",
            &region.origin.url,
            "--join",
            &region.api_url(1),
        ],
        &[("SHOAL_ORIGIN_SECRET", SECRET)],
    );
    let log = rogue.wait_for_log("joining the region failed");
    assert!(log.contains("joining the region failed"), "{log}");
    let s = region.status(1);
    assert_eq!(
        s["members"].as_array().unwrap().len(),
        1,
        "the rogue is not a member: {s:#}"
    );
    let leader_log = region
        .node(1)
        .wait_for_log("refused a cluster-plane connection");
    assert!(leader_log.contains("refused a cluster-plane connection"));
}

/// Upload sessions live in the origin: when the node that took the POST dies mid-upload,
/// the client finishes the same upload through another node.
#[test]
fn an_upload_survives_the_death_of_the_node_that_started_it() {
    let dir = tempdir();
    let mut region = Region::start(dir.path(), 3, 3);
    region.node(1).registry().create_namespace("acme");
    let data = noise(51, 2_500_000);
    let digest = shoal_tests::sha256(&data);
    let a = region.node(2).registry();
    let r = a
        .http
        .post(a.url("/v2/acme/up/blobs/uploads/"))
        .send()
        .unwrap();
    let loc = r.headers()["Location"].to_str().unwrap().to_string();
    let r = a
        .http
        .patch(a.url(&loc))
        .header("Content-Range", "0-999999")
        .body(data[..1_000_000].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    region.kill(2);
    let b = region.node(3).registry();
    let r = b.http.get(b.url(&loc)).send().unwrap();
    assert_eq!(
        r.headers()["Range"],
        "0-999999",
        "the session outlived node 2"
    );
    let r = b
        .http
        .put(b.url(&format!("{loc}?digest={digest}")))
        .body(data[1_000_000..].to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text());
    let got = wait_ok(
        &region.node(1).registry(),
        &format!("/v2/acme/up/blobs/{digest}"),
    );
    assert_eq!(got, data);
}

/// A node joining after the log was purged behind a snapshot catches up from the snapshot
/// plus the log that follows it.
#[test]
fn a_late_joiner_catches_up_from_a_snapshot() {
    let dir = tempdir();
    let mut region = Region::prepare(dir.path(), 3, 3, &["--snapshot-every", "10"]);
    region.start_node(1);
    region.start_node(2);
    region.wait_members(2);
    let reg = region.node(1).registry();
    for i in 0..40 {
        reg.create_namespace(&format!("ns{i:02}"));
    }
    region.start_node(3);
    region.wait_members(3);
    let three = region.node(3).registry();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v: Value = three.get("/api/v1/namespaces").json().unwrap();
        if v["namespaces"].as_array().is_some_and(|a| a.len() == 40) {
            break;
        }
        assert!(Instant::now() < deadline, "node 3 never caught up: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The state machine logs this line only when it installs a snapshot sent by the leader.
    let log = region
        .node(3)
        .wait_for_log("installed a snapshot from the leader");
    assert!(
        log.contains("installed a snapshot from the leader"),
        "node 3 caught up without a snapshot:\n{log}"
    );
}

/// Pushes keep flowing through every node while the leader is killed: every push that was
/// acknowledged is readable from every survivor afterwards.
#[test]
fn acknowledged_pushes_survive_a_leader_kill_mid_stream() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let dir = tempdir();
    let mut region = Region::start(dir.path(), 3, 3);
    region.node(1).registry().create_namespace("acme");
    let (_, manifest) = region
        .node(1)
        .registry()
        .push_image("acme/s", "base", b"stream layer");
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let pushers: Vec<_> = (1..=3u64)
        .map(|id| {
            let url = region.api_url(id);
            let (stop, acked, manifest) = (stop.clone(), acked.clone(), manifest.clone());
            std::thread::spawn(move || {
                let reg = Registry::new(&url);
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let tag = format!("n{id}-{i}");
                    i += 1;
                    let r = reg
                        .http
                        .put(reg.url(&format!("/v2/acme/s/manifests/{tag}")))
                        .header("Content-Type", OCI_MANIFEST)
                        .body(manifest.clone())
                        .timeout(Duration::from_secs(15))
                        .send();
                    if r.is_ok_and(|r| r.status() == 201) {
                        acked.lock().unwrap().push(tag);
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let leader = region.leader();
    let before = acked.lock().unwrap().len();
    region.kill(leader);
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::SeqCst);
    for p in pushers {
        p.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > before,
        "writes resumed after the kill ({before} before, {} in all)",
        acked.len()
    );
    for (id, node) in region.running() {
        let reg = node.registry();
        for tag in &acked {
            let got = wait_ok(&reg, &format!("/v2/acme/s/manifests/{tag}"));
            assert_eq!(got, manifest, "node {id} lost acknowledged tag {tag}");
        }
    }
}

/// Guards the read-index behind the namespace check: a namespace created through one node
/// can be pushed to through another at once, before that node's replica has caught up.
#[test]
fn a_namespace_created_through_one_node_is_usable_through_another_at_once() {
    let dir = tempdir();
    let region = Region::start(dir.path(), 3, 3);
    for i in 0..20u64 {
        let ns = format!("fresh{i}");
        region.node(1 + i % 3).registry().create_namespace(&ns);
        region
            .node(1 + (i + 1) % 3)
            .registry()
            .push_blob(&format!("{ns}/x"), b"right away");
    }
}

/// A member restarted at new addresses (a pod rescheduled with a new IP) joins again and
/// the region records them: the status names its new API, and writes reach it there.
#[test]
fn a_member_restarted_at_new_addresses_is_found_there() {
    let dir = tempdir();
    let mut region = Region::start(dir.path(), 3, 3);
    region.kill(3);
    region.move_node(3);
    region.start_node(3);
    let new_api = region.api_url(3);
    region.wait_for(
        |s| {
            s["members"].as_array().is_some_and(|ms| {
                ms.iter()
                    .any(|m| m["id"] == 3 && m["api"].as_str() == Some(new_api.as_str()))
            })
        },
        "node 3's new addresses are recorded",
    );
    region.node(1).registry().create_namespace("moved");
    let moved = region.node(3).registry();
    let deadline = Instant::now() + Duration::from_secs(20);
    while moved.get("/api/v1/namespaces/moved").status() != 200 {
        assert!(
            Instant::now() < deadline,
            "a write did not reach the moved node"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::blocking::get(format!("{new_api}/readyz"))
        .unwrap()
        .status()
        != 200
    {
        assert!(
            Instant::now() < deadline,
            "the moved node never became ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Guards "removing a voter promotes a learner" and the replacement of a dead voter: a region
/// of five with three voters loses a voter to removal, one to `kill -9` and then another, and
/// takes writes at the end with two of its three voters.
#[test]
fn the_region_keeps_its_voters_when_they_leave_or_die() {
    let dir = tempdir();
    let mut region = Region::start_with(dir.path(), 5, 3, &["--replace-dead-voter-after", "2s"]);
    region.wait_members(5);
    let leader = region.leader();
    let others: Vec<u64> = voters(&region.status(leader))
        .into_iter()
        .filter(|v| *v != leader)
        .collect();
    assert_eq!(others.len(), 2, "three voters");
    let member = |s: &Value, id: u64| {
        s["members"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["id"] == id))
    };

    // Removed: a learner takes its place at once.
    let removed = others[0];
    region
        .node(leader)
        .cli_ok(&["cluster", "remove-node", &removed.to_string()]);
    region.wait_for(
        |s| !member(s, removed) && voters(s).len() == 3,
        "a learner replaces the removed voter",
    );

    // Killed: after two seconds of silence the other learner replaces it, and it stays a
    // learner (it may come back).
    let dead = others[1];
    region.kill(dead);
    let s = region.wait_for(
        |s| s["leader"] == s["node_id"] && voters(s).len() == 3 && !voters(s).contains(&dead),
        "a learner replaces the dead voter",
    );
    assert!(member(&s, dead), "the dead voter stays a learner: {s:#}");
    region
        .node(leader)
        .wait_for_log("replaced a voter not heard from with a learner");

    // One more voter dies: two of three are left, and writes go on.
    let next = voters(&s).into_iter().find(|v| *v != leader).unwrap();
    region.kill(next);
    region
        .node(leader)
        .registry()
        .create_namespace("still-writable");
}
