//! The peers Shoal is compared with, each started from a config file written into the
//! work directory, on a loopback port of its own:
//! - CNCF Distribution (`docker-registry serve`), filesystem store, no auth; and a second
//!   one in proxy mode (pull-through cache) in front of the first, for the pull storm.
//!   Its info log has one `response completed` line per request, which is how the proxy's
//!   fetches from its upstream are counted (the access log would repeat them, so it is off);
//! - nginx serving a directory of static files with sendfile, the reference for raw blob
//!   GET speed.
//!
//! Each can listen with TLS on a certificate of the comparison's (`https-get`): nginx and
//! Distribution then encrypt in user space (OpenSSL and Go's crypto/tls), as Shoal does. It runs in the foreground (`daemon off`) so it is our child; as root its
//!   workers run as root too, so they can read a scratch directory only root may enter.
//!
//! The renderers are pure and tested; `start_*` write the file, start the process and wait
//! until it answers.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use super::process::{children_of, free_tcp_port, Fleet};
use crate::tls::ServerCert;

/// A started peer, as the report records it.
#[derive(Serialize, Debug, Clone)]
pub struct Peer {
    pub url: String,
    /// The main process, then its workers (nginx).
    pub pids: Vec<u32>,
    pub config: PathBuf,
    pub log: PathBuf,
}

/// A path or string as a double-quoted YAML or nginx value.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

pub struct DistributionConfig<'a> {
    /// `127.0.0.1:PORT`
    pub addr: &'a str,
    pub root: &'a Path,
    /// The registry to pull through (proxy mode), e.g. `http://127.0.0.1:5000`.
    pub upstream: Option<&'a str>,
    /// Signs upload state; fixed so the log holds no warning about a random one.
    pub secret: &'a str,
    /// Listen with TLS on this certificate.
    pub tls: Option<&'a ServerCert>,
}

/// `config.yml` for `docker-registry serve`: what Debian's default config has (filesystem
/// store, in-memory blob descriptor cache, deletes on) minus auth, plus proxy mode when
/// asked.
pub fn distribution_yaml(c: &DistributionConfig) -> String {
    let mut y = format!(
        "# shoal-bench compare: CNCF Distribution, filesystem store, no auth.
version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  cache:
    blobdescriptor: inmemory
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {addr}
  secret: {secret}
",
        root = quote(&c.root.display().to_string()),
        addr = quote(c.addr),
        secret = quote(c.secret),
    );
    if let Some(t) = c.tls {
        y += &format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            quote(&t.cert.display().to_string()),
            quote(&t.key.display().to_string())
        );
    }
    if let Some(up) = c.upstream {
        y += &format!("proxy:\n  remoteurl: {}\n", quote(up));
    }
    y
}

pub struct NginxConfig<'a> {
    /// `127.0.0.1:PORT`
    pub listen: &'a str,
    /// The directory served.
    pub root: &'a Path,
    /// Where the pid file, logs and temp directories go.
    pub dir: &'a Path,
    pub workers: usize,
    /// `user` of the workers; only meaningful (and only written) when started as root.
    pub user: Option<&'a str>,
    /// Listen with TLS on this certificate.
    pub tls: Option<&'a ServerCert>,
}

/// `nginx.conf` for a static file tree with sendfile, in the foreground.
pub fn nginx_conf(c: &NginxConfig) -> String {
    let p = |name: &str| quote(&c.dir.join(name).display().to_string());
    let user = c.user.map_or(String::new(), |u| format!("user {u};\n"));
    // TLS 1.3, which Shoal's rustls and the benchmark's client agree on.
    let listen = match c.tls {
        None => format!("{};", c.listen),
        Some(t) => format!(
            "{} ssl;\n    ssl_protocols TLSv1.3;\n    ssl_certificate {};\n    ssl_certificate_key {};",
            c.listen,
            quote(&t.cert.display().to_string()),
            quote(&t.key.display().to_string())
        ),
    };
    format!(
        "# shoal-bench compare: nginx serving blobs as static files with sendfile.
daemon off;
master_process on;
{user}worker_processes {workers};
pid {pid};
error_log {error_log} warn;
events {{
  worker_connections 4096;
}}
http {{
  access_log {access_log};
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  client_body_temp_path {body_temp};
  proxy_temp_path {proxy_temp};
  server {{
    listen {listen}
    root {root};
  }}
}}
",
        workers = c.workers,
        pid = p("nginx.pid"),
        error_log = p("error.log"),
        access_log = p("access.log"),
        body_temp = p("client-body"),
        proxy_temp = p("proxy"),
        root = quote(&c.root.display().to_string()),
    )
}

