//! How images are shown to people: `list` lines, the `info` table and its JSON.

use std::io::Write;

use serde::Serialize;

use osimage::PayloadReader;
use osimage::format::manifest::{CaptureStats, Entry, EntryKind, Manifest, Timestamp};

pub use osimage::human_bytes as bytes;

fn time(t: Timestamp) -> String {
    chrono::DateTime::from_timestamp(t.sec, t.nsec)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| format!("@{}", t.sec))
}

fn rfc3339(t: Timestamp) -> String {
    chrono::DateTime::from_timestamp(t.sec, t.nsec)
        .map(|d| d.to_rfc3339())
        .unwrap_or_default()
}

/// `drwxr-xr-x` for an entry.
pub fn mode_string(e: &Entry) -> String {
    let m = e.meta.mode;
    let mut s = String::with_capacity(10);
    s.push(e.kind.type_char());
    let bit = |mask: u32, c: char| if m & mask != 0 { c } else { '-' };
    let special = |x: u32, s_bit: u32, lower: char, upper: char| match (m & x != 0, m & s_bit != 0)
    {
        (true, true) => lower,
        (false, true) => upper,
        (true, false) => 'x',
        (false, false) => '-',
    };
    s.push(bit(0o400, 'r'));
    s.push(bit(0o200, 'w'));
    s.push(special(0o100, 0o4000, 's', 'S'));
    s.push(bit(0o040, 'r'));
    s.push(bit(0o020, 'w'));
    s.push(special(0o010, 0o2000, 's', 'S'));
    s.push(bit(0o004, 'r'));
    s.push(bit(0o002, 'w'));
    s.push(special(0o001, 0o1000, 't', 'T'));
    s
}

fn name_of(list: &[(u32, String)], id: u32) -> String {
    list.iter()
        .find(|(i, _)| *i == id)
        .map(|(_, n)| n.clone())
        .unwrap_or_else(|| id.to_string())
}

/// Writes one `list` line for entry `i` (raw path bytes: names need not be UTF-8).
pub fn list_line(out: &mut impl Write, m: &Manifest, i: usize, long: bool) -> std::io::Result<()> {
    let e = &m.entries[i];
    if long {
        let size = match &e.kind {
            EntryKind::File { size, .. } => *size,
            EntryKind::HardLink { target } => match &m.entries[*target as usize].kind {
                EntryKind::File { size, .. } => *size,
                _ => 0,
            },
            _ => 0,
        };
        write!(
            out,
            "{} {:>8}/{:<8} {:>12} {} ",
            mode_string(e),
            name_of(&m.users, e.meta.uid),
            name_of(&m.groups, e.meta.gid),
            size,
            time(e.meta.mtime)
        )?;
    }
    out.write_all(b"/")?;
    out.write_all(&e.path)?;
    if long {
        match &e.kind {
            EntryKind::Symlink { target } => {
                out.write_all(b" -> ")?;
                out.write_all(target)?;
            }
            EntryKind::HardLink { target } => {
                out.write_all(b" link to /")?;
                out.write_all(&m.entries[*target as usize].path)?;
            }
            _ => {}
        }
    }
    out.write_all(b"\n")
}

/// `info --json`.
#[derive(Serialize)]
pub struct InfoJson {
    pub image: String,
    pub container: String,
    pub format_version: u16,
    pub id: String,
    pub created: String,
    pub hostname: String,
    pub os_release: String,
    pub kernel: String,
    pub arch: String,
    pub tool_version: String,
    pub source_root: String,
    pub zstd_level: i32,
    pub chunk_min: u32,
    pub chunk_avg: u32,
    pub chunk_max: u32,
    pub image_bytes: u64,
    pub packs: usize,
    pub blocks: usize,
    /// data_bytes / unique_bytes: what dedup saved.
    pub dedup_ratio: f64,
    /// unique_bytes / stored_bytes: what compression saved.
    pub compression_ratio: f64,
    pub filesystems: Vec<FsJson>,
    /// The recorded disk layout (null when none was recorded).
    pub layout: Option<osimage::layout::DiskLayout>,
    #[serde(skip)]
    pub layout_table: String,
    /// What a refresh reused from its base (null for a first capture; FORMAT.md §10).
    pub lineage: Option<osimage::LineageJson>,
    /// What an ISO's rescue environment was built from (null for a `.oimg`, or an ISO of an
    /// older osimage; FORMAT.md §12).
    pub rescue: Option<osimage::RescueJson>,
    #[serde(flatten)]
    pub stats: CaptureStats,
}

