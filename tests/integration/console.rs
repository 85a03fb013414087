//! The web console in a real browser (headless Chromium through WebDriver): a person signs
//! in, finds an image pushed by skopeo, copies its pull command and pulls with it, makes a
//! credential and uses it, deletes a tag and sees it gone from the registry API, signs out;
//! anonymous visitors and readers see and do only what their roles allow, whatever they
//! post. Every page is saved as a screenshot at desktop and phone width.

use shoal_tests::browser::{self, Browser};
use shoal_tests::oci::write_layout;
use shoal_tests::{run_tool, skopeo_copy, tempdir, Node, ADMIN_PASSWORD};

const READER_PASSWORD: &str = "reader-password-0123";

/// A node with a private namespace `acme` holding `acme/team/api:v1` and `:latest` (pushed
/// by skopeo), a public namespace `open` holding `open/tool:1.0`, a private `hidden`, and a
/// reader of `acme`.
fn region() -> (tempfile::TempDir, Node) {
    let dir = tempdir();
    let node = Node::start(&dir.path().join("node"));
    node.cli_ok(&["namespace", "create", "acme"]);
    node.cli_ok(&["namespace", "create", "open", "--public"]);
    node.cli_ok(&["namespace", "create", "hidden"]);
    node.cli_ok(&["user", "create", "rdr", "--password", READER_PASSWORD]);
    node.cli_ok(&[
        "role",
        "bind",
        "rdr",
        "--role",
        "reader",
        "--namespace",
        "acme",
    ]);
    let layout = dir.path().join("layout");
    write_layout(
        &layout,
        "v1",
        &[vec![(
            "hello.txt",
            b"hello from the console test\n".to_vec(),
        )]],
    );
    let src = format!("oci:{}:v1", layout.display());
    for dest in [
        "acme/team/api:v1",
        "acme/team/api:latest",
        "open/tool:1.0",
        "hidden/secret:v1",
    ] {
        let (ok, out) = skopeo_copy(&src, &format!("docker://{}/{dest}", node.addr));
        assert!(ok, "skopeo copy to {dest}: {out}");
    }
    (dir, node)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn sign_in(b: &Browser, node: &Node, login: &str, password: &str) {
    b.goto(&format!("{}/ui/sign-in", node.url)).await;
    b.fill("#login", login).await;
    b.fill("#password", password).await;
    b.click("#sign-in").await;
    assert_eq!(
        b.wait_path(|p| p == "/ui/").await,
        "/ui/",
        "signed in as {login}, the namespaces show"
    );
}

/// Runs blocking HTTP (`reqwest::blocking`, which has a runtime of its own) on a thread of
/// its own, off the browser's runtime.
fn blocking<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().unwrap())
}

