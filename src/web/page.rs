//! The status page: server-rendered HTML (complete and readable without JavaScript), its
//! embedded assets, and the live updates its script follows.
//!
//! One renderer: the same functions produce the first page and the HTML fragments pushed
//! by `/events` (and served by `/page.json` for polling), so the page never shows two
//! renderings of one thing. The script only swaps fragments in, filters rows and keeps
//! the theme. Every asset is compiled in (`include_str!`): no CDN, no web font.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::fmt::Write;
use std::time::{Duration, SystemTime};

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use futures_util::stream::Stream;
use serde_json::{json, Value};

use super::api::{
    self, cluster_body, parse_query, record_rows, search_text, status_body, RecordFilter, RecordRow,
};
use super::{rfc3339, StreamSlot, WebState};
use crate::records::Snapshot;

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_CSS: &str = include_str!("assets/app.css");
const APP_JS: &str = include_str!("assets/app.js");
const THEME_JS: &str = include_str!("assets/theme.js");
const FAVICON_SVG: &str = include_str!("assets/favicon.svg");

/// Most `/events` streams open at once; past that a 503 (the page then polls).
pub const MAX_EVENT_STREAMS: usize = 64;
/// Least time between two pushes on one stream: bursts of changes are coalesced.
const MIN_PUSH_INTERVAL: Duration = Duration::from_millis(250);
/// How often health, cluster and counters are pushed when nothing else changes.
const STATUS_PUSH_INTERVAL: Duration = Duration::from_secs(2);

/// Escapes text for HTML content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Replaces each `{{key}}` of `template` in one pass (a value containing `{{...}}` is not
/// expanded again). Unknown keys are left as they are, which the tests catch.
pub fn fill(template: &str, values: &BTreeMap<&str, String>) -> String {
    let mut out = String::with_capacity(template.len() * 2);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) if values.contains_key(&after[..end]) => {
                out.push_str(&values[&after[..end]]);
                rest = &after[end + 2..];
            }
            _ => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A value of a component's details, in a few words.
fn summarize(v: &Value) -> String {
    match v {
        Value::Null => "none".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => {
            let mut parts: Vec<String> = a.iter().take(4).map(summarize).collect();
            if a.len() > 4 {
                parts.push(format!("+{} more", a.len() - 4));
            }
            if parts.is_empty() {
                "none".into()
            } else {
                parts.join(", ")
            }
        }
        Value::Array(a) => a.len().to_string(),
        Value::Object(o) => o.len().to_string(),
    }
}

/// For a map of files to reports with `bad_lines` (the hosts source's `files`): every bad
/// line as `path:line: reason`. `None` for anything else.
fn bad_lines(v: &Value) -> Option<Vec<String>> {
    let files = v.as_object()?;
    if files.is_empty() || !files.values().all(|f| f["bad_lines"].is_array()) {
        return None;
    }
    let mut out = Vec::new();
    for (path, f) in files {
        for b in f["bad_lines"].as_array().into_iter().flatten() {
            out.push(format!(
                "{path}:{}: {}",
                b["line"].as_u64().unwrap_or(0),
                b["reason"].as_str().unwrap_or("")
            ));
        }
    }
    Some(out)
}

fn label_of(key: &str) -> String {
    key.replace(['_', '-'], " ")
}

/// The health cards, one per component.
pub fn render_components(status: &Value) -> String {
    let mut out = String::new();
    let Some(components) = status["components"].as_object() else {
        return out;
    };
    for (name, c) in components {
        let healthy = c["healthy"].as_bool().unwrap_or(false);
        let critical = c["critical"].as_bool().unwrap_or(false);
        let class = match (healthy, critical) {
            (true, _) => "ok",
            (false, true) => "bad",
            (false, false) => "warn",
        };
        let state = c["state"].as_str().unwrap_or("");
        let _ = write!(
            out,
            "<article class=\"card\" data-component=\"{n}\" data-health=\"{class}\"><header><h3>{n}</h3><span class=\"badge {class}\">{s}</span></header><dl>",
            n = esc(name),
            s = esc(if state.is_empty() { if healthy { "healthy" } else { "unhealthy" } } else { state }),
        );
        if let Some(details) = c["details"].as_object() {
            for (k, v) in details {
                if let Some(bad) = bad_lines(v) {
                    let _ = write!(
                        out,
                        "<dt>{}</dt><dd class=\"num\">{}</dd><dt>bad lines</dt><dd class=\"num{}\" title=\"{}\">{}</dd>",
                        esc(&label_of(k)),
                        v.as_object().map_or(0, |o| o.len()),
                        if bad.is_empty() { "" } else { " warn-text" },
                        esc(&bad.join("\n")),
                        bad.len()
                    );
                    continue;
                }
                let _ = write!(
                    out,
                    "<dt>{}</dt><dd>{}</dd>",
                    esc(&label_of(k)),
                    esc(&summarize(v))
                );
            }
        }
        if let Some(counters) = c["counters"].as_object() {
            for (k, v) in counters {
                let _ = write!(
                    out,
                    "<dt>{} (total)</dt><dd class=\"num\">{}</dd>",
                    esc(&label_of(k)),
                    esc(&summarize(v))
                );
            }
        }
        out.push_str("</dl></article>");
    }
    out
}

