//! A real browser for the console tests: Debian's headless Chromium driven through
//! WebDriver (`chromedriver`) with fantoccini. Missing browser pieces fail under `CI=true`
//! and skip loudly otherwise, like every other tool (`require_tool`).
//!
//! Screenshots go to `target/ui-screenshots/NAME-desktop.png` and `NAME-phone.png`, for a
//! person to look at (the tests assert behaviour, not pixels).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

pub struct Browser {
    pub client: Client,
    driver: Child,
}

/// Where screenshots are written.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("ui-screenshots")
}

/// Whether Chromium and its WebDriver are installed (see `require_tool`).
pub fn available() -> bool {
    crate::require_tool("chromium") && crate::require_tool("chromedriver")
}

impl Browser {
    /// A fresh headless Chromium (its own profile, so no cookie is shared between tests).
    pub async fn start() -> Browser {
        Browser::launch(true).await
    }

    /// A browser with JavaScript turned off (the console must work without it).
    pub async fn without_javascript() -> Browser {
        Browser::launch(false).await
    }

    async fn launch(javascript: bool) -> Browser {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
        ];
        if !javascript {
            args.push("--blink-settings=scriptEnabled=false");
        }
        let caps = serde_json::json!({
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}
        });
        let caps = match caps {
            serde_json::Value::Object(m) => m,
            _ => unreachable!("built as an object above"),
        };
        // The WebDriver client speaks plain HTTP to chromedriver, but its connector is built
        // with rustls, which needs one crypto provider chosen when several are compiled in.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = ClientBuilder::rustls()
            .expect("a TLS connector for the WebDriver client")
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("starting a Chromium session");
        Browser { client, driver }
    }

    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    }

    /// The text of the first element matching `css` (found again if the page was replaced
    /// between finding it and reading it).
    pub async fn text(&self, css: &str) -> String {
        self.wait_text(css, |_| true).await
    }

    /// The text of the first element matching `css` once `want` accepts it, waiting up to
    /// 10 s (a form that posts and comes back to the same page).
    pub async fn wait_text(&self, css: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let read = self.find(css).await.text().await;
            match read {
                Ok(t) if want(&t) || Instant::now() > deadline => return t,
                Err(e) if Instant::now() > deadline => panic!("reading {css}: {e}"),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// The first element matching `css`, waiting up to 10 s for it (a click that navigates
    /// returns before the next page is there).
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.client.find(Locator::Css(css)).await {
                Ok(e) => return e,
                Err(e) if Instant::now() > deadline => {
                    let url = self.client.current_url().await.map(|u| u.to_string());
                    panic!("no {css} on {url:?}: {e}");
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// How many elements match `css`.
    pub async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.unwrap().len()
    }

    pub async fn fill(&self, css: &str, value: &str) {
        let e = self.find(css).await;
        e.clear().await.unwrap();
        e.send_keys(value).await.unwrap();
    }

    /// Clicks the first element matching `css`. Right after a navigation the element found
    /// can still be the old page's, gone by the time it is clicked (stale): it is found
    /// again, for up to 10 s.
    pub async fn click(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.find(css).await.click().await {
                Ok(()) => return,
                Err(e) if e.is_stale_element_reference() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("clicking {css}: {e}"),
            }
        }
    }

    pub async fn path(&self) -> String {
        let u = self.client.current_url().await.unwrap();
        match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        }
    }

    /// Waits (up to 10 s) until the page's path and query are `want`, as a click that
    /// navigates returns before the next page has loaded; returns the path it ended on.
    pub async fn wait_path(&self, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let path = self.path().await;
            if want(&path) || Instant::now() > deadline {
                return path;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn source(&self) -> String {
        self.client.source().await.unwrap()
    }

    /// The value of cookie `name` the browser holds, if any.
    pub async fn cookie(&self, name: &str) -> Option<String> {
        self.client
            .get_all_cookies()
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.name() == name)
            .map(|c| c.value().to_string())
    }

    /// Saves the page at desktop and at phone width.
    pub async fn screenshot(&self, name: &str) {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        for (label, w, h) in [("desktop", 1280, 900), ("phone", 390, 844)] {
            self.client.set_window_size(w, h).await.unwrap();
            let png = self.client.screenshot().await.unwrap();
            std::fs::write(dir.join(format!("{name}-{label}.png")), png).unwrap();
        }
        self.client.set_window_size(1280, 900).await.unwrap();
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}
