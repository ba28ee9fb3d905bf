//! How images are shown to people: `list` lines, the `info` table and its JSON.

use std::io::Write;

use serde::Serialize;

use osimage::PayloadReader;
use osimage::format::manifest::{CaptureStats, EntryKind, EntryRow, Manifest, Timestamp};

pub use osimage::count;
pub use osimage::human_bytes as bytes;

fn time(t: Timestamp) -> String {
    chrono::DateTime::from_timestamp(t.sec, t.nsec)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| format!("@{}", { t.sec }))
}

fn rfc3339(t: Timestamp) -> String {
    chrono::DateTime::from_timestamp(t.sec, t.nsec)
        .map(|d| d.to_rfc3339())
        .unwrap_or_default()
}

/// The closing line of a capture: counts, the file data and what it became, and for an ISO
/// the rescue environment apart (issue #24: it is not file data).
pub fn capture_line(image: &std::path::Path, r: &osimage::CaptureReport) -> String {
    let st = &r.stats;
    let stored = if r.rescue_bytes > 0 {
        format!(
            "{} stored; the ISO is {} with its rescue environment ({}) and boot loader",
            bytes(st.stored_bytes),
            bytes(r.size),
            bytes(r.rescue_bytes)
        )
    } else {
        format!("{} image", bytes(r.size))
    };
    format!(
        "{}: {}, {} of file data → {} ({}) in {:.1} s",
        image.display(),
        count(st.entries, "entry", "entries"),
        bytes(st.file_bytes),
        stored,
        count(st.unique_chunks, "unique chunk", "unique chunks"),
        st.duration_ms as f64 / 1000.0
    )
}

/// `drwxr-xr-x` for an entry.
pub fn mode_string(e: &EntryRow) -> String {
    let m = e.meta().mode;
    let mut s = String::with_capacity(10);
    s.push(e.kind().type_char());
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

/// `bytes` made safe for a terminal, as `ls -b` and GNU tar's escape style show names (issue
/// #20 item 9): a backslash is doubled, `\a \b \t \n \v \f \r` are written so, every other
/// control character (C0, DEL, C1: U+0080–U+009F, which a terminal takes as CSI and the like)
/// and every byte that is not UTF-8 as `\ooo` octal per byte. So a name holding `\n/etc/shadow`
/// stays on its line and an escape sequence never reaches the terminal.
pub fn escaped(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    let octal = |out: &mut String, b: u8| out.push_str(&format!("\\{b:03o}"));
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\x07' => out.push_str("\\a"),
                '\x08' => out.push_str("\\b"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\x0b' => out.push_str("\\v"),
                '\x0c' => out.push_str("\\f"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => {
                    for b in c.encode_utf8(&mut [0; 4]).bytes() {
                        octal(&mut out, b);
                    }
                }
                c => out.push(c),
            }
        }
        for &b in chunk.invalid() {
            octal(&mut out, b);
        }
    }
    out
}

/// Text made of lines (a table the library formats from the image's strings), each line
/// `escaped` and the line breaks kept.
pub fn escaped_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        out.push_str(&escaped(body.as_bytes()));
        out.push_str(nl);
    }
    out
}

/// How `list` writes names: escaped for people, or raw bytes (`-0`, each line ended by NUL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Names {
    Escaped,
    Raw,
}

/// Writes one `list` line for entry `i`: names escaped (`escaped`), or with `Names::Raw` the
/// exact bytes (names need not be UTF-8) ended by NUL instead of a newline.
pub fn list_line(
    out: &mut impl Write,
    m: &Manifest,
    i: usize,
    long: bool,
    names: Names,
) -> std::io::Result<()> {
    let name = |out: &mut dyn Write, b: &[u8]| match names {
        Names::Raw => out.write_all(b),
        Names::Escaped => out.write_all(escaped(b).as_bytes()),
    };
    let e = m.entries.at(i);
    if long {
        let size = match &e.kind() {
            EntryKind::File { size, .. } => *size,
            EntryKind::HardLink { target } => match &m.entries[*target as usize].kind() {
                EntryKind::File { size, .. } => *size,
                _ => 0,
            },
            _ => 0,
        };
        // User and group names come from the image's /etc/passwd and /etc/group.
        let (user, group) = (
            name_of(&m.users, e.meta().uid),
            name_of(&m.groups, e.meta().gid),
        );
        write!(out, "{} ", mode_string(&e))?;
        match names {
            Names::Raw => write!(out, "{user:>8}/{group:<8}")?,
            Names::Escaped => write!(
                out,
                "{:>8}/{:<8}",
                escaped(user.as_bytes()),
                escaped(group.as_bytes())
            )?,
        }
        write!(out, " {:>12} {} ", size, time(e.meta().mtime))?;
    }
    out.write_all(b"/")?;
    name(out, e.path)?;
    if long {
        match &e.kind() {
            EntryKind::Symlink { target } => {
                out.write_all(b" -> ")?;
                name(out, target)?;
            }
            EntryKind::HardLink { target } => {
                out.write_all(b" link to /")?;
                name(out, m.entries.path(*target as usize))?;
            }
            _ => {}
        }
    }
    out.write_all(match names {
        Names::Raw => b"\0",
        Names::Escaped => b"\n",
    })
}

