//! Golden-image refreshes (issue #6, docs/REFRESH.md): `capture --base OLD` reads only what
//! changed, copies OLD's blocks instead of compressing again, and still writes a
//! self-contained image; `diff` names what changed.
//!
//! Needs root (the shared fixture). The refresh captures, the lineage counters and the diff
//! go through the library until the CLI lines land (`--base`, `info --json`'s `lineage`,
//! `osimage diff`); extraction and verification go through the built binary.

use crate::common;

use std::fs::{File, FileTimes, OpenOptions};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use common::compare::{Options, assert_no_differences, diff_trees};
use common::osimage;
use osimage::Lineage;

/// A base capture treats files whose ctime is within a tick (2 s for whole-second
/// timestamps) of its own start as possibly rewritten unseen, and reads them again next time
/// (docs/REFRESH.md "Racily clean files"). Waiting this long after building a tree makes
/// every file of it eligible for reuse, whatever the filesystem's timestamp granularity.
const SETTLE: Duration = Duration::from_millis(2100);

/// `osimage capture ROOT -o IMAGE [--base BASE] --verify`.
fn capture(root: &Path, image: &Path, base: Option<&Path>) {
    match base {
        Some(b) => common::capture(
            root,
            image,
            &["--verify", "--base", b.to_str().expect("utf-8")],
        ),
        None => common::capture(root, image, &["--verify"]),
    };
}

/// The lineage counters of a refresh, from `info --json`.
fn lineage(image: &Path) -> Lineage {
    let info = common::info_json(image);
    let l = &info["lineage"];
    let n = |k: &str| {
        l[k].as_u64()
            .unwrap_or_else(|| panic!("no lineage.{k}: {info:#}"))
    };
    Lineage {
        base_id: [0; 16],
        base_path: l["base_path"]
            .as_str()
            .expect("base_path")
            .as_bytes()
            .to_vec(),
        files_reused: n("files_reused"),
        files_read: n("files_read"),
        blocks_copied: n("blocks_copied"),
        bytes_copied: n("bytes_copied"),
        chunks_new: n("chunks_new"),
        reused_bytes: n("reused_bytes"),
        carried_bytes: n("carried_bytes"),
    }
}

/// `osimage diff A B`.
fn diff(a: &Path, b: &Path) -> String {
    osimage(["diff".as_ref(), a.as_os_str(), b.as_os_str()])
        .ok()
        .stdout_str()
}

fn extract_and_compare(image: &Path, root: &Path, out: &Path, what: &str) {
    common::extract(image, out, &[]).ok();
    assert_no_differences(&diff_trees(root, out, Options::default()), what);
}

#[test]
fn refresh_of_an_unchanged_tree_reads_no_file_and_stands_alone() {
    let built = common::build_fixture();
    std::thread::sleep(SETTLE);
    let (old, new) = (built.path("old.oimg"), built.path("new.oimg"));
    capture(&built.root, &old, None);
    capture(&built.root, &new, Some(&old));

    let l = lineage(&new);
    let files = common::counter(&common::info_json(&new), "files");
    eprintln!("refresh of an unchanged tree: {l:?}, {files} files");
    assert_eq!(l.files_read, 0, "{l:?}");
    assert_eq!(l.files_reused, files, "{l:?}");
    assert_eq!(l.chunks_new, 0, "nothing is compressed again: {l:?}");
    assert_eq!(l.carried_bytes, 0, "every copied chunk is used: {l:?}");
    assert!(l.blocks_copied > 0 && l.bytes_copied > 0, "{l:?}");
    assert_eq!(l.base_path, old.as_os_str().as_encoded_bytes());
    extract_and_compare(&new, &built.root, &built.empty_dir("out"), "refresh");

    // Self-contained: the base can go.
    std::fs::remove_file(&old).expect("remove the base");
    osimage(["verify".as_ref(), new.as_os_str()]).ok();
    extract_and_compare(&new, &built.root, &built.empty_dir("out2"), "without base");
}

