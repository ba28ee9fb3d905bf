//! The layout record reader (FORMAT.md §9) and what the restore derives from it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(layout) = osimage::layout::decode(data) {
        let _ = osimage::layout::describe(&layout);
        // The restore plans from the record: every size and sector in it is hostile input.
        for size in [1 << 20, 8 << 30, u64::MAX] {
            let _ = osimage::RestorePlan::new(&layout, "/dev/vda", size, 512);
        }
    }
});
