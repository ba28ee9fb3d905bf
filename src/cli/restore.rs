//! `osimage restore`: the restore agent from any Linux (issue #5). Parsing and printing only;
//! the work is `osimage::restore`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Args;

use osimage::GeneralizeOptions;
use osimage::PayloadReader;
use osimage::Progress;
use osimage::{DirRequest, RestoreError, RestoreOptions, RestoreRequest, Targets};
use osimage::{LeaseError, ReadLease};

use super::json::restore as json;
use super::read_lock::{LockArgs, ReadLock};

/// Restore an image onto a disk (or disk image file), or its files into a directory.
///
/// With --target, the disk is partitioned as recorded (same table type, partition numbers,
/// types, GUIDs and starts; the last partition grows or shrinks to fit the disk), each
/// filesystem is made with its original UUID, label and features, the files are unpacked with
/// all their metadata, and the boot loader is written back verbatim. A regular file as TARGET
/// is used through a loop device. A TARGET that holds data is refused unless --force is given
/// (or, on a terminal, its name is typed to confirm). --dry-run prints the plan, makes every
/// check the restore makes before it writes (and fails as it would), and writes nothing. An
/// image that recorded no disk layout (a plain directory was captured) goes onto
/// a disk only with --default-layout: GPT with a 1 MiB BIOS boot partition, a 512 MiB ESP and
/// an ext4 root filling the disk, fresh UUIDs, etc/fstab written for them and GRUB installed
/// by the image's own grub-install when it has one.
///
/// The report says only what was checked on the restored disk (the ESP's EFI/BOOT/BOOTX64.EFI
/// is read back from it). A restore that leaves a disk that cannot boot (NOT BOOTABLE in the
/// report: no boot loader written, or none the restored system could reinstall) exits 1
/// after its report, unless --allow-unbootable is given.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("dest").required(true).multiple(true).args(["target", "to", "map"])))]
pub struct RestoreArgs {
    /// The image (.oimg or the ISO): a path, an http:// or https:// URL of one on a server
    /// that answers Range requests, or s3://BUCKET/KEY of one kept in S3-compatible storage
    /// (--require-signature needs a local file).
    pub image: PathBuf,
    /// The whole disk (e.g. /dev/sdb) or disk image file to restore onto.
    #[arg(long, value_name = "DISK")]
    pub target: Option<PathBuf>,
    /// Restore only the files, into DIR (created if missing; must be empty). --generalize,
    /// --hostname and --overlay apply to them as on a disk; the options about disks
    /// (--force, --nvram, --default-layout, --new-uuids, --seed, --initramfs-driver) are
    /// refused.
    #[arg(long, value_name = "DIR", conflicts_with_all = [
        "target", "map", "force", "nvram", "default_layout", "new_uuids", "initramfs_driver",
        "luks_passphrase_file", "seed"
    ])]
    pub to: Option<PathBuf>,
    /// For an image of several disks: restore recorded disk DISK (its name as `osimage info`
    /// lists it, e.g. vdb) onto DEVICE (a whole disk or an image file). Repeat it for each
    /// disk; --target, when also given, takes the system disk (the one holding /). A
    /// recorded disk left out is not recreated: its filesystems' files go into the filesystem
    /// above them. In the rescue environment: osimage.map=vda=/dev/sda,vdb=/dev/sdb.
    #[arg(long, value_name = "DISK=DEVICE")]
    pub map: Vec<String>,
    /// Restore one filesystem only: the one the image recorded at MOUNTPOINT (e.g. /home) is
    /// made again on --target (a partition of an existing layout, a disk or an image file),
    /// with its recorded UUID, label and features so the system's fstab still finds it, and
    /// filled with the files below MOUNTPOINT. No partition table or boot loader is written.
    #[arg(long, value_name = "MOUNTPOINT", requires = "target", conflicts_with_all = [
        "map", "default_layout", "generalize", "hostname", "overlay", "new_uuids"
    ])]
    pub only: Option<String>,
    /// Print the plan and exit without writing anything, after every check the restore makes
    /// before it writes (a target that is mounted, used as swap, held by LVM/MD/LUKS, holds
    /// data without --force, is too small...): a dry run refused exits 1 with the error the
    /// restore would give. Identities drawn at random (--new-uuids, --default-layout) show as
    /// <drawn at restore> unless --seed is given.
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON document on stdout: the plan and, after a real restore, its report
    /// (schema: JSON.md in /usr/share/doc/osimage); everything else goes to stderr.
    #[arg(long)]
    pub json: bool,
    /// Restore over a disk that holds data (destroys it).
    #[arg(long)]
    pub force: bool,
    /// Exit 0 even when the restored disk will not boot (NOT BOOTABLE in the report: a data
    /// disk, or a boot loader you install yourself afterwards). In the rescue environment:
    /// osimage.allow-unbootable=1.
    #[arg(long, conflicts_with_all = ["to", "only"])]
    pub allow_unbootable: bool,
    /// Add a UEFI boot entry for the restored disk to THIS machine's firmware (NVRAM).
    #[arg(long)]
    pub nvram: bool,
    /// For an image that recorded no disk layout: partition the disk with osimage's default
    /// layout (GPT: 1 MiB BIOS boot, 512 MiB ESP, ext4 root filling the disk; fresh UUIDs).
    #[arg(long)]
    pub default_layout: bool,
    /// Make the restored system a new machine, not a twin of the captured one: a fresh
    /// machine-id (systemd's first boot), new SSH host keys made on this machine, per-machine
    /// secrets (random seed, credential secret) removed. Listed in the restore log;
    /// GENERALIZE.md in /usr/share/doc/osimage.
    #[arg(long)]
    pub generalize: bool,
    /// The restored system's hostname: a name, or a rule where {mac} is the first network
    /// interface's MAC address (e.g. web-{mac}). Also written into /etc/hosts.
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Give the restored disk fresh identities: new filesystem and swap UUIDs, partition GUIDs
    /// and disk GUID (or MBR signature), and for LVM, MD RAID and LUKS new PV, VG, LV, array
    /// and container UUIDs (names are kept). /etc/fstab, /etc/crypttab,
    /// /etc/mdadm/mdadm.conf, LVM's devices file, the boot loader configuration and every
    /// other reference in the restored tree are rewritten to them, GRUB is reinstalled and an
    /// initramfs naming an old UUID is made again, so the system still boots. The plan lists
    /// every old → new pair. Not implied by --generalize. GENERALIZE.md in
    /// /usr/share/doc/osimage.
    #[arg(long)]
    pub new_uuids: bool,
    /// Derive every identity --new-uuids and --default-layout draw (UUIDs, GUIDs, volume ids,
    /// the MBR signature, LVM/MD/LUKS UUIDs) from N instead of the kernel's random bytes, so
    /// `--dry-run --seed N` prints exactly the values `--seed N` writes (each a BLAKE3
    /// derivation of N and of what is drawn). The same N on two disks gives them the same
    /// identities: use it to preview, not for a fleet. In the rescue environment:
    /// osimage.seed=N.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Copy DIR over the restored tree last (per-machine files such as network configuration;
    /// modes, owners and symbolic links as in DIR).
    #[arg(long, value_name = "DIR")]
    pub overlay: Option<PathBuf>,
    /// A kernel module (e.g. nvme, ahci, virtio_blk) the restored system's initramfs must
    /// hold besides the target disk's own drivers: the controller the disk will boot on when
    /// it is not the one restoring it (a disk image for a VM with NVMe, a disk restored
    /// through a USB dock). When the captured initramfs lacks it, the restored system's
    /// update-initramfs (or dracut) runs chrooted. Repeatable.
    #[arg(long, value_name = "MODULE", value_parser = module_name)]
    pub initramfs_driver: Vec<String>,
    /// The passphrase (the file's first line) the image's LUKS containers are made anew
    /// under: a restore formats them with their recorded UUID, label and parameters but a NEW
    /// master key (the old one was never captured), so the restored system unlocks with this
    /// passphrase. In the rescue environment: osimage.luks-keyfile=PATH, else it is asked.
    #[arg(long, value_name = "FILE")]
    pub luks_passphrase_file: Option<PathBuf>,
    /// Threads writing file data (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub keys: super::keys::KeyArgs,
    #[command(flatten)]
    pub net: super::source::NetArgs,
    #[command(flatten)]
    pub lock: LockArgs,
    /// Refuse the image unless its detached signature (IMAGE.minisig, see `osimage sign`) is
    /// valid for this minisign public key (a .pub file or the `RW…` key itself). Checked
    /// before anything is read from the image or written to a disk.
    #[arg(long, value_name = "KEY")]
    pub require_signature: Option<PathBuf>,
    #[command(flatten)]
    pub sig: super::args::SignatureArgs,
}