/// Rewrites `path` in place with different bytes of the same length, then puts its atime
/// and mtime back: only ctime (which nobody can set) tells the change.
fn rewrite_keeping_mtime(path: &Path, bytes: &[u8]) {
    let md = std::fs::metadata(path).expect("stat");
    assert_eq!(md.len(), bytes.len() as u64);
    let f = OpenOptions::new().write(true).open(path).expect("open");
    f.write_all_at(bytes, 0).expect("write");
    let times = FileTimes::new()
        .set_accessed(md.accessed().expect("atime"))
        .set_modified(md.modified().expect("mtime"));
    f.set_times(times).expect("utimensat");
    let now = std::fs::metadata(path).expect("stat");
    assert_eq!(now.modified().ok(), md.modified().ok());
}

/// Puts a directory's mtime back after entries were added or removed, so `diff` shows only
/// the files' changes.
fn keep_dir_mtime<T>(dir: &Path, change: impl FnOnce() -> T) -> T {
    let md = std::fs::metadata(dir).expect("stat dir");
    let r = change();
    let times = FileTimes::new()
        .set_accessed(md.accessed().expect("atime"))
        .set_modified(md.modified().expect("mtime"));
    File::open(dir)
        .expect("open dir")
        .set_times(times)
        .expect("utimensat dir");
    r
}

