//! The source system: `build-source.sh` run once per test process (it caches its result under
//! `tests/cache/e2e/source-<hash of the script>`), and whether the fixture itself boots with a
//! given firmware: asked when a restored disk does not, before the restore is blamed (cached
//! beside it). No test boots the source on its own: every restored disk that boots proves it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::vm::{self, Boot, Drive, Firmware};
use super::{cache_dir, phase_time};

/// Every boot of a Debian to multi-user: about 30 s here, given ten times that.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// The built source disk.
pub struct Source {
    pub dir: PathBuf,
    /// The (first) GPT disk (plain: 2 GiB, BIOS boot, ESP, root ext4; LVM and crypt: 3 GiB,
    /// BIOS boot, ESP, /boot, PV (in LUKS); MD: 2 GiB, BIOS boot, RAID member). Only ever
    /// attached read-only or booted
    /// with `snapshot=on`: it is the reference the restored disk is compared with.
    pub disk: PathBuf,
    /// The ESP's files as its FAT holds them, shown to the capture at ROOT/boot/efi.
    pub esp: PathBuf,
    env: BTreeMap<String, String>,
}

impl Source {
    /// A value from `source.env` (ROOT_UUID, ESP_UUID, MARKER, ...).
    pub fn get(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("{key} not in {}/source.env", self.dir.display()))
    }

    /// Every disk of the source in order (`DISKS` in `source.env`: the MD source has two;
    /// `disk` is the first).
    pub fn disks(&self) -> Vec<PathBuf> {
        match self.env.get("DISKS") {
            Some(d) => d.split_whitespace().map(|n| self.dir.join(n)).collect(),
            None => vec![self.disk.clone()],
        }
    }

    /// The console line the source system prints once it reached multi-user.
    pub fn marker(&self) -> &str {
        self.get("MARKER")
    }

    /// The mounts a boot of this source's disk reports, as the marker line words them
    /// (`BOOT_MOUNTS` in `source.env`; the plain source's / and /boot/efi when absent).
    pub fn boot_mounts(&self) -> Vec<&str> {
        match self.env.get("BOOT_MOUNTS") {
            Some(m) => m.split_whitespace().collect(),
            None => vec!["/=/dev/vda3", "/boot/efi=/dev/vda2"],
        }
    }

    /// The marker line of a boot with `fw` from the virtio disk, with its filesystems mounted
    /// from their partitions (as fstab asks, by UUID: `boot_mounts`), if the console holds
    /// one.
    pub fn booted<'a>(&self, console: &'a str, fw: Firmware) -> Option<&'a str> {
        console.lines().find(|l| {
            l.contains(self.marker())
                && l.contains(vm::marker_word(fw))
                && self
                    .boot_mounts()
                    .iter()
                    .all(|m| l.contains(&format!(" {m}")))
        })
    }
}

static SOURCE: OnceLock<Result<Source, String>> = OnceLock::new();
static LVM_SOURCE: OnceLock<Result<Source, String>> = OnceLock::new();
static MD_SOURCE: OnceLock<Result<Source, String>> = OnceLock::new();
static CRYPT_SOURCE: OnceLock<Result<Source, String>> = OnceLock::new();
static MBR_SOURCE: OnceLock<Result<Source, String>> = OnceLock::new();

/// The source system, built (or found in the cache) once per test process.
pub fn source() -> &'static Source {
    SOURCE
        .get_or_init(|| {
            build(
                &["build-source.sh"],
                "source system build (debootstrap + disk)",
            )
        })
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Issue #19's LVM source (`build-source-stack.sh lvm`: the Debian installer's guided LVM
/// layout, made inside a QEMU guest), built (or found in the cache) once per test process.
/// Its `source.env` names the PV, VG and LVs; its `esp` directory is the ESP's files.
pub fn lvm_source() -> &'static Source {
    stack_source(&LVM_SOURCE, "lvm")
}

/// Issue #19's MD source (`build-source-stack.sh md`: RAID1 on two disks, ext4 / on md0,
/// BIOS only): `disks()` are the two members' disks in order.
pub fn md_source() -> &'static Source {
    stack_source(&MD_SOURCE, "md")
}

/// Issue #19's encrypted-LVM source (`build-source-stack.sh crypt`: d-i's "encrypted LVM",
/// LUKS2 opened as `vda4_crypt` holding the PV; `CRYPT_PASSPHRASE` in its `source.env`).
pub fn crypt_source() -> &'static Source {
    stack_source(&CRYPT_SOURCE, "crypt")
}

