//! Encrypted stores (docs/STORE.md §6, issue #22) against a real Garage on loopback: `store
//! init --encrypt` makes one, a capture into it reads back as its source tree through every
//! reading command given the passphrase, a second capture of the same tree uploads no pack,
//! the bucket's keys and bodies hold neither the series name nor a file name, a wrong or
//! missing passphrase is refused naming the store with nothing written, a tampered pack is
//! refused by its id and object key, `store key list [--json]` shows the key objects, and the commands not built for encrypted stores refuse them by name.

use crate::common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use common::compare::{Options, assert_no_differences, diff_trees};
use common::garage::Garage;

pub(crate) const PASS: &str = "correct horse battery staple";
/// A series name and a file name that must never appear in the bucket.
pub(crate) const SERIES: &str = "payroll-db07";
pub(crate) const FILE: &str = "quarterly-salaries-confidential.txt";

pub(crate) fn s(x: &str) -> &OsStr {
    OsStr::new(x)
}

/// `osimage ARGS…` against `g` with `pass` as OSIMAGE_PASSPHRASE (none: unset), without a
/// terminal, so nothing can be asked, and with the test windows (`TIMES`).
pub(crate) fn osimage_pass(g: &Garage, pass: Option<&str>, args: &[&OsStr]) -> common::Run {
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
        cmd.env("OSIMAGE_STORE_TIMES", TIMES);
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
pub(crate) fn tree(dir: &Path) -> PathBuf {
    let root = common::text_and_noise_tree(dir, 6, 30, 300_000, 0xc0de);
    std::fs::write(root.join(FILE), b"alice 100\nbob 200\n".repeat(100)).unwrap();
    root
}

/// An encrypted store at `s3://BUCKET/PREFIX` holding one capture of a fresh tree.
pub(crate) fn store_with_a_version(
    g: &Garage,
    dir: &Path,
    prefix: &str,
) -> (PathBuf, String, String) {
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
pub(crate) fn objects(g: &Garage, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let client = g.client();
    g.keys(prefix)
        .into_iter()
        .map(|k| {
            let body = client.get(&k, 1 << 30).expect("get").expect("listed");
            (k, body)
        })
        .collect()
}

pub(crate) fn contains(hay: &[u8], needle: &str) -> bool {
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

    // Named by its id and by its object's key (its keyed name, STORE.md §6.1).
    let hex = osimage::store::names::hex(&id);
    let named = format!("pack {hex} (object {key})");
    let verify = osimage(&g, &[s("verify"), s(&address)]);
    assert_ne!(verify.code, 0, "{}", verify.describe());
    assert!(
        verify.stderr.contains(&named) || verify.stdout_str().contains(&named),
        "the pack is named by its id and key: {}",
        verify.describe()
    );
    let out = dir.path().join("out");
    let extract = osimage(&g, &[s("extract"), s(&address), s("-C"), out.as_os_str()]);
    assert_ne!(extract.code, 0, "{}", extract.describe());
    assert!(extract.stderr.contains(&named), "{}", extract.describe());
}

/// `verify --boot` of an encrypted store's version (docs/VERIFY-BOOT.md "Encrypted images")
/// needs the store's key on the host before any VM could start: without one, or with a wrong
/// one, it is refused when the store is opened, saying how to give it; with the right one the
/// store opens and the check goes on to the version (captured here without a kernel, it has
/// no rescue environment to boot, which is then the refusal). Nothing is written to the store.
#[test]
fn verify_boot_of_an_encrypted_store_takes_its_key_before_any_vm() {
    let dir = common::scratch();
    let g = Garage::start();
    let (_, _store, address) = store_with_a_version(&g, dir.path(), "refuse");
    let before = g.keys("refuse/");
    let args = [s("verify"), s("--boot"), s(&address)];
    let none = osimage_pass(&g, None, &args);
    assert_ne!(none.code, 0, "{}", none.describe());
    assert!(
        none.stderr.contains("--passphrase-file") && none.stderr.contains("--identity"),
        "without a key: {}",
        none.describe()
    );
    let wrong = osimage_pass(&g, Some("not the passphrase"), &args);
    assert_ne!(wrong.code, 0, "{}", wrong.describe());
    assert!(
        wrong.stderr.contains("wrong passphrase or key for s3://"),
        "a wrong key: {}",
        wrong.describe()
    );
    let right = osimage_pass(&g, Some(PASS), &args);
    assert_ne!(right.code, 0, "{}", right.describe());
    assert!(
        right.stderr.contains("rescue"),
        "with the key, the version's missing rescue environment: {}",
        right.describe()
    );
    assert_eq!(
        g.keys("refuse/"),
        before,
        "nothing was written to the store"
    );
}

/// Sweeps without grace, retried every 200 ms (as tests/store_prune.rs).
const TIMES: &str = "lock_refresh=1s,stale=8s,grace=0s,prune_poll=200ms";

/// `osimage store ARGS…` against `g` with the passphrase `pass` and the test windows.
fn store_cmd(g: &Garage, pass: Option<&str>, args: &[&str]) -> common::Run {
    let mut all = vec![s("store")];
    all.extend(args.iter().map(|a| s(a)));
    osimage_pass(g, pass, &all)
}

/// The versions of SERIES as the test (holding the key) sees them, oldest first.
fn versions_of(g: &Garage, store: &str) -> Vec<String> {
    let root = osimage::store::StoreRoot::parse(store).unwrap();
    let st = osimage::store::Store::open_unlocked(g.client(), root, &unlock()).unwrap();
    st.versions(SERIES).unwrap()
}

fn unlock() -> osimage::Unlock {
    osimage::Unlock {
        passphrase: Some(PASS.to_string().into()),
        ..osimage::Unlock::default()
    }
}

#[test]
fn store_commands_work_on_an_encrypted_store_and_refuse_a_wrong_key() {
    let dir = common::scratch();
    let g = Garage::start();
    let (_first, store, address) = store_with_a_version(&g, dir.path().join("a").as_path(), "ops");
    // A second version of another tree: the first one's packs are then its own.
    let second = dir.path().join("b");
    for i in 0..40u32 {
        let text = format!("another tree, file {i}, line {}\n", i * 7919).repeat(300);
        std::fs::create_dir_all(&second).unwrap();
        std::fs::write(second.join(format!("f{i}.txt")), text).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    osimage(
        &g,
        &[
            s("capture"),
            second.as_os_str(),
            s("-o"),
            s(&address),
            s("-q"),
        ],
    )
    .ok();
    let v = versions_of(&g, &store);
    assert_eq!(v.len(), 2, "{v:?}");

    // A wrong passphrase: each command refused naming the store, nothing changed.
    let before = g.keys("ops/");
    let old = format!("{address}@{}", v[0]);
    let wrong: Vec<Vec<&str>> = vec![
        vec!["ls", &store],
        vec!["check", &store],
        vec!["prune", &store, "--keep-last", "1", "--all", "--wait"],
        vec!["forget", &old],
        vec!["pin", &old, "--until", "2099-01-01"],
        vec!["unpin", &old],
        vec!["unlock", &store],
    ];
    for args in &wrong {
        let run = store_cmd(&g, Some("not the passphrase"), args);
        assert_eq!(run.code, 1, "{args:?}: {}", run.describe());
        assert!(
            run.stderr.contains(&store) && run.stderr.contains("wrong passphrase or key"),
            "{args:?}: {}",
            run.describe()
        );
    }
    assert_eq!(g.keys("ops/"), before, "a wrong key changes nothing");

    // ls names the series (the bucket does not) and its versions.
    let ls = store_cmd(&g, Some(PASS), &["ls", &store, "-l", "--stats"])
        .ok()
        .stdout_str();
    assert!(ls.contains(&format!("{SERIES}  2 versions")), "{ls}");
    assert!(ls.contains(&v[0]) && ls.contains(&v[1]), "{ls}");
    // check, and check --read-data, find nothing wrong.
    let check = store_cmd(&g, Some(PASS), &["check", &store, "--read-data"]).ok();
    let out = check.stdout_str();
    assert!(out.contains("OK"), "{}", check.describe());
    assert!(out.contains("0 B of garbage"), "{}", check.describe());

    // pin and unpin: the pin is sealed (its body does not show the series).
    store_cmd(
        &g,
        Some(PASS),
        &["pin", &old, "--until", "2099-01-01", "--why", "kept"],
    )
    .ok();
    assert_eq!(g.keys("ops/pins/").len(), 1);
    let ls = store_cmd(&g, Some(PASS), &["ls", &store, "-l"])
        .ok()
        .stdout_str();
    assert!(ls.contains("pinned until 2099-01-02"), "{ls}");
    // a pinned version is not forgotten by hand
    store_cmd(&g, Some(PASS), &["forget", &old])
        .fails()
        .mentions(b"pinned");
    store_cmd(&g, Some(PASS), &["unpin", &old]).ok();
    assert!(g.keys("ops/pins/").is_empty());

    // forget by hand: gone for readers at once, marked by ls.
    store_cmd(&g, Some(PASS), &["forget", &old]).ok();
    let ls = store_cmd(&g, Some(PASS), &["ls", &store]).ok().stdout_str();
    assert!(ls.contains("forgotten"), "{ls}");
    osimage(&g, &[s("info"), s(&old)])
        .fails()
        .mentions(b"forgotten by the prune of");

    // prune sweeps it, condemns the packs only it used, and sweeps them too (--wait).
    let packs_before = g.keys("ops/packs/").len();
    let pruned = store_cmd(&g, Some(PASS), &["prune", &store, "--wait"]).ok();
    assert!(
        pruned.stdout_str().contains("condemned") || pruned.stderr.contains("condemned"),
        "{}",
        pruned.describe()
    );
    assert_eq!(versions_of(&g, &store), vec![v[1].clone()]);
    let packs_after = g.keys("ops/packs/").len();
    assert!(
        packs_after < packs_before,
        "{packs_before} packs before, {packs_after} after"
    );
    let check = store_cmd(&g, Some(PASS), &["check", &store, "--read-data"]).ok();
    assert!(
        check.stdout_str().contains("0 B of garbage"),
        "{}",
        check.describe()
    );
    let out = dir.path().join("out");
    osimage(&g, &[s("extract"), s(&address), s("-C"), out.as_os_str()]).ok();
    let diffs = diff_trees(&second, &out, Options { nlink: true });
    assert_no_differences(&diffs, "the kept version after the prune");

    // Retention by rule, and unlock with nothing to remove.
    store_cmd(
        &g,
        Some(PASS),
        &["prune", &store, "--keep-last", "1", "--all", "--dry-run"],
    )
    .ok();
    store_cmd(&g, Some(PASS), &["unlock", &store]).ok();
    assert!(g.keys("ops/locks/").is_empty());

    // What prune, forget and pin wrote shows no series name either.
    for (key, body) in objects(&g, "ops/") {
        for secret in [SERIES, FILE] {
            assert!(!key.contains(secret), "{key} shows {secret}");
            assert!(!contains(&body, secret), "the body of {key} shows {secret}");
        }
    }
}

#[test]
fn a_damaged_sealed_pack_fails_store_check_read_data_naming_its_object() {
    let dir = common::scratch();
    let g = Garage::start();
    let (_, store, _) = store_with_a_version(&g, dir.path(), "chk");
    let st = osimage::store::Store::open_unlocked(
        g.client(),
        osimage::store::StoreRoot::parse(&store).unwrap(),
        &unlock(),
    )
    .unwrap();
    let version = st.newest(SERIES).unwrap().expect("a version");
    let head = st.read_head(SERIES, &version).unwrap();
    let rel = st.pack_rel(&head.packs[0]);
    let key = st.root.key(&rel);
    let client = g.client();
    let mut body = client.get(&key, 1 << 30).unwrap().expect("the pack");
    let middle = body.len() / 2;
    body[middle] ^= 0x01;
    client.put(&key, &body).unwrap();
    // Without reading data the pack is whole: OK.
    store_cmd(&g, Some(PASS), &["check", &store]).ok();
    let run = store_cmd(&g, Some(PASS), &["check", &store, "--read-data"]);
    assert_eq!(run.code, 1, "{}", run.describe());
    assert!(
        run.stdout_str()
            .contains(&format!("problem: {store}/{rel}"))
            || run.stdout_str().contains(&rel),
        "{}",
        run.describe()
    );
    assert!(
        run.stdout_str().contains("fails authentication"),
        "{}",
        run.describe()
    );
    // A pack cut short is named without reading data.
    body.truncate(body.len() - 1);
    client.put(&key, &body).unwrap();
    let run = store_cmd(&g, Some(PASS), &["check", &store]);
    assert_eq!(run.code, 1, "{}", run.describe());
    assert!(run.stdout_str().contains(&rel), "{}", run.describe());
}

/// The id `store key list` prints first on the line that says `what`.
fn key_id(listing: &str, what: &str) -> String {
    listing
        .lines()
        .find(|l| l.contains(what))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no key line with {what:?} in {listing}"))
        .to_string()
}

#[test]
fn store_keys_are_added_listed_and_removed_but_never_the_last() {
    use age::secrecy::ExposeSecret as _;
    const NEW: &str = "a second passphrase, for the night shift";
    let dir = common::scratch();
    let g = Garage::start();
    let (_, store, address) = store_with_a_version(&g, dir.path(), "keyring");
    let list = |pass: &str| {
        store_cmd(&g, Some(pass), &["key", "list", &store])
            .ok()
            .stdout_str()
    };
    let first = list(PASS);
    assert_eq!(first.lines().count(), 1, "{first}");
    assert!(
        first.contains("passphrase") && first.contains("(opened the store now)"),
        "{first}"
    );
    let original = key_id(&first, "passphrase");

    // A wrong key adds nothing.
    let new_file = dir.path().join("new-pass");
    std::fs::write(&new_file, format!("{NEW}\n")).unwrap();
    let before = g.keys("keyring/");
    let nf = new_file.to_str().unwrap();
    let run = store_cmd(
        &g,
        Some("not it"),
        &["key", "add", &store, "--new-passphrase-file", nf],
    );
    assert_eq!(run.code, 1, "{}", run.describe());
    assert!(
        run.stderr.contains("wrong passphrase or key"),
        "{}",
        run.describe()
    );
    assert_eq!(g.keys("keyring/"), before, "nothing written");

    // A second passphrase, and an age recipient.
    store_cmd(
        &g,
        Some(PASS),
        &["key", "add", &store, "--new-passphrase-file", nf],
    )
    .ok();
    osimage_pass(&g, Some(NEW), &[s("info"), s(&address)]).ok();
    let identity = age::x25519::Identity::generate();
    let id_file = dir.path().join("me.key");
    std::fs::write(&id_file, identity.to_string().expose_secret()).unwrap();
    let recipient = identity.to_public().to_string();
    store_cmd(
        &g,
        Some(NEW),
        &["key", "add", &store, "--recipient", &recipient],
    )
    .ok();
    osimage_pass(
        &g,
        None,
        &[s("info"), s(&address), s("--identity"), id_file.as_os_str()],
    )
    .ok();
    let three = list(NEW);
    assert_eq!(three.lines().count(), 3, "{three}");
    assert!(three.contains("age recipients"), "{three}");
    assert_eq!(
        three.matches("(opened the store now)").count(),
        1,
        "{three}"
    );
    for secret in [PASS, NEW, "AGE-SECRET-KEY"] {
        assert!(!three.contains(secret), "the listing shows {secret}");
    }
    let by_age = key_id(&three, "age recipients");

    // --json: the same facts, one document (docs/JSON.md), nothing secret.
    let run = store_cmd(&g, Some(NEW), &["key", "list", &store, "--json"]).ok();
    let text = run.stdout_str();
    let doc: serde_json::Value = serde_json::from_str(&text).expect("one JSON document");
    assert_eq!(doc["schema_version"], 1, "{doc}");
    assert_eq!(doc["command"], "store key list", "{doc}");
    assert_eq!(doc["store"], store.as_str(), "{doc}");
    let keys = doc["keys"].as_array().expect("keys");
    let lines: Vec<&str> = three.lines().collect();
    assert_eq!(keys.len(), lines.len(), "{doc}");
    for (k, line) in keys.iter().zip(&lines) {
        let id = k["id"].as_str().expect("id");
        assert!(line.starts_with(id), "{line} vs {k}");
        let kind = k["kind"].as_str().expect("kind");
        let said = if kind == "recipients" {
            "age recipients"
        } else {
            kind
        };
        assert!(line.contains(said), "{line} vs {k}");
        assert_eq!(k["problem"], serde_json::Value::Null, "{k}");
        assert!(k["size"].as_u64().is_some_and(|n| n > 0), "{k}");
        let written = k["written"].as_str().expect("written");
        assert!(
            chrono::DateTime::parse_from_rfc3339(written).is_ok() && line.contains(&written[..19]),
            "{line} vs {k}"
        );
        assert_eq!(
            k["opened_now"].as_bool(),
            Some(line.contains("(opened the store now)")),
            "{line} vs {k}"
        );
    }
    assert_eq!(
        keys.iter().filter(|k| k["opened_now"] == true).count(),
        1,
        "{doc}"
    );
    for secret in [PASS, NEW, "AGE-SECRET-KEY"] {
        assert!(!text.contains(secret), "the document shows {secret}");
    }

    // Remove the original passphrase: it opens nothing any more; the others still do.
    store_cmd(&g, Some(NEW), &["key", "remove", &store, &original]).ok();
    let run = osimage_pass(&g, Some(PASS), &[s("info"), s(&address)]);
    assert_eq!(run.code, 1, "{}", run.describe());
    assert!(
        run.stderr.contains("wrong passphrase or key"),
        "{}",
        run.describe()
    );
    store_cmd(&g, Some(NEW), &["key", "remove", &store, &by_age]).ok();
    let last = list(NEW);
    assert_eq!(last.lines().count(), 1, "{last}");
    // Never the last one; an unknown id is refused too; nothing changes.
    let before = g.keys("keyring/");
    let only = key_id(&last, "passphrase");
    store_cmd(&g, Some(NEW), &["key", "remove", &store, &only])
        .fails()
        .mentions(b"the last key");
    store_cmd(&g, Some(NEW), &["key", "remove", &store, &original])
        .fails()
        .mentions(b"no such key object");
    store_cmd(&g, Some(NEW), &["key", "remove", &store, "xyz"]).usage_error();
    assert_eq!(g.keys("keyring/"), before);

    // A plain store has no keys to manage.
    let plain = format!("s3://{}/plain", g.bucket());
    osimage(&g, &[s("store"), s("init"), s(&plain)]).ok();
    store_cmd(&g, Some(PASS), &["key", "list", &plain])
        .fails()
        .mentions(b"not an encrypted store");
}