/// Starts a Distribution in `dir` (its config, store and log there), pulling through
/// `upstream` when given; returns once `/v2/` answers 200. In proxy mode the upstream must
/// already answer: Distribution pings it at start and panics if it cannot.
pub async fn start_distribution(
    fleet: &mut Fleet,
    binary: &Path,
    dir: &Path,
    upstream: Option<&str>,
    tls: Option<&ServerCert>,
) -> anyhow::Result<Peer> {
    std::fs::create_dir_all(dir.join("store"))?;
    let addr = format!("127.0.0.1:{}", free_tcp_port()?);
    let secret = format!("{:016x}", crate::args::seed_or_clock(None));
    let config = dir.join("config.yml");
    let root = dir.join("store");
    std::fs::write(
        &config,
        distribution_yaml(&DistributionConfig {
            addr: &addr,
            root: &root,
            upstream,
            secret: &secret,
            tls,
        }),
    )?;
    let log = dir.join("registry.log");
    let mut cmd = Command::new(binary);
    cmd.arg("serve").arg(&config);
    let name = if upstream.is_some() {
        "distribution-proxy"
    } else {
        "distribution"
    };
    let pid = fleet.spawn(name, cmd, &log)?;
    let url = format!("{}://{addr}", scheme(tls));
    fleet
        .wait_http(pid, &format!("{url}/v2/"), |s| s == 200)
        .await?;
    Ok(Peer {
        url,
        pids: vec![pid],
        config,
        log,
    })
}

/// Starts nginx serving `root`, its config and logs in `dir`; returns once it answers and
/// its workers run.
pub async fn start_nginx(
    fleet: &mut Fleet,
    binary: &Path,
    dir: &Path,
    root: &Path,
    tls: Option<&ServerCert>,
) -> anyhow::Result<Peer> {
    std::fs::create_dir_all(dir)?;
    let listen = format!("127.0.0.1:{}", free_tcp_port()?);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: geteuid only reads the process's credentials.
    let root_user = unsafe { libc::geteuid() } == 0;
    let config = dir.join("nginx.conf");
    std::fs::write(
        &config,
        nginx_conf(&NginxConfig {
            listen: &listen,
            root,
            dir,
            workers,
            user: root_user.then_some("root"),
            tls,
        }),
    )?;
    let log = dir.join("error.log");
    let mut cmd = Command::new(binary);
    // -e: the error log before the config is read (the default one may not be writable);
    // -p: a prefix of our own, so no relative path reaches /etc/nginx or /var/lib/nginx.
    cmd.arg("-e")
        .arg(&log)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&config);
    let pid = fleet.spawn("nginx", cmd, &dir.join("nginx.out"))?;
    let url = format!("{}://{listen}", scheme(tls));
    fleet.wait_http(pid, &format!("{url}/"), |_| true).await?;
    let mut pids = vec![pid];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let kids = children_of(pid);
        if kids.len() >= workers || std::time::Instant::now() > deadline {
            pids.extend(kids);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(Peer {
        url,
        pids,
        config,
        log,
    })
}

fn scheme(tls: Option<&ServerCert>) -> &'static str {
    if tls.is_some() {
        "https"
    } else {
        "http"
    }
}

/// How many times `log` (a Distribution's) records a completed GET of one of `digests`'
/// blobs, counting from byte `from`: a proxy's fetches from this upstream.
pub fn blob_gets_logged(log: &Path, from: u64, digests: &[String]) -> u64 {
    let text = std::fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(&text[(from as usize).min(text.len())..]).into_owned();
    count_blob_gets(&text, digests)
}

/// Lines of a Distribution log that are a completed GET of one of `digests`.
fn count_blob_gets(log: &str, digests: &[String]) -> u64 {
    log.lines()
        .filter(|l| {
            l.contains("msg=\"response completed\"") && l.contains("http.request.method=GET")
        })
        .filter(|l| digests.iter().any(|d| l.contains(&format!("/blobs/{d}"))))
        .count() as u64
}

