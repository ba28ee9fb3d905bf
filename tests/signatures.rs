//! Detached signatures (docs/SECURITY.md): `osimage sign` writes a minisign signature that the
//! `minisign` tool itself accepts; `verify --pubkey` and `restore --require-signature` refuse
//! an unsigned, altered or foreign-signed image before anything is written.

use crate::common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Run, osimage};

fn run(args: &[&OsStr]) -> Run {
    osimage(args.iter().copied())
}

/// A password-protected minisign key pair written as minisign writes it: (secret, public).
fn key_pair(dir: &Path, name: &str, password: &str) -> (PathBuf, PathBuf) {
    let kp = minisign::KeyPair::generate_encrypted_keypair(Some(password.to_string()))
        .expect("key pair");
    let sk = dir.join(format!("{name}.key"));
    let pk = dir.join(format!("{name}.pub"));
    std::fs::write(&sk, kp.sk.to_box(None).expect("box").to_string()).expect("write");
    std::fs::write(&pk, kp.pk.to_box().expect("box").to_string()).expect("write");
    (sk, pk)
}

/// A tiny captured image to sign, its `etc/hostname` holding `hostname`.
fn small_image(dir: &Path, hostname: &[u8]) -> PathBuf {
    let root = dir.join("src");
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    std::fs::write(root.join("etc/hostname"), hostname).expect("write");
    let image = dir.join("img.oimg");
    common::capture(&root, &image, &["-q"]);
    image
}

fn sign_args<'a>(image: &'a Path, key: &'a Path, pw: Option<&'a Path>) -> Vec<&'a OsStr> {
    let mut a: Vec<&OsStr> = vec![
        "sign".as_ref(),
        image.as_os_str(),
        "--key".as_ref(),
        key.as_os_str(),
    ];
    if let Some(pw) = pw {
        a.extend(["--key-password-file".as_ref(), pw.as_os_str()]);
    }
    a
}

/// `osimage verify IMAGE --pubkey KEY`.
fn verify(image: &Path, key: &Path) -> Run {
    run(&[
        "verify".as_ref(),
        image.as_os_str(),
        "--pubkey".as_ref(),
        key.as_os_str(),
    ])
}

/// `osimage verify` succeeds and says the signature is good.
fn assert_signature_good(image: &Path, key: &Path) {
    let v = verify(image, key).ok();
    assert!(
        v.stdout_str().contains("signature good"),
        "{}",
        v.describe()
    );
}

/// `osimage restore IMAGE --to OUT --require-signature KEY`.
fn restore_signed(image: &Path, out: &Path, key: &Path) -> Run {
    run(&[
        "restore".as_ref(),
        image.as_os_str(),
        "--to".as_ref(),
        out.as_os_str(),
        "--require-signature".as_ref(),
        key.as_os_str(),
    ])
}

/// The minisign tool's own check of IMAGE's signature against KEY.
fn minisign_verify(image: &Path, key: &Path) -> std::process::Output {
    Command::new("minisign")
        .arg("-Vm")
        .arg(image)
        .arg("-p")
        .arg(key)
        .output()
        .expect("minisign")
}

fn assert_minisign_accepts(image: &Path, key: &Path) {
    let m = minisign_verify(image, key);
    assert!(
        m.status.success(),
        "minisign -V: {}",
        String::from_utf8_lossy(&m.stderr)
    );
}

#[test]
fn a_signed_image_checks_with_osimage_and_minisign_and_restore_enforces_it() {
    common::need(&[("minisign", "minisign")]);
    let dir = common::scratch();
    let image = small_image(dir.path(), b"signed\n");
    let (sk, pk) = key_pair(dir.path(), "fleet", "hunter2");
    let (_, stranger) = key_pair(dir.path(), "stranger", "x");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "hunter2\n").expect("write");

    // Unsigned: verify --pubkey and restore --require-signature refuse, naming the image.
    verify(&image, &pk).fails().mentions(b"no signature");
    let out = dir.path().join("out");
    let restore = |key: &Path| restore_signed(&image, &out, key);
    restore(&pk).fails().mentions(b"no signature");
    assert!(
        !out.exists(),
        "restore wrote before the signature was checked"
    );

    run(&sign_args(&image, &sk, Some(&pw))).ok();
    let sig = dir.path().join("img.oimg.minisig");
    assert!(sig.exists());
    // The minisign tool accepts osimage's signature.
    assert_minisign_accepts(&image, &pk);
    assert_signature_good(&image, &pk);
    // Another fleet's key: refused.
    restore(&stranger).fails().mentions(b"not valid");
    assert!(!out.exists());
    restore(&pk).ok();
    assert_eq!(
        std::fs::read(out.join("etc/hostname")).expect("restored"),
        b"signed\n"
    );

    // One byte changed after signing: refused by both.
    let bytes = std::fs::read(&image).expect("read");
    let mut altered = bytes.clone();
    let at = altered.len() / 2;
    altered[at] ^= 1;
    std::fs::write(&image, altered).expect("write");
    verify(&image, &pk).fails().mentions(b"not valid");
    let m = minisign_verify(&image, &pk);
    assert!(!m.status.success(), "minisign accepted an altered image");
    // A wrong key password is a clear error.
    std::fs::write(&pw, "wrong\n").expect("write");
    run(&sign_args(&image, &sk, Some(&pw)))
        .fails()
        .mentions(b"fleet.key");
}

