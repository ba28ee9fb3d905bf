//! The first boot's witness. The restored system's own console settings are not trusted to
//! say it came up: before booting it, verify adds to the scratch copy (never the image) a
//! one-shot systemd unit that, once the default target is active, writes
//! `OSIMAGE-VERIFY-BOOTED <nonce> ...` straight to /dev/ttyS0, and drop-ins that make the
//! emergency and rescue shells write `OSIMAGE-VERIFY-NOT-BOOTED <nonce> ...` first. The nonce
//! is fresh per run, so nothing already on the disk can print it. Everything added is removed
//! again after the boot (the boot itself ran on a throw-away overlay) and the directories get
//! their times back, so the file comparison sees the disk as the restore left it.

use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};

use rustix::fs::Timespec;

use super::BootCheckError;
use super::console::{BOOTED, NOT_BOOTED};

const UNIT: &str = "osimage-verify-boot.service";
const DROP_IN: &str = "osimage-verify-boot.conf";
/// Where systemd keeps the system's own unit links and drop-ins.
const ETC_UNITS: &str = "etc/systemd/system";

/// What was added to a root, to be taken away again.
#[derive(Debug)]
pub struct Witness {
    pub nonce: String,
    /// The default target the unit waits for (`multi-user.target`, `graphical.target`).
    pub target: String,
    /// Files and links made, in order.
    files: Vec<PathBuf>,
    /// Directories made, in order.
    dirs: Vec<PathBuf>,
    /// Directories that existed and got a new entry: their (atime, mtime) before.
    touched: Vec<(PathBuf, Timespec, Timespec)>,
}

/// The default target of the system at `root`: where `default.target` links to, looked up
/// in /etc, then /usr/lib and /lib; `multi-user.target` when no link says otherwise.
pub fn default_target(root: &Path) -> String {
    for dir in [ETC_UNITS, "usr/lib/systemd/system", "lib/systemd/system"] {
        if let Ok(t) = std::fs::read_link(root.join(dir).join("default.target"))
            && let Some(name) = t.file_name().and_then(|n| n.to_str())
            && name.ends_with(".target")
        {
            return name.to_string();
        }
    }
    "multi-user.target".into()
}

/// Whether `root` boots with systemd (the witness is a systemd unit).
pub fn has_systemd(root: &Path) -> bool {
    ["usr/lib/systemd/systemd", "lib/systemd/systemd"]
        .iter()
        .any(|p| root.join(p).is_file())
}

const SCRIPT: &str = "osimage-verify-boot.sh";

fn unit_text(nonce: &str, target: &str) -> String {
    format!(
        "# Added by `osimage verify --boot` to a scratch copy of a restored system.\n\
         [Unit]\n\
         Description=osimage verify --boot: report that {target} was reached\n\
         DefaultDependencies=no\n\
         After={target}\n\
         Before=shutdown.target\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart=/bin/sh /{ETC_UNITS}/{SCRIPT} {target} {nonce}\n"
    )
}

