//! `--new-uuids` in the restored tree (phase 7, docs/GENERALIZE.md "New identities"): every
//! text file that names a filesystem, partition, MD array, LUKS container or LVM VG, PV or LV
//! by its old identity (in any of the spellings the plan lists) is rewritten to the new one,
//! then what embeds an old identity in a binary is made again by the restored system's own
//! tools (GRUB's EFI image, the initramfs with its mdadm.conf and crypttab). GRUB's BIOS core image is reinstalled by the plan's
//! `grub_install` step, which `renew_identities` sets.

use std::path::{Path, PathBuf};

use aho_corasick::{AhoCorasick, AhoCorasickBuilder};

use super::super::esp::VfatWriter;
use super::super::plan::RestorePlan;
use super::super::{RestoreError, grub, initramfs};
use super::{ApplyCtx, Made};

/// Text files (absolute paths in the restored system) that name filesystems by identity.
const FILES: &[&str] = &[
    "/etc/fstab",
    "/etc/crypttab",
    "/etc/mdadm/mdadm.conf",
    "/etc/mdadm.conf",
    "/etc/lvm/lvm.conf",
    "/etc/default/grub",
    "/etc/kernel/cmdline",
    "/etc/initramfs-tools/conf.d/resume",
    "/boot/grub/grub.cfg",
    "/boot/grub2/grub.cfg",
    "/boot/grub/custom.cfg",
];

/// Directories whose files (with one of the suffixes; empty: all) are rewritten too.
const DIRS: &[(&str, &[&str])] = &[
    ("/etc/default/grub.d", &[".cfg"]),
    ("/etc/initramfs-tools/conf.d", &[]),
    ("/etc/mdadm/mdadm.conf.d", &[".conf"]),
    ("/etc/mdadm.conf.d", &[".conf"]),
    // LVM's devices file (`PVID=` undashed), which newer LVM reads instead of scanning.
    ("/etc/lvm/devices", &[".devices"]),
    ("/etc/dracut.conf.d", &[".conf"]),
    ("/etc/systemd/system", &[".mount", ".swap", ".automount"]),
    ("/boot/loader/entries", &[".conf"]),
];

/// Files an initramfs generator copies into the image (mdadm's, crypttab, LVM's): when one
/// was rewritten, an initramfs that cannot be searched is made again anyway.
const EMBEDDED: &[&str] = &["/etc/mdadm", "/etc/crypttab", "/etc/lvm"];

/// Larger files are no configuration: left alone.
const MAX_TEXT: u64 = 4 << 20;

/// The old → new pairs that the restored tree may name (each identity's other spellings
/// too), matched without regard to case (blkid prints lower case, GPT tools upper case) and
/// written in the old text's case; a new value of mixed case (LVM's) is written as it is.
struct Renames {
    old: Vec<String>,
    new: Vec<String>,
    ac: AhoCorasick,
}

impl Renames {
    fn of(plan: &RestorePlan) -> Result<Option<Renames>, RestoreError> {
        let mut old: Vec<String> = Vec::new();
        let mut new: Vec<String> = Vec::new();
        for r in plan.renamed.iter().filter(|r| r.referenced) {
            let main = std::iter::once((&r.old, &r.new));
            for (o, n) in main.chain(r.spellings.iter().map(|(o, n)| (o, n))) {
                if !o.is_empty() && !old.contains(o) {
                    old.push(o.clone());
                    new.push(n.clone());
                }
            }
        }
        if old.is_empty() {
            return Ok(None);
        }
        let ac = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(&old)
            .map_err(|e| RestoreError::target(Path::new("--new-uuids"), e.to_string()))?;
        Ok(Some(Renames { old, new, ac }))
    }

