//! The automatic boot entry of an ISO osimage wrote, for tests that boot its rescue kernel
//! directly with parameters of their own (`osimage.new-uuids=1`, `osimage.hostname=`...) as a
//! user would add them at the GRUB menu.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::run;

/// The ISO's automatic boot entry: kernel and initramfs copied out, its command line read
/// from the ISO's grub.cfg.
pub struct Entry {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
}

pub fn auto_entry(iso: &Path, dir: &Path) -> Entry {
    let (kernel, initrd, cfg) = (
        dir.join("vmlinuz"),
        dir.join("initrd.img"),
        dir.join("grub.cfg"),
    );
    run(Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(iso)
        .args(["-extract", "/osimage/rescue/vmlinuz"])
        .arg(&kernel)
        .args(["-extract", "/osimage/rescue/initrd.img"])
        .arg(&initrd)
        .args(["-extract", "/boot/grub/grub.cfg"])
        .arg(&cfg));
    let text = std::fs::read_to_string(&cfg).unwrap_or_else(|e| panic!("{}: {e}", cfg.display()));
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("linux ") && l.contains("osimage.auto=1"))
        .unwrap_or_else(|| panic!("no automatic entry in the ISO's grub.cfg:\n{text}"));
    let cmdline = line.splitn(3, ' ').nth(2).unwrap_or("").to_string();
    assert!(cmdline.contains("osimage.id="), "{cmdline}");
    Entry {
        kernel,
        initrd,
        cmdline,
    }
}