/// `info --json` (docs/JSON.md "info"); the table is made from the same facts.
#[derive(Serialize)]
pub struct InfoJson {
    pub image: String,
    /// `oimg` or `iso`.
    pub container: String,
    pub format_version: u16,
    pub id: String,
    pub created: String,
    pub created_ns: Option<i64>,
    pub hostname: String,
    pub os_release: String,
    /// The kernel the capturing host was running (`uname -r`) when it captured: for an
    /// offline capture (a mounted system, a directory) not the captured system's.
    pub host_kernel: String,
    /// The kernel versions installed in the captured tree (`boot/vmlinuz-VERSION`).
    pub system_kernels: Vec<String>,
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
    /// The recorded disk layout (null when none was recorded or it is unreadable).
    pub layout: Option<super::json::layout::Layout>,
    #[serde(skip)]
    pub layout_table: String,
    /// What a refresh reused from its base (null for a first capture; FORMAT.md §10).
    pub lineage: Option<osimage::LineageJson>,
    /// What an ISO's rescue environment was built from (null for a `.oimg`, or an ISO of an
    /// older osimage; FORMAT.md §12).
    pub rescue: Option<osimage::RescueJson>,
    #[serde(flatten)]
    pub stats: StatsJson,
}

/// The capture's counters (top level of `info --json`).
#[derive(Serialize)]
pub struct StatsJson {
    pub entries: u64,
    pub files: u64,
    pub directories: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub specials: u64,
    /// Apparent size of the files.
    pub file_bytes: u64,
    /// Bytes read from them (holes are not read).
    pub data_bytes: u64,
    pub chunk_refs: u64,
    pub unique_chunks: u64,
    pub unique_bytes: u64,
    /// Compressed bytes in the packs (the file data as stored).
    pub stored_bytes: u64,
    pub skipped: u64,
    pub capture_seconds: f64,
}

