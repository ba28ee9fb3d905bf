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
use osimage::{NoProgress, RetryPolicy, Trust, Unlock};

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
    let open = open_from_conf(
        &conf,
        RetryPolicy::default(),
        &Trust::default(),
        &Unlock::default(),
    )
    .expect("the version opens through its presigned URLs");
    let report = osimage::verify(&open.reader, 2, &NoProgress).expect("verify");
    assert!(report.ok(), "every block checks: {:?}", report.problems);

    // What disagrees with the store is refused, named.
    let refused = |spoil: &dyn Fn(&mut SourceConf), want: &str| {
        let mut c = conf.clone();
        spoil(&mut c);
        let e = match open_from_conf(
            &c,
            RetryPolicy::default(),
            &Trust::default(),
            &Unlock::default(),
        ) {
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
    let e = match open_from_conf(
        &conf,
        RetryPolicy::default(),
        &Trust::default(),
        &Unlock::default(),
    ) {
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

/// `netboot --plain-url BASE` (STORE.md §9.1 "Plain URLs"): the objects of the store, served
/// by key under BASE (here mirrored from Garage onto the loopback HTTP server of
/// `tests/common/http.rs`, at `/mirror/KEY`), are named BASE/KEY in `source.conf`, nothing
/// expires, the agent's reader opens and verifies the version through them with no
/// credentials, and the version is pinned for 7 days; the flags that do not go with it are
/// usage errors that write nothing.
pub fn plain_urls_read_the_version(
    g: &common::garage::Garage,
    run: &dyn Fn(&[&OsStr]) -> common::Run,
    address: &str,
    store: &str,
    head: &VersionHead,
    dir: &Path,
) {
    let mirror = dir.join("mirror");
    std::fs::create_dir_all(&mirror).unwrap();
    let mut files = Vec::new();
    for (i, key) in g.keys("").into_iter().enumerate() {
        let bytes = g.client().get(&key, 1 << 30).expect("get").expect("listed");
        let path = mirror.join(format!("object-{i}"));
        std::fs::write(&path, bytes).unwrap();
        files.push((format!("mirror/{key}"), path));
    }
    let named: Vec<(&str, std::path::PathBuf)> =
        files.iter().map(|(n, p)| (n.as_str(), p.clone())).collect();
    let server = common::http::Server::start(&named);
    let base = server.url("mirror");
    let out = dir.join("netboot-plain");
    let done = run(&[
        OsStr::new("netboot"),
        OsStr::new(address),
        OsStr::new("-o"),
        out.as_os_str(),
        OsStr::new("--plain-url"),
        OsStr::new(&base),
        OsStr::new("--json"),
    ])
    .ok();
    let doc: serde_json::Value = serde_json::from_slice(&done.stdout).expect("--json");
    assert!(doc["expires"].is_null(), "{doc}");
    assert_eq!(server.answers.load(std::sync::atomic::Ordering::SeqCst), 0);
    let conf = source_conf_in(&std::fs::read(out.join("initrd.img")).unwrap());
    assert_eq!(conf.expires, None);
    let prefix = address
        .strip_prefix("s3://")
        .and_then(|a| a.split_once('/'))
        .map(|(_, rest)| rest.rsplit_once('/').expect("prefix/NAME").0)
        .expect("an s3:// address");
    assert_eq!(
        conf.object.url,
        format!("{base}/{prefix}/images/web01/{}", head.version)
    );
    for p in &conf.packs {
        assert_eq!(
            p.url,
            format!("{base}/{prefix}/packs/{}/{}", &p.id[..2], p.id)
        );
    }
    let readme = std::fs::read_to_string(out.join("README.txt")).unwrap();
    assert!(
        readme.contains("do not expire") && readme.contains(&base),
        "{readme}"
    );
    let open = open_from_conf(
        &conf,
        RetryPolicy::default(),
        &Trust::default(),
        &Unlock::default(),
    )
    .expect("the version opens through its plain URLs");
    let report = osimage::verify(&open.reader, 2, &NoProgress).expect("verify");
    assert!(report.ok(), "every block checks: {:?}", report.problems);
    assert!(server.answers.load(std::sync::atomic::Ordering::SeqCst) > conf.packs.len() as u64);

    // Pinned for --pin-for's default, 7 days.
    let ls = run(&[
        OsStr::new("store"),
        OsStr::new("ls"),
        OsStr::new(store),
        OsStr::new("-l"),
        OsStr::new("--json"),
    ])
    .ok();
    let doc: serde_json::Value = serde_json::from_slice(&ls.stdout).expect("store ls --json");
    let why = format!("netboot {}", out.display());
    let until = doc["series"][0]["versions"][0]["pins"]
        .as_array()
        .expect("pins")
        .iter()
        .find(|p| p["why"] == why.as_str())
        .and_then(|p| p["until"].as_str())
        .map(|t| chrono::DateTime::parse_from_rfc3339(t).expect("RFC 3339"))
        .unwrap_or_else(|| panic!("no pin {why:?}: {doc}"));
    let days = (until.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_hours();
    assert!((167..=168).contains(&days), "pinned for {days} h");

    // What does not go with --plain-url, or with presigned URLs, is refused.
    let refused = dir.join("netboot-refused");
    for args in [
        vec!["--plain-url", &base, "--expires", "1h"],
        vec!["--plain-url", &base, "--presign-endpoint", "http://h:1"],
        vec!["--pin-for", "30d"],
        vec!["--plain-url", "ftp://mirror/b/"],
        vec!["--plain-url", "http://mirror/b/?x=1"],
        vec!["--plain-url", &base, "--pin-for", "0d"],
    ] {
        let mut all = vec![
            OsStr::new("netboot"),
            OsStr::new(address),
            OsStr::new("-o"),
            refused.as_os_str(),
        ];
        all.extend(args.iter().map(OsStr::new));
        let r = run(&all);
        assert_eq!(r.code, 2, "{}", r.describe());
        assert!(!refused.exists(), "nothing written: {args:?}");
    }
}

/// A pack object with one byte flipped, read through the `source.conf` of the netboot in
/// `dir/netboot` (presigned, path-style): the agent's reader names the pack by its id and by
/// the object its URL names, `BUCKET/P/packs/ab/<id>` (docs/STORE.md §9.1 "Damage"), as the
/// host names `P/packs/ab/<id>`. The object is put back afterwards.
pub fn a_flipped_byte_in_a_pack_is_named_by_its_object(g: &common::garage::Garage, dir: &Path) {
    let conf = source_conf_in(&std::fs::read(dir.join("netboot/initrd.img")).unwrap());
    let id = &conf.packs[0].id;
    let key = g
        .keys("")
        .into_iter()
        .find(|k| k.ends_with(&format!("/packs/{}/{id}", &id[..2])))
        .expect("pack 0's object");
    let good = g.client().get(&key, 1 << 30).expect("get").expect("listed");
    let mut bad = good.clone();
    let at = bad.len() / 2;
    bad[at] ^= 0x40;
    g.client().put(&key, &bad).expect("put");
    let open = open_from_conf(
        &conf,
        RetryPolicy::default(),
        &Trust::default(),
        &Unlock::default(),
    )
    .expect("the version opens (its head and manifest are intact)");
    let report = osimage::verify(&open.reader, 2, &NoProgress).expect("verify");
    g.client().put(&key, &good).expect("put back");
    let named = format!("pack {id} (object {}/{key})", g.bucket());
    assert!(
        report.problems.iter().any(|p| p.contains(&named)),
        "{named} in {:?}",
        report.problems
    );
}
