//! Issue #19, `--new-uuids` for the block stack, judged by the real tools: the plan of an
//! encrypted LVM system (LUKS2 → VG `vgsys` → ext4 /) is given fresh identities, then its own
//! `cryptsetup luksFormat` arguments are run on a file and its own LVM metadata and PV UUID
//! are given to `pvcreate --uuid --restorefile` and `vgcfgrestore` on a loop device, as the
//! rescue environment does. What cryptsetup and LVM then report, and what osimage's own
//! readers find on the devices, must be the plan's new UUIDs. Neither step needs
//! device-mapper (this host has none): nothing is opened or activated.

use osimage::RestorePlan;
use osimage::layout::stack::{luks, lvm};
use osimage::layout::{
    Disk, DiskLayout, ExtFeatures, FsFeatures, FsRecord, GptPartition, GptTable, LogicalVolume,
    LuksVolume, PartRef, PartitionTable, PhysicalVolume, VolumeGroup,
};

use crate::common;
use crate::common::loopdev::{Loop, MIB, run, sparse};

const VGSYS: &str = include_str!("fixtures/lvm/vgsys.vg");
const OLD_LUKS: &str = "0b0b0b0b-0000-4000-8000-000000000000";
const LINUX: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

fn dev(name: &str, partition: Option<u32>) -> PartRef {
    PartRef {
        disk: 0,
        partition,
        name: name.into(),
        dev: 0,
    }
}

