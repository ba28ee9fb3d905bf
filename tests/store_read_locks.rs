//! Read locks of the host-side readers of a store version (docs/STORE.md §5.1, issue #22)
//! against a real Garage on loopback: an `extract` held at its first pack GET (a relay,
//! `common::hold_proxy`, keeps the request until the test lets it through) shows a fresh
//! Read lock of its own pid and series, and none is left once it finished; interrupted
//! there, it deletes its lock and exits 128 + SIGINT; with `--no-lock`, `extract` and
//! `verify` finish while every lock PUT is held forever (so they never sent one) and leave
//! no lock.

use crate::common;

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::garage::Garage;
use common::hold_proxy::HoldProxy;
use osimage::store::objects::LockKind;
use osimage::store::{Store, StoreRoot, StoreTimes};

const STORE: &str = "s3://images/rl";
const IMAGE: &str = "s3://images/rl/web01";
/// How long a step that should take seconds may take on two busy cores.
const DEADLINE: Duration = Duration::from_secs(120);

fn s(x: &str) -> &OsStr {
    OsStr::new(x)
}

/// `osimage ARGS…` through `endpoint` (Garage's or a relay's), waited for.
fn osimage(g: &Garage, endpoint: &str, args: &[&OsStr]) -> common::Run {
    let mut env = g.osimage_env();
    env.push(("AWS_ENDPOINT_URL".into(), endpoint.into()));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    common::osimage_env(args.to_vec(), &pairs)
}

/// `osimage ARGS…` through `endpoint`, left running in a process group of its own.
fn spawn(g: &Garage, endpoint: &str, args: &[&OsStr]) -> Child {
    use std::os::unix::process::CommandExt as _;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_osimage"));
    cmd.process_group(0)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in g.osimage_env() {
        cmd.env(k, v);
    }
    cmd.env("AWS_ENDPOINT_URL", endpoint);
    cmd.spawn().expect("starting osimage")
}

/// The child's exit status and stderr, waiting at most [`DEADLINE`].
fn finish(mut child: Child) -> (std::process::ExitStatus, String) {
    let end = Instant::now() + DEADLINE;
    while child.try_wait().expect("waiting for osimage").is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            panic!("osimage did not end within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("its output");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status, err)
}

/// Every lock in the store, with what it says.
fn locks(g: &Garage) -> Vec<osimage::store::objects::Lock> {
    let store = Store::open(g.client(), StoreRoot::parse(STORE).unwrap(), "test").unwrap();
    let times = StoreTimes::parse("lock_refresh=5m,stale=30m").unwrap();
    store
        .list_locks(&times)
        .unwrap()
        .iter()
        .filter_map(|l| store.read_lock(&l.id).unwrap())
        .collect()
}

/// `extract IMAGE -C DIR` (plus `extra`) held at its first pack GET behind a new relay.
fn held_extract(g: &Garage, dir: &Path, extra: &[&str]) -> (HoldProxy, Child) {
    let proxy = HoldProxy::start(g.s3_port(), "GET /images/rl/packs/");
    let mut args = vec![s("extract"), s(IMAGE), s("-C"), dir.as_os_str(), s("-q")];
    args.extend(extra.iter().map(|a| s(a)));
    let child = spawn(g, &proxy.endpoint(), &args);
    if !proxy.wait_held(DEADLINE) {
        let (status, err) = finish(child);
        panic!("the extract never reached a pack: {status:?}\n{err}");
    }
    (proxy, child)
}

#[test]
fn a_long_read_holds_a_read_lock_until_it_ends_unless_told_not_to() {
    let g = Garage::start();
    let dir = common::scratch();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), "reader\n").unwrap();
    std::fs::write(root.join("data.bin"), common::iso::noise(120_000, 0x77)).unwrap();
    let direct = g.endpoint();
    osimage(&g, &direct, &[s("store"), s("init"), s(STORE)]).ok();
    let args = [s("capture"), root.as_os_str(), s("-o"), s(IMAGE), s("-q")];
    osimage(&g, &direct, &args).ok();

    // Held at its first pack: a Read lock of this reader, of this series.
    let out = dir.path().join("out1");
    let (proxy, child) = held_extract(&g, &out, &[]);
    let held = locks(&g);
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].kind, LockKind::Read);
    assert_eq!(held[0].pid, child.id());
    assert_eq!(held[0].series.as_deref(), Some("web01"));
    proxy.release();
    let (status, err) = finish(child);
    assert!(status.success(), "{status:?}: {err}");
    assert_eq!(
        std::fs::read(out.join("etc/hostname")).unwrap(),
        b"reader\n"
    );
    assert!(locks(&g).is_empty(), "the lock is deleted at the end");

    // Interrupted while it reads: the lock is deleted, the exit status says the signal.
    let (_proxy, child) = held_extract(&g, &dir.path().join("out2"), &[]);
    assert_eq!(locks(&g).len(), 1);
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let (status, err) = finish(child);
    assert_eq!(status.code(), Some(128 + libc::SIGINT), "{status:?}: {err}");
    assert!(err.contains("/locks/"), "the message names the lock: {err}");
    assert!(locks(&g).is_empty(), "{err}");

    // --no-lock: a relay that never lets a lock PUT through does not stop the reads.
    let refusing = HoldProxy::start(g.s3_port(), "PUT /images/rl/locks/");
    let out = dir.path().join("out3");
    let args = [
        s("extract"),
        s(IMAGE),
        s("-C"),
        out.as_os_str(),
        s("-q"),
        s("--no-lock"),
        s("--retry-for"),
        s("5"),
    ];
    osimage(&g, &refusing.endpoint(), &args).ok();
    let args = [
        s("verify"),
        s(IMAGE),
        s("--no-lock"),
        s("--retry-for"),
        s("5"),
    ];
    osimage(&g, &refusing.endpoint(), &args).ok();
    assert!(locks(&g).is_empty());
}
