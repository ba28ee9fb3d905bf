//! The bad-input table of docs/SECURITY.md, row by row: each hostile or damaged image is
//! crafted here, and `extract -C DIR` (and `list`) must answer exactly what the table says,
//! with exit 1, without a panic, and without writing anything — inside DIR or outside it.
//!
//! Hostile manifests are made by reading a real image, changing its manifest through the
//! library's own types, and writing it back with the library's writer: the result is a
//! well-formed container whose *content* lies, which is what an attacker would hand us.

use crate::common;

use std::path::{Path, PathBuf};

use osimage::OimgWriter;
use osimage::PayloadReader;
use osimage::Unlock;
use osimage::format::manifest::{DataRun, Entry, EntryKind, Extension, Manifest, Meta};
use osimage::format::sink::PackSink;

/// A source tree, its plain image, and a scratch area whose contents are watched.
struct Table {
    dir: tempfile::TempDir,
    image: PathBuf,
}

impl Table {
    fn new() -> Table {
        let dir = common::scratch();
        let root = dir.path().join("src");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        std::fs::write(root.join("etc/passwd"), b"root:x:0:0::/root:/bin/sh\n").expect("write");
        std::fs::write(
            root.join("data.bin"),
            common::fixture::Rng::new(5).bytes(200_000),
        )
        .expect("write");
        let image = dir.path().join("good.oimg");
        common::capture(&root, &image, &["-q"]);
        Table { dir, image }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A copy of the good image with its manifest changed by `f`.
    fn with_manifest(&self, name: &str, f: impl FnOnce(&mut Manifest)) -> PathBuf {
        let r = PayloadReader::open(&self.image, &Unlock::none()).expect("open good image");
        let mut m = r.manifest().clone();
        f(&mut m);
        let out = self.path(name);
        let file = std::fs::File::create(&out).expect("create");
        let mut w = OimgWriter::new(file, &out, m.image.id, None).expect("writer");
        for span in r.pack_spans() {
            let mut buf = vec![0u8; span.len as usize];
            span.read_exact_at(&mut buf, 0).expect("read pack");
            w.write_all(&buf).expect("write pack");
        }
        w.finish(&m).expect("finish");
        out
    }

    /// A copy of the good image with its bytes changed by `f`.
    fn with_bytes(&self, name: &str, f: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
        let mut b = std::fs::read(&self.image).expect("read");
        f(&mut b);
        let out = self.path(name);
        std::fs::write(&out, b).expect("write");
        out
    }
}

fn entry(path: &[u8], kind: EntryKind) -> Entry {
    Entry {
        path: path.into(),
        kind,
        meta: Meta::default(),
        xattrs: Default::default(),
    }
}

/// Every path under `dir`, sorted (to prove nothing appeared anywhere).
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

/// `extract` and `list` refuse `image` with exit 1 and `expect` in the message, and nothing is
/// written inside or outside DIR (the scratch area and /tmp are compared before and after).
fn refused(t: &Table, row: &str, image: &Path, expect: &str) {
    let before = listing(t.dir.path());
    let tmp_before = listing(Path::new("/tmp/osimage-hostile-outside"));
    let dest = t.path(&format!("out-{row}"));
    let r = common::extract(image, &dest, &[]).fails();
    assert!(
        r.stderr.contains(expect),
        "row {row:?}: extract should say {expect:?}: {}",
        r.describe()
    );
    assert!(
        r.stderr.contains(&image.display().to_string()),
        "row {row:?}: the message names the image: {}",
        r.describe()
    );
    let r = common::osimage(["list".as_ref(), image.as_os_str()]).fails();
    assert!(
        r.stderr.contains(expect),
        "row {row:?}: list: {}",
        r.describe()
    );
    // The dry run runs the same checks as the restore (issue #20 items 6, 7).
    let dry = t.path(&format!("dry-{row}"));
    let r = common::osimage([
        "restore".as_ref(),
        image.as_os_str(),
        "--to".as_ref(),
        dry.as_os_str(),
        "--dry-run".as_ref(),
    ])
    .fails();
    assert!(
        r.stderr.contains(expect),
        "row {row:?}: restore --dry-run: {}",
        r.describe()
    );
    assert!(
        !dest.exists() || common::is_empty_dir(&dest),
        "row {row:?}: extract wrote into DIR"
    );
    let mut after = listing(t.dir.path());
    after.retain(|p| p != &dest);
    assert_eq!(before, after, "row {row:?}: files appeared outside DIR");
    assert_eq!(
        tmp_before,
        listing(Path::new("/tmp/osimage-hostile-outside")),
        "row {row:?}"
    );
}

#[test]
fn every_row_of_the_bad_input_table_is_refused_as_documented() {
    let t = Table::new();
    let n = |m: &Manifest| m.entries.len() as u32;
    let rows: Vec<(&str, PathBuf, &str)> = vec![
        (
            "truncated",
            t.with_bytes("truncated.oimg", |b| b.truncate(b.len() / 2)),
            "truncated or not finished",
        ),
        (
            "wrong-magic",
            t.with_bytes("magic.oimg", |b| b[0] = b'X'),
            "not an osimage image",
        ),
        (
            "future-version",
            t.with_bytes("future.oimg", |b| b[8] = 9),
            "made by a newer osimage",
        ),
        (
            "unknown-flags",
            t.with_bytes("flags.oimg", |b| b[10] = 0x80),
            "unknown flags",
        ),
        (
            "bit-flip-in-manifest",
            t.with_bytes("flip.oimg", |b| {
                let at = b.len() - 64 - 10;
                b[at] ^= 1;
            }),
            "manifest checksum mismatch",
        ),
        (
            "dot-dot",
            t.with_manifest("dotdot.oimg", |m| {
                m.entries.push(entry(b"../evil", EntryKind::Fifo))
            }),
            "unsafe path \"../evil\"",
        ),
        (
            "dot-dot-inside",
            t.with_manifest("dotdot2.oimg", |m| {
                m.entries.push(entry(b"etc/../../evil", EntryKind::Fifo))
            }),
            "unsafe path \"etc/../../evil\"",
        ),
        (
            "absolute",
            t.with_manifest("absolute.oimg", |m| {
                m.entries
                    .push(entry(b"/tmp/osimage-hostile-outside/x", EntryKind::Fifo))
            }),
            "unsafe path \"/tmp/osimage-hostile-outside/x\"",
        ),
        (
            "nul-in-name",
            t.with_manifest("nul.oimg", |m| {
                m.entries.push(entry(b"etc/a\0b", EntryKind::Fifo))
            }),
            "unsafe path \"etc/a\\0b\"",
        ),
        (
            "empty-component",
            t.with_manifest("slash.oimg", |m| {
                m.entries.push(entry(b"etc//x", EntryKind::Fifo))
            }),
            "unsafe path \"etc//x\"",
        ),
        (
            "trailing-slash",
            t.with_manifest("trailing.oimg", |m| {
                m.entries.push(entry(b"etc/", EntryKind::Directory))
            }),
            "unsafe path \"etc/\"",
        ),
        (
            "through-a-symlink",
            t.with_manifest("symlink.oimg", |m| {
                m.entries.push(entry(
                    b"link",
                    EntryKind::Symlink {
                        target: b"/tmp/osimage-hostile-outside".to_vec(),
                    },
                ));
                m.entries.push(entry(b"link/x", EntryKind::Fifo));
            }),
            "\"link/x\" comes before its parent directory",
        ),
        (
            "hard-link-cycle",
            t.with_manifest("cycle.oimg", |m| {
                let i = n(m);
                m.entries
                    .push(entry(b"self", EntryKind::HardLink { target: i }));
            }),
            "\"self\": hard link to entry",
        ),
        (
            "hard-link-forward",
            t.with_manifest("forward.oimg", |m| {
                let i = n(m);
                m.entries
                    .push(entry(b"a", EntryKind::HardLink { target: i + 1 }));
                m.entries
                    .push(entry(b"b", EntryKind::HardLink { target: i }));
            }),
            "\"a\": hard link to entry",
        ),
        (
            "hard-link-dangling",
            t.with_manifest("dangling.oimg", |m| {
                m.entries
                    .push(entry(b"a", EntryKind::HardLink { target: u32::MAX }))
            }),
            "which is not an earlier file",
        ),
        (
            "hard-link-to-a-directory",
            t.with_manifest("linkdir.oimg", |m| {
                m.entries
                    .push(entry(b"a", EntryKind::HardLink { target: 0 }))
            }),
            "which is not an earlier file",
        ),
        (
            "absurd-file-size",
            t.with_manifest("size.oimg", |m| {
                m.entries.push(entry(
                    b"huge",
                    EntryKind::File {
                        size: u64::MAX,
                        runs: smallvec::smallvec![],
                    },
                ))
            }),
            "\"huge\": impossible size",
        ),
        (
            "data-beyond-size",
            t.with_manifest("beyond1.oimg", |m| {
                m.entries.push(entry(
                    b"short",
                    EntryKind::File {
                        size: 1,
                        runs: smallvec::smallvec![DataRun {
                            offset: 0,
                            chunks: smallvec::smallvec![0],
                        }],
                    },
                ))
            }),
            "\"short\": data beyond its size",
        ),
        (
            "data-offset-overflow",
            t.with_manifest("beyond.oimg", |m| {
                m.entries.push(entry(
                    b"short",
                    EntryKind::File {
                        size: 1,
                        runs: smallvec::smallvec![DataRun {
                            offset: u64::MAX - 1,
                            chunks: smallvec::smallvec![0],
                        }],
                    },
                ))
            }),
            "\"short\": data runs past 2^64 bytes",
        ),
        (
            "chunk-index-out-of-range",
            t.with_manifest("chunkidx.oimg", |m| {
                m.entries.push(entry(
                    b"f",
                    EntryKind::File {
                        size: 10,
                        runs: smallvec::smallvec![DataRun {
                            offset: 0,
                            chunks: smallvec::smallvec![u32::MAX],
                        }],
                    },
                ))
            }),
            "chunk 4294967295 of",
        ),
        (
            "chunk-outside-its-block",
            t.with_manifest("chunkoff.oimg", |m| m.chunks[0].offset = u32::MAX),
            "chunk 0 lies outside block",
        ),
        (
            "block-outside-its-pack",
            t.with_manifest("block.oimg", |m| m.blocks[0].stored_len = u32::MAX),
            "block 0 lies outside pack",
        ),
        (
            "absurd-pack-length",
            t.with_manifest("pack.oimg", |m| m.packs[0].len = u64::MAX),
            "pack 0 has an impossible length",
        ),
        (
            "unknown-required-feature",
            t.with_manifest("feature.oimg", |m| {
                m.extensions.push(Extension {
                    name: "time-travel".into(),
                    version: 1,
                    required: true,
                    data: vec![],
                })
            }),
            "needs feature \"time-travel\"",
        ),
        ("huge-count", huge_count(&t), "manifest does not decode"),
        (
            "huge-count-columns",
            huge_count_columns(&t),
            "column 7 (kinds): 1152921504606846976 entries cannot fit",
        ),
        // Issue #20 item 6: every path once, whatever the kinds.
        (
            "dir-then-symlink-then-under-it",
            t.with_manifest("dup1.oimg", |m| {
                m.entries.push(entry(b"a", EntryKind::Directory));
                m.entries.push(entry(
                    b"a",
                    EntryKind::Symlink {
                        target: b"/tmp/osimage-hostile-outside".to_vec(),
                    },
                ));
                m.entries.push(entry(b"a/x", EntryKind::Fifo));
            }),
            "path \"a\" listed twice",
        ),
        (
            "file-then-dir",
            t.with_manifest("dup2.oimg", |m| {
                m.entries.push(entry(
                    b"a",
                    EntryKind::File {
                        size: 0,
                        runs: smallvec::smallvec![],
                    },
                ));
                m.entries.push(entry(b"a", EntryKind::Directory));
            }),
            "path \"a\" listed twice",
        ),
        (
            "dir-then-symlink",
            t.with_manifest("dup3.oimg", |m| {
                m.entries.push(entry(b"a", EntryKind::Directory));
                m.entries.push(entry(
                    b"a",
                    EntryKind::Symlink {
                        target: b"/tmp/osimage-hostile-outside".to_vec(),
                    },
                ));
            }),
            "path \"a\" listed twice",
        ),
        // Issue #20 item 7: what the kernel would refuse half-way through.
        (
            "name-over-255-bytes",
            t.with_manifest("long.oimg", |m| {
                m.entries.push(entry(&[b'n'; 256], EntryKind::Fifo))
            }),
            "a name longer than 255 bytes",
        ),
        (
            "nanoseconds-over-1e9",
            t.with_manifest("nsec.oimg", |m| {
                let mut e = entry(b"t", EntryKind::Fifo);
                e.meta.mtime.nsec = 1_000_000_000;
                m.entries.push(e);
            }),
            "\"t\": a time with 10^9 or more nanoseconds",
        ),
        (
            "empty-symlink-target",
            t.with_manifest("emptylink.oimg", |m| {
                m.entries
                    .push(entry(b"l", EntryKind::Symlink { target: vec![] }))
            }),
            "\"l\": symlink target empty",
        ),
    ];
    std::fs::create_dir_all("/tmp/osimage-hostile-outside").expect("mkdir");
    for (row, image, expect) in &rows {
        refused(&t, row, image, expect);
    }
}

/// A manifest whose entry count claims 2^60 entries: the decoder must refuse it from the
/// byte limit, not try to allocate it. Made by patching the encoded `packs` count (the first
/// varint after `ImageInfo`, FORMAT.md §5) and reframing (§4).
fn huge_count(t: &Table) -> PathBuf {
    let r = PayloadReader::open(&t.image, &Unlock::none()).expect("open");
    let m = r.manifest().clone();
    let cfg = bincode::config::standard();
    // Version 2's own types (32-byte chunk ids, FORMAT.md §5.2).
    let v2 = osimage::format::manifest::legacy::V2::of(&m, [0; 16]);
    let raw = bincode::serde::encode_to_vec(&v2, cfg).expect("encode");
    let info_len = bincode::serde::encode_to_vec(&m.image, cfg)
        .expect("encode")
        .len();
    assert_eq!(
        raw[info_len],
        m.packs.len() as u8,
        "packs count follows ImageInfo"
    );
    let mut evil = raw[..info_len].to_vec();
    evil.push(253); // bincode varint: u64 follows
    evil.extend_from_slice(&(1u64 << 60).to_le_bytes());
    evil.extend_from_slice(&raw[info_len + 1..]);
    // A frame of manifest version 2: the bincode decoder is the one under test.
    reframed(t, &m, &evil, 2, "huge-count.oimg")
}

/// The same claim in a manifest of the column encoding (version 4, FORMAT.md §5.7): column 1
/// says 2^60 entries, which column 7 (one byte an entry) cannot hold.
fn huge_count_columns(t: &Table) -> PathBuf {
    let r = PayloadReader::open(&t.image, &Unlock::none()).expect("open");
    let m = r.manifest().clone();
    let mut body = Vec::new();
    osimage::format::columns::encode(&m, &mut body).expect("encode");
    let counts_len = body[0] as usize; // three small varints: one length byte
    let leb = |mut v: u64, out: &mut Vec<u8>| {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    };
    let mut counts = Vec::new();
    leb(m.blocks.len() as u64, &mut counts);
    leb(m.chunks.len() as u64, &mut counts);
    leb(1 << 60, &mut counts);
    let mut evil = vec![counts.len() as u8];
    evil.extend_from_slice(&counts);
    evil.extend_from_slice(&body[1 + counts_len..]);
    let version = osimage::format::columns::VERSION;
    reframed(t, &m, &evil, version, "huge-count-columns.oimg")
}

/// The good image with its manifest replaced by a frame of `version` around `evil`, framed by
/// hand (FORMAT.md §4) on a real header's layout, with a fresh trailer (§6.1).
fn reframed(t: &Table, m: &Manifest, evil: &[u8], version: u16, name: &str) -> PathBuf {
    use osimage::format::frame::encode_manifest;
    let good_frame = encode_manifest(m).expect("frame");
    let body = zstd::bulk::compress(evil, 3).expect("zstd");
    let mut frame = good_frame[..64].to_vec();
    frame[8..10].copy_from_slice(&version.to_le_bytes());
    frame[16..24].copy_from_slice(&(body.len() as u64).to_le_bytes());
    frame[24..32].copy_from_slice(&(evil.len() as u64).to_le_bytes());
    frame[32..64].copy_from_slice(blake3::hash(&body).as_bytes());
    frame.extend_from_slice(&body);
    // Splice it into the good image in place of its manifest, with a fresh trailer.
    let bytes = std::fs::read(&t.image).expect("read");
    let trailer = &bytes[bytes.len() - 64..];
    let m_off = u64::from_le_bytes(trailer[16..24].try_into().expect("8"));
    let mut out = bytes[..m_off as usize].to_vec();
    out.extend_from_slice(&frame);
    let t2 = osimage::format::records::Trailer {
        manifest_offset: m_off,
        manifest_len: frame.len() as u64,
        image_id: m.image.id,
    };
    out.extend_from_slice(&t2.encode());
    let p = t.path(name);
    std::fs::write(&p, out).expect("write");
    p
}

#[test]
fn a_symlink_pointing_outside_is_restored_as_a_link_and_never_followed() {
    let t = Table::new();
    let outside = Path::new("/tmp/osimage-hostile-outside-link");
    let _ = std::fs::remove_dir_all(outside);
    let image = t.with_manifest("escape.oimg", |m| {
        m.entries.push(entry(
            b"escape",
            EntryKind::Symlink {
                target: b"../../../../../../../../tmp/osimage-hostile-outside-link".to_vec(),
            },
        ));
    });
    let dest = t.path("out");
    common::extract(&image, &dest, &[]).ok();
    let link = std::fs::read_link(dest.join("escape")).expect("a symlink");
    assert!(
        link.to_string_lossy()
            .ends_with("osimage-hostile-outside-link")
    );
    assert!(!outside.exists(), "something was written through the link");
}

/// Issue #20 item 2: an ISO whose `/osimage/manifest.osm` record claims 4 GiB (a sparse file)
/// is refused from the frame header before the record's length is allocated; every reading
/// command runs under the 512 MiB cap and exits 1 naming the image.
#[test]
fn an_iso_manifest_record_claiming_4_gib_is_refused_before_allocating() {
    use osimage::format::records::FrameHeader;
    use osimage::iso::{IsoFile, IsoSource, IsoSpec, MAX_FILE_SIZE, PLACED_START, write_iso};
    use std::os::unix::fs::FileExt;
    let dir = common::scratch();
    let iso = dir.path().join("huge-manifest.iso");
    // The record's first 64 bytes: a frame header whose body fills the whole record, as a
    // writer that tells the truth about a 4 GiB manifest would write it (FORMAT.md §4).
    let len = MAX_FILE_SIZE - 2048; // the largest single extent the writer makes
    let header = FrameHeader {
        version: osimage::format::manifest::FORMAT_VERSION,
        sealed: false,
        stored_len: len - 64,
        raw_len: len - 64,
        hash: [0; 32],
    };
    let f = std::fs::File::create(&iso).expect("create");
    f.write_all_at(&header.encode(), PLACED_START)
        .expect("write");
    drop(f);
    let spec = IsoSpec {
        volume_id: "HOSTILE".into(),
        files: vec![IsoFile {
            path: "osimage/manifest.osm".into(),
            source: IsoSource::Placed {
                offset: PLACED_START,
                len,
            },
            mode: 0o644,
            mtime: 0,
        }],
        boot: None,
        hybrid: false,
    };
    write_iso(&spec, &iso).expect("write_iso");
    let on_disk = std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&iso).expect("stat"));
    assert!(
        on_disk * 512 < 1 << 20,
        "the ISO is sparse: {on_disk} blocks"
    );
    for cmd in ["info", "list", "verify"] {
        let r = common::osimage_capped([cmd.as_ref(), iso.as_os_str()]).fails();
        assert!(
            r.stderr.contains("absurd size") && r.stderr.contains(&iso.display().to_string()),
            "{cmd}: {}",
            r.describe()
        );
    }
}

