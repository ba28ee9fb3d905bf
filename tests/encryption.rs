//! `capture --encrypt` (docs/FORMAT.md §11, docs/SECURITY.md): an encrypted image round-trips
//! with its passphrase or age key, shows no file name or content, says "wrong passphrase or
//! key" for a wrong one and "damaged" for damage, and the rescue agent's console prompt opens
//! it (the prompt logic, run here without a VM).

use crate::common;

use std::ffi::OsStr;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret;
use common::{Run, osimage, osimage_no_tty};
use osimage::agent::Console;
use osimage::agent::unlock::open_image;
use tempfile::TempDir;

const SECRET_NAME: &str = "id_ed25519-of-the-ceo";
const SECRET_TEXT: &[u8] = b"the launch codes are 0000, repeated for compressibility. ";

struct Case {
    dir: TempDir,
    root: PathBuf,
}

impl Case {
    fn new() -> Case {
        let dir = common::scratch();
        let root = dir.path().join("src");
        std::fs::create_dir_all(root.join("home/ceo/.ssh")).expect("mkdir");
        std::fs::write(
            root.join("home/ceo/.ssh").join(SECRET_NAME),
            SECRET_TEXT.repeat(2000),
        )
        .expect("write");
        std::fs::write(
            root.join("noise.bin"),
            common::fixture::Rng::new(9).bytes(400_000),
        )
        .expect("write");
        Case { dir, root }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    /// An age key pair: (identity file, public key).
    fn identity(&self, name: &str) -> (PathBuf, String) {
        let id = age::x25519::Identity::generate();
        let file = self.write(
            name,
            &format!("# test key\n{}\n", id.to_string().expose_secret()),
        );
        (file, id.to_public().to_string())
    }
}

fn run(args: &[&OsStr]) -> Run {
    osimage(args.iter().copied())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_passphrase_image_round_trips_and_shows_no_name_or_content() {
    let c = Case::new();
    let pw = c.write("pw", "correct horse battery staple\n");
    let image = c.path("enc.oimg");
    let plain = c.path("plain.oimg");
    common::capture(&c.root, &plain, &["-q"]);
    common::capture(
        &c.root,
        &image,
        &["-q", "--encrypt", "--passphrase-file", pw.to_str().unwrap()],
    );
    // The control: the plain image stores the content verbatim (zstd keeps its first bytes).
    let plain_bytes = std::fs::read(&plain).expect("read");
    assert!(
        contains(&plain_bytes, &SECRET_TEXT[..24]),
        "control: plain content visible"
    );
    let bytes = std::fs::read(&image).expect("read");
    assert!(
        !contains(&bytes, SECRET_NAME.as_bytes()),
        "file name visible"
    );
    assert!(
        !contains(&bytes, &SECRET_TEXT[..24]),
        "file content visible"
    );
    assert!(!contains(&bytes, b"OBLK"), "block headers visible");

    let list = run(&[
        "list".as_ref(),
        image.as_os_str(),
        "--passphrase-file".as_ref(),
        pw.as_os_str(),
    ])
    .ok();
    assert!(
        list.stdout_str().contains(SECRET_NAME),
        "{}",
        list.describe()
    );
    let out = c.path("out");
    run(&[
        "extract".as_ref(),
        image.as_os_str(),
        "-C".as_ref(),
        out.as_os_str(),
        "--passphrase-file".as_ref(),
        pw.as_os_str(),
    ])
    .ok();
    let rel = Path::new("home/ceo/.ssh").join(SECRET_NAME);
    assert_eq!(
        std::fs::read(out.join(&rel)).expect("extracted"),
        std::fs::read(c.root.join(&rel)).expect("source")
    );
    // The environment variable works too, and verify checks every sealed segment.
    let v = common::osimage_env(
        ["verify".as_ref(), image.as_os_str()],
        &[("OSIMAGE_PASSPHRASE", "correct horse battery staple")],
    )
    .ok();
    assert!(v.stdout_str().contains("OK"), "{}", v.describe());
}

#[test]
fn a_wrong_or_missing_passphrase_is_a_clear_error_and_nothing_is_written() {
    let c = Case::new();
    let pw = c.write("pw", "right\n");
    let wrong = c.write("wrong", "wrong\n");
    let image = c.path("enc.oimg");
    common::capture(
        &c.root,
        &image,
        &["-q", "--encrypt", "--passphrase-file", pw.to_str().unwrap()],
    );
    for cmd in ["list", "info", "verify"] {
        let r = run(&[
            cmd.as_ref(),
            image.as_os_str(),
            "--passphrase-file".as_ref(),
            wrong.as_os_str(),
        ])
        .fails();
        assert_eq!(
            r.stderr.trim_end(),
            format!(
                "osimage: error: wrong passphrase or key for {}",
                image.display()
            ),
            "{cmd}"
        );
    }
    let out = c.path("out");
    run(&[
        "extract".as_ref(),
        image.as_os_str(),
        "-C".as_ref(),
        out.as_os_str(),
        "--passphrase-file".as_ref(),
        wrong.as_os_str(),
    ])
    .fails()
    .mentions(b"wrong passphrase or key");
    assert!(
        !out.exists() || common::is_empty_dir(&out),
        "extract wrote with a wrong key"
    );
    // No passphrase and no terminal to ask on.
    let r = osimage_no_tty(["list".as_ref(), image.as_os_str()]).fails();
    assert!(r.stderr.contains("--passphrase-file"), "{}", r.describe());
    // --encrypt without any passphrase source and no terminal: refused before writing.
    let r = osimage_no_tty([
        "capture".as_ref(),
        c.root.as_os_str(),
        "-o".as_ref(),
        c.path("never.oimg").as_os_str(),
        "--encrypt".as_ref(),
    ])
    .fails();
    assert!(r.stderr.contains("needs a passphrase"), "{}", r.describe());
    assert!(!c.path("never.oimg").exists());
}

#[test]
fn a_recipient_capture_holds_no_secret_and_opens_with_the_identity() {
    let c = Case::new();
    let (id, public) = c.identity("id.txt");
    let (other, _) = c.identity("other.txt");
    let image = c.path("enc.oimg");
    // --verify reads the image back with the writer's own key: no identity needed.
    common::capture(&c.root, &image, &["-q", "--recipient", &public, "--verify"]);
    let list = run(&[
        "list".as_ref(),
        image.as_os_str(),
        "--identity".as_ref(),
        id.as_os_str(),
    ])
    .ok();
    assert!(list.stdout_str().contains(SECRET_NAME));
    run(&[
        "list".as_ref(),
        image.as_os_str(),
        "--identity".as_ref(),
        other.as_os_str(),
    ])
    .fails()
    .mentions(b"wrong passphrase or key for");
    let r = osimage_no_tty(["list".as_ref(), image.as_os_str()]).fails();
    assert!(r.stderr.contains("--identity FILE"), "{}", r.describe());
    // A refresh of an encrypted base, encrypted again.
    std::fs::write(c.root.join("new.txt"), b"new\n").expect("write");
    let next = c.path("next.oimg");
    common::capture(
        &c.root,
        &next,
        &[
            "-q",
            "--base",
            image.to_str().unwrap(),
            "--identity",
            id.to_str().unwrap(),
            "--recipient",
            &public,
        ],
    );
    let list = run(&[
        "list".as_ref(),
        next.as_os_str(),
        "--identity".as_ref(),
        id.as_os_str(),
    ])
    .ok();
    assert!(
        list.stdout_str().contains("/new.txt"),
        "{}",
        list.describe()
    );
    // A refresh of an encrypted base is never written in the clear.
    osimage_no_tty([
        "capture".as_ref(),
        c.root.as_os_str(),
        "-o".as_ref(),
        c.path("clear.oimg").as_os_str(),
        "--base".as_ref(),
        image.as_os_str(),
        "--identity".as_ref(),
        id.as_os_str(),
    ])
    .fails()
    .mentions(b"encrypt its refresh too");
    assert!(!c.path("clear.oimg").exists());
    // A bad recipient is a usage problem named as such.
    osimage_no_tty([
        "capture".as_ref(),
        c.root.as_os_str(),
        "-o".as_ref(),
        c.path("x.oimg").as_os_str(),
        "--recipient".as_ref(),
        "age1notakey".as_ref(),
    ])
    .fails()
    .mentions(b"not an age public key");
}

fn flip(image: &Path, offset: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .expect("open");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).expect("read");
    f.write_all_at(&[b[0] ^ 0x01], offset).expect("write");
}

#[test]
fn damage_to_an_encrypted_image_is_reported_as_damage_not_as_a_wrong_key() {
    let c = Case::new();
    let (id, public) = c.identity("id.txt");
    let image = c.path("enc.oimg");
    common::capture(&c.root, &image, &["-q", "--recipient", &public]);
    let len = std::fs::metadata(&image).expect("stat").len();
    let with_id = |img: &Path, cmd: &str| {
        run(&[
            cmd.as_ref(),
            img.as_os_str(),
            "--identity".as_ref(),
            id.as_os_str(),
        ])
    };
    // FORMAT.md §11.5: the key record is at 64; its wrapped key at 128.
    let k = c.path("keyrec.oimg");
    std::fs::copy(&image, &k).expect("copy");
    flip(&k, 64 + 64 + 40);
    let r = with_id(&k, "list").fails();
    assert!(
        r.stderr.contains("key record checksum mismatch"),
        "{}",
        r.describe()
    );
    // A flipped byte in the middle of the sealed packs: verify names the damaged file.
    let p = c.path("pack.oimg");
    std::fs::copy(&image, &p).expect("copy");
    flip(&p, len / 3);
    let r = with_id(&p, "verify").reports_damage();
    assert!(r.stdout_str().contains("noise.bin"), "{}", r.describe());
    // The sealed manifest (just before the 64-byte trailer).
    let m = c.path("manifest.oimg");
    std::fs::copy(&image, &m).expect("copy");
    flip(&m, len - 64 - 100);
    with_id(&m, "list").fails().mentions(b"checksum mismatch");
}

#[test]
fn the_rescue_agent_asks_on_the_console_until_the_passphrase_opens_the_image() {
    let c = Case::new();
    let pw = c.write("pw", "rescue me\n");
    let image = c.path("enc.oimg");
    common::capture(
        &c.root,
        &image,
        &["-q", "--encrypt", "--passphrase-file", pw.to_str().unwrap()],
    );
    let con = Console::open();
    let image = |u: &osimage::Unlock| osimage::PayloadReader::open(&image, u);
    let image = &image;
    let mut input = Cursor::new(b"nope\nrescue me\n".to_vec());
    let r = open_image(image, None, &con, &mut input).expect("second try opens");
    assert!(r.encrypted());
    assert_eq!(input.position(), 15, "both lines read");
    let mut three_wrong = Cursor::new(b"a\nb\nc\nrescue me\n".to_vec());
    let e = open_image(image, None, &con, &mut three_wrong)
        .err()
        .expect("three tries");
    assert!(e.starts_with("wrong-passphrase"), "{e}");
    let e = open_image(image, None, &con, &mut Cursor::new(Vec::new()))
        .err()
        .expect("no input");
    assert!(e.starts_with("no-passphrase"), "{e}");
    // osimage.keyfile: no question asked; a wrong one fails at once.
    let mut untouched = Cursor::new(b"x\n".to_vec());
    open_image(image, Some("rescue me\n"), &con, &mut untouched).expect("keyfile opens");
    assert_eq!(untouched.position(), 0);
    let e = open_image(image, Some("bad\n"), &con, &mut untouched)
        .err()
        .expect("bad keyfile");
    assert!(e.starts_with("wrong-passphrase"), "{e}");
    // A plain image opens without a question.
    let plain = c.path("plain.oimg");
    common::capture(&c.root, &plain, &["-q"]);
    let plain = |u: &osimage::Unlock| osimage::PayloadReader::open(&plain, u);
    let r = open_image(&plain, None, &con, &mut untouched).expect("plain");
    assert!(!r.encrypted());
    assert_eq!(untouched.position(), 0);
}

#[test]
fn diff_opens_each_image_with_its_own_key_and_a_wrong_one_names_the_side() {
    let c = Case::new();
    let pw_old = c.write("pw-old", "old secret\n");
    let pw_new = c.write("pw-new", "new secret\n");
    let old = c.path("old.oimg");
    let new = c.path("new.oimg");
    common::capture(
        &c.root,
        &old,
        &[
            "-q",
            "--encrypt",
            "--passphrase-file",
            pw_old.to_str().unwrap(),
        ],
    );
    std::fs::write(c.root.join("added.txt"), b"only in the new image\n").expect("write");
    common::capture(
        &c.root,
        &new,
        &[
            "-q",
            "--encrypt",
            "--passphrase-file",
            pw_new.to_str().unwrap(),
        ],
    );
    let diff = |extra: &[&OsStr]| {
        let mut args: Vec<&OsStr> = vec!["diff".as_ref(), old.as_os_str(), new.as_os_str()];
        args.extend_from_slice(extra);
        osimage_no_tty(args)
    };
    let r = diff(&[
        "--old-passphrase-file".as_ref(),
        pw_old.as_os_str(),
        "--new-passphrase-file".as_ref(),
        pw_new.as_os_str(),
    ])
    .ok();
    assert!(
        r.stdout_str().contains("/added.txt"),
        "the difference is shown: {}",
        r.describe()
    );
    // One shared passphrase opens the old image only: the error says it is the new one.
    let r = diff(&["--passphrase-file".as_ref(), pw_old.as_os_str()]).fails();
    assert!(
        r.stderr.contains(&format!(
            "the new image: wrong passphrase or key for {}",
            new.display()
        )),
        "{}",
        r.describe()
    );
    assert!(
        r.stderr.contains("--new-passphrase-file"),
        "{}",
        r.describe()
    );
    // A side's own passphrase replaces the shared one, for that side only.
    let r = diff(&[
        "--passphrase-file".as_ref(),
        pw_new.as_os_str(),
        "--old-passphrase-file".as_ref(),
        pw_new.as_os_str(),
    ])
    .fails();
    assert!(
        r.stderr.contains(&format!(
            "the old image: wrong passphrase or key for {}",
            old.display()
        )),
        "{}",
        r.describe()
    );
    let r = diff(&[
        "--passphrase-file".as_ref(),
        pw_new.as_os_str(),
        "--old-passphrase-file".as_ref(),
        pw_old.as_os_str(),
    ])
    .ok();
    assert!(r.stdout_str().contains("/added.txt"), "{}", r.describe());
}

/// A plain base refreshed into an encrypted image: the base's blocks cannot be copied as
/// they are (they must be sealed), so they are read and sealed on the way; nothing of them
/// shows in the clear, and the result verifies and lists with its key.
#[test]
fn a_plain_base_refreshed_with_encrypt_is_sealed_whole() {
    let c = Case::new();
    let (plain, sealed) = (c.path("plain.oimg"), c.path("sealed.oimg"));
    common::capture(&c.root, &plain, &["-q"]);
    let (id, public) = c.identity("key.txt");
    common::capture(
        &c.root,
        &sealed,
        &[
            "-q",
            "--base",
            plain.to_str().unwrap(),
            "--recipient",
            &public,
        ],
    );
    let info = run(&[
        "info".as_ref(),
        sealed.as_os_str(),
        "--json".as_ref(),
        "--identity".as_ref(),
        id.as_os_str(),
    ])
    .ok();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).expect("json");
    assert!(
        info["lineage"]["blocks_copied"].as_u64() > Some(0),
        "{info:#}"
    );
    // The control: the plain base shows the text in the clear (its first copy is a zstd
    // literal amid the noise's raw literals) and holds the name. The name is not searched in
    // its raw bytes: the manifest's literals are Huffman-coded or raw depending on how much
    // random data (ids, nanoseconds) they hold, which varies from run to run.
    let clear = std::fs::read(&plain).expect("read");
    assert!(contains(&clear, &SECRET_TEXT[..40]));
    let listed = run(&["list".as_ref(), plain.as_os_str()]).ok();
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains(SECRET_NAME),
        "control: the plain base lists the name"
    );
    let bytes = std::fs::read(&sealed).expect("read");
    assert!(!contains(&bytes, SECRET_NAME.as_bytes()));
    assert!(!contains(&bytes, &SECRET_TEXT[..40]));
    run(&[
        "verify".as_ref(),
        sealed.as_os_str(),
        "--identity".as_ref(),
        id.as_os_str(),
    ])
    .ok();
}

