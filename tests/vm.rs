//! The end-to-end tests (docs/DESIGN.md "Testing layers" 3): a real Debian built once by
//! tests/e2e/build-source.sh and cached, captured, its ISO booted in QEMU under TCG with
//! SeaBIOS and OVMF, restored, the restored disk booted and compared; and the tests that use
//! the same Debian system on loop devices (its initramfs, its tree restored). A binary of
//! their own, beside tests/main.rs and tests/disks.rs; a test is `module::test_name`
//! (`cargo test --release --test vm e2e_restore::`).
//!
//! Every test here holds `common::loop_devices(module_path!())` for its whole run (tests of
//! one module side by side, never beside another module's), and each VM runs under
//! `common::vm_lock()`: two at a time at most (`OSIMAGE_TEST_VMS`).

// Each binary uses its own part of the helpers.
#[allow(dead_code)]
mod common;

mod e2e_crypt;
mod e2e_dialogue;
mod e2e_fleet;
mod e2e_lvm;
mod e2e_mbr;
mod e2e_md;
mod e2e_restore;
mod initramfs_debian;
mod restore_debian_tree;
mod restore_initramfs_regenerate;