/// Container names by id, when the Docker source publishes `details.containers` as objects
/// with `id` and `name` (the console reads the same).
pub fn container_names(status: &Value) -> HashMap<String, String> {
    status["components"]["docker"]["details"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let id = c["id"].as_str()?;
            let name = c["name"].as_str()?.trim_start_matches('/');
            Some((id.to_string(), name.to_string()))
        })
        .collect()
}

/// A container is shown by its name when known, else by its id shortened as `docker ps`
/// does; paths and the rest in full.
fn owner_label<'a>(r: &'a RecordRow, names: &'a HashMap<String, String>) -> &'a str {
    if r.source != "docker" {
        return &r.owner;
    }
    match names.get(&r.owner) {
        Some(name) => name,
        None if r.owner.len() > 12 && r.owner.is_ascii() => &r.owner[..12],
        None => &r.owner,
    }
}

/// The records table's rows, each with the text the filter box searches.
pub fn render_record_rows(
    rows: &[RecordRow],
    filter: &RecordFilter,
    names: &HashMap<String, String>,
) -> String {
    let mut out = String::with_capacity(rows.len() * 320);
    for r in rows {
        let hidden = if filter.matches(r) { "" } else { " hidden" };
        let _ = write!(
            out,
            "<tr data-search=\"{search}\"{hidden}>\
<td data-label=\"Name\" class=\"name\">{name}</td>\
<td data-label=\"Type\"><span class=\"tag\">{rtype}</span></td>\
<td data-label=\"Value\" class=\"mono value\">{value}</td>\
<td data-label=\"TTL\" class=\"num\">{ttl}</td>\
<td data-label=\"Source\"><span class=\"src src-{source}\">{source}</span></td>\
<td data-label=\"Owner\" class=\"mono owner\" title=\"{owner_full}\">{owner}</td>\
<td data-label=\"Node\">{node}</td></tr>",
            search = esc(&search_text(r)),
            name = esc(&r.hostname),
            rtype = esc(&r.rtype),
            value = esc(&r.ip_address),
            ttl = r.ttl,
            source = esc(r.source),
            owner_full = esc(&r.owner),
            owner = esc(owner_label(r, names)),
            node = esc(&r.node),
        );
    }
    out
}

/// The cluster table's rows.
pub fn render_cluster(cluster: &Value) -> String {
    let mut out = String::new();
    for m in cluster["members"].as_array().into_iter().flatten() {
        let state = m["state"].as_str().unwrap_or("unknown");
        let class = match state {
            "alive" => "ok",
            "suspect" => "warn",
            _ => "bad",
        };
        let local = if m["local"].as_bool() == Some(true) {
            " <span class=\"muted\">(this node)</span>"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<tr><td data-label=\"Node\" class=\"name\">{name}{local}</td>\
<td data-label=\"Address\" class=\"mono\">{addr}</td>\
<td data-label=\"State\"><span class=\"badge {class}\">{state}</span></td>\
<td data-label=\"Records\" class=\"num\">{records}</td>\
<td data-label=\"Last seen\">{seen}</td></tr>",
            name = esc(m["name"].as_str().unwrap_or("")),
            addr = esc(m["address"].as_str().unwrap_or("—")),
            state = esc(state),
            records = m["records"].as_u64().unwrap_or(0),
            seen = esc(&m["last_seen"].as_str().unwrap_or("—").replace('T', " ")),
        );
    }
    out
}