type Failure = Box<dyn std::error::Error>;

/// A kernel module's name as `--initramfs-driver` takes it (`nvme`, `virtio_blk`, `sd-mod`).
fn module_name(s: &str) -> Result<String, String> {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a kernel module name (letters, digits, _ and -)"
        ))
    }
}

fn threads(n: Option<usize>) -> usize {
    n.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1)
}

/// Opens the image once; with --require-signature the signature is checked over that same
/// open file, under a read lease that proves nobody opened it for writing until the manifest
/// was read (docs/SECURITY.md "Signatures"). What is read later is checked against the
/// manifest's hashes. A version in a store is read under a Read lock (docs/STORE.md §5.1),
/// returned beside the reader, unless --no-lock or --dry-run (which reads no file data).
fn open_image(
    args: &RestoreArgs,
    progress: &dyn Progress,
) -> Result<(PayloadReader, Option<ReadLock>), Failure> {
    let unlock = args.keys.unlock()?;
    let Some(key) = &args.require_signature else {
        let lock = LockArgs {
            no_lock: args.lock.no_lock || args.dry_run,
        };
        let opened = super::source::open_locked(&args.image, &unlock, &args.net, lock)?;
        let lock = opened.take_lock();
        return Ok((opened.reader, lock));
    };
    super::source::local_only(&args.image, "restore --require-signature")?;
    let pk = osimage::load_public_key(key)?;
    let file = std::fs::File::open(&args.image)
        .map_err(|e| format!("cannot open {}: {e}", args.image.display()))?;
    let lease = match ReadLease::take(&file, &args.image) {
        Ok(l) => Some(l),
        Err(e @ LeaseError::Busy(_)) => return Err(e.into()),
        Err(e) => {
            // A block device (the boot medium) or a filesystem without leases: the open file
            // is still the one checked, but in-place writes cannot be excluded.
            progress.note(&format!("note: {e}"));
            None
        }
    };
    let comment =
        osimage::check_signature_of_file(&args.image, &file, &pk, args.sig.signature.as_deref())?;
    progress.note(&format!("signature good: {comment}"));
    let reader = PayloadReader::open_file(&args.image, file, &unlock)?;
    if let Some(l) = &lease {
        l.still_held()?;
    }
    Ok((reader, None))
}

