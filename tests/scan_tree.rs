//! The scanner's contract (issue #2): every kind of entry with its full metadata, in a
//! deterministic depth-first order, with run-time directories, excludes, skip paths and swap
//! files left out.

use crate::common;

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use osimage::format::manifest::{EntryKind, Xattr};
use osimage::{ScanError, ScanOptions, ScanResult, plan_filesystems, scan};

use common::fixture::{self, paths};

fn index(result: &ScanResult) -> HashMap<Vec<u8>, usize> {
    let entries = result.entries.iter().enumerate();
    entries.map(|(i, e)| (e.path.to_vec(), i)).collect()
}

fn kind(result: &ScanResult, at: &HashMap<Vec<u8>, usize>, path: &str) -> EntryKind {
    let i = at
        .get(path.as_bytes())
        .unwrap_or_else(|| panic!("{path} not scanned"));
    result.entries[*i].kind()
}

#[test]
fn scan_records_every_kind_with_its_metadata() {
    let built = common::build_fixture();
    fixture::add_pseudo_filesystems(&built.root).unwrap();
    let result = scan(&built.root, &ScanOptions::default()).unwrap();
    let at = index(&result);
    let entries = &result.entries;

    // The root first, with the empty path; parents before children, names sorted by bytes.
    assert_eq!(entries.path(0), b"");
    assert_eq!(entries[0].meta().mode, 0o751);
    let components = |p: &[u8]| {
        p.split(|&b| b == b'/')
            .map(<[u8]>::to_vec)
            .collect::<Vec<_>>()
    };
    for i in 2..entries.len() {
        let (a, b) = (entries.path(i - 1), entries.path(i));
        assert!(components(a) < components(b), "order: {a:?} before {b:?}");
    }

    // Kinds.
    let file = |size| EntryKind::File {
        size,
        runs: Default::default(),
    };
    let link = |t: &[u8]| EntryKind::Symlink { target: t.to_vec() };
    let rdev = |maj, min| rustix::fs::makedev(maj, min);
    assert_eq!(&kind(&result, &at, paths::SMALL), &file(15));
    assert_eq!(&kind(&result, &at, paths::EMPTY), &file(0));
    assert_eq!(&kind(&result, &at, "dirs/empty"), &EntryKind::Directory);
    assert_eq!(
        &kind(&result, &at, paths::SYMLINK_REL),
        &link(b"../files/small.txt")
    );
    assert_eq!(
        &kind(&result, &at, "links/dangling"),
        &link(b"does/not/exist")
    );
    assert_eq!(&kind(&result, &at, "links/loop-a"), &link(b"loop-b"));
    assert_eq!(
        &kind(&result, &at, "links/long-target"),
        &link("x/".repeat(2000).as_bytes())
    );
    let char_null = EntryKind::CharDevice { rdev: rdev(1, 3) };
    assert_eq!(&kind(&result, &at, "devices/char-null"), &char_null);
    let char_big = EntryKind::CharDevice {
        rdev: rdev(300, 70_000),
    };
    assert_eq!(&kind(&result, &at, "devices/char-big"), &char_big);
    let block = EntryKind::BlockDevice { rdev: rdev(8, 1) };
    assert_eq!(&kind(&result, &at, "devices/block-sda1"), &block);
    assert_eq!(&kind(&result, &at, "devices/fifo"), &EntryKind::Fifo);
    assert_eq!(&kind(&result, &at, "devices/socket"), &EntryKind::Socket);

    // Hard links point at the first name met in walk order.
    let [one, two, three] = paths::HARDLINKS;
    assert_eq!(&kind(&result, &at, one), &file(70_000));
    let first = at[one.as_bytes()] as u32;
    assert_eq!(
        &kind(&result, &at, two),
        &EntryKind::HardLink { target: first }
    );
    assert_eq!(
        &kind(&result, &at, three),
        &EntryKind::HardLink { target: first }
    );
    let empty_a = at[&b"hardlinks/empty-a"[..]] as u32;
    let empty_b = &kind(&result, &at, "hardlinks/empty-b");
    assert_eq!(empty_b, &EntryKind::HardLink { target: empty_a });

    // Modes keep setuid, setgid and sticky bits.
    let mode = |p: &str| entries[at[p.as_bytes()]].meta().mode;
    assert_eq!(mode("modes/setuid"), 0o4755);
    assert_eq!(mode("modes/all"), 0o7777);
    assert_eq!(mode("modes/sticky-dir"), 0o1777);
    assert_eq!(mode("modes/setuid-owned"), 0o6755);

    // Every entry's metadata and xattrs against an independent reading.
    for e in entries {
        let source = osimage::source_path(&result.root, e.path);
        if source.as_os_str().len() >= 4000 {
            continue;
        }
        let md = std::fs::symlink_metadata(&source).unwrap();
        let m = &e.meta();
        let what = source.display();
        assert_eq!(m.mode, md.mode() & 0o7777, "{what}");
        assert_eq!((m.uid, m.gid), (md.uid(), md.gid()), "{what}");
        assert_eq!(
            (m.mtime.sec, m.mtime.nsec as i64),
            (md.mtime(), md.mtime_nsec()),
            "{what}"
        );
        // readlink(2) always touches a symlink's atime; the scan records it from before.
        if !md.file_type().is_symlink() {
            assert_eq!(
                (m.atime.sec, m.atime.nsec as i64),
                (md.atime(), md.atime_nsec()),
                "{what}"
            );
        }
        assert_eq!(
            (m.ctime.sec, m.ctime.nsec as i64),
            (md.ctime(), md.ctime_nsec()),
            "{what}"
        );
        assert_eq!(
            (m.ino, m.nlink as u64, m.fs),
            (md.ino(), md.nlink(), 0),
            "{what}"
        );
        let want: Vec<Xattr> = xattr::list(&source)
            .unwrap()
            .map(|name| Xattr {
                value: xattr::get(&source, &name).unwrap().unwrap(),
                name: name.as_bytes().to_vec(),
            })
            .collect();
        assert_eq!(e.xattrs()[..], want[..], "{what}");
    }
    let names = |p: &str| -> Vec<Vec<u8>> {
        let x = &entries[at[p.as_bytes()]].xattrs();
        x.iter().map(|x| x.name.clone()).collect()
    };
    assert!(names(paths::CAP_FILE).contains(&b"security.capability".to_vec()));
    assert!(names(paths::ACL_DIR).contains(&b"system.posix_acl_default".to_vec()));
    assert!(names("xattrs/trusted").contains(&b"trusted.md5".to_vec()));
    assert_eq!(
        names("xattrs/link-with-xattr"),
        vec![b"trusted.on-symlink".to_vec()]
    );
    assert_eq!(
        names("").first().map(Vec::as_slice),
        Some(&b"user.root-note"[..])
    );

    // Names that are not UTF-8, and a path longer than PATH_MAX.
    assert!(at.contains_key(&b"names/\xff\xfe\xfd"[..]));
    assert!(at.contains_key(&b"names/dir-\xc3\x28"[..]));
    let bottom = entries
        .iter()
        .find(|e| e.path.ends_with(b"/bottom.txt"))
        .unwrap();
    assert!(bottom.path.len() > 4096);
    assert_eq!(bottom.kind(), file(35));

    // Run-time directories: recorded with their metadata, never entered.
    for dir in ["proc", "sys", "dev", "run", "tmp", "var/tmp"] {
        assert_eq!(&kind(&result, &at, dir), &EntryKind::Directory, "{dir}");
        let inside = format!("{dir}/");
        let leaked = entries
            .iter()
            .find(|e| e.path.starts_with(inside.as_bytes()));
        assert!(leaked.is_none(), "{dir} was entered");
    }
    assert_eq!(mode("tmp"), 0o1777);
    assert!(at.contains_key(&b"var/lib/kept"[..]));

    // One filesystem: the root's own.
    let root_dev = std::fs::metadata(&built.root).unwrap().dev();
    assert_eq!(result.filesystems.len(), 1);
    assert_eq!(result.filesystems[0].mount_point, b"");
    assert_eq!(result.filesystems[0].dev, root_dev);
    assert!(result.skipped.is_empty(), "{:?}", result.skipped);
}

