//! Images kept whole as one object in S3-compatible storage (docs/STORE.md §1, issue #22),
//! against a real Garage on loopback: `import` uploads (one PUT, or parts past 16 MiB), every
//! reading command reads `s3://BUCKET/KEY` as it reads the file, `netboot` writes a
//! presigned URL that reads without credentials until it expires, a server restarted in the
//! middle is waited for, and wrong credentials, a missing bucket or key, no credentials at
//! all and an existing object are each named.

use crate::common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::compare::{Options, assert_no_differences, diff_trees};
use common::garage::Garage;

/// The fixture captured once to a `.oimg`.
struct Image {
    oimg: PathBuf,
    dir: PathBuf,
    _built: common::Built,
}

static IMAGE: OnceLock<Image> = OnceLock::new();

fn image() -> &'static Image {
    IMAGE.get_or_init(|| {
        let built = common::build_fixture();
        let oimg = built.path("system.oimg");
        common::capture(&built.root, &oimg, &["-q"]);
        Image {
            oimg,
            dir: built.dir.path().to_path_buf(),
            _built: built,
        }
    })
}

fn s(x: &str) -> &OsStr {
    OsStr::new(x)
}

/// `osimage ARGS…` with `env` and a short `--retry-for` where the command reads.
fn osimage(args: &[&OsStr], env: &[(String, String)]) -> common::Run {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    common::osimage_env(args.to_vec(), &pairs)
}

/// `info --json` without the image's name, which is the only thing that may differ.
fn info(image: &OsStr, env: &[(String, String)]) -> serde_json::Value {
    let run = osimage(&[s("info"), image, s("--json")], env).ok();
    let mut v: serde_json::Value = serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("info --json is not JSON ({e}): {}", run.describe()));
    v.as_object_mut().expect("an object").remove("image");
    v
}

fn import(g: &Garage, file: &Path, dest: &str, extra: &[&str]) -> common::Run {
    let mut args = vec![s("import"), file.as_os_str(), s(dest)];
    args.extend(extra.iter().map(|a| s(a)));
    osimage(&args, &g.osimage_env())
}

#[test]
fn an_imported_image_reads_from_the_bucket_as_the_file() {
    let i = image();
    let g = Garage::start();
    let env = g.osimage_env();
    let url = format!("s3://{}/site-a/system.oimg", g.bucket());
    import(&g, &i.oimg, &url, &[]).ok();
    let (local, remote) = (i.oimg.as_os_str(), s(&url));

    assert_eq!(info(remote, &env), info(local, &env), "info --json");
    let long = |img| osimage(&[s("list"), s("-l"), img], &env).ok().stdout;
    assert_eq!(long(remote), long(local), "list -l");
    let verified = osimage(&[s("verify"), remote], &env).ok();
    assert!(
        verified.stdout_str().contains(&format!("{url}: OK")),
        "{}",
        verified.describe()
    );
    // The cost line names the object by its address.
    assert!(
        verified.stderr.contains(&format!("{url}: ")) && verified.stderr.contains("requests"),
        "{}",
        verified.describe()
    );
    let from_s3 = i.dir.join("from-s3");
    let from_file = i.dir.join("from-file");
    for (img, dir) in [(remote, &from_s3), (local, &from_file)] {
        osimage(&[s("extract"), img, s("-C"), dir.as_os_str()], &env).ok();
    }
    let diffs = diff_trees(&from_file, &from_s3, Options { nlink: true });
    assert_no_differences(&diffs, "extract from S3 vs from the file");

    // An existing object is refused and left as it is; --force replaces it.
    let again = import(&g, &i.oimg, &url, &[]);
    assert_eq!(again.code, 2, "{}", again.describe());
    assert!(
        again.stderr.contains("exists already"),
        "{}",
        again.describe()
    );
    import(&g, &i.oimg, &url, &["--force"]).ok();
    // The key's ending must say what the image is.
    let wrong = import(&g, &i.oimg, &format!("s3://{}/x.iso", g.bucket()), &[]);
    assert_eq!(wrong.code, 2, "{}", wrong.describe());
    assert!(
        wrong.stderr.contains("ends in .oimg"),
        "{}",
        wrong.describe()
    );
}

