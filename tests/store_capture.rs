//! Captures into a store (docs/STORE.md §4, §12.3, issue #22) against a real Garage on
//! loopback: a version reads back as the same capture into a `.oimg` does (`list -l`,
//! `verify`, `extract`); an unchanged re-capture uploads almost nothing and a changed file
//! only its own new blocks, while the older version still reads as it was; a pack replaced by
//! other bytes is named and refused, a byte flipped in one named by its id and object key; a
//! prefix without a store and `--encrypt` are refused
//! before anything is read.

use crate::common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use common::compare::{Options, assert_no_differences, diff_trees};
use common::garage::Garage;

fn s(x: &str) -> &OsStr {
    OsStr::new(x)
}

/// `osimage ARGS…` against `g`.
fn osimage(g: &Garage, args: &[&OsStr]) -> common::Run {
    let env = g.osimage_env();
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut all = args.to_vec();
    if matches!(
        args.first().and_then(|a| a.to_str()),
        Some("verify" | "extract" | "list")
    ) {
        all.extend([s("--retry-for"), s("5")]);
    }
    common::osimage_env(all, &pairs)
}

/// `capture ROOT -o ADDRESS -q`, which must succeed.
fn capture(g: &Garage, root: &Path, address: &str) -> common::Run {
    osimage(
        g,
        &[s("capture"), root.as_os_str(), s("-o"), s(address), s("-q")],
    )
    .ok()
}

