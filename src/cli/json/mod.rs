//! `--json`: the machine-readable output of the reading commands (issue #24 item 14), one
//! document per run on stdout, its schema in docs/JSON.md.
//!
//! Every document is an object that starts with `"schema_version"` and `"command"`. The
//! documents are built from output structs of their own here, never by serializing the
//! library's or the format's types directly, so a change to the image format or to a plan's
//! internals cannot change the JSON unnoticed: field names are snake_case, enums are
//! `{"type": "gpt", …}` objects or plain strings, byte blobs are summarised (`Blob`), names
//! that are not UTF-8 carry their exact bytes in base64 beside the lossy text (`Name`).

pub mod layout;
pub mod restore;
pub mod store;
pub mod store_check;
pub mod store_key;

use std::io::Write;

use serde::Serialize;

use osimage::format::manifest::{EntryKind, Manifest, Timestamp};

/// The version of every document's schema. Additive changes (a new field, a new value of a
/// `type`) keep it; renaming, removing or retyping a field bumps it (docs/JSON.md).
pub const SCHEMA_VERSION: u32 = 1;

/// A document: the version and the command, then the command's own fields.
#[derive(Serialize)]
struct Document<'a, T: Serialize> {
    schema_version: u32,
    command: &'a str,
    #[serde(flatten)]
    body: &'a T,
}

/// Writes `body` as `command`'s one document on stdout (pretty, ended by a newline).
pub fn print<T: Serialize>(command: &str, body: &T) -> Result<(), Box<dyn std::error::Error>> {
    let doc = Document {
        schema_version: SCHEMA_VERSION,
        command,
        body,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    serde_json::to_writer_pretty(&mut out, &doc)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// A name from an image (a path, a symlink target): `text` is exact when the bytes are UTF-8,
/// else lossy (U+FFFD for each bad sequence) and `b64` holds the exact bytes. Serialized
/// flattened under the field's own name: `"path": …, "path_b64": …` (the latter only when
/// the bytes are not UTF-8).
pub struct Name<'a> {
    pub field: &'static str,
    pub bytes: &'a [u8],
    /// Prepended to `text` (and to the bytes in base64): `/` for a path stored relative.
    pub prefix: &'static str,
}

impl Serialize for Name<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let utf8 = std::str::from_utf8(self.bytes).is_ok();
        let mut m = s.serialize_map(Some(if utf8 { 1 } else { 2 }))?;
        let text = format!("{}{}", self.prefix, String::from_utf8_lossy(self.bytes));
        m.serialize_entry(self.field, &text)?;
        if !utf8 {
            let mut all = self.prefix.as_bytes().to_vec();
            all.extend_from_slice(self.bytes);
            m.serialize_entry(&format!("{}_b64", self.field), &base64(&all))?;
        }
        m.end()
    }
}

/// A path of the image: `/`-rooted.
pub fn path(bytes: &[u8]) -> Name<'_> {
    Name {
        field: "path",
        bytes,
        prefix: "/",
    }
}

/// RFC 4648 base64 with padding (the standard alphabet).
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= c.len() {
                out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A byte blob of the record (boot code, a BIOS boot partition's contents) told by its length
/// and BLAKE3 hash, not by its bytes.
#[derive(Serialize)]
pub struct Blob {
    pub bytes: usize,
    /// BLAKE3 of the bytes, hex (of nothing when `bytes` is 0).
    pub blake3: String,
    /// Every byte is zero (nothing worth writing back).
    pub all_zero: bool,
}

impl Blob {
    pub fn of(b: &[u8]) -> Blob {
        Blob {
            bytes: b.len(),
            blake3: blake3::hash(b).to_hex().to_string(),
            all_zero: b.iter().all(|&x| x == 0),
        }
    }
}

/// RFC 3339 text of a timestamp (UTC, nanoseconds when there are any); empty when out of
/// chrono's range (a hostile image).
pub fn rfc3339(t: Timestamp) -> String {
    chrono::DateTime::from_timestamp(t.sec, t.nsec)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

/// Nanoseconds since the epoch, exact (`None` when it does not fit in an i64: before 1677 or
/// after 2262).
pub fn nanos(t: Timestamp) -> Option<i64> {
    t.sec
        .checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(i64::from(t.nsec)))
}

/// Seconds from milliseconds, as a number.
pub fn seconds(millis: u64) -> f64 {
    millis as f64 / 1000.0
}

/// One entry of `list --json`.
#[derive(Serialize)]
pub struct ListEntry<'a> {
    #[serde(flatten)]
    pub path: Name<'a>,
    /// `file`, `directory`, `symlink`, `hardlink`, `char_device`, `block_device`, `fifo`,
    /// `socket`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Permission and set-id/sticky bits (`st_mode & 07777`), a number (0o644 is 420).
    pub mode: u32,
    /// `ls -l`'s form, e.g. `-rw-r--r--`.
    pub mode_string: String,
    pub uid: u32,
    pub gid: u32,
    /// Names from the image's /etc/passwd and /etc/group (the number as text when absent).
    pub user: String,
    pub group: String,
    /// Apparent size in bytes: a file's (a hard link's: its target's), else 0.
    pub size: u64,
    pub mtime: String,
    pub mtime_ns: Option<i64>,
    /// A symlink's target (`target_b64` beside it when not UTF-8).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub target: Option<Name<'a>>,
    /// A hard link's first path (`link_b64` beside it when not UTF-8).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub link: Option<Name<'a>>,
    /// Device nodes: major and minor numbers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceNumbers>,
    /// Names of the extended attributes (ACLs, capabilities, SELinux labels…).
    pub xattrs: Vec<String>,
}

#[derive(Serialize)]
pub struct DeviceNumbers {
    pub major: u32,
    pub minor: u32,
}

fn user_name(list: &[(u32, String)], id: u32) -> String {
    list.iter()
        .find(|(i, _)| *i == id)
        .map(|(_, n)| n.clone())
        .unwrap_or_else(|| id.to_string())
}

/// Entry `i` of `m` as `list --json` shows it.
pub fn list_entry(m: &Manifest, i: usize) -> ListEntry<'_> {
    let e = &m.entries[i];
    let target_of = |t: u32| m.entries.rows().get(t as usize);
    let (kind, size) = match &e.kind() {
        EntryKind::Directory => ("directory", 0),
        EntryKind::File { size, .. } => ("file", *size),
        EntryKind::Symlink { .. } => ("symlink", 0),
        EntryKind::HardLink { target } => (
            "hardlink",
            target_of(*target).and_then(|t| t.file_size()).unwrap_or(0),
        ),
        EntryKind::CharDevice { .. } => ("char_device", 0),
        EntryKind::BlockDevice { .. } => ("block_device", 0),
        EntryKind::Fifo => ("fifo", 0),
        EntryKind::Socket => ("socket", 0),
    };
    let device = match &e.kind() {
        EntryKind::CharDevice { rdev } | EntryKind::BlockDevice { rdev } => Some(DeviceNumbers {
            major: rustix::fs::major(*rdev),
            minor: rustix::fs::minor(*rdev),
        }),
        _ => None,
    };
    let meta = e.meta();
    ListEntry {
        path: path(m.entries.path(i)),
        kind,
        mode: meta.mode & 0o7777,
        mode_string: super::show::mode_string(e),
        uid: meta.uid,
        gid: meta.gid,
        user: user_name(&m.users, meta.uid),
        group: user_name(&m.groups, meta.gid),
        size,
        mtime: rfc3339(meta.mtime),
        mtime_ns: nanos(meta.mtime),
        target: e.symlink_target().map(|target| Name {
            field: "target",
            bytes: target,
            prefix: "",
        }),
        link: match &e.kind() {
            EntryKind::HardLink { target } => target_of(*target).map(|_| Name {
                field: "link",
                bytes: m.entries.path(*target as usize),
                prefix: "/",
            }),
            _ => None,
        },
        device,
        xattrs: e
            .xattrs()
            .iter()
            .map(|x| String::from_utf8_lossy(&x.name).into_owned())
            .collect(),
    }
}