#[test]
fn an_image_past_16_mib_goes_up_in_parts_and_reads_back_whole() {
    let g = Garage::start();
    let env = g.osimage_env();
    let dir = common::scratch();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    // 40 MiB that zstd cannot shrink: three parts of 16 MiB.
    let noise = common::iso::noise(40 << 20, 0x9e37_79b9_7f4a_7c15);
    std::fs::write(root.join("noise.bin"), &noise).unwrap();
    let oimg = dir.path().join("big.oimg");
    common::capture(&root, &oimg, &["-q"]);
    let len = std::fs::metadata(&oimg).unwrap().len();
    assert!(len > 32 << 20, "the image is only {len} bytes");
    let url = format!("s3://{}/big.oimg", g.bucket());
    import(&g, &oimg, &url, &[]).ok();
    osimage(&[s("verify"), s(&url)], &env).ok();
    let out = dir.path().join("out");
    osimage(&[s("extract"), s(&url), s("-C"), out.as_os_str()], &env).ok();
    assert!(
        std::fs::read(out.join("noise.bin")).unwrap() == noise,
        "noise.bin differs after the round trip through S3"
    );
}

#[test]
fn wrong_credentials_missing_objects_and_no_credentials_are_named() {
    let i = image();
    let g = Garage::start();
    let env = g.osimage_env();
    let url = format!("s3://{}/system.oimg", g.bucket());
    import(&g, &i.oimg, &url, &[]).ok();

    let with = |k: &str, v: &str| -> Vec<(String, String)> {
        let mut e: Vec<_> = env.iter().filter(|(n, _)| n != k).cloned().collect();
        e.push((k.into(), v.into()));
        e
    };
    let bad_secret = with(
        "AWS_SECRET_ACCESS_KEY",
        "0000000000000000000000000000000000000000000000000000000000000000",
    );
    let run = osimage(&[s("info"), s(&url), s("--retry-for"), s("2")], &bad_secret).fails();
    assert!(
        run.stderr.contains(&url)
            && run.stderr.contains("HTTP 403")
            && run.stderr.contains("signature"),
        "{}",
        run.describe()
    );
    let bad_key = with("AWS_ACCESS_KEY_ID", "GK0123456789abcdef01234567");
    let run = osimage(&[s("info"), s(&url), s("--retry-for"), s("2")], &bad_key).fails();
    // Garage's own words come along: which key it does not know.
    assert!(
        run.stderr.contains("HTTP 403") && run.stderr.contains("GK0123456789abcdef01234567"),
        "{}",
        run.describe()
    );

    let missing = format!("s3://{}/nothing-here.oimg", g.bucket());
    let run = osimage(&[s("info"), s(&missing)], &env).fails();
    assert!(
        run.stderr.contains(&missing) && run.stderr.contains("not found"),
        "{}",
        run.describe()
    );
    let run = osimage(&[s("info"), s("s3://no-such-bucket/system.oimg")], &env).fails();
    assert!(run.stderr.contains("no such bucket"), "{}", run.describe());

    let home = common::scratch();
    let nothing = vec![
        ("AWS_ENDPOINT_URL".to_string(), g.endpoint()),
        ("HOME".to_string(), home.path().display().to_string()),
    ];
    let run = osimage(&[s("info"), s(&url)], &nothing);
    assert_eq!(run.code, 2, "{}", run.describe());
    assert!(
        run.stderr.contains("no S3 credentials"),
        "{}",
        run.describe()
    );

    // An address without the .iso/.oimg ending names an image in a store (STORE.md §4.7):
    // where there is none, that is said, with the command that makes one.
    let run = osimage(&[s("info"), s("s3://images/store/web01")], &env);
    assert_eq!(run.code, 1, "{}", run.describe());
    assert!(
        run.stderr
            .contains("no osimage store at s3://images/store (osimage store init"),
        "{}",
        run.describe()
    );
}

