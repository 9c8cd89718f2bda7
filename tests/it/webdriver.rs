//! A minimal W3C WebDriver client for Debian's chromedriver: the dozen commands the page test
//! needs, over the harness's blocking HTTP client. (fantoccini would bring an async HTTP
//! client stack and a dozen crates into the test build for the same few calls.)

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::support::*;

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver on a free loopback port, killed when dropped.
pub struct Chromedriver {
    child: Child,
    addr: SocketAddr,
}

impl Chromedriver {
    pub fn start() -> Chromedriver {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: run scripts/test, which installs Debian's chromium and chromium-driver"
            );
        }
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let d = Chromedriver { child, addr };
        let ready = wait_until(Duration::from_secs(20), || {
            std::net::TcpStream::connect(addr).is_ok()
                && http_get(addr, "/status").json()["value"]["ready"] == true
        });
        assert!(ready, "chromedriver did not become ready");
        d
    }

    /// A headless Chromium with a fresh profile in `profile`.
    pub fn session(&self, profile: &Path, width: u32, height: u32) -> Session {
        self.session_with(profile, width, height, true)
    }

    /// As `session`, with the page's JavaScript on or off.
    pub fn session_with(
        &self,
        profile: &Path,
        width: u32,
        height: u32,
        javascript: bool,
    ) -> Session {
        let js_setting = if javascript { 1 } else { 2 };
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            "--no-first-run",
                            "--disable-background-networking",
                            "--disable-component-update",
                            "--disable-sync",
                            "--hide-scrollbars",
                            format!("--user-data-dir={}", profile.display()),
                            format!("--window-size={width},{height}"),
                        ],
                        "prefs": {
                            "profile.managed_default_content_settings.javascript": js_setting
                        }
                    }
                }
            }
        });
        let v = call(self.addr, "POST", "/session", Some(caps));
        let id = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        Session {
            driver: self.addr,
            id,
        }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One WebDriver command; returns its `value`, panics on a WebDriver error.
fn call(driver: SocketAddr, method: &str, path: &str, body: Option<Value>) -> Value {
    let body = body.map(|b| b.to_string());
    let r = http_request(driver, method, path, body.as_deref());
    let v: Value = serde_json::from_str(&r.body)
        .unwrap_or_else(|e| panic!("{method} {path}: bad reply ({e}): {}", r.body));
    if r.status != 200 {
        panic!("{method} {path}: {} {}", r.status, v["value"]);
    }
    v["value"].clone()
}

/// A browser session, closed when dropped.
pub struct Session {
    driver: SocketAddr,
    id: String,
}

impl Session {
    fn cmd(&self, method: &str, what: &str, body: Option<Value>) -> Value {
        call(
            self.driver,
            method,
            &format!("/session/{}{what}", self.id),
            body,
        )
    }

    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn refresh(&self) {
        self.cmd("POST", "/refresh", Some(json!({})));
    }

    /// Runs `script` (a function body; `return` gives the result).
    pub fn js(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Waits until `script` returns true.
    pub fn wait_js(&self, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if self.js(script) == true {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting: {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn find(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        v[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    pub fn click(&self, css: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    /// Types `text` into the element, as a user would (key events, `input` events).
    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// The rendered text of the first element matching `css`.
    pub fn text(&self, css: &str) -> String {
        let e = self.find(css);
        self.cmd("GET", &format!("/element/{e}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Whether the first element matching `css` is displayed.
    pub fn displayed(&self, css: &str) -> bool {
        let e = self.find(css);
        self.cmd("GET", &format!("/element/{e}/displayed"), None) == true
    }

    /// A Chrome DevTools command (media emulation, device metrics).
    pub fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.cmd(
            "POST",
            "/goog/cdp/execute",
            Some(json!({ "cmd": cmd, "params": params })),
        )
    }

    /// Makes the page see `prefers-color-scheme: scheme`.
    pub fn emulate_color_scheme(&self, scheme: &str) {
        self.cdp(
            "Emulation.setEmulatedMedia",
            json!({ "features": [{ "name": "prefers-color-scheme", "value": scheme }] }),
        );
    }

    /// A viewport of `width` x `height` CSS pixels, as a phone (`mobile`) or a desktop.
    pub fn viewport(&self, width: u32, height: u32, mobile: bool) {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile }),
        );
    }

    /// Saves a PNG of the viewport to `path`.
    pub fn screenshot(&self, path: &Path) {
        let v = self.cmd("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 screenshot"))
            .expect("decode screenshot");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = http_request(
            self.driver,
            "DELETE",
            &format!("/session/{}", self.id),
            None,
        );
    }
}
