//! `osimage export` and `import` with encrypted stores and images (docs/STORE.md §6.1, FORMAT.md §11, issue
//! #22) against a real Garage on loopback: the output is an encrypted image under a fresh key,
//! wrapped for the passphrase that unlocked the store, for `--new-passphrase-file`, for
//! `--recipient`, or for the `--identity` that unlocked it; it verifies and extracts equal to
//! the source tree with that key and no other, and holds no pack header, block header, series
//! name, file name, file content or store id in the clear; `--compact` too; `--decrypt` writes
//! a plain image; a wrong key for the store is refused naming it with nothing written. A
//! version with rescue blobs exports to an encrypted ISO (its key record in
//! `/osimage/keys.osk`, its boot files in the clear) that verifies and lists as the version.
//! `import` seals a plain image into an encrypted store; an encrypted image (an export) goes
//! into another series of its store by reference alone, no pack uploaded; `import --decrypt`
//! puts an encrypted image into a plain store; a wrong key for the store or the image is
//! refused naming it, with nothing written; nothing imported shows a name or content; the
//! encrypted ISO imports back with no pack and no rescue blob uploaded. `netboot` of the
//! version puts its key set into `source.conf`, and the agent's reader opens the version
//! with it and with nothing else.

use crate::common;
use crate::store_encrypted::{FILE, PASS, SERIES, contains, osimage_pass, s, store_with_a_version};

use std::ffi::OsStr;
use std::path::Path;

use age::secrecy::ExposeSecret as _;
use common::compare::{Options, assert_no_differences, diff_trees};
use common::garage::Garage;

const NEW: &str = "a different passphrase for the export";
/// What a reader says to a wrong passphrase, and to a passphrase for an image wrapped for age
/// recipients.
const WRONG: &str = "wrong passphrase or key";
const AGE: &str = "give its secret key (--identity FILE)";

/// `path` verifies and extracts equal to `root` with the key options `keys` (and `pass` as
/// OSIMAGE_PASSPHRASE).
fn reads_back(g: &Garage, pass: Option<&str>, keys: &[&OsStr], path: &Path, root: &Path) {
    reads_back_to(g, pass, keys, path, root, &path.with_extension("out"));
}

/// [`reads_back`] extracting into `out`.
fn reads_back_to(
    g: &Garage,
    pass: Option<&str>,
    keys: &[&OsStr],
    path: &Path,
    root: &Path,
    out: &Path,
) {
    let mut verify = vec![s("verify"), path.as_os_str()];
    verify.extend_from_slice(keys);
    let run = osimage_pass(g, pass, &verify).ok();
    assert!(run.stdout_str().contains("OK"), "{}", run.describe());
    let mut extract = vec![s("extract"), path.as_os_str(), s("-C"), out.as_os_str()];
    extract.extend_from_slice(keys);
    osimage_pass(g, pass, &extract).ok();
    let diffs = diff_trees(root, out, Options { nlink: true });
    assert_no_differences(&diffs, &format!("the source tree vs {}", path.display()));
}

/// Nothing of `bytes` is in the clear beyond what FORMAT.md §11.6 allows.
fn shows_nothing(bytes: &[u8], store_id: &[u8; 16], what: &str) {
    for secret in [SERIES, FILE, "alice 100", "OSIMPACK"] {
        assert!(!contains(bytes, secret), "{what} shows {secret}");
    }
    assert!(
        !bytes.windows(16).any(|w| w == store_id),
        "{what} shows the store id"
    );
}

/// A wrong passphrase (refused saying `said`), and none, are refused for `path`.
fn refuses_other_keys(g: &Garage, path: &Path, wrong: &str, said: &str) {
    let run = osimage_pass(g, Some(wrong), &[s("verify"), path.as_os_str()]);
    assert_eq!(run.code, 1, "{}", run.describe());
    assert!(run.stderr.contains(said), "{}", run.describe());
    let run = osimage_pass(g, None, &[s("info"), path.as_os_str()]);
    assert_ne!(run.code, 0, "{}", run.describe());
}