/// Issue #20 item 3: an ISO with 20,000 empty `pack-NNNNNN.osp` records beside a manifest that
/// lists none. Every pack was found by resolving its path from the root and parsing the whole
/// folder again (quadratic: ~40 s of CPU); the folder is now read once. Every reading command,
/// under the CPU and memory caps, refuses the image for the packs it does not list.
#[test]
fn an_iso_with_twenty_thousand_pack_records_is_refused_within_the_caps() {
    use osimage::format::frame::encode_manifest;
    use osimage::iso::{IsoFile, IsoSource, IsoSpec, write_iso};
    const PACKS: usize = 20_000;
    let dir = common::scratch();
    let iso = dir.path().join("many-packs.iso");
    let file = |path: String, bytes: Vec<u8>| IsoFile {
        path,
        source: IsoSource::Bytes(bytes),
        mode: 0o644,
        mtime: 0,
    };
    let mut files = vec![file(
        "osimage/manifest.osm".into(),
        encode_manifest(&Manifest::default()).expect("frame"),
    )];
    files.extend((0..PACKS).map(|i| file(format!("osimage/packs/pack-{i:06}.osp"), vec![])));
    let spec = IsoSpec {
        volume_id: "HOSTILE".into(),
        files,
        boot: None,
        hybrid: false,
    };
    write_iso(&spec, &iso).expect("write_iso");
    for cmd in ["info", "list", "verify"] {
        let r = common::osimage_capped([cmd.as_ref(), iso.as_os_str()]).fails();
        assert!(
            r.stderr
                .contains(&format!("0 packs listed, {PACKS} present"))
                && r.stderr.contains(&iso.display().to_string()),
            "{cmd}: {}",
            r.describe()
        );
    }
}

