//! `store prune` (docs/STORE.md §5.2, §5.4, §12.3, issue #22) against a real Garage on
//! loopback: a dry run changes nothing and prints each version's reasons; a prune forgets
//! (readers skip and refuse the forgotten versions at once), a later sweep deletes them and
//! the packs only they used while shared packs stay, and the kept versions still verify and
//! extract as they were. A sweep waits for a capture that was running at the condemnation,
//! then rescues the packs its version uses; a second prune stops while one holds its lock.
//! The windows are shrunk through `OSIMAGE_STORE_TIMES` so nothing waits an hour.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use common::compare::{Options, assert_no_differences, diff_trees};
use common::garage::Garage;
use common::hold_proxy::HoldProxy;
use osimage::store::objects::LockKind;
use osimage::store::{Store, StoreRoot, StoreTimes, names};

/// Locks refreshed every second and stale after eight; sweeps without grace, retried every
/// 200 ms.
const TIMES: &str = "lock_refresh=1s,stale=8s,grace=0s,prune_poll=200ms";
/// How long a step that should take seconds may take on two busy cores.
const DEADLINE: Duration = Duration::from_secs(180);

/// `osimage ARGS…` against `g`, with the test windows.
fn osimage(g: &Garage, args: &[&str]) -> common::Run {
    g.osimage(args.iter().copied(), &[("OSIMAGE_STORE_TIMES", TIMES)])
}

fn open(g: &Garage, store: &str) -> Store {
    Store::open(g.client(), StoreRoot::parse(store).unwrap(), "test").unwrap()
}

/// The versions of `series`, oldest first.
fn versions(g: &Garage, store: &str, series: &str) -> Vec<String> {
    open(g, store).versions(series).unwrap()
}

/// The pack ids a version's head names.
fn packs_of(g: &Garage, store: &str, series: &str, version: &str) -> Vec<[u8; 32]> {
    open(g, store).read_head(series, version).unwrap().packs
}

/// A small tree: a shared file every version keeps, and `unique` of its own.
fn tree(root: &Path, unique: &str, seed: u64) {
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), "pruned\n").unwrap();
    std::fs::write(root.join("shared.bin"), common::iso::noise(150_000, 0x5a5a)).unwrap();
    for e in std::fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap().to_str().unwrap().starts_with("u-") {
            std::fs::remove_file(p).unwrap();
        }
    }
    std::fs::write(root.join(unique), common::iso::noise(120_000, seed)).unwrap();
}

fn capture(g: &Garage, root: &Path, address: &str) {
    osimage(g, &["capture", root.to_str().unwrap(), "-o", address, "-q"]).ok();
}

/// `extract ADDRESS` into `out`, compared with `root`.
fn extracts_as(g: &Garage, address: &str, root: &Path, out: &Path) {
    let run = osimage(g, &["extract", address, "-C", out.to_str().unwrap()]);
    run.ok();
    assert_no_differences(
        &diff_trees(root, out, Options { nlink: true }),
        &format!("{address} vs its tree"),
    );
}

