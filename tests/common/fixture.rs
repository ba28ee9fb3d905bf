//! The one shared fixture: a tree holding every kind of entry osimage must carry.
//!
//! Deterministic: building it twice yields two trees the comparator finds equal (content from a
//! seeded generator, times from a hash of the path). Needs root (devices, owners, trusted.*,
//! security.capability).

use super::sys::{Dir, bstr, makedev};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;

pub const MIB: u64 = 1 << 20;

/// Paths (relative to the fixture root) that tests name directly.
pub mod paths {
    pub const SMALL: &str = "files/small.txt";
    pub const TEXT: &str = "files/text.txt";
    pub const EMPTY: &str = "files/empty";
    pub const RANDOM: &str = "files/random-4m.bin";
    pub const ZERO_RUNS: &str = "files/zero-runs.bin";
    pub const SPARSE_1G: &str = "sparse/sparse-1g.img";
    pub const HARDLINKS: [&str; 3] = ["hardlinks/one", "hardlinks/two", "other/three"];
    pub const CAP_FILE: &str = "xattrs/cap";
    pub const ACL_DIR: &str = "xattrs/acl-dir";
    pub const SYMLINK_REL: &str = "links/rel";
}

/// What the builder could not create on this machine (each skip is named).
#[derive(Debug, Default)]
pub struct FixtureNotes {
    pub skipped: Vec<String>,
}

/// splitmix64: a tiny seeded generator, so content is the same on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// `len` incompressible bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(len);
        v
    }
}

