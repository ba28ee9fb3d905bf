//! Rescue: the captured system's kernel + an initramfs osimage builds → the boot environment
//! that restores the image (docs/DESIGN.md "Rescue environment", docs/RESCUE.md).
//!
//! The initramfs holds osimage itself as the restore agent (`osimage rescue-agent`, see
//! [`crate::agent`]), busybox as shell and init helper, the kernel modules to reach disks and the boot
//! medium (`rescue/modules.list`, closed over `modules.dep` and `modules.softdep`), and the
//! tools a restore runs (`rescue/tools.list`) with their shared libraries, all from the
//! captured root. [`grub_cfg`] renders the boot menu that starts it.

mod assemble;
pub mod cpio;
pub mod elf;
pub mod kernel;
pub mod menu;
pub mod modules;
pub mod reuse;
pub mod rootfs;
pub mod tools;
pub mod tree;

use std::path::{Path, PathBuf};

pub use assemble::{PlannedRescue, append_image_id, build_rescue, plan_rescue};
pub use menu::{MenuParams, grub_cfg};

/// `rescue/modules.list`: drivers and filesystems always carried.
pub const MODULES_LIST: &str = include_str!("../../rescue/modules.list");
/// `rescue/modules-net.list`: network drivers, loaded only for a restore over the network.
pub const MODULES_NET_LIST: &str = include_str!("../../rescue/modules-net.list");
/// `rescue/udhcpc.script`: busybox udhcpc's event script (the agent's DHCP).
pub const UDHCPC_SCRIPT: &str = include_str!("../../rescue/udhcpc.script");
/// `rescue/tools.list`: programs taken from the captured system.
pub const TOOLS_LIST: &str = include_str!("../../rescue/tools.list");
/// `rescue/host-tools.list`: what osimage runs or reads on the capturing host.
pub const HOST_TOOLS_LIST: &str = include_str!("../../rescue/host-tools.list");
/// `rescue/files.list`: data files taken from the captured system when present.
pub const FILES_LIST: &str = include_str!("../../rescue/files.list");
/// `rescue/init`: PID 1 of the rescue environment.
pub const INIT_SCRIPT: &str = include_str!("../../rescue/init");

/// What to build a rescue environment from.
#[derive(Debug, Clone)]
pub struct RescueSpec {
    /// The captured root: its kernel, modules and tools go into the rescue environment.
    pub root: PathBuf,
    /// `--kernel`: a kernel image path or a version in `ROOT/boot`; default the newest.
    pub kernel: Option<PathBuf>,
    /// The osimage binary shipped as the agent (default: this very program). Static, or
    /// dynamic with its libraries taken from the host it runs on.
    pub agent_binary: PathBuf,
    /// The image's id: the medium carries `/osimage/id-<hex>` and the agent looks for it.
    pub image_id: [u8; 16],
    /// Tools to ship besides `rescue/tools.list` (required: a missing one is an error).
    pub extra_tools: Vec<String>,
    /// Filesystem types of the capture (`ext4`, `vfat`, `xfs`, `swap`...) and its block
    /// layers (`lvm`, `md`, `luks`): their modules and their tools become required.
    pub filesystems: Vec<String>,
}

impl RescueSpec {
    /// A spec with defaults: newest kernel, this program as the agent, no extras.
    pub fn new(root: &Path, image_id: [u8; 16]) -> Self {
        RescueSpec {
            root: root.to_path_buf(),
            kernel: None,
            agent_binary: std::env::current_exe()
                .unwrap_or_else(|_| PathBuf::from("/proc/self/exe")),
            image_id,
            extra_tools: Vec::new(),
            filesystems: Vec::new(),
        }
    }
}

