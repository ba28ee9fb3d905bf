//! The initramfs container: a cpio archive in the "new ASCII" (newc) format, the only one the
//! kernel unpacks (Linux `Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! Each entry is a 110-byte ASCII header, the NUL-terminated name padded to 4 bytes, then the
//! data padded to 4 bytes; the archive ends with the entry `TRAILER!!!`. Names are relative
//! (`bin/busybox`), parents come before their children, symlink targets are the data.

use std::io::{self, Read, Write};

/// `S_IFMT` kinds as the newc `mode` field carries them.
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;

/// Length of a newc header: the magic and 13 fields of 8 hex digits.
const HEADER_LEN: usize = 6 + 13 * 8;
const _: () = assert!(HEADER_LEN == 110);

/// The kind of a device node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Char,
    /// newc carries block devices too; the rescue tree ships only character devices (the
    /// disks appear in devtmpfs), so only the tests write one.
    #[cfg_attr(not(test), allow(dead_code))]
    Block,
}

/// One newc header's fields, in their on-disk order (buffer-format.rst, "c_" fields).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Header {
    ino: u32,       // c_ino
    mode: u32,      // c_mode: file type and permissions
    uid: u32,       // c_uid
    gid: u32,       // c_gid
    nlink: u32,     // c_nlink
    mtime: u32,     // c_mtime (seconds; newc has 32 bits)
    filesize: u32,  // c_filesize (must be <= 0xffffffff)
    devmajor: u32,  // c_maj
    devminor: u32,  // c_min
    rdevmajor: u32, // c_rmaj
    rdevminor: u32, // c_rmin
    namesize: u32,  // c_namesize, including the trailing NUL
                    // c_chksum: always 0 for "070701"
}

impl Header {
    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..6].copy_from_slice(b"070701");
        let fields = [
            self.ino,
            self.mode,
            self.uid,
            self.gid,
            self.nlink,
            self.mtime,
            self.filesize,
            self.devmajor,
            self.devminor,
            self.rdevmajor,
            self.rdevminor,
            self.namesize,
            0,
        ];
        for (i, v) in fields.iter().enumerate() {
            let hex = format!("{v:08X}");
            out[6 + i * 8..6 + (i + 1) * 8].copy_from_slice(hex.as_bytes());
        }
        out
    }
}

/// Streams a newc archive into `W`. Every entry is owned by root; `mtime` is shared.
pub struct CpioWriter<W: Write> {
    out: W,
    written: u64,
    next_ino: u32,
    mtime: u32,
}

impl<W: Write> CpioWriter<W> {
    /// A writer stamping every entry with `mtime` (seconds since the epoch).
    pub fn new(out: W, mtime: u32) -> Self {
        CpioWriter {
            out,
            written: 0,
            next_ino: 1,
            mtime,
        }
    }

    /// A directory; `perm` is the permission bits only.
    pub fn dir(&mut self, name: &str, perm: u32) -> io::Result<()> {
        self.entry(
            name,
            S_IFDIR | (perm & 0o7777),
            2,
            0,
            (0, 0),
            &mut io::empty(),
        )
    }