/// Issue #24's DOS-partitioned source (`build-source-mbr.sh`: the plain source's tree on a
/// DOS disk, root on primary p1, /home and swap on logical p5 and p6, GRUB in the post-MBR
/// gap, BIOS only), built (or found in the cache) once per test process.
pub fn mbr_source() -> &'static Source {
    MBR_SOURCE
        .get_or_init(|| {
            build(
                &["build-source-mbr.sh"],
                "MBR source system build (from the plain source)",
            )
        })
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn stack_source(cell: &'static OnceLock<Result<Source, String>>, layout: &str) -> &'static Source {
    cell.get_or_init(|| {
        build(
            &["build-source-stack.sh", layout],
            &format!("{layout} source system build (installer guest)"),
        )
    })
    .as_ref()
    .unwrap_or_else(|e| panic!("{e}"))
}

fn build(script: &[&str], phase: &str) -> Result<Source, String> {
    super::need_tools();
    let (script, args) = script.split_first().expect("a script");
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/e2e")
        .join(script);
    let started = Instant::now();
    let out = Command::new("sh")
        .arg(&script)
        .args(args)
        .arg(cache_dir())
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stderr.lines().filter(|l| l.starts_with("build-source")) {
        eprintln!("{line}");
    }
    if !out.status.success() {
        return Err(format!(
            "the e2e source system could not be built ({}): {}\n{}",
            out.status,
            script.display(),
            super::tail(&stderr, 60)
        ));
    }
    // the last line is the script's own: the plain source may come from the cache while
    // the LVM one is built on it
    if stderr
        .lines()
        .last()
        .is_some_and(|l| l.contains("disk built in"))
    {
        phase_time(phase, started.elapsed());
    } else {
        eprintln!("e2e: source system from the cache");
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let env_text = std::fs::read_to_string(dir.join("source.env"))
        .map_err(|e| format!("{}/source.env: {e}", dir.display()))?;
    let env = env_text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Ok(Source {
        disk: dir.join("disk.img"),
        esp: dir.join("esp"),
        dir,
        env,
    })
}

/// Whether the source disk boots to its marker with `fw`: `Ok(marker line)` or why not.
/// Cached per source build (a stamp beside the disk); the disk is booted with `snapshot=on`
/// and never changed.
pub fn boots_with(s: &Source, fw: Firmware) -> Result<String, String> {
    let stamp = s.dir.join(format!("boots-{}.ok", fw.name()));
    if let Ok(line) = std::fs::read_to_string(&stamp) {
        eprintln!("e2e: source boots with {} (cached)", fw.name());
        return Ok(line);
    }
    let o = vm::boot(&Boot {
        name: format!("source-{}", fw.name()),
        firmware: fw,
        cdrom: None,
        disks: vec![Drive {
            file: &s.disk,
            bus: vm::Bus::Virtio,
            snapshot: true,
        }],
        timeout: BOOT_TIMEOUT,
        stop_on: &[s.marker()],
        // the marker is the proof: its power-off is not waited for (the overlay is thrown
        // away); 2 s for the rest of the line to reach the log
        grace: Duration::from_secs(2),
    });
    match s.booted(&o.console, fw) {
        Some(l) => {
            phase_time(&format!("source disk boot ({})", fw.name()), o.elapsed);
            let line = l.trim().to_string();
            eprintln!("e2e: source: {line}");
            let _ = std::fs::write(&stamp, &line);
            Ok(line)
        }
        _ => Err(format!(
            "the SOURCE disk does not boot with {} to `{} {} {}` (the fixture is broken): {}",
            fw.name(),
            s.marker(),
            vm::marker_word(fw),
            s.boot_mounts().join(" "),
            o.describe()
        )),
    }
}

/// The debootstrapped tree the source disk is made from (`base-<key>` beside its `.done`
/// marker in the cache), after making sure the source is built.
pub fn debian_tree() -> PathBuf {
    source();
    let cache = cache_dir();
    let done: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap_or_else(|e| panic!("reading {}: {e}", cache.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "done"))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("base-"))
        })
        .collect();
    assert_eq!(
        done.len(),
        1,
        "one cached Debian tree in {}",
        cache.display()
    );
    done[0].with_extension("")
}

/// Runs `on_restored` (a check of a restored disk's first boot, which panics when it fails);
/// when it fails, runs the same check once on the source disk (`on_source`: booted
/// `snapshot=on`, never changed) and fails saying whether the source passes it, so that a
/// broken fixture is told apart from a broken restore. The stacked sources' boots are proven
/// this way instead of by tests of their own (tests/e2e/README.md, step 2): a boot of the
/// source costs a minute or two under TCG and only says something when a restored disk fails.
pub fn or_blame_the_source<T>(on_restored: impl FnOnce() -> T, on_source: impl FnOnce()) -> T {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    let text = |p: &(dyn std::any::Any + Send)| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "(a panic without a message)".to_string())
    };
    match catch_unwind(AssertUnwindSafe(on_restored)) {
        Ok(v) => v,
        Err(p) => {
            let failed = text(&*p);
            let verdict = match catch_unwind(AssertUnwindSafe(on_source)) {
                Ok(()) => "the SOURCE disk passes the same check: the restore is to blame".into(),
                Err(q) => format!("NOR DOES THE SOURCE (the fixture is broken): {}", text(&*q)),
            };
            panic!("{failed}\n{verdict}");
        }
    }
}
