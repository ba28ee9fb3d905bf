//! Round trips of the column encoding (FORMAT.md §5.7) on hand-made and generated manifests,
//! and its refusals, each named, none a panic.

use proptest::prelude::*;

use super::varint::{put_bytes, put_uv};
use super::{COLUMNS, VERSION, VERSION_32, encode};
use crate::format::manifest::*;

/// Decodes a body of the version written (4).
fn decode(body: &[u8]) -> Result<Manifest, crate::format::PayloadError> {
    super::decode(body, VERSION)
}

fn encoded(m: &Manifest) -> Vec<u8> {
    let mut out = Vec::new();
    encode(m, &mut out).expect("encodes");
    out
}

fn t(sec: i64, nsec: u32) -> Timestamp {
    Timestamp { sec, nsec }
}

fn entry(path: &[u8], kind: EntryKind) -> Entry {
    Entry {
        path: path.into(),
        kind,
        meta: Meta {
            mode: 0o644,
            uid: 1000,
            gid: 1000,
            atime: t(1_700_000_000, 5),
            mtime: t(1_700_000_000, 5),
            ctime: t(1_700_000_000, 5),
            ino: 42,
            fs: 0,
            nlink: 1,
        },
        xattrs: Default::default(),
    }
}

fn file(path: &[u8], size: u64, runs: Vec<DataRun>) -> Entry {
    entry(
        path,
        EntryKind::File {
            size,
            runs: runs.into(),
        },
    )
}

fn run(offset: u64, chunks: &[u32]) -> DataRun {
    DataRun {
        offset,
        chunks: chunks.into(),
    }
}

/// Every kind, xattrs, hard links, holes, several runs, shared and reused chunks, empty files,
/// odd bytes in paths, extreme numbers and times, extensions, two packs.
fn varied() -> Manifest {
    let mut m = Manifest::default();
    m.image.id = [7; 16];
    m.image.hostname = "host".into();
    m.image.source_root = b"/\xff".to_vec();
    m.packs = vec![
        PackRecord {
            len: 1 << 20,
            hash: [1; 32],
        },
        PackRecord {
            len: 4096,
            hash: [2; 32],
        },
    ];
    let block = |pack, offset, stored_len, codec, h| BlockRecord {
        pack,
        offset,
        stored_len,
        raw_len: 300_000,
        codec,
        hash: [h; 32],
    };
    m.blocks = vec![
        block(0, 64, 1000, Codec::Zstd, 3),
        block(0, 1080, 7, Codec::Raw, 4),
        block(1, 64, 16, Codec::Zstd, 5),
        block(0, 9000, u32::MAX, Codec::Zstd, 6),
    ];
    m.chunks = (0..12u32)
        .map(|i| ChunkRecord {
            id: ChunkId([i as u8; 16]),
            block: [0, 0, 0, 1, 2, 3, 0, 1, 1, 2, 3, 3][i as usize],
            offset: i * 1000,
            len: 1 + i * 999,
        })
        .collect();
    let mut root = entry(b"", EntryKind::Directory);
    root.meta.mode = 0o755;
    let mut xa = file(b"dir/x\xff\x01 \xc3\xa9", 0, vec![]);
    xa.xattrs = vec![
        Xattr {
            name: b"user.a".to_vec(),
            value: vec![],
        },
        Xattr {
            name: b"security.capability".to_vec(),
            value: vec![0, 1, 2, 255],
        },
    ]
    .into();
    xa.meta.atime = t(-5, 999_999_999);
    xa.meta.ctime = t(i64::MAX, 0);
    xa.meta.mtime = t(i64::MIN, 1);
    xa.meta.uid = u32::MAX;
    xa.meta.ino = u64::MAX;
    xa.meta.nlink = 2;
    let mut later = file(b"dir/y", 1, vec![run(0, &[3])]);
    later.meta.gid = 0;
    later.meta.ino = 0;
    later.meta.fs = 1;
    m.entries = vec![
        root,
        entry(b"dir", EntryKind::Directory),
        file(b"dir/a", 70_000, vec![run(0, &[0, 1])]),
        file(b"dir/b", 5, vec![run(0, &[2])]),
        xa,
        later,
        file(b"dir/same-as-a", 70_000, vec![run(0, &[0, 1])]),
        file(
            b"dir/sparse",
            1 << 40,
            vec![run(4096, &[4, 5]), run(1 << 30, &[6])],
        ),
        file(b"dir/huge", u64::MAX, vec![run(u64::MAX - 9, &[11, 7, 8])]),
        file(b"dir/after", 10, vec![run(0, &[9, 10])]),
        entry(b"dir/hl", EntryKind::HardLink { target: 2 }),
        entry(
            b"link",
            EntryKind::Symlink {
                target: b"dir/a\xfe".to_vec(),
            },
        ),
        entry(b"c", EntryKind::CharDevice { rdev: u64::MAX }),
        entry(b"b", EntryKind::BlockDevice { rdev: 0x0803 }),
        entry(b"p", EntryKind::Fifo),
        entry(b"s", EntryKind::Socket),
        entry(b"d2", EntryKind::Directory),
        entry(b"d2/\xe2\x98\x83", EntryKind::Fifo),
    ]
    .into();
    m.users = vec![(0, "root".into()), (1000, "ü".into())];
    m.groups = vec![(0, "root".into())];
    m.filesystems = vec![
        CapturedFs {
            mount_point: vec![],
            fstype: "ext4".into(),
            source: "/dev/vda1".into(),
            dev: 2049,
        },
        CapturedFs {
            mount_point: b"dir".to_vec(),
            fstype: "xfs".into(),
            source: "/dev/vdb".into(),
            dev: 2065,
        },
    ];
    m.stats.entries = 18;
    m.stats.duration_ms = 12;
    m.extensions = vec![Extension {
        name: "lineage".into(),
        version: 1,
        required: false,
        data: vec![1, 2, 3],
    }];
    m
}

