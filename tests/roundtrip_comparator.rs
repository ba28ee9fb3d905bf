//! The comparator's own proof: two builds of the fixture are equal, and each kind of damage to
//! one of them is reported, at its path, as exactly that kind. Needs no osimage binary: a
//! round-trip test is only as good as the comparison it ends with.

use crate::common;

use common::compare::{Options, diff_trees};
use common::fixture::{self, MIB, paths};
use common::sys::{Dir, makedev};
use std::collections::BTreeSet;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

fn open(root: &Dir, rel: &str) -> (Dir, Vec<u8>) {
    root.parent_of(rel.as_bytes())
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Copies owner, mode, xattrs of `rel` from tree A onto the same path in tree B.
fn copy_meta(a: &Dir, b: &Dir, rel: &str, symlink: bool) {
    let (da, n) = open(a, rel);
    let (db, _) = open(b, rel);
    let st = da.lstat(Some(&n)).expect("lstat");
    db.chown(Some(&n), st.st_uid, st.st_gid).expect("chown");
    if !symlink {
        db.chmod(Some(&n), st.st_mode & 0o7777).expect("chmod");
    }
    for (k, v) in da.xattrs(Some(&n)).expect("xattrs") {
        let k = String::from_utf8(k).expect("ascii xattr names in the fixture");
        db.set_xattr(Some(&n), &k, &v).expect("setxattr");
    }
}

#[test]
fn fixture_builds_identically_twice() {
    let a = common::build_fixture();
    let b = common::build_fixture();
    let diffs = diff_trees(&a.root, &b.root, Options::default());
    common::compare::assert_no_differences(&diffs, "two builds of the fixture");
}

#[test]
fn fixture_has_every_kind_of_entry() {
    let a = common::build_fixture();
    let snap = common::compare::snapshot(&a.root).expect("snapshot");
    let kinds: BTreeSet<char> = snap.values().map(|n| n.kind).collect();
    assert_eq!(kinds, "-bcdlps".chars().collect(), "entry types present");
    let longest = snap.keys().map(|p| p.len()).max().unwrap_or(0);
    assert!(
        longest > 4096,
        "a path longer than PATH_MAX, longest is {longest}"
    );
    let sparse = &snap[paths::SPARSE_1G.as_bytes()];
    assert!(
        sparse.size == 1 << 30 && sparse.allocated < MIB,
        "{sparse:?}"
    );
    let links = &snap[paths::HARDLINKS[0].as_bytes()];
    assert_eq!(links.nlink, 3);
    let cap = &snap[paths::CAP_FILE.as_bytes()];
    assert!(cap.xattrs.iter().any(|(k, _)| k == b"security.capability"));
    let acl = &snap[paths::ACL_DIR.as_bytes()];
    assert!(
        acl.xattrs
            .iter()
            .any(|(k, _)| k == b"system.posix_acl_default")
    );
    assert!(snap.values().any(|n| n.mtime.0 < 0), "a time before 1970");
    assert!(
        snap.values().any(|n| n.mtime.0 > 1 << 31),
        "a time after 2038"
    );
}

#[test]
fn comparator_reports_each_kind_of_difference() {
    let a = common::build_fixture();
    let b = common::build_fixture();
    let ra = Dir::open(&a.root).expect("open a");
    let rb = Dir::open(&b.root).expect("open b");

    // mode
    let (d, n) = open(&rb, paths::SMALL);
    d.chmod(Some(&n), 0o600).expect("chmod");
    // uid, gid
    let (d, n) = open(&rb, "owners/nobody");
    d.chown(Some(&n), 65533, 65534).expect("chown");
    let (d, n) = open(&rb, "owners/user-1000");
    d.chown(Some(&n), 1000, 101).expect("chown");
    // one byte of content (size and times unchanged)
    let (d, n) = open(&rb, paths::RANDOM);
    let f = d.open_write(&n).expect("open");
    let mut byte = [0u8; 1];
    d.open_file(&n)
        .expect("open")
        .read_exact_at(&mut byte, 2 * MIB)
        .expect("read");
    f.write_all_at(&[byte[0] ^ 0x01], 2 * MIB).expect("write");
    // one byte beyond PATH_MAX: the walk reaches it
    let deep = {
        let mut p = "deep".to_string();
        for i in 0..fixture::DEEP_LEVELS {
            p.push_str(&format!("/{i:02}-{}", "l".repeat(197)));
        }
        p + "/bottom.txt"
    };
    let (d, n) = open(&rb, &deep);
    d.open_write(&n)
        .expect("open")
        .write_all_at(b"M", 0)
        .expect("write");
    // size
    let (d, n) = open(&rb, "files/4096");
    d.open_write(&n)
        .expect("open")
        .set_len(4095)
        .expect("truncate");
    // user xattr value, an ACL entry, a capability removed
    let (d, n) = open(&rb, "xattrs/user");
    d.set_xattr(Some(&n), "user.comment", b"hellO")
        .expect("setxattr");
    let (d, n) = open(&rb, "xattrs/acl-file");
    let acl = fixture::posix_acl(&[
        (0x01, 6, u32::MAX),
        (0x02, 4, 1235),
        (0x04, 4, u32::MAX),
        (0x08, 6, 5678),
        (0x10, 6, u32::MAX),
        (0x20, 0, u32::MAX),
    ]);
    d.set_xattr(Some(&n), "system.posix_acl_access", &acl)
        .expect("setxattr");
    let (d, n) = open(&rb, paths::CAP_FILE);
    xattr::remove(d.xattr_path(Some(&n)), "security.capability").expect("removexattr");
    // symlink target
    let (d, n) = open(&rb, "links/dangling");
    d.unlink(&n).expect("unlink");
    d.symlink(b"does/not/exist/either", &n).expect("symlink");
    // device number
    let (d, n) = open(&rb, "devices/char-big");
    d.unlink(&n).expect("unlink");
    d.mknod(&n, libc::S_IFCHR | 0o600, makedev(300, 70_001))
        .expect("mknod");
    // type
    let (d, n) = open(&rb, "devices/fifo");
    d.unlink(&n).expect("unlink");
    d.create_file(&n).expect("create");
    copy_meta(&ra, &rb, "devices/fifo", false);
    // a hard link broken into a copy
    let (d, n) = open(&rb, paths::HARDLINKS[2]);
    d.unlink(&n).expect("unlink");
    d.create_file(&n)
        .expect("create")
        .write_all(&fixture::text(11, 70_000))
        .expect("write");
    copy_meta(&ra, &rb, paths::HARDLINKS[2], false);
    // a hole filled with written zeros (content unchanged)
    let (d, n) = open(&rb, "sparse/hole-at-end.img");
    let mut f = d.open_write(&n).expect("open");
    f.seek(SeekFrom::Start(4096)).expect("seek");
    f.write_all(&vec![0u8; (16 * MIB - 4096) as usize])
        .expect("write");
    f.sync_all().expect("fsync");
    // missing and extra
    let (d, n) = open(&rb, "names/with space");
    d.unlink(&n).expect("unlink");
    let (d, _) = open(&rb, "files/x");
    d.create_file(b"extra").expect("create");

    // Undo every side effect on times (directories touched above), then change one mtime by
    // a single nanosecond.
    fixture::set_all_times(&rb).expect("reset times");
    // The shared inode got its times from its last name in walk order, `other/three`.
    let (a3, m3) = fixture::times_for(paths::HARDLINKS[2].as_bytes());
    let (d, n) = open(&rb, paths::HARDLINKS[0]);
    d.set_times(Some(&n), a3, m3).expect("utimensat");
    let (d, n) = open(&rb, paths::TEXT);
    let st = d.lstat(Some(&n)).expect("lstat");
    let at = (st.st_atime, st.st_atime_nsec);
    d.set_times(Some(&n), at, (st.st_mtime, st.st_mtime_nsec + 1))
        .expect("utimensat");

    let expected: BTreeSet<(String, &str)> = [
        (paths::SMALL, "mode"),
        ("owners/nobody", "uid"),
        ("owners/user-1000", "gid"),
        (paths::RANDOM, "content"),
        (deep.as_str(), "content"),
        ("files/4096", "size"),
        ("files/4096", "content"),
        ("xattrs/user", "xattr"),
        ("xattrs/acl-file", "xattr"),
        (paths::CAP_FILE, "xattr"),
        ("links/dangling", "symlink target"),
        ("devices/char-big", "rdev"),
        ("devices/fifo", "type"),
        (paths::HARDLINKS[0], "hard links"),
        (paths::HARDLINKS[1], "hard links"),
        (paths::HARDLINKS[2], "hard links"),
        (paths::HARDLINKS[0], "nlink"),
        (paths::HARDLINKS[1], "nlink"),
        (paths::HARDLINKS[2], "nlink"),
        ("sparse/hole-at-end.img", "sparseness"),
        ("names/with space", "missing"),
        ("files/extra", "extra"),
        (paths::TEXT, "mtime"),
    ]
    .into_iter()
    .map(|(p, w)| (p.to_string(), w))
    .collect();

    let diffs = diff_trees(&a.root, &b.root, Options::default());
    let got: BTreeSet<(String, &str)> = diffs
        .iter()
        .map(|d| (String::from_utf8_lossy(&d.path).into_owned(), d.what))
        .collect();
    let listing: Vec<String> = diffs.iter().map(|d| format!("  {d}")).collect();
    let missed: Vec<_> = expected.difference(&got).collect();
    let unexpected: Vec<_> = got.difference(&expected).collect();
    assert!(
        missed.is_empty() && unexpected.is_empty(),
        "not reported: {missed:?}\nreported but not caused: {unexpected:?}\nall:\n{}",
        listing.join("\n")
    );
}
