//! Encrypted stores (docs/STORE.md §6, issue #22) against a real Garage on loopback: `store
//! init --encrypt` makes one, a capture into it reads back as its source tree through every
//! reading command given the passphrase, a second capture of the same tree uploads no pack,
//! the bucket's keys and bodies hold neither the series name nor a file name, a wrong or
//! missing passphrase is refused naming the store with nothing written, a tampered pack is
//! refused by its id, and the commands not built for encrypted stores refuse them by name.

use crate::common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use common::compare::{Options, assert_no_differences, diff_trees};
use common::garage::Garage;

const PASS: &str = "correct horse battery staple";
/// A series name and a file name that must never appear in the bucket.
const SERIES: &str = "payroll-db07";
const FILE: &str = "quarterly-salaries-confidential.txt";

fn s(x: &str) -> &OsStr {
    OsStr::new(x)
}

/// `osimage ARGS…` against `g` with `pass` as OSIMAGE_PASSPHRASE (none: unset), without a
/// terminal, so nothing can be asked.
fn osimage_pass(g: &Garage, pass: Option<&str>, args: &[&OsStr]) -> common::Run {
    use std::os::unix::process::CommandExt as _;
    let env = g.osimage_env();
    let mut all = args.to_vec();
    if matches!(
        args.first().and_then(|a| a.to_str()),
        Some("verify" | "extract" | "list" | "info" | "restore")
    ) {
        all.extend([s("--retry-for"), s("5")]);
    }
    common::osimage_with(all, |cmd| {
        for (k, v) in &env {
            cmd.env(k, v);
        }
        cmd.env_remove("OSIMAGE_PASSPHRASE");
        if let Some(p) = pass {
            cmd.env("OSIMAGE_PASSPHRASE", p);
        }
        // SAFETY: setsid is async-signal-safe; runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    })
}

fn osimage(g: &Garage, args: &[&OsStr]) -> common::Run {
    osimage_pass(g, Some(PASS), args)
}

/// A tree of a few hundred files, one of them named [`FILE`].
fn tree(dir: &Path) -> PathBuf {
    let root = common::text_and_noise_tree(dir, 6, 30, 300_000, 0xc0de);
    std::fs::write(root.join(FILE), b"alice 100\nbob 200\n".repeat(100)).unwrap();
    root
}

/// An encrypted store at `s3://BUCKET/PREFIX` holding one capture of a fresh tree.
fn store_with_a_version(g: &Garage, dir: &Path, prefix: &str) -> (PathBuf, String, String) {
    let root = tree(dir);
    let store = format!("s3://{}/{prefix}", g.bucket());
    let made = osimage(g, &[s("store"), s("init"), s(&store), s("--encrypt")]).ok();
    assert!(
        made.stderr.contains("encrypted store") || made.stdout_str().contains("encrypted store"),
        "{}",
        made.describe()
    );
    let address = format!("{store}/{SERIES}");
    osimage(
        g,
        &[
            s("capture"),
            root.as_os_str(),
            s("-o"),
            s(&address),
            s("-q"),
        ],
    )
    .ok();
    (root, store, address)
}

/// Every key under `prefix` and its body.
fn objects(g: &Garage, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let client = g.client();
    g.keys(prefix)
        .into_iter()
        .map(|k| {
            let body = client.get(&k, 1 << 30).expect("get").expect("listed");
            (k, body)
        })
        .collect()
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn an_encrypted_store_reads_back_and_shows_no_names() {
    let dir = common::scratch();
    let g = Garage::start();
    let (root, _store, address) = store_with_a_version(&g, dir.path(), "vault");

    // Every reading command, given the passphrase.
    let out = dir.path().join("out");
    osimage(&g, &[s("extract"), s(&address), s("-C"), out.as_os_str()]).ok();
    let diffs = diff_trees(&root, &out, Options { nlink: true });
    assert_no_differences(
        &diffs,
        "the source tree vs its extract from the encrypted store",
    );
    let listed = osimage(&g, &[s("list"), s(&address)]).ok();
    assert!(contains(&listed.stdout, FILE), "{}", listed.describe());
    let info = osimage(&g, &[s("info"), s(&address)]).ok();
    assert!(!info.stdout.is_empty(), "{}", info.describe());
    let verified = osimage(&g, &[s("verify"), s(&address)]).ok();
    assert!(
        verified.stdout_str().contains("OK"),
        "{}",
        verified.describe()
    );
    let to = dir.path().join("restored");
    osimage(&g, &[s("restore"), s(&address), s("--to"), to.as_os_str()]).ok();
    assert_eq!(
        std::fs::read(to.join(FILE)).unwrap(),
        std::fs::read(root.join(FILE)).unwrap()
    );

    // The bucket: no series name, no file name, in any key or any body.
    let all = objects(&g, "vault/");
    assert!(
        all.iter().any(|(k, _)| k.starts_with("vault/keys/")),
        "a key object"
    );
    assert!(all.iter().any(|(k, _)| k.starts_with("vault/packs/")));
    for (key, body) in &all {
        for secret in [SERIES, FILE, "noise.bin", "alice 100"] {
            assert!(!key.contains(secret), "{key} shows {secret}");
            assert!(!contains(body, secret), "the body of {key} shows {secret}");
        }
    }
    // The version lies under a keyed folder of 32 hex digits.
    let versions: Vec<_> = all
        .iter()
        .filter(|(k, _)| k.starts_with("vault/images/"))
        .collect();
    assert_eq!(versions.len(), 1);
    let folder = versions[0].0.split('/').nth(2).unwrap();
    assert_eq!(folder.len(), 32, "{folder}");
    assert!(folder.bytes().all(|b| b.is_ascii_hexdigit()), "{folder}");

    // A second capture of the same tree deduplicates through the sealed index: no new pack.
    let packs = g.keys("vault/packs/");
    std::thread::sleep(std::time::Duration::from_secs(2));
    osimage(
        &g,
        &[
            s("capture"),
            root.as_os_str(),
            s("-o"),
            s(&address),
            s("-q"),
        ],
    )
    .ok();
    assert_eq!(
        g.keys("vault/packs/"),
        packs,
        "the second capture uploads no pack"
    );
    assert_eq!(g.keys("vault/images/").len(), 2);
    let out2 = dir.path().join("out2");
    osimage(&g, &[s("extract"), s(&address), s("-C"), out2.as_os_str()]).ok();
    let diffs = diff_trees(&root, &out2, Options { nlink: true });
    assert_no_differences(&diffs, "the second version's extract");
}

#[test]
fn a_wrong_or_missing_passphrase_is_refused_naming_the_store() {
    let dir = common::scratch();
    let g = Garage::start();
    let (root, store, address) = store_with_a_version(&g, dir.path(), "locked");
    let before = g.keys("locked/");
    let out = dir.path().join("out");
    for pass in [Some("not the passphrase"), None] {
        let run = osimage_pass(
            &g,
            pass,
            &[s("extract"), s(&address), s("-C"), out.as_os_str()],
        );
        assert_eq!(run.code, 1, "{}", run.describe());
        assert!(
            run.stderr.contains(&store),
            "names the store: {}",
            run.describe()
        );
        let said = match pass {
            Some(_) => "wrong passphrase or key",
            None => "passphrase",
        };
        assert!(run.stderr.contains(said), "{}", run.describe());
        assert!(!out.exists(), "nothing was written");
        // A capture is refused the same way, before it writes a lock or a pack.
        let run = osimage_pass(
            &g,
            pass,
            &[
                s("capture"),
                root.as_os_str(),
                s("-o"),
                s(&address),
                s("-q"),
            ],
        );
        assert_ne!(run.code, 0, "{}", run.describe());
        assert!(run.stderr.contains(&store), "{}", run.describe());
    }
    assert_eq!(
        g.keys("locked/"),
        before,
        "nothing was written to the store"
    );
}

#[test]
fn a_tampered_pack_is_refused_by_its_id() {
    let dir = common::scratch();
    let g = Garage::start();
    let (_, store, address) = store_with_a_version(&g, dir.path(), "tamper");
    // The test holds the key too: it finds the object of the version's first pack.
    let root = osimage::store::StoreRoot::parse(&store).unwrap();
    let unlock = osimage::Unlock {
        passphrase: Some(PASS.to_string().into()),
        ..osimage::Unlock::default()
    };
    let st = osimage::store::Store::open_unlocked(g.client(), root, &unlock).unwrap();
    let version = st.newest(SERIES).unwrap().expect("a version");
    let head = st.read_head(SERIES, &version).unwrap();
    let id = head.packs[0];
    let key = st.root.key(&st.pack_rel(&id));
    let client = g.client();
    let mut body = client.get(&key, 1 << 30).unwrap().expect("the pack");
    let middle = body.len() / 2;
    body[middle] ^= 0x40;
    client.put(&key, &body).unwrap();

    let hex = osimage::store::names::hex(&id);
    let verify = osimage(&g, &[s("verify"), s(&address)]);
    assert_ne!(verify.code, 0, "{}", verify.describe());
    assert!(
        verify.stderr.contains(&hex) || verify.stdout_str().contains(&hex),
        "the pack is named by its id: {}",
        verify.describe()
    );
    let out = dir.path().join("out");
    let extract = osimage(&g, &[s("extract"), s(&address), s("-C"), out.as_os_str()]);
    assert_ne!(extract.code, 0, "{}", extract.describe());
    assert!(extract.stderr.contains(&hex), "{}", extract.describe());
}

#[test]
fn commands_not_built_for_encrypted_stores_refuse_them() {
    let dir = common::scratch();
    let g = Garage::start();
    let (_, store, address) = store_with_a_version(&g, dir.path(), "refuse");
    let before = g.keys("refuse/");
    let iso = dir.path().join("x.iso");
    let netboot = dir.path().join("nb");
    let runs: Vec<(&str, Vec<&OsStr>)> = vec![
        ("store ls", vec![s("store"), s("ls"), s(&store)]),
        ("store check", vec![s("store"), s("check"), s(&store)]),
        (
            "store prune",
            vec![
                s("store"),
                s("prune"),
                s(&store),
                s("--keep-last"),
                s("1"),
                s("--all"),
            ],
        ),
        ("store unlock", vec![s("store"), s("unlock"), s(&store)]),
        (
            "export",
            vec![s("export"), s(&address), s("-o"), iso.as_os_str()],
        ),
        (
            "netboot",
            vec![s("netboot"), s(&address), s("-o"), netboot.as_os_str()],
        ),
    ];
    for (what, args) in runs {
        let run = osimage(&g, &args);
        assert_ne!(run.code, 0, "{what}: {}", run.describe());
        assert!(
            run.stderr.contains("an encrypted store")
                && run.stderr.contains(what)
                && run.stderr.contains("not built"),
            "{what}: {}",
            run.describe()
        );
    }
    assert!(!iso.exists() && !netboot.exists());
    assert_eq!(
        g.keys("refuse/"),
        before,
        "nothing was written to the store"
    );
}