/// The built rescue environment, files in the work directory.
#[derive(Debug, Clone)]
pub struct Rescue {
    /// The kernel image (a copy of the captured one).
    pub kernel: PathBuf,
    /// The compressed initramfs.
    pub initrd: PathBuf,
    pub kernel_version: String,
    /// Kernel + initramfs bytes: what the rescue part adds to the ISO.
    pub size_bytes: u64,
    /// Compressed initramfs bytes.
    pub initrd_bytes: u64,
    /// The cpio archive's bytes before compression.
    pub uncompressed_bytes: u64,
    /// Kernel modules shipped.
    pub modules: usize,
    /// Tools shipped (not counting busybox and the agent).
    pub tools: usize,
    /// Shared libraries and loaders shipped.
    pub libraries: usize,
    /// What was left out and why (optional tools, modules this kernel lacks, firmware).
    pub notes: Vec<String>,
    /// What it was built from (recorded in the image: `reuse`).
    pub inputs: reuse::RescueInputs,
    /// Kernel and initramfs were taken from a previous image, not built.
    pub reused: bool,
    /// Compressed initramfs parts taken from a previous image (all of them when `reused`).
    pub reused_parts: usize,
}

/// Whether a rescue environment of `root` has a busybox: ROOT's own, or a static one under
/// `host` (the capturing host's `/`).
pub fn has_busybox(root: &Path, host: &Path) -> bool {
    assemble::find_busybox(&rootfs::RootFs::new(root), host).is_some()
}

/// The required tools of `rescue/tools.list` (and `extra`) that `root` lacks for a capture
/// holding `filesystems` (types and block layers), as (tool, Debian package).
pub fn missing_rescue_tools(
    root: &Path,
    filesystems: &[String],
    extra: &[String],
) -> Result<Vec<(String, String)>, RescueError> {
    let fs = rootfs::RootFs::new(root);
    let missing = tools::missing_required(&fs, filesystems, extra).map_err(RescueError::BadList)?;
    Ok(missing.into_iter().map(|t| (t.name, t.package)).collect())
}

/// Lowercase hex of an image id, as in `/osimage/id-<hex>` and `osimage.id=<hex>`.
pub fn image_id_hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// ISO path (no leading `/`) of the empty marker file that identifies an image's medium.
pub fn id_marker_path(image_id_hex: &str) -> String {
    format!("osimage/id-{image_id_hex}")
}

/// Why a rescue environment could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RescueError {
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no usable kernel in {}: {detail}", root.display())]
    NoKernel { root: PathBuf, detail: String },
    #[error(
        "kernel {version}: no {}/lib/modules/{version}/modules.dep (run `depmod {version}` in that system)",
        root.display()
    )]
    NoModules { version: String, root: PathBuf },
    /// Every required tool ROOT lacks, as `tool (package)` (issue #24 item 7: all at once).
    #[error(
        "required tools not found in {}/{{usr/,}}{{s,}}bin: {}; install those Debian packages \
         there",
        root.display(),
        tools.join(", ")
    )]
    MissingTools { tools: Vec<String>, root: PathBuf },
    #[error("{program} needs {library}, not found in the library directories of {}", root.display())]
    MissingLibrary {
        program: String,
        library: String,
        root: PathBuf,
    },
    #[error("{program} needs its interpreter {interpreter}, which is missing")]
    MissingInterpreter {
        program: String,
        interpreter: String,
    },
    #[error("{}: {reason}", path.display())]
    Elf { path: PathBuf, reason: String },
    #[error(
        "no busybox: none in the captured root (bin/busybox) and no static one on this host (install busybox-static)"
    )]
    NoBusybox,
    #[error("{tool} failed on {}: {detail}", path.display())]
    Tool {
        tool: String,
        path: PathBuf,
        detail: String,
    },
    /// A kernel module that cannot be decompressed (damaged, truncated, too large).
    #[error("kernel module {}: {detail}", path.display())]
    BadModule { path: PathBuf, detail: String },
    #[error("bad rescue data: {0}")]
    BadList(String),
    /// The environment would boot yet could not restore (issue #24 item 12).
    #[error("the rescue environment could not restore anything: {0}")]
    Useless(String),
}

impl RescueError {
    pub(crate) fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        RescueError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}
