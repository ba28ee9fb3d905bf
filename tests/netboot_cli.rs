//! `osimage netboot IMAGE -o DIR` (issue #22 stage 7, docs/NETBOOT.md): from a real ISO made
//! by `capture` (a Debian kernel's rescue environment), DIR holds the ISO's rescue kernel and
//! initramfs byte for byte as xorriso extracts them, and a boot.ipxe whose kernel line boots
//! the automatic entry with `osimage.source=URL`; the same from the ISO served over HTTP, the
//! URL being the default source; every refusal names its problem with exit status 1 or 2, and
//! a refused or failed run leaves neither DIR nor a temporary directory behind.

use crate::common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::Ordering;

use common::http::Server;

/// The ISO of the cached staging root (as tests/capture_iso.rs makes it), its id, and the
/// rescue files xorriso extracts from it.
struct RealIso {
    iso: PathBuf,
    id: String,
    vmlinuz: Vec<u8>,
    initrd: Vec<u8>,
    _dir: tempfile::TempDir,
}

static REAL: OnceLock<RealIso> = OnceLock::new();

fn real() -> &'static RealIso {
    REAL.get_or_init(|| {
        use common::kernel::{kernel_package, staging_root};
        common::require_root();
        common::kernel::need_iso_capture_tools();
        let (x, version) = kernel_package();
        let root = staging_root(&x, &version);
        let dir = common::scratch();
        let iso = dir.path().join("system.iso");
        let mut extra = common::kernel::exclude_host_programs();
        extra.push("-q");
        common::capture(&root, &iso, &extra);
        let out = dir.path().join("xorriso");
        std::fs::create_dir(&out).unwrap();
        common::run(
            std::process::Command::new("xorriso")
                .args(["-osirrox", "on", "-indev"])
                .arg(&iso)
                .args(["-extract", "/osimage/rescue/vmlinuz"])
                .arg(out.join("vmlinuz"))
                .args(["-extract", "/osimage/rescue/initrd.img"])
                .arg(out.join("initrd.img")),
        );
        let ls = common::run_stdout(
            std::process::Command::new("xorriso")
                .args(["-indev"])
                .arg(&iso)
                .args(["-lsl", "/osimage"]),
        );
        let id = ls
            .split_whitespace()
            .filter_map(|w| w.trim_matches('\'').strip_prefix("id-"))
            .next()
            .unwrap_or_else(|| panic!("no /osimage/id-* in xorriso's listing:\n{ls}"))
            .to_string();
        assert_eq!(id.len(), 32, "{id}");
        RealIso {
            vmlinuz: std::fs::read(out.join("vmlinuz")).unwrap(),
            initrd: std::fs::read(out.join("initrd.img")).unwrap(),
            iso,
            id,
            _dir: dir,
        }
    })
}

fn s(x: &str) -> &OsStr {
    OsStr::new(x)
}

/// `osimage netboot ARGS…` with a short `--retry-for`.
fn netboot(args: &[&OsStr]) -> common::Run {
    let mut v: Vec<&OsStr> = vec![s("netboot")];
    v.extend(args);
    v.extend([s("--retry-for"), s("2")]);
    common::osimage(v)
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// DIR holds the ISO's rescue files unchanged and a script that boots them with `url`.
fn assert_netboot_dir(dir: &Path, url: &str, extra: &str) {
    let r = real();
    assert_eq!(
        names(dir),
        ["README.txt", "boot.ipxe", "initrd.img", "vmlinuz"]
    );
    assert!(
        std::fs::read(dir.join("vmlinuz")).unwrap() == r.vmlinuz,
        "vmlinuz differs from the ISO's"
    );
    assert!(
        std::fs::read(dir.join("initrd.img")).unwrap() == r.initrd,
        "initrd.img differs from the ISO's"
    );
    let script = std::fs::read_to_string(dir.join("boot.ipxe")).unwrap();
    let lines: Vec<&str> = script.lines().collect();
    let shown = url.split('?').next().unwrap();
    assert_eq!(lines.len(), 5, "{script}");
    assert_eq!(lines[0], "#!ipxe");
    assert_eq!(
        lines[1],
        format!(
            "echo osimage netboot: image {}, restoring from {shown}",
            r.id
        )
    );
    let mut want = format!(
        "kernel vmlinuz initrd=initrd.img console=tty0 console=ttyS0,115200 no_timer_check \
         osimage.id={} osimage.auto=1 osimage.source={url}",
        r.id
    );
    if !extra.is_empty() {
        want = format!("{want} {extra}");
    }
    assert_eq!(lines[2], want);
    assert_eq!(lines[3..], ["initrd initrd.img", "boot"]);
    let readme = std::fs::read_to_string(dir.join("README.txt")).unwrap();
    assert!(
        readme.contains(&r.id) && readme.contains(shown) && readme.contains("dnsmasq"),
        "{readme}"
    );
}

#[test]
fn netboot_of_a_local_iso_copies_its_rescue_files_and_boots_the_automatic_entry() {
    let r = real();
    let work = common::scratch();
    let dir = work.path().join("pxe");
    let url = "https://images.example/fleet/web01.iso?X-Amz-Signature=s3cr3t";
    let extra = "osimage.target=/dev/sda osimage.force=1";
    let run = netboot(&[
        r.iso.as_os_str(),
        s("-o"),
        dir.as_os_str(),
        s("--source"),
        s(url),
        s("--cmdline"),
        s(extra),
    ])
    .ok();
    assert_netboot_dir(&dir, url, extra);
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("netboot files for image"))
        .unwrap_or_else(|| panic!("no summary line on stderr: {}", run.describe()));
    assert!(
        line.starts_with(&format!(
            "{}: netboot files for image {}: kernel ",
            dir.display(),
            r.id
        )) && line.ends_with("; machines will read https://images.example/fleet/web01.iso"),
        "{line}"
    );
    assert!(
        !run.stderr.contains("s3cr3t") && !run.stdout_str().contains("s3cr3t"),
        "the query is shown: {}",
        run.describe()
    );
    assert_eq!(names(work.path()), ["pxe"], "no temporary directory left");

    // --json: one document, the same facts.
    let dir2 = work.path().join("pxe-json");
    let run = netboot(&[
        r.iso.as_os_str(),
        s("-o"),
        dir2.as_os_str(),
        s("--source"),
        s(url),
        s("--json"),
    ])
    .ok();
    let v: serde_json::Value = serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", run.describe()));
    assert_eq!(v["command"], "netboot");
    assert_eq!(v["image_id"], r.id.as_str());
    assert_eq!(v["kernel_bytes"], r.vmlinuz.len() as u64);
    assert_eq!(v["initrd_bytes"], r.initrd.len() as u64);
    assert_eq!(v["source"], "https://images.example/fleet/web01.iso");
    assert_netboot_dir(&dir2, url, "");
}

