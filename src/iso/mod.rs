//! ISO 9660 + Rock Ridge + Joliet + El Torito writer (hybrid MBR/GPT) and a small reader.
//!
//! Last stage of `capture`: the payload packs, the manifest and the rescue boot files become
//! one standard ISO image (ECMA-119, SUSP 1.12 / RRIP 1.10, Joliet, El Torito 1.0) that boots
//! from CD and, written with `dd`, from a USB stick in BIOS and UEFI mode. The reader lets
//! `verify`, `list`, `info` and `extract` read packs in place inside the ISO.
//! Layout and design choices are documented in `docs/ISO.md`.

mod boot;
mod el_torito;
mod hybrid;
mod joliet;
mod layout;
mod reader;
mod records;
mod rock_ridge;
mod signed;
mod tree;
mod writer;

use std::path::PathBuf;

pub use boot::{
    BIOS_IMAGE, DISK_INFO, EFI_IMAGE, GRUB_CFG, GrubBoot, PendingGrub, build_grub_boot,
    has_grub_files, start_grub_boot,
};
pub use reader::{IsoDir, IsoDirEntry, IsoEntryKind, IsoReader};
pub use signed::{SignedChain, find_signed_chain, pe_signature_len};
pub use writer::write_iso;

/// Everything that goes into one ISO image.
#[derive(Debug, Clone, Default)]
pub struct IsoSpec {
    /// Volume label: at most 32 d-characters (`A-Z`, `0-9`, `_`).
    pub volume_id: String,
    /// Files in the order their data is written; parent directories are implied.
    pub files: Vec<IsoFile>,
    /// El Torito boot images (paths of files in `files`), if the image boots.
    pub boot: Option<BootImages>,
    /// Write a protective MBR + GPT (ESP partition) so the image boots when `dd`'d to a disk.
    pub hybrid: bool,
}

/// One entry of the image: a file, a symlink or an (otherwise implied) directory.
#[derive(Debug, Clone)]
pub struct IsoFile {
    /// `/`-separated path inside the image, e.g. `osimage/packs/pack-000000.opk`.
    pub path: String,
    /// Where the content comes from.
    pub source: IsoSource,
    /// Permission bits (`0o644`); the file type comes from `source`.
    pub mode: u32,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: i64,
}

/// Where an [`IsoFile`]'s content comes from.
#[derive(Debug, Clone)]
pub enum IsoSource {
    /// A regular file on the host, streamed when the image is written (must not change size).
    Path(PathBuf),
    /// Small content held by the caller (README, config files).
    Bytes(Vec<u8>),
    /// A symbolic link with this target (Rock Ridge `SL`).
    Symlink(String),
    /// A directory; only needed for empty directories or to set a directory's mode/mtime.
    Dir,
    /// Bytes the caller already wrote into the output file, `len` bytes at `offset` (a
    /// multiple of 2048, at or after [`PLACED_START`]): the writer builds the image around
    /// them and leaves them as they are. The payload packs go straight into the ISO this way,
    /// instead of into a file of their own that would then be copied (docs/ISO.md, "Layout").
    Placed { offset: u64, len: u64 },
}

/// Where bytes placed by the caller (`IsoSource::Placed`) may begin: after the system area and
/// every volume descriptor, on a 4 KiB boundary (64 KiB, sector 32).
pub const PLACED_START: u64 = 32 * records::SECTOR as u64;

/// El Torito boot images: entry 1 BIOS, entry 2 UEFI (docs/DESIGN.md).
#[derive(Debug, Clone, Default)]
pub struct BootImages {
    /// ISO path of the no-emulation BIOS boot image (gets a boot info table).
    pub bios: Option<String>,
    /// ISO path of the FAT image of the EFI system partition.
    pub efi: Option<String>,
    /// GRUB `boot_hybrid.img` (first 432..512 bytes used) for the hybrid MBR. When set, the
    /// MBR gets the BIOS image's 512-byte block + 4 at 0x1b0 and the BIOS image gets its own
    /// block + 5 at byte 2548 (xorriso's `--grub2-mbr` + `--grub2-boot-info`).
    pub mbr: Option<Vec<u8>>,
}

/// Where a file's data lies inside the ISO file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsoExtent {
    /// Bytes from the start of the ISO file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
}

/// What [`write_iso`] produced.
#[derive(Debug, Clone)]
pub struct IsoSummary {
    /// Size of the image in bytes.
    pub size: u64,
    /// Bytes of file content written (excluding padding and metadata).
    pub data_bytes: u64,
    /// Number of files, directories and symlinks in the image (root excluded).
    pub entries: usize,
}

/// Size limit of one extent (ECMA-119 9.1.4: a 32-bit data length); larger files are refused.
pub const MAX_FILE_SIZE: u64 = 4 * 1024 * 1024 * 1024 - 2048;

/// Errors of the ISO writer, reader and boot image builder.
#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not an ISO 9660 image (no CD001 at sector 16): {}", .0.display())]
    NotIso(PathBuf),
    #[error("corrupt ISO image {}: {what}", path.display())]
    Corrupt { path: PathBuf, what: String },
    #[error("invalid volume id {0:?}: at most 32 characters A-Z 0-9 _")]
    VolumeId(String),
    #[error("invalid path in ISO spec {path:?}: {why}")]
    BadPath { path: String, why: &'static str },
    #[error("duplicate path in ISO spec: {0}")]
    Duplicate(String),
    #[error(
        "file too large for ISO 9660 single extent ({} ≥ 4 GiB): {path}",
        human(*.size)
    )]
    TooLarge { path: String, size: u64 },
    #[error("file changed while writing the ISO (expected {expected} bytes): {}", path.display())]
    Changed { path: PathBuf, expected: u64 },
    #[error("boot image {path}: {why}")]
    BootImage { path: String, why: String },
    #[error("{what} missing in {}: install {package}", dir.display())]
    MissingBootFiles {
        what: &'static str,
        dir: PathBuf,
        package: &'static str,
    },
    #[error("{tool} failed: {detail}")]
    Tool { tool: String, detail: String },
    #[error("{path} in {}: {why}", iso.display())]
    Lookup {
        iso: PathBuf,
        path: String,
        why: &'static str,
    },
}

fn human(bytes: u64) -> String {
    const GIB: u64 = 1 << 30;
    if bytes >= GIB {
        format!("{:.1} GiB", bytes as f64 / GIB as f64)
    } else {
        format!("{bytes} bytes")
    }
}

impl IsoError {
    pub(crate) fn io(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        IsoError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

#[cfg(test)]
mod tests;
