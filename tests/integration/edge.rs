//! Edge protection on a real node: the anonymous rate limit per client IP (429 with
//! `Retry-After` and `TOOMANYREQUESTS`, signed-in clients and probes untouched), security
//! headers on every reply, CORS only for configured origins, failed sign-ins limited per IP and
//! login, `X-Forwarded-For` believed from trusted proxies only, and a bad limit refused at
//! start.

use shoal_tests::{bin, error_code, tempdir, Node, Registry};

#[test]
fn anonymous_clients_are_rate_limited_and_every_reply_is_hardened() {
    let dir = tempdir();
    let node = Node::start_with(
        &dir.path().join("node"),
        &[
            "--anonymous-rate-limit",
            "5/1m",
            "--cors-origin",
            "https://console.example",
        ],
    );
    let anon = Registry::anonymous(&node.url);
    for _ in 0..5 {
        assert_eq!(anon.get("/v2/").status(), 401);
    }
    let r = anon.get("/v2/");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert_eq!(error_code(r), (429, "TOOMANYREQUESTS".to_string()));
    assert_eq!(
        anon.get("/healthz").status(),
        200,
        "probes are never limited"
    );
    let admin = node.registry();
    let r = admin.get("/v2/");
    assert_eq!(r.status(), 200, "signed-in clients are not limited");
    for (k, v) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        ),
    ] {
        assert_eq!(r.headers()[k], v, "{k}");
        assert_eq!(
            admin.get("/v2/nosuch/repo/manifests/x").headers()[k],
            v,
            "{k} on an error"
        );
    }
    assert!(r.headers().get("access-control-allow-origin").is_none());

    let preflight = |origin: &str| {
        admin
            .http
            .request(reqwest::Method::OPTIONS, admin.url("/v2/"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "GET")
            .send()
            .unwrap()
    };
    let ok = preflight("https://console.example");
    assert_eq!(ok.status(), 204);
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://console.example"
    );
    assert!(ok.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("PUT"));
    let other = preflight("https://evil.example");
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let get = admin
        .http
        .get(admin.url("/v2/"))
        .header("Origin", "https://console.example")
        .send()
        .unwrap();
    assert!(get.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .contains("Docker-Content-Digest"));
    // Console pages are never shared with another origin, configured or not: they would
    // be read with the visitor's session cookie.
    let page = admin
        .http
        .get(admin.url("/ui/sign-in"))
        .header("Origin", "https://console.example")
        .send()
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers().get("access-control-allow-origin").is_none());
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("form-action 'self'"));

    let out = std::process::Command::new(bin("shoal"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--anonymous-rate-limit",
            "lots",
        ])
        .arg("--data")
        .arg(dir.path().join("other"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a rate like 500/10m"));
}

#[test]
fn failed_sign_ins_are_limited_per_ip_and_login() {
    let dir = tempdir();
    let node = Node::start_with(&dir.path().join("node"), &["--failed-login-limit", "3/1m"]);
    let (_, login, password) =
        node.credential(&["--name", "other", "--scope", "containerRegistry"]);
    let wrong = Registry::with_auth(&node.url, Some(&shoal_tests::basic("admin", "guess")));
    for path in ["/v2/", "/auth/token", "/api/v1/namespaces"] {
        assert_eq!(
            error_code(wrong.get(path)),
            (401, "UNAUTHORIZED".into()),
            "{path}"
        );
    }
    // The fourth attempt is not even checked.
    let r = wrong.get("/v2/");
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(error_code(r), (429, "TOOMANYREQUESTS".into()));
    let r = wrong.get("/api/v1/namespaces");
    assert_eq!(error_code(r), (429, "TOOMANYREQUESTS".into()));
    // A password that verified within the last minute (the CLI signed in as the admin
    // above) is no guess: it is answered from memory and gets in.
    assert_eq!(node.registry().get("/v2/").status(), 200);
    // Other logins from the same address, tokens and anonymous callers are not affected.
    let other = Registry::with_auth(&node.url, Some(&shoal_tests::basic(&login, &password)));
    assert_eq!(other.get("/v2/").status(), 200);
    assert_eq!(Registry::anonymous(&node.url).get("/healthz").status(), 200);
    let out = std::process::Command::new(bin("shoal"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--failed-login-limit",
            "many",
        ])
        .arg("--data")
        .arg(dir.path().join("other"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--failed-login-limit"));
}

/// Anonymous `GET /v2/` as a client behind a proxy that forwards for `client`.
fn via_proxy(node: &Node, client: &str) -> u16 {
    reqwest::blocking::Client::new()
        .get(format!("{}/v2/", node.url))
        .header("X-Forwarded-For", format!("6.6.6.6, {client}"))
        .send()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn forwarded_clients_get_their_own_limits_only_behind_trusted_proxies() {
    let dir = tempdir();
    let behind = Node::start_with(
        &dir.path().join("behind"),
        &[
            "--anonymous-rate-limit",
            "3/1m",
            "--trusted-proxy",
            "127.0.0.0/8",
        ],
    );
    for _ in 0..3 {
        assert_eq!(via_proxy(&behind, "198.51.100.1"), 401);
    }
    assert_eq!(
        via_proxy(&behind, "198.51.100.1"),
        429,
        "its own bucket is spent"
    );
    assert_eq!(
        via_proxy(&behind, "198.51.100.2"),
        401,
        "another client behind the same proxy still gets in"
    );
    // The log is written in batches by a writer thread: give it a moment.
    let logged = (0..50).any(|_| {
        let log = std::fs::read_to_string(dir.path().join("behind.log")).unwrap_or_default();
        log.contains("client=\"198.51.100.2\"") || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            false
        }
    });
    assert!(logged, "the access log names the client");

    // Without --trusted-proxy the header is the client's own word and changes nothing.
    let direct = Node::start_with(
        &dir.path().join("direct"),
        &["--anonymous-rate-limit", "3/1m"],
    );
    for i in 0..3 {
        assert_eq!(via_proxy(&direct, &format!("198.51.100.{i}")), 401);
    }
    assert_eq!(via_proxy(&direct, "198.51.100.9"), 429);

    // X-Forwarded-Proto, too, is believed from a trusted proxy only (it names the realm).
    let realm = |node: &Node| {
        let r = reqwest::blocking::Client::new()
            .get(format!("{}/v2/", node.url))
            // Basic, not a bad bearer token: that would count as anonymous, and this
            // address's anonymous window is spent.
            .header("Authorization", shoal_tests::basic("nobody", "x"))
            .header("X-Forwarded-Proto", "https")
            .send()
            .unwrap();
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string()
    };
    assert!(
        realm(&behind).contains("realm=\"https://"),
        "{}",
        realm(&behind)
    );
    assert!(
        realm(&direct).contains("realm=\"http://"),
        "{}",
        realm(&direct)
    );

    let out = std::process::Command::new(bin("shoal"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--trusted-proxy",
            "lb.local",
        ])
        .arg("--data")
        .arg(dir.path().join("bad"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--trusted-proxy"));
}
