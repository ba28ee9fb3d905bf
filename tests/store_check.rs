//! `osimage store check` (docs/STORE.md §5.6, issue #22) against a real Garage on loopback: a
//! store of three small series checks clean, also reading its data; a leftover pack is
//! garbage and no problem; a pack replaced by other bytes of its length passes the check
//! without data and is named, with the version using it, when the data is read; a deleted
//! pack, a damaged index object and a damaged version object are each named on a line of
//! their own (exit 1); a share of the packs chosen by a seed is chosen again by that seed.
//! Each damage is undone before the next, so every step starts from a clean store.

use crate::common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use common::garage::Garage;
use osimage::store::{Store, StoreRoot};

const STORE: &str = "s3://images/chk";
const PREFIX: &str = "chk";

fn s(x: &str) -> &OsStr {
    OsStr::new(x)
}

/// `osimage ARGS…` against `g`.
fn osimage(g: &Garage, args: &[&str]) -> common::Run {
    let env = g.osimage_env();
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    common::osimage_env(args.iter().copied().map(s), &pairs)
}

/// `store check --json ARGS…`: the run and its document.
fn check_json(g: &Garage, extra: &[&str]) -> (common::Run, serde_json::Value) {
    let mut args = vec!["store", "check", STORE, "--json"];
    args.extend_from_slice(extra);
    let run = osimage(g, &args);
    let doc = serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("store check --json is not JSON ({e}): {}", run.describe()));
    (run, doc)
}

/// A small tree whose one file of noise (seeded by `seed`) makes a pack no other series
/// shares.
fn tree(dir: &Path, seed: u64) -> PathBuf {
    let root = dir.join(format!("root{seed}"));
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hostname"), format!("host{seed}\n")).unwrap();
    std::fs::write(root.join("noise.bin"), common::iso::noise(150_000, seed)).unwrap();
    root
}

/// The object `key` of the bucket, whole.
fn object(g: &Garage, key: &str) -> Vec<u8> {
    g.client()
        .get(key, 1 << 30)
        .expect("get")
        .unwrap_or_else(|| panic!("{key} is missing"))
}

/// `bytes` with the byte at `at` changed.
fn flipped(bytes: &[u8], at: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at] ^= 0x55;
    b
}

/// The problems of a `store check --json` document as (object, problem, versions).
fn problems(doc: &serde_json::Value) -> Vec<(String, String, Vec<String>)> {
    let text = |v: &serde_json::Value| v.as_str().expect("a string").to_string();
    doc["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| {
            let users = p["versions"].as_array().expect("versions");
            (
                text(&p["object"]),
                text(&p["problem"]),
                users.iter().map(text).collect(),
            )
        })
        .collect()
}

/// A text run that found problems: exit 1, each of `objects` named on a `problem:` line.
fn names_problems(run: common::Run, objects: &[&str]) {
    let run = run.reports_damage();
    let out = run.stdout_str();
    for o in objects {
        let line = format!("problem: {STORE}/{o}: ");
        assert!(out.contains(&line), "no line {line:?}: {}", run.describe());
    }
    assert!(out.contains("PROBLEM"), "{}", run.describe());
}

