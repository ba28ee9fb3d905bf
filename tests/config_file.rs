//! The configuration file (docs/CONFIG.md, issue #24 item 20): its keys reach a capture, a
//! flag wins over a key, list flags add to the file's lists, and a bad file is a usage error
//! (exit 2) naming the file, the line and the key.

use crate::common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use common::{osimage, osimage_env};

/// A small tree with three directories whose files an exclude can leave out.
fn tree(dir: &Path) -> PathBuf {
    let root = dir.join("tree");
    for p in ["etc/hostname", "cache/a", "junk/b", "keep/c"] {
        let p = root.join(p);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, "data\n").expect("write");
    }
    root
}

/// The paths an image holds, one a line.
fn paths(image: &Path) -> String {
    osimage([OsStr::new("list"), image.as_os_str()])
        .ok()
        .stdout_str()
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("osimage.toml");
    std::fs::write(&p, text).expect("write config");
    p
}

#[test]
fn a_capture_honours_the_files_excludes_and_destination() {
    let scratch = common::scratch();
    let root = tree(scratch.path());
    let out = scratch.path().join("from-config.oimg");
    let cfg = write_config(
        scratch.path(),
        &format!(
            "# fleet defaults\n[capture]\nexclude = [\"/cache/*\"]\nlevel = 5\n\n\
             [destination]\noutput = {:?}\n",
            out.to_str().expect("utf-8")
        ),
    );
    osimage([
        OsStr::new("capture"),
        root.as_os_str(),
        "--config".as_ref(),
        cfg.as_os_str(),
    ])
    .ok();
    let l = paths(&out);
    assert!(l.contains("keep/c") && l.contains("junk/b"), "{l}");
    assert!(
        !l.contains("cache/a"),
        "the file's exclude was not applied: {l}"
    );

    // The same file through OSIMAGE_CONFIG; a flag's -o wins over destination.output and
    // --exclude adds to the file's list.
    let other = scratch.path().join("flag.oimg");
    osimage_env(
        [
            OsStr::new("capture"),
            root.as_os_str(),
            "-o".as_ref(),
            other.as_os_str(),
            "--exclude".as_ref(),
            "/junk/*".as_ref(),
        ],
        &[("OSIMAGE_CONFIG", cfg.to_str().expect("utf-8"))],
    )
    .ok();
    let l = paths(&other);
    assert!(l.contains("keep/c"), "{l}");
    assert!(
        !l.contains("cache/a"),
        "the file's exclude was dropped: {l}"
    );
    assert!(
        !l.contains("junk/b"),
        "the flag's exclude was not added: {l}"
    );
    // Neither -o nor destination.output: a usage error.
    let empty = write_config(scratch.path(), "");
    osimage([
        OsStr::new("capture"),
        root.as_os_str(),
        "--config".as_ref(),
        empty.as_os_str(),
    ])
    .usage_error()
    .mentions(b"capture needs -o OUTPUT");
}

/// `osimage capture ROOT -o OUT --config CFG EXTRA...`.
fn capture_with_config(root: &Path, out: &Path, cfg: &Path, extra: &[&str]) -> common::Run {
    let mut a: Vec<&OsStr> = vec![
        "capture".as_ref(),
        root.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "--config".as_ref(),
        cfg.as_os_str(),
    ];
    a.extend(extra.iter().map(OsStr::new));
    osimage(a)
}

#[test]
fn a_flag_overrides_a_scalar_key() {
    let scratch = common::scratch();
    let root = tree(scratch.path());
    let cfg = write_config(scratch.path(), "[capture]\nlevel = 19\n");
    let level = |extra: &[&str]| {
        let out = scratch.path().join(format!("l{}.oimg", extra.len()));
        capture_with_config(&root, &out, &cfg, extra).ok();
        let info = common::info_json(&out);
        info["zstd_level"]
            .as_i64()
            .unwrap_or_else(|| panic!("no level in info: {info:#}"))
    };
    assert_eq!(level(&[]), 19);
    assert_eq!(level(&["--level", "2"]), 2);
}

#[test]
fn unknown_keys_wrong_types_and_bad_values_are_usage_errors_naming_file_line_and_key() {
    let scratch = common::scratch();
    let root = tree(scratch.path());
    let out = scratch.path().join("never.oimg");
    for (text, says) in [
        (
            "[capture]\nexclude = []\nexclud = [\"/x\"]\n",
            "line 3: key `capture.exclud`: unknown field",
        ),
        (
            "[capture]\nlevel = \"high\"\n",
            "line 2: key `capture.level`: invalid type",
        ),
        (
            "[capture]\nlevel = 42\n",
            "line 2: key `capture.level`: 42 is not",
        ),
        ("[retention]\nkeep = -1\n", "line 2: key `retention.keep`"),
        ("[colours]\nx = 1\n", "line 1: key `colours`: unknown field"),
    ] {
        let cfg = write_config(scratch.path(), text);
        capture_with_config(&root, &out, &cfg, &[])
            .usage_error()
            .mentions(format!("{}: {says}", cfg.display()).as_bytes());
        assert!(!out.exists());
    }
    // A named file that does not exist is an error too (the default path is read only if
    // it exists).
    capture_with_config(&root, &out, &scratch.path().join("missing.toml"), &[])
        .usage_error()
        .mentions(b"cannot read the configuration file");
}

#[test]
fn the_files_keys_encrypt_a_capture_and_sign_it() {
    use age::secrecy::ExposeSecret;
    let scratch = common::scratch();
    let root = tree(scratch.path());
    let id = age::x25519::Identity::generate();
    let id_file = scratch.path().join("id.txt");
    std::fs::write(&id_file, format!("{}\n", id.to_string().expose_secret())).expect("write");
    let kp = minisign::KeyPair::generate_encrypted_keypair(Some("pw".into())).expect("keys");
    let (sk, pk, pw) = (
        scratch.path().join("s.key"),
        scratch.path().join("s.pub"),
        scratch.path().join("pw"),
    );
    std::fs::write(&sk, kp.sk.to_box(None).expect("box").to_string()).expect("write");
    std::fs::write(&pk, kp.pk.to_box().expect("box").to_string()).expect("write");
    std::fs::write(&pw, "pw\n").expect("write");
    let image = scratch.path().join("sealed.oimg");
    let cfg = write_config(
        scratch.path(),
        &format!(
            "[destination]\noutput = {:?}\n[keys]\nrecipients = [{:?}]\n\
             signing_key = {:?}\nsigning_key_password_file = {:?}\n",
            image.to_str().expect("utf-8"),
            id.to_public().to_string(),
            sk.to_str().expect("utf-8"),
            pw.to_str().expect("utf-8"),
        ),
    );
    let with_cfg = |cmd: &str, arg: &Path| {
        osimage([
            OsStr::new(cmd),
            arg.as_os_str(),
            "--config".as_ref(),
            cfg.as_os_str(),
        ])
    };
    with_cfg("capture", &root).ok();
    // Encrypted to the file's recipient: unreadable without its identity, readable with it.
    common::osimage_no_tty([OsStr::new("list"), image.as_os_str()]).fails();
    osimage([
        OsStr::new("list"),
        image.as_os_str(),
        "--identity".as_ref(),
        id_file.as_os_str(),
    ])
    .ok()
    .mentions(b"keep/c");
    with_cfg("sign", &image).ok();
    osimage([
        OsStr::new("verify"),
        image.as_os_str(),
        "--pubkey".as_ref(),
        pk.as_os_str(),
        "--identity".as_ref(),
        id_file.as_os_str(),
    ])
    .ok()
    .mentions(b"signature good");
}
