//! Issue #11, several disks: a system whose root is on one disk and /home on another is
//! captured, then restored onto a mapping (`--target` for the system disk, `--map` for the
//! other); each filesystem comes back on its own disk with its identity, and /home's files are
//! on the home disk, not in the root. A mapping naming a disk the image did not record is
//! refused with the names it did record; without the home disk, /home's files go into the
//! root and the plan says so.
//!
//! Needs root, losetup, partx, sfdisk, mkfs.ext4 and blkid (CI has them).

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::loopdev::{Loop, MIB, Mounted, blkid, run, sfdisk_script, sparse};
use osimage::PayloadReader;

const ROOT_UUID: &str = "5e7e2a1a-0000-4000-8000-00000000000a";
const HOME_UUID: &str = "5e7e2a1a-0000-4000-8000-00000000000b";
const LINUX: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

struct Source {
    image: PathBuf,
    /// The recorded names of the system disk and the home disk (`loop3`).
    system: String,
    home: String,
}

fn gpt_one_partition(img: &Path, bytes: u64) {
    sparse(img, bytes);
    sfdisk_script(img, &format!("label: gpt\nstart=2048, type={LINUX}\n"));
}

fn source() -> &'static Source {
    static S: OnceLock<Source> = OnceLock::new();
    S.get_or_init(|| {
        common::require_root();
        common::need_disk_tools(&[("mkfs.ext4", "e2fsprogs")]);
        let dir = common::scratch().keep();
        common::remove_at_exit(&dir);
        let (a, b) = (dir.join("system.img"), dir.join("home.img"));
        gpt_one_partition(&a, 192 * MIB);
        gpt_one_partition(&b, 96 * MIB);
        let (la, lb) = (Loop::attach(&a), Loop::attach(&b));
        run(
            "mkfs.ext4",
            &["-q", "-F", "-U", ROOT_UUID, "-L", "sysroot", &la.part(1)],
        );
        run(
            "mkfs.ext4",
            &["-q", "-F", "-U", HOME_UUID, "-L", "home", &lb.part(1)],
        );
        let mnt = dir.join("root");
        let root = Mounted::new(&la.part(1), &mnt, &[]);
        for d in ["etc", "var/log", "home"] {
            std::fs::create_dir_all(mnt.join(d)).unwrap();
        }
        std::fs::write(
            mnt.join("etc/fstab"),
            format!(
                "UUID={ROOT_UUID} / ext4 errors=remount-ro 0 1\n\
                 UUID={HOME_UUID} /home ext4 defaults 0 2\n"
            ),
        )
        .unwrap();
        std::fs::write(mnt.join("etc/hostname"), "twodisks\n").unwrap();
        let home = Mounted::new(&lb.part(1), &mnt.join("home"), &[]);
        std::fs::create_dir_all(mnt.join("home/alice")).unwrap();
        std::fs::write(mnt.join("home/alice/notes.txt"), "on the second disk\n").unwrap();
        run(
            "chown",
            &["-R", "1000:1000", mnt.join("home/alice").to_str().unwrap()],
        );
        let image = dir.join("two.oimg");
        common::capture(&mnt, &image, &[]);
        drop(home);
        drop(root);
        let r = PayloadReader::open(&image, &osimage::Unlock::none()).unwrap();
        let layout = osimage::layout_of(&r).unwrap();
        let disk_of = |mp: &str| {
            let f = layout
                .filesystems
                .iter()
                .find(|f| f.mount_point == mp)
                .unwrap_or_else(|| panic!("{mp} not recorded: {layout:?}"));
            layout.disks[f.device.disk as usize].name.clone()
        };
        let (system, home) = (disk_of("/"), disk_of("/home"));
        assert_ne!(
            system, home,
            "the fixture should span two disks: {layout:?}"
        );
        drop((la, lb));
        Source {
            image,
            system,
            home,
        }
    })
}

#[test]
fn two_disk_system_restores_onto_a_mapping_each_filesystem_on_its_own_disk() {
    let _disks = common::loop_devices(module_path!());
    let s = source();
    let dir = common::scratch();
    let (ta, tb) = (dir.path().join("a.img"), dir.path().join("b.img"));
    sparse(&ta, 256 * MIB);
    sparse(&tb, 128 * MIB);
    let map = format!("{}={}", s.home, tb.display());
    let out = common::osimage([
        "restore".as_ref(),
        s.image.as_os_str(),
        "--target".as_ref(),
        ta.as_os_str(),
        "--map".as_ref(),
        map.as_ref(),
    ])
    .ok()
    .stdout_str();
    assert_eq!(
        out.matches("Restore plan").count(),
        2,
        "one plan per disk: {out}"
    );
    assert!(!out.contains("is on another disk"), "{out}");
    let (la, lb) = (Loop::attach(&ta), Loop::attach(&tb));
    assert_eq!(blkid(&la.part(1), "UUID"), ROOT_UUID);
    assert_eq!(blkid(&lb.part(1), "UUID"), HOME_UUID);
    assert_eq!(blkid(&lb.part(1), "LABEL"), "home");
    let (ma, mb) = (dir.path().join("ra"), dir.path().join("rb"));
    let root = Mounted::new(&la.part(1), &ma, &[]);
    let home = Mounted::new(&lb.part(1), &mb, &[]);
    assert!(
        common::is_empty_dir(&ma.join("home")),
        "/home's files belong on the home disk"
    );
    let notes = mb.join("alice/notes.txt");
    assert_eq!(
        std::fs::read_to_string(&notes).unwrap(),
        "on the second disk\n"
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&notes).unwrap().uid(), 1000);
    let log = std::fs::read_to_string(ma.join("var/log/osimage-restore.log")).unwrap();
    assert!(
        log.contains(&ta.display().to_string()) && log.contains(&tb.display().to_string()),
        "{log}"
    );
    // the home disk grew to its target: one partition to the end
    let t = common::loopdev::sfdisk_json(&tb);
    let p = &t["partitiontable"]["partitions"][0];
    assert!(p["size"].as_u64().unwrap() > 200_000, "{p}");
    drop((root, home));
}

#[test]
fn a_disk_left_out_puts_its_files_in_the_root_and_bad_maps_name_the_recorded_disks() {
    let _disks = common::loop_devices(module_path!());
    let s = source();
    let dir = common::scratch();
    let ta = dir.path().join("only-a.img");
    sparse(&ta, 256 * MIB);
    let wrong = format!("sdz={}", dir.path().join("x.img").display());
    sparse(&dir.path().join("x.img"), 128 * MIB);
    let bad = common::osimage([
        "restore".as_ref(),
        s.image.as_os_str(),
        "--target".as_ref(),
        ta.as_os_str(),
        "--map".as_ref(),
        wrong.as_ref(),
    ]);
    assert_eq!(bad.code, 1, "{}", bad.describe());
    assert!(
        bad.stderr.contains("\"sdz\"")
            && bad.stderr.contains(&s.home)
            && bad.stderr.contains(&s.system),
        "{}",
        bad.stderr
    );
    let out = common::osimage([
        "restore".as_ref(),
        s.image.as_os_str(),
        "--target".as_ref(),
        ta.as_os_str(),
    ])
    .ok()
    .stdout_str();
    assert!(
        out.contains("/home") && out.contains("is on another disk"),
        "{out}"
    );
    let la = Loop::attach(&ta);
    let m = dir.path().join("r");
    let root = Mounted::new(&la.part(1), &m, &[]);
    assert_eq!(
        std::fs::read_to_string(m.join("home/alice/notes.txt")).unwrap(),
        "on the second disk\n"
    );
    drop(root);
}