#[test]
fn a_varied_manifest_round_trips() {
    // Not every sample is a valid manifest (block 3 lies outside its pack): the encoding is
    // total, §7's checks come after it.
    let m = varied();
    assert_eq!(decode(&encoded(&m)).expect("decodes"), m);
    assert_eq!(
        decode(&encoded(&Manifest::default())).unwrap(),
        Manifest::default()
    );
}

/// Manifest version 3 (FORMAT.md §8): column 6 holds each chunk's whole BLAKE3, of which a
/// reader keeps the first 16 bytes; the lengths are checked for the version the frame says.
#[test]
fn version_3_ids_of_32_bytes_are_cut_to_16() {
    let m = varied();
    let mut cols = split_raw(&encoded(&m));
    assert_eq!(
        cols[5].len(),
        16 * m.chunks.len(),
        "version 4: 16 bytes a chunk"
    );
    let v4 = join(&cols);
    cols[5] = cols[5]
        .chunks(16)
        .flat_map(|id| [id, &[0xee; 16][..]].concat())
        .collect();
    let v3 = join(&cols);
    assert_eq!(super::decode(&v3, VERSION_32).expect("decodes"), m);
    let e = super::decode(&v4, VERSION_32).unwrap_err().to_string();
    assert!(
        e.contains("6 (chunk ids)") && e.contains("of 32 bytes"),
        "{e}"
    );
    let e = decode(&v3).unwrap_err().to_string();
    assert!(
        e.contains("6 (chunk ids)") && e.contains("of 16 bytes"),
        "{e}"
    );
    let e = super::decode(&v4, 2).unwrap_err().to_string();
    assert!(e.contains("version 2 is not a column encoding"), "{e}");
}

#[test]
fn a_new_file_of_new_chunks_takes_two_bytes_of_runs() {
    let mut m = varied();
    m.entries.truncate(4); // root, dir, a (chunks 0 1), b (chunk 2): all in order
    let cols = split_raw(&encoded(&m));
    assert_eq!(cols[9], [1, 2, 1, 1], "h = 1, k = 2; h = 1, k = 1");
}

/// The body's columns as raw byte strings.
fn split_raw(body: &[u8]) -> Vec<Vec<u8>> {
    let mut at = 0;
    let mut out = vec![];
    while at < body.len() {
        let mut c = super::varint::Column::new("t", &body[at..]);
        let len = c.uv().unwrap() as usize;
        let head = c.len() - c.left();
        out.push(body[at + head..at + head + len].to_vec());
        at += head + len;
    }
    assert_eq!(out.len(), COLUMNS.len());
    out
}

fn join(cols: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![];
    for c in cols {
        put_bytes(&mut out, c);
    }
    out
}