/// Issue #20 item 4: an image whose age scrypt stanza asks for work factor 22 (4 GiB of memory,
/// minutes of CPU) is refused before scrypt runs, under the 512 MiB cap of a reading command.
/// The stanza is rewritten in place ("18" → "22", FORMAT.md §11.5) and the key record's hash
/// recomputed, so only the work factor tells it apart from a real image.
#[test]
fn a_scrypt_work_factor_above_what_capture_writes_is_refused_before_scrypt_runs() {
    use std::os::unix::fs::FileExt;
    let c = Case::new();
    let pw = c.write("pw", "correct horse\n");
    let image = c.path("enc.oimg");
    common::capture(
        &c.root,
        &image,
        &["-q", "--encrypt", "--passphrase-file", pw.to_str().unwrap()],
    );
    // FORMAT.md §11.5: the key record's 64-byte header at 64 (age length at +12, BLAKE3 of
    // the wrapped key at +32), the age bytes at 128.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&image)
        .expect("open");
    let mut head = [0u8; 64];
    f.read_exact_at(&mut head, 64).expect("read");
    let age_len = u32::from_le_bytes(head[12..16].try_into().unwrap()) as usize;
    let mut wrapped = vec![0u8; age_len];
    f.read_exact_at(&mut wrapped, 128).expect("read");
    let stanza = b"-> scrypt ";
    let start = wrapped
        .windows(stanza.len())
        .position(|w| w == stanza)
        .expect("a scrypt stanza");
    let end = start + wrapped[start..].iter().position(|&b| b == b'\n').unwrap();
    assert_eq!(
        &wrapped[end - 3..end],
        b" 18",
        "capture writes work factor 18"
    );
    wrapped[end - 2..end].copy_from_slice(b"22");
    f.write_all_at(&wrapped, 128).expect("write");
    f.write_all_at(blake3::hash(&wrapped).as_bytes(), 64 + 32)
        .expect("write");
    drop(f);
    for cmd in ["info", "list"] {
        let r = common::osimage_capped([
            cmd.as_ref(),
            image.as_os_str(),
            "--passphrase-file".as_ref(),
            pw.as_os_str(),
        ])
        .fails();
        assert!(
            r.stderr.contains("scrypt work factor 22 (4 GiB of memory)")
                && r.stderr.contains(&image.display().to_string()),
            "{cmd}: {}",
            r.describe()
        );
        assert!(!r.stderr.contains("wrong passphrase"), "{}", r.describe());
    }
}
