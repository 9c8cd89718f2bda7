//! The status page in headless Chromium (Debian's chromium and chromium-driver, installed by
//! scripts/test): live updates, the filter box, the theme toggle kept across reloads, and
//! screenshots of both themes at 1280x800 and on a 390-wide phone under
//! target/web-screenshots/.

use std::path::PathBuf;

use crate::support::*;
use crate::webdriver::Chromedriver;

fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/web-screenshots")
}

/// The page's background as (r, g, b).
const BODY_BG: &str = "return getComputedStyle(document.body).backgroundColor;";

fn is_dark(rgb: &serde_json::Value) -> bool {
    let s = rgb.as_str().unwrap_or_default();
    let n: Vec<u32> = s
        .trim_start_matches("rgb(")
        .trim_end_matches(')')
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    assert_eq!(n.len(), 3, "unexpected colour {s}");
    n.iter().sum::<u32>() < 3 * 80
}

#[test]
fn web_page_in_chromium_updates_live_filters_and_keeps_theme() {
    let hosts = tempfile::tempdir().unwrap();
    std::fs::write(
        hosts.path().join("base"),
        "10.1.0.1 alpha\n10.1.0.2 alpine\nfd00::3 gamma\n",
    )
    .unwrap();
    let j = Joyride::start(&[
        "--no-forward",
        "--hosts-dir",
        hosts.path().to_str().unwrap(),
    ]);
    let url = format!("http://{}/", j.http_addr());

    let driver = Chromedriver::start();
    let profile = tempfile::tempdir().unwrap();
    let s = driver.session(profile.path(), 1280, 800);
    s.viewport(1280, 800, false);
    s.emulate_color_scheme("light");
    s.goto(&url);
    s.wait_js(
        "live updates connected",
        "return document.getElementById('live').dataset.state === 'live';",
    );
    let rows = "return Array.from(document.querySelectorAll('#records-body tr'))\
                .filter(r => !r.hidden).map(r => r.cells[0].textContent);";
    assert_eq!(
        s.js(rows),
        serde_json::json!(["alpha.docker", "alpine.docker", "gamma.docker", "ns.docker"])
    );
    assert!(!is_dark(&s.js(BODY_BG)), "light system theme: light page");

    // A record added while the page is open appears without a reload.
    s.js("window.__sameDocument = 'yes'; return null;");
    std::fs::write(hosts.path().join("late"), "10.1.0.9 beta\n").unwrap();
    s.wait_js(
        "the new row",
        "return Array.from(document.querySelectorAll('#records-body td.name'))\
         .some(td => td.textContent === 'beta.docker');",
    );
    assert_eq!(
        s.js("return window.__sameDocument;"),
        "yes",
        "the page was not reloaded"
    );

    // The filter box narrows the table as one types, and says so in the count.
    s.type_into("#filter", "alp");
    s.wait_js(
        "filtered rows",
        "return document.querySelectorAll('#records-body tr:not([hidden])').length === 2;",
    );
    assert_eq!(
        s.js(rows),
        serde_json::json!(["alpha.docker", "alpine.docker"])
    );
    assert_eq!(
        s.js("return document.getElementById('record-count').textContent;"),
        "2 of 5"
    );
    assert_eq!(s.js("return location.search;"), "?q=alp");
    // A filter matching nothing says so.
    s.type_into("#filter", "zzz");
    s.wait_js(
        "empty message",
        "return !document.getElementById('records-empty').hidden;",
    );
    // Clear it again (select all, delete) and the rows come back.
    s.js(
        "const f = document.getElementById('filter'); f.value = ''; \
          f.dispatchEvent(new Event('input')); return null;",
    );
    s.wait_js(
        "all rows back",
        "return document.querySelectorAll('#records-body tr:not([hidden])').length === 5;",
    );

    // Column headers sort, and the order survives live updates.
    s.click("#records thead th:nth-child(1)");
    s.click("#records thead th:nth-child(1)");
    let first = "return document.querySelector('#records-body tr').cells[0].textContent;";
    assert_eq!(s.js(first), "ns.docker", "name, descending");
    std::fs::write(hosts.path().join("later"), "10.1.0.10 zulu\n").unwrap();
    s.wait_js(
        "zulu row, sorted first",
        "return document.querySelector('#records-body tr').cells[0].textContent === 'zulu.docker';",
    );
    s.click("#records thead th:nth-child(1)");
    assert_eq!(s.js(first), "alpha.docker", "name, ascending");

    let dir = screenshot_dir();
    s.screenshot(&dir.join("page-light-1280x800.png"));

    // The toggle overrides the system theme...
    s.click("#theme-toggle");
    assert_eq!(
        s.js("return document.documentElement.dataset.theme;"),
        "dark"
    );
    assert!(is_dark(&s.js(BODY_BG)), "toggled to dark");
    s.screenshot(&dir.join("page-dark-1280x800.png"));
    // ...and is remembered across reloads.
    s.refresh();
    s.wait_js(
        "reloaded page live",
        "return document.getElementById('live').dataset.state === 'live';",
    );
    assert_eq!(
        s.js("return document.documentElement.dataset.theme;"),
        "dark"
    );
    assert!(is_dark(&s.js(BODY_BG)), "dark kept after reload");

    // A phone: no sideways scrolling, rows stacked as cards.
    s.viewport(390, 844, true);
    s.refresh();
    s.wait_js(
        "phone page live",
        "return document.getElementById('live').dataset.state === 'live';",
    );
    assert_eq!(
        s.js("return document.documentElement.scrollWidth <= window.innerWidth;"),
        true,
        "the page fits 390 pixels"
    );
    s.screenshot(&dir.join("page-dark-390.png"));
    s.click("#theme-toggle");
    assert!(!is_dark(&s.js(BODY_BG)), "toggled back to light");
    s.screenshot(&dir.join("page-light-390.png"));

    // Back on the system's theme, nothing is remembered: the page follows the system again,
    // here when it turns dark.
    assert_eq!(
        s.js("return localStorage.getItem('joyride-theme');"),
        serde_json::Value::Null
    );
    s.emulate_color_scheme("dark");
    s.viewport(1280, 800, false);
    s.refresh();
    s.wait_js(
        "page after reset",
        "return document.readyState === 'complete';",
    );
    assert_eq!(
        s.js("return document.documentElement.dataset.theme || null;"),
        serde_json::Value::Null
    );
    assert!(
        is_dark(&s.js(BODY_BG)),
        "follows prefers-color-scheme: dark"
    );
}