/// Compressible text of about `len` bytes (words drawn from a small vocabulary).
pub fn text(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "restore", "image", "chunk", "boot", "disk", "kernel", "manifest", "pack", "the", "of",
        "a", "sector", "inode", "xattr", "hole", "zstd",
    ];
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        let r = rng.next_u64();
        out.extend_from_slice(WORDS[(r % 16) as usize].as_bytes());
        out.push(if r.is_multiple_of(11) { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

fn write_file(dir: &Dir, name: &[u8], data: &[u8]) -> io::Result<()> {
    dir.create_file(name)?.write_all(data)
}

/// Builds the full fixture in `root`, which must be an existing empty directory.
pub fn build(root: &Path) -> io::Result<FixtureNotes> {
    let mut notes = FixtureNotes::default();
    let r = Dir::open(root)?;
    files(&r)?;
    sparse(&r)?;
    dirs(&r)?;
    links(&r)?;
    hardlinks(&r)?;
    devices(&r)?;
    modes(&r)?;
    owners(&r)?;
    xattrs(&r, &mut notes)?;
    names(&r)?;
    deep(&r)?;
    // The root's own metadata must round-trip too (extract applies it to -C DIR).
    r.chown(None, 0, 0)?;
    r.chmod(None, 0o751)?;
    r.set_xattr(None, "user.root-note", b"the root itself")?;
    set_all_times(&r)?;
    Ok(notes)
}

fn files(r: &Dir) -> io::Result<()> {
    let d = r.mkdir(b"files")?;
    write_file(&d, b"small.txt", b"hello, osimage\n")?;
    write_file(&d, b"empty", b"")?;
    write_file(&d, b"text.txt", &text(7, 300 * 1024))?;
    let random = Rng::new(1).bytes(4 * MIB as usize);
    write_file(&d, b"random-4m.bin", &random)?;
    // Same bytes, separate inode: must be stored once.
    write_file(&d, b"random-4m-copy.bin", &random)?;
    // The same content shifted by 100 bytes: content-defined chunking still finds it.
    let mut shifted = Rng::new(3).bytes(100);
    shifted.extend_from_slice(&random);
    write_file(&d, b"random-shifted.bin", &shifted)?;
    // One 1 MiB random block three times, then a tail.
    let block = Rng::new(2).bytes(MIB as usize);
    let mut repeated = Vec::new();
    for _ in 0..3 {
        repeated.extend_from_slice(&block);
    }
    repeated.extend_from_slice(b"tail");
    write_file(&d, b"repeated.bin", &repeated)?;
    // Zeros written out (not holes) between random data: they should come back as a hole.
    let mut zr = Rng::new(4).bytes(MIB as usize);
    zr.resize(zr.len() + 8 * MIB as usize, 0);
    zr.extend_from_slice(&Rng::new(5).bytes(MIB as usize));
    write_file(&d, b"zero-runs.bin", &zr)?;
    // Sizes around typical boundaries.
    for (name, len) in [
        ("one-byte", 1usize),
        ("4095", 4095),
        ("4096", 4096),
        ("65537", 65537),
    ] {
        write_file(&d, name.as_bytes(), &Rng::new(len as u64).bytes(len))?;
    }
    Ok(())
}

fn sparse(r: &Dir) -> io::Result<()> {
    let d = r.mkdir(b"sparse")?;
    // 1 GiB with 4 KiB of data in the middle.
    let mut f = d.create_file(b"sparse-1g.img")?;
    f.set_len(1 << 30)?;
    f.seek(SeekFrom::Start(512 * MIB))?;
    f.write_all(&Rng::new(6).bytes(4096))?;
    // Data then a trailing hole (the size must come back without the data).
    let mut f = d.create_file(b"hole-at-end.img")?;
    f.write_all(&Rng::new(8).bytes(4096))?;
    f.set_len(16 * MIB)?;
    // Nothing but a hole.
    d.create_file(b"all-hole.img")?.set_len(8 * MIB)?;
    // A hole first, data at the end.
    let mut f = d.create_file(b"hole-at-start.img")?;
    f.seek(SeekFrom::Start(4 * MIB))?;
    f.write_all(&Rng::new(9).bytes(10_000))?;
    Ok(())
}

fn dirs(r: &Dir) -> io::Result<()> {
    let d = r.mkdir(b"dirs")?;
    let mut cur = d.mkdir(b"a")?;
    for name in [b"b", b"c", b"d", b"e"] {
        cur = cur.mkdir(name)?;
    }
    write_file(&cur, b"leaf.txt", b"at the bottom\n")?;
    d.mkdir(b"empty")?;
    let e = d.mkdir(b"empty-0700")?;
    e.chmod(None, 0o700)?;
    Ok(())
}

fn links(r: &Dir) -> io::Result<()> {
    let d = r.mkdir(b"links")?;
    d.symlink(b"../files/small.txt", b"rel")?;
    // Absolute: must be stored as text, never followed to the host's /etc.
    d.symlink(b"/etc/hostname", b"abs")?;
    d.symlink(b"does/not/exist", b"dangling")?;
    d.symlink(b"loop-b", b"loop-a")?;
    d.symlink(b"loop-a", b"loop-b")?;
    d.symlink(b"../dirs", b"dir-link")?;
    d.symlink(b".", b"self")?;
    let long_target = "x/".repeat(2000);
    d.symlink(long_target.as_bytes(), b"long-target")?;
    // A symlink with its own owner.
    d.symlink(b"rel", b"owned")?;
    d.chown(Some(b"owned"), 4321, 8765)?;
    Ok(())
}

fn hardlinks(r: &Dir) -> io::Result<()> {
    let d = r.mkdir(b"hardlinks")?;
    let o = r.mkdir(b"other")?;
    write_file(&d, b"one", &text(11, 70_000))?;
    d.chown(Some(b"one"), 1234, 5678)?;
    d.chmod(Some(b"one"), 0o640)?;
    d.set_xattr(Some(b"one"), "user.linked", b"shared by three names")?;
    d.link_from(&d, b"one", b"two")?;
    o.link_from(&d, b"one", b"three")?;
    // A hard-linked empty file and a hard-linked symlink-free special: both must keep links.
    write_file(&d, b"empty-a", b"")?;
    d.link_from(&d, b"empty-a", b"empty-b")?;
    Ok(())
}

fn devices(r: &Dir) -> io::Result<()> {
    // Not "dev": capture does not descend into ROOT/dev.
    let d = r.mkdir(b"devices")?;
    d.mknod(b"char-null", libc::S_IFCHR | 0o666, makedev(1, 3))?;
    // Major > 255 and minor > 255 need the new dev_t encoding.
    d.mknod(b"char-big", libc::S_IFCHR | 0o600, makedev(300, 70_000))?;
    d.mknod(b"block-sda1", libc::S_IFBLK | 0o660, makedev(8, 1))?;
    d.chown(Some(b"block-sda1"), 0, 6)?;
    d.mknod(b"fifo", libc::S_IFIFO | 0o640, 0)?;
    // A socket made the ordinary way: bind, then drop the listener (the inode stays).
    // sun_path holds 108 bytes; deeper scratch dirs get the same inode type from mknod.
    let real = std::fs::read_link(d.proc_path(None))?.join("socket");
    if real.as_os_str().len() < 100 {
        drop(UnixListener::bind(&real)?);
    } else {
        d.mknod(b"socket", libc::S_IFSOCK | 0o755, 0)?;
    }
    Ok(())
}

fn modes(r: &Dir) -> io::Result<()> {
    let d = r.mkdir(b"modes")?;
    for (name, mode) in [
        ("setuid", 0o4755),
        ("setgid", 0o2755),
        ("setuid-setgid", 0o6711),
        ("none", 0o000),
        ("all", 0o7777),
        ("odd", 0o421),
        ("sticky-file", 0o1644),
    ] {
        write_file(&d, name.as_bytes(), name.as_bytes())?;
        d.chmod(Some(name.as_bytes()), mode)?;
    }
    for (name, mode) in [
        ("sticky-dir", 0o1777),
        ("setgid-dir", 0o2775),
        ("dir-000", 0o000),
    ] {
        d.mkdir(name.as_bytes())?;
        d.chmod(Some(name.as_bytes()), mode)?;
    }
    // setuid on a file owned by someone else: chown after chmod would clear it.
    write_file(&d, b"setuid-owned", b"#!/bin/sh\n")?;
    d.chown(Some(b"setuid-owned"), 1234, 5678)?;
    d.chmod(Some(b"setuid-owned"), 0o6755)?;
    Ok(())
}

fn owners(r: &Dir) -> io::Result<()> {
    let d = r.mkdir(b"owners")?;
    for (name, uid, gid) in [
        ("u1234-g5678", 1234, 5678),
        ("nobody", 65534, 65534),
        ("user-1000", 1000, 100),
        ("huge-ids", 4_000_000_000u32, 4_000_000_001u32),
    ] {
        write_file(&d, name.as_bytes(), name.as_bytes())?;
        d.chown(Some(name.as_bytes()), uid, gid)?;
    }
    let sub = d.mkdir(b"dir-4000")?;
    sub.chown(None, 4000, 4001)?;
    write_file(&sub, b"inside", b"owned dir contents\n")?;
    Ok(())
}

/// A raw `vfs_cap_data` revision 2 blob: cap_net_bind_service + cap_net_raw, effective.
pub fn capability_v2() -> Vec<u8> {
    let magic: u32 = 0x0200_0000 | 0x1; // VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
    let permitted: u32 = (1 << 10) | (1 << 13);
    let mut v = Vec::new();
    for word in [magic, permitted, 0, 0, 0] {
        v.extend_from_slice(&word.to_le_bytes());
    }
    v
}

/// A raw POSIX ACL xattr (version 2): `(tag, perm, id)` entries, sorted as the kernel wants.
pub fn posix_acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

const ACL_USER_OBJ: u16 = 0x01;
const ACL_USER: u16 = 0x02;
const ACL_GROUP_OBJ: u16 = 0x04;
const ACL_GROUP: u16 = 0x08;
const ACL_MASK: u16 = 0x10;
const ACL_OTHER: u16 = 0x20;
const NO_ID: u32 = u32::MAX;

fn xattrs(r: &Dir, notes: &mut FixtureNotes) -> io::Result<()> {
    let d = r.mkdir(b"xattrs")?;
    write_file(&d, b"user", b"user xattrs\n")?;
    d.set_xattr(Some(b"user"), "user.comment", b"hello")?;
    d.set_xattr(Some(b"user"), "user.empty", b"")?;
    d.set_xattr(
        Some(b"user"),
        "user.binary",
        &[0, 1, 2, 0xff, 0xfe, 0, b'\n'],
    )?;
    d.set_xattr(Some(b"user"), "user.big", &Rng::new(12).bytes(3000))?;

    write_file(&d, b"trusted", b"trusted xattrs\n")?;
    d.set_xattr(Some(b"trusted"), "trusted.overlay.opaque", b"y")?;
    d.set_xattr(Some(b"trusted"), "trusted.md5", b"0123456789abcdef")?;

    // File capabilities: set after chown/chmod, which would clear them.
    write_file(&d, b"cap", b"\x7fELF pretend binary")?;
    d.chown(Some(b"cap"), 0, 0)?;
    d.chmod(Some(b"cap"), 0o755)?;
    d.set_xattr(Some(b"cap"), "security.capability", &capability_v2())?;

    let access = posix_acl(&[
        (ACL_USER_OBJ, 6, NO_ID),
        (ACL_USER, 4, 1234),
        (ACL_GROUP_OBJ, 4, NO_ID),
        (ACL_GROUP, 6, 5678),
        (ACL_MASK, 6, NO_ID),
        (ACL_OTHER, 0, NO_ID),
    ]);
    write_file(&d, b"acl-file", b"acl'd\n")?;
    d.set_xattr(Some(b"acl-file"), "system.posix_acl_access", &access)?;
    let ad = d.mkdir(b"acl-dir")?;
    let dir_access = posix_acl(&[
        (ACL_USER_OBJ, 7, NO_ID),
        (ACL_USER, 5, 1234),
        (ACL_GROUP_OBJ, 5, NO_ID),
        (ACL_MASK, 7, NO_ID),
        (ACL_OTHER, 5, NO_ID),
    ]);
    let default = posix_acl(&[
        (ACL_USER_OBJ, 7, NO_ID),
        (ACL_USER, 7, 4321),
        (ACL_GROUP_OBJ, 5, NO_ID),
        (ACL_MASK, 7, NO_ID),
        (ACL_OTHER, 0, NO_ID),
    ]);
    ad.set_xattr(None, "system.posix_acl_access", &dir_access)?;
    ad.set_xattr(None, "system.posix_acl_default", &default)?;
    ad.set_xattr(None, "user.on-a-dir", b"dir value")?;
    // Created after the default ACL: inherits it (and the kernel derives its access ACL).
    write_file(&ad, b"inherits", b"inherited acl\n")?;

    write_file(&d, b"selinux", b"labelled\n")?;
    match d.set_xattr(
        Some(b"selinux"),
        "security.selinux",
        b"system_u:object_r:bin_t:s0\0",
    ) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
            notes.skipped.push(format!("security.selinux: {e}"));
        }
        Err(e) => return Err(e),
    }

    // user.* is not allowed on symlinks; trusted.* is.
    d.symlink(b"user", b"link-with-xattr")?;
    d.set_xattr(
        Some(b"link-with-xattr"),
        "trusted.on-symlink",
        b"link value",
    )?;
    Ok(())
}

