//! Inputs the fuzzers (fuzz/run.sh) found to crash, hang or exhaust a reader, kept so each
//! stays fixed: `tests/fuzz-regressions/TARGET/` holds them as the fuzz target TARGET took
//! them, and each is run again here through the same code as that target: the target's body is
//! `osimage::fuzzing::TARGET`, called by fuzz/fuzz_targets/TARGET.rs and by the tests below.
//!
//! The checks are the fuzzer's own: no panic, and no single allocation above `LIMIT` (this
//! binary's allocator records the largest request each thread makes, as libFuzzer's
//! `-malloc_limit_mb` does, so a buffer sized from a hostile header fails the test even where
//! the machine could have given it), and each input done within `TIME`. The manifest inputs
//! are also opened by the binary as a `.oimg`, which must refuse them cleanly.

use crate::common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use osimage::format::records::{ImageHeader, Trailer};

/// Largest single allocation a reader may make for any of these inputs.
const LIMIT: usize = 256 << 20;
/// Longest a reader may take over one input (libFuzzer's default -timeout is 1200 s; these
/// are a few hundred bytes each).
const TIME: Duration = Duration::from_secs(20);

struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // try_with: allocations while the thread is being torn down are not counted.
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: every call is passed to the system allocator unchanged; only sizes are recorded.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded as received.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded as received.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded as received.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

fn inputs(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-regressions")
        .join(target);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no regression inputs in {}", dir.display());
    v
}

/// Runs `body` over every kept input of `target` and fails on a panic, an allocation above
/// `LIMIT` or a run longer than `TIME`.
fn replay(target: &str, body: fn(&[u8])) {
    for path in inputs(target) {
        let data = std::fs::read(&path).expect("read");
        LARGEST.with(|l| l.set(0));
        let start = Instant::now();
        let r = catch_unwind(AssertUnwindSafe(|| body(&data)));
        let took = start.elapsed();
        let largest = LARGEST.with(Cell::get);
        assert!(r.is_ok(), "{}: the reader panicked", path.display());
        assert!(
            largest <= LIMIT,
            "{}: one allocation of {largest} bytes (limit {LIMIT})",
            path.display()
        );
        assert!(
            took <= TIME,
            "{}: took {took:?} (limit {TIME:?})",
            path.display()
        );
    }
}

/// Layout records the fuzzer found crashing the planner (a subtraction overflowing on
/// overlapping partitions) are refused without a panic. The fuzz build has overflow checks;
/// `cargo test --release` has not (the old code wrapped silently there and planned garbage),
/// so the refusal itself is checked too.
#[test]
fn layout_records_found_by_the_fuzzer_are_planned_or_refused() {
    replay("layout", osimage::fuzzing::layout);
    for path in inputs("layout") {
        let layout = osimage::layout::decode(&std::fs::read(&path).expect("read"))
            .unwrap_or_else(|e| panic!("{}: the kept input decodes: {e}", path.display()));
        let r = osimage::RestorePlan::new(&layout, "/dev/vda", 8 << 30, 512);
        let e = r.expect_err("an inconsistent layout is refused");
        assert!(
            e.to_string().contains("the layout record is inconsistent"),
            "{}: {e}",
            path.display()
        );
    }
}

#[test]
fn manifest_frames_found_by_the_fuzzer_allocate_within_bounds() {
    replay("manifest", osimage::fuzzing::manifest);
}

/// A manifest frame wrapped into a `.oimg` (FORMAT.md §6.1: header, no packs, the frame, a
/// trailer).
fn wrap_frame(frame: &[u8], out: &Path) {
    // The container wants exactly the frame its header describes (stored_len at 16..24).
    let stored = frame
        .get(16..24)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes);
    let frame = &frame[..frame.len().min(64usize.saturating_add(stored as usize))];
    let id = [7u8; 16];
    let mut b = ImageHeader {
        image_id: id,
        encrypted: false,
    }
    .encode()
    .to_vec();
    b.extend_from_slice(frame);
    let t = Trailer {
        manifest_offset: 64,
        manifest_len: frame.len() as u64,
        image_id: id,
    };
    b.extend_from_slice(&t.encode());
    std::fs::write(out, b).expect("write");
}

#[test]
fn manifest_frames_found_by_the_fuzzer_are_refused_by_the_binary() {
    let scratch = common::scratch();
    for path in inputs("manifest") {
        let image = scratch.path().join("case.oimg");
        wrap_frame(&std::fs::read(&path).expect("read"), &image);
        let r = common::osimage(["list".as_ref(), image.as_os_str()]).fails();
        assert!(
            r.stderr.contains("manifest"),
            "{}: {}",
            path.display(),
            r.describe()
        );
    }
}

/// The `store_sealed` target's seed is a pin sealed under the key the target opens with
/// (`fuzzing::fuzz_store_keys`), so the fuzzer starts behind the seal: it opens, and sealing
/// what it holds again (the seed's nonce) gives it byte for byte.
#[test]
fn the_sealed_fuzz_seed_is_a_pin_sealed_under_the_fuzz_key() {
    use osimage::store::objects::{decode_pin, encode_pin};
    let k = osimage::fuzzing::fuzz_store_keys();
    let seed = include_bytes!("../fuzz/seeds/store_sealed/pin");
    let pin = decode_pin("seed", seed, Some(&k)).expect("the seed opens under the fuzz key");
    let made = encode_pin("seed", &pin, [7; 16], Some(&k)).expect("sealing the pin");
    assert_eq!(
        made.as_slice(),
        seed.as_slice(),
        "the seed is the sealed pin"
    );
}