#[test]
fn web_page_in_chromium_reads_without_javascript() {
    let hosts = tempfile::tempdir().unwrap();
    std::fs::write(hosts.path().join("base"), "10.1.0.1 alpha\n10.1.0.2 beta\n").unwrap();
    let j = Joyride::start(&[
        "--no-forward",
        "--hosts-dir",
        hosts.path().to_str().unwrap(),
    ]);
    let driver = Chromedriver::start();
    let profile = tempfile::tempdir().unwrap();
    let s = driver.session_with(profile.path(), 1280, 800, false);
    s.viewport(1280, 800, false);
    s.emulate_color_scheme("light");
    s.goto(&format!("http://{}/?q=beta", j.http_addr()));
    assert_eq!(s.text("#live"), "static", "the page's script did not run");
    assert!(!s.displayed("#theme-toggle"), "no toggle without a script");
    assert!(s.displayed("#filter-form button"), "the filter submits");
    assert_eq!(s.text("#record-count"), "1 of 3");
    assert!(s.displayed("#records-body tr:nth-child(2)"), "beta shown");
    assert!(
        !s.displayed("#records-body tr:nth-child(1)"),
        "alpha hidden"
    );
    assert!(s.text("#components").contains("hosts"));
    s.screenshot(&screenshot_dir().join("page-nojs-1280x800.png"));
}