#[derive(Serialize)]
pub struct FsJson {
    pub mount_point: String,
    pub fstype: String,
    pub source: String,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// The facts `info` shows, from an open image.
pub fn info(r: &PayloadReader) -> InfoJson {
    let m = r.manifest();
    let s = &m.stats;
    let image_bytes = std::fs::metadata(r.path()).map(|md| md.len()).unwrap_or(0);
    let (layout, layout_table) = match osimage::layout::from_manifest(m) {
        Ok(Some(l)) => {
            let t = osimage::layout::describe(&l);
            (Some(l), t)
        }
        Ok(None) => (None, "disk layout: none recorded\n".to_string()),
        Err(e) => (None, format!("disk layout: unreadable ({e})\n")),
    };
    InfoJson {
        image: r.path().display().to_string(),
        container: format!("{:?}", r.container()).to_lowercase(),
        format_version: r.format_version(),
        id: m.image.id.iter().map(|b| format!("{b:02x}")).collect(),
        created: rfc3339(m.image.created),
        hostname: m.image.hostname.clone(),
        os_release: m.image.os_release.clone(),
        kernel: m.image.kernel.clone(),
        arch: m.image.arch.clone(),
        tool_version: m.image.tool_version.clone(),
        source_root: String::from_utf8_lossy(&m.image.source_root).into_owned(),
        zstd_level: m.image.zstd_level,
        chunk_min: m.image.chunking.min,
        chunk_avg: m.image.chunking.avg,
        chunk_max: m.image.chunking.max,
        image_bytes,
        packs: m.packs.len(),
        blocks: m.blocks.len(),
        dedup_ratio: ratio(s.data_bytes, s.unique_bytes),
        compression_ratio: ratio(s.unique_bytes, s.stored_bytes),
        filesystems: m
            .filesystems
            .iter()
            .map(|f| FsJson {
                mount_point: format!("/{}", String::from_utf8_lossy(&f.mount_point)),
                fstype: f.fstype.clone(),
                source: f.source.clone(),
            })
            .collect(),
        layout,
        layout_table,
        lineage: osimage::lineage_from_manifest(m)
            .ok()
            .flatten()
            .map(|l| l.to_json()),
        rescue: osimage::rescue_from_manifest(m)
            .ok()
            .flatten()
            .map(|r| r.to_json()),
        stats: s.clone(),
    }
}

/// The human-readable `info`.
pub fn info_table(i: &InfoJson) -> String {
    let s = &i.stats;
    let mut t = String::new();
    let mut row = |k: &str, v: String| t.push_str(&format!("{k:<18} {v}\n"));
    row(
        "image",
        format!("{} ({}, format {})", i.image, i.container, i.format_version),
    );
    row("id", i.id.clone());
    row("created", i.created.clone());
    row("host", i.hostname.clone());
    row("system", i.os_release.clone());
    row("kernel", format!("{} ({})", i.kernel, i.arch));
    row("source root", i.source_root.clone());
    row("made by", format!("osimage {}", i.tool_version));
    row(
        "entries",
        format!(
            "{} ({} files, {} directories, {} symlinks, {} hard links, {} special)",
            s.entries, s.files, s.directories, s.symlinks, s.hardlinks, s.specials
        ),
    );
    row(
        "file data",
        format!(
            "{} apparent, {} read",
            bytes(s.file_bytes),
            bytes(s.data_bytes)
        ),
    );
    row(
        "unique chunks",
        format!(
            "{} of {} references, {}",
            s.unique_chunks,
            s.chunk_refs,
            bytes(s.unique_bytes)
        ),
    );
    row(
        "stored",
        format!(
            "{} in {} blocks, {} packs",
            bytes(s.stored_bytes),
            i.blocks,
            i.packs
        ),
    );
    row("image size", bytes(i.image_bytes));
    row(
        "ratios",
        format!(
            "dedup {:.2}x, compression {:.2}x (zstd level {})",
            i.dedup_ratio, i.compression_ratio, i.zstd_level
        ),
    );
    row(
        "capture took",
        format!("{:.1} s", s.duration_ms as f64 / 1000.0),
    );
    if s.skipped > 0 {
        row("skipped", format!("{} unreadable paths", s.skipped));
    }
    for f in &i.filesystems {
        row(
            "filesystem",
            format!("{} {} from {}", f.mount_point, f.fstype, f.source),
        );
    }
    if let Some(l) = &i.lineage {
        row("refreshed from", l.summary());
    }
    if let Some(r) = &i.rescue {
        row(
            "rescue built from",
            format!(
                "kernel {}…, initramfs contents {}… ({})",
                &r.kernel[..12],
                &r.contents[..12],
                r.compression
            ),
        );
    }
    t.push('\n');
    t.push_str(&i.layout_table);
    t
}