#[test]
fn an_encrypted_store_version_exports_as_an_encrypted_image() {
    let dir = common::scratch();
    let g = Garage::start();
    let (root, store, address) = store_with_a_version(&g, &dir.path().join("t"), "exp");
    let store_root = osimage::store::StoreRoot::parse(&store).unwrap();
    let unlock = osimage::Unlock {
        passphrase: Some(PASS.to_string().into()),
        ..osimage::Unlock::default()
    };
    let store_id = osimage::store::Store::open_unlocked(g.client(), store_root, &unlock)
        .unwrap()
        .id;
    let before = g.keys("exp/");
    let export = |pass: Option<&str>, name: &str, more: &[&OsStr]| {
        let out = dir.path().join(name);
        let mut args = vec![s("export"), s(&address), s("-o"), out.as_os_str()];
        args.extend_from_slice(more);
        (osimage_pass(&g, pass, &args), out)
    };

    // The default: the passphrase that unlocked the store.
    let (run, same) = export(Some(PASS), "same.oimg", &[]);
    let run = run.ok();
    assert!(run.stderr.contains("encrypted"), "{}", run.describe());
    shows_nothing(&std::fs::read(&same).unwrap(), &store_id, "the export");
    reads_back(&g, Some(PASS), &[], &same, &root);
    refuses_other_keys(&g, &same, NEW, WRONG);

    // --compact: new image packs of the used blocks, sealed the same way.
    let (run, compact) = export(Some(PASS), "compact.oimg", &[s("--compact")]);
    run.ok();
    shows_nothing(
        &std::fs::read(&compact).unwrap(),
        &store_id,
        "the compact export",
    );
    reads_back(&g, Some(PASS), &[], &compact, &root);

    // A passphrase of its own: opens with it, not with the store's.
    let new_file = dir.path().join("new-pass");
    std::fs::write(&new_file, format!("{NEW}\n")).unwrap();
    let (run, renewed) = export(
        Some(PASS),
        "new.oimg",
        &[s("--new-passphrase-file"), new_file.as_os_str()],
    );
    run.ok();
    reads_back(&g, Some(NEW), &[], &renewed, &root);
    refuses_other_keys(&g, &renewed, PASS, WRONG);

    // An age recipient: opens with the identity alone.
    let identity = age::x25519::Identity::generate();
    let id_file = dir.path().join("me.key");
    std::fs::write(&id_file, identity.to_string().expose_secret()).unwrap();
    let recipient = identity.to_public().to_string();
    let (run, to_age) = export(Some(PASS), "age.oimg", &[s("--recipient"), s(&recipient)]);
    run.ok();
    shows_nothing(
        &std::fs::read(&to_age).unwrap(),
        &store_id,
        "the age export",
    );
    reads_back(
        &g,
        None,
        &[s("--identity"), id_file.as_os_str()],
        &to_age,
        &root,
    );
    refuses_other_keys(&g, &to_age, PASS, AGE);

    // A store unlocked by an identity exports for that identity's public key.
    let run = osimage_pass(
        &g,
        Some(PASS),
        &[
            s("store"),
            s("key"),
            s("add"),
            s(&store),
            s("--recipient"),
            s(&recipient),
        ],
    );
    run.ok();
    let keys_now = g.keys("exp/");
    let (run, by_identity) = export(None, "by-id.oimg", &[s("--identity"), id_file.as_os_str()]);
    run.ok();
    reads_back(
        &g,
        None,
        &[s("--identity"), id_file.as_os_str()],
        &by_identity,
        &root,
    );
    refuses_other_keys(&g, &by_identity, PASS, AGE);

    // --decrypt: a plain image, read with no key at all.
    let (run, plain) = export(Some(PASS), "plain.oimg", &[s("--decrypt")]);
    let run = run.ok();
    assert!(
        !run.stdout_str().contains("encrypted"),
        "{}",
        run.describe()
    );
    assert!(contains(&std::fs::read(&plain).unwrap(), "OSIMPACK"));
    let listed = osimage_pass(&g, None, &[s("list"), plain.as_os_str()]).ok();
    assert!(contains(&listed.stdout, FILE), "{}", listed.describe());
    reads_back(&g, None, &[], &plain, &root);

    // Refusals, each with nothing written: a wrong passphrase for the store, no key at all,
    // --decrypt with a key for the output.
    for pass in [Some("not the passphrase"), None] {
        let (run, out) = export(pass, "refused.oimg", &[]);
        assert_eq!(run.code, 1, "{}", run.describe());
        assert!(run.stderr.contains(&store), "{}", run.describe());
        assert!(!out.exists(), "{}", out.display());
    }
    let (run, out) = export(
        Some(PASS),
        "refused.oimg",
        &[s("--decrypt"), s("--recipient"), s(&recipient)],
    );
    run.usage_error();
    assert!(!out.exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".osimage-export-")
        })
        .collect();
    assert!(leftovers.is_empty(), "no temporary file is left");
    // The exports wrote nothing to the store (their read locks are gone again).
    assert_eq!(g.keys("exp/"), keys_now);
    assert_eq!(
        keys_now.len(),
        before.len() + 1,
        "the key object added above"
    );
}