/// Decodes `varied()` with column `i` changed by `f`; the refusal's text.
fn refusal(i: usize, f: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut cols = split_raw(&encoded(&varied()));
    f(&mut cols[i]);
    decode(&join(&cols)).map_or_else(|e| e.to_string(), |_| "accepted".into())
}

#[test]
fn every_damaged_column_is_refused_by_name() {
    for (i, name) in COLUMNS.iter().enumerate() {
        let e = refusal(i, |c| {
            c.pop();
        });
        assert!(e.contains(name), "{name} truncated: {e}");
        let e = refusal(i, |c| c.push(0));
        assert!(e.contains(name), "{name} with a byte more: {e}");
    }
}

#[test]
fn counts_that_disagree_are_refused() {
    let counts = |b: u64, c: u64, e: u64| {
        move |col: &mut Vec<u8>| {
            col.clear();
            for n in [b, c, e] {
                put_uv(col, n);
            }
        }
    };
    let e = refusal(0, counts(5, 12, 18));
    assert!(
        e.contains("4 (block hashes)") || e.contains("3 (blocks)"),
        "{e}"
    );
    let e = refusal(0, counts(4, 11, 18));
    assert!(
        e.contains("6 (chunk ids)") || e.contains("5 (chunks)"),
        "{e}"
    );
    let e = refusal(0, counts(4, 12, 17));
    assert!(e.contains("7 (kinds)"), "{e}");
    let e = refusal(0, counts(u64::MAX, 12, 18));
    assert!(e.contains("cannot fit"), "{e}");
    let e = refusal(0, counts(4, 12, 1 << 60));
    assert!(e.contains("entries cannot fit"), "{e}");
}

#[test]
fn out_of_range_or_impossible_values_are_refused() {
    // A run naming chunk 12 of 12: the last file's first chunk (9) becomes 12.
    let mut m = varied();
    if let EntryKind::File { size, mut runs } = m.entries[9].kind() {
        runs[0].chunks = smallvec::smallvec![12];
        m.entries[9].set_kind(EntryKind::File { size, runs });
    }
    let e = decode(&encoded(&m)).unwrap_err().to_string();
    assert!(
        e.contains("\"dir/after\": chunk 12 of 12 does not exist"),
        "{e}"
    );
    let e = refusal(6, |c| c[3] = 8);
    assert!(e.contains("unknown kind 8"), "{e}");
    let e = refusal(14, |c| c[0] = 4);
    assert!(e.contains("unknown flags"), "{e}");
    let e = refusal(7, |c| c.splice(0..1, [5]).for_each(drop));
    assert!(
        e.contains("shares 5 bytes with a previous path of 0"),
        "{e}"
    );
    let e = refusal(9, |c| c.splice(0..2, [1, 99]).for_each(drop));
    assert!(e.contains("99 next chunks from chunk 0 of 12"), "{e}");
    let e = refusal(9, |c| c.splice(0..2, [1, 0]).for_each(drop));
    assert!(e.contains("0 next chunks"), "{e}");
    let mut huge = vec![];
    put_uv(&mut huge, 1 << 62);
    let e = refusal(9, |c| c.splice(0..1, huge).for_each(drop));
    assert!(e.contains("runs cannot fit"), "{e}");
    let e = refusal(2, |c| {
        let at = c.len() - 1;
        c[at] = 9
    });
    assert!(e.contains("unknown codec 9"), "{e}");
    let e = refusal(1, |c| c.truncate(3));
    assert!(e.contains("2 (head)"), "{e}");
}

#[test]
fn a_body_with_missing_or_extra_columns_is_refused() {
    let body = encoded(&varied());
    let cols = split_raw(&body);
    let e = decode(&join(&cols[..21])).unwrap_err().to_string();
    assert!(e.contains("ends before column 22 (xattrs)"), "{e}");
    let mut more = body.clone();
    more.push(0);
    let e = decode(&more).unwrap_err().to_string();
    assert!(e.contains("1 bytes after the last column"), "{e}");
    let mut long = vec![];
    put_uv(&mut long, 1 << 40);
    let e = decode(&long).unwrap_err().to_string();
    assert!(
        e.contains("column 1 (counts) claims 1099511627776 bytes"),
        "{e}"
    );
    for cut in 0..body.len() {
        assert!(decode(&body[..cut]).is_err(), "cut at {cut}");
    }
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    prop_oneof![
        Just(t(1_700_000_000, 0)),
        (any::<i64>(), any::<u32>()).prop_map(|(s, n)| t(s, n)),
        (1_700_000_000i64..1_700_000_100, 0u32..1_000_000_000).prop_map(|(s, n)| t(s, n)),
    ]
}

