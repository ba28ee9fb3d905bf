//! The extract contract (issue #2, docs/DESIGN.md "Fidelity" and "Extract"): every kind of entry comes
//! back with its metadata, holes stay holes, and no manifest can write outside the destination.
//! Images are built by hand with `MemorySource`. These tests need root (chown, mknod,
//! trusted.* xattrs), as the restore agent has.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use osimage::NoProgress;
use osimage::format::manifest::{DataRun, Entry, EntryKind, Meta, Timestamp, Xattr};
use osimage::{ExtractError, ExtractOptions, ExtractReport, MemorySource, extract};

fn meta(mode: u32, uid: u32, gid: u32, sec: i64, nsec: u32) -> Meta {
    Meta {
        mode,
        uid,
        gid,
        atime: Timestamp {
            sec: sec - 100,
            nsec: nsec / 2,
        },
        mtime: Timestamp { sec, nsec },
        ..Meta::default()
    }
}

fn dir_meta() -> Meta {
    meta(0o755, 0, 0, 1_600_000_000, 123_456_789)
}

fn xattr(name: &str, value: &[u8]) -> Xattr {
    Xattr {
        name: name.as_bytes().to_vec(),
        value: value.to_vec(),
    }
}

/// An image with just its root directory.
fn image() -> MemorySource {
    let mut src = MemorySource::new();
    src.add(
        b"",
        EntryKind::Directory,
        meta(0o751, 7, 8, 1_500_000_000, 42),
    );
    src
}

fn run(src: &MemorySource, dest: &Path) -> Result<ExtractReport, ExtractError> {
    extract(src, dest, &ExtractOptions::default(), &NoProgress)
}

fn run_paths(
    src: &MemorySource,
    dest: &Path,
    paths: &[&str],
) -> Result<ExtractReport, ExtractError> {
    let opts = ExtractOptions {
        paths: paths.iter().map(|p| p.as_bytes().to_vec()).collect(),
        ..ExtractOptions::default()
    };
    extract(src, dest, &opts, &NoProgress)
}

fn assert_meta(path: &Path, m: &Meta, check_mode: bool) {
    let st = fs::symlink_metadata(path).unwrap();
    if check_mode {
        assert_eq!(st.mode() & 0o7777, m.mode, "mode of {}", path.display());
    }
    assert_eq!(
        (st.uid(), st.gid()),
        (m.uid, m.gid),
        "owner of {}",
        path.display()
    );
    assert_eq!(
        (st.mtime(), st.mtime_nsec()),
        (m.mtime.sec, i64::from(m.mtime.nsec)),
        "mtime of {}",
        path.display()
    );
    assert_eq!(
        (st.atime(), st.atime_nsec()),
        (m.atime.sec, i64::from(m.atime.nsec)),
        "atime of {}",
        path.display()
    );
}