#[test]
fn an_encrypted_store_version_with_rescue_blobs_exports_to_an_encrypted_iso() {
    common::kernel::need_iso_capture_tools();
    let (x, kernel_version) = common::kernel::kernel_package();
    let root = common::kernel::staging_root(&x, &kernel_version);
    let dir = common::scratch();
    let g = Garage::start();
    let store = format!("s3://{}/isos", g.bucket());
    osimage_pass(
        &g,
        Some(PASS),
        &[s("store"), s("init"), s(&store), s("--encrypt")],
    )
    .ok();
    let address = format!("{store}/{SERIES}");
    let mut args = vec![
        s("capture"),
        root.as_os_str(),
        s("-o"),
        s(&address),
        s("-q"),
    ];
    for d in common::kernel::HOST_PROGRAM_DIRS {
        args.extend([s("--exclude"), s(d)]);
    }
    osimage_pass(&g, Some(PASS), &args).ok();
    let iso = dir.path().join("sealed.iso");
    let run = osimage_pass(
        &g,
        Some(PASS),
        &[s("export"), s(&address), s("-o"), iso.as_os_str()],
    )
    .ok();
    assert!(run.stderr.contains("encrypted"), "{}", run.describe());
    let bytes = std::fs::read(&iso).unwrap();
    for secret in [SERIES, "OSIMPACK"] {
        assert!(!contains(&bytes, secret), "the ISO shows {secret}");
    }
    let record = dir.path().join("keys.osk");
    let run = std::process::Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(&iso)
        .args(["-extract", "/osimage/keys.osk"])
        .arg(&record)
        .output()
        .expect("xorriso");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(std::fs::read(&record).unwrap().starts_with(b"OSIMKEYS"));
    osimage_pass(&g, Some(PASS), &[s("verify"), iso.as_os_str()]).ok();
    let long = |img: &OsStr| {
        osimage_pass(&g, Some(PASS), &[s("list"), s("-l"), img])
            .ok()
            .stdout
    };
    assert_eq!(
        long(iso.as_os_str()),
        long(s(&address)),
        "list -l of the ISO"
    );
    let run = osimage_pass(&g, Some(NEW), &[s("verify"), iso.as_os_str()]);
    assert_eq!(run.code, 1, "{}", run.describe());
    assert!(run.stderr.contains(WRONG), "{}", run.describe());

    // netboot: the initramfs's source.conf holds the version's key set, wrapped for the
    // store's passphrase; the agent's reader opens the version through its URLs with it.
    netboot_reads_the_version_with_its_key_set(&g, &address, dir.path());

    // The encrypted ISO imported into another series: its blocks and its rescue kernel and
    // initramfs are the store's already, so nothing but the version goes up.
    let packs = g.keys("isos/packs/");
    let blobs = g.keys("isos/rescue/");
    let copy = format!("{store}/from-iso");
    let run = osimage_pass(&g, Some(PASS), &[s("import"), iso.as_os_str(), s(&copy)]).ok();
    assert!(run.stderr.contains("in 0 new packs"), "{}", run.describe());
    assert!(
        run.stderr.contains("in the store already"),
        "{}",
        run.describe()
    );
    assert_eq!(g.keys("isos/packs/"), packs);
    assert_eq!(g.keys("isos/rescue/"), blobs);
    osimage_pass(&g, Some(PASS), &[s("verify"), s(&copy)]).ok();
}