impl From<&CaptureStats> for StatsJson {
    fn from(s: &CaptureStats) -> Self {
        StatsJson {
            entries: s.entries,
            files: s.files,
            directories: s.directories,
            symlinks: s.symlinks,
            hardlinks: s.hardlinks,
            specials: s.specials,
            file_bytes: s.file_bytes,
            data_bytes: s.data_bytes,
            chunk_refs: s.chunk_refs,
            unique_chunks: s.unique_chunks,
            unique_bytes: s.unique_bytes,
            stored_bytes: s.stored_bytes,
            skipped: s.skipped,
            capture_seconds: super::json::seconds(s.duration_ms),
        }
    }
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

/// The kernel versions the captured tree holds: `boot/vmlinuz-VERSION` files and symlinks,
/// sorted, without duplicates.
pub fn system_kernels(m: &Manifest) -> Vec<String> {
    let mut v: Vec<String> = m
        .entries
        .iter()
        .filter(|e| !matches!(e.kind(), EntryKind::Directory))
        .filter_map(|e| e.path.strip_prefix(b"boot/vmlinuz-"))
        .filter(|rest| !rest.is_empty() && !rest.contains(&b'/'))
        .map(|rest| String::from_utf8_lossy(rest).into_owned())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The facts `info` shows, from an open image.
pub fn info(r: &PayloadReader) -> InfoJson {
    let m = r.manifest();
    let s = &m.stats;
    let image_bytes = r.image_len();
    let (layout, layout_table) = match osimage::layout::from_manifest(m) {
        Ok(Some(l)) => {
            let t = osimage::layout::describe(&l);
            (Some(super::json::layout::layout(&l)), t)
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
        created_ns: super::json::nanos(m.image.created),
        hostname: m.image.hostname.clone(),
        os_release: m.image.os_release.clone(),
        host_kernel: m.image.kernel.clone(),
        system_kernels: system_kernels(m),
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
        stats: s.into(),
    }
}

/// The human-readable `info`: every string the image supplies is `escaped` (the JSON keeps
/// them exact).
pub fn info_table(i: &InfoJson) -> String {
    let s = &i.stats;
    let e = |v: &str| escaped(v.as_bytes());
    let mut t = String::new();
    let mut row = |k: &str, v: String| t.push_str(&format!("{k:<18} {v}\n"));
    row(
        "image",
        format!("{} ({}, format {})", i.image, i.container, i.format_version),
    );
    row("id", i.id.clone());
    row("created", i.created.clone());
    row("host", e(&i.hostname));
    row("system", e(&i.os_release));
    // issue #24: the image records the capturing host's running kernel, which is the
    // captured system's only for a live capture of `/`.
    let kernels = if i.system_kernels.is_empty() {
        "none in /boot".to_string()
    } else {
        e(&i.system_kernels.join(", "))
    };
    row("system kernels", kernels);
    row(
        "captured under",
        format!(
            "kernel {} ({}), running on the capturing host",
            e(&i.host_kernel),
            e(&i.arch)
        ),
    );
    row("source root", e(&i.source_root));
    row("made by", format!("osimage {}", e(&i.tool_version)));
    row(
        "entries",
        format!(
            "{} ({}, {}, {}, {}, {} special)",
            s.entries,
            count(s.files, "file", "files"),
            count(s.directories, "directory", "directories"),
            count(s.symlinks, "symlink", "symlinks"),
            count(s.hardlinks, "hard link", "hard links"),
            s.specials
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
            "{} of {}, {}",
            s.unique_chunks,
            count(s.chunk_refs, "reference", "references"),
            bytes(s.unique_bytes)
        ),
    );
    row(
        "stored",
        format!(
            "{} in {}, {}",
            bytes(s.stored_bytes),
            count(i.blocks as u64, "block", "blocks"),
            count(i.packs as u64, "pack", "packs")
        ),
    );
    // issue #24: an ISO's size is mostly its rescue environment, not file data
    row(
        "image size",
        if i.container == "iso" {
            format!(
                "{} ({} stored file data; the rest is the rescue environment, boot loader and \
                 ISO structures)",
                bytes(i.image_bytes),
                bytes(s.stored_bytes)
            )
        } else {
            bytes(i.image_bytes)
        },
    );
    row(
        "ratios",
        format!(
            "dedup {:.2}x, compression {:.2}x (zstd level {})",
            i.dedup_ratio, i.compression_ratio, i.zstd_level
        ),
    );
    row("capture took", format!("{:.1} s", s.capture_seconds));
    if s.skipped > 0 {
        row(
            "skipped",
            count(s.skipped, "unreadable path", "unreadable paths"),
        );
    }
    for f in &i.filesystems {
        row(
            "filesystem",
            format!(
                "{} {} from {}",
                e(&f.mount_point),
                e(&f.fstype),
                e(&f.source)
            ),
        );
    }
    if let Some(l) = &i.lineage {
        row("refreshed from", escaped_lines(&l.summary()));
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
    t.push_str(&escaped_lines(&i.layout_table));
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_as_ls_b_does() {
        assert_eq!(escaped(b"innocent\n/etc/shadow"), "innocent\\n/etc/shadow");
        assert_eq!(escaped(b"red\x1b[31m"), "red\\033[31m");
        assert_eq!(escaped(b"a\\b\tc\r\x07\x7f"), "a\\\\b\\tc\\r\\a\\177");
        // C1 CSI (U+009B) is a control character in UTF-8 too; bytes not UTF-8 go octal.
        assert_eq!(escaped("x\u{9b}2J".as_bytes()), "x\\302\\2332J");
        assert_eq!(escaped(b"caf\xe9"), "caf\\351");
        assert_eq!(escaped("café ünï".as_bytes()), "café ünï");
        assert_eq!(escaped_lines("a\x1b\nb\n"), "a\\033\nb\n");
    }

    fn report(size: u64, rescue_bytes: u64) -> osimage::CaptureReport {
        osimage::CaptureReport {
            output: "x.iso".into(),
            size,
            stats: CaptureStats {
                entries: 1,
                file_bytes: 10 << 20,
                stored_bytes: 3 << 20,
                unique_chunks: 1,
                ..CaptureStats::default()
            },
            skipped: Vec::new(),
            left_out: Vec::new(),
            left_out_filesystems: Vec::new(),
            warnings: Vec::new(),
            rescue: None,
            rescue_bytes,
        }
    }

    /// issue #24: an ISO's rescue environment is not shown as what the file data became.
    #[test]
    fn the_capture_line_keeps_the_rescue_environment_apart() {
        let r = report(60 << 20, 55 << 20);
        assert_eq!(
            capture_line(std::path::Path::new("x.iso"), &r),
            "x.iso: 1 entry, 10.0 MiB of file data → 3.0 MiB stored; the ISO is 60.0 MiB with \
             its rescue environment (55.0 MiB) and boot loader (1 unique chunk) in 0.0 s"
        );
        let r = report(4 << 20, 0);
        assert_eq!(
            capture_line(std::path::Path::new("x.oimg"), &r),
            "x.oimg: 1 entry, 10.0 MiB of file data → 4.0 MiB image (1 unique chunk) in 0.0 s"
        );
    }
}
