//! The ISO judged by tools nobody here wrote: xorriso/osirrox, isoinfo, 7-Zip, sfdisk, sgdisk,
//! mtools. And our reader on images xorriso wrote. A missing tool fails the test, naming its
//! Debian package.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use crate::common::iso::*;
use crate::common::{need, run, run_text};
use osimage::iso::{IsoEntryKind, IsoReader, build_grub_boot, write_iso};

fn fixture() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    build_tree(&src);
    let iso = dir.path().join("out.iso");
    write_iso(&spec_from_tree(&src, "OSIMAGE_TOOLS"), &iso).expect("write_iso");
    (dir, iso)
}

#[test]
fn isoinfo_reads_volume_rock_ridge_and_joliet() {
    need(&[("isoinfo", "genisoimage")]);
    let (_dir, iso) = fixture();
    let d = run_text(Command::new("isoinfo").arg("-d").arg("-i").arg(&iso));
    assert!(d.contains("Volume id: OSIMAGE_TOOLS"), "{d}");
    assert!(d.contains("Logical block size is: 2048"), "{d}");
    assert!(d.contains("Joliet with UCS level 3 found"), "{d}");
    assert!(d.contains("Rock Ridge signatures version 1 found"), "{d}");
    let size = std::fs::metadata(&iso).expect("stat").len();
    assert!(
        d.contains(&format!("Volume size is: {}", size / 2048)),
        "{d}"
    );
    let rr = run_text(Command::new("isoinfo").args(["-R", "-l", "-i"]).arg(&iso));
    assert!(rr.contains(&long_name()), "{rr}");
    assert!(
        rr.contains("link-to-pack -> ../osimage/packs/pack-000001.opk"),
        "{rr}"
    );
    assert!(
        rr.contains("Directory listing of /deep/1/2/3/4/5/6/7/8/9/10/11/"),
        "{rr}"
    );
    let plain = run_text(Command::new("isoinfo").args(["-l", "-i"]).arg(&iso));
    assert!(plain.contains("PACK_000000.OPK;1"), "{plain}");
    let joliet = run_text(Command::new("isoinfo").args(["-J", "-l", "-i"]).arg(&iso));
    assert!(joliet.contains("Mixed Case & spaces.TXT"), "{joliet}");
    need(&[("isovfy", "genisoimage")]);
    let v = run_text(Command::new("isovfy").arg(&iso));
    assert!(v.contains("No errors found"), "{v}");
}

#[test]
fn seven_zip_lists_every_entry() {
    need(&[("7z", "p7zip-full")]);
    let (_dir, iso) = fixture();
    let l = run_text(Command::new("7z").arg("l").arg(&iso));
    for p in [
        "README.TXT",
        "osimage/packs/pack-000000.opk",
        "osimage/manifest.bin",
        "deep/1/2/3/4/5/6/7/8/9/10/11/leaf.txt",
        "names/Mixed Case & spaces.TXT",
        "names/mixed case & spaces.txt",
        "emptydir",
    ] {
        assert!(l.contains(p), "7z l lacks {p}:\n{l}");
    }
    let t = run_text(Command::new("7z").arg("t").arg(&iso));
    assert!(t.contains("Everything is Ok"), "{t}");
}

#[test]
fn osirrox_extracts_every_file_byte_for_byte() {
    need(&[("osirrox", "xorriso")]);
    let (dir, iso) = fixture();
    let out = dir.path().join("extracted");
    run(Command::new("osirrox")
        .arg("-indev")
        .arg(&iso)
        .args(["-extract", "/"])
        .arg(&out));
    let src = dir.path().join("src");
    compare_trees(&src, &out);
    compare_trees(&out, &src);
}

/// Every entry of `a` exists in `b` with the same type, content, link target and mode.
fn compare_trees(a: &Path, b: &Path) {
    for entry in std::fs::read_dir(a).expect("read_dir") {
        let pa = entry.expect("entry").path();
        let pb = b.join(pa.file_name().expect("name"));
        let (ma, mb) = (
            std::fs::symlink_metadata(&pa).expect("lstat a"),
            std::fs::symlink_metadata(&pb).unwrap_or_else(|e| panic!("{}: {e}", pb.display())),
        );
        assert_eq!(ma.file_type(), mb.file_type(), "{}", pb.display());
        if ma.file_type().is_symlink() {
            assert_eq!(std::fs::read_link(&pa).ok(), std::fs::read_link(&pb).ok());
            continue;
        }
        assert_eq!(ma.mode() & 0o7777, mb.mode() & 0o7777, "{}", pb.display());
        if ma.is_dir() {
            compare_trees(&pa, &pb);
        } else {
            assert_eq!(ma.mtime(), mb.mtime(), "{}", pb.display());
            let (da, db) = (
                std::fs::read(&pa).expect("read"),
                std::fs::read(&pb).expect("read"),
            );
            assert!(da == db, "content differs: {}", pb.display());
        }
    }
}

