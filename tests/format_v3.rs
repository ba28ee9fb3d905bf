//! Images of manifest version 3 (32-byte chunk ids, before version 4's 16-byte ones:
//! docs/FORMAT.md §8) stay readable: `tests/fixtures/format-v3/plain.oimg` was made by the
//! osimage of commit 186c062 (manifest version 3) from the tree `format_v1::v1_tree` builds,
//! with `osimage capture DIR -o plain.oimg -q` (the tree written as tests/format_v1.rs says).
//! This build lists, verifies and extracts it (every chunk checked against the first 16 bytes
//! of the ids it holds), and refreshes from it: the base's ids, cut to 16 bytes when read,
//! match the chunks of the same files, so every block is copied and none compressed again.

use crate::common;
use crate::format_v1::{extracts_to_the_tree, format_of, v1_tree};

use std::path::{Path, PathBuf};

use common::osimage;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-v3/plain.oimg")
}

#[test]
fn version_3_images_are_listed_verified_and_extracted() {
    let image = fixture();
    assert_eq!(format_of(&image, &[]), 3);
    osimage(["verify".as_ref(), image.as_os_str()])
        .ok()
        .mentions(b"13 chunks");
    osimage(["list".as_ref(), image.as_os_str()])
        .ok()
        .mentions(b"etc/deep/er/small.bin");
    extracts_to_the_tree(&image, &[], "the version-3 image");
}

#[test]
fn a_refresh_from_a_version_3_base_reuses_every_chunk_by_its_16_byte_id() {
    let dir = common::scratch();
    let (tree, new) = (dir.path().join("tree"), dir.path().join("new.oimg"));
    std::fs::create_dir(&tree).unwrap();
    v1_tree(&tree);
    let base = fixture();
    common::capture(&tree, &new, &["--verify", "--base", base.to_str().unwrap()]).ok();
    assert_eq!(
        format_of(&new, &[]),
        osimage::format::manifest::MANIFEST_VERSION as u64
    );
    assert_eq!(osimage::format::manifest::MANIFEST_VERSION, 4);
    let info = common::info_json(&new);
    // Another tree (other inodes): every file is read, and each of its chunks is found in the
    // base by the first 16 bytes of the base's 32-byte ids: all four blocks are copied.
    assert_eq!(
        info["lineage"]["blocks_copied"].as_u64(),
        Some(4),
        "{info:#}"
    );
    assert_eq!(info["lineage"]["chunks_new"].as_u64(), Some(0), "{info:#}");
    extracts_to_the_tree(&new, &[], "the refresh");
    // `diff` compares the chunk ids of a version-3 and a version-4 manifest: no file's
    // content changed.
    let out = osimage(["diff".as_ref(), base.as_os_str(), new.as_os_str()])
        .ok()
        .stdout_str();
    assert!(out.contains("0 added, 0 removed, 0 changed"), "{out}");
}
