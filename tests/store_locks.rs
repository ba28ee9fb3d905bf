//! Store locks (docs/STORE.md §2.7, §4.3 step 4, §5.6, §12.3, issue #22) against a real
//! Garage on loopback: a finished capture leaves no lock; a capture stopped (SIGSTOP) just
//! before its commit shows its Capture lock in `store ls --stats`, fresh, then stale once the
//! window (shrunk by `OSIMAGE_STORE_TIMES`) has passed; `store unlock --stale` removes it and
//! keeps a fresh one; resumed, the capture refuses to commit. An interrupted capture deletes
//! its lock. The capture is stopped at a known step by holding its index PUT in a relay
//! (`common::hold_proxy`), not by guessing how long its steps take.

use crate::common;

use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use common::garage::Garage;
use common::hold_proxy::HoldProxy;
use osimage::store::objects::LockKind;
use osimage::store::{Store, StoreRoot, StoreTimes};

/// The windows the tests run with: refreshed every second, stale after eight.
const TIMES: &str = "lock_refresh=1s,stale=8s";
/// How long a step that should take seconds may take on two busy cores.
const DEADLINE: Duration = Duration::from_secs(180);

fn s(x: &str) -> &OsStr {
    OsStr::new(x)
}

/// `osimage ARGS…` against `g`, with the test windows.
fn osimage(g: &Garage, args: &[&str]) -> common::Run {
    g.osimage(args.iter().copied(), &[("OSIMAGE_STORE_TIMES", TIMES)])
}

/// A few files: one pack, so the capture writes one index object before its commit.
fn tree(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), "locked\n").unwrap();
    std::fs::write(root.join("data.bin"), common::iso::noise(200_000, 0x10c5)).unwrap();
    root
}

/// `store ls --stats --json`'s `stats`.
fn stats(g: &Garage, store: &str) -> serde_json::Value {
    let run = osimage(g, &["store", "ls", store, "--stats", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("store ls --json is not JSON ({e}): {}", run.describe()));
    v["stats"].clone()
}

/// The locks `stats` lists.
fn locks(stats: &serde_json::Value) -> Vec<serde_json::Value> {
    stats["locks"].as_array().expect("locks").clone()
}

/// A capture of `root` into `address` through `endpoint`, started and left running, in a
/// process group of its own: only this test's signals stop and resume it. In the test's
/// group, a job-control event outside the test (the group orphaned while it holds a stopped
/// process) makes the kernel send the whole group SIGHUP and SIGCONT; the capture then
/// resumes, takes the SIGHUP as an interrupt and deletes its lock, as seen once in a run
/// (two DELETEs of the lock, one from the interrupt's cleanup, 3.8 s into the stop).
fn spawn_capture(g: &Garage, endpoint: &str, root: &Path, address: &str) -> Child {
    g.spawn_capture(endpoint, root, address, &[("OSIMAGE_STORE_TIMES", TIMES)])
}

fn signal(child: &Child, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid.
    let r = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(r, 0, "kill({}, {sig})", child.id());
}

/// The child's exit status and its stderr, waiting at most [`DEADLINE`].
fn finish(mut child: Child) -> (std::process::ExitStatus, String) {
    let end = Instant::now() + DEADLINE;
    while child.try_wait().expect("waiting for the capture").is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            panic!("the capture did not end within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("its output");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `State:` line of `child` in /proc, or why there is none.
fn proc_state(child: &Child) -> String {
    std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("State:"))
                .map(str::to_string)
        })
        .unwrap_or_else(|| "no /proc entry".into())
}

/// Panics with `what`, the state of the stopped capture `child` (from /proc), a LIST of
/// `prefix/locks/`, and the capture's exit status and stderr once it is killed: what a
/// failure of the stale-lock steps needs to be explained.
fn fail_with_capture(g: &Garage, mut child: Child, prefix: &str, what: &str) -> ! {
    let proc_state = proc_state(&child);
    let listed = g.keys(&format!("{prefix}/locks/"));
    let exited = child.try_wait().ok().flatten();
    let _ = child.kill();
    // SAFETY: kill(2) on our own child's pid, so a stopped child takes the SIGKILL.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGCONT) };
    let (status, err) = finish(child);
    panic!(
        "{what}\ncapture {proc_state}; exited before the kill: {exited:?}; status {status:?}\n\
         LIST {prefix}/locks/: {listed:?}\ncapture stderr:\n{err}"
    );
}

