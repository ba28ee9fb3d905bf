//! Not a test: the timing harness of `bench/iso.sh`, which runs it with `--ignored` on a tree
//! it made, next to `xorriso -as mkisofs` on the same tree. Never part of the normal test run.

use crate::common::iso;

use std::path::PathBuf;
use std::time::Instant;

#[test]
#[ignore = "benchmark: run through bench/iso.sh"]
fn write_iso_bench() {
    let src = PathBuf::from(std::env::var_os("OSIMAGE_BENCH_SRC").expect("OSIMAGE_BENCH_SRC"));
    let out = PathBuf::from(std::env::var_os("OSIMAGE_BENCH_OUT").expect("OSIMAGE_BENCH_OUT"));
    let start = Instant::now();
    let spec = iso::spec_from_tree(&src, "OSIMAGE_BENCH");
    let summary = osimage::iso::write_iso(&spec, &out).expect("write_iso");
    let secs = start.elapsed().as_secs_f64();
    println!(
        "osimage-iso: {} entries, {} data bytes, image {} bytes, {secs:.2} s (incl. fsync), {:.0} MB/s",
        summary.entries,
        summary.data_bytes,
        summary.size,
        summary.size as f64 / secs / 1e6
    );
}
