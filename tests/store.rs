//! The tests that need a real S3 server (docs/STORE.md §12, issue #22): each starts its own
//! Garage on loopback (`common::garage`). A binary of its own, run last by .ci/run: Garage
//! is built once per machine (`.ci/garage-build`, ~9 minutes on two cores the first time),
//! and CI builds it in the background while the other three binaries run. A test is
//! `module::test_name` (`cargo test --release --test store store_garage::`).

// Each binary uses its own part of the helpers.
#[allow(dead_code)]
mod common;

mod e2e_netboot;
mod store_capture;
mod store_check;
mod store_cluster;
mod store_commit;
mod store_encrypted;
mod store_encrypted_io;
mod store_export;
mod store_faults;
mod store_garage;
mod store_import;
mod store_index;
mod store_locks;
mod store_netboot;
mod store_objects;
mod store_prune;
mod store_read_locks;
mod store_s3_object;
mod store_schedule;
