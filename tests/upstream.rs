//! A real upstream registry for the mirror tests: Debian's `docker-registry` (CNCF
//! Distribution, anonymous) behind a real nginx that logs every request and can be switched,
//! while it runs, to answer 429 with `Retry-After` or 503 (a file in its directory decides,
//! read on every request), or be killed outright. nginx runs as one process (no master):
//! killing a master left its worker serving the port, an orphan, after every test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What nginx answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trouble {
    None,
    /// 429 with `Retry-After: 2`.
    RateLimited,
    /// 503.
    Down,
}

pub struct Upstream {
    /// `http://127.0.0.1:PORT` of nginx: what a mirror is given.
    pub url: String,
    /// `127.0.0.1:PORT` of nginx: the registry host clients name.
    pub host: String,
    /// Distribution itself, for pushing content (not logged by nginx).
    pub direct: String,
    dir: PathBuf,
    registry: Option<Child>,
    nginx: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_until_up(url: &str, what: &str, log: &Path) {
    let http = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if http
            .get(url)
            .send()
            .is_ok_and(|r| r.status().as_u16() < 500)
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{what} did not come up at {url}; log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn nginx_binary() -> String {
    if crate::require_tool("nginx") {
        "nginx".into()
    } else {
        "/usr/sbin/nginx".into()
    }
}

impl Upstream {
    /// Starts Distribution and nginx in front of it, under `dir`. Returns `None` (after the
    /// loud notice; a failure in CI) when either tool is missing.
    pub fn start(dir: &Path) -> Option<Upstream> {
        Upstream::start_with(dir, None)
    }

    /// `start`, with nginx asking for Basic credentials `(user, password)` when given.
    pub fn start_with(dir: &Path, basic: Option<(&str, &str)>) -> Option<Upstream> {
        if !crate::require_tool("docker-registry")
            || !(crate::require_tool("nginx") || Path::new("/usr/sbin/nginx").exists())
        {
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let reg_port = free_port();
        let store = dir.join("store");
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: \"{}\"\n  delete:\n    enabled: true\nhttp:\n  addr: \"127.0.0.1:{reg_port}\"\n  secret: \"mirror-test\"\n",
                store.display()
            ),
        )
        .unwrap();
        let reg_log = dir.join("registry.log");
        let registry = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&reg_log).unwrap())
            .spawn()
            .expect("start docker-registry");
        let direct = format!("http://127.0.0.1:{reg_port}");
        wait_until_up(&format!("{direct}/v2/"), "docker-registry", &reg_log);

        let port = free_port();
        let p = |name: &str| dir.join(name).display().to_string();
        // As root, the workers must be root too to see into the test's 0700 directory.
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let user = if root { "user root;\n" } else { "" };
        let auth = match basic {
            Some((u, pw)) => {
                std::fs::write(dir.join("htpasswd"), format!("{u}:{{PLAIN}}{pw}\n")).unwrap();
                format!(
                    "auth_basic \"upstream\";\n      auth_basic_user_file \"{}\";",
                    dir.join("htpasswd").display()
                )
            }
            None => String::new(),
        };
        let conf = format!(
            "daemon off;
{user}master_process off;
worker_processes 1;
pid \"{pid}\";
error_log \"{error}\" warn;
events {{ worker_connections 1024; }}
http {{
  log_format upstream '$request_method $uri $status \"$http_user_agent\"';
  access_log \"{access}\" upstream;
  client_body_temp_path \"{body}\";
  proxy_temp_path \"{proxy}\";
  client_max_body_size 0;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      if (-f \"{rate}\") {{
        add_header Retry-After 2 always;
        return 429;
      }}
      if (-f \"{down}\") {{
        return 503;
      }}
      {auth}
      proxy_pass http://127.0.0.1:{reg_port};
      proxy_set_header Host $http_host;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_http_version 1.1;
    }}
  }}
}}
",
            pid = p("nginx.pid"),
            error = p("nginx-error.log"),
            access = p("access.log"),
            body = p("body"),
            proxy = p("proxy"),
            rate = p("mode-429"),
            down = p("mode-503"),
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let nginx = Command::new(nginx_binary())
            .args(["-p", &dir.display().to_string(), "-c"])
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("nginx.stderr")).unwrap())
            .spawn()
            .expect("start nginx");
        let url = format!("http://127.0.0.1:{port}");
        wait_until_up(&format!("{url}/v2/"), "nginx", &dir.join("nginx-error.log"));
        Some(Upstream {
            host: format!("127.0.0.1:{port}"),
            url,
            direct,
            dir: dir.to_path_buf(),
            registry: Some(registry),
            nginx: Some(nginx),
        })
    }

    /// Switches what nginx answers from the next request on.
    pub fn set_trouble(&self, t: Trouble) {
        let rate = self.dir.join("mode-429");
        let down = self.dir.join("mode-503");
        let _ = std::fs::remove_file(&rate);
        let _ = std::fs::remove_file(&down);
        match t {
            Trouble::None => {}
            Trouble::RateLimited => std::fs::write(rate, "").unwrap(),
            Trouble::Down => std::fs::write(down, "").unwrap(),
        }
    }

    /// Kills nginx (and Distribution): the upstream is gone, its port refuses connections.
    pub fn kill(&mut self) {
        for c in [self.nginx.take(), self.registry.take()]
            .into_iter()
            .flatten()
        {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every request nginx logged: `METHOD URI STATUS "USER-AGENT"`.
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Requests logged with `method` for a URI ending in `suffix`.
    pub fn count(&self, method: &str, suffix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|l| {
                let mut parts = l.split(' ');
                parts.next() == Some(method) && parts.next().is_some_and(|u| u.ends_with(suffix))
            })
            .count()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.kill();
    }
}
