//! The systemd units under `deploy/` as `systemd-analyze verify` sees them, with `ExecStart`
//! pointed at the binaries this suite built (verify insists the commands exist). Skipped,
//! saying why, where `systemd-analyze` is not installed; it needs no running systemd.

use std::path::{Path, PathBuf};
use std::process::Command;
use tests::processes::binary;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn unit(name: &str) -> String {
    std::fs::read_to_string(deploy_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The value of `key=` in `text` (the last one, as systemd reads it).
fn setting<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .next_back()
}

#[test]
fn the_units_pass_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipped: systemd-analyze is not installed (apt-get install -y systemd)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("authsync-units-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["authsync-api.service", "authsync-worker@.service"] {
        let text = unit(name)
            .replace("/usr/local/bin/api", binary("api").to_str().unwrap())
            .replace("/usr/local/bin/worker", binary("worker").to_str().unwrap());
        std::fs::write(dir.join(name), text).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.join("authsync-api.service"))
        // A template is verified through one of its instances.
        .arg(dir.join("authsync-worker@1.service"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Unknown keys and bad values are only warnings to systemd: any line about our units fails.
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("authsync")).collect();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success() && ours.is_empty(), "{stderr}");
}

#[test]
fn the_worker_unit_waits_longer_than_the_workers_grace_and_stops_with_sigterm() {
    let text = unit("authsync-worker@.service");
    let stop: u64 = setting(&text, "TimeoutStopSec")
        .expect("TimeoutStopSec set")
        .parse()
        .expect("TimeoutStopSec in seconds");
    let grace = jobs::queue::WorkerSettings::default().shutdown_grace;
    assert!(stop > grace.as_secs(), "{stop} s vs a grace of {grace:?}");
    for name in ["authsync-api.service", "authsync-worker@.service"] {
        let text = unit(name);
        assert_eq!(setting(&text, "KillSignal"), Some("SIGTERM"), "{name}");
        assert_eq!(setting(&text, "Restart"), Some("on-failure"), "{name}");
        assert!(setting(&text, "EnvironmentFile").is_some(), "{name}");
    }
}