/// `netboot` of the encrypted store's version `address` (docs/STORE.md §6.1 "The key set"),
/// read back as the agent reads it (`open_from_conf`), every block checked.
fn netboot_reads_the_version_with_its_key_set(g: &Garage, address: &str, dir: &Path) {
    use osimage::store::read::open_from_conf;
    use osimage::{NoProgress, RetryPolicy, Trust, Unlock};
    let out = dir.join("netboot");
    osimage_pass(
        g,
        Some(PASS),
        &[s("netboot"), s(address), s("-o"), out.as_os_str()],
    )
    .ok();
    let initrd = std::fs::read(out.join("initrd.img")).unwrap();
    let conf = crate::store_netboot::source_conf_in(&initrd);
    assert!(conf.keys.is_some(), "a key set");
    for (what, url) in std::iter::once(("object", &conf.object.url))
        .chain(conf.packs.iter().map(|p| ("pack", &p.url)))
    {
        assert!(
            !url.contains(SERIES),
            "the {what} URL names the series: {url}"
        );
    }
    let with = |pass: &str| Unlock {
        passphrase: Some(pass.to_string().into()),
        ..Unlock::default()
    };
    let open = open_from_conf(
        &conf,
        RetryPolicy::default(),
        &Trust::default(),
        &with(PASS),
    )
    .expect("the version opens with its key set");
    let report = osimage::verify(&open.reader, 2, &NoProgress).expect("verify");
    assert!(report.ok(), "every block checks: {:?}", report.problems);
    let refused =
        |conf: &osimage::store::source_conf::SourceConf, unlock: &Unlock| match open_from_conf(
            conf,
            RetryPolicy::default(),
            &Trust::default(),
            unlock,
        ) {
            Ok(_) => panic!("opened"),
            Err(e) => e.to_string(),
        };
    let e = refused(&conf, &with(NEW));
    assert!(e.contains("wrong passphrase or key for source.conf"), "{e}");
    let e = refused(&conf, &Unlock::default());
    assert!(e.contains("passphrase"), "{e}");
    // A key set that does not name the conf's packs is refused before anything is read.
    let mut other = conf.clone();
    other.packs[0].id = "00".repeat(32);
    let e = refused(&other, &with(PASS));
    assert!(e.contains("the key set does not match this version"), "{e}");
    // Without its key set the sealed version does not open.
    let mut bare = conf.clone();
    bare.keys = None;
    assert!(
        open_from_conf(
            &bare,
            RetryPolicy::default(),
            &Trust::default(),
            &Unlock::default()
        )
        .is_err()
    );
}