/// The witness itself: says whether TARGET is active, with the firmware the system booted
/// from (and whether Secure Boot was on) and where its block-device filesystems are mounted from, on the first serial port.
fn script_text() -> String {
    format!(
        r#"#!/bin/sh
# Added by `osimage verify --boot` to a scratch copy of a restored system.
target=$1
nonce=$2
fw=BIOS
sb=none
if [ -d /sys/firmware/efi ]; then
    fw=UEFI
    sb=off
    # the SecureBoot variable: 4 attribute bytes, then 1 when on (UEFI 2.10 3.3)
    v=/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c
    [ "$(od -An -tu1 -j4 -N1 "$v" 2>/dev/null | tr -d ' ')" = 1 ] && sb=on
fi
mounts=
while read -r dev dir rest; do
    case "$dev" in /dev/*) mounts="$mounts${{mounts:+,}}$dir=$dev" ;; esac
done </proc/mounts
if systemctl is-active --quiet "$target"; then
    echo "{BOOTED} $nonce target=$target state=$(systemctl is-system-running) firmware=$fw secureboot=$sb mounts=$mounts" >/dev/ttyS0
else
    echo "{NOT_BOOTED} $nonce $target is $(systemctl is-active "$target")" >/dev/ttyS0
fi
"#
    )
}

fn drop_in_text(nonce: &str, shell: &str) -> String {
    format!(
        "# Added by `osimage verify --boot` to a scratch copy of a restored system.\n\
         [Service]\n\
         ExecStartPre=-/bin/sh -c 'systemctl --failed --no-legend --plain >/dev/ttyS0 2>&1; echo \"{NOT_BOOTED} {nonce} {shell} started\" >/dev/ttyS0'\n"
    )
}

/// A fresh nonce: 16 random hex digits.
fn nonce() -> String {
    let mut b = [0u8; 8];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty()).unwrap_or_default();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn times(p: &Path) -> std::io::Result<(Timespec, Timespec)> {
    let m = std::fs::symlink_metadata(p)?;
    let ts = |s: i64, ns: i64| Timespec {
        tv_sec: s,
        tv_nsec: ns,
    };
    Ok((ts(m.atime(), m.atime_nsec()), ts(m.mtime(), m.mtime_nsec())))
}

fn set_times(p: &Path, atime: Timespec, mtime: Timespec) -> std::io::Result<()> {
    let t = rustix::fs::Timestamps {
        last_access: atime,
        last_modification: mtime,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &t,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

impl Witness {
    /// Adds the unit and the drop-ins under `root` (the restored root filesystem, mounted
    /// read-write on the host).
    pub fn add(root: &Path) -> Result<Witness, BootCheckError> {
        let mut w = Witness {
            nonce: nonce(),
            target: default_target(root),
            files: Vec::new(),
            dirs: Vec::new(),
            touched: Vec::new(),
        };
        let etc = root.join(ETC_UNITS);
        w.write(&etc.join(SCRIPT), script_text().as_bytes())?;
        let unit = unit_text(&w.nonce, &w.target);
        w.write(&etc.join(UNIT), unit.as_bytes())?;
        let wants = etc.join(format!("{}.wants", w.target));
        w.link(&wants.join(UNIT), &format!("/{ETC_UNITS}/{UNIT}"))?;
        for shell in ["emergency.service", "rescue.service"] {
            let text = drop_in_text(&w.nonce, shell);
            w.write(
                &etc.join(format!("{shell}.d")).join(DROP_IN),
                text.as_bytes(),
            )?;
        }
        Ok(w)
    }

    /// Makes the parent directories of `path` that are missing, noting the times of the
    /// first one that existed.
    fn parents(&mut self, path: &Path) -> Result<(), BootCheckError> {
        let Some(parent) = path.parent() else {
            return Ok(());
        };
        if !parent.exists() {
            self.parents(parent)?;
            std::fs::create_dir(parent).map_err(|e| BootCheckError::io("making", parent, e))?;
            self.dirs.push(parent.to_path_buf());
        } else if !self.touched.iter().any(|(p, ..)| p == parent) {
            let (a, m) = times(parent).map_err(|e| BootCheckError::io("reading", parent, e))?;
            self.touched.push((parent.to_path_buf(), a, m));
        }
        Ok(())
    }

    fn write(&mut self, path: &Path, bytes: &[u8]) -> Result<(), BootCheckError> {
        self.refuse_existing(path)?;
        self.parents(path)?;
        std::fs::write(path, bytes).map_err(|e| BootCheckError::io("writing", path, e))?;
        self.files.push(path.to_path_buf());
        Ok(())
    }

    fn link(&mut self, path: &Path, target: &str) -> Result<(), BootCheckError> {
        self.refuse_existing(path)?;
        self.parents(path)?;
        symlink(target, path).map_err(|e| BootCheckError::io("linking", path, e))?;
        self.files.push(path.to_path_buf());
        Ok(())
    }

    fn refuse_existing(&self, path: &Path) -> Result<(), BootCheckError> {
        if std::fs::symlink_metadata(path).is_ok() {
            return Err(BootCheckError::io(
                "adding the first-boot unit",
                path,
                std::io::Error::other("already exists in the restored system"),
            ));
        }
        Ok(())
    }

    /// Removes what `add` made and gives the directories their times back.
    pub fn remove(self) -> Result<(), BootCheckError> {
        for f in self.files.iter().rev() {
            std::fs::remove_file(f).map_err(|e| BootCheckError::io("removing", f, e))?;
        }
        for d in self.dirs.iter().rev() {
            std::fs::remove_dir(d).map_err(|e| BootCheckError::io("removing", d, e))?;
        }
        for (p, a, m) in &self.touched {
            set_times(p, *a, *m).map_err(|e| BootCheckError::io("setting the times of", p, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_then_leaves_the_tree_as_it_was() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let etc = root.join(ETC_UNITS);
        std::fs::create_dir_all(&etc).unwrap();
        symlink(
            "/usr/lib/systemd/system/graphical.target",
            etc.join("default.target"),
        )
        .unwrap();
        let old = Timespec {
            tv_sec: 1_600_000_000,
            tv_nsec: 123_456_789,
        };
        set_times(&etc, old, old).unwrap();

        let w = Witness::add(root).unwrap();
        assert_eq!(w.target, "graphical.target");
        let unit = std::fs::read_to_string(etc.join(UNIT)).unwrap();
        assert!(
            unit.contains(&format!("{SCRIPT} graphical.target {}", w.nonce)),
            "{unit}"
        );
        let script = std::fs::read_to_string(etc.join(SCRIPT)).unwrap();
        assert!(
            script.contains(&format!("{BOOTED} $nonce target=$target")),
            "{script}"
        );
        assert!(unit.contains("After=graphical.target"), "{unit}");
        let link = std::fs::read_link(etc.join("graphical.target.wants").join(UNIT)).unwrap();
        assert_eq!(
            link,
            Path::new("/etc/systemd/system/osimage-verify-boot.service")
        );
        let drop = std::fs::read_to_string(etc.join("emergency.service.d").join(DROP_IN)).unwrap();
        assert!(
            drop.contains(&format!("{NOT_BOOTED} {}", w.nonce)),
            "{drop}"
        );
        assert!(
            Witness::add(root).is_err(),
            "a second witness must not overwrite the first"
        );

        w.remove().unwrap();
        let mut left: Vec<_> = std::fs::read_dir(&etc)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        left.sort();
        assert_eq!(left, vec![std::ffi::OsString::from("default.target")]);
        let m = std::fs::metadata(&etc).unwrap();
        assert_eq!((m.mtime(), m.mtime_nsec()), (1_600_000_000, 123_456_789));
    }

    #[test]
    fn default_target_falls_back_to_multi_user() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(default_target(t.path()), "multi-user.target");
    }
}
