//! Shipping: the container image, built with the real Docker engine and run as it ships
//! (non-root, read-only, no capabilities), with its HEALTHCHECK and DNS on a published
//! port; the Dockerfiles and the systemd unit checked as files.
//!
//! `image()` builds the image once and shares it among the tests that run at the same
//! time; the last user to finish removes it. The image is what `scripts/image` builds: the
//! glibc-static release binary built on this host (reusing the same cargo build as the
//! script and README), packaged by contrib/Dockerfile.prebuilt, since no builder image can
//! be pulled here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::support::*;

const TARGET: &str = "x86_64-unknown-linux-gnu";
/// Most bytes the image may have (the limit).
const MAX_IMAGE_BYTES: u64 = 20_000_000;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("run docker")
}

fn docker_ok(args: &[&str]) -> String {
    let o = docker(args);
    assert!(
        o.status.success(),
        "docker {args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Whether the Docker tests run: a failing engine is an error when JOYRIDE_REQUIRE_DOCKER
/// is set (scripts/test sets it), a skip otherwise.
fn docker_available() -> bool {
    let ok = docker(&["info"]).status.success();
    if !ok {
        assert!(
            std::env::var_os("JOYRIDE_REQUIRE_DOCKER").is_none(),
            "no Docker engine answers (JOYRIDE_REQUIRE_DOCKER is set)"
        );
        eprintln!("skipped: no Docker engine answers");
    }
    ok
}

/// A built image, removed when the last test using it drops it.
pub struct BuiltImage {
    pub tag: String,
}

impl Drop for BuiltImage {
    fn drop(&mut self) {
        let _ = docker(&["image", "rm", "-f", &self.tag]);
    }
}

static IMAGE: Mutex<Weak<BuiltImage>> = Mutex::new(Weak::new());

/// The image under test: built on first use (and again if every earlier user is done).
pub fn image() -> Arc<BuiltImage> {
    let mut slot = IMAGE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(image) = slot.upgrade() {
        return image;
    }
    let image = Arc::new(build_image());
    *slot = Arc::downgrade(&image);
    image
}

/// The static binary, built as scripts/image, scripts/test and the README build it (so the
/// cargo build is shared: scripts/test builds it before the tests run), checked to be static.
fn static_binary() -> PathBuf {
    let o = Command::new(env!("CARGO"))
        .current_dir(repo())
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .args(["build", "--release", "--locked", "--bin", "joyride"])
        .args(["--target", TARGET])
        .output()
        .expect("run cargo");
    assert!(
        o.status.success(),
        "static build failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let bin = repo().join(format!("target/{TARGET}/release/joyride"));
    // ldd is in every glibc system (`file` may be missing); a static binary loads nothing.
    let ldd = Command::new("ldd").arg(&bin).output().expect("run ldd");
    let ldd = String::from_utf8_lossy(&ldd.stdout).to_string();
    assert!(!ldd.contains("=>"), "not static: {ldd}");
    bin
}

fn build_image() -> BuiltImage {
    let bin = static_binary();
    let context = tempfile::tempdir().unwrap();
    let status = Command::new("strip")
        .arg("-o")
        .arg(context.path().join("joyride"))
        .arg(&bin)
        .status()
        .expect("run strip");
    assert!(status.success());
    let tag = format!("joyride-test/joyride:{}", std::process::id());
    let image = BuiltImage { tag };
    docker_ok(&[
        "build",
        "-q",
        "-f",
        repo().join("contrib/Dockerfile.prebuilt").to_str().unwrap(),
        "-t",
        &image.tag,
        "--label",
        "joyride-test=1",
        context.path().to_str().unwrap(),
    ]);
    image
}

/// A container removed when dropped (its log printed if the test failed).
struct Container {
    name: String,
}

impl Container {
    fn run(name_hint: &str, args: &[&str]) -> Container {
        let name = format!(
            "joyride-test-{name_hint}-{}-{}",
            std::process::id(),
            free_port()
        );
        let c = Container { name };
        let mut all = vec!["run", "-d", "--name", &c.name];
        all.extend_from_slice(args);
        docker_ok(&all);
        c
    }

    fn inspect(&self, format: &str) -> String {
        docker_ok(&["inspect", "--format", format, &self.name])
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = docker(&["logs", "--tail", "50", &self.name]);
            eprintln!(
                "--- {} log ---\n{}{}",
                self.name,
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            );
        }
        let _ = docker(&["rm", "-f", "-v", &self.name]);
    }
}

/// The group that may use the Docker socket, which the container joins.
fn docker_socket_gid() -> String {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/var/run/docker.sock")
        .map(|m| m.gid().to_string())
        .unwrap_or_else(|_| "0".into())
}

/// A hosts directory the container's user (65534) can read.
fn world_readable_hosts(text: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("demo");
    std::fs::write(&file, text).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    dir
}

#[test]
fn image_is_small_static_non_root_healthy_and_resolves_names() {
    if !docker_available() {
        return;
    }
    let image = image();
    let size: u64 = docker_ok(&["image", "inspect", "--format", "{{.Size}}", &image.tag])
        .parse()
        .unwrap();
    assert!(size < MAX_IMAGE_BYTES, "image is {size} bytes");
    eprintln!("image {} is {size} bytes", image.tag);

    let hosts = world_readable_hosts("10.0.0.7 web\nfd00::7 web\n");
    let dns_port = free_port();
    let http_port = free_port();
    let dns = format!("127.0.0.1:{dns_port}");
    let volume = format!("{}:/etc/joyride/hosts.d:ro", hosts.path().display());
    // As docker-compose.yml runs it (read-only, no capabilities, the Docker socket
    // read-only through its group), but with the engine's own default for low ports, and
    // a short health interval for the test.
    let socket_gid = docker_socket_gid();
    let c = Container::run(
        "image",
        &[
            "--group-add",
            &socket_gid,
            "-v",
            "/var/run/docker.sock:/var/run/docker.sock:ro",
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges:true",
            "--health-interval",
            "500ms",
            "--health-timeout",
            "3s",
            "-p",
            &format!("{dns}:53/udp"),
            "-p",
            &format!("{dns}:53/tcp"),
            "-p",
            &format!("127.0.0.1:{http_port}:5380/tcp"),
            "-v",
            &volume,
            &image.tag,
            "--no-forward",
        ],
    );
    let healthy = wait_until(Duration::from_secs(30), || {
        c.inspect("{{.State.Health.Status}}") == "healthy"
    });
    assert!(
        healthy,
        "not healthy: {}",
        c.inspect("{{json .State.Health}}")
    );

    // Not root: the image's user, and the process as the kernel sees it.
    assert_eq!(c.inspect("{{.Config.User}}"), "65534:65534");
    let top = docker_ok(&["top", &c.name, "-o", "pid,uid"]);
    let uid = top.lines().nth(1).and_then(|l| l.split_whitespace().nth(1));
    assert_eq!(uid, Some("65534"), "{top}");

    let server: SocketAddr = dns.parse().unwrap();
    let ok = wait_until(Duration::from_secs(10), || {
        udp_query_timeout(
            server,
            &Message::query_for("web.docker.", RecordType::A),
            Duration::from_millis(500),
        )
        .is_ok_and(|m| answers(&m) == ["10.0.0.7"])
    });
    assert!(ok, "web.docker did not resolve through the container");
    let m = tcp_query(server, &Message::query_for("web.docker.", RecordType::AAAA));
    assert_eq!(answers(&m), ["fd00::7"]);
    let m = udp_query(server, &Message::query_for("example.com.", RecordType::A));
    assert_eq!(
        m.metadata.response_code,
        ResponseCode::Refused,
        "--no-forward"
    );

    // A container's name, through the Docker socket mounted into the image.
    let peer = Container::run("peer", &["joyride-test/busybox:latest", "sleep", "300"]);
    let peer_ip = peer.inspect("{{.NetworkSettings.IPAddress}}");
    let peer_name = format!("{}.docker.", peer.name);
    let ok = wait_until(Duration::from_secs(10), || {
        udp_query_timeout(
            server,
            &Message::query_for(&peer_name, RecordType::A),
            Duration::from_millis(500),
        )
        .is_ok_and(|m| answers(&m) == [peer_ip.as_str()])
    });
    assert!(
        ok,
        "{peer_name} did not resolve to {peer_ip} through the container"
    );
    drop(peer);
    let gone = wait_until(Duration::from_secs(10), || {
        udp_query_timeout(
            server,
            &Message::query_for(&peer_name, RecordType::A),
            Duration::from_millis(500),
        )
        .is_ok_and(|m| m.metadata.response_code == ResponseCode::NXDomain)
    });
    assert!(
        gone,
        "{peer_name} still resolves after its container is removed"
    );

    // The operator commands from the host, against the container's published ports.
    let o = Command::new(JOYRIDE)
        .args(["query", "web.docker", "--server", &dns])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("web.docker.\t10\tIN\tA\t10.0.0.7\n"));
    let o = Command::new(JOYRIDE)
        .args(["health", "--http", &format!("127.0.0.1:{http_port}")])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));

    // A stop is clean and quick (SIGTERM reaches joyride as PID 1).
    docker_ok(&["stop", "-t", "10", &c.name]);
    assert_eq!(c.inspect("{{.State.ExitCode}}"), "0");
}