#[test]
fn refresh_sees_an_in_place_change_with_mtime_restored_and_diff_names_changes() {
    common::require_root();
    let scratch = common::scratch();
    let root = scratch.path().join("src");
    std::fs::create_dir(&root).expect("mkdir");
    let big: Vec<u8> = (0..3u32 << 18)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(root.join("big.dat"), &big).expect("write");
    std::fs::write(root.join("edited.bin"), [1u8; 5000]).expect("write");
    std::fs::write(root.join("gone.txt"), b"bye\n").expect("write");
    std::fs::write(root.join("script.sh"), b"#!/bin/sh\necho hi\n").expect("write");
    std::thread::sleep(SETTLE);
    let image = |n: &str| scratch.path().join(n);
    capture(&root, &image("a.oimg"), None);

    rewrite_keeping_mtime(&root.join("edited.bin"), &[2u8; 5000]);
    capture(&root, &image("b.oimg"), Some(&image("a.oimg")));
    let l = lineage(&image("b.oimg"));
    eprintln!("refresh after one in-place change: {l:?}");
    assert_eq!((l.files_read, l.files_reused), (1, 3), "{l:?}");
    let out = scratch.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    common::extract(&image("b.oimg"), &out, &[]).ok();
    assert_eq!(
        std::fs::read(out.join("edited.bin")).expect("read"),
        [2u8; 5000]
    );
    assert_eq!(
        diff(&image("a.oimg"), &image("b.oimg")),
        "M /edited.bin (5000 → 5000 bytes)\n0 added, 0 removed, 1 changed, 0 metadata only\n"
    );

    keep_dir_mtime(&root, || {
        std::fs::remove_file(root.join("gone.txt")).expect("rm");
        std::fs::write(root.join("new.txt"), b"hello, world\n").expect("write");
    });
    std::fs::set_permissions(
        root.join("script.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    capture(&root, &image("c.oimg"), Some(&image("b.oimg")));
    let l = lineage(&image("c.oimg"));
    eprintln!("refresh after add, remove, chmod: {l:?}");
    // Read: new.txt (new), script.sh (the chmod moved its ctime) and edited.bin: B read it
    // moments after it was written, so B cannot vouch that no write followed within the same
    // clock tick (racily clean). Only big.dat is reused.
    assert_eq!((l.files_read, l.files_reused), (3, 1), "{l:?}");
    assert_eq!(
        diff(&image("a.oimg"), &image("c.oimg")),
        "M /edited.bin (5000 → 5000 bytes)\n\
         - /gone.txt (4 bytes)\n\
         + /new.txt (13 bytes)\n\
         m /script.sh (mode)\n\
         1 added, 1 removed, 1 changed, 1 metadata only\n"
    );
}

/// A refresh takes an unchanged file's xattrs from its base without reading them (docs/
/// REFRESH.md, "Metadata from the base"); setting an xattr moves the file's ctime (not its
/// mtime), so a file whose xattr changed is not "unchanged": its new xattr is read.
#[test]
fn refresh_reads_a_changed_xattr_even_with_mtime_and_size_kept() {
    common::require_root();
    let scratch = common::scratch();
    let root = scratch.path().join("src");
    std::fs::create_dir(&root).expect("mkdir");
    let (tagged, other) = (root.join("tagged.txt"), root.join("other.txt"));
    std::fs::write(&tagged, b"labelled\n").expect("write");
    std::fs::write(&other, b"plain\n").expect("write");
    xattr::set(&tagged, "user.osimage.label", b"one").expect("setxattr");
    std::thread::sleep(SETTLE);
    let image = |n: &str| scratch.path().join(n);
    capture(&root, &image("a.oimg"), None);

    let mtime = std::fs::metadata(&tagged).and_then(|m| m.modified()).ok();
    xattr::set(&tagged, "user.osimage.label", b"two").expect("setxattr");
    assert_eq!(
        std::fs::metadata(&tagged).and_then(|m| m.modified()).ok(),
        mtime
    );
    capture(&root, &image("b.oimg"), Some(&image("a.oimg")));
    let l = lineage(&image("b.oimg"));
    assert_eq!((l.files_read, l.files_reused), (1, 1), "{l:?}");
    let out = scratch.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    extract_and_compare(&image("b.oimg"), &root, &out, "xattr");
    assert_eq!(
        diff(&image("a.oimg"), &image("b.oimg")),
        "m /tagged.txt (xattrs)\n0 added, 0 removed, 0 changed, 1 metadata only\n"
    );
}

/// A refresh copies its base's blocks without reading them (format 2: their hashes come from
/// the base's manifest, docs/REFRESH.md "Block copies"). Damage in the base is therefore
/// copied as it is, but not laundered: the new image records the hash of the intact block,
/// so its own `verify` names the damaged file.
#[test]
fn a_damaged_base_block_is_not_laundered_by_a_refresh() {
    use osimage::BaseImage;
    let scratch = common::scratch();
    let root = scratch.path().join("src");
    std::fs::create_dir(&root).expect("mkdir");
    let text: Vec<u8> = (0..60_000u32)
        .flat_map(|i| format!("{i} ").into_bytes())
        .collect();
    std::fs::write(root.join("only.txt"), &text).expect("write");
    std::thread::sleep(SETTLE);
    let (old, new) = (
        scratch.path().join("old.oimg"),
        scratch.path().join("new.oimg"),
    );
    common::capture(&root, &old, &["-q"]).ok();

    // The base's blocks come back unread: no bytes, where they lie, and the recorded hash.
    let base = osimage::Base::open(&old, &Default::default()).expect("base");
    let run = base.stored_run(&[0]).expect("run");
    assert!(run.bytes.is_empty() && run.source.is_some());
    let r = osimage::PayloadReader::open(&old, &Default::default()).unwrap();
    let rec = r.manifest().blocks[0].clone();
    let n_blocks = r.manifest().blocks.len() as u64;
    assert_eq!(run.hashes, [rec.hash]);
    drop(base);

    // One flipped byte in the body of the base's first block.
    let at = r.pack_spans()[rec.pack as usize].offset + rec.offset + 16 + 40;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&old)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x20], at).unwrap();
    drop(f);

    common::capture(&root, &new, &["-q", "--base", old.to_str().unwrap()]).ok();
    assert_eq!(lineage(&new).blocks_copied, n_blocks);
    osimage(["verify".as_ref(), new.as_os_str()])
        .reports_damage()
        .mentions(b"only.txt");
}
