//! The integration tests that attach loop devices, make filesystems and mount them: restores
//! onto disk images, layouts read from real partition tables, snapshots. A binary of their
//! own, beside tests/main.rs (which says why); a test is `module::test_name`
//! (`cargo test --release --test disks restore_loop::`).
//!
//! Every test here holds `common::loop_devices(module_path!())` for its whole run: tests of
//! one module run side by side, as when each file was a binary of its own, but never beside
//! another module's. The end-to-end tests, which use loop devices too, are in tests/vm.rs: a
//! lazily unmounted filesystem of theirs may hold its loop device until their process exits,
//! and a restore test run after them in the same process met partitions and filesystem UUIDs
//! that were still there.

// Each binary uses its own part of the helpers.
#[allow(dead_code)]
mod common;

mod capture_iso;
mod faults;
mod layout_loop;
mod live_capture;
mod refresh_shared_extents;
mod restore_faults;
mod restore_layouts;
mod restore_loop;
mod restore_several;
mod restore_stack_uuids;
mod roundtrip_mounts;
mod snapshot;
