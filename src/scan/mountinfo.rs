//! The kernel's mount table, `/proc/self/mountinfo` (proc(5), "mountinfo"), and which
//! filesystem types a capture takes (docs/EXCLUDES.md, "Filesystems").

use std::path::Path;

use super::ScanError;

/// One line of mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub id: u32,
    pub parent: u32,
    /// `makedev(major, minor)`: what `st_dev` reports for files on this mount.
    pub dev: u64,
    /// The directory of the filesystem mounted here (not `/` for bind mounts), unescaped.
    pub root: Vec<u8>,
    /// Absolute mount point, unescaped.
    pub mount_point: Vec<u8>,
    pub fstype: String,
    pub source: String,
}

/// Reads and parses a mountinfo file.
pub fn read(path: &Path) -> Result<Vec<Mount>, ScanError> {
    let bytes = std::fs::read(path).map_err(|source| ScanError::Io {
        op: "read the mount table",
        path: path.to_path_buf(),
        source,
    })?;
    parse(&bytes).map_err(|(line, reason)| ScanError::Mountinfo {
        path: path.to_path_buf(),
        line,
        reason,
    })
}

/// Parses mountinfo text; on error, the 1-based line number and what is wrong with it.
pub fn parse(text: &[u8]) -> Result<Vec<Mount>, (usize, String)> {
    text.split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.is_empty())
        .map(|(n, line)| parse_line(line).map_err(|e| (n + 1, e)))
        .collect()
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
fn parse_line(line: &[u8]) -> Result<Mount, String> {
    let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let sep = fields
        .iter()
        .position(|f| *f == b"-")
        .ok_or("no ` - ` separator")?;
    if sep < 6 || fields.len() < sep + 3 {
        return Err(format!(
            "expected at least 9 fields, found {}",
            fields.len()
        ));
    }
    let number = |f: &[u8], what: &str| -> Result<u32, String> {
        std::str::from_utf8(f)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{what} {:?} is not a number", String::from_utf8_lossy(f)))
    };
    let (major, minor) = fields[2]
        .iter()
        .position(|&b| b == b':')
        .map(|i| (&fields[2][..i], &fields[2][i + 1..]))
        .ok_or("device is not major:minor")?;
    let text = |f: &[u8]| String::from_utf8_lossy(&unescape(f)).into_owned();
    Ok(Mount {
        id: number(fields[0], "mount id")?,
        parent: number(fields[1], "parent id")?,
        dev: rustix::fs::makedev(number(major, "major")?, number(minor, "minor")?),
        root: unescape(fields[3]),
        mount_point: unescape(fields[4]),
        fstype: text(fields[sep + 1]),
        source: text(fields[sep + 2]),
    })
}

/// Undoes the kernel's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134`
/// backslash); anything else is kept as is.
pub fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field.get(i + 1..i + 4).filter(|d| {
            field[i] == b'\\' && d[0] <= b'3' && d.iter().all(|c| (b'0'..=b'7').contains(c))
        });
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

/// Local filesystems that live on a block device (or a pool of them): the ones a capture
/// takes when they are mounted under the root. Everything else — pseudo filesystems (proc,
/// sysfs, devtmpfs, cgroup…), memory (tmpfs, ramfs), overlay, network (nfs, cifs, fuse.sshfs…)
/// and read-only images mounted from files (squashfs snaps, iso9660) — is left out.
const LOCAL_BLOCK_FSTYPES: &[&str] = &[
    "ext2", "ext3", "ext4", "xfs", "btrfs", "bcachefs", "f2fs", "jfs", "reiserfs", "nilfs2", "zfs",
    "vfat", "msdos", "exfat", "ntfs", "ntfs3", "fuseblk", "hfsplus",
];

/// Whether a filesystem of this type is captured when mounted under the root.
pub fn is_local_block(fstype: &str) -> bool {
    LOCAL_BLOCK_FSTYPES.contains(&fstype)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = b"\
22 27 0:21 / /proc rw,relatime - proc proc rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334492k
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
31 27 8:1 / /boot/efi rw,relatime shared:7 master:2 - vfat /dev/sda1 rw,fmask=0022
32 27 8:2 /data/sub /mnt/my\\040disk\\011x rw - xfs /dev/sda2 rw
33 27 0:40 / /home/u/remote rw - fuse.sshfs u@host:/ rw
";

    #[test]
    fn parses_fields_optional_tags_and_escapes() {
        let mounts = parse(SAMPLE).unwrap();
        assert_eq!(mounts.len(), 6);
        let efi = &mounts[3];
        assert_eq!((efi.id, efi.parent), (31, 27));
        assert_eq!(efi.dev, rustix::fs::makedev(8, 1));
        assert_eq!(efi.mount_point, b"/boot/efi");
        assert_eq!(
            (efi.fstype.as_str(), efi.source.as_str()),
            ("vfat", "/dev/sda1")
        );
        let xfs = &mounts[4];
        assert_eq!(xfs.mount_point, b"/mnt/my disk\tx");
        assert_eq!(xfs.root, b"/data/sub");
        assert_eq!(mounts[2].dev, rustix::fs::makedev(254, 0));
    }

    #[test]
    fn unescape_handles_backslash_and_keeps_stray_ones() {
        assert_eq!(unescape(b"a\\134b"), b"a\\b");
        assert_eq!(unescape(b"a\\012"), b"a\n");
        assert_eq!(unescape(b"a\\9x\\"), b"a\\9x\\");
        assert_eq!(unescape(b"\\0401"), b" 1");
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number() {
        let err = parse(b"22 27 0:21 / /proc rw - proc proc rw\n23 x 0:1 / /a rw - e f g\n");
        assert_eq!(err.unwrap_err().0, 2);
        assert!(parse(b"1 2 3:4 / /a rw ext4 /dev/x rw\n").is_err());
        assert!(parse(b"1 2 34 / /a rw - ext4 /dev/x rw\n").is_err());
    }

    #[test]
    fn only_local_block_filesystems_are_captured() {
        for t in ["ext4", "xfs", "btrfs", "vfat", "fuseblk"] {
            assert!(is_local_block(t), "{t}");
        }
        for t in [
            "proc",
            "sysfs",
            "devtmpfs",
            "devpts",
            "cgroup",
            "cgroup2",
            "tmpfs",
            "overlay",
            "nfs",
            "nfs4",
            "cifs",
            "fuse.sshfs",
            "squashfs",
            "iso9660",
            "autofs",
            "9p",
        ] {
            assert!(!is_local_block(t), "{t}");
        }
    }
}