/// Runs `osimage restore`.
pub fn run(args: RestoreArgs, progress: &dyn Progress) -> Result<i32, Failure> {
    // the store's Read lock, if any, is deleted when this returns, however it ends
    let (reader, _lock) = open_image(&args, progress)?;
    if let Some(dir) = &args.to {
        return to_dir(&args, &reader, dir, progress);
    }
    let Some(targets) = targets(&args)? else {
        return Ok(2); // clap requires one of --target / --to / --map
    };
    let request = RestoreRequest {
        targets,
        options: RestoreOptions {
            force: args.force,
            threads: threads(args.threads),
            nvram: args.nvram,
            default_layout: args.default_layout,
            generalize: generalize(&args),
            overlay: args.overlay.clone(),
            new_uuids: args.new_uuids,
            initramfs_drivers: args.initramfs_driver.clone(),
            luks_passphrase: luks_passphrase(&args)?,
            seed: args.seed,
            ..RestoreOptions::default()
        },
    };
    let mut prepared = osimage::prepare(&reader, &request)?;
    hostname_note(&args, prepared.hostname.as_deref());
    // A dry run without --seed shows no identity the restore would draw anew.
    if !args.json {
        if args.dry_run {
            print!("{}", prepared.dry_run_text());
        } else {
            print!("{prepared}");
        }
    }
    let mut confirmed = false;
    for (target, check) in prepared.check_targets() {
        match check {
            Ok(_) => {}
            Err(RestoreError::NotEmpty { found, .. })
                if !args.dry_run && confirm(target, &found)? =>
            {
                confirmed = true;
            }
            Err(e) => return Err(e.into()),
        }
    }
    prepared.options.force |= confirmed;
    if args.dry_run {
        // issue #24: every check the restore makes before writing, with its error
        prepared.preflight(&reader)?;
        // stdout holds only the JSON document with --json
        if args.json {
            // the identities drawn at restore masked as in the text plan
            let plan = serde_json::to_string(&json::disk_plans(&prepared))
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&prepared.as_dry_run(t)))
                .map_err(|e| format!("the plan as JSON: {e}"))?;
            print_json(&args, "disk", plan, None::<()>)?;
            eprintln!("dry run: nothing was written");
        } else {
            println!("dry run: nothing was written");
        }
        return Ok(0);
    }
    let report = prepared.apply(&reader, progress)?;
    if args.json {
        let r = Some(json::disk_report(&report));
        print_json(&args, "disk", json::disk_plans(&prepared), r)?;
    } else {
        print!("{}", report.summary());
    }
    // issue #24: a disk that will not boot is a failed restore unless the user accepts it
    if !report.unbootable.is_empty() && !args.allow_unbootable {
        eprintln!(
            "osimage: error: {} will not boot ({}); the files are restored. \
             --allow-unbootable accepts such a disk",
            report.target,
            report.unbootable.join("; ")
        );
        return Ok(1);
    }
    Ok(0)
}