#[test]
fn prebuilt_dockerfile_is_the_dockerfile_final_stage() {
    let read = |p: &str| std::fs::read_to_string(repo().join(p)).unwrap();
    let tail = |text: &str, copy: &str| -> String {
        let (_, rest) = text
            .split_once(copy)
            .unwrap_or_else(|| panic!("no {copy:?}"));
        rest.to_string()
    };
    let full = read("Dockerfile");
    let prebuilt = read("contrib/Dockerfile.prebuilt");
    assert_eq!(
        tail(&full, "COPY --from=build /joyride /usr/local/bin/joyride\n"),
        tail(&prebuilt, "COPY joyride /usr/local/bin/joyride\n"),
        "contrib/Dockerfile.prebuilt must end as the Dockerfile does"
    );
    assert!(full.contains("ARG BUILDER=rust:1-bookworm"));
    assert!(full.contains("FROM scratch\n") && full.contains("HEALTHCHECK"));
}

#[test]
fn systemd_unit_verifies_and_never_runs_as_root() {
    let unit = std::fs::read_to_string(repo().join("contrib/joyride.service")).unwrap();
    for line in [
        "DynamicUser=yes",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "ProtectSystem=strict",
        "SupplementaryGroups=docker",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} missing");
    }
    assert!(!unit.lines().any(|l| l.starts_with("User=")));
    let Ok(o) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze not installed: only the text was checked");
        return;
    };
    assert!(o.status.success());
    // Verify a copy whose ExecStart is the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("joyride.service");
    std::fs::write(
        &copy,
        unit.replace(
            "ExecStart=/usr/local/bin/joyride",
            &format!("ExecStart={JOYRIDE}"),
        ),
    )
    .unwrap();
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let complaints: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("joyride.service"))
        .collect();
    assert!(o.status.success() && complaints.is_empty(), "{err}");
}