/// Issue #20 item 9: names, symlink targets and the hostname come from the image; `list` and
/// `info` escape control characters as `ls -b` does (a name `innocent\n/etc/shadow` stays one
/// line, no escape sequence reaches the terminal), `list -0` and `info --json` keep them exact.
#[test]
fn names_and_hostname_are_escaped_for_the_terminal_and_exact_with_dash_0_and_json() {
    let t = Table::new();
    let image = t.with_manifest("names.oimg", |m| {
        m.image.hostname = "evil\x1b]0;owned\x07\x1b[2J".into();
        m.entries.push(entry(b"innocent\n", EntryKind::Directory));
        m.entries
            .push(entry(b"innocent\n/etc", EntryKind::Directory));
        m.entries
            .push(entry(b"innocent\n/etc/shadow", EntryKind::Fifo));
        m.entries.push(entry(b"red\x1b[31mname", EntryKind::Fifo));
        m.entries.push(entry(
            b"link",
            EntryKind::Symlink {
                target: b"\x1b[8mhidden".to_vec(),
            },
        ));
    });
    let list = common::osimage(["list".as_ref(), image.as_os_str()]).ok();
    let lines: Vec<&[u8]> = list.stdout.split(|&b| b == b'\n').collect();
    assert!(!list.stdout.contains(&0x1b), "{}", list.describe());
    assert!(
        lines.contains(&&b"/innocent\\n/etc/shadow"[..]),
        "{}",
        list.describe()
    );
    assert!(!lines.contains(&&b"/etc/shadow"[..]), "{}", list.describe());
    assert!(
        lines.contains(&&b"/red\\033[31mname"[..]),
        "{}",
        list.describe()
    );
    let long = common::osimage(["list".as_ref(), "-l".as_ref(), image.as_os_str()]).ok();
    assert!(!long.stdout.contains(&0x1b), "{}", long.describe());
    assert!(
        long.stdout_str().contains("/link -> \\033[8mhidden\n"),
        "{}",
        long.describe()
    );
    let raw = common::osimage(["list".as_ref(), "-0".as_ref(), image.as_os_str()]).ok();
    let names: Vec<&[u8]> = raw.stdout.split(|&b| b == 0).collect();
    assert!(
        names.contains(&&b"/innocent\n/etc/shadow"[..]),
        "{}",
        raw.describe()
    );
    assert!(
        names.contains(&&b"/red\x1b[31mname"[..]),
        "{}",
        raw.describe()
    );
    assert!(raw.stdout.ends_with(b"\0"), "{}", raw.describe());
    let info = common::osimage(["info".as_ref(), image.as_os_str()]).ok();
    assert!(!info.stdout.contains(&0x1b), "{}", info.describe());
    assert!(
        info.stdout_str().contains("evil\\033]0;owned\\a\\033[2J\n"),
        "{}",
        info.describe()
    );
    let json = common::osimage(["info".as_ref(), "--json".as_ref(), image.as_os_str()]).ok();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(v["hostname"], "evil\x1b]0;owned\x07\x1b[2J");
}

