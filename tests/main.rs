//! The integration tests (issue #18, as ripgrep's tests/tests.rs): each file of tests/ is a
//! module named after the behaviour it checks, so a test is `module::test_name`
//! (`cargo test --release --test integration roundtrip::`), and `common` holds every helper.
//! Four binaries instead of one per file, so the library is linked four times in release
//! mode, not 36 times: this one, tests/disks.rs for the tests that attach loop devices and
//! mount filesystems, tests/vm.rs for the end-to-end tests in QEMU, and tests/store.rs for
//! the tests against a real S3 server (Garage), which CI runs last, once Garage is built.
//!
//! Why apart: in one process, every child a test spawns holds all the process's open files
//! from fork to exec (O_CLOEXEC closes them only at exec). With the whole suite in one
//! process, ~100 tests spawning beside the restore tests kept their mounts busy (`umount`
//! fails) and their detached loop devices alive, and the restores then met the same
//! filesystem UUID twice (`mkfs.btrfs`: non-unique UUID; XFS refuses the mount) or partition
//! nodes that never came. Apart, each binary passes as each file did alone. The end-to-end
//! tests then left, in the `disks` process, state that outlived them (a lazily unmounted
//! filesystem keeps its loop device until its last user in the process goes): a restore test
//! run after them met its source's UUID twice. So they have their process too.
//!
//! What sharing a process asks of the tests in either binary:
//! - a VM runs only while `common::vm_lock()` is held (two cores: two VMs at a time at most,
//!   `OSIMAGE_TEST_VMS`; cargo runs the binaries one after the other, so that holds for the
//!   whole run); each VM has a name of its own (its console log is named after it);
//! - caches shared on disk (tests/cache/…) are filled under a lock of their own
//!   (`common::kernel`) or once per process (`OnceLock`s);
//! - `fuzz_regressions`' tracking allocator is this binary's global allocator: it forwards
//!   every call to the system allocator and only records, per thread, the largest request, so
//!   the other modules' tests are unaffected;
//! - `rescue_boot`'s `.init_array` hook makes this binary the rescue agent when started as
//!   `<exe> rescue-agent`; any other start runs the test harness as before;
//! - no test changes the process's environment, umask or working directory.

// Each binary uses its own part of the helpers.
#[allow(dead_code)]
mod common;

mod cli_contract;
mod config_file;
mod corruption;
mod encryption;
mod extract_contract;
mod format_v1;
mod format_v3;
mod fuzz_regressions;
mod hostile_input;
mod http_read;
mod http_refetch;
mod https_ca;
mod iso_bench;
mod iso_boot;
mod iso_tools;
mod json_output;
mod layout_probe;
mod netboot_cli;
mod packaging;
mod preflight;
mod refresh_cli;
mod rescue_boot;
mod roundtrip;
mod roundtrip_comparator;
mod roundtrip_many_files;
mod scan_tree;
mod schedule;
mod signatures;
mod store_packs;
mod structure;
mod verify_boot_cli;