/// A small tree for the exclusion tests: `(path, is_dir)`, created in order.
const TREE: &[(&str, bool)] = &[
    ("a.log", false),
    ("keep.txt", false),
    ("cache", true),
    ("cache/big", false),
    ("sub", true),
    ("sub/cache", false),
    ("sub/x.log", false),
    ("sub/build", false),
    ("sub/deeper", true),
    ("sub/deeper/build", true),
    ("sub/deeper/build/obj", false),
    ("home", true),
    ("home/alice", true),
    ("home/alice/.cache", true),
    ("home/alice/.cache/blob", false),
    ("home/alice/notes", false),
    ("out.iso", false),
    ("out.iso.tmp", false),
];

fn scan_paths(root: &Path, opts: &ScanOptions) -> Vec<String> {
    let result = scan(root, opts).unwrap();
    let entries = result.entries.iter().skip(1);
    entries
        .map(|e| String::from_utf8(e.path.to_vec()).unwrap())
        .collect()
}

fn small_tree() -> tempfile::TempDir {
    let dir = common::scratch();
    for (p, is_dir) in TREE {
        let path = dir.path().join(p);
        if *is_dir {
            std::fs::create_dir(&path).unwrap();
        } else {
            std::fs::write(&path, p.as_bytes()).unwrap();
        }
    }
    dir
}