fn names(r: &Dir) -> io::Result<()> {
    let d = r.mkdir(b"names")?;
    let names: [&[u8]; 10] = [
        b"caf\xe9",      // Latin-1, not UTF-8
        b"\xff\xfe\xfd", // no encoding at all
        b"with space",
        b"new\nline",
        b"back\\slash",
        b"tab\there",
        "ünïcödé ✓".as_bytes(),
        b"-starts-with-dash",
        b"*glob?[x]",
        b"..dots..",
    ];
    for name in names {
        write_file(&d, name, name)?;
    }
    d.mkdir(b"dir-\xc3\x28")?; // invalid UTF-8 sequence in a directory name
    let long = vec![b'n'; 255];
    write_file(&d, &long, b"a 255-byte name\n")?;
    let ld = d.mkdir(&[b'd'; 255])?;
    write_file(&ld, &vec![b'f'; 255], b"long in long\n")?;
    Ok(())
}

/// Nested directories whose full path exceeds PATH_MAX (4096 bytes).
pub const DEEP_LEVELS: usize = 24;

fn deep(r: &Dir) -> io::Result<()> {
    let mut cur = r.mkdir(b"deep")?;
    for i in 0..DEEP_LEVELS {
        let name = format!("{i:02}-{}", "l".repeat(197));
        cur = cur.mkdir(name.as_bytes())?;
    }
    write_file(&cur, b"bottom.txt", b"more than 4096 bytes from the root\n")?;
    cur.symlink(b"bottom.txt", b"bottom-link")?;
    Ok(())
}