#[test]
fn a_server_restarted_during_a_read_is_waited_for() {
    let i = image();
    let mut g = Garage::start();
    let env = g.osimage_env();
    let url = format!("s3://{}/system.oimg", g.bucket());
    import(&g, &i.oimg, &url, &[]).ok();
    g.stop();
    let mut env_wait = env.clone();
    env_wait.push(("OSIMAGE_WAITING_EVERY".into(), "1".into()));
    let child = {
        let url = url.clone();
        std::thread::spawn(move || {
            osimage(
                &[s("verify"), s(&url), s("--retry-for"), s("60")],
                &env_wait,
            )
        })
    };
    std::thread::sleep(std::time::Duration::from_secs(4));
    g.start_again();
    let run = child.join().expect("the verify thread").ok();
    assert!(run.stdout_str().contains(": OK"), "{}", run.describe());
    assert!(
        run.stderr.contains("waiting for") && run.stderr.contains(&url),
        "{}",
        run.describe()
    );
}

/// The ISO of the cached staging root (a real rescue environment), as netboot needs.
fn real_iso(dir: &Path) -> PathBuf {
    use common::kernel::{kernel_package, staging_root};
    common::require_root();
    common::kernel::need_iso_capture_tools();
    let (x, version) = kernel_package();
    let root = staging_root(&x, &version);
    let iso = dir.join("system.iso");
    let mut extra = common::kernel::exclude_host_programs();
    extra.push("-q");
    common::capture(&root, &iso, &extra);
    iso
}

/// The `osimage.source=` value of a boot.ipxe.
fn source_of(script: &str) -> String {
    script
        .split_whitespace()
        .find_map(|w| w.strip_prefix("osimage.source="))
        .unwrap_or_else(|| panic!("no osimage.source= in boot.ipxe:\n{script}"))
        .to_string()
}

#[test]
fn netboot_of_an_iso_in_a_bucket_presigns_a_url_that_needs_no_credentials_until_it_expires() {
    let g = Garage::start();
    let env = g.osimage_env();
    let dir = common::scratch();
    let iso = real_iso(dir.path());
    let url = format!("s3://{}/fleet/system.iso", g.bucket());
    import(&g, &iso, &url, &[]).ok();

    let out = dir.path().join("netboot");
    let run = osimage(
        &[
            s("netboot"),
            s(&url),
            s("-o"),
            out.as_os_str(),
            s("--expires"),
            s("2h"),
        ],
        &env,
    )
    .ok();
    assert!(run.stderr.contains("works until"), "{}", run.describe());
    let script = std::fs::read_to_string(out.join("boot.ipxe")).unwrap();
    let source = source_of(&script);
    let base = format!("{}/{}/fleet/system.iso?", g.endpoint(), g.bucket());
    assert!(source.starts_with(&base), "{source}");
    assert!(source.contains("X-Amz-Expires=7200"), "{source}");
    let readme = std::fs::read_to_string(out.join("README.txt")).unwrap();
    assert!(readme.contains("stops working at"), "{readme}");
    assert!(!readme.contains("X-Amz-Signature"), "{readme}");
    assert!(
        !run.stderr.contains("X-Amz-Signature"),
        "{}",
        run.describe()
    );

    // The presigned URL alone, without any credentials, reads the image.
    let bare: Vec<(String, String)> = vec![];
    let ok = osimage(&[s("info"), s(&source), s("--json")], &bare).ok();
    let local = osimage(&[s("info"), iso.as_os_str(), s("--json")], &bare).ok();
    let id = |r: &common::Run| {
        let v: serde_json::Value = serde_json::from_slice(&r.stdout).expect("json");
        v["id"].as_str().expect("id").to_string()
    };
    assert_eq!(id(&ok), id(&local));
    // Its kernel and initramfs are the ISO's.
    let from_file = dir.path().join("from-file");
    osimage(
        &[
            s("netboot"),
            iso.as_os_str(),
            s("-o"),
            from_file.as_os_str(),
            s("--source"),
            s("http://10.0.0.1/x.iso"),
        ],
        &bare,
    )
    .ok();
    for f in ["vmlinuz", "initrd.img"] {
        assert!(
            std::fs::read(out.join(f)).unwrap() == std::fs::read(from_file.join(f)).unwrap(),
            "{f} differs between the netboot of the object and of the file"
        );
    }

    // A URL presigned for one second is refused as expired once that second has passed.
    let short = dir.path().join("short");
    osimage(
        &[
            s("netboot"),
            s(&url),
            s("-o"),
            short.as_os_str(),
            s("--expires"),
            s("1s"),
        ],
        &env,
    )
    .ok();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let expired = source_of(&std::fs::read_to_string(short.join("boot.ipxe")).unwrap());
    let run = osimage(&[s("info"), s(&expired)], &bare).fails();
    assert!(run.stderr.contains("expired"), "{}", run.describe());
    assert!(
        !run.stderr.contains("X-Amz-Signature"),
        "{}",
        run.describe()
    );

    // --expires only means something for an s3:// IMAGE, and stays within 7 days.
    let run = osimage(
        &[
            s("netboot"),
            s(&url),
            s("-o"),
            dir.path().join("long").as_os_str(),
            s("--expires"),
            s("8d"),
        ],
        &env,
    );
    assert_eq!(run.code, 2, "{}", run.describe());
}