/// Each version's `new_bytes` from `store ls -l --json`, oldest first.
fn new_bytes(g: &Garage, store: &str) -> Vec<(String, u64)> {
    let run = osimage(g, &[s("store"), s("ls"), s(store), s("-l"), s("--json")]).ok();
    common::garage::listed_heads(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", run.describe()))
        .into_iter()
        .map(|(version, head)| (version, head["new_bytes"].as_u64().expect("new_bytes")))
        .collect()
}

/// A tree of a few hundred files, some compressible, some not.
fn tree(dir: &Path) -> PathBuf {
    common::text_and_noise_tree(dir, 8, 40, 300_000, 0x5eed)
}

#[test]
fn a_version_reads_back_as_the_same_capture_into_a_file() {
    let built = common::build_fixture();
    let g = Garage::start();
    let store = format!("s3://{}/site-a", g.bucket());
    osimage(&g, &[s("store"), s("init"), s(&store)]).ok();
    let address = format!("{store}/web01");
    let done = osimage(
        &g,
        &[s("capture"), built.root.as_os_str(), s("-o"), s(&address)],
    )
    .ok();
    assert!(
        done.stdout_str().contains(&address) || done.stderr.contains(&address),
        "the summary names the version: {}",
        done.describe()
    );
    let oimg = built.path("system.oimg");
    common::capture(&built.root, &oimg, &["-q"]).ok();

    let long = |img: &OsStr| osimage(&g, &[s("list"), s("-l"), img]).ok().stdout;
    assert_eq!(long(s(&address)), long(oimg.as_os_str()), "list -l");
    let verified = osimage(&g, &[s("verify"), s(&address)]).ok();
    assert!(
        verified.stdout_str().contains("OK"),
        "{}",
        verified.describe()
    );
    let (from_store, from_file) = (built.path("from-store"), built.path("from-file"));
    for (img, dir) in [(s(&address), &from_store), (oimg.as_os_str(), &from_file)] {
        osimage(&g, &[s("extract"), img, s("-C"), dir.as_os_str()]).ok();
    }
    let diffs = diff_trees(&from_file, &from_store, Options { nlink: true });
    assert_no_differences(&diffs, "extract from the store vs from the file");
    // What the store holds: packs, one index object, one version.
    assert!(!g.keys("site-a/packs/").is_empty());
    assert_eq!(g.keys("site-a/index/").len(), 1);
    assert_eq!(g.keys("site-a/images/web01/").len(), 1);
}

#[test]
fn a_recapture_uploads_only_what_changed_and_old_versions_stay_readable() {
    let dir = common::scratch();
    let root = tree(dir.path());
    let g = Garage::start();
    let store = format!("s3://{}/fleet", g.bucket());
    osimage(&g, &[s("store"), s("init"), s(&store)]).ok();
    let address = format!("{store}/golden");
    capture(&g, &root, &address);
    // Files written moments before a capture are read again by the next one (the files
    // cache's racy window, docs/REFRESH.md); let them age first.
    std::thread::sleep(std::time::Duration::from_secs(3));
    capture(&g, &root, &address);
    let first_two = new_bytes(&g, &store);
    assert_eq!(first_two.len(), 2, "{first_two:?}");
    let (first, unchanged) = (first_two[0].1, first_two[1].1);
    assert!(
        first > 1_000_000,
        "the first capture uploads the tree: {first}"
    );
    assert!(
        unchanged * 100 < first,
        "an unchanged re-capture uploads under 1% ({unchanged} of {first} bytes)"
    );

    // One changed file: its new blocks only, and the older version still has the old bytes.
    let changed = root.join("d3/t7.txt");
    let old_text = std::fs::read(&changed).unwrap();
    std::fs::write(&changed, b"changed after the second capture\n".repeat(500)).unwrap();
    capture(&g, &root, &address);
    let all = new_bytes(&g, &store);
    assert_eq!(all.len(), 3, "{all:?}");
    let third = all[2].1;
    assert!(
        third > 0 && third * 20 < first,
        "a changed file uploads its own blocks: {third} of {first}"
    );
    let newest = dir.path().join("newest");
    osimage(
        &g,
        &[s("extract"), s(&address), s("-C"), newest.as_os_str()],
    )
    .ok();
    assert_no_differences(
        &diff_trees(&root, &newest, Options { nlink: true }),
        "the newest version vs the tree",
    );
    let oldest = dir.path().join("oldest");
    let first_version = format!("{address}@{}", all[0].0);
    osimage(
        &g,
        &[s("extract"), s(&first_version), s("-C"), oldest.as_os_str()],
    )
    .ok();
    assert_eq!(std::fs::read(oldest.join("d3/t7.txt")).unwrap(), old_text);
    for v in [&address, &first_version] {
        osimage(&g, &[s("verify"), s(v)]).ok();
    }
}

#[test]
fn a_replaced_pack_is_named_and_nothing_is_written_from_it() {
    let dir = common::scratch();
    let root = tree(dir.path());
    let g = Garage::start();
    let store = format!("s3://{}/site-b", g.bucket());
    osimage(&g, &[s("store"), s("init"), s(&store)]).ok();
    let address = format!("{store}/db01");
    capture(&g, &root, &address);
    let packs = g.keys("site-b/packs/");
    let victim = packs.first().expect("a pack");
    let client = g.client();
    let length = client.head(victim).expect("head").expect("the pack exists");
    client
        .put(victim, &vec![0x5a; length as usize])
        .expect("put");
    let id = victim.rsplit('/').next().unwrap();

    let verify = osimage(&g, &[s("verify"), s(&address)]);
    assert_ne!(verify.code, 0, "{}", verify.describe());
    assert!(
        verify.stderr.contains(id) && verify.stderr.contains("bad magic"),
        "the pack is named by its id: {}",
        verify.describe()
    );
    let out = dir.path().join("out");
    let extract = osimage(&g, &[s("extract"), s(&address), s("-C"), out.as_os_str()]);
    assert_ne!(extract.code, 0, "{}", extract.describe());
    assert!(extract.stderr.contains(id), "{}", extract.describe());
    assert!(!out.exists(), "nothing was written");
}

#[test]
fn a_flipped_byte_in_a_pack_is_named_by_its_object_key() {
    let dir = common::scratch();
    let root = tree(dir.path());
    let g = Garage::start();
    let store = format!("s3://{}/site-c", g.bucket());
    osimage(&g, &[s("store"), s("init"), s(&store)]).ok();
    let address = format!("{store}/db01");
    capture(&g, &root, &address);
    let packs = g.keys("site-c/packs/");
    let victim = packs.first().expect("a pack");
    let client = g.client();
    let mut body = client.get(victim, 1 << 30).expect("get").expect("the pack");
    let middle = body.len() / 2;
    body[middle] ^= 0x01;
    client.put(victim, &body).expect("put");
    // docs/STORE.md §6.1: the pack's id and its object's key, `site-c/packs/ab/<id>`.
    let id = victim.rsplit('/').next().unwrap();
    let named = format!("pack {id} (object {victim})");

    let verify = osimage(&g, &[s("verify"), s(&address)]);
    assert_ne!(verify.code, 0, "{}", verify.describe());
    let said = format!("{}{}", verify.stdout_str(), verify.stderr);
    assert!(
        said.contains(&named) && said.contains("is damaged"),
        "{}",
        verify.describe()
    );
    let out = dir.path().join("out");
    let extract = osimage(&g, &[s("extract"), s(&address), s("-C"), out.as_os_str()]);
    assert_ne!(extract.code, 0, "{}", extract.describe());
    assert!(
        extract.stderr.contains(&named) && extract.stderr.contains("fetched twice"),
        "{}",
        extract.describe()
    );
}

#[test]
fn no_store_and_encryption_are_refused_before_anything_is_read() {
    let dir = common::scratch();
    let root = tree(dir.path());
    let g = Garage::start();
    let nowhere = format!("s3://{}/no-store-here/web", g.bucket());
    let run = osimage(
        &g,
        &[
            s("capture"),
            root.as_os_str(),
            s("-o"),
            s(&nowhere),
            s("-q"),
        ],
    );
    assert_ne!(run.code, 0, "{}", run.describe());
    assert!(
        run.stderr.contains("no osimage store") && run.stderr.contains("store init"),
        "{}",
        run.describe()
    );
    assert!(g.keys("no-store-here/").is_empty(), "nothing was written");

    let store = format!("s3://{}/site-c", g.bucket());
    osimage(&g, &[s("store"), s("init"), s(&store)]).ok();
    let run = osimage(
        &g,
        &[
            s("capture"),
            root.as_os_str(),
            s("-o"),
            s(&format!("{store}/web")),
            s("--encrypt"),
            s("-q"),
        ],
    );
    assert_eq!(run.code, 2, "{}", run.describe());
    assert!(g.keys("site-c/packs/").is_empty(), "nothing was uploaded");

    // A tag labels a store's version: with a file for output it is refused, not ignored.
    let file = dir.path().join("system.oimg");
    let run = osimage(
        &g,
        &[
            s("capture"),
            root.as_os_str(),
            s("-o"),
            file.as_os_str(),
            s("--tag"),
            s("nightly"),
        ],
    );
    assert_eq!(run.code, 2, "{}", run.describe());
    assert!(!file.exists(), "{}", run.describe());
}
