//! Stage `layout` (docs/DESIGN.md): the disks, partition tables, filesystems, swap and boot
//! set-up of a captured system, recorded in the manifest as extension `layout` v3
//! (docs/FORMAT.md §9) so a restore can recreate them.
//!
//! Sources of truth: the captured root's own `etc/fstab` (what the system needs at boot),
//! resolved to partitions by probing superblocks and partition tables ourselves (no udev);
//! sysfs for disks; `/proc/self/mountinfo` for where each filesystem's files are read from.
//!
//! - `capture_layout(root)` → `DiskLayout` (with `none` set for a plain directory);
//!   `capture_beside_output` also leaves out the filesystem a capture writes to when the
//!   system's fstab does not mount it
//! - `to_extension` / `from_manifest` → the manifest record, decoded with bounds
//! - `describe` → the readable table `osimage info` prints

mod boot;
mod btrfs;
mod codec;
mod describe;
mod devices;
mod discover;
pub mod fstab;
pub mod probe;
pub mod record;
pub mod stack;
pub mod sysfs;
pub mod table;

use std::path::PathBuf;

pub use boot::secure_boot_state;
pub use codec::{
    NAME as EXTENSION_NAME, VERSION as EXTENSION_VERSION, decode, from_manifest, to_extension,
};
pub use describe::describe;
pub use discover::{
    CapturedLayout, OutputFs, RESTORABLE_FS, Sources, capture_beside_output, capture_layout,
    capture_with, output_fs,
};
pub use record::*;

/// What can go wrong capturing or reading a layout.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the image's layout record is damaged: {0}")]
    Decode(String),
    #[error(
        "the image's layout record has version {0}; this osimage reads versions 1 to 3 (update osimage)"
    )]
    Version(u16),
}
