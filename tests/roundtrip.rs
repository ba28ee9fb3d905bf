//! capture → extract → independent comparison, through the built binary: the fidelity contract
//! of DESIGN.md ("every file's type, content, mode, owner, ns mtime, xattrs, hard links, holes,
//! symlink targets and device numbers equal the source's").
//!
//! Needs root. One fixture is captured and extracted once per run of this file and shared by
//! the tests that only read it; tests that capture differently build their own.

use crate::common;

use common::compare::{self, Options, Snapshot, assert_no_differences, is_under, snapshot};
use common::fixture::{self, MIB, paths};
use common::{Built, counter, info_json, osimage};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The fixture, its image, and one full extraction of it.
struct Shared {
    built: Built,
    image: PathBuf,
    out: PathBuf,
    src: Snapshot,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();
    let setup = SHARED.get_or_init(|| {
        // A failed setup is reported by every test that needs it, without redoing it.
        std::panic::catch_unwind(|| {
            let built = common::build_fixture();
            common::remove_at_exit(built.dir.path());
            let image = built.path("fixture.oimg");
            common::capture(&built.root, &image, &[]);
            let out = built.empty_dir("out");
            common::extract(&image, &out, &[]).ok();
            let src = snapshot(&built.root).expect("snapshot of the fixture");
            Shared {
                built,
                image,
                out,
                src,
            }
        })
        .map_err(|e| {
            e.downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        })
    });
    match setup {
        Ok(s) => s,
        Err(msg) => panic!("the shared capture and extraction failed:\n{msg}"),
    }
}

#[test]
fn extract_restores_every_entry_exactly() {
    let s = shared();
    let dst = snapshot(&s.out).expect("snapshot of the extraction");
    let diffs = compare::compare(&s.src, &dst, Options::default());
    assert_no_differences(&diffs, "fixture vs. its capture extracted");
}

#[test]
fn extract_keeps_holes_and_turns_zero_runs_into_holes() {
    let s = shared();
    let dst = snapshot(&s.out).expect("snapshot");
    let big = &dst[paths::SPARSE_1G.as_bytes()];
    assert!(
        big.allocated < MIB,
        "1 GiB sparse file allocates {} bytes",
        big.allocated
    );
    // 8 MiB of written zeros between random data: whole zero chunks come back as a hole
    // (docs/FORMAT.md §1), so at least 6 MiB less is allocated.
    let src = &s.src[paths::ZERO_RUNS.as_bytes()];
    let got = &dst[paths::ZERO_RUNS.as_bytes()];
    assert!(
        got.allocated + 6 * MIB <= src.allocated,
        "zero runs not punched: source allocates {}, extraction {}",
        src.allocated,
        got.allocated
    );
}

#[test]
fn extract_of_chosen_paths_restores_only_those() {
    let s = shared();
    let out = s.built.empty_dir("chosen");
    // A file, a directory subtree, the third name of a hard-linked inode whose first name is
    // not selected, and a path with a non-UTF-8 name.
    let chosen: [&[u8]; 4] = [
        paths::SMALL.as_bytes(),
        b"dirs/a",
        paths::HARDLINKS[2].as_bytes(),
        b"names/caf\xe9",
    ];
    common::extract(&s.image, &out, &chosen).ok();
    let dst = snapshot(&out).expect("snapshot");
    let want = compare::restrict(&s.src, &chosen);
    let got = compare::restrict(&dst, &chosen);
    let diffs = compare::compare(&want, &got, Options { nlink: false });
    assert_no_differences(&diffs, "chosen paths");
    // Nothing else, apart from the directories leading to them.
    let stray: Vec<String> = dst
        .keys()
        .filter(|p| !chosen.iter().any(|c| is_under(p, c) || is_under(c, p)))
        .map(|p| common::sys::bstr(p))
        .collect();
    assert!(stray.is_empty(), "extracted but not chosen: {stray:?}");
}