    /// `text` with every old identity replaced; `None` when it names none.
    fn rewrite(&self, text: &[u8]) -> Option<(Vec<u8>, usize)> {
        let mut out = Vec::with_capacity(text.len());
        let mut last = 0;
        let mut n = 0;
        for m in self.ac.find_iter(text) {
            out.extend_from_slice(&text[last..m.start()]);
            let found = &text[m.start()..m.end()];
            let new = &self.new[m.pattern().as_usize()];
            let mixed = new.bytes().any(|b| b.is_ascii_lowercase())
                && new.bytes().any(|b| b.is_ascii_uppercase());
            if mixed {
                // LVM's UUIDs are case-sensitive letters and digits: written as they are.
                out.extend_from_slice(new.as_bytes());
            } else if found.iter().any(u8::is_ascii_lowercase) {
                out.extend_from_slice(new.to_ascii_lowercase().as_bytes());
            } else if found.iter().any(u8::is_ascii_uppercase) {
                out.extend_from_slice(new.to_ascii_uppercase().as_bytes());
            } else {
                // Digits only: no case to follow.
                out.extend_from_slice(new.as_bytes());
            }
            last = m.end();
            n += 1;
        }
        if n == 0 {
            return None;
        }
        out.extend_from_slice(&text[last..]);
        Some((out, n))
    }

    /// The old identities `data` names.
    fn named_in(&self, data: &[u8]) -> Vec<String> {
        let mut found: Vec<String> = self
            .ac
            .find_iter(data)
            .map(|m| self.old[m.pattern().as_usize()].clone())
            .collect();
        found.sort();
        found.dedup();
        found
    }
}

/// Rewrites the restored tree for the plan's new identities and remakes what embeds them.
pub(super) fn new_identities(cx: &mut ApplyCtx, made: &[Made]) -> Result<(), RestoreError> {
    let plan = &cx.plan;
    let Some(renames) = Renames::of(plan)? else {
        return Ok(());
    };
    cx.log
        .say("  new identities (--new-uuids): rewriting the references to the old ones");
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for f in FILES {
        if let Some(p) = host_path(plan, made, f) {
            files.push((f.to_string(), p));
        }
    }
    for (dir, suffixes) in DIRS {
        let Some(d) = host_path(plan, made, dir) else {
            continue;
        };
        for (name, p) in list(&d) {
            if suffixes.is_empty() || suffixes.iter().any(|s| name.ends_with(s)) {
                files.push((format!("{dir}/{name}"), p));
            }
        }
    }
    // The ESP's configuration files (GRUB's EFI/<vendor>/grub.cfg, systemd-boot entries).
    let esp = made.iter().find(|m| m.plan.fstype == "vfat");
    let mut esp_binaries = Vec::new();
    if let Some(m) = esp {
        for (rel, p) in walk(&m.dir, 4) {
            let abs = format!("{}/{rel}", m.plan.mount_point.trim_end_matches('/'));
            let lower = rel.to_ascii_lowercase();
            if lower.ends_with(".cfg") || lower.ends_with(".conf") {
                files.push((abs, p));
            } else if lower.ends_with(".efi") {
                esp_binaries.push((abs, p));
            }
        }
    }
    let mut embedded = Vec::new();
    for (shown, path) in files {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.is_file() || meta.len() > MAX_TEXT {
            continue;
        }
        let text = std::fs::read(&path).map_err(|e| RestoreError::io("reading", &path, e))?;
        if let Some((new, n)) = renames.rewrite(&text) {
            // Written in place: the file keeps its owner, mode and xattrs.
            std::fs::write(&path, new).map_err(|e| RestoreError::io("writing", &path, e))?;
            cx.report.boot.push(format!(
                "{shown}: {n} reference{} to old identities rewritten",
                if n == 1 { "" } else { "s" }
            ));
            if EMBEDDED.iter().any(|e| shown.starts_with(e)) {
                embedded.push(shown);
            }
        }
    }
    efi_images(cx, made, &renames, esp, &esp_binaries)?;
    initramfs_images(cx, made, &renames, &embedded)?;
    Ok(())
}

