//! The command line's grammar (clap derive). The man page and completions are generated from
//! the same definitions (`osimage man`, `osimage completions`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The exit codes (docs/DESIGN.md "Exit codes"), in `--help` and the man page.
pub const EXIT_STATUS: &str = "Exit status: 0 success; 1 failure, with a message naming what \
and where (also a restore that leaves a disk that will not boot, unless --allow-unbootable); 2 \
usage error; 3 finished but incomplete: capture --keep-going (or a scheduled run) skipped \
files it could not read and wrote the image without them, or verify --boot could not run the \
VM on this host (the image was not judged); 128 + N stopped by signal N (a capture removes its \
temporary files first).";

/// Turn an installed Linux system into one image that restores it exactly.
///
/// osimage captures a root filesystem (with every local disk filesystem mounted under it) into
/// a deduplicated, compressed image that keeps all metadata: owners, modes, nanosecond times,
/// xattrs incl. capabilities, ACLs and SELinux labels, hard links, holes, device nodes. The
/// image can be listed, verified and extracted anywhere.
#[derive(Debug, Parser)]
#[command(
    name = "osimage",
    version,
    propagate_version = true,
    max_term_width = 100,
    after_long_help = EXIT_STATUS
)]
pub struct Cli {
    /// Print only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more detail (notes, per-phase summaries).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Capture a root tree into an image.
    ///
    /// Walks ROOT and every local, block-device-backed filesystem mounted under it (never
    /// proc, sysfs, tmpfs, overlay or network filesystems); the contents of /proc, /sys, /dev,
    /// /run, /tmp and /var/tmp are skipped but the directories themselves are recorded. The
    /// image is written to a temporary name beside OUTPUT and renamed into place only when
    /// complete and synced; OUTPUT is created mode 0600, since it holds every secret of the
    /// captured system.
    #[command(after_long_help = EXIT_STATUS)]
    Capture(CaptureArgs),
    /// Put an image's files back into a directory, with all their metadata.
    ///
    /// DIR may exist (it must then be empty) and receives the image root's own mode, owner,
    /// times and xattrs; nothing is ever written outside DIR, whatever the image says.
    /// Everything is recreated as recorded: owners, setuid/setgid bits, file capabilities,
    /// device nodes (see --no-owner, --no-capabilities and --no-devices to leave them out).
    ///
    /// Before anything is written, the image's structure is checked: header, trailer, the
    /// manifest's hash and every record in it. File data is checked as it is read, each chunk
    /// against its BLAKE3 hash: a file whose data fails is named in the error and the extract
    /// stops with exit status 1. An extract that stops (damaged data, a full disk, an xattr the
    /// kernel refuses) removes everything it had created in DIR, and DIR itself if it made
    /// it, so no half-made tree is left looking like an extract; what it could not remove is
    /// listed in the error. `osimage verify` checks every chunk without writing.
    Extract(ExtractArgs),
    /// List the paths in an image (all, or those under PATH).
    ///
    /// Names, symlink targets and user names are the image's, so they are escaped for the
    /// terminal (a name holding a newline or an escape sequence shows as `\n`, `\033`); -0
    /// writes them exactly.
    List(ListArgs),
    /// Compare two images: added, removed and changed files, with sizes.
    Diff(super::diff::DiffArgs),
    /// Show what an image holds: counts, sizes, dedup and compression ratios, origin.
    Info(InfoArgs),
    /// Check every pack, block and chunk of an image; name the files that are damaged.
    ///
    /// Exit status 0 when the image is intact, 1 when anything is damaged (each damaged file's
    /// path is printed).
    Verify(VerifyArgs),
    /// Restore an image onto a disk or disk image file, or its files into a directory.
    ///
    /// With --target, the recorded disk layout is recreated (same partition table, types,
    /// GUIDs, filesystem UUIDs and labels; the last partition grows to fill a larger disk),
    /// the files are unpacked with all their metadata and the boot loader is restored
    /// verbatim where the geometry allows. A disk that holds data is refused unless --force;
    /// --dry-run prints the plan and touches nothing. With --to DIR, only the files.
    #[command(after_long_help = EXIT_STATUS)]
    Restore(super::restore::RestoreArgs),
    /// Refresh a golden image on a schedule: install, list or remove a systemd timer (or a
    /// cron job where systemd is not running) that captures into a directory, keeps
    /// latest.iso pointing at the newest image and prunes the oldest (SCHEDULE.md in
    /// /usr/share/doc/osimage).
    Schedule(super::schedule::ScheduleArgs),
    /// Sign an image with a minisign secret key: writes IMAGE.minisig (SECURITY.md in
    /// /usr/share/doc/osimage).
    ///
    /// The signature covers the whole file and is minisign's own format, so `minisign -Vm
    /// IMAGE -p KEY.pub` checks it as well as `osimage verify --pubkey` and `osimage restore
    /// --require-signature`. Make a key pair with `minisign -G`.
    Sign(SignArgs),
    /// Write what a machine needs to boot an ISO's rescue environment over the network
    /// (PXE/iPXE) and restore the image reading it over HTTP.
    ///
    /// DIR receives boot.ipxe (the iPXE script), vmlinuz and initrd.img (the ISO's rescue
    /// kernel and initramfs, unchanged) and README.txt (how to serve DIR, a dnsmasq example).
    /// The kernel line is the ISO's automatic entry plus osimage.source=URL: the machine
    /// brings its network up with DHCP, reads the image from URL and restores it unattended
    /// onto its only blank disk. Serve IMAGE on any HTTP(S) server that answers Range
    /// requests, and DIR over TFTP or HTTP (NETBOOT.md in /usr/share/doc/osimage).
    #[command(after_long_help = EXIT_STATUS)]
    Netboot(super::netboot::NetbootArgs),
    /// Upload an image file to S3-compatible storage (AWS S3, Garage, MinIO, Ceph): as one
    /// object, or into an image store as a new version.
    ///
    /// DEST says which. s3://BUCKET/KEY with KEY ending in .iso or .oimg: the file kept whole
    /// as one object; every reading command (info, list, verify, extract, diff, restore) then
    /// takes s3://BUCKET/KEY as it takes the file, and `osimage netboot s3://BUCKET/KEY.iso`
    /// restores machines from it over the network with a presigned URL. The object appears
    /// whole or not at all: files over 16 MiB go up in parts, each with its Content-MD5, and
    /// a failed upload is aborted. Any other s3://BUCKET/PREFIX/NAME: a new version of the
    /// series NAME in the store at s3://BUCKET/PREFIX (`osimage store init`), the reverse of
    /// `osimage export`. Every block the image's files use is read and checked; blocks the
    /// store holds already are shared, the rest go up unchanged in new packs (an ISO exported
    /// from the same store uploads none); an ISO's rescue kernel and initramfs become the
    /// version's. The version is named by the image's creation time and id, so the same
    /// image is refused the second time (`already in the store as …`). An encrypted image is
    /// refused (stores are plain so far). Credentials, region and endpoint are the AWS tools'
    /// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION,
    /// AWS_ENDPOINT_URL, AWS_PROFILE and ~/.aws/); an explicit endpoint means path-style
    /// requests (OSIMAGE_S3_ADDRESSING=path|virtual overrides).
    #[command(after_long_help = EXIT_STATUS)]
    Import(super::import::ImportArgs),
    /// Write a version of an image store out as a file: a bootable ISO or a .oimg payload.
    ///
    /// The manifest and every pack are copied byte for byte from the store (each block and
    /// pack checked against its hash on the way); an ISO gets the version's rescue kernel and
    /// initramfs and GRUB from this host, and boots and restores like a captured ISO (where
    /// Secure Boot is off). The result is read back whole before it is renamed into place.
    /// Packs shared with other versions may hold blocks this version does not use: their size
    /// is printed. Credentials, region and endpoint as for import (STORE.md in
    /// /usr/share/doc/osimage).
    #[command(after_long_help = EXIT_STATUS)]
    Export(super::export::ExportArgs),
    /// Make and inspect an image store in S3-compatible storage: many machines' images
    /// under one s3://BUCKET/PREFIX, sharing their data.
    ///
    /// `store init` creates a store, `store ls` lists its image series and their versions,
    /// `store unlock` removes locks left behind, `store prune` forgets versions by retention
    /// rules and deletes the data nothing uses, `store forget`, `store pin` and `store unpin`
    /// do it by hand (STORE.md in /usr/share/doc/osimage).
    /// Credentials, region and endpoint as for import.
    #[command(after_long_help = EXIT_STATUS)]
    Store(super::store::StoreArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (osimage.1 and one per subcommand) into DIR.
    Man {
        /// Directory to write the pages into (created if missing).
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// The root of the tree to capture, e.g. `/` or a mounted offline system. osimage images
    /// under it (OUTPUT, BASE, any .oimg or osimage ISO by its first bytes) are left out, each
    /// said in a `left out PATH: why` line.
    pub root: PathBuf,
    /// The image to write: NAME.iso (any case: .ISO too) for a bootable ISO that restores the
    /// system (payload + rescue environment + GRUB for BIOS and UEFI, hybrid so it can be dd'd
    /// to a USB stick); any other name (e.g. NAME.oimg) for the payload alone. Not `-` (the
    /// image is renamed into place, never streamed) and not a directory, even with --force.
    /// Or `s3://BUCKET/PREFIX/NAME`: a new version of NAME in the osimage store at
    /// s3://BUCKET/PREFIX (`osimage store init`), uploading only the blocks the store does not
    /// hold yet; the newest version of NAME is the files cache, as --base is for a file.
    /// Default: `destination.output` of the configuration file (--config).
    #[arg(short, long, value_name = "OUTPUT")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub tuning: CaptureTuning,
    /// Replace OUTPUT if it exists.
    #[arg(short, long)]
    pub force: bool,
    /// Read the finished image back and check every chunk before renaming it into place.
    #[arg(long)]
    pub verify: bool,
    /// Refresh BASE (a .oimg or .iso made by osimage): files unchanged since BASE (same path,
    /// filesystem, inode, size, mtime and ctime) are not read, and chunks BASE stores are
    /// copied from it, not compressed again. OUTPUT stays self-contained (REFRESH.md
    /// in /usr/share/doc/osimage).
    #[arg(long, value_name = "BASE")]
    pub base: Option<PathBuf>,
    /// Capture ROOT's filesystem from a read-only snapshot, so the image is one point in time:
    /// btrfs (`btrfs subvolume snapshot -r`) or LVM (`lvcreate -s`, needs free space in the
    /// volume group). Other filesystems under ROOT are read live. The snapshot is removed
    /// afterwards, also on error or Ctrl-C. Any other filesystem is an error.
    #[arg(long)]
    pub snapshot: bool,
    /// Capture even when osimage cannot recreate this system's disks (a thin pool,
    /// multipath, dm-integrity, bcache, ZFS, a required device missing): the image then
    /// restores files (`restore --to DIR`, `extract`), not the machine. Without it such a
    /// capture stops, naming what stands in the way, before anything is written.
    #[arg(long)]
    pub files_only: bool,
    /// A label kept in the head of a store version (`store ls -l`); may be repeated. Only
    /// with `-o s3://…`.
    #[arg(long, value_name = "TAG")]
    pub tag: Vec<String>,
    /// Only with -o s3://…: no files cache, so every file is read again (the newest version
    /// of NAME is not consulted); the store's index still deduplicates, so only blocks the
    /// store lacks go up.
    #[arg(long, conflicts_with = "base")]
    pub no_base: bool,
    /// Only with -o s3://…: keep the store's index objects in DIR/stores/STORE-ID/index/
    /// instead of $XDG_CACHE_HOME/osimage/stores/… (default ~/.cache/osimage/stores/…). Each
    /// cached copy is checked against its name before use; a damaged one is fetched again.
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,
    /// Only with -o s3://…: keep no index objects locally (every capture fetches them all).
    #[arg(long)]
    pub no_cache: bool,
    /// (--retry-for and --ca apply to a store's server.)
    #[command(flatten)]
    pub net: super::source::NetArgs,
    #[command(flatten)]
    pub encrypt: super::keys::EncryptArgs,
    /// (--passphrase-file also gives the passphrase of --encrypt.)
    #[command(flatten)]
    pub keys: super::keys::KeyArgs,
    #[command(flatten)]
    pub config: super::config::ConfigArgs,
}

/// What a capture reads and how hard it compresses: `capture`'s options that a schedule
/// (`schedule install`) passes on to each run.
#[derive(Debug, Args)]
pub struct CaptureTuning {
    /// Kernel for the rescue environment (ISO output): a path (with a /: on this machine, else
    /// under ROOT), or a version found in ROOT/boot. Default: the newest kernel in ROOT/boot
    /// whose modules are installed. It must be an x86 kernel image (bzImage), whatever its
    /// name.
    #[arg(long, value_name = "KERNEL")]
    pub kernel: Option<PathBuf>,
    /// Stay on ROOT's own filesystem; do not descend into other mounts.
    #[arg(short = 'x', long)]
    pub one_file_system: bool,
    /// Leave out paths matching PATTERN (rsync-like glob; the rules: EXCLUDES.md in
    /// /usr/share/doc/osimage). Repeatable.
    #[arg(long, value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Read exclude patterns from FILE, one a line (# comments). Repeatable.
    #[arg(long, value_name = "FILE")]
    pub exclude_from: Vec<PathBuf>,
    /// Report unreadable files and go on instead of failing: they are listed at the end, the
    /// image is written without them, and osimage exits with status 3 (finished with skipped
    /// files), not 0.
    #[arg(long)]
    pub keep_going: bool,
    /// zstd compression level (1 fastest … 19 smallest) [default: 3, or capture.level of the
    /// configuration file].
    #[arg(short, long, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: Option<i32>,
    /// Worker threads for reading, chunking, hashing and compressing (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// The image (a .iso or .oimg made by osimage capture): a path, an http:// or
    /// https:// URL of one on a server that answers Range requests, or s3://BUCKET/KEY of
    /// one kept in S3-compatible storage (credentials and endpoint as the AWS tools take
    /// them: AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ~/.aws/).
    pub image: PathBuf,
    /// Directory to extract into (created if missing; must be empty).
    #[arg(short = 'C', long = "directory", value_name = "DIR")]
    pub dir: PathBuf,
    /// Only these paths (and what is below them); default: everything.
    pub paths: Vec<PathBuf>,
    /// Do not set owners (files belong to the user running extract). Setuid and setgid bits
    /// and file capabilities are then dropped too (as GNU tar's --no-same-owner does): they
    /// grant the privileges of the image's owner, which the file no longer has. The same
    /// happens to each file whose owner extract may not set (not running as root).
    #[arg(long)]
    pub no_owner: bool,
    /// Do not create character and block device nodes (they are counted in a note). Without
    /// it, device nodes are made with mknod as recorded (major, minor, mode): that needs
    /// CAP_MKNOD, and a node gives whoever may open it the device itself (a disk, /dev/mem).
    #[arg(long)]
    pub no_devices: bool,
    /// Do not set file capabilities (the `security.capability` xattr, e.g. ping's
    /// cap_net_raw). Without it, they are set as recorded on files that get their recorded
    /// owner; every other xattr (ACLs, SELinux labels, user.*) is set either way.
    #[arg(long)]
    pub no_capabilities: bool,
    /// Flush the destination filesystem to disk before exiting.
    #[arg(long)]
    pub sync: bool,
    /// Threads writing file data (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub keys: super::keys::KeyArgs,
    #[command(flatten)]
    pub net: super::source::NetArgs,
    #[command(flatten)]
    pub lock: super::read_lock::LockArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The image (a .iso or .oimg made by osimage capture): a path, an http:// or
    /// https:// URL of one on a server that answers Range requests, or s3://BUCKET/KEY of
    /// one kept in S3-compatible storage (credentials and endpoint as the AWS tools take
    /// them: AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ~/.aws/).
    pub image: PathBuf,
    /// Only this path and what is below it.
    pub path: Option<PathBuf>,
    /// Long format: type and mode, owner, size, modification time.
    #[arg(short, long)]
    pub long: bool,
    /// Exact names: each line ends with a NUL byte instead of a newline and names and symlink
    /// targets are written as raw bytes (for `xargs -0`). Without it, control characters,
    /// backslashes and bytes that are not UTF-8 are escaped as `ls -b` does (`\n`, `\033`).
    #[arg(short = '0', long = "null")]
    pub null: bool,
    /// Print one JSON document instead of lines: every entry with its type, mode, owner, size,
    /// times and exact name (schema: JSON.md in /usr/share/doc/osimage).
    #[arg(long, conflicts_with_all = ["null", "long"])]
    pub json: bool,
    #[command(flatten)]
    pub keys: super::keys::KeyArgs,
    #[command(flatten)]
    pub net: super::source::NetArgs,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The image (a .iso or .oimg made by osimage capture): a path, an http:// or
    /// https:// URL of one on a server that answers Range requests, or s3://BUCKET/KEY of
    /// one kept in S3-compatible storage (credentials and endpoint as the AWS tools take
    /// them: AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ~/.aws/).
    pub image: PathBuf,
    /// Print one JSON document instead of a table (schema: JSON.md in /usr/share/doc/osimage).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub keys: super::keys::KeyArgs,
    #[command(flatten)]
    pub net: super::source::NetArgs,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The image (a .iso or .oimg made by osimage capture).
    pub image: PathBuf,
    /// The minisign secret key (`minisign -G` writes ~/.minisign/minisign.key). Default:
    /// keys.signing_key of the configuration file (--config).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Read the secret key's password from FILE (first line); default:
    /// keys.signing_key_password_file of the configuration file, else asked on the terminal
    /// when the key is encrypted.
    #[arg(long, value_name = "FILE")]
    pub key_password_file: Option<PathBuf>,
    /// Where to write the signature (default: IMAGE.minisig).
    #[arg(long, value_name = "FILE")]
    pub signature: Option<PathBuf>,
    #[command(flatten)]
    pub config: super::config::ConfigArgs,
}

/// A trusted signing key and where the signature is.
#[derive(Debug, Args, Clone, Default)]
pub struct SignatureArgs {
    /// The signature file (default: IMAGE.minisig).
    #[arg(long, value_name = "FILE")]
    pub signature: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Also check IMAGE's detached signature against this minisign public key (a .pub file
    /// or the `RW…` key itself); a missing or bad signature fails the verification.
    #[arg(long, value_name = "KEY")]
    pub pubkey: Option<PathBuf>,
    #[command(flatten)]
    pub sig: SignatureArgs,
    /// The image (a .iso or .oimg made by osimage capture): a path, an http:// or
    /// https:// URL of one on a server that answers Range requests, or s3://BUCKET/KEY of
    /// one kept in S3-compatible storage (credentials and endpoint as the AWS tools take
    /// them: AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ~/.aws/) (read whole, as a file
    /// is; --pubkey needs a local file, --boot a local ISO or a store version).
    pub image: PathBuf,
    /// Threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Prove that the ISO restores: boot it in a throw-away QEMU VM with a blank scratch disk
    /// as large as the recorded one, let it restore unattended, boot the restored disk until
    /// its default target is active, then compare the disk's files with the image's manifest.
    /// Prints each phase with its duration and a verdict. Exit status 0: every phase passed;
    /// 1: a phase failed because of the image (the verdict names it); 3: QEMU could not run
    /// the VM on this host (KVM's internal error, no firmware output, QEMU exiting unasked):
    /// the image was not judged (VERIFY-BOOT.md in /usr/share/doc/osimage). Needs root,
    /// qemu-system-x86 (and ovmf for UEFI), mtools. A version in an image store
    /// (s3://BUCKET/PREFIX/NAME[@VERSION], on a plain-HTTP endpoint) restores the way a
    /// fleet's machines do: the VM boots from the network (iPXE) with the netboot files and
    /// reads the store through presigned URLs, under a Read lock on the store. An encrypted
    /// image or store takes its key as the other readers do (--passphrase-file,
    /// OSIMAGE_PASSPHRASE, --identity, or asked), and that key is typed at the rescue
    /// agent's prompt in the VM.
    #[arg(long)]
    pub boot: bool,
    /// Firmware to boot with (default: the mode the source booted with; for an offline
    /// capture, every mode its disk layout boots).
    #[arg(long, value_enum, requires = "boot")]
    pub firmware: Option<super::choices::Firmware>,
    /// The VM's memory in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 1536, requires = "boot",
          value_parser = clap::value_parser!(u32).range(256..=65536))]
    pub memory: u32,
    /// Size of the scratch disk in MiB (default: the recorded disk's size). A larger disk
    /// checks that the restore grows the last partition into it.
    #[arg(long, value_name = "MIB", requires = "boot",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub disk_size: Option<u64>,
    /// Keep the temporary directory (scratch disks, console logs) and print its path.
    #[arg(long, requires = "boot")]
    pub keep: bool,
    /// Limit of each VM boot, in seconds (the rescue boot with the restore; the first boot).
    #[arg(long, value_name = "SECONDS", default_value_t = 900, requires = "boot",
          value_parser = clap::value_parser!(u64).range(10..))]
    pub timeout: u64,
    /// No new console output for this many seconds ends the rescue-boot or restore phase
    /// ("stalled after <last line>") instead of waiting for --timeout. The firmware must write
    /// something within 60 s (or this, if shorter), else QEMU could not run the VM.
    #[arg(long, value_name = "SECONDS", default_value_t = 180, requires = "boot",
          value_parser = clap::value_parser!(u64).range(5..))]
    pub stall: u64,
    /// Accelerator: auto uses KVM when /dev/kvm runs a test guest and the firmware runs under
    /// it for a few seconds, else TCG; a boot KVM cannot run switches to TCG for the rest.
    #[arg(long, value_enum, default_value = "auto", requires = "boot")]
    pub accel: super::choices::Accel,
    /// Where the temporary directory is made (default: $TMPDIR or /tmp). The scratch disk is
    /// sparse but takes as much space as the restored files.
    #[arg(long, value_name = "DIR", requires = "boot")]
    pub work_dir: Option<PathBuf>,
    /// Print the result (with --boot: the report) as one JSON document on stdout; progress
    /// stays on stderr (schema: JSON.md in /usr/share/doc/osimage).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub keys: super::keys::KeyArgs,
    #[command(flatten)]
    pub net: super::source::NetArgs,
    #[command(flatten)]
    pub lock: super::read_lock::LockArgs,
}