#[test]
fn excludes_and_skip_paths_leave_entries_out() {
    let dir = small_tree();
    let all = scan_paths(dir.path(), &ScanOptions::default());
    let want_all: Vec<&str> = {
        let mut v: Vec<&str> = TREE.iter().map(|(p, _)| *p).collect();
        v.sort_by_key(|p| p.split('/').map(str::to_string).collect::<Vec<_>>());
        v
    };
    assert_eq!(all, want_all);

    let list = dir.path().join("home/alice/excludes");
    std::fs::write(&list, "# from a file\n/home/*/.cache/\n\nexcludes\n").unwrap();
    let opts = ScanOptions {
        excludes: vec!["*.log".into(), "/cache".into(), "build/".into()],
        exclude_from: vec![list],
        skip_paths: vec![dir.path().join("out.iso"), dir.path().join("out.iso.tmp")],
        ..ScanOptions::default()
    };
    let got = scan_paths(dir.path(), &opts);
    let want = [
        "home",
        "home/alice",
        "home/alice/notes",
        "keep.txt",
        "sub",
        "sub/build", // a file: `build/` matches directories only
        "sub/cache", // not at the root: `/cache` is anchored
        "sub/deeper",
    ];
    assert_eq!(got, want);
    let result = scan(dir.path(), &opts).unwrap();
    let omitted: Vec<_> = result.omitted.iter().map(|s| s.path.clone()).collect();
    assert_eq!(
        omitted,
        [dir.path().join("out.iso"), dir.path().join("out.iso.tmp")]
    );
}

#[test]
fn swap_files_are_left_out() {
    let dir = small_tree();
    let mut swap = vec![0u8; 64 * 1024];
    swap[4086..4096].copy_from_slice(b"SWAPSPACE2");
    std::fs::write(dir.path().join("swapfile"), &swap).unwrap();
    let got = scan_paths(dir.path(), &ScanOptions::default());
    assert!(!got.iter().any(|p| p == "swapfile"));
    let result = scan(dir.path(), &ScanOptions::default()).unwrap();
    assert!(result.omitted.iter().any(|s| s.path.ends_with("swapfile")));
}

#[test]
fn plan_of_a_plain_directory_is_its_own_filesystem() {
    let dir = small_tree();
    let plan = plan_filesystems(dir.path(), &ScanOptions::default()).unwrap();
    assert_eq!(plan.len(), 1);
    assert_eq!(plan[0].mount_point, b"");
    assert_eq!(plan[0].dev, std::fs::metadata(dir.path()).unwrap().dev());
    assert!(!plan[0].fstype.is_empty());
}

#[test]
fn users_and_groups_come_from_the_captured_etc() {
    let dir = small_tree();
    std::fs::create_dir(dir.path().join("etc")).unwrap();
    let passwd = "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n";
    std::fs::write(dir.path().join("etc/passwd"), passwd).unwrap();
    let result = scan(dir.path(), &ScanOptions::default()).unwrap();
    assert_eq!(result.users, [(0, "root".into()), (1000, "alice".into())]);
    assert!(result.groups.is_empty());
}

#[test]
fn errors_name_the_path_and_the_problem() {
    let dir = small_tree();
    let missing = dir.path().join("no-such-dir");
    let err = scan(&missing, &ScanOptions::default()).unwrap_err();
    assert!(matches!(err, ScanError::Io { .. }));
    assert!(err.to_string().contains("no-such-dir"), "{err}");
    let file = dir.path().join("keep.txt");
    let err = scan(&file, &ScanOptions::default()).unwrap_err();
    assert!(matches!(err, ScanError::NotADirectory { .. }), "{err}");
    let opts = ScanOptions {
        excludes: vec!["[oops".into()],
        ..ScanOptions::default()
    };
    let err = scan(dir.path(), &opts).unwrap_err().to_string();
    assert!(err.contains("[oops"), "{err}");
    let opts = ScanOptions {
        exclude_from: vec![dir.path().join("missing-list")],
        ..ScanOptions::default()
    };
    let err = scan(dir.path(), &opts).unwrap_err().to_string();
    assert!(err.contains("missing-list"), "{err}");
}