fn meta() -> impl Strategy<Value = Meta> {
    (
        (any::<u32>(), 0u32..3, prop_oneof![Just(0u32), any::<u32>()]),
        (timestamp(), timestamp(), any::<bool>(), any::<bool>()),
        (any::<u64>(), 0u32..2, any::<u32>()),
    )
        .prop_map(
            |((mode, uid, gid), (m, o, a_eq, c_eq), (ino, fs, nlink))| Meta {
                mode,
                uid,
                gid,
                atime: if a_eq { m } else { o },
                mtime: m,
                ctime: if c_eq { m } else { o },
                ino,
                fs,
                nlink,
            },
        )
}

fn kind(n_chunks: u32) -> impl Strategy<Value = EntryKind> {
    let chunk = 0..n_chunks.max(1);
    let runs =
        proptest::collection::vec((any::<u64>(), proptest::collection::vec(chunk, 1..4)), 0..3)
            .prop_map(|rs| rs.into_iter().map(|(o, c)| run(o, &c)).collect::<Vec<_>>());
    prop_oneof![
        Just(EntryKind::Directory),
        (any::<u64>(), runs).prop_map(|(size, runs)| EntryKind::File {
            size,
            runs: runs.into()
        }),
        proptest::collection::vec(any::<u8>(), 0..20)
            .prop_map(|target| EntryKind::Symlink { target }),
        any::<u32>().prop_map(|target| EntryKind::HardLink { target }),
        any::<u64>().prop_map(|rdev| EntryKind::CharDevice { rdev }),
        any::<u64>().prop_map(|rdev| EntryKind::BlockDevice { rdev }),
        Just(EntryKind::Fifo),
        Just(EntryKind::Socket),
    ]
}

fn manifest() -> impl Strategy<Value = Manifest> {
    let block = (
        any::<u32>(),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        any::<bool>(),
        any::<u8>(),
    )
        .prop_map(|(pack, offset, stored_len, raw_len, z, h)| BlockRecord {
            pack: pack % 3,
            offset,
            stored_len,
            raw_len,
            codec: if z { Codec::Zstd } else { Codec::Raw },
            hash: [h; 32],
        });
    let chunk = (any::<[u8; 16]>(), 0u32..5, any::<u32>(), any::<u32>()).prop_map(
        |(id, block, offset, len)| ChunkRecord {
            id: ChunkId(id),
            block,
            offset,
            len,
        },
    );
    (
        proptest::collection::vec(block, 0..6),
        proptest::collection::vec(chunk, 0..20),
    )
        .prop_flat_map(|(blocks, chunks)| {
            let n = chunks.len() as u32;
            let entry = (
                proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'/'), any::<u8>()], 0..12),
                kind(n),
                meta(),
                proptest::collection::vec(
                    (
                        proptest::collection::vec(any::<u8>(), 0..6),
                        proptest::collection::vec(any::<u8>(), 0..6),
                    ),
                    0..3,
                ),
            )
                .prop_map(move |(path, kind, meta, xs)| Entry {
                    path: path.into(),
                    // Chunk indexes must exist (§5.7): a run without chunks stands for none.
                    kind: if n == 0 {
                        match kind {
                            EntryKind::File { size, .. } => EntryKind::File {
                                size,
                                runs: Default::default(),
                            },
                            k => k,
                        }
                    } else {
                        kind
                    },
                    meta,
                    xattrs: xs
                        .into_iter()
                        .map(|(name, value)| Xattr { name, value })
                        .collect::<Vec<_>>()
                        .into(),
                });
            (
                Just(blocks),
                Just(chunks),
                proptest::collection::vec(entry, 0..24),
            )
        })
        .prop_map(|(blocks, chunks, entries)| {
            let mut m = varied();
            m.blocks = blocks;
            m.chunks = chunks;
            m.entries = entries.into();
            m
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn generated_manifests_round_trip(m in manifest()) {
        prop_assert_eq!(decode(&encoded(&m)).expect("decodes"), m);
    }

    #[test]
    fn damaged_bodies_are_refused_or_decoded_without_panic(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    ) {
        let mut body = encoded(&varied());
        for (at, x) in flips {
            let n = body.len();
            body[at % n] ^= x;
        }
        let _ = decode(&body);
    }
}
