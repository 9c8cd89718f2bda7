//! The hosts-directory source: every file in `--hosts-dir`, in /etc/hosts format, served
//! live.
//!
//! Each file is one owner (its path): a change to it replaces that file's records as a whole.
//! Changes arrive by inotify (the `notify` crate); the directory is watched first and listed
//! second, so no change between the two is missed. A directory that does not exist yet is
//! checked for once a second until it appears. A bad line is reported with its file and line
//! number and skipped; an unreadable file keeps the records it had.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::records::{Name, RData, Record, SourceKind, StoreHandle};
use crate::status::ComponentStatus;

/// Events queued from the watcher thread before it marks "rescan everything" instead.
const EVENT_CHANNEL_CAPACITY: usize = 1024;
/// Quiet time after the last event before files are read, so a burst of writes to one
/// file is read once, complete.
const SETTLE: Duration = Duration::from_millis(25);
/// Longest a change waits for the burst to end.
const MAX_SETTLE: Duration = Duration::from_millis(300);
/// How often a missing directory is looked for, and a present one checked still to exist.
const DIR_CHECK: Duration = Duration::from_secs(1);

/// One bad line of a hosts file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LineError {
    pub line: usize,
    pub reason: String,
}

/// Parses hosts-format text: `IP NAME [NAME...]`, `#` comments. Names without a dot are
/// qualified with `zone`. Returns the records of the good lines and the bad lines.
pub fn parse_hosts(text: &str, zone: &Name) -> (Vec<Record>, Vec<LineError>) {
    let mut records = Vec::new();
    let mut errors = Vec::new();
    // One line's names, reused from line to line.
    let mut names = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("");
        let mut parts = line.split_whitespace();
        let Some(ip_text) = parts.next() else {
            continue;
        };
        let bad = |reason: String| LineError {
            line: i + 1,
            reason,
        };
        let ip = match ip_text
            .split('%')
            .next()
            .unwrap_or(ip_text)
            .parse::<IpAddr>()
        {
            Ok(ip) => ip,
            Err(_) => {
                errors.push(bad(format!("{ip_text:?} is not an IP address")));
                continue;
            }
        };
        names.clear();
        let mut bad_name = None;
        let mut any = false;
        for n in parts {
            any = true;
            match Name::qualify(n, zone) {
                Ok(name) => names.push(name),
                Err(e) => {
                    bad_name = Some(format!("name {n:?}: {e}"));
                    break;
                }
            }
        }
        if !any {
            errors.push(bad(format!("no name after {ip_text}")));
        } else if let Some(reason) = bad_name {
            errors.push(bad(reason));
        } else {
            records.extend(names.drain(..).map(|n| Record::new(n, RData::address(ip))));
        }
    }
    (records, errors)
}

/// What the source knows of one file, for the status page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileReport {
    pub records: usize,
    pub bad_lines: Vec<LineError>,
}

/// The source's state as the web shows it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HostsStatus {
    pub directory: PathBuf,
    /// Whether the directory exists (and is watched).
    pub present: bool,
    pub files: BTreeMap<PathBuf, FileReport>,
}

#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    #[error("cannot watch hosts directory {dir}: {source}")]
    Watch {
        dir: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::records::store::StoreClosed),
}

