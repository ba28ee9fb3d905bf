//! Writer → reader round trips, and the reader on truncated and corrupted images.

use std::os::unix::fs::FileExt;
use std::path::Path;

use super::*;

fn file(path: &str, source: IsoSource, mode: u32) -> IsoFile {
    IsoFile {
        path: path.to_string(),
        source,
        mode,
        mtime: 1_700_000_000,
    }
}

fn sample_spec() -> IsoSpec {
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    IsoSpec {
        volume_id: "OSIMAGE_TEST".into(),
        files: vec![
            file("README.TXT", IsoSource::Bytes(b"hello\n".to_vec()), 0o644),
            file(
                "osimage/packs/pack-000000.opk",
                IsoSource::Bytes(big),
                0o644,
            ),
            file(
                &format!("long/{}", "é".repeat(120)),
                IsoSource::Bytes(b"L".to_vec()),
                0o600,
            ),
            file(
                "a/b/c/d/e/f/g/h/i/deep.txt",
                IsoSource::Bytes(b"deep".to_vec()),
                0o644,
            ),
            file(
                "link",
                IsoSource::Symlink("/osimage/packs/../packs".into()),
                0o777,
            ),
            file("empty", IsoSource::Bytes(Vec::new()), 0o644),
            file("emptydir", IsoSource::Dir, 0o700),
        ],
        boot: None,
        hybrid: true,
    }
}

fn write_sample(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("t.iso");
    write_iso(&sample_spec(), &out).expect("writes");
    out
}

fn read_extent(iso: &Path, e: IsoExtent) -> Vec<u8> {
    let f = std::fs::File::open(iso).expect("open");
    let mut b = vec![0u8; e.len as usize];
    f.read_exact_at(&mut b, e.offset).expect("read");
    b
}

#[test]
fn reader_gets_back_what_the_writer_wrote() {
    let dir = tempfile::tempdir().expect("tempdir");
    let iso = write_sample(dir.path());
    let r = IsoReader::open(&iso).expect("opens");
    assert_eq!(r.volume_id(), "OSIMAGE_TEST");
    assert!(r.has_rock_ridge());
    assert_eq!(r.len() % 2048, 0);
    let spec = sample_spec();
    for f in &spec.files {
        if let IsoSource::Bytes(b) = &f.source {
            let e = r.lookup(&f.path).expect("lookup").expect("exists");
            assert_eq!(e.len as usize, b.len(), "{}", f.path);
            assert_eq!(&read_extent(&iso, e), b, "{}", f.path);
        }
    }
    let mut names: Vec<String> = r
        .read_dir("/")
        .expect("root")
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "README.TXT",
            "a",
            "empty",
            "emptydir",
            "link",
            "long",
            "osimage"
        ]
    );
    let link = r.entry("link").expect("ok").expect("exists");
    assert_eq!(link.kind, IsoEntryKind::Symlink);
    assert_eq!(link.symlink.as_deref(), Some("/osimage/packs/../packs"));
    let d = r.entry("emptydir").expect("ok").expect("exists");
    assert_eq!((d.kind, d.mode), (IsoEntryKind::Dir, Some(0o040_700)));
    assert_eq!(d.mtime, 1_700_000_000);
    assert!(r.lookup("nope/x").expect("ok").is_none());
    assert!(r.lookup("README.TXT/x").expect("ok").is_none());
    assert!(
        r.lookup("osimage").is_err(),
        "a directory has no file extent"
    );
    assert!(r.read_dir("README.TXT").is_err());
}

/// Writes `bytes` at `offset` of a fresh `out`, as a caller placing them would.
fn prewrite(out: &Path, offset: u64, bytes: &[u8]) {
    let f = std::fs::File::create(out).expect("create");
    f.write_all_at(bytes, offset).expect("prewrite");
}

#[test]
fn placed_bytes_stay_and_the_image_is_built_around_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("p.iso");
    let a: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let b: Vec<u8> = (0..5_000u32).map(|i| (i % 7) as u8 + 1).collect();
    let b_at = (PLACED_START + a.len() as u64).next_multiple_of(4096);
    prewrite(&out, PLACED_START, &a);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&out)
        .and_then(|f| f.write_all_at(&b, b_at))
        .expect("second");
    let mut spec = sample_spec();
    spec.files.push(file(
        "osimage/packs/pack-000009.osp",
        IsoSource::Placed {
            offset: b_at,
            len: b.len() as u64,
        },
        0o444,
    ));
    spec.files.insert(
        0,
        file(
            "osimage/packs/pack-000008.osp",
            IsoSource::Placed {
                offset: PLACED_START,
                len: a.len() as u64,
            },
            0o444,
        ),
    );
    let summary = write_iso(&spec, &out).expect("writes");
    assert_eq!(std::fs::metadata(&out).expect("stat").len(), summary.size);
    let r = IsoReader::open(&out).expect("opens");
    let ea = r
        .lookup("osimage/packs/pack-000008.osp")
        .expect("ok")
        .expect("a");
    assert_eq!((ea.offset, ea.len), (PLACED_START, a.len() as u64));
    assert_eq!(read_extent(&out, ea), a);
    let eb = r
        .lookup("osimage/packs/pack-000009.osp")
        .expect("ok")
        .expect("b");
    assert_eq!((eb.offset, eb.len), (b_at, b.len() as u64));
    assert_eq!(read_extent(&out, eb), b);
    for f in &spec.files {
        if let IsoSource::Bytes(bytes) = &f.source {
            let e = r.lookup(&f.path).expect("lookup").expect("exists");
            assert_eq!(&read_extent(&out, e), bytes, "{}", f.path);
            assert!(
                bytes.is_empty() || e.offset >= eb.offset + eb.len,
                "{} after the placed bytes",
                f.path
            );
        }
    }
    // Between the volume descriptors (16-19) and the placed bytes: zeros.
    let whole = std::fs::read(&out).expect("read");
    assert!(
        whole[20 * 2048..PLACED_START as usize]
            .iter()
            .all(|&x| x == 0)
    );
}

