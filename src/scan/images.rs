//! osimage images are never captured into another image (issue #24, item 1): a refresh would
//! otherwise carry a full copy of the previous image, and its secrets, in every new one. An
//! image is recognised by its first bytes, cheaply, whatever its name:
//!
//! - a `.oimg` file starts with the image header's magic `OSIMAGE\0` (FORMAT.md §6.1);
//! - an ISO written by osimage has an ISO 9660 volume descriptor (`CD001`) at sector 16 whose
//!   application identifier is `OSIMAGE` (docs/ISO.md "Layout": the writer stamps it), or, at
//!   sector 32, the first payload pack placed there (magic `OSIMPACK`, FORMAT.md §3; docs/ISO.md
//!   "Placed bytes").
//!
//! Only regular files of at least `MIN_SIZE` bytes are opened, and at most 2 KiB is read.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

use rustix::fs::{Mode, OFlags, Stat};

use crate::format::records::is_image_header;

/// Smaller files are not looked at: no image is smaller (FORMAT.md §6.1: the header, the
/// manifest frame's own header and the trailer are 64 bytes each; an empty tree's image is
/// 435 bytes).
pub const MIN_SIZE: u64 = 192;
/// ECMA-119 6.2.1: the first volume descriptor is at sector 16 of 2048 bytes.
const VD_OFFSET: u64 = 16 * 2048;
/// ECMA-119 8.4.22: the application identifier, bytes 574..702 of the descriptor.
const APP_ID: std::ops::Range<usize> = 574..702;
/// docs/ISO.md "Placed bytes": the first payload pack starts at sector 32.
const PLACED_OFFSET: u64 = 32 * 2048;

/// What kind of osimage image a file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageKind {
    Oimg,
    Iso,
}

impl ImageKind {
    /// Why the walk leaves it out, for the capture's report.
    pub fn reason(self) -> &'static str {
        match self {
            ImageKind::Oimg => "an osimage image (.oimg): never captured into another image",
            ImageKind::Iso => "an osimage ISO: never captured into another image",
        }
    }
}

/// Whether the regular file `name` in `dir`, with `lstat` `st`, is an osimage image.
pub fn image_kind(dir: impl AsFd, name: &[u8], st: &Stat) -> Option<ImageKind> {
    let size = st.st_size as u64;
    if size < MIN_SIZE {
        return None;
    }
    // O_NOATIME: looking must not change the atime the capture records (EPERM when we are
    // neither root nor the owner; then open without it).
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let dir = dir.as_fd();
    let fd = rustix::fs::openat(dir, name, flags | OFlags::NOATIME, Mode::empty())
        .or_else(|_| rustix::fs::openat(dir, name, flags, Mode::empty()))
        .ok()?;
    kind_of(&File::from(fd), size)
}

/// The check itself, on an open file of `size` bytes.
fn kind_of(f: &File, size: u64) -> Option<ImageKind> {
    let mut head = [0u8; 8];
    f.read_exact_at(&mut head, 0).ok()?;
    if is_image_header(&head) {
        return Some(ImageKind::Oimg);
    }
    if size < VD_OFFSET + 2048 {
        return None;
    }
    let mut vd = [0u8; 2048];
    f.read_exact_at(&mut vd, VD_OFFSET).ok()?;
    if &vd[1..6] != b"CD001" {
        return None;
    }
    let app = &vd[APP_ID];
    if app.starts_with(b"OSIMAGE") && app[7..].iter().all(|&b| b == b' ') {
        return Some(ImageKind::Iso);
    }
    let mut pack = [0u8; 8];
    let placed = f.read_exact_at(&mut pack, PLACED_OFFSET).is_ok() && &pack == b"OSIMPACK";
    placed.then_some(ImageKind::Iso)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::AtFlags;

    fn check(bytes: &[u8]) -> Option<ImageKind> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), bytes).unwrap();
        let d = File::open(dir.path()).unwrap();
        let st = rustix::fs::statat(&d, "f", AtFlags::SYMLINK_NOFOLLOW).unwrap();
        image_kind(&d, b"f", &st)
    }

    #[test]
    fn oimg_header_is_recognised() {
        let mut data = vec![0u8; MIN_SIZE as usize];
        data[..8].copy_from_slice(b"OSIMAGE\0");
        assert_eq!(check(&data), Some(ImageKind::Oimg));
        // Too small to be an image.
        assert_eq!(check(&data[..64]), None);
        data[7] = b'X';
        assert_eq!(check(&data), None);
    }

    #[test]
    fn osimage_iso_is_recognised_by_its_descriptor_or_placed_pack() {
        let mut data = vec![0u8; 70 * 1024];
        let vd = VD_OFFSET as usize;
        data[vd] = 1;
        data[vd + 1..vd + 6].copy_from_slice(b"CD001");
        data[vd + APP_ID.start..vd + APP_ID.end].fill(b' ');
        assert_eq!(check(&data), None, "another program's ISO");
        data[PLACED_OFFSET as usize..][..8].copy_from_slice(b"OSIMPACK");
        assert_eq!(check(&data), Some(ImageKind::Iso));
        data[PLACED_OFFSET as usize..][..8].fill(0);
        data[vd + APP_ID.start..][..7].copy_from_slice(b"OSIMAGE");
        assert_eq!(check(&data), Some(ImageKind::Iso));
        data[vd + 1] = b'X';
        assert_eq!(check(&data), None, "no ISO without CD001");
    }
}
