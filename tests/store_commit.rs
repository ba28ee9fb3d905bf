//! A capture into a store interrupted while its commit is in flight (docs/STORE.md §4.4,
//! issue #22) against a real Garage on loopback: the PUT of the version object is held in a
//! relay (`common::hold_proxy`), SIGINT is sent and seen taken, then the PUT is let through.
//! The version exists, so the run must say it was committed and exit 0, and delete its lock
//! only after the answer.

use crate::common;

use std::ffi::OsStr;
use std::io::Read as _;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::garage::Garage;
use common::hold_proxy::HoldProxy;

/// How long a step that should take seconds may take on two busy cores.
const DEADLINE: Duration = Duration::from_secs(120);

/// Waits until `what` holds (polling), failing with `why` and the capture's stderr after
/// [`DEADLINE`].
fn wait_for(what: impl Fn() -> bool, why: &str, stderr: &Mutex<String>) {
    let end = Instant::now() + DEADLINE;
    while !what() {
        assert!(
            Instant::now() < end,
            "{why}; stderr:\n{}",
            stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_interrupt_during_the_commit_reports_the_version_committed() {
    let g = Garage::start();
    let dir = common::scratch();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), "commit\n").unwrap();
    let env = g.osimage_env();
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let init = ["store", "init", "s3://images/cm"].map(OsStr::new);
    common::osimage_env(init, &pairs).ok();

    let proxy = HoldProxy::start(g.s3_port(), "PUT /images/cm/images/");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_osimage"));
    {
        use std::os::unix::process::CommandExt as _;
        cmd.process_group(0);
    }
    cmd.arg("capture")
        .arg(&root)
        .args(["-o", "s3://images/cm/web01", "-q"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in &env {
        cmd.env(k, v);
    }
    cmd.env("AWS_ENDPOINT_URL", proxy.endpoint());
    let mut child = cmd.spawn().expect("starting osimage capture");
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut pipe = child.stderr.take().expect("its stderr");
    let seen = Arc::clone(&stderr);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = pipe.read(&mut buf) {
            seen.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    assert!(
        proxy.wait_held(DEADLINE),
        "the capture never sent its commit"
    );
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let taken = || stderr.lock().unwrap().contains("interrupted (signal");
    wait_for(taken, "the interrupt was never taken", &stderr);
    // Waiting for the commit's answer, the lock is still there.
    let locks = || g.client().list("cm/locks/").unwrap().objects.len();
    assert_eq!(locks(), 1, "{}", stderr.lock().unwrap());
    proxy.release();

    let end = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "the capture did not end");
        std::thread::sleep(Duration::from_millis(20));
    };
    reader.join().unwrap();
    let err = stderr.lock().unwrap().clone();
    let versions = g.client().list("cm/images/web01/").unwrap().objects;
    assert_eq!(versions.len(), 1, "the PUT went through: {err}");
    assert_eq!(status.code(), Some(0), "{status:?}: {err}");
    assert!(err.contains("was committed before the interrupt"), "{err}");
    assert_eq!(locks(), 0, "{err}");
}