#[test]
fn netboot_of_an_iso_over_http_reads_it_there_and_sends_machines_to_the_same_url() {
    let r = real();
    let server = Server::start(&[("web01.iso", r.iso.clone())]);
    let url = server.url("web01.iso");
    let work = common::scratch();
    let empty = work.path().join("empty");
    std::fs::create_dir(&empty).unwrap(); // an existing empty DIR is fine
    let run = netboot(&[s(&url), s("-o"), empty.as_os_str()]).ok();
    assert_netboot_dir(&empty, &url, "");
    assert!(
        run.stderr.contains(&format!("{url}: ")) && run.stderr.contains(" requests"),
        "no cost line for the URL: {}",
        run.describe()
    );
    assert_eq!(names(work.path()), ["empty"]);

    // A read that fails midway (the object changes under the last request, the end of the
    // initramfs): nothing is left, neither DIR nor the temporary directory.
    let answers = server.answers.load(Ordering::SeqCst);
    let failing = Server::start(&[("web01.iso", r.iso.clone())]);
    failing.faults.grow_from.store(answers, Ordering::SeqCst);
    let dir = work.path().join("failed");
    netboot(&[s(&failing.url("web01.iso")), s("-o"), dir.as_os_str()])
        .fails()
        .mentions(b"web01.iso");
    assert_eq!(names(work.path()), ["empty"], "a failed run left something");
}