/// The lines `list` must print for `paths`: `/` + raw path, one a line (a name holding a
/// newline spans two lines).
fn expected_listing<'a>(paths: impl Iterator<Item = &'a Vec<u8>>) -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    for p in paths {
        all.push(b'/');
        all.extend_from_slice(p);
        all.push(b'\n');
    }
    sorted_lines(&all)
}

fn sorted_lines(out: &[u8]) -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = out.split(|&c| c == b'\n').map(<[u8]>::to_vec).collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines.sort();
    lines
}

/// `list -0` gives every path exactly, odd bytes and all; plain `list` the same paths escaped
/// (issue #20 item 9), one a line even for a name holding a newline.
#[test]
fn list_shows_every_path() {
    let s = shared();
    let run = osimage(["list".as_ref(), "-0".as_ref(), s.image.as_os_str()]).ok();
    let mut exact: Vec<Vec<u8>> = run.stdout.split(|&c| c == 0).map(<[u8]>::to_vec).collect();
    assert_eq!(exact.pop(), Some(vec![]), "every name ends with NUL");
    exact.sort();
    let mut want: Vec<Vec<u8>> = s.src.keys().map(|p| [&b"/"[..], p].concat()).collect();
    want.sort();
    assert_eq!(exact, want);
    let run = osimage(["list".as_ref(), s.image.as_os_str()]).ok();
    assert_eq!(
        sorted_lines(&run.stdout).len(),
        want.len(),
        "one line per path"
    );
    assert!(!run.stdout.iter().any(|&b| b < b' ' && b != b'\n'));
}

#[test]
fn list_of_a_path_shows_what_is_below_it() {
    let s = shared();
    let run = osimage(["list".as_ref(), s.image.as_os_str(), "dirs/a".as_ref()]).ok();
    let below = s.src.keys().filter(|p| is_under(p, b"dirs/a"));
    assert_eq!(sorted_lines(&run.stdout), expected_listing(below));
}

#[test]
fn info_counters_match_the_tree() {
    let s = shared();
    let info = info_json(&s.image);
    let count = |k: char| s.src.values().filter(|n| n.kind == k).count() as u64;
    let inodes: BTreeSet<_> = s
        .src
        .values()
        .filter(|n| n.kind == '-')
        .map(|n| n.inode)
        .collect();
    let names = count('-');
    let hardlinks = names - inodes.len() as u64;
    assert_eq!(
        counter(&info, "entries"),
        s.src.len() as u64,
        "entries:\n{info:#}"
    );
    assert_eq!(
        counter(&info, "directories"),
        count('d'),
        "directories:\n{info:#}"
    );
    assert_eq!(
        counter(&info, "symlinks"),
        count('l'),
        "symlinks:\n{info:#}"
    );
    assert_eq!(
        counter(&info, "files"),
        inodes.len() as u64,
        "files:\n{info:#}"
    );
    assert_eq!(
        counter(&info, "hardlinks"),
        hardlinks,
        "hardlinks:\n{info:#}"
    );
    let specials = count('c') + count('b') + count('p') + count('s');
    assert_eq!(counter(&info, "specials"), specials, "specials:\n{info:#}");
    let mut seen = BTreeSet::new();
    let file_bytes: u64 = s
        .src
        .values()
        .filter(|n| n.kind == '-' && seen.insert(n.inode))
        .map(|n| n.size)
        .sum();
    assert_eq!(
        counter(&info, "file_bytes"),
        file_bytes,
        "file_bytes:\n{info:#}"
    );
    // Identical content is stored once: the copy, the shifted copy and the repeated block.
    let refs = counter(&info, "chunk_refs");
    let unique = counter(&info, "unique_chunks");
    assert!(unique < refs, "no dedup: {unique} unique of {refs} refs");
    let data = counter(&info, "data_bytes");
    let unique_bytes = counter(&info, "unique_bytes");
    // random-4m.bin and its copy, 3 x 1 MiB repeated: at least 4 + 2 MiB deduplicated.
    assert!(
        unique_bytes + 6 * MIB <= data,
        "dedup saved too little: {unique_bytes} unique of {data} data bytes"
    );
    assert!(
        data < file_bytes,
        "holes were read as data: {data} of {file_bytes}"
    );
    let stored = counter(&info, "stored_bytes");
    assert!(
        stored <= unique_bytes,
        "stored {stored} > unique {unique_bytes}"
    );
    assert_eq!(counter(&info, "skipped"), 0);
}