#[test]
fn placed_bytes_out_of_place_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("bad.iso");
    for (offset, why) in [
        (
            PLACED_START + 100,
            "placed bytes do not start on a 2048-byte sector",
        ),
        (
            16 * 2048,
            "placed bytes overlap the volume descriptors or other placed bytes",
        ),
    ] {
        let mut spec = sample_spec();
        spec.files.push(file(
            "osimage/x",
            IsoSource::Placed { offset, len: 10 },
            0o444,
        ));
        let e = write_iso(&spec, &out).expect_err("refused");
        assert_eq!(
            e.to_string(),
            format!("invalid path in ISO spec \"osimage/x\": {why}"),
            "offset {offset}"
        );
    }
}

#[test]
fn too_large_file_is_refused_with_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(5 << 30))
        .expect("sparse file");
    let spec = IsoSpec {
        volume_id: "X".into(),
        files: vec![file(
            "osimage/packs/pack-000001.opk",
            IsoSource::Path(big),
            0o644,
        )],
        ..Default::default()
    };
    let e = write_iso(&spec, &dir.path().join("o.iso")).expect_err("refused");
    assert_eq!(
        e.to_string(),
        "file too large for ISO 9660 single extent (5.0 GiB ≥ 4 GiB): osimage/packs/pack-000001.opk"
    );
}

#[test]
fn not_an_iso_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("x.iso");
    std::fs::write(&p, vec![0u8; 40_000]).expect("write");
    let e = IsoReader::open(&p).expect_err("not iso");
    assert!(
        e.to_string()
            .starts_with("not an ISO 9660 image (no CD001 at sector 16)"),
        "{e}"
    );
    std::fs::write(&p, b"short").expect("write");
    assert!(IsoReader::open(&p).is_err());
}

/// Lists every directory reachable from the root, bounded, ignoring errors.
fn walk(r: &IsoReader, path: &str, depth: usize, seen: &mut usize) {
    if depth > 12 || *seen > 10_000 {
        return;
    }
    let Ok(entries) = r.read_dir(path) else {
        return;
    };
    for e in entries {
        *seen += 1;
        let child = format!("{path}/{}", e.name);
        let _ = r.lookup(&child);
        if e.kind == IsoEntryKind::Dir {
            walk(r, &child, depth + 1, seen);
        }
    }
}

#[test]
fn truncated_images_give_errors_not_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let iso = write_sample(dir.path());
    let full = std::fs::read(&iso).expect("read");
    let cut = dir.path().join("cut.iso");
    for len in [
        0,
        512,
        16 * 2048,
        17 * 2048 + 100,
        30 * 2048,
        full.len() / 2,
        full.len() - 1,
    ] {
        std::fs::write(&cut, &full[..len]).expect("write");
        let opened = IsoReader::open(&cut);
        if len <= 17 * 2048 + 100 {
            // Cut inside the volume descriptors or before the root directory: refused at
            // open, naming the file and what is wrong.
            let e = opened.err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("cut.iso"), "len {len}: {e:?}");
            assert!(
                e.contains("no CD001 at sector 16") || e.contains("lie past the end"),
                "len {len}: {e:?}"
            );
        } else if let Ok(r) = opened {
            // Cut later: what is still there reads, what is gone is an error, never a panic.
            let mut seen = 0;
            walk(&r, "", 0, &mut seen);
            let _ = r.boot_entries();
        }
    }
}

#[test]
fn corrupted_images_give_errors_not_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let iso = write_sample(dir.path());
    let full = std::fs::read(&iso).expect("read");
    let meta_end = 60 * 2048; // volume descriptors, path tables, directories, CE area
    let bad = dir.path().join("bad.iso");
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for _ in 0..300 {
        let mut img = full.clone();
        for _ in 0..1 + next() % 16 {
            let at = 16 * 2048 + (next() as usize) % (meta_end - 16 * 2048);
            img[at] = next() as u8;
        }
        std::fs::write(&bad, &img).expect("write");
        if let Ok(r) = IsoReader::open(&bad) {
            let mut seen = 0;
            walk(&r, "", 0, &mut seen);
        }
    }
}

#[test]
fn reader_falls_back_to_joliet_names_without_rock_ridge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let iso = write_sample(dir.path());
    let mut img = std::fs::read(&iso).expect("read");
    let sp = img
        .windows(7)
        .position(|w| w == [b'S', b'P', 7, 1, 0xBE, 0xEF, 0])
        .expect("SP entry");
    img[sp..sp + 2].copy_from_slice(b"XX");
    std::fs::write(&iso, &img).expect("write");
    let r = IsoReader::open(&iso).expect("opens");
    assert!(!r.has_rock_ridge());
    let e = r.lookup("osimage/packs/pack-000000.opk").expect("ok");
    assert_eq!(e.map(|e| e.len), Some(300_000));
    let names: Vec<String> = r
        .read_dir("")
        .expect("root")
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert!(names.contains(&"README.TXT".to_string()), "{names:?}");
}
