//! The hosts directory: files served live, bad lines skipped, a late directory picked up.

use std::time::{Duration, Instant};

use crate::support::*;

const LIVE: Duration = Duration::from_secs(1);

#[test]
fn changes_are_served_within_a_second() {
    let hosts = tempfile::tempdir().unwrap();
    let dir = hosts.path();
    let j = Joyride::start(&["--no-forward", "--hosts-dir", dir.to_str().unwrap()]);

    // A new file.
    let t = Instant::now();
    std::fs::write(dir.join("team"), "10.6.0.1 app\nfd00::6 app\n").unwrap();
    assert!(
        wait_until(LIVE, || j.addresses("app.docker.")
            == vec!["10.6.0.1", "fd00::6"]),
        "new file after {:?}",
        t.elapsed()
    );

    // Rewritten in place.
    std::fs::write(dir.join("team"), "10.6.0.2 app\n").unwrap();
    assert!(wait_until(LIVE, || j.addresses("app.docker.") == vec!["10.6.0.2"]));

    // Replaced by rename, as editors and config tools do.
    std::fs::write(dir.join(".team.tmp"), "10.6.0.3 app other\n").unwrap();
    std::fs::rename(dir.join(".team.tmp"), dir.join("team")).unwrap();
    assert!(wait_until(LIVE, || j.addresses("app.docker.") == vec!["10.6.0.3"]));
    assert_eq!(j.addresses("other.docker."), vec!["10.6.0.3"]);

    // Deleted: the names go.
    std::fs::remove_file(dir.join("team")).unwrap();
    assert!(wait_until(LIVE, || j
        .query("app.docker.", RecordType::A)
        .metadata
        .response_code
        == ResponseCode::NXDomain));
}

#[test]
fn dotfiles_are_ignored() {
    let hosts = tempfile::tempdir().unwrap();
    std::fs::write(hosts.path().join(".hidden"), "10.6.1.1 hidden\n").unwrap();
    std::fs::write(hosts.path().join("visible"), "10.6.1.2 visible\n").unwrap();
    let j = Joyride::start(&[
        "--no-forward",
        "--hosts-dir",
        hosts.path().to_str().unwrap(),
    ]);
    assert!(wait_until(LIVE * 5, || j.addresses("visible.docker.")
        == vec!["10.6.1.2"]));
    assert_eq!(
        j.query("hidden.docker.", RecordType::A)
            .metadata
            .response_code,
        ResponseCode::NXDomain
    );
}

#[test]
fn a_bad_line_is_reported_with_file_and_line_and_the_rest_served() {
    let hosts = tempfile::tempdir().unwrap();
    let file = hosts.path().join("mixed");
    std::fs::write(&file, "10.6.2.1 good1\nnot-an-ip broken\n10.6.2.3 good3\n").unwrap();
    let j = Joyride::start(&[
        "--no-forward",
        "--hosts-dir",
        hosts.path().to_str().unwrap(),
    ]);
    assert!(wait_until(LIVE * 5, || j.addresses("good3.docker.")
        == vec!["10.6.2.3"]));
    assert_eq!(j.addresses("good1.docker."), vec!["10.6.2.1"]);
    let log = j.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("bad hosts line"))
        .expect("bad line logged");
    assert!(
        line.contains(&file.display().to_string()) && line.contains("line=2"),
        "{line}"
    );
    assert_eq!(log.matches("bad hosts line").count(), 1, "reported once");
}

#[test]
fn a_directory_created_later_is_picked_up() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("later");
    let j = Joyride::start(&["--no-forward", "--hosts-dir", dir.to_str().unwrap()]);
    assert!(
        j.log_text().contains("does not exist"),
        "the missing directory is reported"
    );
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("h"), "10.6.3.1 late\n").unwrap();
    assert!(wait_until(Duration::from_secs(3), || j
        .addresses("late.docker.")
        == vec!["10.6.3.1"]));
    // Removed as a whole: records go; recreated: they come back.
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(wait_until(Duration::from_secs(3), || j
        .addresses("late.docker.")
        .is_empty()));
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("h2"), "10.6.3.2 late\n").unwrap();
    assert!(wait_until(Duration::from_secs(3), || j
        .addresses("late.docker.")
        == vec!["10.6.3.2"]));
}

#[test]
fn legacy_hosts_directory_variable() {
    let hosts = tempfile::tempdir().unwrap();
    std::fs::write(hosts.path().join("h"), "10.6.4.1 legacy\n").unwrap();
    let j = Joyride::start_with_env(
        &["--no-forward"],
        &[("HOSTS_DIRECTORY", hosts.path().to_str().unwrap())],
    );
    assert!(wait_until(LIVE * 5, || j.addresses("legacy.docker.")
        == vec!["10.6.4.1"]));
}

#[test]
fn an_idle_hosts_directory_is_not_read_again() {
    // Reading a file makes inotify report an open; reacting to that would read the file
    // again, forever (a busy loop that costs a core with a large file). Idle means idle.
    let hosts = tempfile::tempdir().unwrap();
    std::fs::write(hosts.path().join("one"), "10.7.0.1 idle\n").unwrap();
    let j = Joyride::start(&[
        "--no-forward",
        "--no-http",
        "--hosts-dir",
        hosts.path().to_str().unwrap(),
    ]);
    assert!(wait_until(LIVE * 5, || j.addresses("idle.docker.") == vec!["10.7.0.1"]));
    std::thread::sleep(Duration::from_secs(1));
    let reads = j.log_text().matches("read again, unchanged").count();
    assert_eq!(
        reads, 0,
        "the file was read {reads} more times while nothing changed"
    );
    // A real change is still seen.
    std::fs::write(hosts.path().join("one"), "10.7.0.2 idle\n").unwrap();
    assert!(wait_until(LIVE, || j.addresses("idle.docker.") == vec!["10.7.0.2"]));
}