/// A capture held at its index PUT (just before its commit) in a relay in front of `g`.
fn held_capture(g: &Garage, root: &Path, address: &str, prefix: &str) -> (HoldProxy, Child) {
    let proxy = HoldProxy::start(g.s3_port(), &format!("PUT /images/{prefix}/index/"));
    let child = spawn_capture(g, &proxy.endpoint(), root, address);
    if !proxy.wait_held(DEADLINE) {
        let (status, err) = finish(child);
        panic!("the capture never reached its index PUT: {status:?}\n{err}");
    }
    (proxy, child)
}

#[test]
fn a_finished_capture_leaves_no_lock_and_stats_count_the_store() {
    let g = Garage::start();
    let dir = common::scratch();
    let root = tree(dir.path());
    osimage(&g, &["store", "init", "s3://images/done"]).ok();
    let root_arg = root.to_str().unwrap();
    osimage(
        &g,
        &["capture", root_arg, "-o", "s3://images/done/web01", "-q"],
    )
    .ok();
    assert_eq!(g.keys("done/locks/"), Vec::<String>::new());

    let st = stats(&g, "s3://images/done");
    let packs = g.client().list("done/packs/").unwrap().objects;
    assert!(!packs.is_empty());
    assert_eq!(st["packs"].as_u64(), Some(packs.len() as u64));
    let bytes: u64 = packs.iter().map(|o| o.size).sum();
    assert_eq!(st["pack_bytes"].as_u64(), Some(bytes));
    assert_eq!(st["index_objects"].as_u64(), Some(1));
    assert!(locks(&st).is_empty());
    let text = osimage(&g, &["store", "ls", "s3://images/done", "--stats"]).ok();
    assert!(
        text.stdout_str().contains("1 index object\nno locks\n"),
        "{}",
        text.describe()
    );
    // Without --stats the document says so.
    let plain = osimage(&g, &["store", "ls", "s3://images/done", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_slice(&plain.stdout).unwrap();
    assert!(v["stats"].is_null());

    osimage(&g, &["store", "unlock", "s3://images/done"])
        .ok()
        .mentions(b"no stale locks");
    // --all asks; without a terminal it needs --yes, and is refused before any request.
    osimage(&g, &["store", "unlock", "s3://images/done", "--all"])
        .usage_error()
        .mentions(b"--yes");
    // A mistyped window is refused, naming the variable, before anything is written.
    let mut env = g.osimage_env();
    env.push((
        "OSIMAGE_STORE_TIMES".into(),
        "lock_refresh=1,stale=8s".into(),
    ));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let args = ["capture", root_arg, "-o", "s3://images/done/web02", "-q"];
    common::osimage_env(args.iter().copied().map(s), &pairs)
        .usage_error()
        .mentions(b"OSIMAGE_STORE_TIMES");
    assert_eq!(g.keys("done/locks/"), Vec::<String>::new());
    assert_eq!(g.keys("done/images/web02/"), Vec::<String>::new());
}

#[test]
fn a_stopped_capture_goes_stale_is_unlocked_and_refuses_to_commit() {
    let g = Garage::start();
    let dir = common::scratch();
    let root = tree(dir.path());
    let store = "s3://images/paused";
    osimage(&g, &["store", "init", store]).ok();
    let (proxy, child) = held_capture(&g, &root, "s3://images/paused/web01", "paused");
    signal(&child, libc::SIGSTOP);
    let end = Instant::now() + DEADLINE;
    while !proc_state(&child).contains("T (stopped)") {
        assert!(Instant::now() < end, "not stopped: {}", proc_state(&child));
        std::thread::sleep(Duration::from_millis(10));
    }
    proxy.release();

    // A lock of this process, kept fresh by its own refreshes: unlock --stale must keep it.
    let times = StoreTimes::parse(TIMES).unwrap();
    let opened = Store::open(g.client(), StoreRoot::parse(store).unwrap(), "test").unwrap();
    let ours = opened
        .take_lock_with(LockKind::Read, None, times)
        .expect("a lock of the test");

    let st = stats(&g, store);
    let listed = locks(&st);
    assert_eq!(listed.len(), 2, "{st:#}");
    let capture = listed
        .iter()
        .find(|l| l["kind"] == "capture")
        .unwrap_or_else(|| panic!("no capture lock: {st:#}"))
        .clone();
    assert_eq!(capture["pid"].as_u64(), Some(u64::from(child.id())));
    assert_eq!(capture["series"], "web01");
    assert_eq!(capture["stale"], false, "{st:#}");
    let name = capture["name"].as_str().unwrap().to_string();
    let read = listed.iter().find(|l| l["kind"] == "read").expect("ours");
    let read_name = read["name"].as_str().unwrap().to_string();

    // Stopped, it refreshes no more: stale once the window has passed by the server's clock.
    let end = Instant::now() + DEADLINE;
    loop {
        // Still stopped (`T`): nothing but this test may resume it before the unlock.
        if !proc_state(&child).contains("T (stopped)") {
            fail_with_capture(&g, child, "paused", "the capture is no longer stopped");
        }
        let st = stats(&g, store);
        let now = locks(&st);
        let Some(c) = now.iter().find(|l| l["name"] == name.as_str()) else {
            let what = format!("the capture lock {name} is gone: {st:#}");
            fail_with_capture(&g, child, "paused", &what);
        };
        if c["stale"] == true {
            let read = now.iter().find(|l| l["kind"] == "read").expect("ours");
            assert_eq!(read["stale"], false, "ours is refreshed: {st:#}");
            break;
        }
        if Instant::now() > end {
            fail_with_capture(&g, child, "paused", &format!("never stale: {st:#}"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let text = osimage(&g, &["store", "ls", store, "--stats"]).ok();
    assert!(text.stdout_str().contains("STALE"), "{}", text.describe());

    osimage(&g, &["store", "unlock", store, "--stale"])
        .ok()
        .mentions(name.as_bytes());
    let left: Vec<String> = locks(&stats(&g, store))
        .iter()
        .map(|l| l["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, std::slice::from_ref(&read_name));

    // Resumed, the capture sees its lock went unrefreshed past the margin and stops.
    signal(&child, libc::SIGCONT);
    let (status, err) = finish(child);
    assert_eq!(status.code(), Some(1), "{status:?}: {err}");
    assert!(err.contains("the store lock lapsed for"), "{err}");
    assert!(err.contains("nothing was committed"), "{err}");
    assert_eq!(g.keys("paused/images/"), Vec::<String>::new());
    assert_eq!(g.keys("paused/locks/"), [format!("paused/{read_name}")]);
    ours.release().unwrap();
    assert_eq!(g.keys("paused/locks/"), Vec::<String>::new());
}

#[test]
fn an_interrupted_capture_deletes_its_lock() {
    let g = Garage::start();
    let dir = common::scratch();
    let root = tree(dir.path());
    osimage(&g, &["store", "init", "s3://images/intr"]).ok();
    // The held index PUT is never let through: the capture dies waiting for it.
    let (_proxy, child) = held_capture(&g, &root, "s3://images/intr/web01", "intr");
    assert_eq!(g.keys("intr/locks/").len(), 1);
    signal(&child, libc::SIGINT);
    let (status, err) = finish(child);
    assert_eq!(
        status.code(),
        Some(128 + libc::SIGINT),
        "{status:?} {:?}: {err}",
        status.signal()
    );
    assert!(err.contains("/locks/"), "the message names the lock: {err}");
    assert_eq!(g.keys("intr/locks/"), Vec::<String>::new());
    assert_eq!(g.keys("intr/images/"), Vec::<String>::new());
}
