//! Real headless Chromium driven through chromedriver's W3C WebDriver protocol (a few HTTP
//! calls; Debian's `chromium` and `chromium-driver`, installed by scripts/test when missing).
//!
//! Dropping a [`Browser`] — also when the test panics, or when starting it fails halfway —
//! ends chromedriver and every Chromium process of its session. They are found by the
//! session's own profile folder, which each of them carries on its command line: Chromium's
//! crash handlers leave chromedriver's process group, so a group kill would miss them (it
//! used to leave four Chromium processes behind per test run).

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    base: String,
    session: String,
    http: reqwest::Client,
    _processes: Processes,
}

/// chromedriver and the session's profile folder; ends them all on drop.
struct Processes {
    driver: Option<Child>,
    profile: PathBuf,
}

impl Drop for Processes {
    fn drop(&mut self) {
        if let Some(driver) = &mut self.driver {
            let _ = driver.kill();
            let _ = driver.wait();
        }
        crate::processes::kill_processes_mentioning(&self.profile);
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn find(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(|p| p.to_string())
}

impl Browser {
    pub async fn start() -> Self {
        let driver_bin = find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"])
            .expect("chromedriver is not installed: run the tests through scripts/test (it installs Debian's chromium and chromium-driver)");
        let chromium = find(&["/usr/bin/chromium", "/usr/lib/chromium/chromium"])
            .expect("chromium is not installed");
        let profile = std::env::temp_dir().join(format!(
            "authsync-chromium-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&profile).unwrap();
        let mut processes = Processes {
            driver: None,
            profile: profile.clone(),
        };
        let port = crate::free_port();
        processes.driver = Some(
            Command::new(driver_bin)
                .arg(format!("--port={port}"))
                // Chromium's crash handler keeps its database under the config home: inside
                // the profile, its command line names the profile too (see `Processes`).
                .env("CHROME_CONFIG_HOME", &profile)
                .env("XDG_CONFIG_HOME", &profile)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start chromedriver"),
        );
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let start = Instant::now();
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1024,768", format!("--user-data-dir={}", profile.display())]
        }}}});
        let resp: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {resp}"))
            .to_owned();
        Self {
            base,
            session,
            http,
            _processes: processes,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        v["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn element(&self, css: &str) -> Option<String> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT].as_str().map(str::to_owned)
    }

    /// The visible text of the first element matching `css` ("" when absent or hidden).
    pub async fn text(&self, css: &str) -> String {
        match self.element(css).await {
            Some(id) => self
                .call(reqwest::Method::GET, &format!("/element/{id}/text"), None)
                .await
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            None => String::new(),
        }
    }

    pub async fn displayed(&self, css: &str) -> bool {
        match self.element(css).await {
            Some(id) => self
                .call(
                    reqwest::Method::GET,
                    &format!("/element/{id}/displayed"),
                    None,
                )
                .await
                .as_bool()
                .unwrap_or(false),
            None => false,
        }
    }

    /// The first element matching `css`; the test fails when there is none.
    async fn must(&self, css: &str) -> String {
        self.element(css)
            .await
            .unwrap_or_else(|| panic!("no element {css}"))
    }

    /// Clicks the first element matching `css`. A page that re-renders the element between
    /// finding and clicking it (a live-updating list) makes WebDriver answer "stale element
    /// reference": it is found again and clicked, as a person would click again. Any other
    /// WebDriver error fails the test.
    pub async fn click(&self, css: &str) {
        for _ in 0..5 {
            let id = self.must(css).await;
            let v = self
                .call(
                    reqwest::Method::POST,
                    &format!("/element/{id}/click"),
                    Some(json!({})),
                )
                .await;
            match v.get("error").and_then(Value::as_str) {
                None => return,
                Some("stale element reference") => continue,
                Some(e) => panic!("clicking {css}: {e}: {}", v["message"]),
            }
        }
        panic!("clicking {css}: the page replaced the element five times in a row");
    }

    /// Types `text` into the first element matching `css` (an input).
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.must(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Sets a cookie (path `/`) for the current page's site, as a signed-in app would.
    pub async fn add_cookie(&self, name: &str, value: &str) {
        self.call(
            reqwest::Method::POST,
            "/cookie",
            Some(json!({"cookie": {"name": name, "value": value, "path": "/"}})),
        )
        .await;
    }

    /// How many elements match `css`.
    pub async fn count(&self, css: &str) -> usize {
        let v = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v.as_array().map_or(0, Vec::len)
    }

    /// Runs `js` in the page as a function body and returns what it `return`s (JSON): for
    /// what the page shows but WebDriver cannot read directly (an SVG's attributes, a
    /// computed style).
    pub async fn script(&self, js: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
        .await
    }

    /// Saves a PNG screenshot (for looking at the page while developing).
    pub async fn screenshot(&self, path: &str) {
        use base64::Engine;
        let b64 = self.call(reqwest::Method::GET, "/screenshot", None).await;
        if let Some(s) = b64.as_str() {
            let _ = std::fs::write(
                path,
                base64::engine::general_purpose::STANDARD.decode(s).unwrap(),
            );
        }
    }

    /// Polls (bounded) until `check` holds: the page is truly asynchronous.
    pub async fn wait_for<F, Fut>(&self, what: &str, limit: Duration, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = Instant::now();
        while !check().await {
            assert!(start.elapsed() < limit, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
