//! The captured root's `etc/fstab` (fstab(5)): the truth of what the system mounts at boot.

use super::record::FstabEntry;

/// How an fstab entry names its device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spec {
    Uuid(String),
    Label(String),
    PartUuid(String),
    PartLabel(String),
    /// A path: `/dev/vda1`, `/dev/disk/by-uuid/…`, or a swap file.
    Path(String),
    /// Anything else: `proc`, `tmpfs`, `none`, `server:/export`...
    Other(String),
}

/// Parses fstab text. Comment and blank lines are skipped; a line with fewer than two fields
/// is reported in the second vector (1-based line numbers) and skipped. Missing trailing fields
/// take fstab(5)'s defaults.
pub fn parse(text: &str) -> (Vec<FstabEntry>, Vec<u32>) {
    let mut entries = Vec::new();
    let mut bad = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = n as u32 + 1;
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let fields: Vec<String> = trimmed.split_whitespace().map(unescape).collect();
        let [spec, mount_point, rest @ ..] = &fields[..] else {
            bad.push(line);
            continue;
        };
        let number = |i: usize| rest.get(i).and_then(|f| f.parse().ok()).unwrap_or(0);
        entries.push(FstabEntry {
            line,
            spec: spec.clone(),
            mount_point: mount_point.clone(),
            fstype: rest.first().cloned().unwrap_or_else(|| "auto".into()),
            options: rest.get(1).cloned().unwrap_or_else(|| "defaults".into()),
            freq: number(2),
            pass: number(3),
        });
    }
    (entries, bad)
}

/// Undoes fstab's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` backslash).
pub fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                let v = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                out.push(v as u8);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The device an entry names.
pub fn spec(entry: &FstabEntry) -> Spec {
    let s = entry.spec.as_str();
    let tag = |prefix: &str| {
        s.strip_prefix(prefix)
            .map(|v| v.trim_matches('"').to_string())
    };
    if let Some(v) = tag("UUID=") {
        Spec::Uuid(v)
    } else if let Some(v) = tag("LABEL=") {
        Spec::Label(v)
    } else if let Some(v) = tag("PARTUUID=") {
        Spec::PartUuid(v)
    } else if let Some(v) = tag("PARTLABEL=") {
        Spec::PartLabel(v)
    } else if s.starts_with('/') {
        Spec::Path(s.to_string())
    } else {
        Spec::Other(s.to_string())
    }
}

/// The value of option `name` (`subvol=@`), or `Some("")` for a bare flag (`nofail`).
pub fn option<'a>(options: &'a str, name: &str) -> Option<&'a str> {
    options.split(',').find_map(|o| match o.split_once('=') {
        Some((k, v)) if k == name => Some(v),
        None if o == name => Some(""),
        _ => None,
    })
}

/// The system boots without this entry's device (`nofail` or `noauto`).
pub fn optional(entry: &FstabEntry) -> bool {
    option(&entry.options, "nofail").is_some() || option(&entry.options, "noauto").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# /etc/fstab: static file system information.
#
# <file system> <mount point>   <type>  <options>       <dump>  <pass>
UUID=0a1b2c3d-0000-4000-8000-000000000001 /               ext4    errors=remount-ro 0       1
  # indented comment
LABEL=My\\040Data /srv/my\\040data ext4 defaults,nofail 0 2
PARTUUID=\"c0ffee00-01\"\t/boot/efi\tvfat\tumask=0077\t0\t1

/dev/vda3 none swap sw 0 0
/swapfile none swap
proc /proc proc
broken
";

    #[test]
    fn parses_comments_escapes_tabs_and_defaults() {
        let (e, bad) = parse(SAMPLE);
        assert_eq!(bad, [12]);
        assert_eq!(e.len(), 6);
        assert_eq!(e[0].line, 4);
        assert_eq!(e[0].mount_point, "/");
        assert_eq!((e[0].freq, e[0].pass), (0, 1));
        assert_eq!(e[0].options, "errors=remount-ro");
        assert_eq!(
            spec(&e[0]),
            Spec::Uuid("0a1b2c3d-0000-4000-8000-000000000001".into())
        );
        assert_eq!(spec(&e[1]), Spec::Label("My Data".into()));
        assert_eq!(e[1].mount_point, "/srv/my data");
        assert!(optional(&e[1]));
        assert_eq!(spec(&e[2]), Spec::PartUuid("c0ffee00-01".into()));
        assert_eq!(e[2].fstype, "vfat");
        assert_eq!(e[2].pass, 1);
        assert_eq!(spec(&e[3]), Spec::Path("/dev/vda3".into()));
        assert!(!optional(&e[3]));
        assert_eq!((e[4].options.as_str(), e[4].pass), ("defaults", 0));
        assert_eq!(e[4].fstype, "swap");
        assert_eq!(spec(&e[5]), Spec::Other("proc".into()));
        assert_eq!(e[5].options, "defaults");
    }

    #[test]
    fn unescapes_octal_only() {
        assert_eq!(unescape(r"a\040b\011c\134d"), "a b\tc\\d");
        assert_eq!(unescape(r"a\09b\"), r"a\09b\");
        assert_eq!(unescape(r"\1"), r"\1");
    }

    #[test]
    fn options_by_name() {
        let o = "rw,subvol=@home,compress=zstd:3,nofail";
        assert_eq!(option(o, "subvol"), Some("@home"));
        assert_eq!(option(o, "nofail"), Some(""));
        assert_eq!(option(o, "sub"), None);
        assert_eq!(option("defaults", "defaults"), Some(""));
    }
}