/// Query counters: answers by rcode, forwarded, upstream failures.
pub fn render_queries(status: &Value) -> String {
    let q = &status["queries"];
    let mut out = String::new();
    let mut total = 0;
    if let Some(by) = q["by_rcode"].as_object() {
        for (rc, n) in by {
            let n = n.as_u64().unwrap_or(0);
            total += n;
            if n > 0 || matches!(rc.as_str(), "NOERROR" | "NXDOMAIN" | "SERVFAIL" | "REFUSED") {
                let _ = write!(
                    out,
                    "<div class=\"stat\"><dt>{}</dt><dd class=\"num\">{n}</dd></div>",
                    esc(rc)
                );
            }
        }
    }
    let mut head =
        format!("<div class=\"stat\"><dt>answered</dt><dd class=\"num\">{total}</dd></div>");
    for (k, label) in [
        ("forwarded", "forwarded"),
        ("forward_failures", "upstream failures"),
    ] {
        let _ = write!(
            out,
            "<div class=\"stat\"><dt>{label}</dt><dd class=\"num\">{}</dd></div>",
            q[k].as_u64().unwrap_or(0)
        );
    }
    head.push_str(&out);
    head
}

/// The records table rendered once per snapshot (and container names), shared by every
/// event stream: a burst of changes with many pages open renders each version once.
#[derive(Default)]
pub struct RecordsHtmlCache {
    last: std::sync::Mutex<Option<CachedRecords>>,
}

struct CachedRecords {
    generation: u64,
    names: HashMap<String, String>,
    html: std::sync::Arc<str>,
    total: usize,
}

impl RecordsHtmlCache {
    /// The rows of `snap` (unfiltered) and their count.
    pub fn get(
        &self,
        snap: &Snapshot,
        names: HashMap<String, String>,
    ) -> (std::sync::Arc<str>, usize) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = last.as_ref() {
            if c.generation == snap.generation && c.names == names {
                return (c.html.clone(), c.total);
            }
        }
        let rows = record_rows(snap);
        let html: std::sync::Arc<str> =
            render_record_rows(&rows, &RecordFilter::default(), &names).into();
        *last = Some(CachedRecords {
            generation: snap.generation,
            names,
            html: html.clone(),
            total: rows.len(),
        });
        (html, rows.len())
    }
}

/// Everything the page shows that changes, as HTML fragments. `records` only when asked
/// (pushes skip it when the snapshot did not change).
pub fn page_parts(state: &WebState, snap: &Snapshot, with_records: bool) -> Value {
    let status = status_body(state, snap);
    let cluster = cluster_body(state, snap);
    let mut parts = json!({
        "generation": snap.generation,
        "healthy": status["status"] == "healthy",
        "components": render_components(&status),
        "cluster": render_cluster(&cluster),
        "members": cluster["total_members"],
        "queries": render_queries(&status),
        "updated": rfc3339(SystemTime::now()).replace('T', " "),
        "uptime_seconds": status["uptime_seconds"],
    });
    if with_records {
        let (html, total) = state.records_html.get(snap, container_names(&status));
        parts["records"] = Value::String(html.to_string());
        parts["records_total"] = json!(total);
    }
    parts
}

pub async fn index(State(state): State<WebState>, RawQuery(q): RawQuery) -> Response {
    let filter = match parse_query(q.as_deref(), &["q"]).and_then(|p| RecordFilter::from_params(&p))
    {
        Ok(f) => f,
        Err(e) => return api::error(StatusCode::BAD_REQUEST, e),
    };
    let snap = state.shared.reader.load_full();
    Html(render_index(&state, &snap, &filter)).into_response()
}

