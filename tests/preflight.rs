//! Issue #24 item 7: a capture checks every program and file it needs before it reads
//! anything, and names all that are missing in one message with their Debian packages
//! (`rescue/host-tools.list`), instead of failing once per missing tool.

use crate::common;

use std::ffi::OsStr;
use std::path::Path;

/// `osimage capture SRC -o OUTPUT EXTRA...` of a one-file tree under `dir`, with `PATH` set to
/// an empty directory: no external program can be found.
fn capture_with_empty_path(dir: &Path, output: &Path, extra: &[&str]) -> common::Run {
    let root = dir.join("src");
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    std::fs::write(root.join("etc/hostname"), b"bare\n").expect("write");
    let empty = dir.join("empty-path");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let mut args = vec![
        OsStr::new("capture"),
        root.as_os_str(),
        OsStr::new("-o"),
        output.as_os_str(),
    ];
    args.extend(extra.iter().map(OsStr::new));
    common::osimage_env(args, &[("PATH", empty.to_str().expect("utf-8 path"))])
}

/// An ISO capture with an empty `PATH`: GRUB's grub-mkimage, dosfstools' mkfs.vfat and
/// mtools' mmd and mcopy are all named in one error, exit 1, and nothing is written next to
/// the output, not even a temporary file.
#[test]
fn an_iso_capture_names_every_missing_host_tool_at_once() {
    let dir = common::scratch();
    let out_dir = dir.path().join("out");
    std::fs::create_dir_all(&out_dir).expect("mkdir");
    let iso = out_dir.join("bare.iso");
    let run = capture_with_empty_path(dir.path(), &iso, &[]).fails();
    for named in [
        "grub-mkimage (Debian package grub-common)",
        "mkfs.vfat (Debian package dosfstools)",
        "mmd (Debian package mtools)",
        "mcopy (Debian package mtools)",
        "apt-get install ",
    ] {
        assert!(run.stderr.contains(named), "{named}: {}", run.describe());
    }
    assert_eq!(
        run.stderr.matches("osimage: ").count(),
        1,
        "one error: {}",
        run.describe()
    );
    let left: Vec<_> = std::fs::read_dir(&out_dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "written before the check: {left:?}");
}

/// The same capture into a `.oimg` needs none of those tools.
#[test]
fn an_oimg_capture_needs_no_boot_tools() {
    let dir = common::scratch();
    let image = dir.path().join("bare.oimg");
    capture_with_empty_path(dir.path(), &image, &["-q"]).ok();
    assert!(image.is_file());
}
