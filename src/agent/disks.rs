//! The disks a restore could write to: every whole disk in `/sys/block` but the boot medium's,
//! RAM, loop and optical devices, with its size, model and whether it is blank (no partition
//! table or filesystem signature: docs/DESIGN.md picks the only blank disk in auto mode).

use std::io::Read;

/// A candidate target disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// `/dev/vda`.
    pub device: String,
    pub size_bytes: u64,
    pub model: String,
    /// No partition table or filesystem signature in its first sectors.
    pub blank: bool,
    pub removable: bool,
    pub read_only: bool,
}

impl Disk {
    /// One line for the console.
    pub fn describe(&self) -> String {
        format!(
            "{} size={} ({} MiB) model={:?}{}{}{}",
            self.device,
            self.size_bytes,
            self.size_bytes >> 20,
            self.model,
            if self.blank { " blank" } else { " in-use" },
            if self.removable { " removable" } else { "" },
            if self.read_only { " read-only" } else { "" },
        )
    }

    /// The READY line's form: `/dev/vda:1024MiB:blank`.
    pub fn short(&self) -> String {
        format!(
            "{}:{}MiB:{}",
            self.device,
            self.size_bytes >> 20,
            if self.blank { "blank" } else { "in-use" }
        )
    }
}

/// The candidate disks, the medium's `exclude` disks left out.
pub fn candidates(exclude: &[String]) -> Vec<Disk> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/block")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .into_iter()
        .filter(|n| {
            !["loop", "ram", "zram", "sr", "fd", "dm-", "md"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .filter(|n| !exclude.contains(n))
        .filter_map(|n| probe(&n))
        .collect()
}

fn probe(name: &str) -> Option<Disk> {
    let attr = |a: &str| {
        std::fs::read_to_string(format!("/sys/block/{name}/{a}")).map(|s| s.trim().to_string())
    };
    let sectors: u64 = attr("size").ok()?.parse().ok()?;
    if sectors == 0 {
        return None;
    }
    let model = attr("device/model")
        .or_else(|_| attr("device/name"))
        .or_else(|_| {
            std::fs::read_link(format!("/sys/block/{name}/device/driver")).map(|p| {
                p.file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
        })
        .unwrap_or_default();
    let device = format!("/dev/{name}");
    let mut head = vec![0u8; HEAD_LEN];
    let blank = match std::fs::File::open(&device).and_then(|mut f| read_up_to(&mut f, &mut head)) {
        Ok(n) => !has_signature(&head[..n]),
        Err(_) => false,
    };
    Some(Disk {
        device,
        size_bytes: sectors * 512,
        model,
        blank,
        removable: attr("removable").is_ok_and(|v| v == "1"),
        read_only: attr("ro").is_ok_and(|v| v == "1"),
    })
}

/// Bytes read from the start of a disk: enough to reach the btrfs superblock (64 KiB + 0x40).
pub const HEAD_LEN: usize = 0x10100;

fn read_up_to(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Does the start of a disk carry a partition table or a filesystem/volume signature?
pub fn has_signature(head: &[u8]) -> bool {
    let at = |off: usize, magic: &[u8]| head.get(off..off + magic.len()) == Some(magic);
    at(510, &[0x55, 0xAA])             // MBR (and protective MBR of GPT, FAT boot sector)
        || at(512, b"EFI PART")        // GPT header, 512-byte sectors
        || at(4096, b"EFI PART")       // GPT header, 4 KiB sectors
        || at(512 + 0x18, b"LVM2 001") // LVM2 label (sector 1)
        || at(0x438, &[0x53, 0xEF])    // ext2/3/4 superblock s_magic
        || at(0, b"XFSB")              // XFS
        || at(0x10040, b"_BHRfS_M")    // btrfs
        || at(0, b"LUKS\xba\xbe")      // LUKS
        || at(0x8001, b"CD001")        // ISO 9660
        || at(0, &[0xfc, 0x4e, 0x2b, 0xa9])    // MD RAID superblock 1.1
        || at(4096, &[0xfc, 0x4e, 0x2b, 0xa9]) // MD RAID superblock 1.2
        || at(4096 - 10, b"SWAPSPACE2") // swap, 4 KiB pages
        || at(4096 - 10, b"SWAP-SPACE")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_are_blank_and_signatures_are_not() {
        let zero = vec![0u8; HEAD_LEN];
        assert!(!has_signature(&zero));
        for (off, magic) in [
            (510usize, &b"\x55\xAA"[..]),
            (512, b"EFI PART"),
            (0x438, b"\x53\xEF"),
            (0, b"XFSB"),
            (0x10040, b"_BHRfS_M"),
            (0x8001, b"CD001"),
            (4086, b"SWAPSPACE2"),
            (0, b"\xfc\x4e\x2b\xa9"),
            (4096, b"\xfc\x4e\x2b\xa9"),
        ] {
            let mut d = zero.clone();
            d[off..off + magic.len()].copy_from_slice(magic);
            assert!(has_signature(&d), "{magic:?} at {off:#x}");
        }
        // A short read (a tiny disk) is judged on what there is.
        assert!(!has_signature(&zero[..100]));
    }

    #[test]
    fn host_mkfs_ext4_is_seen() {
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("d.img");
        std::fs::write(&img, vec![0u8; 4 << 20]).unwrap();
        let ok = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&img)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return;
        }
        let bytes = std::fs::read(&img).unwrap();
        assert!(has_signature(&bytes[..HEAD_LEN]));
    }

    #[test]
    fn short_form() {
        let d = Disk {
            device: "/dev/vda".into(),
            size_bytes: 1 << 30,
            model: String::new(),
            blank: true,
            removable: false,
            read_only: false,
        };
        assert_eq!(d.short(), "/dev/vda:1024MiB:blank");
        assert!(d.describe().contains("blank"));
    }
}