/// The whole page, `filter` applied to the records (the filter box without JavaScript).
pub fn render_index(state: &WebState, snap: &Snapshot, filter: &RecordFilter) -> String {
    let status = status_body(state, snap);
    let cluster = cluster_body(state, snap);
    let rows = record_rows(snap);
    let shown = rows.iter().filter(|r| filter.matches(r)).count();
    let healthy = status["status"] == "healthy";
    let sh = &state.shared;
    let mut v: BTreeMap<&str, String> = BTreeMap::new();
    v.insert("node", esc(&sh.config.node_name));
    v.insert("domain", esc(sh.config.domain.as_str()));
    v.insert("version", esc(env!("CARGO_PKG_VERSION")));
    v.insert(
        "dns_listen",
        esc(&sh
            .dns_addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")),
    );
    v.insert("http_listen", esc(&state.http_addr.to_string()));
    v.insert("overall_class", if healthy { "ok" } else { "bad" }.into());
    v.insert(
        "overall",
        if healthy { "healthy" } else { "unhealthy" }.into(),
    );
    v.insert("components", render_components(&status));
    v.insert(
        "records",
        render_record_rows(&rows, filter, &container_names(&status)),
    );
    v.insert(
        "records_count",
        if filter == &RecordFilter::default() {
            rows.len().to_string()
        } else {
            format!("{shown} of {}", rows.len())
        },
    );
    v.insert(
        "empty_hidden",
        if shown == 0 { "" } else { "hidden" }.into(),
    );
    v.insert("q", esc(filter.q.as_deref().unwrap_or("")));
    v.insert("cluster", render_cluster(&cluster));
    v.insert("members", cluster["total_members"].to_string());
    v.insert(
        "cluster_mode",
        if cluster["enabled"] == true {
            "clustered"
        } else {
            "single node"
        }
        .into(),
    );
    v.insert("queries", render_queries(&status));
    v.insert("generation", snap.generation.to_string());
    v.insert(
        "updated",
        esc(&rfc3339(SystemTime::now()).replace('T', " ")),
    );
    v.insert("started", esc(&rfc3339(sh.started).replace('T', " ")));
    fill(INDEX_HTML, &v)
}

/// `/page.json`: the fragments with records, for the script's polling fallback.
pub async fn page_json(State(state): State<WebState>, RawQuery(q): RawQuery) -> Response {
    if let Err(e) = parse_query(q.as_deref(), &[]) {
        return api::error(StatusCode::BAD_REQUEST, e);
    }
    let snap = state.shared.reader.load_full();
    Json(page_parts(&state, &snap, true)).into_response()
}

pub async fn asset(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "theme.js" => (THEME_JS, "text/javascript; charset=utf-8"),
        "favicon.svg" => (FAVICON_SVG, "image/svg+xml"),
        _ => return api::error(StatusCode::NOT_FOUND, format!("no such asset: {file}")),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Assets change only with the binary; the page links them with `?v=VERSION`.
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// `/events`: server-sent `page` events, each the JSON of `page_parts`. The first carries
/// everything; later ones carry records only when a new snapshot was published. Pushed on
/// each new snapshot (at most every 250 ms) and every 2 s.
pub async fn events(State(state): State<WebState>, RawQuery(q): RawQuery) -> Response {
    if let Err(e) = parse_query(q.as_deref(), &[]) {
        return api::error(StatusCode::BAD_REQUEST, e);
    }
    let Some(slot) = StreamSlot::take(&state.event_streams, MAX_EVENT_STREAMS) else {
        return api::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many open event streams; poll /page.json instead".into(),
        );
    };
    Sse::new(event_stream(state, slot))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// The state an event stream carries from one push to the next.
struct Pusher {
    state: WebState,
    generation: tokio::sync::watch::Receiver<u64>,
    tick: tokio::time::Interval,
    /// The snapshot generation last pushed; `None` before the first push.
    pushed: Option<u64>,
    /// No push before this instant (throttle).
    not_before: tokio::time::Instant,
    /// Holds this stream's place among `MAX_EVENT_STREAMS`.
    _slot: StreamSlot,
}

/// Why the stream wakes.
enum Wake {
    NewSnapshot,
    Tick,
    Stop,
}

fn event_stream(
    state: WebState,
    slot: StreamSlot,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let mut generation = state.shared.reader.subscribe();
    generation.borrow_and_update();
    let start = tokio::time::Instant::now();
    let mut tick = tokio::time::interval_at(start + STATUS_PUSH_INTERVAL, STATUS_PUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let pusher = Pusher {
        state,
        generation,
        tick,
        pushed: None,
        not_before: start,
        _slot: slot,
    };
    futures_util::stream::unfold(pusher, |mut p| async move {
        if p.pushed.is_some() {
            let cancel = p.state.cancel.clone();
            tokio::select! {
                _ = cancel.cancelled() => return None,
                _ = tokio::time::sleep_until(p.not_before) => {}
            }
            let wake = tokio::select! {
                _ = cancel.cancelled() => Wake::Stop,
                changed = p.generation.changed() => match changed {
                    Ok(()) => Wake::NewSnapshot,
                    Err(_) => Wake::Stop,
                },
                _ = p.tick.tick() => Wake::Tick,
            };
            match wake {
                Wake::Stop => return None,
                Wake::NewSnapshot | Wake::Tick => {}
            }
        }
        p.generation.borrow_and_update();
        let snap = p.state.shared.reader.load_full();
        let with_records = p.pushed != Some(snap.generation);
        let parts = page_parts(&p.state, &snap, with_records);
        p.pushed = Some(snap.generation);
        p.not_before = tokio::time::Instant::now() + MIN_PUSH_INTERVAL;
        let event = Event::default().event("page").data(parts.to_string());
        Some((Ok(event), p))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_html() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn fills_templates_in_one_pass() {
        let v: BTreeMap<&str, String> = [("a", "{{b}}".to_string()), ("b", "B".to_string())]
            .into_iter()
            .collect();
        assert_eq!(fill("x{{a}}y{{b}}z{{c}}{{", &v), "x{{b}}yBz{{c}}{{");
    }

    #[test]
    fn index_template_has_only_known_keys() {
        let known = [
            "node",
            "domain",
            "version",
            "dns_listen",
            "http_listen",
            "overall_class",
            "overall",
            "components",
            "records",
            "records_count",
            "empty_hidden",
            "q",
            "cluster",
            "members",
            "cluster_mode",
            "queries",
            "generation",
            "updated",
            "started",
        ];
        let v: BTreeMap<&str, String> = known.iter().map(|k| (*k, String::new())).collect();
        let out = fill(INDEX_HTML, &v);
        assert!(!out.contains("{{"), "unfilled placeholder in index.html");
        for asset in [APP_CSS, APP_JS, THEME_JS, INDEX_HTML] {
            assert!(
                !asset.contains("http://") && !asset.contains("https://"),
                "external URL in an asset"
            );
        }
    }

    #[test]
    fn record_rows_escape_values_and_carry_search_text() {
        let rows = vec![RecordRow {
            hostname: "txt.docker".into(),
            ip_address: "<script>{{records}}</script>".into(),
            ttl: 10,
            rtype: "TXT".into(),
            source: "static",
            owner: "config".into(),
            node: "n1".into(),
        }];
        let html = render_record_rows(&rows, &RecordFilter::default(), &HashMap::new());
        assert!(html.contains("&lt;script&gt;{{records}}&lt;/script&gt;"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("data-search=\"txt.docker txt &lt;script&gt;"));
        let filter = RecordFilter {
            q: Some("nomatch".into()),
            ..Default::default()
        };
        assert!(render_record_rows(&rows, &filter, &HashMap::new()).contains(" hidden>"));
    }

    #[test]
    fn containers_are_shown_by_name_when_known() {
        let row = |owner: &str| RecordRow {
            hostname: "web.docker".into(),
            ip_address: "172.17.0.2".into(),
            ttl: 10,
            rtype: "A".into(),
            source: "docker",
            owner: owner.into(),
            node: "n1".into(),
        };
        let status = json!({"components": {"docker": {"details": {"containers": [
            {"id": "0123456789abcdef", "name": "/web-1", "image": "nginx"}
        ]}}}});
        let names = container_names(&status);
        let known = row("0123456789abcdef");
        let unknown = row("fedcba9876543210");
        assert_eq!(owner_label(&known, &names), "web-1");
        assert_eq!(owner_label(&unknown, &names), "fedcba987654");
        assert!(container_names(
            &json!({"components": {"docker": {"details": {"containers": 3}}}})
        )
        .is_empty());
    }

    #[test]
    fn summarizes_details() {
        assert_eq!(summarize(&json!("x")), "x");
        assert_eq!(summarize(&json!(true)), "yes");
        assert_eq!(summarize(&json!(["a", "b"])), "a, b");
        assert_eq!(summarize(&json!([1, 2, 3, 4, 5, 6])), "1, 2, 3, 4, +2 more");
        assert_eq!(summarize(&json!([])), "none");
        assert_eq!(summarize(&json!({"a": 1, "b": 2})), "2");
        assert_eq!(summarize(&json!([{"a": 1}])), "1");
        let files = json!({"/h/a": {"records": 1, "bad_lines": [{"line": 2, "reason": "bad"}]}, "/h/b": {"records": 2, "bad_lines": []}});
        assert_eq!(bad_lines(&files), Some(vec!["/h/a:2: bad".to_string()]));
        assert_eq!(bad_lines(&json!({"a": 1})), None);
    }
}