#[test]
fn prune_forgets_at_once_and_its_sweep_deletes_only_what_forgotten_versions_used() {
    let g = Garage::start();
    let dir = common::scratch();
    let store = "s3://images/prune";
    osimage(&g, &["store", "init", store]).ok();
    let root = dir.path().join("root");
    let web01 = format!("{store}/web01");
    for (i, unique) in ["u-1.bin", "u-2.bin", "u-3.bin"].iter().enumerate() {
        tree(&root, unique, [11, 23, 37][i]);
        capture(&g, &root, &web01);
    }
    let other = dir.path().join("other");
    tree(&other, "u-other.bin", 7);
    capture(&g, &other, &format!("{store}/web02"));
    let v = versions(&g, store, "web01");
    assert_eq!(v.len(), 3, "{v:?}");
    // Each capture made one pack; the first holds the shared file the later ones reference.
    let first_pack = packs_of(&g, store, "web01", &v[0]);
    let second_only: Vec<[u8; 32]> = packs_of(&g, store, "web01", &v[1])
        .into_iter()
        .filter(|p| !first_pack.contains(p))
        .collect();
    let newest_packs = packs_of(&g, store, "web01", &v[2]);
    assert_eq!(second_only.len(), 1, "the second version's own pack");
    assert!(newest_packs.contains(&first_pack[0]), "the shared pack");
    let before = g.keys("prune/");

    // A rule without --series or --all is refused before anything is read.
    osimage(&g, &["store", "prune", store, "--keep-last", "1"])
        .usage_error()
        .mentions(b"--all");
    // --dry-run prints the reasons and changes nothing (no lock, no condemnation).
    let dry = osimage(
        &g,
        &[
            "store",
            "prune",
            store,
            "--series",
            "web01",
            "--keep-last",
            "2",
            "--dry-run",
        ],
    )
    .ok();
    let out = dry.stdout_str();
    assert!(out.contains(&format!("  {}  keep (last 1)", v[2])), "{out}");
    assert!(out.contains(&format!("  {}  keep (last 2)", v[1])), "{out}");
    assert!(out.contains(&format!("  {}  forget", v[0])), "{out}");
    assert!(
        out.contains("would condemn: 1 version, 0 packs, 0 rescue blobs"),
        "{out}"
    );
    assert_eq!(g.keys("prune/"), before, "a dry run changes nothing");

    // Condemn (no --wait): the forgotten versions are gone for readers at once.
    osimage(
        &g,
        &[
            "store",
            "prune",
            store,
            "--series",
            "web01",
            "--keep-last",
            "1",
        ],
    )
    .ok()
    .mentions(b"condemned: 2 versions, 1 pack, 0 rescue blobs");
    assert_eq!(
        g.keys("prune/locks/"),
        Vec::<String>::new(),
        "lock released"
    );
    let ls = osimage(&g, &["store", "ls", store, "--stats"])
        .ok()
        .stdout_str();
    assert!(
        ls.contains(&format!("  {}  ", v[0])) && ls.contains("forgotten"),
        "{ls}"
    );
    assert!(ls.contains("1 condemnation pending"), "{ls}");
    let old = format!("{web01}@{}", v[0]);
    osimage(&g, &["info", &old])
        .fails()
        .mentions(b"forgotten by the prune of")
        .mentions(format!("store pin {old} --until DATE").as_bytes());
    extracts_as(&g, &web01, &root, &dir.path().join("newest"));
    assert_eq!(
        g.keys("prune/images/web01/").len(),
        3,
        "nothing deleted yet"
    );
    // A capture started now does not reference the condemned pack (§4 step 3): the data it
    // holds goes up again, so the sweep cannot take it from under the new version.
    let again = dir.path().join("again");
    tree(&again, "u-2.bin", 23);
    capture(&g, &again, &format!("{store}/web03"));
    let web03 = versions(&g, store, "web03");
    assert!(!packs_of(&g, store, "web03", &web03[0]).contains(&second_only[0]));

    // The next prune sweeps: the forgotten versions and the pack only they used go; the
    // shared pack and the other series stay; no index object names a deleted pack.
    osimage(&g, &["store", "prune", store, "--wait"])
        .ok()
        .mentions(b"swept: deleted 3 object(s), 0 rescued");
    assert_eq!(versions(&g, store, "web01"), [v[2].clone()]);
    let packs = g.keys("prune/packs/");
    assert!(
        !packs
            .iter()
            .any(|k| k.ends_with(&names::hex(&second_only[0])))
    );
    for p in &newest_packs {
        assert!(
            packs.iter().any(|k| k.ends_with(&names::hex(p))),
            "{packs:?}"
        );
    }
    let st = open(&g, store);
    for name in st.list_index().unwrap() {
        for p in st.get_index(&name).unwrap().packs {
            assert!(
                p.id != second_only[0],
                "an index object names a deleted pack"
            );
        }
    }
    let listing = st.list_condemnations().unwrap();
    assert_eq!(listing.condemnations.len(), 1);
    assert!(listing.condemnations[0].swept.is_some());
    osimage(&g, &["verify", &web01]).ok();
    osimage(&g, &["verify", &format!("{store}/web02")]).ok();
    extracts_as(&g, &web01, &root, &dir.path().join("after"));
    extracts_as(
        &g,
        &format!("{store}/web02"),
        &other,
        &dir.path().join("web02"),
    );
    osimage(&g, &["verify", &format!("{store}/web03")]).ok();
    extracts_as(
        &g,
        &format!("{store}/web03"),
        &again,
        &dir.path().join("web03"),
    );
}