#[test]
fn every_kind_round_trips_with_metadata() {
    let mut src = image();
    let d = meta(0o2775, 1000, 1001, 1_700_000_001, 999_999_999);
    src.add(b"etc", EntryKind::Directory, d);
    let f = meta(0o640, 1000, 1001, 1_700_000_002, 1);
    src.add_file(b"etc/hosts", b"127.0.0.1 localhost\n", f);
    src.add_file(b"etc/empty", b"", meta(0o600, 5, 6, 1_000, 0));
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    src.add_file(b"etc/big", &big, meta(0o644, 0, 0, 1_000, 0));
    let l = meta(0o777, 1000, 1001, 1_700_000_003, 5);
    src.add(
        b"etc/link",
        EntryKind::Symlink {
            target: b"hosts".to_vec(),
        },
        l,
    );
    let c = meta(0o620, 0, 5, 1_700_000_004, 6);
    src.add(
        b"etc/null",
        EntryKind::CharDevice {
            rdev: libc::makedev(1, 3),
        },
        c,
    );
    let b = meta(0o660, 0, 6, 1_700_000_005, 7);
    src.add(
        b"etc/loop",
        EntryKind::BlockDevice {
            rdev: libc::makedev(7, 9),
        },
        b,
    );
    let p = meta(0o610, 3, 4, 1_700_000_006, 8);
    src.add(b"etc/fifo", EntryKind::Fifo, p);
    let s = meta(0o755, 3, 4, 1_700_000_007, 9);
    src.add(b"etc/sock", EntryKind::Socket, s);
    src.add(b"etc/hosts2", EntryKind::HardLink { target: 2 }, f);

    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    let report = run(&src, &dest).unwrap();
    assert_eq!(report.entries, 11);
    assert_eq!(report.files, 3);
    assert_eq!(report.bytes_written, 20 + big.len() as u64);
    assert_eq!(report.warnings, 0);

    assert_meta(&dest, &src_meta(&src, 0), true);
    assert_meta(&dest.join("etc"), &d, true);
    assert_meta(&dest.join("etc/hosts"), &f, true);
    assert_eq!(
        fs::read(dest.join("etc/hosts")).unwrap(),
        b"127.0.0.1 localhost\n"
    );
    assert_eq!(fs::read(dest.join("etc/empty")).unwrap(), b"");
    assert_eq!(fs::read(dest.join("etc/big")).unwrap(), big);
    assert_meta(&dest.join("etc/link"), &l, false);
    assert_eq!(
        fs::read_link(dest.join("etc/link"))
            .unwrap()
            .as_os_str()
            .as_bytes(),
        b"hosts"
    );
    let st = fs::symlink_metadata(dest.join("etc/null")).unwrap();
    assert!(st.file_type().is_char_device());
    assert_eq!(st.rdev(), libc::makedev(1, 3));
    assert_meta(&dest.join("etc/null"), &c, true);
    let st = fs::symlink_metadata(dest.join("etc/loop")).unwrap();
    assert!(st.file_type().is_block_device());
    assert_eq!(st.rdev(), libc::makedev(7, 9));
    assert_meta(&dest.join("etc/loop"), &b, true);
    assert!(
        fs::symlink_metadata(dest.join("etc/fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_meta(&dest.join("etc/fifo"), &p, true);
    assert!(
        fs::symlink_metadata(dest.join("etc/sock"))
            .unwrap()
            .file_type()
            .is_socket()
    );
    assert_meta(&dest.join("etc/sock"), &s, true);
}

fn src_meta(src: &MemorySource, i: usize) -> Meta {
    src.manifest().entries[i].meta()
}

#[test]
fn hard_links_share_the_inode() {
    let mut src = image();
    src.add(b"a", EntryKind::Directory, dir_meta());
    src.add(b"b", EntryKind::Directory, dir_meta());
    let f = meta(0o4755, 1000, 1000, 1_650_000_000, 77);
    src.add_file(b"a/file", b"shared", f);
    src.add(b"a/same", EntryKind::HardLink { target: 3 }, f);
    src.add(b"b/other", EntryKind::HardLink { target: 3 }, f);
    let tmp = tempfile::tempdir().unwrap();
    run(&src, tmp.path()).unwrap();
    let ino = |p: &str| fs::symlink_metadata(tmp.path().join(p)).unwrap().ino();
    assert_eq!(ino("a/file"), ino("a/same"));
    assert_eq!(ino("a/file"), ino("b/other"));
    assert_eq!(
        fs::symlink_metadata(tmp.path().join("b/other"))
            .unwrap()
            .nlink(),
        3
    );
    assert_meta(&tmp.path().join("b/other"), &f, true);
}

#[test]
fn setuid_setgid_and_capabilities_survive_chown() {
    let mut src = image();
    src.add_file(b"suid", b"#!x", meta(0o4755, 1000, 1000, 1, 0));
    src.add_file(b"sgid", b"#!x", meta(0o2755, 1000, 50, 1, 0));
    // VFS_CAP_REVISION_2, effective, permitted = cap_net_raw (13): what `setcap` writes.
    let cap = [
        1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let i = src.add_file(b"ping", b"\x7fELF", meta(0o755, 1000, 1000, 1, 0));
    src.manifest_mut().entries[i as usize].set_xattrs(vec![xattr("security.capability", &cap)]);
    let tmp = tempfile::tempdir().unwrap();
    run(&src, tmp.path()).unwrap();
    let mode = |p: &str| fs::metadata(tmp.path().join(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("suid"), 0o4755);
    assert_eq!(mode("sgid"), 0o2755);
    let got = xattr::get(tmp.path().join("ping"), "security.capability").unwrap();
    assert_eq!(got.as_deref(), Some(&cap[..]));
}

/// Issue #20 item 10: a setuid file of uid 1000 extracted with `--no-owner` by root must not
/// become a setuid-root file; setgid and file capabilities go the same way (GNU tar's
/// --no-same-owner). The sticky bit and the rest of the mode stay.
#[test]
fn without_owners_setuid_setgid_and_capabilities_are_dropped() {
    let mut src = image();
    src.add_file(b"suid", b"#!x", meta(0o4755, 1000, 1000, 1, 0));
    src.add_file(b"sgid", b"#!x", meta(0o2711, 1000, 50, 1, 0));
    src.add(
        b"sticky",
        EntryKind::Directory,
        meta(0o3777, 1000, 50, 1, 0),
    );
    let cap = [
        1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let i = src.add_file(b"ping", b"\x7fELF", meta(0o755, 1000, 1000, 1, 0));
    src.manifest_mut().entries[i as usize].set_xattrs(vec![
        xattr("security.capability", &cap),
        xattr("user.kept", b"yes"),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let opts = ExtractOptions {
        restore_owner: false,
        ..ExtractOptions::default()
    };
    extract(&src, tmp.path(), &opts, &NoProgress).unwrap();
    let st = |p: &str| fs::symlink_metadata(tmp.path().join(p)).unwrap();
    let me = (
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw(),
    );
    for (name, mode) in [
        ("suid", 0o755),
        ("sgid", 0o711),
        ("sticky", 0o1777),
        ("ping", 0o755),
    ] {
        assert_eq!(st(name).mode() & 0o7777, mode, "mode of {name}");
        assert_eq!((st(name).uid(), st(name).gid()), me, "owner of {name}");
    }
    let ping = tmp.path().join("ping");
    assert_eq!(xattr::get(&ping, "security.capability").unwrap(), None);
    assert_eq!(
        xattr::get(&ping, "user.kept").unwrap().as_deref(),
        Some(&b"yes"[..])
    );
}

/// `--no-capabilities` leaves `security.capability` out even with owners; `--no-devices`
/// leaves character and block devices out (FIFOs stay), and the entry count says so.
#[test]
fn capabilities_and_device_nodes_can_be_left_out() {
    let mut src = image();
    let cap = [
        1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let i = src.add_file(b"ping", b"\x7fELF", meta(0o4755, 1000, 1000, 1, 0));
    src.manifest_mut().entries[i as usize].set_xattrs(vec![xattr("security.capability", &cap)]);
    src.add(
        b"sda",
        EntryKind::BlockDevice {
            rdev: libc::makedev(8, 0),
        },
        meta(0o660, 0, 6, 1, 0),
    );
    src.add(
        b"mem",
        EntryKind::CharDevice {
            rdev: libc::makedev(1, 1),
        },
        meta(0o640, 0, 15, 1, 0),
    );
    src.add(b"fifo", EntryKind::Fifo, meta(0o600, 0, 0, 1, 0));
    let tmp = tempfile::tempdir().unwrap();
    let opts = ExtractOptions {
        devices: false,
        capabilities: false,
        ..ExtractOptions::default()
    };
    let r = extract(&src, tmp.path(), &opts, &NoProgress).unwrap();
    assert_eq!(r.entries, 3, "the root, ping and the FIFO");
    let ping = tmp.path().join("ping");
    assert_eq!(xattr::get(&ping, "security.capability").unwrap(), None);
    assert_eq!(
        fs::metadata(&ping).unwrap().mode() & 0o7777,
        0o4755,
        "owner set: setuid kept"
    );
    assert!(!tmp.path().join("sda").exists() && !tmp.path().join("mem").exists());
    assert!(
        fs::symlink_metadata(tmp.path().join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

/// Issue #20 item 8: an extract that fails half-way (here an xattr the kernel rejects: a
/// `security.capability` of 3 bytes is EINVAL) removes what it created, into a directory it
/// made or an existing empty one, instead of leaving 0700 directories and 0600 files behind;
/// the error says so.
#[test]
fn a_failed_extract_removes_what_it_created() {
    let mut src = image();
    src.add(b"a", EntryKind::Directory, dir_meta());
    src.add(b"a/b", EntryKind::Directory, dir_meta());
    src.add_file(b"a/b/whole", b"data", meta(0o644, 0, 0, 1, 0));
    let i = src.add_file(b"a/b/bad", b"#!x", meta(0o755, 0, 0, 1, 0));
    src.manifest_mut().entries[i as usize].set_xattrs(vec![xattr("security.capability", b"bad")]);
    src.add(b"a/fifo", EntryKind::Fifo, meta(0o644, 0, 0, 1, 0));
    let tmp = tempfile::tempdir().unwrap();
    let fresh = tmp.path().join("fresh");
    let err = run(&src, &fresh).unwrap_err();
    assert!(matches!(err, ExtractError::Undone { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("setting an xattr of") && msg.contains("a/b/bad"),
        "{msg}"
    );
    assert!(msg.contains("was removed again"), "{msg}");
    assert!(!fresh.exists(), "{msg}");
    let existing = tmp.path().join("existing");
    fs::create_dir(&existing).unwrap();
    run(&src, &existing).unwrap_err();
    assert_eq!(fs::read_dir(&existing).unwrap().count(), 0);
}

#[test]
fn xattrs_of_every_namespace_round_trip() {
    // ACL: user::rwx user:1000:r-- group::r-x mask::r-x other::r--
    let acl: Vec<u8> = [
        &2u32.to_le_bytes()[..],
        &[1, 0, 7, 0],
        &u32::MAX.to_le_bytes(),
        &[2, 0, 4, 0],
        &1000u32.to_le_bytes(),
        &[4, 0, 5, 0],
        &u32::MAX.to_le_bytes(),
        &[0x10, 0, 5, 0],
        &u32::MAX.to_le_bytes(),
        &[0x20, 0, 4, 0],
        &u32::MAX.to_le_bytes(),
    ]
    .concat();
    let file_x = vec![
        xattr("user.comment", b"hello"),
        xattr("trusted.overlay.opaque", b"y"),
        xattr("security.selinux", b"system_u:object_r:etc_t:s0\0"),
        xattr("system.posix_acl_access", &acl),
        xattr("user.empty", b""),
    ];
    let mut src = image();
    src.manifest_mut().entries[0].set_xattrs(vec![xattr("trusted.root", b"r")]);
    src.add(b"d", EntryKind::Directory, dir_meta());
    src.manifest_mut().entries[1].set_xattrs(vec![
        xattr("user.dir", b"1"),
        xattr("system.posix_acl_default", &acl),
    ]);
    let f = src.add_file(b"d/f", b"data", meta(0o754, 0, 0, 1, 0));
    src.manifest_mut().entries[f as usize].set_xattrs(file_x.clone());
    let l = src.add(
        b"d/l",
        EntryKind::Symlink {
            target: b"f".to_vec(),
        },
        meta(0o777, 0, 0, 1, 0),
    );
    src.manifest_mut().entries[l as usize].set_xattrs(vec![xattr("trusted.link", b"on a symlink")]);
    let p = src.add(b"d/p", EntryKind::Fifo, meta(0o600, 0, 0, 1, 0));
    src.manifest_mut().entries[p as usize].set_xattrs(vec![xattr("trusted.fifo", b"on a fifo")]);

    let tmp = tempfile::tempdir().unwrap();
    let report = run(&src, tmp.path()).unwrap();
    assert_eq!(report.warnings, 0);
    let get = |p: &str, n: &str| xattr::get(tmp.path().join(p), n).unwrap();
    for x in &file_x {
        let name = std::str::from_utf8(&x.name).unwrap();
        assert_eq!(get("d/f", name).as_deref(), Some(&x.value[..]), "{name}");
    }
    assert_eq!(
        fs::metadata(tmp.path().join("d/f")).unwrap().mode() & 0o777,
        0o754
    );
    assert_eq!(get("", "trusted.root").as_deref(), Some(&b"r"[..]));
    assert_eq!(get("d", "user.dir").as_deref(), Some(&b"1"[..]));
    assert_eq!(
        get("d", "system.posix_acl_default").as_deref(),
        Some(&acl[..])
    );
    assert_eq!(
        get("d/l", "trusted.link").as_deref(),
        Some(&b"on a symlink"[..])
    );
    assert_eq!(
        get("d/p", "trusted.fifo").as_deref(),
        Some(&b"on a fifo"[..])
    );
}

#[test]
fn user_xattr_on_a_symlink_is_a_warning() {
    let mut src = image();
    let l = src.add(
        b"l",
        EntryKind::Symlink {
            target: b"x".to_vec(),
        },
        meta(0o777, 0, 0, 1, 0),
    );
    src.manifest_mut().entries[l as usize].set_xattrs(vec![xattr("user.no", b"1")]);
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(run(&src, tmp.path()).unwrap().warnings, 1);
}

#[test]
fn holes_stay_holes() {
    let mut src = image();
    let data = src.add_chunk(&[0xab; 4096]);
    let zeros = src.add_chunk(&[0; 65536]);
    src.add(
        b"sparse",
        EntryKind::File {
            size: 1 << 30,
            runs: smallvec::smallvec![
                DataRun {
                    offset: 512 << 20,
                    chunks: smallvec::smallvec![data, zeros],
                },
                DataRun {
                    offset: (1 << 30) - 65536,
                    chunks: smallvec::smallvec![zeros],
                },
            ],
        },
        meta(0o644, 0, 0, 1, 0),
    );
    src.add(
        b"tail",
        EntryKind::File {
            size: 10_000,
            runs: smallvec::smallvec![DataRun {
                offset: 0,
                chunks: smallvec::smallvec![data],
            }],
        },
        meta(0o644, 0, 0, 1, 0),
    );
    let tmp = tempfile::tempdir().unwrap();
    let report = run(&src, tmp.path()).unwrap();
    assert_eq!(report.bytes_written, 2 * 4096);
    let st = fs::metadata(tmp.path().join("sparse")).unwrap();
    assert_eq!(st.len(), 1 << 30);
    assert!(
        st.blocks() * 512 <= 64 << 10,
        "{} blocks allocated",
        st.blocks()
    );
    let f = fs::File::open(tmp.path().join("sparse")).unwrap();
    let mut buf = vec![0; 8192];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, (512 << 20) - 2048).unwrap();
    assert!(buf[..2048].iter().all(|&b| b == 0));
    assert!(buf[2048..6144].iter().all(|&b| b == 0xab));
    assert!(buf[6144..].iter().all(|&b| b == 0));
    let tail = fs::read(tmp.path().join("tail")).unwrap();
    assert_eq!(tail.len(), 10_000);
    assert!(tail[..4096].iter().all(|&b| b == 0xab) && tail[4096..].iter().all(|&b| b == 0));
}

#[test]
fn many_files_on_several_threads() {
    let mut src = image();
    src.add(b"d", EntryKind::Directory, dir_meta());
    for i in 0..2000u32 {
        let data = format!("file {i}\n").repeat((i % 50) as usize);
        src.add_file(
            format!("d/f{i}").as_bytes(),
            data.as_bytes(),
            meta(0o644, i, i, i64::from(i), i),
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let opts = ExtractOptions {
        threads: 3,
        ..ExtractOptions::default()
    };
    let report = extract(&src, tmp.path(), &opts, &NoProgress).unwrap();
    assert_eq!(report.files, 2000);
    for i in (0..2000u32).step_by(37) {
        let p = tmp.path().join(format!("d/f{i}"));
        // Metadata first: reading the file would update its atime.
        assert_meta(&p, &meta(0o644, i, i, i64::from(i), i), true);
        assert_eq!(
            fs::read(&p).unwrap(),
            format!("file {i}\n").repeat((i % 50) as usize).as_bytes()
        );
    }
}

#[test]
fn an_existing_empty_destination_gets_the_root_metadata() {
    let src = image();
    let tmp = tempfile::tempdir().unwrap();
    run(&src, tmp.path()).unwrap();
    assert_meta(tmp.path(), &src_meta(&src, 0), true);
}

#[test]
fn a_non_empty_destination_is_refused() {
    let src = image();
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("x"), b"").unwrap();
    let err = run(&src, tmp.path()).unwrap_err();
    assert!(matches!(err, ExtractError::Dest { .. }), "{err}");
    assert!(err.to_string().contains("not empty"), "{err}");
}

/// Runs an extract that must be refused before anything is written.
fn refused(src: &MemorySource, needle: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    let err = run(src, &dest).unwrap_err();
    assert!(matches!(err, ExtractError::BadEntry { .. }), "{err}");
    assert!(err.to_string().contains(needle), "{err:?} lacks {needle:?}");
    assert!(!dest.exists(), "something was written for: {err}");
}

#[test]
fn unsafe_paths_are_refused_before_anything_is_written() {
    for (path, why) in [
        (&b"../x"[..], "'..'"),
        (b"/abs", "absolute"),
        (b"a/../../x", "'..'"),
        (b"./x", "'.'"),
        (b"a//x", "empty component"),
        (b"x/", "empty component"),
        (b"x\0y", "NUL"),
    ] {
        let mut src = image();
        src.add(b"a", EntryKind::Directory, dir_meta());
        src.add_file(path, b"evil", meta(0o644, 0, 0, 1, 0));
        refused(&src, why);
    }
}

#[test]
fn a_symlink_is_never_a_parent() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let mut src = image();
    let target = outside.as_os_str().as_bytes().to_vec();
    src.add(b"a", EntryKind::Symlink { target }, meta(0o777, 0, 0, 1, 0));
    src.add_file(b"a/f", b"escaped", meta(0o644, 0, 0, 1, 0));
    refused(&src, "not a directory");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn structural_problems_are_refused() {
    let mut src = image();
    src.add_file(b"missing/f", b"", meta(0o644, 0, 0, 1, 0));
    refused(&src, "parent directory is not an earlier entry");

    let mut src = image();
    src.add_file(b"f", b"", meta(0o644, 0, 0, 1, 0));
    src.add_file(b"f/g", b"", meta(0o644, 0, 0, 1, 0));
    refused(&src, "not a directory");

    let mut src = image();
    src.add(b"d", EntryKind::Directory, dir_meta());
    src.add(b"d", EntryKind::Directory, dir_meta());
    refused(&src, "appears twice");

    let mut src = image();
    src.add(
        b"f",
        EntryKind::File {
            size: 10,
            runs: smallvec::smallvec![DataRun {
                offset: 0,
                chunks: smallvec::smallvec![9],
            }],
        },
        dir_meta(),
    );
    refused(&src, "chunk 9");

    let mut src = image();
    let c = src.add_chunk(b"0123456789");
    src.add(
        b"f",
        EntryKind::File {
            size: 5,
            runs: smallvec::smallvec![DataRun {
                offset: 0,
                chunks: smallvec::smallvec![c],
            }],
        },
        dir_meta(),
    );
    refused(&src, "past the file size");

    let mut src = image();
    let c = src.add_chunk(b"0123456789");
    let runs = smallvec::smallvec![
        DataRun {
            offset: 0,
            chunks: smallvec::smallvec![c],
        },
        DataRun {
            offset: 5,
            chunks: smallvec::smallvec![c],
        },
    ];
    src.add(b"f", EntryKind::File { size: 100, runs }, dir_meta());
    refused(&src, "overlaps");

    let mut src = image();
    src.add(b"l", EntryKind::Symlink { target: Vec::new() }, dir_meta());
    refused(&src, "symlink target");

    let mut src = image();
    src.add_file(&[b'n'; 256], b"", meta(0o644, 0, 0, 1, 0));
    refused(&src, "longer than 255 bytes");

    let mut src = image();
    src.add_file(b"t", b"", meta(0o644, 0, 0, 1, 1_000_000_000));
    refused(&src, "nanoseconds");
}

#[test]
fn bad_hard_link_targets_are_refused() {
    let cases: [(&[u8], u32); 5] = [
        (b"later", 3), // a later entry
        (b"self", 2),  // itself
        (b"dir", 0),   // the root directory
        (b"sym", 1),   // a symlink
        (b"far", 999), // no such entry
    ];
    for (name, target) in cases {
        let mut src = image();
        src.add(
            b"s",
            EntryKind::Symlink {
                target: b"x".to_vec(),
            },
            meta(0o777, 0, 0, 1, 0),
        );
        src.add(
            name,
            EntryKind::HardLink { target },
            meta(0o644, 0, 0, 1, 0),
        );
        src.add_file(b"zz", b"", meta(0o644, 0, 0, 1, 0));
        refused(&src, "not an earlier regular file");
    }
    // A link to a link is refused too: links name the first name, a File.
    let mut src = image();
    src.add_file(b"f", b"x", meta(0o644, 0, 0, 1, 0));
    src.add(
        b"g",
        EntryKind::HardLink { target: 1 },
        meta(0o644, 0, 0, 1, 0),
    );
    src.add(
        b"h",
        EntryKind::HardLink { target: 2 },
        meta(0o644, 0, 0, 1, 0),
    );
    refused(&src, "not an earlier regular file");
}

fn tree() -> MemorySource {
    let mut src = image();
    src.add(b"usr", EntryKind::Directory, dir_meta()); // 1
    src.add(b"usr/bin", EntryKind::Directory, meta(0o700, 0, 0, 5, 5)); // 2
    src.add_file(b"usr/bin/ls", b"ls", meta(0o755, 0, 0, 1, 0)); // 3
    src.add(b"usr/lib", EntryKind::Directory, dir_meta()); // 4
    src.add_file(b"usr/lib/libc.so", b"libc", meta(0o644, 0, 0, 1, 0)); // 5
    src.add(b"etc", EntryKind::Directory, dir_meta()); // 6
    src.add_file(b"etc/passwd", b"root", meta(0o644, 0, 0, 1, 0)); // 7
    src.add(
        b"usr/bin/dir",
        EntryKind::HardLink { target: 3 },
        meta(0o755, 0, 0, 1, 0),
    ); // 8
    src.add(
        b"etc/ls",
        EntryKind::HardLink { target: 3 },
        meta(0o755, 0, 0, 1, 0),
    ); // 9
    src.add(
        b"etc/ls2",
        EntryKind::HardLink { target: 3 },
        meta(0o755, 0, 0, 1, 0),
    ); // 10
    src
}

fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn selected_paths_come_with_their_subtree_and_parents() {
    let src = tree();
    let tmp = tempfile::tempdir().unwrap();
    let report = run_paths(&src, tmp.path(), &["/usr/bin/", "etc/passwd"]).unwrap();
    // Parent directories get their own metadata too (checked before listing reads them).
    assert_meta(&tmp.path().join("usr/bin"), &meta(0o700, 0, 0, 5, 5), true);
    assert_eq!(
        listing(tmp.path()),
        [
            "etc",
            "etc/passwd",
            "usr",
            "usr/bin",
            "usr/bin/dir",
            "usr/bin/ls"
        ]
    );
    assert_eq!(report.entries, 7); // root, usr, usr/bin, ls, dir, etc, passwd
}

#[test]
fn a_link_selected_without_its_target_gets_the_data() {
    let src = tree();
    let tmp = tempfile::tempdir().unwrap();
    let report = run_paths(&src, tmp.path(), &["etc"]).unwrap();
    assert_eq!(report.files, 2);
    assert_eq!(fs::read(tmp.path().join("etc/ls")).unwrap(), b"ls");
    let ino = |p: &str| fs::symlink_metadata(tmp.path().join(p)).unwrap().ino();
    assert_eq!(ino("etc/ls"), ino("etc/ls2"));
    assert_eq!(
        fs::metadata(tmp.path().join("etc/ls")).unwrap().mode() & 0o777,
        0o755
    );
}

#[test]
fn an_unknown_selected_path_is_an_error_before_writing() {
    let src = tree();
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("out");
    for bad in ["usr/sbin", "usr/../etc"] {
        let err = run_paths(&src, &dest, &["usr/bin", bad]).unwrap_err();
        assert!(matches!(err, ExtractError::UnknownPath { .. }), "{err}");
        assert!(err.to_string().contains(bad), "{err}");
        assert!(!dest.exists());
    }
}

#[test]
fn entry_paths_with_odd_bytes_are_fine() {
    let mut src = image();
    src.add_file(b"caf\xe9 \n\\", b"latin-1 name", meta(0o644, 0, 0, 1, 0));
    let tmp = tempfile::tempdir().unwrap();
    run(&src, tmp.path()).unwrap();
    let p = tmp
        .path()
        .join(std::ffi::OsStr::from_bytes(b"caf\xe9 \n\\"));
    assert_eq!(fs::read(p).unwrap(), b"latin-1 name");
}

#[test]
fn an_image_without_a_root_entry_still_extracts() {
    let mut src = MemorySource::new();
    src.add_entry(Entry {
        path: b"f"[..].into(),
        kind: EntryKind::Fifo,
        meta: meta(0o644, 0, 0, 1, 0),
        xattrs: Default::default(),
    });
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(run(&src, tmp.path()).unwrap().entries, 1);
}

#[test]
fn paths_longer_than_path_max_extract() {
    let mut src = image();
    let component = "d".repeat(250);
    let mut path = String::new();
    for _ in 0..40 {
        if !path.is_empty() {
            path.push('/');
        }
        path.push_str(&component);
        src.add(path.as_bytes(), EntryKind::Directory, dir_meta());
    }
    let file = format!("{path}/f");
    src.add_file(file.as_bytes(), b"deep", meta(0o600, 1, 2, 3, 4));
    src.add(
        format!("{path}/l").as_bytes(),
        EntryKind::Symlink {
            target: b"f".to_vec(),
        },
        meta(0o777, 1, 2, 3, 4),
    );
    src.add(
        format!("{path}/h").as_bytes(),
        EntryKind::HardLink { target: 41 },
        meta(0o600, 1, 2, 3, 4),
    );
    let tmp = tempfile::tempdir().unwrap();
    let report = run(&src, tmp.path()).unwrap();
    assert_eq!(report.entries, 44);
    // std cannot open a path this long; walk down with relative opens.
    let mut dir = fs::File::open(tmp.path()).unwrap();
    for _ in 0..40 {
        let fd = rustix::fs::openat(
            &dir,
            component.as_str(),
            rustix::fs::OFlags::RDONLY,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        dir = fs::File::from(fd);
    }
    let st = rustix::fs::statat(&dir, "h", rustix::fs::AtFlags::SYMLINK_NOFOLLOW).unwrap();
    assert_eq!(
        (
            st.st_nlink,
            st.st_uid,
            st.st_mode & 0o7777,
            st.st_mtime_nsec
        ),
        (2, 1, 0o600, 4)
    );
    let st = rustix::fs::statat(&dir, "l", rustix::fs::AtFlags::SYMLINK_NOFOLLOW).unwrap();
    assert_eq!((st.st_uid, st.st_mtime_nsec), (1, 4));
}
