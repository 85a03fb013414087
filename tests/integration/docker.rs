//! The Docker engine against a real node: `docker login` with a generated credential, build
//! an image FROM scratch, push it, remove it, pull it back and check the digest; pushing into
//! a missing namespace shows our message; a pull-only credential pulls but is denied a push.

use shoal_tests::{node_with_namespace, require_docker, run_tool};

fn docker(args: &[&str]) -> (bool, String) {
    // The legacy builder: buildx is not installed on this kind of machine.
    run_tool("docker", args, &[("DOCKER_BUILDKIT", "0")])
}

#[test]
fn docker_build_push_rmi_pull_inspect() {
    if !require_docker() {
        return;
    }
    let (dir, node) = node_with_namespace("acme");
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("hello.txt"), "hello from shoal\n").unwrap();
    std::fs::write(ctx.join("note.txt"), "second file\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY hello.txt /\nCOPY note.txt /\nCMD [\"/hello\"]\n",
    )
    .unwrap();
    let image = format!("{}/acme/hello:v1", node.addr);
    let (_, login, password) = node.credential(&["--name", "ci", "--scope", "containerRegistry"]);
    let (ok, out) = docker(&["login", &node.addr, "-u", &login, "-p", &password]);
    assert!(ok, "docker login: {out}\nnode log:\n{}", node.log_text());
    let (ok, out) = docker(&["build", "-q", "-t", &image, ctx.to_str().unwrap()]);
    assert!(ok, "docker build: {out}");

    let (ok, out) = docker(&["push", &image]);
    assert!(ok, "docker push: {out}\nnode log:\n{}", node.log_text());
    let pushed = out
        .lines()
        .find_map(|l| l.strip_prefix("v1: digest: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest in push output: {out}"))
        .to_string();
    let r = node.registry().get("/v2/acme/hello/manifests/v1");
    assert_eq!(
        r.headers()["Docker-Content-Digest"].to_str().unwrap(),
        pushed
    );

    let (ok, out) = docker(&["rmi", &image]);
    assert!(ok, "docker rmi: {out}");
    let (ok, out) = docker(&["pull", &image]);
    assert!(ok, "docker pull: {out}");
    let (ok, out) = docker(&[
        "image",
        "inspect",
        "--format",
        "{{index .RepoDigests 0}}",
        &image,
    ]);
    assert!(ok, "docker inspect: {out}");
    assert_eq!(out.trim(), format!("{}/acme/hello@{pushed}", node.addr));
    let (ok, cid) = docker(&["create", &image]);
    assert!(ok, "docker create: {cid}");
    let cid = cid.trim().to_string();
    let (ok, out) = run_tool(
        "sh",
        &["-c", &format!("docker cp {cid}:/hello.txt - | tar -xO")],
        &[],
    );
    assert!(ok);
    assert_eq!(out, "hello from shoal\n");
    docker(&["rm", &cid]);

    let elsewhere = format!("{}/nosuchns/x:v1", node.addr);
    docker(&["tag", &image, &elsewhere]);
    let (ok, out) = docker(&["push", &elsewhere]);
    assert!(!ok, "push into a missing namespace must fail");
    assert!(out.contains("shoal namespace create nosuchns"), "{out}");

    let (_, login, password) =
        node.credential(&["--name", "deploy", "--scope", "containerRegistry:pull"]);
    let (ok, out) = docker(&["login", &node.addr, "-u", &login, "-p", &password]);
    assert!(ok, "docker login (pull-only): {out}");
    docker(&["rmi", &image]);
    let (ok, out) = docker(&["pull", &image]);
    assert!(ok, "pull with a pull-only credential: {out}");
    let other = format!("{}/acme/hello:v2", node.addr);
    docker(&["tag", &image, &other]);
    let (ok, out) = docker(&["push", &other]);
    assert!(!ok, "a pull-only credential must not push: {out}");
    assert!(out.contains("denied"), "{out}");
    assert_eq!(
        node.registry().get("/v2/acme/hello/manifests/v2").status(),
        404
    );
    docker(&["logout", &node.addr]);
    docker(&["rmi", &image, &elsewhere, &other]);
}
