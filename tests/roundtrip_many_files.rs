//! Streaming, bounded resources (STYLE.md rule 11): capture and extract of a tree with many more
//! files than the open-file limit. Found by bench/memory.sh, where a 150k-file capture failed
//! with "Too many open files" because every file's descriptor stayed open until the end.

use crate::common;

use common::compare::{Options, assert_no_differences, diff_trees};
use std::ffi::OsStr;

/// Soft RLIMIT_NOFILE for the child: the common default (systemd, login shells); the tree has
/// five times as many files.
const NOFILE: u64 = 1024;
const FILES: usize = 5000;

#[test]
fn capture_and_extract_do_not_hold_a_descriptor_per_file() {
    let dir = common::scratch();
    let root = dir.path().join("src");
    for i in 0..FILES {
        let d = root.join(format!("d{:02}", i / 100));
        if i % 100 == 0 {
            std::fs::create_dir_all(&d).expect("mkdir");
        }
        let body = common::fixture::text(i as u64, 100 + i % 3000);
        std::fs::write(d.join(format!("f{i:04}")), body).expect("write");
    }
    let image = dir.path().join("many.oimg");
    let capture = [
        OsStr::new("capture"),
        root.as_os_str(),
        OsStr::new("-o"),
        image.as_os_str(),
    ];
    common::osimage_nofile(NOFILE, capture).ok();
    let out = dir.path().join("out");
    let extract = [
        OsStr::new("extract"),
        image.as_os_str(),
        OsStr::new("-C"),
        out.as_os_str(),
    ];
    common::osimage_nofile(NOFILE, extract).ok();
    common::osimage_nofile(NOFILE, [OsStr::new("verify"), image.as_os_str()]).ok();
    let diffs = diff_trees(&root, &out, Options::default());
    assert_no_differences(&diffs, "many files under a low open-file limit");
}