fn ext4(device: PartRef, mp: &str, size: u64, uuid: &str) -> FsRecord {
    FsRecord {
        device,
        fstype: "ext4".into(),
        uuid: uuid.into(),
        mount_point: mp.into(),
        size_bytes: size,
        used_bytes: Some(8 * MIB),
        features: FsFeatures::Ext(ExtFeatures {
            names: vec!["has_journal".into()],
            block_size: 4096,
            inode_size: 256,
            inodes_count: 100,
            blocks_count: size / 4096,
            rev_level: 1,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A 256 MiB GPT disk: 1 /boot ext4 (32 MiB), 2 LUKS2 `vda2_crypt` holding the PV of
/// `vgsys` (as LVM 2.03.16 made it: root, swap, home), / on the root LV.
fn layout() -> DiskLayout {
    let last = 256 * MIB / 512 - 34;
    let p = |n, first: u64, last: u64, t: &str| GptPartition {
        number: n,
        first_lba: first,
        last_lba: last,
        type_guid: t.into(),
        part_guid: format!("1111111{n}-2222-4333-8444-555555555555"),
        name: format!("p{n}"),
        attributes: 0,
    };
    let meta = lvm::parse_vg(VGSYS).unwrap();
    let pv = &meta.pvs[0];
    let crypt = dev("dm-7", None);
    let lvs = meta
        .lvs
        .iter()
        .enumerate()
        .map(|(i, lv)| LogicalVolume {
            name: lv.name.clone(),
            uuid: lv.id.clone(),
            kernel_name: format!("dm-{i}"),
            extents: lv.extents(),
            kind: lv.kind.name().into(),
            recreatable: lv.recreatable(),
            hidden: lv.hidden,
            tags: lv.tags.clone(),
        })
        .collect();
    DiskLayout {
        disks: vec![Disk {
            name: "vda".into(),
            size_bytes: 256 * MIB,
            logical_sector: 512,
            physical_sector: 512,
            table: Some(PartitionTable::Gpt(GptTable {
                disk_guid: "3C2D1E0F-1A2B-4C3D-8E4F-5A6B7C8D9E0F".into(),
                first_usable: 34,
                last_usable: last,
                entries: 128,
                partitions: vec![p(1, 2048, 67583, LINUX), p(2, 67584, last, LINUX)],
            })),
            ..Default::default()
        }],
        filesystems: vec![
            ext4(
                dev("dm-0", None),
                "/",
                40 * MIB,
                "00000003-0000-4000-8000-000000000000",
            ),
            ext4(
                dev("vda1", Some(1)),
                "/boot",
                32 * MIB,
                "00000001-0000-4000-8000-000000000000",
            ),
        ],
        stack: osimage::layout::BlockStack {
            luks: vec![LuksVolume {
                name: "dm-7".into(),
                mapping: "vda2_crypt".into(),
                device: dev("vda2", Some(2)),
                version: 2,
                uuid: OLD_LUKS.into(),
                data_offset_bytes: 16 * MIB,
                // Cheap key derivation: this test is about identities, not strength.
                format_args: vec![
                    "--type=luks2".into(),
                    format!("--uuid={OLD_LUKS}"),
                    "--label=system".into(),
                    "--pbkdf=pbkdf2".into(),
                    "--pbkdf-force-iterations=1000".into(),
                    "--offset=32768".into(),
                ],
                ..Default::default()
            }],
            vgs: vec![VolumeGroup {
                name: meta.name.clone(),
                uuid: meta.id.clone(),
                extent_bytes: meta.extent_size * 512,
                pvs: vec![PhysicalVolume {
                    key: pv.key.clone(),
                    uuid: pv.id.clone(),
                    device: crypt,
                    pe_start_bytes: pv.pe_start * 512,
                    pe_count: pv.pe_count,
                    size_bytes: pv.dev_size * 512,
                }],
                lvs,
                tags: meta.tags.clone(),
                metadata: VGSYS.into(),
            }],
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The kernel's random bytes, as a restore takes them.
fn urandom() -> [u8; 16] {
    use std::io::Read;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .expect("/dev/urandom");
    b
}

/// The plan's stack steps, as `--json` prints them.
fn steps(plan: &RestorePlan) -> Vec<serde_json::Value> {
    let v = serde_json::to_value(plan).unwrap();
    v["stack"].as_array().expect("a stack").clone()
}

/// The LVM command line the restore uses, seeing only `dev` and keeping no backup of the
/// VG in this host's /etc/lvm.
fn lvm(sub: &str, dev: &str, args: &[&str]) -> String {
    let config = format!(
        "devices {{ use_devicesfile = 0 obtain_device_list_from_udev = 0 \
         filter = [ \"a|^{dev}$|\", \"r|.*|\" ] }} \
         activation {{ udev_sync = 0 udev_rules = 0 monitoring = 0 }} \
         global {{ use_lvmpolld = 0 }} backup {{ backup = 0 archive = 0 }}"
    );
    let mut argv = vec![sub, "--config", &config];
    argv.extend_from_slice(args);
    run("lvm", &argv)
}

#[test]
fn new_uuids_luks_and_lvm_made_by_the_real_tools_carry_the_plans_new_ids() {
    let _held = common::loop_devices(module_path!());
    common::need_disk_tools(&[("cryptsetup", "cryptsetup-bin"), ("lvm", "lvm2")]);
    let l = layout();
    let kept = RestorePlan::new(&l, "disk.img", 256 * MIB, 512).unwrap();
    let mut plan = kept.clone();
    plan.renew_identities(&l, &mut |_: &str| Ok(urandom()))
        .unwrap();
    let (old, new) = (steps(&kept), steps(&plan));
    let (old_luks, luks) = (&old[0]["Luks"], &new[0]["Luks"]);
    let (old_vg, vg) = (&old[1]["Vg"], &new[1]["Vg"]);
    let luks_uuid = luks["uuid"].as_str().unwrap();
    assert_eq!(old_luks["uuid"], OLD_LUKS);
    assert_ne!(luks_uuid, OLD_LUKS);
    assert_ne!(vg["uuid"], old_vg["uuid"]);
    let t = tempfile::tempdir().unwrap();

    // LUKS: the plan's luksFormat arguments on a file of partition 2's size.
    let key = t.path().join("key");
    std::fs::write(&key, "a passphrase").unwrap();
    let container = t.path().join("p2.img");
    sparse(&container, (256 * MIB / 512 - 34 - 67584) * 512);
    let mut argv = vec![
        "luksFormat",
        "--batch-mode",
        "--key-file",
        key.to_str().unwrap(),
    ];
    let args: Vec<&str> = luks["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    argv.extend(&args);
    argv.push(container.to_str().unwrap());
    run("cryptsetup", &argv);
    let dumped = run("cryptsetup", &["luksUUID", container.to_str().unwrap()]);
    assert_eq!(dumped.trim(), luks_uuid);
    let f = std::fs::File::open(&container).unwrap();
    let size = f.metadata().unwrap().len();
    let header = luks::read(&f, size).unwrap().expect("a LUKS header");
    assert_eq!(header.uuid, luks_uuid);
    assert_eq!(header.label, "system");

    // LVM: the plan's metadata and PV UUID, on a loop device of the PV's planned size.
    let meta_text = vg["metadata"].as_str().unwrap();
    let meta = lvm::parse_vg(meta_text).unwrap();
    let old_meta = lvm::parse_vg(old_vg["metadata"].as_str().unwrap()).unwrap();
    let pv_uuid = vg["pvs"][0][0].as_str().unwrap();
    assert_eq!(
        pv_uuid, meta.pvs[0].id,
        "pvcreate --uuid is the metadata's PV id"
    );
    assert_ne!(pv_uuid, old_meta.pvs[0].id);
    let file = t.path().join("vg.conf");
    std::fs::write(&file, meta_text).unwrap();
    let image = t.path().join("pv.img");
    sparse(&image, meta.pvs[0].dev_size * 512);
    let disk = Loop::attach(&image);
    let d = disk.dev.as_str();
    let f = file.to_str().unwrap();
    lvm(
        "pvcreate",
        d,
        &["-ff", "-y", "--uuid", pv_uuid, "--restorefile", f, d],
    );
    lvm("vgcfgrestore", d, &["-f", f, "vgsys"]);
    let shown = lvm("vgs", d, &["--noheadings", "-o", "vg_name,vg_uuid"]);
    assert_eq!(
        shown.split_whitespace().collect::<Vec<_>>(),
        ["vgsys", meta.id.as_str()]
    );
    assert_eq!(meta.id, vg["uuid"].as_str().unwrap());
    let shown = lvm("pvs", d, &["--noheadings", "-o", "pv_uuid"]);
    assert_eq!(shown.trim(), pv_uuid);
    let shown = lvm("lvs", d, &["--noheadings", "-o", "lv_name,lv_uuid"]);
    let mut lvs: Vec<(String, String)> = shown
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.to_string()))
        })
        .collect();
    lvs.sort();
    let mut want: Vec<(String, String)> = meta
        .lvs
        .iter()
        .map(|lv| (lv.name.clone(), lv.id.clone()))
        .collect();
    want.sort();
    assert_eq!(lvs, want);
    for (a, b) in meta.lvs.iter().zip(&old_meta.lvs) {
        assert_ne!(a.id, b.id, "LV {}", a.name);
    }
    // osimage's own reader of the PV, as a later capture would read it.
    let pv = std::fs::File::open(d).unwrap();
    let found = lvm::read_pv(&pv, meta.pvs[0].dev_size * 512)
        .unwrap()
        .expect("a PV label");
    assert_eq!(found.pv_uuid, pv_uuid);
    let back = lvm::parse_vg(found.metadata.as_deref().expect("metadata")).unwrap();
    assert_eq!(back.id, meta.id);
    drop(pv);
    // The renamed list names every layer, as `restore --dry-run` prints it.
    let text = plan.to_string();
    for what in [
        "LUKS vda2_crypt UUID".to_string(),
        "LVM VG vgsys UUID".into(),
        "LVM PV UUID on /dev/mapper/vda2_crypt".into(),
        "LVM LV vgsys/root UUID".into(),
    ] {
        assert!(text.contains(&what), "{what} not in\n{text}");
    }
    assert!(text.contains(luks_uuid) && text.contains(pv_uuid), "{text}");
    drop(disk);
}