/// Removes an image built from `builder` by the Dockerfile, the build stage's leftover
/// layers (images descending from `builder`), and `builder` itself.
struct BuildCleanup {
    builder: String,
    image: String,
}

impl Drop for BuildCleanup {
    fn drop(&mut self) {
        let _ = docker(&["image", "rm", "-f", &self.image]);
        let id = |r: &str| {
            let o = docker(&["image", "inspect", "--format", "{{.Id}}", r]);
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        };
        let builder = id(&self.builder);
        if builder.is_empty() {
            return;
        }
        // Every image's parent, then the builder's descendants, children before parents.
        let all =
            String::from_utf8_lossy(&docker(&["images", "-aq", "--no-trunc"]).stdout).to_string();
        let parents: Vec<(String, String)> = all
            .lines()
            .map(|i| {
                let o = docker(&["image", "inspect", "--format", "{{.Parent}}", i]);
                (
                    i.to_string(),
                    String::from_utf8_lossy(&o.stdout).trim().to_string(),
                )
            })
            .collect();
        let mut family = vec![builder];
        let mut i = 0;
        while i < family.len() {
            for (child, parent) in &parents {
                if *parent == family[i] && !family.contains(child) {
                    family.push(child.clone());
                }
            }
            i += 1;
        }
        for image in family.iter().rev() {
            let _ = docker(&["image", "rm", "-f", image]);
        }
    }
}

/// The Dockerfile's own build stage, in a builder image made from this machine's toolchain
/// by scripts/builder-image (nothing is pulled, cargo runs offline). Opt-in with
/// JOYRIDE_TEST_IMAGE_BUILD=1: it compiles the release build from scratch inside Docker
/// (many minutes on two cores), where the image test above reuses the host's build.
#[test]
fn dockerfile_builds_in_a_local_builder_image() {
    if std::env::var_os("JOYRIDE_TEST_IMAGE_BUILD").is_none() {
        eprintln!("skipped: set JOYRIDE_TEST_IMAGE_BUILD=1 to build the image inside Docker");
        return;
    }
    if !docker_available() {
        return;
    }
    let pid = std::process::id();
    let cleanup = BuildCleanup {
        builder: format!("joyride-test/builder:{pid}"),
        image: format!("joyride-test/joyride-built:{pid}"),
    };
    let o = Command::new(repo().join("scripts/builder-image"))
        .arg(&cleanup.builder)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "scripts/builder-image: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    docker_ok(&[
        "build",
        "-q",
        "--build-arg",
        &format!("BUILDER={}", cleanup.builder),
        "-t",
        &cleanup.image,
        repo().to_str().unwrap(),
    ]);
    let size: u64 = docker_ok(&["image", "inspect", "--format", "{{.Size}}", &cleanup.image])
        .parse()
        .unwrap();
    assert!(size < MAX_IMAGE_BYTES, "image is {size} bytes");
    let version = docker_ok(&["run", "--rm", &cleanup.image, "--version"]);
    assert_eq!(version, format!("joyride {}", env!("CARGO_PKG_VERSION")));
}
