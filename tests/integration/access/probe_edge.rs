//! Regressions from the outside probe (issue 19), at the edge: the failed sign-in limit under
//! parallel guesses, anonymous tokens and the anonymous limit, token realms, slow headers,
//! connections per address.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use shoal_tests::{basic, error_code, tempdir, Node, Registry};

/// Regression: 100 parallel wrong passwords for one login were all checked (the limit
/// counted a failure only after its check); one by one the 31st got 429. An attempt is
/// counted before its check now, so at most the limit run however they arrive.
#[test]
fn parallel_guesses_check_at_most_the_limit() {
    let dir = tempdir();
    let node = Node::start_with(&dir.path().join("node"), &["--failed-login-limit", "5/1m"]);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let guesses: Vec<_> = (0..100)
            .map(|i| {
                let url = node.url.clone();
                s.spawn(move || {
                    let r = Registry::with_auth(&url, Some(&basic("admin", &format!("guess-{i}"))));
                    r.get("/v2/").status().as_u16()
                })
            })
            .collect();
        guesses.into_iter().map(|g| g.join().unwrap()).collect()
    });
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(checked + limited, 100, "{statuses:?}");
    assert_eq!(checked, 5, "wrong passwords checked: {statuses:?}");
}

/// Regression: an anonymous bearer token from `/auth/token` made requests count as signed
/// in, past the anonymous rate limit. A token that names no principal counts as anonymous,
/// and so does one that does not verify.
#[test]
fn anonymous_tokens_meet_the_anonymous_limit() {
    let dir = tempdir();
    let node = Node::start_with(
        &dir.path().join("node"),
        &["--anonymous-rate-limit", "4/1m"],
    );
    let admin = node.registry();
    let (ok, _, err) = node.cli(&["namespace", "create", "pub", "--public"]);
    assert!(ok, "{err}");
    admin.push_image("pub/app", "v1", b"layer");
    let token = super::token_for(&node, None, "repository:pub/app:pull");
    let anon = Registry::with_auth(&node.url, Some(&format!("Bearer {token}")));
    let statuses: Vec<u16> = (0..5)
        .map(|_| anon.get("/v2/pub/app/manifests/v1").status().as_u16())
        .collect();
    // The token request itself counted once.
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let forged = Registry::with_auth(&node.url, Some("Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln"));
    assert_eq!(error_code(forged.get("/v2/pub/app/manifests/v1")).0, 429);
    // Signed-in callers are not limited.
    assert_eq!(admin.get("/v2/pub/app/manifests/v1").status(), 200);
}

/// The realm of a 401's challenge.
fn realm(r: reqwest::blocking::Response) -> String {
    let v = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    v.split("realm=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string()
}

/// Regression: the realm was built from the request's `Host` header, so a client could make
/// the registry advertise `http://evil.example/auth/token`. It comes from `--public-url` (or
/// the node's own address), or from a trusted proxy's headers only.
#[test]
fn token_realms_never_follow_the_host_header() {
    let dir = tempdir();
    let node = Node::start(&dir.path().join("node"));
    let evil = |node: &Node| {
        let r = reqwest::blocking::Client::new()
            .get(format!("{}/v2/", node.url))
            .header("Host", "evil.example")
            .header("X-Forwarded-Host", "evil.example")
            .header("X-Forwarded-Proto", "https")
            .send()
            .unwrap();
        realm(r)
    };
    assert_eq!(evil(&node), format!("{}/auth/token", node.url));
    let configured = Node::start_with(
        &dir.path().join("configured"),
        &["--public-url", "https://registry.example.com/"],
    );
    assert_eq!(evil(&configured), "https://registry.example.com/auth/token");
    // A pull secret names the public URL too, not the Host the request came with.
    let (id, _, _) = configured.credential(&["--name", "k8s", "--scope", "containerRegistry:pull"]);
    let secret: serde_json::Value = configured
        .registry()
        .http
        .post(
            configured
                .registry()
                .url(&format!("/api/v1/credentials/{id}/pull-secret")),
        )
        .header("Host", "evil.example")
        .json(&serde_json::json!({"namespace": "default"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    use base64::Engine;
    let config = base64::engine::general_purpose::STANDARD
        .decode(secret["data"][".dockerconfigjson"].as_str().unwrap())
        .unwrap();
    let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
    assert!(
        config["auths"]["registry.example.com"].is_object(),
        "{config}"
    );
}

/// Whether the server closed `stream` (EOF or reset) within `wait`.
fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// Regression: a connection whose request head never finished was never cut, and one
/// address could open any number. A head gets `--header-timeout`, and an address at most
/// `--max-connections-per-ip` open connections.
#[test]
fn slow_headers_are_cut_and_connections_per_address_bounded() {
    let dir = tempdir();
    let node = Node::start_with(
        &dir.path().join("node"),
        &["--header-timeout", "2s", "--max-connections-per-ip", "3"],
    );
    let mut slow = TcpStream::connect(&node.addr).unwrap();
    slow.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    assert!(
        closed_within(&mut slow, Duration::from_secs(20)),
        "a head that never ends is cut"
    );

    let held: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(&node.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut fourth = TcpStream::connect(&node.addr).unwrap();
    fourth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok();
    assert!(
        closed_within(&mut fourth, Duration::from_secs(10)),
        "a fourth connection from the address is closed"
    );
    drop(held);
    // Slots come back when connections close.
    let mut ok = false;
    for _ in 0..50 {
        if Registry::anonymous(&node.url)
            .http
            .get(format!("{}/healthz", node.url))
            .send()
            .is_ok_and(|r| r.status() == 200)
        {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ok, "a new connection is served once the others closed");
}