/// The signature check and the read use one open file, held by a read lease: an image that
/// another process holds open for writing could change between the two, so it is refused
/// before anything is written; once the writer is gone the same command restores it.
#[test]
fn a_signed_image_held_open_for_writing_is_refused() {
    let dir = common::scratch();
    let image = small_image(dir.path(), b"leased\n");
    let (sk, pk) = key_pair(dir.path(), "fleet", "pw");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "pw\n").expect("write");
    run(&sign_args(&image, &sk, Some(&pw))).ok();
    let out = dir.path().join("out");
    let restore = || restore_signed(&image, &out, &pk);
    // Another process with the image open for writing (opened, not written: the signature
    // still matches, so only the lease can refuse it).
    let mut writer = Command::new("sh")
        .arg("-c")
        .arg("exec 3>>\"$1\"; echo ready; exec sleep 60")
        .arg("sh")
        .arg(&image)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn a writer");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(writer.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("writer ready");
    let r = restore().fails();
    let _ = writer.kill();
    let _ = writer.wait();
    assert!(
        r.stderr.contains("open for writing by another process"),
        "{}",
        r.describe()
    );
    assert!(!out.exists(), "restore wrote while the image could change");
    restore().ok();
    assert_eq!(
        std::fs::read(out.join("etc/hostname")).expect("restored"),
        b"leased\n"
    );
}

/// `tests/fixtures/minisign/`: key pairs made by the minisign tool (0.11) itself, throwaway
/// keys for these tests only. `unencrypted.key` by `minisign -G -W` (no password; its
/// checksum is left zero, which the minisign crate's own loader rejects); `protected.key` by
/// `minisign -G` with the password `throwaway`.
fn fixture_key(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/minisign")
        .join(name)
}

/// Issue #24 item 10: an unencrypted minisign key (`minisign -G -W`) signs without any
/// prompt (no terminal here), and both osimage and minisign accept the signature.
#[test]
fn an_unencrypted_minisign_key_signs_and_both_tools_verify() {
    let dir = common::scratch();
    let image = small_image(dir.path(), b"keys\n");
    let (sk, pk) = (
        fixture_key("unencrypted.key"),
        fixture_key("unencrypted.pub"),
    );
    common::osimage_no_tty(sign_args(&image, &sk, None)).ok();
    let sig = dir.path().join("img.oimg.minisig");
    assert!(sig.is_file(), "no signature written");
    assert_signature_good(&image, &pk);
    common::need(&[("minisign", "minisign")]);
    assert_minisign_accepts(&image, &pk);
    // minisign's own password-protected key, with its password from a file: the same.
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "throwaway\n").expect("write");
    std::fs::remove_file(&sig).expect("rm");
    run(&sign_args(&image, &fixture_key("protected.key"), Some(&pw))).ok();
    verify(&image, &fixture_key("protected.pub")).ok();
}

/// Issue #24 item 10: a public key given as --key, a wrong password, no terminal to ask for
/// the password on, a file that is no key, and a damaged unencrypted key each get their own
/// message naming the key file; none writes a signature or tells to use another kind of key.
#[test]
fn each_signing_key_problem_has_its_own_message() {
    let dir = common::scratch();
    let image = small_image(dir.path(), b"keys\n");
    let sig = dir.path().join("img.oimg.minisig");
    let protected = fixture_key("protected.key");
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-throwaway\n").expect("write");
    let garbage = dir.path().join("garbage.key");
    std::fs::write(&garbage, "hello\nworld\n").expect("write");
    // The unencrypted key with one byte of its secret seed flipped (record byte 70, inside
    // the base64 line: character 70 * 4 / 3 of it).
    let damaged = dir.path().join("damaged.key");
    let text = std::fs::read_to_string(fixture_key("unencrypted.key")).expect("read");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let at = 70 * 4 / 3;
    let c = lines[1].as_bytes()[at];
    let flipped = if c == b'A' { 'B' } else { 'A' };
    lines[1].replace_range(at..at + 1, &flipped.to_string());
    std::fs::write(&damaged, lines.join("\n") + "\n").expect("write");

    let public = fixture_key("unencrypted.pub");
    let cases: [(&Path, Option<&Path>, bool, &str); 5] = [
        (&public, None, false, "is a minisign public key"),
        (
            &protected,
            Some(&wrong),
            false,
            "wrong password for this secret key",
        ),
        (
            &protected,
            None,
            true,
            "no terminal to ask for its password on",
        ),
        (&garbage, None, false, "is not a minisign secret key"),
        (&damaged, None, false, "secret key is damaged"),
    ];
    for (key, pw, no_tty, message) in cases {
        let args = sign_args(&image, key, pw);
        let r = if no_tty {
            common::osimage_no_tty(args)
        } else {
            run(&args)
        };
        let r = r
            .fails()
            .mentions(message.as_bytes())
            .mentions(key.as_os_str().as_encoded_bytes());
        assert!(
            !r.stderr.contains("use a password-protected key"),
            "{}",
            r.describe()
        );
        if no_tty {
            r.mentions(b"--key-password-file");
        }
        assert!(!sig.exists(), "a failed sign wrote {}", sig.display());
    }
}
