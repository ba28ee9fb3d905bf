//! The restored tree's `etc/fstab` for the default layout (docs/RESTORE.md "Default layout"):
//! the image recorded no disks, so the entries for `/` and the ESP are written for the fresh
//! UUIDs, and entries naming block devices that the new disk does not have are commented out
//! (a missing device stops a boot for minutes). Everything else (comments, tmpfs, proc, network
//! filesystems) is kept as it was.

/// One filesystem the default layout made: `UUID=uuid  mount_point  fstype  options  0  pass`.
pub struct NewEntry<'a> {
    pub uuid: &'a str,
    pub mount_point: &'a str,
    pub fstype: &'a str,
    pub options: &'a str,
    pub pass: u32,
}

/// Marks a line this rewrite disabled.
pub const DISABLED: &str = "#osimage-default-layout: no such device: ";

/// Does an fstab spec name a block device (by identity or by node)?
fn names_block_device(spec: &str) -> bool {
    ["UUID=", "LABEL=", "PARTUUID=", "PARTLABEL=", "/dev/"]
        .iter()
        .any(|p| spec.starts_with(p))
        && !spec.starts_with("/dev/shm")
}

/// `old` (the tree's fstab, possibly empty) rewritten for `new`.
pub fn rewrite(old: &str, new: &[NewEntry]) -> String {
    let mut out = String::new();
    let mut written = vec![false; new.len()];
    for line in old.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if line.trim_start().starts_with('#') || fields.len() < 2 {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let mp = crate::layout::fstab::unescape(fields[1]);
        if let Some(i) = new.iter().position(|n| n.mount_point == mp) {
            // The tree's options are kept when they were for the same filesystem type.
            let same_type = fields.get(2) == Some(&new[i].fstype);
            let options = match fields.get(3) {
                Some(o) if same_type => o,
                _ => new[i].options,
            };
            out.push_str(&entry(&new[i], options));
            written[i] = true;
        } else if names_block_device(fields[0]) {
            out.push_str(DISABLED);
            out.push_str(line);
            out.push('\n');
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    for (n, done) in new.iter().zip(written) {
        if !done {
            out.push_str(&entry(n, n.options));
        }
    }
    out
}

fn entry(n: &NewEntry, options: &str) -> String {
    let mp = n.mount_point.replace(' ', "\\040");
    format!("UUID={} {mp} {} {options} 0 {}\n", n.uuid, n.fstype, n.pass)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new() -> Vec<NewEntry<'static>> {
        vec![
            NewEntry {
                uuid: "aaaa",
                mount_point: "/",
                fstype: "ext4",
                options: "errors=remount-ro",
                pass: 1,
            },
            NewEntry {
                uuid: "AB-CD",
                mount_point: "/boot/efi",
                fstype: "vfat",
                options: "umask=0077",
                pass: 2,
            },
        ]
    }

    #[test]
    fn empty_fstab_gets_both_entries() {
        assert_eq!(
            rewrite("", &new()),
            "UUID=aaaa / ext4 errors=remount-ro 0 1\nUUID=AB-CD /boot/efi vfat umask=0077 0 2\n"
        );
    }

    #[test]
    fn existing_entries_are_replaced_and_stale_devices_disabled() {
        let old = "# static file system information\n\
                   UUID=old / ext4 noatime 0 0\n\
                   /dev/sda1 /boot/efi ext2 noauto 0 0\n\
                   /dev/sdb1 /data xfs defaults 0 2\n\
                   tmpfs /tmp tmpfs nosuid 0 0\n\
                   LABEL=swap none swap sw 0 0\n";
        let got = rewrite(old, &new());
        assert_eq!(
            got,
            "# static file system information\n\
             UUID=aaaa / ext4 noatime 0 1\n\
             UUID=AB-CD /boot/efi vfat umask=0077 0 2\n\
             #osimage-default-layout: no such device: /dev/sdb1 /data xfs defaults 0 2\n\
             tmpfs /tmp tmpfs nosuid 0 0\n\
             #osimage-default-layout: no such device: LABEL=swap none swap sw 0 0\n"
        );
    }
}