/// A plain HTTP client that keeps no cookies and follows no redirects, for posts a page
/// would never make.
fn raw() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[test]
fn a_person_signs_in_finds_an_image_pulls_it_and_manages_it() {
    if !browser::available() || !shoal_tests::require_tool("skopeo") {
        return;
    }
    let (dir, node) = region();
    runtime().block_on(async {
        let b = Browser::start().await;
        // A private page is not found until the visitor signs in, and then shown.
        b.goto(&format!("{}/ui/r/acme/team/api", node.url)).await;
        assert!(b.source().await.contains("Not found"));
        b.click("#error-sign-in").await;
        let path = b.wait_path(|p| p.starts_with("/ui/sign-in?next=")).await;
        assert!(path.starts_with("/ui/sign-in?next="), "{path}");
        b.screenshot("sign-in").await;
        b.fill("#login", "admin").await;
        b.fill("#password", "wrong-password").await;
        b.click("#sign-in").await;
        assert!(b
            .text("#sign-in-error")
            .await
            .contains("invalid username or password"));
        b.fill("#login", "admin").await;
        b.fill("#password", ADMIN_PASSWORD).await;
        b.click("#sign-in").await;
        let path = b.wait_path(|p| p == "/ui/r/acme/team/api").await;
        assert_eq!(path, "/ui/r/acme/team/api", "{}", b.source().await);

        // Browse from the top to the image.
        b.goto(&format!("{}/ui/", node.url)).await;
        b.screenshot("namespaces").await;
        let listed = b.text("#namespaces").await;
        for ns in ["acme", "open", "hidden"] {
            assert!(listed.contains(ns), "the admin sees {ns}: {listed}");
        }
        b.click("#namespaces a[href='/ui/n/acme']").await;
        b.find("#repositories").await;
        b.screenshot("namespace").await;
        assert!(b.text("#repositories").await.contains("team/"), "a folder");
        b.click("#repositories tr.folder a").await;
        b.click("#repositories a[href='/ui/r/acme/team/api']").await;
        b.find("#tags").await;
        b.screenshot("repository").await;
        let tags = b.text("#tags").await;
        assert!(tags.contains("v1") && tags.contains("latest"), "{tags}");
        assert!(
            tags.contains("linux/amd64"),
            "the platform from the config: {tags}"
        );

        // Copy the pull command and pull with it.
        let command = b
            .find("#by-tag .cmd[data-tool='skopeo'] code")
            .await
            .text()
            .await
            .unwrap();
        assert_eq!(
            command,
            format!(
                "skopeo copy --src-tls-verify=false docker://{}/acme/team/api:latest oci:api",
                node.addr
            )
        );
        let copy = b.find("#by-tag .cmd[data-tool='skopeo'] button.copy").await;
        assert!(
            copy.is_displayed().await.unwrap(),
            "the script shows copy buttons"
        );
        assert_eq!(
            copy.attr("data-copy").await.unwrap().as_deref(),
            Some(command.as_str())
        );
        let words: Vec<&str> = command.split(' ').collect();
        let out_dir = dir.path().join("pulled");
        let dest = format!("oci:{}", out_dir.display());
        let mut args: Vec<&str> = words[1..words.len() - 1].to_vec();
        args.insert(1, "--src-creds");
        let creds = shoal_tests::admin_creds();
        args.insert(2, &creds);
        args.push(&dest);
        let (ok, out) = run_tool("skopeo", &args, &[]);
        assert!(ok, "the copied command pulls: {out}");
        assert!(out_dir.join("index.json").exists());

        // The artifact: layers, config, platforms, tags.
        b.click("#tags tr[data-tag='v1'] a.tag").await;
        b.find("#layers").await;
        b.screenshot("artifact").await;
        assert_eq!(b.count("#layers tbody tr").await, 1);
        let by_digest = b.text("#by-digest").await;
        assert!(
            by_digest.contains(&format!("docker pull {}/acme/team/api@sha256:", node.addr)),
            "{by_digest}"
        );
        assert!(b.text("#config").await.contains("linux/amd64"));
        let tags = b.text("#artifact-tags").await;
        assert!(tags.contains("v1") && tags.contains("latest"), "{tags}");

        // A credential made in the console works with skopeo.
        b.goto(&format!("{}/ui/credentials", node.url)).await;
        b.fill("#name", "console-ci").await;
        b.click("#create-credential").await;
        b.find("#new-username").await;
        b.screenshot("credential-created").await;
        let user = b.text("#new-username").await;
        let secret = b.text("#new-secret").await;
        let creds = format!("{user}:{secret}");
        let (ok, out) = run_tool(
            "skopeo",
            &[
                "inspect",
                "--tls-verify=false",
                "--creds",
                &creds,
                &format!("docker://{}/acme/team/api:v1", node.addr),
            ],
            &[],
        );
        assert!(ok, "the console's credential pulls: {out}");
        b.goto(&format!("{}/ui/credentials", node.url)).await;
        b.screenshot("credentials").await;
        assert!(b.text("#credentials").await.contains("console-ci"));

        // Delete a tag, with a confirmation step; the registry API no longer has it.
        b.goto(&format!("{}/ui/r/acme/team/api", node.url)).await;
        b.click("#tags tr[data-tag='v1'] a.danger").await;
        let path = b.wait_path(|p| p.ends_with("/-/delete-tag/v1")).await;
        assert!(path.ends_with("/-/delete-tag/v1"), "{path}");
        b.screenshot("confirm-delete").await;
        b.click("#confirm").await;
        let path = b.wait_path(|p| p == "/ui/r/acme/team/api").await;
        assert_eq!(path, "/ui/r/acme/team/api", "{}", b.source().await);
        assert_eq!(b.count("#tags tr[data-tag='v1']").await, 0);
        let r = blocking(|| node.registry().get("/v2/acme/team/api/manifests/v1"));
        assert_eq!(
            r.status().as_u16(),
            404,
            "the tag is gone from the registry API"
        );

        // Delete a whole manifest from its page; its digest is gone from the registry API.
        b.goto(&format!("{}/ui/r/open/tool", node.url)).await;
        b.click("#tags tr[data-tag='1.0'] a.tag").await;
        b.click("#delete-manifest").await;
        let path = b.wait_path(|p| p.ends_with("/delete")).await;
        assert!(path.contains("/@sha256:"), "{path}");
        let digest = path
            .trim_end_matches("/delete")
            .rsplit('@')
            .next()
            .unwrap()
            .to_string();
        b.click("#confirm").await;
        let path = b.wait_path(|p| p == "/ui/r/open/tool").await;
        assert_eq!(path, "/ui/r/open/tool", "{}", b.source().await);
        let status = blocking(|| {
            node.registry()
                .get(&format!("/v2/open/tool/manifests/{digest}"))
                .status()
                .as_u16()
        });
        assert_eq!(status, 404, "the manifest is gone from the registry API");

        // Namespace settings: a description and immutable tags, saved through the API.
        b.goto(&format!("{}/ui/n/acme/-/settings", node.url)).await;
        b.fill("#description", "The team's images").await;
        b.fill("#immutable_tags", "release-*").await;
        b.click("#save-settings").await;
        let path = b.wait_path(|p| p.ends_with("?saved=1")).await;
        assert!(path.ends_with("?saved=1"), "{path}: {}", b.source().await);
        let ns: serde_json::Value = blocking(|| {
            node.registry()
                .get("/api/v1/namespaces/acme")
                .json()
                .unwrap()
        });
        assert_eq!(ns["description"], "The team's images");
        assert_eq!(ns["immutable_tags"], serde_json::json!(["release-*"]));
        // A retention policy that keeps only v* tags, and its preview: `latest` would go.
        // From the page without `?saved=1`, so the save's own navigation can be waited for
        // (on the same URL, the old page's elements were found and went stale).
        b.goto(&format!("{}/ui/n/acme/-/settings", node.url)).await;
        b.fill("#policy", r#"{"rules": [{"tags": ["v*"]}]}"#).await;
        b.click("#save-settings").await;
        let path = b.wait_path(|p| p.ends_with("?saved=1")).await;
        assert!(path.ends_with("?saved=1"), "{path}: {}", b.source().await);
        b.find("p.notice").await;
        b.click("#preview").await;
        let preview = b.text("#preview-result").await;
        assert!(
            preview.contains("1 tag would go") && preview.contains("latest"),
            "{preview}"
        );
        b.screenshot("retention-preview").await;
        // A policy that is not JSON is refused with a page that says so; nothing changes.
        b.goto(&format!("{}/ui/n/acme/-/settings", node.url)).await;
        b.fill("#policy", "{not json").await;
        b.fill("#description", "changed").await;
        b.click("#save-settings").await;
        assert!(b.text("p.message").await.contains("not valid JSON"));
        let ns: serde_json::Value = blocking(|| {
            node.registry()
                .get("/api/v1/namespaces/acme")
                .json()
                .unwrap()
        });
        assert_eq!(
            ns["description"], "The team's images",
            "nothing was applied"
        );

        // The other pages render.
        for (path, shot) in [
            ("/ui/n/acme/-/settings", "settings"),
            ("/ui/n/acme/-/access", "access"),
            ("/ui/admin/region", "region"),
            ("/ui/admin/people", "people"),
            ("/ui/r/acme/nothing-here", "not-found"),
        ] {
            b.goto(&format!("{}{path}", node.url)).await;
            b.screenshot(shot).await;
        }
        b.goto(&format!("{}/ui/admin/region", node.url)).await;
        assert!(b.text("#members").await.contains("voter"));
        assert!(b.text("#origin").await.starts_with("answering"));
        b.goto(&format!("{}/ui/r/acme/nothing-here", node.url))
            .await;
        assert!(b.source().await.contains("Not found"));

        // A POST without the CSRF token is refused, with the session cookie.
        let session = b.cookie("shoal_session").await.expect("a session cookie");
        let cookie = format!("shoal_session={session}");
        let r = blocking(|| {
            raw()
                .post(format!(
                    "{}/ui/r/acme/team/api/-/delete-tag/latest",
                    node.url
                ))
                .header("Cookie", &cookie)
                .form(&[("csrf", "")])
                .send()
                .unwrap()
        });
        assert_eq!(r.status().as_u16(), 403);
        let status = blocking(|| {
            node.registry()
                .get("/v2/acme/team/api/manifests/latest")
                .status()
                .as_u16()
        });
        assert_eq!(status, 200);

        // Sign out; the cookie stops working, here and as a copy.
        b.goto(&format!("{}/ui/", node.url)).await;
        b.click("#sign-out").await;
        b.find("#sign-in-link").await;
        assert_eq!(b.count("#sign-out").await, 0);
        let r = blocking(|| {
            raw()
                .get(format!("{}/ui/credentials", node.url))
                .header("Cookie", &cookie)
                .send()
                .unwrap()
        });
        assert_eq!(
            r.status().as_u16(),
            303,
            "an ended session is sent to sign in"
        );
        b.close().await;
    });
}

/// Also with JavaScript off: the pages need none (copy buttons stay hidden, the commands
/// are plain text).
#[test]
fn anonymous_visitors_see_public_namespaces_only() {
    if !browser::available() || !shoal_tests::require_tool("skopeo") {
        return;
    }
    let (_dir, node) = region();
    runtime().block_on(async {
        let b = Browser::without_javascript().await;
        b.goto(&format!("{}/ui/", node.url)).await;
        b.screenshot("anonymous").await;
        let listed = b.text("#namespaces").await;
        assert!(listed.contains("open"), "{listed}");
        assert!(
            !listed.contains("acme") && !listed.contains("hidden"),
            "{listed}"
        );
        b.goto(&format!("{}/ui/r/open/tool", node.url)).await;
        assert!(b.text("#tags").await.contains("1.0"));
        let command = b.text("#by-tag .cmd[data-tool='docker'] code").await;
        assert_eq!(command, format!("docker pull {}/open/tool:1.0", node.addr));
        assert!(
            !b.find("#by-tag .cmd[data-tool='docker'] button.copy")
                .await
                .is_displayed()
                .await
                .unwrap(),
            "without JavaScript there is nothing to copy with"
        );
        assert_eq!(
            b.count("#tags a.danger").await,
            0,
            "no delete for anonymous visitors"
        );
        // A private repository asks for a sign-in, like one that does not exist.
        for path in ["/ui/r/hidden/secret", "/ui/n/hidden"] {
            b.goto(&format!("{}{path}", node.url)).await;
            let source = b.source().await;
            assert!(source.contains("Not found"), "{path}: {source}");
            assert!(!source.contains("secret:v1"));
        }
        b.close().await;
    });
}

#[test]
fn a_reader_sees_no_delete_buttons_and_cannot_forge_one() {
    if !browser::available() || !shoal_tests::require_tool("skopeo") {
        return;
    }
    let (_dir, node) = region();
    runtime().block_on(async {
        let b = Browser::start().await;
        sign_in(&b, &node, "rdr", READER_PASSWORD).await;
        let listed = b.text("#namespaces").await;
        assert!(
            listed.contains("acme") && listed.contains("open"),
            "{listed}"
        );
        assert!(!listed.contains("hidden"), "{listed}");
        b.goto(&format!("{}/ui/r/acme/team/api", node.url)).await;
        b.screenshot("reader-repository").await;
        assert_eq!(b.count("#tags tr").await, 3, "header and two tags");
        assert_eq!(
            b.count("a.danger").await,
            0,
            "a reader sees no delete links"
        );
        b.goto(&format!("{}/ui/n/acme", node.url)).await;
        assert_eq!(b.count("#settings-link").await, 0);

        // The reader's own session and CSRF token, posted by hand: refused all the same.
        let session = b.cookie("shoal_session").await.expect("a session cookie");
        let csrf = b
            .find("form[action='/ui/sign-out'] input[name='csrf']")
            .await
            .attr("value")
            .await
            .unwrap()
            .unwrap();
        let cookie = format!("shoal_session={session}");
        for path in [
            "/ui/r/acme/team/api/-/delete-tag/v1",
            "/ui/n/acme/-/settings",
        ] {
            let r = blocking(|| {
                raw()
                    .post(format!("{}{path}", node.url))
                    .header("Cookie", &cookie)
                    .form(&[("csrf", csrf.as_str()), ("visibility", "public")])
                    .send()
                    .unwrap()
            });
            assert_eq!(r.status().as_u16(), 403, "{path}");
        }
        let status = blocking(|| {
            node.registry()
                .get("/v2/acme/team/api/manifests/v1")
                .status()
                .as_u16()
        });
        assert_eq!(status, 200);
        let ns: serde_json::Value = blocking(|| {
            node.registry()
                .get("/api/v1/namespaces/acme")
                .json()
                .unwrap()
        });
        assert_eq!(ns["visibility"], "private");
        // The session token is no registry token.
        let r = blocking(|| {
            raw()
                .get(format!("{}/v2/acme/team/api/tags/list", node.url))
                .bearer_auth(&session)
                .send()
                .unwrap()
        });
        assert_eq!(r.status().as_u16(), 401);
        b.close().await;
    });
}

/// Credentials from the console: a pull secret downloads as YAML and gives the credential
/// a new secret, which ends the console sessions signed in with the old one; revoking works;
/// a dotted tag is deleted; odd paths are pages, not crashes.
#[test]
fn credential_sessions_end_with_their_secret_and_credentials_are_managed() {
    if !browser::available() || !shoal_tests::require_tool("skopeo") {
        return;
    }
    let (_dir, node) = region();
    runtime().block_on(async {
        let admin = Browser::start().await;
        sign_in(&admin, &node, "admin", ADMIN_PASSWORD).await;
        admin.goto(&format!("{}/ui/credentials", node.url)).await;
        admin.fill("#name", "ci-one").await;
        admin.click("#create-credential").await;
        let user = admin.text("#new-username").await;
        let secret = admin.text("#new-secret").await;

        // Someone signs in to the console with the credential.
        let ci = Browser::start().await;
        sign_in(&ci, &node, &user, &secret).await;
        assert!(ci.text(".who .me").await.contains("credential"));

        // The admin downloads a pull secret for it: YAML, and a new secret.
        admin.goto(&format!("{}/ui/credentials", node.url)).await;
        let row = "#credentials tr[data-credential='ci-one']";
        let action = admin
            .find(&format!("{row} form[action$='/pull-secret']"))
            .await
            .attr("action")
            .await
            .unwrap()
            .unwrap();
        let csrf = admin
            .find("form[action='/ui/sign-out'] input[name='csrf']")
            .await
            .attr("value")
            .await
            .unwrap()
            .unwrap();
        let cookie = format!(
            "shoal_session={}",
            admin.cookie("shoal_session").await.unwrap()
        );
        let (status, content_type, yaml) = blocking(|| {
            let r = raw()
                .post(format!("{}{action}", node.url))
                .header("Cookie", &cookie)
                .form(&[("csrf", csrf.as_str()), ("k8s_namespace", "apps")])
                .send()
                .unwrap();
            let ct = r.headers()["content-type"].to_str().unwrap().to_string();
            (r.status().as_u16(), ct, r.text().unwrap())
        });
        assert_eq!(
            (status, content_type.as_str()),
            (200, "application/yaml"),
            "{yaml}"
        );
        assert!(
            yaml.contains("kind: Secret") && yaml.contains("namespace: \"apps\""),
            "{yaml}"
        );
        assert!(yaml.contains(".dockerconfigjson: \""), "{yaml}");

        // The old secret's console session has ended.
        ci.goto(&format!("{}/ui/", node.url)).await;
        ci.find("#sign-in-link").await;
        assert!(ci.source().await.contains("Your session has ended"));
        ci.close().await;

        // Revoke from the console.
        admin.goto(&format!("{}/ui/credentials", node.url)).await;
        admin.click(&format!("{row} button.danger")).await;
        let state = admin
            .wait_text(&format!("{row} .badge"), |t| t == "revoked")
            .await;
        assert_eq!(state, "revoked");

        // A dotted tag is deleted through its confirmation page.
        admin.goto(&format!("{}/ui/r/open/tool", node.url)).await;
        admin.click("#tags tr[data-tag='1.0'] a.danger").await;
        admin.wait_path(|p| p.ends_with("/-/delete-tag/1.0")).await;
        admin.click("#confirm").await;
        let path = admin.wait_path(|p| p == "/ui/r/open/tool").await;
        assert_eq!(path, "/ui/r/open/tool", "{}", admin.source().await);
        let status = blocking(|| {
            node.registry()
                .get("/v2/open/tool/manifests/1.0")
                .status()
                .as_u16()
        });
        assert_eq!(status, 404);

        // Paths that name nothing are pages.
        for path in [
            "/ui/r",
            "/ui/r/",
            "/ui/r/acme/team/api/@not-a-digest/delete",
            "/ui/n/",
        ] {
            let status = blocking(|| {
                raw()
                    .get(format!("{}{path}", node.url))
                    .send()
                    .unwrap()
                    .status()
                    .as_u16()
            });
            assert_eq!(status, 404, "{path}");
        }
        admin.close().await;
    });
}

/// The issue's "done when": an image pushed with docker is found in the console with its
/// layers and its docker pull command, and that command pulls it.
#[test]
fn an_image_pushed_with_docker_is_found_and_pulled_from_the_console() {
    if !browser::available() || !shoal_tests::require_docker() {
        return;
    }
    let (dir, node) = region();
    let docker = |args: &[&str]| run_tool("docker", args, &[("DOCKER_BUILDKIT", "0")]);
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("hello.txt"), "pushed with docker\n").unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY hello.txt /\n").unwrap();
    let image = format!("{}/acme/from-docker:v1", node.addr);
    let (ok, out) = docker(&["login", &node.addr, "-u", "admin", "-p", ADMIN_PASSWORD]);
    assert!(ok, "docker login: {out}");
    let (ok, out) = docker(&["build", "-q", "-t", &image, ctx.to_str().unwrap()]);
    assert!(ok, "docker build: {out}");
    let (ok, out) = docker(&["push", &image]);
    assert!(ok, "docker push: {out}");
    let (ok, out) = docker(&["rmi", &image]);
    assert!(ok, "docker rmi: {out}");
    runtime().block_on(async {
        let b = Browser::start().await;
        sign_in(&b, &node, "admin", ADMIN_PASSWORD).await;
        b.goto(&format!("{}/ui/n/acme", node.url)).await;
        b.click("#repositories a[href='/ui/r/acme/from-docker']")
            .await;
        let command = b.text("#by-tag .cmd[data-tool='docker'] code").await;
        assert_eq!(command, format!("docker pull {image}"));
        b.click("#tags tr[data-tag='v1'] a.tag").await;
        b.find("#layers").await;
        assert_eq!(b.count("#layers tbody tr").await, 1, "one COPY, one layer");
        let words: Vec<&str> = command.split(' ').collect();
        let (ok, out) = docker(&words[1..]);
        assert!(ok, "the console's docker pull command: {out}");
        b.close().await;
    });
    let _ = docker(&["rmi", &image]);
}
