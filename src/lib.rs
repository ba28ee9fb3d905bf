//! osimage: turn an installed Linux system into one bootable ISO that restores it exactly.
//!
//! The modules follow the pipeline (docs/DESIGN.md), on the ground floor of `format`, the image
//! format as data (docs/FORMAT.md): `scan` walks the root, `payload` chunks, dedups, compresses
//! and packs it and reads it back, `image` says where an image's bytes live (a `.oimg` file or
//! an ISO; `remote` reads them over HTTP), `extract` puts files back, `restore` recreates
//! disks, `iso` writes and reads ISO 9660. Two thin front-ends sit on top: the command line (`src/cli`, in the binary, so clap,
//! indicatif and rpassword stay out of the library) and the restore agent (`agent`), which
//! runs inside the rescue environment. Which module may use which: docs/DESIGN.md.

// Every module is private to the crate by default; what a caller may use is the list below.
pub mod agent;
pub(crate) mod bootcheck;
pub(crate) mod capture;
pub(crate) mod envelope;
pub(crate) mod extract;
pub mod format;
pub mod fuzzing;
pub(crate) mod image;
pub mod iso;
pub mod layout;
pub(crate) mod netboot;
pub(crate) mod payload;
pub(crate) mod progress;
pub(crate) mod refresh;
pub(crate) mod remote;
pub(crate) mod rescue;
pub(crate) mod restore;
pub(crate) mod scan;
pub(crate) mod schedule;
pub(crate) mod signature;
pub mod store;
pub(crate) mod sys;
pub(crate) mod units;

// The public surface (issue #18, as rustic_core keeps its own): what the two front-ends
// (`src/cli` in the binary, `agent` above), the integration tests and the fuzz targets use.
// Four modules are public whole, each the implementation of a written specification that a
// caller may program against: `format` (the image format, docs/FORMAT.md), `layout` (the disk
// layout record, FORMAT.md §9, and the probes that fill it), `iso` (ISO 9660 / El Torito,
// docs/ISO.md) and `store` (the image store's addresses and objects, docs/STORE.md §2, whose
// Rust definitions that document makes normative); `agent` is the second front-end.

// Capture.
pub use capture::{
    CaptureError, CaptureOptions, CaptureReport, capture, capture_from,
    export::{ExportOptions, ExportReport, export_version},
    import::{ImportOptions, ImportReport, import_into_store, import_source_into_store},
    into_store::{StoreCapture, StoreCaptureChoices, capture_into_store},
    plan_capture,
};
// What an interrupt undoes: a capture's, and the locks of `store prune` and the long readers.
pub use capture::interrupt::{Interrupts, OnInterrupt};
pub use scan::{ScanError, ScanOptions, ScanResult, plan_filesystems, scan, source_path};

// Reading an image: open, list, verify, diff, and what `info` shows.
pub use envelope::Unlock;
pub use envelope::keys::Lock;
pub use image::lease::{LeaseError, ReadLease};
pub use image::oimg::OimgWriter;
pub use image::{ContainerKind, kind_of as container_kind};
pub use payload::reader::{BlockCache, PayloadReader};
// An image over HTTP(S) (docs/STORE.md §7): `PayloadReader::open_source` reads it.
pub use payload::verify::{VerifyReport, verify};
pub use payload::writer::BaseImage;
pub use refresh::Base;
pub use refresh::diff::{ChangeKind, Diff, diff};
pub use refresh::lineage::{Lineage, LineageJson, from_manifest as lineage_from_manifest};
pub use remote::s3;
pub use remote::{
    HttpObject, MAX_CONNECTIONS, MAX_FETCH_CACHE_MIB, NetStats, RetryPolicy, Trust, TrustError,
    is_url, redact,
};
pub use rescue::reuse::{RescueJson, from_manifest as rescue_from_manifest};
pub use rescue::{Rescue, RescueSpec, build_rescue, id_marker_path, image_id_hex, plan_rescue};

// Network boot of an ISO's rescue environment (docs/NETBOOT.md).
pub use netboot::ipxe::{DEBIAN_IPXE_DIR, IPXE_FILES};
pub use netboot::store::{StoreNetbootRequest, StoreUrls, write_store_netboot_dir};
pub use netboot::{
    MAX_BOOT_FILE, MAX_CMDLINE, NetbootError, NetbootReport, NetbootRequest, ScriptError,
    check_arguments as check_netboot_arguments, write_netboot_dir,
};

// Extract.
pub use extract::{
    ChunkSource, ExtractError, ExtractOptions, ExtractReport, MemorySource, extract,
};

// Restore.
pub use restore::generalize::GeneralizeOptions;
pub use restore::plan::several::parse_map as parse_disk_map;
// The plan's parts `restore --json` shows.
pub use restore::plan::{PartKind, PartPlan, PlanDev, Resize, StackStep, TablePlan};
pub use restore::{
    DirReport, DirRequest, FsReport, Prepared, RestoreError, RestoreOptions, RestorePlan,
    RestoreReport, RestoreRequest, Targets, check_target, layout_of, plan_for, prepare,
    restore_into_dir, restore_to_dir, restore_to_disk,
};
// What the restore checks of an initramfs (tests/initramfs_debian.rs reads a Debian one).
pub use restore::initramfs;

// verify --boot.
pub use bootcheck::files::{Fidelity, compare as compare_with_manifest};
pub use bootcheck::network::{
    network_preflight as boot_check_network_preflight,
    verify_store_version as verify_store_version_boot,
    verify_store_version_unlocked as verify_store_version_boot_unlocked,
};
pub use bootcheck::{
    AccelChoice, BootCheckOptions, BootReport, ConsoleKey, FirmwareChoice, NetworkImage,
    verify_boot, verify_boot_network, verify_boot_unlocked,
};
// The QEMU runner `verify --boot` uses, and the console lines it watches for: the end-to-end
// tests boot through the same code.
pub use bootcheck::{Accel, console, vm};

// Signatures.
pub use signature::{
    check as check_signature, check_file as check_signature_of_file,
    default_path as default_signature_path, load_public_key, load_secret_key, sign as sign_image,
};

// Scheduled refreshes.
pub use schedule::credentials::{StoreCredentials, read as schedule_credentials};
pub use schedule::job::{Dest, ImageFormat, Job, check_name as check_schedule_name};
pub use schedule::keys::lock as schedule_lock;
pub use schedule::run::run as run_scheduled;
pub use schedule::store_run::{
    StoreRunReport, check_verify_boot as check_schedule_verify_boot,
    open_store as open_schedule_store, run as run_scheduled_into_store,
};
pub use schedule::{
    Backend, InstallPlan, InstallReport, Listed, PlannedFile, RemoveReport, ScheduleError, System,
    check_every, install as install_schedule, list as list_schedules,
    plan_install as plan_schedule, remove as remove_schedule, require_root, scheduled_binary,
};

// Reporting and showing.
pub use progress::{NoProgress, Progress};
pub use units::{count, hex, human_bytes};