/// The disks to restore onto: --only, --target alone, or --map (with --target for the
/// system disk). `None` when clap let through none of them.
fn targets(args: &RestoreArgs) -> Result<Option<Targets>, Failure> {
    if let (Some(mp), Some(target)) = (&args.only, &args.target) {
        return Ok(Some(Targets::Only {
            mount_point: mp.clone(),
            device: target.clone(),
        }));
    }
    if args.map.is_empty() {
        return Ok(args.target.clone().map(Targets::Disk));
    }
    let mut map = Vec::new();
    for m in &args.map {
        let (disk, device) = osimage::parse_disk_map(m).map_err(super::UsageError)?;
        map.push((disk, PathBuf::from(device)));
    }
    Ok(Some(Targets::Disks {
        system: args.target.clone(),
        map,
    }))
}

fn generalize(args: &RestoreArgs) -> GeneralizeOptions {
    GeneralizeOptions {
        identity: args.generalize,
        hostname: args.hostname.clone(),
    }
}

/// Says what a hostname rule (`web-{mac}`) gives on this machine.
fn hostname_note(args: &RestoreArgs, name: Option<&str>) {
    if let (Some(h), Some(name)) = (&args.hostname, name)
        && name != h
    {
        eprintln!("hostname rule {h:?} gives {name:?} on this machine");
    }
}

/// `restore --to DIR`: the files, then generalize, hostname and overlay on DIR. The options
/// about disks are refused by clap.
fn to_dir(
    args: &RestoreArgs,
    reader: &PayloadReader,
    dir: &Path,
    progress: &dyn Progress,
) -> Result<i32, Failure> {
    let request = DirRequest {
        threads: threads(args.threads),
        generalize: generalize(args),
        overlay: args.overlay.clone(),
    };
    let hostname = request.check()?;
    hostname_note(args, hostname.as_deref());
    let entries = reader.manifest().entries.len();
    if args.dry_run {
        if args.json {
            print_json(
                args,
                "directory",
                dir_plan(dir, entries, hostname, &request),
                None::<()>,
            )?;
            eprintln!("dry run: nothing was written");
        } else {
            println!(
                "would restore {} into {}",
                osimage::count(entries as u64, "entry", "entries"),
                dir.display()
            );
            print!("{request}");
        }
        return Ok(0);
    }
    if !args.json {
        print!("{request}");
    }
    let r = osimage::restore_into_dir(reader, dir, &request, progress)?;
    if args.json {
        let plan = dir_plan(dir, entries, hostname, &request);
        print_json(args, "directory", plan, Some(json::dir_report(&r)))?;
    } else {
        println!(
            "{}: {}, {}, {} written",
            dir.display(),
            osimage::count(r.entries, "entry", "entries"),
            osimage::count(r.files, "file", "files"),
            osimage::human_bytes(r.bytes_written)
        );
        for c in &r.changes {
            println!("  {c}");
        }
    }
    Ok(if r.warnings > 0 { 1 } else { 0 })
}

/// The one `restore --json` document (docs/JSON.md "restore"): the plan, and the report
/// after a real restore (null on a dry run).
fn print_json(
    args: &RestoreArgs,
    mode: &'static str,
    plan: impl serde::Serialize,
    report: Option<impl serde::Serialize>,
) -> Result<(), Failure> {
    let doc = json::Restore {
        image: super::source::shown(&args.image),
        mode,
        dry_run: args.dry_run,
        plan,
        report,
    };
    super::json::print("restore", &doc)
}

fn dir_plan(
    dir: &Path,
    entries: usize,
    hostname: Option<String>,
    request: &DirRequest,
) -> json::DirPlan {
    json::DirPlan {
        dir: dir.display().to_string(),
        entries,
        hostname,
        generalize: request.generalize.plan_lines(),
        overlay: request.overlay.as_ref().map(|p| p.display().to_string()),
    }
}

/// On a terminal: shows what will be destroyed and asks for the target's name. Never asks
/// when stdin is not a terminal (unattended: refuse).
fn confirm(target: &std::path::Path, found: &[String]) -> Result<bool, Failure> {
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    let mut err = std::io::stderr();
    writeln!(
        err,
        "{} holds data that the restore DESTROYS:",
        target.display()
    )?;
    for f in found {
        writeln!(err, "  {f}")?;
    }
    write!(err, "type {} to restore over it: ", target.display())?;
    err.flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == target.to_string_lossy())
}

/// `--luks-passphrase-file`: its first line (an empty one is refused).
fn luks_passphrase(args: &RestoreArgs) -> Result<Option<String>, Failure> {
    let Some(path) = &args.luks_passphrase_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "--luks-passphrase-file {}: cannot read it: {e}",
            path.display()
        )
    })?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(super::UsageError(format!(
            "--luks-passphrase-file {}: its first line is empty",
            path.display()
        ))
        .into());
    }
    Ok(Some(line.to_string()))
}