#[test]
fn imports_seal_into_an_encrypted_store_and_decrypt_into_a_plain_one() {
    let dir = common::scratch();
    let g = Garage::start();
    let (root, store, address) = store_with_a_version(&g, &dir.path().join("t"), "imp");
    let import = |pass: Option<&str>, image: &Path, dest: &str, more: &[&OsStr]| {
        let mut args = vec![s("import"), image.as_os_str(), s(dest)];
        args.extend_from_slice(more);
        osimage_pass(&g, pass, &args)
    };
    let export = |name: &str, more: &[&OsStr]| {
        let out = dir.path().join(name);
        let mut args = vec![s("export"), s(&address), s("-o"), out.as_os_str()];
        args.extend_from_slice(more);
        osimage_pass(&g, Some(PASS), &args).ok();
        out
    };
    let sealed = export("sealed.oimg", &[]);
    let plain = export("plain.oimg", &[s("--decrypt")]);

    // An encrypted export into another series of its store: every block referenced.
    let packs = g.keys("imp/packs/");
    let copy = format!("{store}/copy-of-{SERIES}");
    let run = import(Some(PASS), &sealed, &copy, &[]).ok();
    assert!(run.stderr.contains("0 carried"), "{}", run.describe());
    assert!(run.stderr.contains("in 0 new packs"), "{}", run.describe());
    assert_eq!(g.keys("imp/packs/"), packs, "no pack uploaded");
    reads_back_to(
        &g,
        Some(PASS),
        &[],
        Path::new(&copy),
        &root,
        &dir.path().join("copy"),
    );

    // A plain image into a fresh encrypted store: sealed as a capture seals.
    let other = format!("s3://{}/imp2", g.bucket());
    osimage_pass(
        &g,
        Some(PASS),
        &[s("store"), s("init"), s(&other), s("--encrypt")],
    )
    .ok();
    let dest = format!("{other}/{SERIES}");
    import(Some(PASS), &plain, &dest, &[]).ok();
    reads_back_to(
        &g,
        Some(PASS),
        &[],
        Path::new(&dest),
        &root,
        &dir.path().join("imp2"),
    );
    let all = crate::store_encrypted::objects(&g, "imp2/");
    assert!(all.iter().any(|(k, _)| k.starts_with("imp2/packs/")));
    for (key, body) in &all {
        for secret in [SERIES, FILE, "alice 100", "OSIMPACK"] {
            assert!(!key.contains(secret), "{key} shows {secret}");
            assert!(!contains(body, secret), "the body of {key} shows {secret}");
        }
    }
    // The encrypted image into the same store: its blocks are there, so no pack goes up.
    let packs = g.keys("imp2/packs/");
    let run = import(Some(PASS), &sealed, &format!("{other}/again"), &[]).ok();
    assert!(run.stderr.contains("in 0 new packs"), "{}", run.describe());
    assert_eq!(g.keys("imp2/packs/"), packs);

    // Refused with nothing written: a wrong passphrase for the store; an image whose
    // passphrase is not the store's (no terminal to ask on); an encrypted image into a plain
    // store without --decrypt.
    let renewed_pass = dir.path().join("new-pass");
    std::fs::write(&renewed_pass, format!("{NEW}\n")).unwrap();
    let renewed = export(
        "renewed.oimg",
        &[s("--new-passphrase-file"), renewed_pass.as_os_str()],
    );
    let before = g.keys("imp2/");
    let run = import(
        Some("not the passphrase"),
        &plain,
        &format!("{other}/x"),
        &[],
    );
    assert_eq!(run.code, 1, "{}", run.describe());
    assert!(
        run.stderr.contains(WRONG) && run.stderr.contains(&other),
        "{}",
        run.describe()
    );
    let run = import(Some(PASS), &renewed, &format!("{other}/x"), &[]);
    assert_eq!(run.code, 1, "{}", run.describe());
    assert!(
        run.stderr.contains(WRONG) && run.stderr.contains(&renewed.display().to_string()),
        "{}",
        run.describe()
    );
    assert_eq!(g.keys("imp2/"), before, "nothing written");
    let bare = format!("s3://{}/bare", g.bucket());
    osimage_pass(&g, None, &[s("store"), s("init"), s(&bare)]).ok();
    let before = g.keys("bare/");
    let run = import(Some(PASS), &sealed, &format!("{bare}/x"), &[]);
    assert_ne!(run.code, 0, "{}", run.describe());
    assert!(run.stderr.contains("--decrypt"), "{}", run.describe());
    let run = import(
        Some("not the passphrase"),
        &sealed,
        &format!("{bare}/x"),
        &[s("--decrypt")],
    );
    assert_eq!(run.code, 1, "{}", run.describe());
    assert!(run.stderr.contains(WRONG), "{}", run.describe());
    assert_eq!(g.keys("bare/"), before, "nothing written");

    // --decrypt: the encrypted image into the plain store, readable with no key.
    let dest = format!("{bare}/{SERIES}");
    import(Some(PASS), &sealed, &dest, &[s("--decrypt")]).ok();
    reads_back_to(
        &g,
        None,
        &[],
        Path::new(&dest),
        &root,
        &dir.path().join("bare"),
    );
    // --decrypt applies to a store only.
    let run = import(
        Some(PASS),
        &sealed,
        &format!("s3://{}/whole.oimg", g.bucket()),
        &[s("--decrypt")],
    );
    run.usage_error();
}
