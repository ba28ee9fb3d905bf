//! The integration tests that attach loop devices, make filesystems and mount them: restores
//! onto disk images, layouts read from real partition tables, snapshots, and the end-to-end
//! tests in QEMU. A binary of their own, beside tests/main.rs (which says why); a test is
//! `module::test_name` (`cargo test --release --test disks restore_loop::`).
//!
//! Every test here holds `common::loop_devices(module_path!())` for its whole run: tests of
//! one module run side by side, as when each file was a binary of its own, but never beside
//! another module's. VMs run under `common::vm_lock()`, one at a time.

// Each binary uses its own part of the helpers.
#[allow(dead_code)]
mod common;

mod capture_iso;
mod e2e_dialogue;
mod e2e_fleet;
mod e2e_restore;
mod faults;
mod initramfs_debian;
mod layout_loop;
mod refresh_shared_extents;
mod restore_debian_tree;
mod restore_faults;
mod restore_initramfs_regenerate;
mod restore_layouts;
mod restore_loop;
mod restore_several;
mod roundtrip_mounts;
mod snapshot;