/// An EFI image that embeds an old UUID (a GRUB core image made by `grub-install` without
/// Secure Boot carries its `search.fs_uuid` line) is made again by the tree's grub-install.
fn efi_images(
    cx: &mut ApplyCtx,
    made: &[Made],
    renames: &Renames,
    esp: Option<&Made>,
    binaries: &[(String, PathBuf)],
) -> Result<(), RestoreError> {
    let mut stale = Vec::new();
    for (shown, p) in binaries {
        let data = std::fs::read(p).map_err(|e| RestoreError::io("reading", p, e))?;
        if !renames.named_in(&data).is_empty() {
            stale.push(shown.clone());
        }
    }
    let Some(m) = esp.filter(|_| !stale.is_empty()) else {
        return Ok(());
    };
    let list = stale.join(", ");
    if !matches!(m.vfat, Some(VfatWriter::Mounted(_))) {
        cx.report.boot.push(format!(
            "WARNING: {list} embed an old UUID and this kernel cannot mount the ESP for \
             grub-install: the disk may not boot by UEFI (restore from the rescue environment)"
        ));
        return Ok(());
    }
    let c = cx.chroot(made)?;
    let Some(gi) = c.find(grub::GRUB_INSTALL) else {
        cx.report.boot.push(format!(
            "WARNING: {list} embed an old UUID and the tree has no grub-install to make them \
             again: the disk may not boot by UEFI"
        ));
        return Ok(());
    };
    let esp_dir = format!("--efi-directory={}", m.plan.mount_point);
    let mut runs: Vec<Vec<String>> = Vec::new();
    for s in &stale {
        let rel = s
            .strip_prefix(m.plan.mount_point.trim_end_matches('/'))
            .unwrap_or(s);
        let mut parts = rel.trim_start_matches('/').split('/');
        let (Some(efi), Some(vendor)) = (parts.next(), parts.next()) else {
            continue;
        };
        if !efi.eq_ignore_ascii_case("EFI") {
            continue;
        }
        let mut args = vec![
            gi.clone(),
            "--target=x86_64-efi".to_string(),
            esp_dir.clone(),
            "--no-nvram".to_string(),
        ];
        if vendor.eq_ignore_ascii_case("BOOT") {
            args.push("--removable".into());
        } else {
            args.push(format!("--bootloader-id={vendor}"));
        }
        if !runs.contains(&args) {
            runs.push(args);
        }
    }
    for args in runs {
        let os: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        c.run(&os, &cx.target.device)?;
        cx.report.boot.push(format!(
            "{} ran chrooted: {list} embedded an old UUID",
            args[1..].join(" ")
        ));
    }
    Ok(())
}

/// An initramfs that names an old UUID (resume device, crypttab, mdadm.conf, LVM's devices
/// file, a root= baked in) is made again by the restored system's own generator, chrooted;
/// so is one that cannot be searched when `embedded` (files generators copy in) were
/// rewritten.
fn initramfs_images(
    cx: &mut ApplyCtx,
    made: &[Made],
    renames: &Renames,
    embedded: &[String],
) -> Result<(), RestoreError> {
    let (Some(root), Some(boot)) = (
        made.iter().find(|m| m.plan.mount_point == "/"),
        host_path(&cx.plan, made, "/boot"),
    ) else {
        return Ok(());
    };
    for image in initramfs::images(&boot, &root.dir) {
        let name = image
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let data =
            std::fs::read(&image.path).map_err(|e| RestoreError::io("reading", &image.path, e))?;
        // Why it is made again: the old identities it names.
        let why = match initramfs::contents_matching(&data, &|d| renames.named_in(d)) {
            Ok(found) if found.is_empty() => {
                cx.report
                    .boot
                    .push(format!("initramfs {name} names no old identity: kept"));
                continue;
            }
            Ok(found) => format!("it named {}", found.join(", ")),
            Err(e) if embedded.is_empty() => {
                cx.report
                    .boot
                    .push(format!("initramfs {name} not searched for old UUIDs: {e}"));
                continue;
            }
            Err(e) => format!(
                "it could not be searched ({e}) and {} it may hold were rewritten",
                embedded.join(", ")
            ),
        };
        let c = cx.chroot(made)?;
        match initramfs::regenerate(&c, &image.version, &cx.target.device)? {
            Some(cmd) => cx
                .report
                .boot
                .push(format!("initramfs {name}: {why}; {cmd} ran chrooted")),
            None => cx.report.boot.push(format!(
                "WARNING: initramfs {name}: {why}, and the tree has neither update-initramfs \
                 nor dracut to make it again"
            )),
        }
    }
    Ok(())
}