/// A version's packs read as one object (`S3Client::open_many`, STORE.md §7.2.1): each part
/// signed anew per request, the concatenation read back byte for byte through one plan, and
/// a part whose object has another length than the list says is named as replaced.
#[test]
fn objects_opened_as_parts_read_as_their_concatenation() {
    use osimage::format::source::RangeRead;
    let g = Garage::start();
    let client = g.client();
    let sizes = [(3 << 20) + 5, 1 << 20, 70_000];
    let mut whole = Vec::new();
    let mut parts = Vec::new();
    for (i, n) in sizes.into_iter().enumerate() {
        let bytes = common::iso::noise(n, 0x5eed + i as u64);
        let key = format!("p/packs/0{i}/pack-{i}");
        client.put(&key, &bytes).expect("put");
        whole.extend_from_slice(&bytes);
        parts.push((key, n as u64));
    }
    let obj = client.open_many(&parts, "p@v1".into()).expect("open_many");
    assert_eq!(obj.len(), whole.len() as u64);
    let blocks: Vec<(u64, u64)> = (0..whole.len() as u64)
        .step_by(300_000)
        .map(|a| (a, 300_000.min(whole.len() as u64 - a)))
        .collect();
    obj.plan(blocks.clone());
    let mut buf = Vec::new();
    for (at, len) in blocks {
        buf.resize(len as usize, 0);
        obj.read_exact_at(&mut buf, at).expect("a planned read");
        assert!(
            buf == whole[at as usize..(at + len) as usize],
            "the bytes at {at}"
        );
    }
    let requests = obj.stats().requests;
    assert!(requests <= 8, "{requests} requests for 3 parts and 4.1 MiB");
    parts[1].1 += 1;
    let obj = client.open_many(&parts, "p@v1".into()).expect("open_many");
    let e = obj
        .read_exact_at(&mut buf[..100], sizes[0] as u64 + 10)
        .expect_err("a part of another length");
    let msg = e.to_string();
    let named = format!(
        "s3://{}/p/packs/01/pack-1: it has {} bytes",
        g.bucket(),
        sizes[1]
    );
    assert!(msg.starts_with(&named), "{msg}");
    assert!(msg.contains("the object was replaced"), "{msg}");
}