    /// A regular file of exactly `size` bytes read from `data`.
    pub fn file(
        &mut self,
        name: &str,
        perm: u32,
        size: u64,
        data: &mut dyn Read,
    ) -> io::Result<()> {
        let size = u32::try_from(size).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name}: over 4 GiB, newc cannot hold it"),
            )
        })?;
        self.entry(name, S_IFREG | (perm & 0o7777), 1, size, (0, 0), data)
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        let len = target.len() as u32;
        self.entry(
            name,
            S_IFLNK | 0o777,
            1,
            len,
            (0, 0),
            &mut target.as_bytes(),
        )
    }

    /// A device node.
    pub fn device(
        &mut self,
        name: &str,
        kind: DeviceKind,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> io::Result<()> {
        let fmt = match kind {
            DeviceKind::Char => S_IFCHR,
            DeviceKind::Block => S_IFBLK,
        };
        self.entry(
            name,
            fmt | (perm & 0o7777),
            1,
            0,
            (major, minor),
            &mut io::empty(),
        )
    }

    /// Writes the trailer and returns the sink and the archive's length.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        let header = Header {
            nlink: 1,
            namesize: b"TRAILER!!!".len() as u32 + 1,
            ..Header::default()
        };
        self.raw_entry(&header, "TRAILER!!!", &mut io::empty())?;
        self.out.flush()?;
        Ok((self.out, self.written))
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        filesize: u32,
        rdev: (u32, u32),
        data: &mut dyn Read,
    ) -> io::Result<()> {
        if name.is_empty() || name.starts_with('/') || name.contains('\0') || name == "TRAILER!!!" {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad cpio name {name:?}"),
            ));
        }
        let header = Header {
            ino: self.next_ino,
            mode,
            nlink,
            mtime: self.mtime,
            filesize,
            rdevmajor: rdev.0,
            rdevminor: rdev.1,
            namesize: name.len() as u32 + 1,
            ..Header::default()
        };
        self.next_ino += 1;
        self.raw_entry(&header, name, data)
    }

    fn raw_entry(&mut self, header: &Header, name: &str, data: &mut dyn Read) -> io::Result<()> {
        self.put(&header.encode())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        let want = u64::from(header.filesize);
        let copied = io::copy(&mut data.take(want), &mut self.out)?;
        self.written += copied;
        if copied != want {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{name}: expected {want} bytes, read {copied} (changed while building?)"),
            ));
        }
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// newc: header+name and data each end on a 4-byte boundary.
    fn pad(&mut self) -> io::Result<()> {
        let rem = (self.written % 4) as usize;
        if rem != 0 {
            self.put(&[0u8; 4][..4 - rem])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn sample() -> Vec<u8> {
        let mut w = CpioWriter::new(Vec::new(), 1_700_000_000);
        w.dir("bin", 0o755).unwrap();
        let body = b"hello, initramfs\n";
        w.file("bin/hello", 0o644, body.len() as u64, &mut &body[..])
            .unwrap();
        w.file("bin/x", 0o4755, 1, &mut &b"y"[..]).unwrap();
        w.symlink("bin/sh", "busybox").unwrap();
        w.dir("dev", 0o755).unwrap();
        w.device("dev/console", DeviceKind::Char, 0o600, 5, 1)
            .unwrap();
        w.device("dev/null", DeviceKind::Char, 0o666, 1, 3).unwrap();
        w.device("dev/sda", DeviceKind::Block, 0o660, 8, 0).unwrap();
        let (out, len) = w.finish().unwrap();
        assert_eq!(len as usize, out.len());
        out
    }

    #[test]
    fn header_fields_at_spec_offsets() {
        let h = Header {
            ino: 0x12,
            mode: 0o100644,
            namesize: 6,
            filesize: 0xabcdef,
            ..Header::default()
        };
        let b = h.encode();
        assert_eq!(&b[0..6], b"070701");
        assert_eq!(&b[6..14], b"00000012");
        assert_eq!(&b[14..22], b"000081A4");
        assert_eq!(&b[54..62], b"00ABCDEF");
        assert_eq!(&b[94..102], b"00000006");
        assert_eq!(&b[102..110], b"00000000");
    }

    #[test]
    fn entries_are_four_byte_aligned_and_end_with_trailer() {
        let out = sample();
        assert_eq!(out.len() % 4, 0);
        // Walk the archive: every header starts with the magic at an aligned offset.
        let mut off = 0;
        let mut names = Vec::new();
        loop {
            assert_eq!(off % 4, 0);
            assert_eq!(&out[off..off + 6], b"070701");
            let field = |i: usize| {
                let s = std::str::from_utf8(&out[off + 6 + i * 8..off + 14 + i * 8]).unwrap();
                usize::from_str_radix(s, 16).unwrap()
            };
            let (size, namesize) = (field(6), field(11));
            let name = std::str::from_utf8(&out[off + 110..off + 110 + namesize - 1]).unwrap();
            names.push(name.to_string());
            off = (off + 110 + namesize).div_ceil(4) * 4;
            off = (off + size).div_ceil(4) * 4;
            if name == "TRAILER!!!" {
                break;
            }
        }
        assert_eq!(off, out.len());
        assert_eq!(names.last().unwrap(), "TRAILER!!!");
        assert_eq!(names.len(), 9);
    }

    #[test]
    fn rejects_absolute_and_reserved_names() {
        let mut w = CpioWriter::new(Vec::new(), 0);
        assert!(w.dir("/bin", 0o755).is_err());
        assert!(w.dir("TRAILER!!!", 0o755).is_err());
        assert!(w.file("short", 0o644, 10, &mut &b"abc"[..]).is_err());
        let _ = w.finish();
    }

    /// GNU cpio judges the archive: names, types, modes, link targets and device numbers.
    #[test]
    fn gnu_cpio_lists_what_we_wrote() {
        // A missing checker fails the test (never a silent pass): .ci/apt-packages has it.
        assert!(
            Command::new("cpio").arg("--version").output().is_ok(),
            "`cpio` not found: install the Debian package cpio"
        );
        let archive = sample();
        let mut child = Command::new("cpio")
            .args(["-t", "-v", "--quiet"])
            .env("LC_ALL", "C")
            .env("TZ", "UTC")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&archive).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        let find = |name: &str| {
            lines
                .iter()
                .find(|l| l.contains(&name))
                .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
        };
        assert_eq!(find("bin")[0], "drwxr-xr-x");
        assert_eq!(find("bin/hello")[0], "-rw-r--r--");
        assert_eq!(find("bin/hello")[4], "17");
        assert_eq!(find("bin/x")[0], "-rwsr-xr-x");
        let sh = find("bin/sh");
        assert!(sh[0].starts_with('l'));
        assert_eq!(sh.last().unwrap(), &"busybox");
        // Device lines show "major, minor" where a file shows its size.
        let console = find("dev/console");
        assert_eq!(console[0], "crw-------");
        assert_eq!((console[4], console[5]), ("5,", "1"));
        assert_eq!((find("dev/null")[4], find("dev/null")[5]), ("1,", "3"));
        assert_eq!(find("dev/sda")[0], "brw-rw----");
        assert_eq!(lines.len(), 8, "{text}");
    }
}