#[test]
fn bootable_image_has_both_el_torito_entries_and_a_hybrid_gpt() {
    need(&[
        ("xorriso", "xorriso"),
        ("sfdisk", "fdisk"),
        ("sgdisk", "gdisk"),
        ("mdir", "mtools"),
        ("grub-mkimage", "grub-common"),
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    build_tree(&src);
    let mut spec = spec_from_tree(&src, "OSIMAGE_BOOT");
    let grub = build_grub_boot(
        Path::new("/"),
        TEST_GRUB_CFG,
        &dir.path().join("work"),
        None,
    )
    .expect("GRUB boot images");
    spec.files.extend(grub.files);
    spec.boot = Some(grub.boot);
    let iso = dir.path().join("boot.iso");
    write_iso(&spec, &iso).expect("write_iso");

    let rep = run_text(Command::new("xorriso").arg("-indev").arg(&iso).args([
        "-report_el_torito",
        "plain",
        "-report_system_area",
        "plain",
    ]));
    let line = |prefix: &str| -> Vec<String> {
        rep.lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_string)
            .collect()
    };
    let imgs = line("El Torito boot img :");
    assert_eq!(imgs.len(), 2, "{rep}");
    assert!(
        imgs[0].contains("   1  BIOS  y   none") && imgs[0].contains("    4  "),
        "{rep}"
    );
    assert!(imgs[1].contains("   2  UEFI  y   none"), "{rep}");
    assert!(
        rep.contains("El Torito img path :   1  /boot/grub/i386-pc/eltorito.img"),
        "{rep}"
    );
    assert!(
        rep.contains("El Torito img path :   2  /boot/grub/efi.img"),
        "{rep}"
    );
    assert!(rep.contains("boot-info-table grub2-boot-info"), "{rep}");
    assert!(
        rep.contains("MBR protective-msdos-label grub2-mbr"),
        "{rep}"
    );
    assert!(
        rep.contains("GPT partition path :   1  /boot/grub/efi.img"),
        "{rep}"
    );

    // the GPT's ESP is exactly the El Torito UEFI image
    let r = IsoReader::open(&iso).expect("reader");
    let esp = r.lookup("boot/grub/efi.img").expect("lookup").expect("ESP");
    let boots = r.boot_entries().expect("catalog");
    assert_eq!(boots.len(), 2);
    assert_eq!((boots[0].0, boots[1].0), (0x00, 0xEF));
    assert_eq!(boots[1].2, esp.offset);
    let sf = run_text(Command::new("sfdisk").arg("-d").arg(&iso));
    let want = format!(
        "start={:>12}, size={:>12}, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
        esp.offset / 512,
        esp.len / 512
    );
    assert!(
        sf.contains("label: gpt") && sf.contains(&want),
        "want {want}\n{sf}"
    );
    let sg = run_text(Command::new("sgdisk").arg("-v").arg(&iso));
    assert!(sg.contains("No problems found"), "{sg}");
    let p = run_text(Command::new("sgdisk").arg("-p").arg(&iso));
    assert!(p.contains("EF00  EFI system partition"), "{p}");

    // 7-Zip must still see the ISO (not the GPT) in the hybrid image
    need(&[("7z", "p7zip-full")]);
    let z = run_text(Command::new("7z").arg("l").arg(&iso));
    assert!(
        z.contains("Type = Iso") && z.contains("boot/grub/grub.cfg"),
        "{z}"
    );

    // the ESP is a FAT file system with the removable-media boot path
    let efi_img = dir.path().join("efi.img");
    std::fs::write(&efi_img, read_extent(&iso, esp)).expect("write");
    let m = run_text(
        Command::new("mdir")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&efi_img)
            .arg("::/EFI/BOOT"),
    );
    assert!(
        m.contains("BOOTX64  EFI") || m.contains("BOOTX64.EFI"),
        "{m}"
    );
    assert!(r.lookup(&grub.search_file).expect("ok").is_some());
}

fn read_extent(iso: &Path, e: osimage::iso::IsoExtent) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(iso).expect("open");
    let mut b = vec![0u8; e.len as usize];
    f.read_exact_at(&mut b, e.offset).expect("read");
    b
}

#[test]
fn reader_reads_images_written_by_xorriso() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    build_tree(&src);
    // xorriso always writes Rock Ridge; genisoimage without -R gives a Joliet-only image
    for (tool, names) in [("xorriso", "rr"), ("genisoimage", "joliet")] {
        need(&[(
            tool,
            if tool == "xorriso" {
                "xorriso"
            } else {
                "genisoimage"
            },
        )]);
        let iso = dir.path().join(format!("{names}.iso"));
        let mut cmd = Command::new(tool);
        if tool == "xorriso" {
            cmd.args(["-as", "mkisofs", "-R", "-J"]);
        } else {
            cmd.args(["-J", "-joliet-long"]);
        }
        run(cmd
            .args(["-quiet", "-V", "XORRISO_MADE", "-o"])
            .arg(&iso)
            .arg(&src));
        let r = IsoReader::open(&iso).expect("open");
        assert_eq!(r.volume_id(), "XORRISO_MADE");
        assert_eq!(r.has_rock_ridge(), names == "rr");
        for rel in [
            "osimage/packs/pack-000000.opk",
            "names/Mixed Case & spaces.TXT",
        ] {
            let e = r
                .lookup(rel)
                .expect("lookup")
                .unwrap_or_else(|| panic!("{names}: {rel}"));
            let want = std::fs::read(src.join(rel)).expect("read");
            assert!(read_extent(&iso, e) == want, "{names}: {rel}");
        }
        let kinds: Vec<_> = r
            .read_dir("names")
            .expect("dir")
            .into_iter()
            .map(|e| (e.name, e.kind))
            .collect();
        if names == "rr" {
            assert!(
                kinds.contains(&(long_name(), IsoEntryKind::File)),
                "{kinds:?}"
            );
            assert!(
                kinds.contains(&("link-to-pack".to_string(), IsoEntryKind::Symlink)),
                "{kinds:?}"
            );
        }
    }
}