/// `list --json`.
#[derive(Serialize)]
pub struct List<'a> {
    pub image: String,
    /// The PATH asked for (`/` when none).
    pub under: String,
    pub count: usize,
    pub entries: Vec<ListEntry<'a>>,
}

/// `verify --json` (without `--boot`).
#[derive(Serialize)]
pub struct Verify<'a> {
    pub image: String,
    /// `ok` or `damaged`.
    pub verdict: &'static str,
    pub ok: bool,
    pub packs: usize,
    pub blocks: usize,
    pub chunks: usize,
    /// Uncompressed bytes of the chunks checked.
    pub bytes_checked: u64,
    pub problems: &'a [String],
    pub damaged_files: Vec<Name<'a>>,
    /// With `--pubkey`: the signature was good and its trusted comment (a bad one is an
    /// error, exit 1, no document).
    pub signature: Option<Signature>,
}

#[derive(Serialize)]
pub struct Signature {
    pub good: bool,
    pub trusted_comment: String,
}

/// `diff --json`.
#[derive(Serialize)]
pub struct Diff<'a> {
    pub old: String,
    pub new: String,
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
    pub metadata: u64,
    pub changes: Vec<Change<'a>>,
}

#[derive(Serialize)]
pub struct Change<'a> {
    #[serde(flatten)]
    pub path: Name<'a>,
    /// `added`, `removed`, `changed` (content) or `metadata`.
    pub kind: &'static str,
    pub old_size: u64,
    pub new_size: u64,
    /// Which of `mode`, `owner`, `mtime`, `xattrs` differ.
    pub fields: &'a [&'static str],
}

/// The `diff --json` document of `d`.
pub fn diff<'a>(old: &std::path::Path, new: &std::path::Path, d: &'a osimage::Diff) -> Diff<'a> {
    use osimage::ChangeKind as K;
    Diff {
        old: old.display().to_string(),
        new: new.display().to_string(),
        added: d.added,
        removed: d.removed,
        changed: d.changed,
        metadata: d.metadata,
        changes: d
            .changes
            .iter()
            .map(|c| Change {
                path: path(&c.raw_path),
                kind: match c.kind {
                    K::Added => "added",
                    K::Removed => "removed",
                    K::Changed => "changed",
                    K::Metadata => "metadata",
                },
                old_size: c.old_size,
                new_size: c.new_size,
                fields: &c.fields,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_rfc4648() {
        // RFC 4648 §10's test vectors.
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o, "{i:?}");
        }
        assert_eq!(base64(&[0xff, 0xfe]), "//4=");
    }

    #[test]
    fn names_carry_bytes_only_when_not_utf8() {
        let v = serde_json::to_value(path(b"a\nb")).unwrap();
        assert_eq!(v, serde_json::json!({"path": "/a\nb"}));
        let v = serde_json::to_value(path(b"x\xff")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"path": "/x\u{fffd}", "path_b64": base64(b"/x\xff")})
        );
    }

    #[test]
    fn times_are_rfc3339_and_exact_nanoseconds() {
        let t = Timestamp {
            sec: 1_700_000_000,
            nsec: 5,
        };
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.000000005Z");
        assert_eq!(nanos(t), Some(1_700_000_000_000_000_005));
        assert_eq!(
            nanos(Timestamp {
                sec: i64::MAX,
                nsec: 0
            }),
            None
        );
    }
}