#[test]
fn a_store_checks_clean_and_each_damage_is_named_with_its_versions() {
    let g = Garage::start();
    let dir = common::scratch();
    osimage(&g, &["store", "init", STORE]).ok();
    let empty = osimage(&g, &["store", "check", STORE, "--read-data"]).ok();
    assert!(
        empty.stdout_str().contains("0 versions"),
        "{}",
        empty.describe()
    );
    for (series, seed) in [("web01", 0x1001), ("web02", 0x2003), ("web03", 0x3005)] {
        let root = tree(dir.path(), seed);
        let address = format!("{STORE}/{series}");
        osimage(
            &g,
            &["capture", root.to_str().unwrap(), "-o", &address, "-q"],
        )
        .ok();
    }
    let store = Store::open(g.client(), StoreRoot::parse(STORE).unwrap(), "test").unwrap();
    let version_of = |series: &str| store.newest(series).unwrap().expect("a version");
    let pack_of = |series: &str| {
        let head = store.read_head(series, &version_of(series)).unwrap();
        assert_eq!(head.packs.len(), 1, "one pack per series");
        osimage::store::names::pack_key(&head.packs[0])
    };
    let user = |series: &str| format!("{series}@{}", version_of(series));

    // Clean, with and without the data.
    let clean = osimage(&g, &["store", "check", STORE]).ok();
    assert!(
        clean.stdout_str().ends_with(&format!("{STORE}: OK\n")),
        "{}",
        clean.describe()
    );
    let (run, doc) = check_json(&g, &["--read-data"]);
    let run = run.ok();
    assert_eq!(doc["command"], "store check");
    assert_eq!(doc["ok"], true, "{}", run.describe());
    assert_eq!(doc["versions"], 3);
    assert_eq!(doc["packs"], 3);
    assert_eq!(doc["index_objects"], 3);
    assert_eq!(doc["read_data"]["packs_read"], 3);
    assert_eq!(doc["garbage"], serde_json::json!([]));

    // A share chosen by a seed: the printed seed chooses the same packs again.
    let (_, first) = check_json(&g, &["--read-data", "--subset", "34%"]);
    let seed = first["read_data"]["seed"]
        .as_u64()
        .expect("a seed")
        .to_string();
    assert_eq!(first["read_data"]["packs_read"], 2, "{first:#}");
    for _ in 0..2 {
        let (again, doc) = check_json(&g, &["--read-data", "--subset", "34", "--seed", &seed]);
        again.ok();
        assert_eq!(doc["read_data"]["read"], first["read_data"]["read"]);
    }
    osimage(&g, &["store", "check", STORE, "--subset", "5%"]).usage_error();
    osimage(
        &g,
        &["store", "check", STORE, "--read-data", "--subset", "0%"],
    )
    .usage_error();

    // A leftover pack is garbage, no problem.
    let leftover = format!("packs/ee/{}", "ee".repeat(32));
    g.client()
        .put(&format!("{PREFIX}/{leftover}"), &[7u8; 1000])
        .unwrap();
    let (run, doc) = check_json(&g, &[]);
    run.ok();
    assert_eq!(doc["garbage"][0]["object"], leftover.as_str(), "{doc:#}");
    assert_eq!(doc["garbage"][0]["bytes"], 1000);
    assert_eq!(doc["garbage"][0]["indexed"], false);
    g.client().delete(&format!("{PREFIX}/{leftover}")).unwrap();

    // A pack replaced by other bytes of its length: only the data shows it.
    let victim = pack_of("web01");
    let key = format!("{PREFIX}/{victim}");
    let good = object(&g, &key);
    g.client()
        .put(&key, &flipped(&good, good.len() / 2))
        .unwrap();
    osimage(&g, &["store", "check", STORE]).ok();
    let (run, doc) = check_json(&g, &["--read-data"]);
    run.reports_damage();
    let found = problems(&doc);
    assert_eq!(found.len(), 1, "{doc:#}");
    assert_eq!(found[0].0, victim);
    assert!(found[0].1.contains("does not match its hash"), "{found:?}");
    assert_eq!(found[0].2, [user("web01")]);
    let text = osimage(&g, &["store", "check", STORE, "--read-data"]);
    assert!(
        text.stdout_str().contains(&user("web01")),
        "{}",
        text.describe()
    );
    names_problems(text, &[&victim]);
    g.client().put(&key, &good).unwrap();

    // A deleted pack: named without reading data, with its version and its index object.
    let victim = pack_of("web02");
    let key = format!("{PREFIX}/{victim}");
    let good = object(&g, &key);
    g.client().delete(&key).unwrap();
    let (run, doc) = check_json(&g, &[]);
    run.reports_damage();
    let found = problems(&doc);
    assert!(
        found.contains(&(victim.clone(), "missing".into(), vec![user("web02")])),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|(o, p, _)| o.starts_with("index/") && p.contains(&victim)),
        "the index object naming it: {found:?}"
    );
    names_problems(osimage(&g, &["store", "check", STORE]), &[&victim]);
    g.client().put(&key, &good).unwrap();

    // A damaged index object and a damaged version object, each named.
    let index = g
        .client()
        .list(&format!("{PREFIX}/index/"))
        .unwrap()
        .objects[0]
        .key
        .clone();
    let version = format!("{PREFIX}/images/web03/{}", version_of("web03"));
    let (good_index, good_version) = (object(&g, &index), object(&g, &version));
    g.client().put(&index, &flipped(&good_index, 70)).unwrap();
    g.client()
        .put(&version, &flipped(&good_version, good_version.len() - 10))
        .unwrap();
    let rel = |k: &str| k.strip_prefix(&format!("{PREFIX}/")).unwrap().to_string();
    let (_, doc) = check_json(&g, &[]);
    let objects: Vec<String> = problems(&doc).into_iter().map(|p| p.0).collect();
    assert!(objects.contains(&rel(&index)), "{doc:#}");
    assert!(objects.contains(&rel(&version)), "{doc:#}");
    // Its head is whole (the damage is in its manifest): its pack is not called garbage.
    assert_eq!(doc["garbage"], serde_json::json!([]), "{doc:#}");
    names_problems(
        osimage(&g, &["store", "check", STORE]),
        &[&rel(&index), &rel(&version)],
    );
    g.client().put(&index, &good_index).unwrap();
    g.client().put(&version, &good_version).unwrap();
    osimage(&g, &["store", "check", STORE, "--read-data"]).ok();
}
