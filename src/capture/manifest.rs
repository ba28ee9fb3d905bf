//! The manifest a capture writes: the payload writer's tables, the scanned entries, the image's
//! id and who/when/what (`info`), the counters, and the records the manifest carries as
//! extensions (the disk layout, the directories under captured mount points, an ISO's rescue
//! inputs, a refresh's lineage).

use std::path::Path;

use super::iso_output::BootFiles;
use crate::format::manifest::{CaptureStats, Entries, EntryKind, ImageInfo, Manifest, Timestamp};
use crate::layout::DiskLayout;
use crate::payload::chunker::PARAMS;
use crate::payload::writer::PayloadTables;
use crate::refresh::Base;
use crate::scan::{ScanResult, Skipped};

/// The manifest, and what the capture report says besides it.
pub(super) struct Assembled {
    pub manifest: Manifest,
    /// What the scan and the payload writer left out.
    pub skipped: Vec<Skipped>,
    pub warnings: Vec<String>,
}

/// The manifest of `scanned` as the payload writer stored it (`tables`), with its records of
/// `layout`, of the rescue environment `boot` (ISO output) and of the refresh of `base`.
pub(super) fn assemble(
    image: ImageInfo,
    scanned: ScanResult,
    mut tables: PayloadTables,
    layout: &DiskLayout,
    boot: Option<&BootFiles>,
    base: Option<&Base>,
) -> Assembled {
    let mut skipped = scanned.skipped;
    skipped.extend(tables.skipped.iter().cloned());
    let mut stats = count(&scanned.entries, &tables);
    stats.skipped = skipped.len() as u64;
    let warnings = tables.warnings.clone();
    let reuse = std::mem::take(&mut tables.reuse);
    let mut manifest = Manifest {
        image,
        packs: tables.packs,
        blocks: tables.blocks,
        chunks: tables.chunks,
        entries: scanned.entries,
        users: scanned.users,
        groups: scanned.groups,
        filesystems: scanned.filesystems,
        stats,
        extensions: vec![crate::layout::to_extension(layout)],
    };
    if !scanned.mount_dirs.is_empty() {
        manifest
            .extensions
            .push(crate::format::mount_dirs::to_extension(&scanned.mount_dirs));
    }
    if let Some(b) = boot {
        manifest
            .extensions
            .push(crate::rescue::reuse::to_extension(&b.rescue_inputs));
    }
    if let Some(b) = base {
        let lineage = crate::refresh::lineage::measure(b, &manifest, &reuse);
        manifest
            .extensions
            .push(crate::refresh::lineage::to_extension(&lineage));
    }
    Assembled {
        manifest,
        skipped,
        warnings,
    }
}

/// 16 random bytes from the kernel.
pub(super) fn random_id() -> [u8; 16] {
    crate::sys::random_bytes().unwrap_or_else(|_| {
        // No getrandom: derive from time and pid (ids need uniqueness, not secrecy).
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        let mut id = [0u8; 16];
        id.copy_from_slice(&blake3::hash(seed.as_bytes()).as_bytes()[..16]);
        id
    })
}

/// Who, when and what, for `info`.
pub(super) fn image_info(root: &Path, id: [u8; 16], level: i32) -> ImageInfo {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    use std::os::unix::ffi::OsStrExt;
    ImageInfo {
        id,
        created: Timestamp {
            sec: now.as_secs() as i64,
            nsec: now.subsec_nanos(),
        },
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        hostname: hostname_of(root),
        os_release: os_release(root),
        kernel: sysinfo::System::kernel_version().unwrap_or_default(),
        arch: std::env::consts::ARCH.to_string(),
        source_root: root.as_os_str().as_bytes().to_vec(),
        zstd_level: level,
        chunking: PARAMS,
    }
}

/// The captured system's host name: ROOT/etc/hostname, else the running host's.
pub(super) fn hostname_of(root: &Path) -> String {
    std::fs::read_to_string(root.join("etc/hostname"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| sysinfo::System::host_name().ok())
        .unwrap_or_else(|| "system".into())
}

/// PRETTY_NAME from the captured root's os-release.
fn os_release(root: &Path) -> String {
    for p in ["etc/os-release", "usr/lib/os-release"] {
        if let Ok(text) = std::fs::read_to_string(root.join(p)) {
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("PRETTY_NAME=") {
                    return v.trim_matches('"').to_string();
                }
            }
        }
    }
    String::new()
}

/// The counters `info` shows.
fn count(entries: &Entries, t: &PayloadTables) -> CaptureStats {
    let mut s = CaptureStats {
        entries: entries.len() as u64,
        unique_chunks: t.chunks.len() as u64,
        unique_bytes: t.chunks.iter().map(|c| c.len as u64).sum(),
        stored_bytes: t.blocks.iter().map(|b| b.stored_len as u64).sum(),
        data_bytes: t.data_bytes,
        ..Default::default()
    };
    for e in entries {
        match &e.kind() {
            EntryKind::Directory => s.directories += 1,
            EntryKind::File { size, runs } => {
                s.files += 1;
                s.file_bytes += size;
                s.chunk_refs += runs.iter().map(|r| r.chunks.len() as u64).sum::<u64>();
            }
            EntryKind::Symlink { .. } => s.symlinks += 1,
            EntryKind::HardLink { .. } => s.hardlinks += 1,
            _ => s.specials += 1,
        }
    }
    s
}