#[test]
fn netboot_refuses_what_it_cannot_boot_naming_why() {
    let r = real();
    let work = common::scratch();
    let dir = work.path().join("pxe");
    let iso = r.iso.as_os_str();
    let o = s("-o");
    let d = dir.as_os_str();
    // A local IMAGE without --source.
    netboot(&[iso, o, d])
        .usage_error()
        .mentions(b"--source")
        .mentions(r.iso.as_os_str().as_encoded_bytes());
    // URLs the machines cannot read, or iPXE would take apart.
    for (url, why) in [
        ("ftp://10.0.0.1/web01.iso", "http:// or https://"),
        ("http://10.0.0.1/web 01.iso", "whitespace"),
        ("http://10.0.0.1/${hostname}.iso", "${"),
        ("http://10.0.0.1/\"web01\".iso", "'\"'"),
    ] {
        netboot(&[iso, o, d, s("--source"), s(url)])
            .usage_error()
            .mentions(why.as_bytes());
    }
    let long = format!("http://10.0.0.1/{}.iso", "a".repeat(2000));
    netboot(&[iso, o, d, s("--source"), s(&long)])
        .usage_error()
        .mentions(b"2047");
    netboot(&[
        iso,
        o,
        d,
        s("--source"),
        s("http://h/x.iso"),
        s("--cmdline"),
        s("a\nb"),
    ])
    .usage_error()
    .mentions(b"control character");
    assert!(!dir.exists());

    // A non-empty DIR is refused and left as it was.
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("mine.txt"), b"keep me").unwrap();
    netboot(&[iso, o, d, s("--source"), s("http://h/x.iso")])
        .fails()
        .mentions(d.as_encoded_bytes())
        .mentions(b"not an empty directory");
    assert_eq!(names(&dir), ["mine.txt"]);
    assert_eq!(std::fs::read(dir.join("mine.txt")).unwrap(), b"keep me");

    // A payload image (.oimg) carries no rescue environment.
    let root = work.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), b"payload-only\n").unwrap();
    let oimg = work.path().join("system.oimg");
    common::capture(&root, &oimg, &["-q"]);
    let out = work.path().join("from-oimg");
    netboot(&[
        oimg.as_os_str(),
        o,
        out.as_os_str(),
        s("--source"),
        s("http://h/x.oimg"),
    ])
    .fails()
    .mentions(oimg.as_os_str().as_encoded_bytes())
    .mentions(b"carries no rescue environment");
    assert!(!out.exists());

    // An ISO cut in the middle of its initramfs.
    let bytes = std::fs::read(&r.iso).unwrap();
    let initrd = osimage::iso::IsoReader::open(&r.iso)
        .unwrap()
        .lookup("osimage/rescue/initrd.img")
        .unwrap()
        .unwrap();
    let cut = work.path().join("cut.iso");
    std::fs::write(&cut, &bytes[..(initrd.offset + initrd.len / 2) as usize]).unwrap();
    let out = work.path().join("from-cut");
    netboot(&[
        cut.as_os_str(),
        o,
        out.as_os_str(),
        s("--source"),
        s("http://h/cut.iso"),
    ])
    .fails()
    .mentions(cut.as_os_str().as_encoded_bytes());
    let mut left = names(work.path());
    left.retain(|n| n.starts_with('.') || n.starts_with("from-"));
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// `--with-ipxe` (STORE.md §9.1): iPXE's `undionly.kpxe` and `ipxe.efi` are copied into DIR
/// beside the other files, from `OSIMAGE_IPXE_DIR` here (Debian's `ipxe` package puts them
/// in /usr/lib/ipxe/, checked too when it is installed); a missing one is named with the
/// package, exit 1, and nothing is written; `--plain-url` is refused for an ISO.
#[test]
fn netboot_with_ipxe_copies_its_files_or_names_the_missing_one() {
    let r = real();
    let work = common::scratch();
    let ipxe = work.path().join("ipxe");
    std::fs::create_dir(&ipxe).unwrap();
    std::fs::write(ipxe.join("undionly.kpxe"), b"undionly bytes").unwrap();
    let url = "http://10.0.2.2/web01.iso";
    let dir = work.path().join("pxe");
    let with_ipxe = |env: &[(&str, &str)]| {
        common::osimage_env(
            [
                s("netboot"),
                r.iso.as_os_str(),
                s("-o"),
                dir.as_os_str(),
                s("--source"),
                s(url),
                s("--with-ipxe"),
                s("--json"),
            ],
            env,
        )
    };
    let env = [("OSIMAGE_IPXE_DIR", ipxe.to_str().unwrap())];
    let run = with_ipxe(&env).fails();
    let missing = ipxe.join("ipxe.efi");
    assert!(
        run.stderr
            .contains(&format!("{}: missing", missing.display()))
            && run.stderr.contains("ipxe package"),
        "{}",
        run.describe()
    );
    assert_eq!(names(work.path()), ["ipxe"], "nothing written");

    std::fs::write(&missing, b"efi bytes").unwrap();
    let run = with_ipxe(&env).ok();
    assert_eq!(
        names(&dir),
        [
            "README.txt",
            "boot.ipxe",
            "initrd.img",
            "ipxe.efi",
            "undionly.kpxe",
            "vmlinuz"
        ]
    );
    assert_eq!(std::fs::read(dir.join("ipxe.efi")).unwrap(), b"efi bytes");
    assert_eq!(
        std::fs::read(dir.join("undionly.kpxe")).unwrap(),
        b"undionly bytes"
    );
    let v: serde_json::Value = serde_json::from_slice(&run.stdout).expect("JSON");
    assert_eq!(v["files"].as_array().map(Vec::len), Some(6), "{v}");

    // Debian's package, when this host has it.
    let debian = Path::new("/usr/lib/ipxe");
    if debian.join("undionly.kpxe").is_file() && debian.join("ipxe.efi").is_file() {
        std::fs::remove_dir_all(&dir).unwrap();
        with_ipxe(&[]).ok();
        for f in ["undionly.kpxe", "ipxe.efi"] {
            assert!(
                std::fs::read(dir.join(f)).unwrap() == std::fs::read(debian.join(f)).unwrap(),
                "{f} differs from the package's"
            );
        }
    }

    let other = work.path().join("plain");
    let run = netboot(&[
        r.iso.as_os_str(),
        s("-o"),
        other.as_os_str(),
        s("--plain-url"),
        s("http://m/b/"),
    ]);
    assert_eq!(run.code, 2, "{}", run.describe());
    assert!(run.stderr.contains("--plain-url"), "{}", run.describe());
    assert!(!other.exists());
}