#[test]
fn capturing_twice_gives_the_same_listing_and_counters() {
    let s = shared();
    let again = s.built.path("again.oimg");
    common::capture(&s.built.root, &again, &[]);
    let list = |img: &Path, long: bool| {
        let mut args = vec!["list".as_ref(), img.as_os_str()];
        if long {
            args.push("--long".as_ref());
        }
        osimage(args).ok().stdout
    };
    assert!(
        list(&s.image, true) == list(&again, true),
        "list --long differs"
    );
    let (a, b) = (info_json(&s.image), info_json(&again));
    for key in [
        "entries",
        "files",
        "file_bytes",
        "data_bytes",
        "chunk_refs",
        "unique_chunks",
        "unique_bytes",
    ] {
        // Not stored_bytes: which chunks share a compressed block depends on thread timing.
        assert_eq!(
            counter(&a, key),
            counter(&b, key),
            "{key} differs between two captures"
        );
    }
    osimage(["verify".as_ref(), again.as_os_str()]).ok();
}

#[test]
fn verify_accepts_an_intact_image() {
    let s = shared();
    osimage(["verify".as_ref(), s.image.as_os_str()]).ok();
}

#[test]
fn exclude_leaves_out_matching_paths_only() {
    let built = common::build_fixture();
    let image = built.path("excl.oimg");
    let from = built.path("excludes.txt");
    std::fs::write(&from, "# comment\n\nnames/\n").expect("write exclude file");
    let from_arg = from.to_str().expect("utf-8 scratch path");
    let args = [
        "--exclude",
        "*.bin",
        "--exclude",
        "/dirs/a",
        "--exclude-from",
        from_arg,
    ];
    common::capture(&built.root, &image, &args);
    let out = built.empty_dir("out");
    common::extract(&image, &out, &[]).ok();

    let excluded =
        |p: &[u8]| p.ends_with(b".bin") || is_under(p, b"dirs/a") || is_under(p, b"names");
    let src = snapshot(&built.root).expect("snapshot");
    let kept: Snapshot = src.into_iter().filter(|(p, _)| !excluded(p)).collect();
    let dst = snapshot(&out).expect("snapshot");
    let diffs = compare::compare(&kept, &dst, Options::default());
    assert_no_differences(
        &diffs,
        "capture with excludes vs. the tree minus what they name",
    );
}

#[test]
fn pseudo_filesystem_dirs_are_recorded_but_empty() {
    let built = common::build_fixture();
    fixture::add_pseudo_filesystems(&built.root).expect("pseudo dirs");
    let image = built.path("pseudo.oimg");
    common::capture(&built.root, &image, &[]);
    let out = built.empty_dir("out");
    common::extract(&image, &out, &[]).ok();

    let skipped: [&[u8]; 6] = [b"proc", b"sys", b"dev", b"run", b"tmp", b"var/tmp"];
    for d in skipped {
        let p = out.join(std::str::from_utf8(d).expect("ascii"));
        assert!(
            common::is_empty_dir(&p),
            "{} missing or not empty",
            p.display()
        );
    }
    let inside = |p: &[u8]| skipped.iter().any(|d| is_under(p, d) && p != *d);
    let src = snapshot(&built.root).expect("snapshot");
    let want: Snapshot = src.into_iter().filter(|(p, _)| !inside(p)).collect();
    let dst = snapshot(&out).expect("snapshot");
    // The directories themselves keep their metadata; var/lib/kept is captured.
    let diffs = compare::compare(&want, &dst, Options::default());
    assert_no_differences(&diffs, "tree with pseudo filesystems");
    assert!(dst.contains_key(b"var/lib/kept".as_slice()));
}
