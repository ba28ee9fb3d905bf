//! Inputs the fuzzers (fuzz/run.sh) found to crash or exhaust a reader, kept so each stays
//! fixed. `tests/fuzz-regressions/manifest/` holds manifest frames: each is wrapped into a
//! `.oimg` (FORMAT.md §6.1: header, no packs, the frame, a trailer) and opened by the binary
//! under a 1 GiB address-space limit, so an allocation sized from a hostile header aborts the
//! process (and fails this test) instead of quietly succeeding on a big machine.

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;

use osimage::payload::records::{ImageHeader, Trailer};

fn wrap_frame(frame: &[u8], out: &Path) {
    // The container wants exactly the frame its header describes (stored_len at 16..24).
    let stored = frame
        .get(16..24)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    let frame = &frame[..frame.len().min(64 + stored as usize)];
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
fn manifest_frames_found_by_the_fuzzer_are_refused_within_bounded_memory() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions/manifest");
    let scratch = common::scratch();
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("regression inputs") {
        let path = e.expect("entry").path();
        let image = scratch.path().join("case.oimg");
        wrap_frame(&std::fs::read(&path).expect("read"), &image);
        let r = common::osimage_with(["list".as_ref(), image.as_os_str()], |cmd| {
            // SAFETY: setrlimit is async-signal-safe; runs between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    let lim = libc::rlimit {
                        rlim_cur: 1 << 30,
                        rlim_max: 1 << 30,
                    };
                    if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        })
        .fails();
        assert!(
            r.stderr.contains("manifest does not"),
            "{}: {}",
            path.display(),
            r.describe()
        );
        n += 1;
    }
    assert!(n > 0, "no regression inputs in {}", dir.display());
}
