//! The disks a restore could write to: every whole disk in `/sys/block` but the boot medium's,
//! RAM, loop and optical devices, with its size, model and whether it is blank (no partition
//! table or filesystem signature: docs/DESIGN.md picks the only blank disk in auto mode).

use std::io::Read;

use crate::layout::probe::has_signature;

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

#[cfg(test)]
mod tests {
    use super::*;

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