/// A capture of `root` into `address` through `endpoint`, in a process group of its own
/// (as `store_locks` starts one, for the same reason).
fn spawn_capture(g: &Garage, endpoint: &str, root: &Path, address: &str) -> Child {
    g.spawn_capture(endpoint, root, address, &[("OSIMAGE_STORE_TIMES", TIMES)])
}

/// The child's exit status and stderr, waiting at most [`DEADLINE`].
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

#[test]
fn a_sweep_waits_for_a_running_capture_then_rescues_its_packs() {
    let g = Garage::start();
    let dir = common::scratch();
    let store = "s3://images/rescue";
    osimage(&g, &["store", "init", store]).ok();
    let root: PathBuf = dir.path().join("root");
    let address = format!("{store}/web01");
    tree(&root, "u-1.bin", 1);
    capture(&g, &root, &address);
    // A second capture with a new file, held at its index PUT: its pack is uploaded, in no
    // index and no version, and its lock is fresh.
    tree(&root, "u-2.bin", 2);
    let proxy = HoldProxy::start(g.s3_port(), "PUT /images/rescue/index/");
    let child = spawn_capture(&g, &proxy.endpoint(), &root, &address);
    assert!(
        proxy.wait_held(DEADLINE),
        "the capture never reached its index PUT"
    );
    let running = g.keys("rescue/locks/");
    assert_eq!(running.len(), 1, "the capture's lock");

    // A prune without rules condemns the unreferenced pack, waiting for that lock.
    osimage(&g, &["store", "prune", store])
        .ok()
        .mentions(b"condemned: 0 versions, 1 pack, 0 rescue blobs");
    let st = open(&g, store);
    let listing = st.list_condemnations().unwrap();
    assert_eq!(listing.condemnations.len(), 1);
    let id = listing.condemnations[0].id;
    let wait = st.read_wait(&id).unwrap().expect("its wait list");
    let lock_rel = running[0].strip_prefix("rescue/").unwrap();
    assert_eq!(
        wait.locks,
        [lock_rel.to_string()],
        "the capture's lock waited for"
    );
    let condemned = st.read_condemnation(&id).unwrap().unwrap().packs[0];
    // The next prune does not sweep it while the lock is fresh.
    osimage(&g, &["store", "prune", store])
        .ok()
        .mentions(b"not swept yet (waiting for a lock still held")
        .mentions(lock_rel.as_bytes());
    assert!(
        st.client
            .head(&st.root.key(&names::pack_key(&condemned)))
            .unwrap()
            .is_some()
    );

    // One prune at a time: a fresh Prune lock stops another prune, which changes nothing.
    let times = StoreTimes::parse(TIMES).unwrap();
    let other = st.take_lock_with(LockKind::Prune, None, times).unwrap();
    osimage(&g, &["store", "prune", store, "--wait"])
        .fails()
        .mentions(b"another prune is running: host ");
    other.release().unwrap();
    assert_eq!(st.list_condemnations().unwrap().condemnations.len(), 1);

    // The capture commits a version that uses the condemned pack, and drops its lock.
    proxy.release();
    let (status, err) = finish(child);
    assert!(status.success(), "{status:?}: {err}");
    let v = versions(&g, store, "web01");
    assert_eq!(v.len(), 2);
    assert!(packs_of(&g, store, "web01", &v[1]).contains(&condemned));

    // The sweep now runs and rescues the pack: nothing deleted, both versions read back.
    osimage(&g, &["store", "prune", store, "--wait"])
        .ok()
        .mentions(b"swept: deleted 0 object(s), 1 rescued");
    assert!(
        st.client
            .head(&st.root.key(&names::pack_key(&condemned)))
            .unwrap()
            .is_some()
    );
    osimage(&g, &["verify", &address]).ok();
    osimage(&g, &["verify", &format!("{address}@{}", v[0])]).ok();
    extracts_as(&g, &address, &root, &dir.path().join("out"));
    assert_eq!(g.keys("rescue/locks/"), Vec::<String>::new());
}