/// Where the restored system's absolute `path` is now, on the host (it may not exist).
fn host_path(plan: &RestorePlan, made: &[Made], path: &str) -> Option<PathBuf> {
    let i = plan.fs_for(path)?;
    let m = made.get(i)?;
    let rel = path
        .strip_prefix(m.plan.mount_point.trim_end_matches('/'))
        .unwrap_or(path)
        .trim_start_matches('/');
    let p = m.dir.join(rel);
    std::fs::symlink_metadata(&p).is_ok().then_some(p)
}

/// The regular files directly in `dir`, by name.
fn list(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    out.sort();
    out
}

/// Regular files below `dir` (relative `/`-joined names), at most `depth` levels down.
fn walk(dir: &Path, depth: u32) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        match e.file_type() {
            Ok(t) if t.is_file() => out.push((name, e.path())),
            Ok(t) if t.is_dir() && depth > 0 => {
                for (rel, p) in walk(&e.path(), depth - 1) {
                    out.push((format!("{name}/{rel}"), p));
                }
            }
            _ => {}
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::plan::Renamed;

    fn renames(pairs: &[(&str, &str)]) -> Renames {
        let ac = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(pairs.iter().map(|p| p.0))
            .unwrap();
        Renames {
            old: pairs.iter().map(|p| p.0.to_string()).collect(),
            new: pairs.iter().map(|p| p.1.to_string()).collect(),
            ac,
        }
    }

    #[test]
    fn references_are_rewritten_in_the_case_they_were_written() {
        let r = renames(&[
            (
                "e2e0f5e5-0000-4000-8000-000000000003",
                "aaaaaaaa-1111-4222-8333-444444444444",
            ),
            ("E2E0-0002", "BEEF-0001"),
            (
                "E2E0D15C-0000-4000-8000-000000000003",
                "CCCCCCCC-1111-4222-8333-444444444444",
            ),
        ]);
        let fstab = b"UUID=e2e0f5e5-0000-4000-8000-000000000003 / ext4 defaults 0 1\n\
UUID=e2e0-0002 /boot/efi vfat umask=0077 0 1\n\
PARTUUID=e2e0d15c-0000-4000-8000-000000000003 /x ext4 defaults 0 2\n\
# E2E0D15C-0000-4000-8000-000000000003 upper\n";
        let (out, n) = r.rewrite(fstab).expect("names old ids");
        let out = String::from_utf8(out).unwrap();
        assert_eq!(n, 4);
        assert!(
            out.contains("UUID=aaaaaaaa-1111-4222-8333-444444444444 / ext4"),
            "{out}"
        );
        assert!(out.contains("UUID=beef-0001 /boot/efi"), "{out}");
        assert!(
            out.contains("PARTUUID=cccccccc-1111-4222-8333-444444444444 /x"),
            "{out}"
        );
        assert!(
            out.contains("# CCCCCCCC-1111-4222-8333-444444444444 upper"),
            "{out}"
        );
        assert!(r.rewrite(b"UUID=0000 nothing here\n").is_none());
    }

    #[test]
    fn only_referenced_identities_are_rewritten() {
        let mut plan = crate::restore::plan::tests::plan_for_tests();
        plan.renamed = vec![
            Renamed {
                what: "disk GUID".into(),
                old: "AAAA".into(),
                new: "BBBB".into(),
                referenced: false,
                spellings: Vec::new(),
            },
            Renamed {
                what: "ext4 / UUID".into(),
                old: "1111".into(),
                new: "2222".into(),
                referenced: true,
                spellings: Vec::new(),
            },
        ];
        let r = Renames::of(&plan).unwrap().expect("one referenced");
        assert_eq!(r.old, vec!["1111".to_string()]);
        let (out, _) = r.rewrite(b"root=UUID=1111 AAAA").unwrap();
        assert_eq!(out, b"root=UUID=2222 AAAA");
        plan.renamed.clear();
        assert!(Renames::of(&plan).unwrap().is_none());
    }

    #[test]
    fn named_in_lists_each_old_id_once() {
        let r = renames(&[("1111-2222", "x"), ("3333-4444", "y")]);
        let data = b"..1111-2222..3333-4444..1111-2222..";
        assert_eq!(r.named_in(data), vec!["1111-2222", "3333-4444"]);
        assert!(r.named_in(b"nothing").is_empty());
    }

    /// Random-looking, repeatable identities (an LCG), so the LVM ones mix upper and lower
    /// case as real ones do.
    fn repeatable() -> impl FnMut(&str) -> Result<[u8; 16], crate::restore::plan::PlanError> {
        let mut x: u32 = 0x1234_5678;
        move |_: &str| {
            let mut b = [0u8; 16];
            for v in &mut b {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                *v = (x >> 16) as u8;
            }
            Ok(b)
        }
    }

    fn new_of<'a>(plan: &'a RestorePlan, what: &str) -> &'a Renamed {
        plan.renamed
            .iter()
            .find(|r| r.what == what)
            .unwrap_or_else(|| panic!("no {what:?}: {:#?}", plan.renamed))
    }

    fn rewritten(r: &Renames, text: &str) -> String {
        let (out, _) = r.rewrite(text.as_bytes()).expect("names an old identity");
        String::from_utf8(out).unwrap()
    }

    /// Encrypted LVM (LUKS2 → VG vgsys) restored with --new-uuids: crypttab, fstab, GRUB's
    /// configuration and LVM's devices file name the new container, VG, LV and PV; lines
    /// about anything else stay as they were.
    #[test]
    fn encrypted_lvm_references_follow_the_new_uuids() {
        use crate::restore::plan::stack::tests::luks_lvm_layout;
        let l = luks_lvm_layout("vda3_crypt");
        let mut plan = RestorePlan::new(&l, "/dev/sdb", 256 << 20, 512).unwrap();
        plan.renew_identities(&l, &mut repeatable()).unwrap();
        let r = Renames::of(&plan).unwrap().unwrap();
        let luks = new_of(&plan, "LUKS vda3_crypt UUID");
        let vg = new_of(&plan, "LVM VG vgsys UUID");
        let root = new_of(&plan, "LVM LV vgsys/root UUID");
        let pv = new_of(&plan, "LVM PV UUID on /dev/mapper/vda3_crypt");
        assert_eq!(vg.old, "xA1djd-XRLR-hkh0-PakQ-rHit-ifke-2k5rJW");
        assert_eq!(root.old, "pYeyPG-i6TT-rjIo-hNds-HPxN-flRH-DLUH1b");
        assert_eq!(pv.old, "YLIRXm-gyvO-0lEQ-ZraS-b5TB-weUw-r7M4XQ");
        let mixed = |s: &str| {
            s.bytes().any(|b| b.is_ascii_lowercase()) && s.bytes().any(|b| b.is_ascii_uppercase())
        };
        assert!(
            mixed(&vg.new) && mixed(&root.new),
            "{} {}",
            vg.new,
            root.new
        );
        let crypttab = "# <target name>\t<source device>\t\t<key file>\t<options>\n\
vda3_crypt UUID=0b0b0b0b-0000-4000-8000-000000000000 none luks,discard\n\
cswap /dev/disk/by-partlabel/swap /dev/urandom swap,cipher=aes-xts-plain64,size=256\n\
data_crypt UUID=0c0c0c0c-0000-4000-8000-000000000000 /etc/keys/data.key luks\n";
        assert_eq!(
            rewritten(&r, crypttab),
            crypttab.replace("0b0b0b0b-0000-4000-8000-000000000000", &luks.new)
        );
        let u = |s: &str| s.replace('-', "");
        let fstab = format!(
            "/dev/mapper/vgsys-root / ext4 errors=remount-ro 0 1\n\
/dev/disk/by-id/dm-uuid-LVM-{}{} /srv ext4 defaults 0 2\n\
/dev/disk/by-id/dm-uuid-CRYPT-LUKS2-{}-vda3_crypt none auto noauto 0 0\n\
/dev/mapper/vgsys-swap none swap sw 0 0\n",
            u(&vg.old),
            u(&root.old),
            u(&luks.old)
        );
        let out = rewritten(&r, &fstab);
        assert_eq!(
            out,
            format!(
                "/dev/mapper/vgsys-root / ext4 errors=remount-ro 0 1\n\
/dev/disk/by-id/dm-uuid-LVM-{}{} /srv ext4 defaults 0 2\n\
/dev/disk/by-id/dm-uuid-CRYPT-LUKS2-{}-vda3_crypt none auto noauto 0 0\n\
/dev/mapper/vgsys-swap none swap sw 0 0\n",
                u(&vg.new),
                u(&root.new),
                u(&luks.new)
            )
        );
        let grub = format!(
            "insmod lvm\nset root='lvmid/{}/{}'\ncryptomount -u {}\nset timeout=5\n",
            vg.old,
            root.old,
            u(&luks.old)
        );
        assert_eq!(
            rewritten(&r, &grub),
            format!(
                "insmod lvm\nset root='lvmid/{}/{}'\ncryptomount -u {}\nset timeout=5\n",
                vg.new,
                root.new,
                u(&luks.new)
            )
        );
        let devices = format!(
            "# LVM uses devices listed in this file.\nVERSION=1.1.2\n\
IDTYPE=devname IDNAME=/dev/mapper/vda3_crypt DEVNAME=/dev/mapper/vda3_crypt PVID={} PART=0\n\
IDTYPE=sys_wwid IDNAME=naa.600 DEVNAME=/dev/sdz PVID=Aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
            u(&pv.old)
        );
        assert_eq!(
            rewritten(&r, &devices),
            devices.replace(&u(&pv.old), &u(&pv.new))
        );
        // what an initramfs holding that crypttab is searched for
        assert_eq!(r.named_in(crypttab.as_bytes()), vec![luks.old.as_str()]);
    }

    /// Debian's mdadm.conf (mkconf's layout) for a RAID1 root restored with --new-uuids: the
    /// restored array's line follows, another array's and the rest stay.
    #[test]
    fn mdadm_conf_and_md_references_follow_the_new_array_uuid() {
        use crate::restore::plan::several::{DiskTarget, plan_disks};
        let l = crate::restore::plan::stack::tests::raid1_layout();
        let t = |source: &str, device: &str| DiskTarget {
            source: source.into(),
            device: device.into(),
            size_bytes: 1 << 30,
            sector: 512,
        };
        let mut plans = plan_disks(&l, &[t("vda", "/dev/sdb"), t("vdb", "/dev/sdc")]).unwrap();
        plans[0].renew_identities(&l, &mut repeatable()).unwrap();
        let md = new_of(&plans[0], "MD /dev/md0 UUID").clone();
        assert_eq!(md.old, "11111111:22222222:33333333:44444444");
        let r = Renames::of(&plans[0]).unwrap().unwrap();
        let conf = "# mdadm.conf\n#\n# !NB! Run update-initramfs -u after updating this file.\n\
HOMEHOST <system>\nMAILADDR root\n\
# definitions of existing MD arrays\n\
ARRAY /dev/md/0  metadata=1.2 UUID=11111111:22222222:33333333:44444444 name=host:0\n\
ARRAY /dev/md/1  metadata=1.2 UUID=55555555:66666666:77777777:88888888 name=host:1\n\n\
# This configuration was auto-generated on Sat, 05 Dec 2026 by mkconf\n";
        let out = rewritten(&r, conf);
        let want = conf.replace("11111111:22222222:33333333:44444444", &md.new);
        assert_eq!(out, want);
        assert!(out.contains("UUID=55555555:66666666:77777777:88888888 name=host:1"));
        let h = md.new.replace(':', "");
        let fstab =
            "/dev/disk/by-id/md-uuid-11111111:22222222:33333333:44444444 / ext4 defaults 0 1\n";
        assert_eq!(rewritten(&r, fstab), fstab.replace(&md.old, &md.new));
        let grub = "set root='mduuid/11111111222222223333333344444444'\n";
        assert_eq!(rewritten(&r, grub), format!("set root='mduuid/{h}'\n"));
        // blkid's spelling of a member's array UUID
        let blkid = "UUID=11111111-2222-2222-3333-333344444444";
        let dashed = format!(
            "UUID={}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        );
        assert_eq!(rewritten(&r, blkid), dashed);
        assert!(
            r.rewrite(b"ARRAY /dev/md/1 UUID=55555555:66666666:77777777:88888888\n")
                .is_none()
        );
    }
}
