//! `osimage netboot s3://B/P/NAME` of a store version (docs/STORE.md §9.1, issue #22), on the
//! host against a real Garage: the directory holds the version's kernel blob, an initramfs
//! that is the ISO's (core blob, then the image's id archive) followed by an archive with
//! `source.conf`, and a script pointing the agent at it; the conf's presigned URLs read the
//! version with no credentials at all (the agent's own reader, `open_from_conf`), every
//! block checked; a conf that disagrees with the store — another frame hash, a pack's length
//! or id — is refused naming what differs, and so are URLs that have expired. The checks run
//! on the version that `store_export`'s test captures with a rescue environment (one capture
//! for both); the refusals of a version without one and of `--source` run in its second
//! test. The VM run that boots such a directory is `e2e_netboot`.

use crate::common;

use std::ffi::OsStr;
use std::path::Path;

use osimage::store::objects::VersionHead;
use osimage::store::read::open_from_conf;
use osimage::store::source_conf::SourceConf;
use osimage::{NoProgress, RetryPolicy, Trust};

/// The `source.conf` inside a netboot initramfs: the uncompressed archive at its end holds it
/// as the JSON `SourceConf::to_json` writes (an object starting at `{\n  "version"`).
pub fn source_conf_in(initrd: &[u8]) -> SourceConf {
    const OPENING: &[u8] = b"{\n  \"version\"";
    let start = initrd
        .windows(OPENING.len())
        .rposition(|w| w == OPENING)
        .expect("source.conf's JSON in the initramfs");
    let end = start
        + initrd[start..]
            .windows(3)
            .position(|w| w == b"\n}\n")
            .expect("the end of source.conf")
        + 3;
    SourceConf::parse("source.conf", &initrd[start..end]).expect("source.conf parses")
}

/// Netboots `address` (a version with rescue blobs, whose head is `head`, kernel blob
/// `kernel` and core blob `core`) into a new directory under `dir` and checks what it holds
/// and that its URLs read the version without credentials.
pub fn a_version_netboots_without_credentials(
    run: &dyn Fn(&[&OsStr]) -> common::Run,
    address: &str,
    head: &VersionHead,
    kernel: &[u8],
    core: &[u8],
    dir: &Path,
) {
    let out = dir.join("netboot");
    let done = run(&[
        OsStr::new("netboot"),
        OsStr::new(address),
        OsStr::new("-o"),
        out.as_os_str(),
        OsStr::new("--expires"),
        OsStr::new("1h"),
    ])
    .ok();
    assert!(
        String::from_utf8_lossy(&done.stdout).contains("packs") || done.stderr.contains("packs"),
        "{}",
        done.describe()
    );
    let script = std::fs::read_to_string(out.join("boot.ipxe")).expect("boot.ipxe");
    assert!(
        script.contains("osimage.source=/osimage/source.conf") && !script.contains("X-Amz"),
        "no URL on the kernel line: {script}"
    );
    let id_hex: String = head.image_id.iter().map(|b| format!("{b:02x}")).collect();
    assert!(script.contains(&format!("osimage.id={id_hex}")), "{script}");
    assert!(std::fs::read(out.join("vmlinuz")).unwrap() == kernel);
    let initrd = std::fs::read(out.join("initrd.img")).unwrap();
    assert!(
        initrd.len() > core.len() && initrd[..core.len()] == *core,
        "the initramfs starts with the core blob"
    );
    let conf = source_conf_in(&initrd);
    assert_eq!(conf.version_name, head.version);
    assert_eq!(conf.image_id, id_hex);
    assert_eq!(conf.packs.len(), head.packs.len());
    let readme = std::fs::read_to_string(out.join("README.txt")).unwrap();
    assert!(!readme.contains("X-Amz"), "{readme}");

    // The agent's reader, with no credentials in the environment at all.
    for k in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ] {
        assert!(
            std::env::var_os(k).is_none(),
            "{k} is set in the test process"
        );
    }
    let open = open_from_conf(&conf, RetryPolicy::default(), &Trust::default())
        .expect("the version opens through its presigned URLs");
    let report = osimage::verify(&open.reader, 2, &NoProgress).expect("verify");
    assert!(report.ok(), "every block checks: {:?}", report.problems);

    // What disagrees with the store is refused, named.
    let refused = |spoil: &dyn Fn(&mut SourceConf), want: &str| {
        let mut c = conf.clone();
        spoil(&mut c);
        let e = match open_from_conf(&c, RetryPolicy::default(), &Trust::default()) {
            Ok(_) => panic!("a spoiled conf opened ({want})"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(want), "{want}: {e}");
    };
    refused(
        &|c| c.object.frame_hash = "00".repeat(32),
        "not the one source.conf names",
    );
    refused(&|c| c.object.len += 1, "source.conf says");
    refused(&|c| c.packs[0].len += 1, "pack 0 of its manifest");
    refused(
        &|c| c.packs[0].id = "00".repeat(32),
        "pack 0 of its manifest",
    );
    refused(&|c| c.packs.truncate(0), "packs, source.conf 0");

    // URLs presigned for one second are refused as expired once it has passed, and the
    // message does not show their signatures.
    let short = dir.join("netboot-short");
    run(&[
        OsStr::new("netboot"),
        OsStr::new(address),
        OsStr::new("-o"),
        short.as_os_str(),
        OsStr::new("--expires"),
        OsStr::new("1s"),
    ])
    .ok();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let conf = source_conf_in(&std::fs::read(short.join("initrd.img")).unwrap());
    let e = match open_from_conf(&conf, RetryPolicy::default(), &Trust::default()) {
        Ok(_) => panic!("a version opened through expired URLs"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("expired") && !e.contains("X-Amz-Signature"),
        "{e}"
    );
}

/// `netboot` of a version without a rescue environment, and `--source` with a store
/// version, are refused and write nothing.
pub fn refusals(run: &dyn Fn(&[&OsStr]) -> common::Run, address: &str, dir: &Path) {
    let out = dir.join("netboot-none");
    let r = run(&[
        OsStr::new("netboot"),
        OsStr::new(address),
        OsStr::new("-o"),
        out.as_os_str(),
    ])
    .fails();
    assert!(
        r.stderr.contains("no rescue environment stored"),
        "{}",
        r.describe()
    );
    assert!(!out.exists(), "nothing written");
    let r = run(&[
        OsStr::new("netboot"),
        OsStr::new(address),
        OsStr::new("-o"),
        out.as_os_str(),
        OsStr::new("--source"),
        OsStr::new("http://h/x.iso"),
    ]);
    assert_eq!(r.code, 2, "{}", r.describe());
    assert!(!out.exists(), "nothing written");
}