#[test]
fn forget_and_pin_by_hand() {
    let g = Garage::start();
    let dir = common::scratch();
    let store = "s3://images/byhand";
    osimage(&g, &["store", "init", store]).ok();
    let root = dir.path().join("root");
    let address = format!("{store}/web01");
    for (unique, seed) in [("u-1.bin", 11), ("u-2.bin", 23)] {
        tree(&root, unique, seed);
        capture(&g, &root, &address);
    }
    let v = versions(&g, store, "web01");
    let first = format!("{address}@{}", v[0]);
    osimage(&g, &["store", "forget", &address])
        .usage_error()
        .mentions(b"name one version in full");

    // A pinned version is not forgotten, by hand or by the rules.
    osimage(
        &g,
        &[
            "store",
            "pin",
            &first,
            "--until",
            "2099-01-01",
            "--why",
            "rack 4",
        ],
    )
    .ok()
    .mentions(b"pinned until 2099-01-02T00:00:00Z");
    osimage(&g, &["store", "forget", &first])
        .fails()
        .mentions(b"pinned (osimage store unpin");
    let dry = osimage(
        &g,
        &[
            "store",
            "prune",
            store,
            "--all",
            "--keep-last",
            "1",
            "--dry-run",
        ],
    )
    .ok()
    .stdout_str();
    assert!(dry.contains(&format!("  {}  keep (pinned)", v[0])), "{dry}");
    osimage(&g, &["store", "unpin", &first])
        .ok()
        .mentions(b"1 pin(s) removed");

    // Forgotten: refused by name at once; a pin made before the sweep rescues it.
    osimage(&g, &["store", "forget", &first])
        .ok()
        .mentions(b"forgotten by");
    assert_eq!(
        g.keys("byhand/locks/"),
        Vec::<String>::new(),
        "lock released"
    );
    osimage(&g, &["verify", &first])
        .fails()
        .mentions(b"forgotten by the prune of");
    osimage(&g, &["store", "pin", &first, "--until", "2099-01-01"]).ok();
    osimage(&g, &["verify", &first]).ok();
    osimage(&g, &["store", "prune", store, "--wait"])
        .ok()
        .mentions(b"swept: deleted 0 object(s), 1 rescued");
    assert_eq!(versions(&g, store, "web01"), v);
    osimage(&g, &["verify", &first]).ok();
}

#[test]
fn a_sweep_merges_more_than_64_index_objects() {
    let g = Garage::start();
    let dir = common::scratch();
    let store = "s3://images/merge";
    osimage(&g, &["store", "init", store]).ok();
    let root = dir.path().join("root");
    let address = format!("{store}/web01");
    for (unique, seed) in [("u-1.bin", 11), ("u-2.bin", 23)] {
        tree(&root, unique, seed);
        capture(&g, &root, &address);
    }
    // 64 more index objects, copies of the first: 66 in all, every pack listed several times.
    let st = open(&g, store);
    let first = st.list_index().unwrap()[0];
    let copy = st.get_index(&first).unwrap();
    for _ in 0..64 {
        st.put_index(&copy).unwrap();
    }
    assert_eq!(st.list_index().unwrap().len(), 66);
    osimage(
        &g,
        &[
            "store",
            "prune",
            store,
            "--all",
            "--keep-last",
            "1",
            "--wait",
        ],
    )
    .ok()
    .mentions(b"index objects merged");
    let merged = st.list_index().unwrap();
    assert_eq!(merged.len(), 1, "{merged:?}");
    let v = versions(&g, store, "web01");
    let listed: Vec<[u8; 32]> = st
        .get_index(&merged[0])
        .unwrap()
        .packs
        .iter()
        .map(|p| p.id)
        .collect();
    for p in packs_of(&g, store, "web01", &v[0]) {
        assert!(listed.contains(&p), "the kept version's packs stay indexed");
    }
    osimage(&g, &["verify", &address]).ok();
    extracts_as(&g, &address, &root, &dir.path().join("out"));
}