/// Issue #20 item 10 through the command line: `extract --no-owner` makes a uid-1000
/// mode-4755 file a plain 0755 file of the extracting user, not a setuid-root one; with the
/// owner it stays setuid and uid 1000. `--no-devices` leaves a block device out.
#[test]
fn extract_no_owner_drops_setuid_and_no_devices_leaves_nodes_out() {
    use std::os::unix::fs::MetadataExt;
    let t = Table::new();
    let image = t.with_manifest("suid.oimg", |m| {
        let mut e = entry(
            b"suid",
            EntryKind::File {
                size: 0,
                runs: smallvec::smallvec![],
            },
        );
        e.meta.mode = 0o4755;
        (e.meta.uid, e.meta.gid) = (1000, 1000);
        m.entries.push(e);
        let mut d = entry(
            b"disk",
            EntryKind::BlockDevice {
                rdev: libc::makedev(8, 0),
            },
        );
        d.meta.mode = 0o660;
        m.entries.push(d);
    });
    let plain = t.path("plain");
    common::osimage([
        "extract".as_ref(),
        image.as_os_str(),
        "-C".as_ref(),
        plain.as_os_str(),
        "--no-owner".as_ref(),
        "--no-devices".as_ref(),
    ])
    .ok();
    let st = std::fs::metadata(plain.join("suid")).expect("extracted");
    assert_eq!(st.mode() & 0o7777, 0o755);
    assert_eq!(st.uid(), rustix::process::getuid().as_raw());
    assert!(!plain.join("disk").exists(), "--no-devices made the node");
    let owned = t.path("owned");
    common::extract(&image, &owned, &[]).ok();
    let st = std::fs::metadata(owned.join("suid")).expect("extracted");
    assert_eq!((st.mode() & 0o7777, st.uid()), (0o4755, 1000));
    let node = std::fs::symlink_metadata(owned.join("disk")).expect("the node");
    assert_eq!(node.rdev(), libc::makedev(8, 0));
}