/// Deterministic (atime, mtime) for a relative path: nanoseconds never zero, a few special
/// cases (before 1970, after 2038, zero nanoseconds).
pub fn times_for(rel: &[u8]) -> ((i64, i64), (i64, i64)) {
    let h = blake3::hash(rel);
    let b = h.as_bytes();
    let w = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let name = rel.rsplit(|&c| c == b'/').next().unwrap_or(rel);
    let mtime = match name {
        b"small.txt" => (-86_400 * 365, 123_456_789), // 1969
        b"empty" => (4_102_444_800, 999_999_999),     // 2100
        b"text.txt" => (1_700_000_000, 0),
        _ => (
            1_500_000_000 + (w(0) % 200_000_000) as i64,
            1 + (w(8) % 999_999_998) as i64,
        ),
    };
    let atime = (
        1_600_000_000 + (w(16) % 100_000_000) as i64,
        (w(24) % 1_000_000_000) as i64,
    );
    (atime, mtime)
}

/// Sets every entry's times to `times_for` its path, children before their directory
/// (creating entries changes a directory's mtime).
pub fn set_all_times(root: &Dir) -> io::Result<()> {
    fn walk(dir: &Dir, rel: &mut Vec<u8>) -> io::Result<()> {
        for name in dir.names()? {
            let len = rel.len();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(&name);
            let st = dir.lstat(Some(&name))?;
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                walk(&dir.sub(&name)?, rel)?;
            }
            let (a, m) = times_for(rel);
            dir.set_times(Some(&name), a, m)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", bstr(rel))))?;
            rel.truncate(len);
        }
        Ok(())
    }
    walk(root, &mut Vec::new())?;
    let (a, m) = times_for(b"");
    root.set_times(None, a, m)
}

/// Adds the directories capture records but does not descend into, each with contents.
pub fn add_pseudo_filesystems(root: &Path) -> io::Result<()> {
    let r = Dir::open(root)?;
    for name in ["proc", "sys", "dev", "run", "tmp"] {
        let d = r.mkdir(name.as_bytes())?;
        write_file(&d, b"must-not-be-captured", b"x")?;
        d.mkdir(b"subdir")?;
    }
    r.chmod(Some(b"tmp"), 0o1777)?;
    let var = r.mkdir(b"var")?;
    let vt = var.mkdir(b"tmp")?;
    vt.chmod(None, 0o1777)?;
    write_file(&vt, b"must-not-be-captured", b"x")?;
    // var itself and its other children are captured normally.
    let lib = var.mkdir(b"lib")?;
    write_file(&lib, b"kept", b"var/lib is captured\n")?;
    Ok(())
}

/// `len` bytes of the xorshift64 stream from `state` (not zero): incompressible, and the same
/// bytes on every run (the format-1 fixtures were captured from them).
pub fn xorshift(mut state: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A reproducible byte pattern of `len` bytes (boot code and partition content stand-ins in
/// the loop-device tests).
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}
