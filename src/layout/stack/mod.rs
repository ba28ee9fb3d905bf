//! The block stack under a filesystem (issue #19): LVM physical volumes and their volume
//! group's metadata, LUKS headers and MD RAID superblocks, read from the devices themselves
//! (no lvm, cryptsetup or mdadm needed at capture, so an offline image reads as well).
//!
//! Each reader takes the open block device and returns plain facts; `discover` turns them
//! into the layout record's `stack` (docs/FORMAT.md §9).

pub mod capture;
pub mod luks;
pub mod lvm;
pub mod md;
pub mod show;

/// What can go wrong reading a stack member's header or metadata.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("read {what} at byte {offset}: {source}")]
    Io {
        what: &'static str,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Bad(String),
}

/// Reads `len` bytes at `offset` of a member device, which the caller has checked lie inside
/// it (the LUKS and MD readers share it).
pub(crate) fn read_block(
    dev: &std::fs::File,
    offset: u64,
    len: usize,
    what: &'static str,
) -> Result<Vec<u8>, StackError> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    dev.read_exact_at(&mut buf, offset)
        .map_err(|source| StackError::Io {
            what,
            offset,
            source,
        })?;
    Ok(buf)
}