/// Whether an event can mean a file's content changed. Opening or reading a file is not a
/// change, and reacting to it would loop: the source's own read of a file is such an event.
/// Closing a file written to is (the end of a write).
fn changes_content(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    use notify::EventKind;
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// The running source.
pub struct HostsSource {
    dir: PathBuf,
    zone: Name,
    store: StoreHandle,
    /// Where the source reports itself (web page, API, metrics).
    status: watch::Sender<ComponentStatus>,
    /// What `status` shows in its details.
    report: HostsStatus,
    /// Bad lines reported since start (a metric).
    bad_lines_total: u64,
    /// Files (re)loaded since start (a metric).
    loads_total: u64,
}

/// Per file: a hash of the content last served (unchanged content is not re-applied nor
/// re-reported).
type Served = HashMap<PathBuf, u64>;

impl HostsSource {
    pub fn new(
        dir: PathBuf,
        zone: Name,
        store: StoreHandle,
        status: watch::Sender<ComponentStatus>,
    ) -> HostsSource {
        let source = HostsSource {
            report: HostsStatus {
                directory: dir.clone(),
                ..Default::default()
            },
            dir,
            zone,
            store,
            status,
            bad_lines_total: 0,
            loads_total: 0,
        };
        source.publish();
        source
    }

    fn publish(&self) {
        let present = self.report.present;
        self.status.send_replace(ComponentStatus {
            healthy: present,
            critical: false,
            state: if present {
                "watching"
            } else {
                "waiting for directory"
            }
            .to_string(),
            details: serde_json::to_value(&self.report).unwrap_or_default(),
            counters: [
                ("bad_lines".to_string(), self.bad_lines_total),
                ("file_loads".to_string(), self.loads_total),
            ]
            .into_iter()
            .collect(),
        });
    }

    pub async fn run(mut self, cancel: CancellationToken) -> Result<(), HostsError> {
        let mut served = Served::new();
        loop {
            if !self.wait_for_dir(&cancel).await {
                return Ok(());
            }
            let (tx, mut rx) = mpsc::channel::<notify::Event>(EVENT_CHANNEL_CAPACITY);
            let overflow = Arc::new(AtomicBool::new(false));
            let flag = overflow.clone();
            let mut watcher =
                notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
                    Ok(ev) if !changes_content(&ev.kind) => {}
                    Ok(ev) => {
                        if tx.try_send(ev).is_err() {
                            flag.store(true, Ordering::Relaxed);
                        }
                    }
                    Err(_) => flag.store(true, Ordering::Relaxed),
                })
                .map_err(|source| HostsError::Watch {
                    dir: self.dir.clone(),
                    source,
                })?;
            if let Err(source) = watcher.watch(&self.dir, RecursiveMode::NonRecursive) {
                warn!(dir = %self.dir.display(), error = %source, "cannot watch hosts directory; retrying");
                tokio::time::sleep(DIR_CHECK).await;
                continue;
            }
            info!(dir = %self.dir.display(), "watching hosts directory");
            self.report.present = true;
            self.publish();
            self.rescan(&mut served).await?;

            let mut check = tokio::time::interval(DIR_CHECK);
            loop {
                let mut paths: HashSet<PathBuf> = HashSet::new();
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    _ = check.tick() => {}
                    ev = rx.recv() => {
                        if let Some(ev) = ev {
                            paths.extend(ev.paths);
                        }
                        let deadline = tokio::time::Instant::now() + MAX_SETTLE;
                        while let Ok(Some(ev)) = tokio::time::timeout_at(
                            deadline.min(tokio::time::Instant::now() + SETTLE),
                            rx.recv(),
                        ).await {
                            paths.extend(ev.paths);
                        }
                    }
                }
                if !self.dir.is_dir() {
                    warn!(dir = %self.dir.display(), "hosts directory disappeared; withdrawing its records");
                    for path in served.keys().cloned().collect::<Vec<_>>() {
                        self.withdraw(&path, &mut served).await?;
                    }
                    self.report.present = false;
                    self.publish();
                    break;
                }
                if overflow.swap(false, Ordering::Relaxed) {
                    self.rescan(&mut served).await?;
                    continue;
                }
                for path in paths {
                    if path.parent() == Some(self.dir.as_path()) {
                        self.reload(&path, &mut served).await?;
                    }
                }
            }
        }
    }

    /// Returns false when cancelled before the directory appeared.
    async fn wait_for_dir(&self, cancel: &CancellationToken) -> bool {
        let mut reported = false;
        while !self.dir.is_dir() {
            if !reported {
                warn!(dir = %self.dir.display(), "hosts directory does not exist (yet); will pick it up when it appears");
                reported = true;
            }
            tokio::select! {
                _ = cancel.cancelled() => return false,
                _ = tokio::time::sleep(DIR_CHECK) => {}
            }
        }
        true
    }

    /// Reads every file, and withdraws files served before that are gone.
    async fn rescan(&mut self, served: &mut Served) -> Result<(), HostsError> {
        let mut present = HashSet::new();
        match std::fs::read_dir(&self.dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    present.insert(entry.path());
                }
            }
            Err(e) => {
                warn!(dir = %self.dir.display(), error = %e, "cannot list hosts directory");
                return Ok(());
            }
        }
        let gone: Vec<PathBuf> = served
            .keys()
            .filter(|p| !present.contains(*p))
            .cloned()
            .collect();
        for path in gone.iter().chain(present.iter()) {
            self.reload(path, served).await?;
        }
        Ok(())
    }

    /// Brings one path's records up to date with the file (or its absence).
    async fn reload(&mut self, path: &Path, served: &mut Served) -> Result<(), HostsError> {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'));
        if hidden {
            return Ok(());
        }
        let text = match std::fs::metadata(path) {
            Ok(m) if m.is_file() => match std::fs::read(path) {
                // Valid UTF-8 (the usual case) is taken as it is, without a second copy.
                Ok(bytes) => String::from_utf8(bytes)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return self.withdraw(path, served).await
                }
                Err(e) => {
                    warn!(file = %path.display(), error = %e, "cannot read hosts file; keeping what it served");
                    return Ok(());
                }
            },
            Ok(_) => return self.withdraw(path, served).await,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return self.withdraw(path, served).await
            }
            Err(e) => {
                warn!(file = %path.display(), error = %e, "cannot read hosts file; keeping what it served");
                return Ok(());
            }
        };
        let hash = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            text.hash(&mut h);
            h.finish()
        };
        if served.get(path) == Some(&hash) {
            debug!(file = %path.display(), "hosts file read again, unchanged");
            return Ok(());
        }
        let (records, errors) = parse_hosts(&text, &self.zone);
        // A large file's text is not kept while the store builds its records (peak RSS).
        drop(text);
        for e in &errors {
            warn!(file = %path.display(), line = e.line, reason = %e.reason, "bad hosts line skipped");
        }
        info!(file = %path.display(), records = records.len(), bad_lines = errors.len(), "hosts file loaded");
        let report = FileReport {
            records: records.len(),
            bad_lines: errors,
        };
        self.store
            .replace(SourceKind::Hosts, path.display().to_string(), records)
            .await?;
        served.insert(path.to_path_buf(), hash);
        self.bad_lines_total += report.bad_lines.len() as u64;
        self.loads_total += 1;
        self.report.files.insert(path.to_path_buf(), report);
        self.publish();
        Ok(())
    }

    async fn withdraw(&mut self, path: &Path, served: &mut Served) -> Result<(), HostsError> {
        if served.remove(path).is_some() {
            info!(file = %path.display(), "hosts file removed; withdrawing its records");
            self.store
                .replace(SourceKind::Hosts, path.display().to_string(), Vec::new())
                .await?;
            self.report.files.remove(path);
            self.publish();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_not_changes() {
        use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RemoveKind};
        use notify::EventKind;
        assert!(!changes_content(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!changes_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(!changes_content(&EventKind::Access(AccessKind::Read)));
        assert!(changes_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(changes_content(&EventKind::Create(CreateKind::File)));
        assert!(changes_content(&EventKind::Modify(ModifyKind::Any)));
        assert!(changes_content(&EventKind::Remove(RemoveKind::File)));
    }

    #[test]
    fn parses_hosts_text() {
        let zone = Name::parse("docker").unwrap();
        let text = "\
# comment line
10.0.0.1 web web.example.com   # trailing comment
fd00::2\tdb
10.0.0.300 broken
10.0.0.4
fe80::1%eth0 link
10.0.0.5 good bad!name
   
";
        let (records, errors) = parse_hosts(text, &zone);
        let got: Vec<String> = records
            .iter()
            .map(|r| format!("{} {}", r.name, r.data))
            .collect();
        assert_eq!(
            got,
            vec![
                "web.docker 10.0.0.1",
                "web.example.com 10.0.0.1",
                "db.docker fd00::2",
                "link.docker fe80::1"
            ]
        );
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![4, 5, 7]);
        assert!(errors[0].reason.contains("not an IP address"));
        assert!(errors[1].reason.contains("no name"));
        assert!(errors[2].reason.contains("bad!name"));
    }
}