/// The size of a file now (where to count a log from).
pub fn log_len(log: &Path) -> u64 {
    std::fs::metadata(log).map_or(0, |m| m.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_configs() {
        let plain = distribution_yaml(&DistributionConfig {
            addr: "127.0.0.1:5000",
            root: Path::new("/tmp/w/distribution/store"),
            upstream: None,
            secret: "s3",
            tls: None,
        });
        for want in [
            "rootdirectory: \"/tmp/w/distribution/store\"",
            "addr: \"127.0.0.1:5000\"",
            "level: info",
            "blobdescriptor: inmemory",
            "secret: \"s3\"",
        ] {
            assert!(plain.contains(want), "{want:?} missing from\n{plain}");
        }
        assert!(
            !plain.contains("auth:") && !plain.contains("proxy:"),
            "{plain}"
        );
        let proxy = distribution_yaml(&DistributionConfig {
            addr: "127.0.0.1:5001",
            root: Path::new("/tmp/a \"b\""),
            upstream: Some("http://127.0.0.1:5000"),
            secret: "s",
            tls: None,
        });
        assert!(
            proxy.ends_with("proxy:\n  remoteurl: \"http://127.0.0.1:5000\"\n"),
            "{proxy}"
        );
        assert!(
            proxy.contains(r#"rootdirectory: "/tmp/a \"b\"""#),
            "{proxy}"
        );
        let tls = distribution_yaml(&DistributionConfig {
            addr: "127.0.0.1:5002",
            root: Path::new("/r"),
            upstream: None,
            secret: "s",
            tls: Some(&cert()),
        });
        let want = "  secret: \"s\"\n  tls:\n    certificate: \"/w/tls/cert.pem\"\n    key: \"/w/tls/key.pem\"\n";
        assert!(tls.contains(want), "{tls}");
    }

    fn cert() -> ServerCert {
        ServerCert {
            cert: "/w/tls/cert.pem".into(),
            key: "/w/tls/key.pem".into(),
        }
    }

    #[test]
    fn nginx_configs() {
        let with = |user, tls| {
            nginx_conf(&NginxConfig {
                listen: "127.0.0.1:8080",
                root: Path::new("/w/www"),
                dir: Path::new("/w/nginx"),
                workers: 2,
                user,
                tls,
            })
        };
        let conf = |user| with(user, None);
        let root = conf(Some("root"));
        for want in [
            "daemon off;",
            "user root;",
            "worker_processes 2;",
            "sendfile on;",
            "listen 127.0.0.1:8080;",
            "root \"/w/www\";",
            "pid \"/w/nginx/nginx.pid\";",
        ] {
            assert!(root.contains(want), "{want:?} missing from\n{root}");
        }
        assert_eq!(root.matches('{').count(), root.matches('}').count());
        assert!(!conf(None).contains("user ") && !root.contains("ssl"));
        let cert = cert();
        let tls = with(None, Some(&cert));
        for want in [
            "listen 127.0.0.1:8080 ssl;",
            "ssl_protocols TLSv1.3;",
            "ssl_certificate \"/w/tls/cert.pem\";",
            "ssl_certificate_key \"/w/tls/key.pem\";",
            "sendfile on;",
        ] {
            assert!(tls.contains(want), "{want:?} missing from\n{tls}");
        }
        assert_eq!(tls.matches('{').count(), tls.matches('}').count());
    }

    #[test]
    fn proxy_fetches_are_counted_from_the_upstream_log() {
        let d = "sha256:aa".to_string();
        let line = |method: &str, uri: &str| {
            format!(
                "time=\"t\" level=info msg=\"response completed\" http.request.method={method} \
                 http.request.uri=\"{uri}\" http.response.status=200\n"
            )
        };
        let log = [
            line("GET", "/v2/bench/x/blobs/sha256:aa"),
            line("HEAD", "/v2/bench/x/blobs/sha256:aa"),
            line("GET", "/v2/bench/x/blobs/sha256:bb"),
            line("GET", "/v2/bench/x/manifests/sha256:aa"),
            line("GET", "/v2/bench/x/blobs/sha256:aa"),
            "time=\"t\" level=info msg=\"Adding new scheduler entry for bench/x@sha256:aa\"\n"
                .into(),
        ]
        .concat();
        assert_eq!(count_blob_gets(&log, std::slice::from_ref(&d)), 2);
        assert_eq!(count_blob_gets(&log, &[d, "sha256:bb".into()]), 3);
        assert_eq!(count_blob_gets("", &[]), 0);
    }
}
