//! A region in Docker containers, brought up by the deploy kit (`deploy/region-up.sh`, the
//! compose file): a partitioned node cannot commit but keeps serving reads and converges
//! after healing; `docker kill` of the leader; `docker pause` of a follower.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_tests::oci::OCI_MANIFEST;
use shoal_tests::{bin, error_code, require_docker, require_tool, tempdir, Registry};

struct Compose {
    project: String,
    file: PathBuf,
    env: Vec<(String, String)>,
}

impl Compose {
    fn run(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("docker-compose")
            .args(["-p", &self.project, "-f", self.file.to_str().unwrap()])
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn container(&self, service: &str) -> String {
        format!("{}_{service}_1", self.project)
    }

    fn url(&self, service: &str) -> String {
        let (ok, out) = self.run(&["port", service, "5000"]);
        assert!(ok, "compose port {service}: {out}");
        format!("http://{}", out.trim())
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        let _ = self.run(&["down", "-v", "--timeout", "2"]);
    }
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn status(url: &str) -> Value {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap()
        .get(format!("{url}/api/v1/cluster"))
        .basic_auth("admin", Some(shoal_tests::ADMIN_PASSWORD))
        .send()
        .and_then(|r| r.json())
        .unwrap_or(Value::Null)
}

fn wait(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

#[test]
fn docker_region_partition_kill_and_pause() {
    if !require_docker() || !require_tool("docker-compose") {
        return;
    }
    let dir = tempdir();
    let bins = bin("shoal").parent().unwrap().to_path_buf();
    let project = format!("shoaltest{}", std::process::id());
    let secret = "docker-region-secret-0123456789";
    std::fs::create_dir_all(dir.path().join("region")).unwrap();
    std::fs::write(dir.path().join("region/secret"), secret).unwrap();
    let env = vec![
        (
            "SHOAL_REGION_DIR".to_string(),
            dir.path().join("region").display().to_string(),
        ),
        ("SHOAL_PROJECT".to_string(), project.clone()),
        (
            "SHOAL_CA_DIR".to_string(),
            dir.path().join("region/ca").display().to_string(),
        ),
        ("SHOAL_ORIGIN_SECRET".to_string(), secret.to_string()),
        (
            "SHOAL_ADMIN_PASSWORD".to_string(),
            shoal_tests::ADMIN_PASSWORD.to_string(),
        ),
        ("SHOAL_IMAGE".to_string(), format!("shoal:{project}")),
    ];
    let image = Command::new(deploy_dir().join("build-image.sh"))
        .arg(&bins)
        .arg(format!("shoal:{project}"))
        .output()
        .unwrap();
    assert!(
        image.status.success(),
        "build image: {}",
        String::from_utf8_lossy(&image.stderr)
    );
    let compose = Compose {
        project: project.clone(),
        file: deploy_dir().join("docker-compose.yml"),
        env: env.clone(),
    };
    let up = Command::new(deploy_dir().join("region-up.sh"))
        .arg(&bins)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "region-up: {}{}",
        String::from_utf8_lossy(&up.stdout),
        String::from_utf8_lossy(&up.stderr)
    );

    let urls: Vec<String> = ["node1", "node2", "node3"]
        .iter()
        .map(|s| compose.url(s))
        .collect();
    wait("three voters", || {
        let s = status(&urls[0]);
        s["members"]
            .as_array()
            .is_some_and(|m| m.len() == 3 && m.iter().all(|m| m["voter"] == true))
    });
    let leader = status(&urls[0])["leader"].as_u64().unwrap() as usize;
    let reg = |i: usize| Registry::new(&urls[i - 1]);
    reg(leader).create_namespace("acme");
    let (_, v1) = reg(leader).push_image("acme/part", "v1", b"docker layer");

    // Partition a follower off the plane: it cannot commit, but still serves reads.
    let cut = (1..=3).find(|i| *i != leader).unwrap();
    let plane = format!("{project}_plane");
    docker(&[
        "network",
        "disconnect",
        &plane,
        &compose.container(&format!("node{cut}")),
    ]);
    let r = reg(cut).put_manifest("acme/part", "minority", OCI_MANIFEST, &v1);
    assert_eq!(
        error_code(r),
        (503, "UNAVAILABLE".into()),
        "the cut-off node must not commit"
    );
    assert_eq!(
        reg(cut).get("/v2/acme/part/manifests/v1").status(),
        200,
        "reads go on"
    );
    assert_eq!(
        reg(leader)
            .put_manifest("acme/part", "majority", OCI_MANIFEST, &v1)
            .status(),
        201
    );
    // Heal: the node rejoins the plane under its alias and catches up.
    docker(&[
        "network",
        "connect",
        "--alias",
        &format!("p{cut}"),
        &plane,
        &compose.container(&format!("node{cut}")),
    ]);
    wait("the healed node serves the majority's write", || {
        reg(cut).get("/v2/acme/part/manifests/majority").status() == 200
    });
    assert_eq!(
        reg(cut).get("/v2/acme/part/manifests/minority").status(),
        404
    );

    // Pause a follower: the other two still commit; unpaused, it catches up. The healed
    // node's higher term may have forced an election, so ask again who leads, and give the
    // write a bounded wait: a write during an election is rightly answered 503.
    let mut leader = 0;
    wait("the region knows its leader again", || {
        leader = status(&urls[cut - 1])["leader"].as_u64().unwrap_or(0) as usize;
        leader != 0
    });
    let paused = (1..=3).find(|i| *i != leader && *i != cut).unwrap();
    docker(&["pause", &compose.container(&format!("node{paused}"))]);
    wait("the two unpaused nodes commit a write", || {
        reg(leader)
            .put_manifest("acme/part", "while-paused", OCI_MANIFEST, &v1)
            .status()
            == 201
    });
    docker(&["unpause", &compose.container(&format!("node{paused}"))]);
    wait("the unpaused node catches up", || {
        reg(paused)
            .get("/v2/acme/part/manifests/while-paused")
            .status()
            == 200
    });

    // Kill the leader: the survivors elect another and writes resume.
    docker(&["kill", &compose.container(&format!("node{leader}"))]);
    let survivor = (1..=3).find(|i| *i != leader).unwrap();
    wait("writes resume after the leader is killed", || {
        reg(survivor)
            .put_manifest("acme/part", "after-kill", OCI_MANIFEST, &v1)
            .status()
            == 201
    });
    for i in (1..=3).filter(|i| *i != leader) {
        wait("survivors serve every acknowledged tag", || {
            ["v1", "majority", "while-paused", "after-kill"]
                .iter()
                .all(|t| reg(i).get(&format!("/v2/acme/part/manifests/{t}")).status() == 200)
        });
    }
    docker(&["rmi", "-f", &format!("shoal:{project}")]);
}
