//! Images of format version 1 (before per-block hashes, docs/FORMAT.md §8) stay readable:
//! `tests/fixtures/format-v1/` holds two made by the version-1 osimage (commit f45f634) from
//! the tree `v1_tree` builds, one plain and one encrypted with the passphrase in
//! `passphrase`. This build lists, verifies and extracts them, and refreshes from the plain
//! one (its blocks are read and hashed, as a version-1 manifest has no block hashes), writing
//! a version-2 image that verifies and extracts the same.
//!
//! The fixtures were made with `OSIMAGE_V1_TREE=DIR cargo test --test integration --
//! --ignored format_v1::write_the_v1_tree` and `osimage capture DIR -o plain.oimg -q` (and
//! `--encrypt --passphrase-file passphrase` for `sealed.oimg`).

use crate::common;

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use common::osimage;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/format-v1")
        .join(name)
}

/// xorshift64: incompressible but reproducible bytes.
fn noise(len: usize, state: u64) -> Vec<u8> {
    common::fixture::xorshift(state, len)
}

/// The tree the fixtures were captured from: small and large, compressible and not, a
/// symlink, an empty file, a nested folder; fixed modes and times.
pub(crate) fn v1_tree(root: &Path) {
    let d = root.join("etc/deep/er");
    std::fs::create_dir_all(&d).unwrap();
    let text: Vec<u8> = (0..400_000u32)
        .flat_map(|i| format!("line {i} of a compressible file\n").into_bytes())
        .take(700_000)
        .collect();
    let files: [(&str, Vec<u8>); 5] = [
        ("hello.txt", b"hello from format version 1\n".to_vec()),
        ("etc/text.log", text),
        ("etc/noise.bin", noise(300_000, 0x9e37_79b9_7f4a_7c15)),
        ("etc/deep/er/small.bin", noise(5_000, 7)),
        ("etc/deep/empty", Vec::new()),
    ];
    for (path, bytes) in &files {
        let p = root.join(path);
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
    }
    symlink("../hello.txt", root.join("etc/hello-link")).unwrap();
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_750_000_000);
    for path in FILES {
        std::fs::File::options()
            .write(true)
            .open(root.join(path))
            .and_then(|f| f.set_modified(when))
            .unwrap();
    }
}

/// The regular files of `v1_tree`.
const FILES: [&str; 5] = [
    "hello.txt",
    "etc/text.log",
    "etc/noise.bin",
    "etc/deep/er/small.bin",
    "etc/deep/empty",
];

/// Not a test: writes the tree for making the fixtures (see the top of this file).
#[test]
#[ignore]
fn write_the_v1_tree() {
    let dir = PathBuf::from(std::env::var("OSIMAGE_V1_TREE").expect("OSIMAGE_V1_TREE=DIR"));
    v1_tree(&dir);
}

/// Extracts `image` (with `extra` arguments) and checks every file's bytes, mode and mtime,
/// and the symlink, against a fresh `v1_tree`.
pub(crate) fn extracts_to_the_tree(image: &Path, extra: &[&str], what: &str) {
    use std::os::unix::fs::MetadataExt;
    let dir = common::scratch();
    let (tree, out) = (dir.path().join("tree"), dir.path().join("out"));
    std::fs::create_dir(&tree).unwrap();
    v1_tree(&tree);
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "extract".as_ref(),
        image.as_os_str(),
        "-C".as_ref(),
        out.as_os_str(),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    osimage(args).ok();
    for f in FILES {
        let (a, b) = (tree.join(f), out.join(f));
        let (ma, mb) = (a.metadata().unwrap(), b.metadata().unwrap());
        assert_eq!(
            std::fs::read(&a).unwrap(),
            std::fs::read(&b).unwrap(),
            "{what}: {f}"
        );
        assert_eq!(ma.mode(), mb.mode(), "{what}: mode of {f}");
        assert_eq!(ma.mtime(), mb.mtime(), "{what}: mtime of {f}");
    }
    assert_eq!(
        std::fs::read_link(out.join("etc/hello-link")).unwrap(),
        Path::new("../hello.txt"),
        "{what}: the symlink"
    );
}

/// `osimage info --json IMAGE`'s format version.
pub(crate) fn format_of(image: &Path, extra: &[&str]) -> u64 {
    let mut args: Vec<&std::ffi::OsStr> = vec!["info".as_ref(), "--json".as_ref()];
    args.push(image.as_os_str());
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    let v: serde_json::Value = serde_json::from_str(&osimage(args).ok().stdout_str()).unwrap();
    v["format_version"].as_u64().expect("format_version")
}

#[test]
fn version_1_images_are_listed_verified_and_extracted() {
    let pw = fixture("passphrase");
    let sealed = ["--passphrase-file", pw.to_str().unwrap()];
    for (name, extra) in [("plain.oimg", &[][..]), ("sealed.oimg", &sealed[..])] {
        let image = fixture(name);
        assert_eq!(format_of(&image, extra), 1, "{name}");
        let mut args: Vec<&std::ffi::OsStr> = vec!["verify".as_ref(), image.as_os_str()];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        osimage(args).ok().mentions(b"OK");
        let mut args: Vec<&std::ffi::OsStr> = vec!["list".as_ref(), image.as_os_str()];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        osimage(args).ok().mentions(b"etc/deep/er/small.bin");
        extracts_to_the_tree(&image, extra, name);
    }
}

#[test]
fn a_refresh_from_a_version_1_base_writes_an_image_of_the_current_version() {
    let dir = common::scratch();
    let (tree, new) = (dir.path().join("tree"), dir.path().join("new.oimg"));
    std::fs::create_dir(&tree).unwrap();
    v1_tree(&tree);
    let base = fixture("plain.oimg");
    // A version-1 base has no block hashes: its blocks are read, and hashed here.
    {
        use osimage::BaseImage;
        let b = osimage::Base::open(&base, &Default::default()).unwrap();
        let run = b.stored_run(&[0]).unwrap();
        assert!(run.source.is_some());
        assert_eq!(run.hashes, [*blake3::hash(&run.bytes).as_bytes()]);
    }
    common::capture(&tree, &new, &["--verify", "--base", base.to_str().unwrap()]).ok();
    // `info`'s format version is the manifest's (FORMAT.md §8: version 4 since issue #23).
    assert_eq!(
        format_of(&new, &[]),
        osimage::format::manifest::MANIFEST_VERSION as u64
    );
    let info = common::info_json(&new);
    // The files are new to the base's cache (another tree, other inodes), but every chunk
    // is found in its blocks: all four are copied, none compressed again.
    assert_eq!(
        info["lineage"]["blocks_copied"].as_u64(),
        Some(4),
        "{info:#}"
    );
    assert_eq!(info["lineage"]["chunks_new"].as_u64(), Some(0), "{info:#}");
    osimage(["verify".as_ref(), new.as_os_str()])
        .ok()
        .mentions(b"OK");
    extracts_to_the_tree(&new, &[], "the refresh");
}
