//! A store on a Garage cluster of three storage nodes with replication factor 3 behind a
//! gateway node that stores nothing (docs/STORE.md §12.2, issue #22): a version captured into
//! it is read back whole while one storage node is stopped in the middle of the read. The
//! read is held at a known point — its first pack GET waits in a relay (`HoldProxy`) — the
//! third storage node is killed, then the GET is let through: every pack after that comes
//! from the two nodes left, and the files come back identical.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::garage_cluster::GarageCluster;
use common::hold_proxy::HoldProxy;

/// How long the read may take once let through, and the hold to be reached: generous for
/// two busy cores.
const DEADLINE: Duration = Duration::from_secs(300);

/// A tree of ~26 MiB that compresses badly (so several 8 MiB packs) and some text.
fn tree(dir: &Path) -> std::path::PathBuf {
    let root = dir.join("root");
    for d in 0..3u64 {
        let sub = root.join(format!("d{d}"));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join("noise.bin"), common::iso::noise(9 << 20, d)).unwrap();
        for f in 0..10 {
            std::fs::write(
                sub.join(format!("t{f}.txt")),
                format!("{d}/{f}\n").repeat(500),
            )
            .unwrap();
        }
    }
    root
}

#[test]
fn a_read_completes_with_one_of_three_nodes_stopped_midway() {
    let mut cluster = GarageCluster::start(3);
    let g = &cluster.gateway;
    let env = g.osimage_env();
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let dir = common::scratch();
    let root = tree(dir.path());
    let store = "s3://images/fleet";
    common::osimage_env(["store", "init", store, "--pack-size", "8M"], &pairs).ok();
    let address = format!("{store}/files");
    let root_arg = root.to_str().unwrap();
    common::osimage_env(["capture", root_arg, "-o", &address, "-q"], &pairs).ok();
    let packs = g.client().list("fleet/packs/").expect("list").objects;
    assert!(packs.len() >= 3, "several packs: {}", packs.len());

    // The read, held at its first pack GET.
    let proxy = HoldProxy::start(g.s3_port(), "GET /images/fleet/packs/");
    let out = dir.path().join("out");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_osimage"));
    cmd.args(["extract", &address, "-C"])
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .envs(pairs.iter().copied())
        .env("AWS_ENDPOINT_URL", proxy.endpoint());
    let child = cmd.spawn().expect("starting osimage extract");
    assert!(
        proxy.wait_held(DEADLINE),
        "the read never reached a pack GET"
    );
    cluster.storage[2].stop();
    let stopped = Instant::now();
    proxy.release();
    let done = child
        .wait_with_output()
        .expect("waiting for osimage extract");
    let err = String::from_utf8_lossy(&done.stderr);
    assert!(
        done.status.success(),
        "the read failed with a node down: {}\n{err}",
        done.status
    );
    eprintln!(
        "store_cluster: read finished {:.1} s after a storage node was killed",
        stopped.elapsed().as_secs_f64()
    );
    common::same_files(&root, &out);
}
