//! A store's index as captures write and read it (docs/STORE.md §2.4, §4.1, §4.3, §4.4, §12.3),
//! against a real Garage on loopback: index objects every N packs (the test-only
//! `OSIMAGE_TEST_PACKS_PER_INDEX` lowers 64 to 2), an interrupted capture whose packs the
//! next one reuses, the local index cache, and `--no-base`.

use crate::common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use common::compare::{Options, assert_no_differences, diff_trees};
use common::garage::Garage;
use common::s3_gate::S3Gate;

fn s(x: &str) -> &OsStr {
    OsStr::new(x)
}

/// Garage's variables for osimage, the cache in `cache` and `extra` on top (replacing any of
/// the same name).
fn env(g: &Garage, cache: &Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = g.osimage_env();
    env.retain(|(n, _)| n != "XDG_CACHE_HOME");
    env.push(("XDG_CACHE_HOME".into(), cache.display().to_string()));
    for (k, v) in extra {
        env.retain(|(n, _)| n != k);
        env.push((k.to_string(), v.to_string()));
    }
    env
}

/// `osimage ARGS…` with `env`.
fn osimage(env: &[(String, String)], args: &[&OsStr]) -> common::Run {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut all = args.to_vec();
    if matches!(
        args.first().and_then(|a| a.to_str()),
        Some("verify" | "extract")
    ) {
        all.extend([s("--retry-for"), s("5")]);
    }
    common::osimage_env(all, &pairs)
}

/// The sizes of the objects under `prefix` (relative to the bucket), by key.
fn objects(g: &Garage, prefix: &str) -> Vec<(String, u64)> {
    let listing = g.client().list(prefix).expect("list");
    listing
        .objects
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect()
}

/// Each version's name, `new_bytes` and pack count from `store ls -l --json`, oldest first.
fn versions(env: &[(String, String)], store: &str) -> Vec<(String, u64, u64)> {
    let run = osimage(env, &[s("store"), s("ls"), s(store), s("-l"), s("--json")]).ok();
    common::garage::listed_heads(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", run.describe()))
        .into_iter()
        .map(|(version, head)| {
            (
                version,
                head["new_bytes"].as_u64().expect("new_bytes"),
                head["packs"].as_u64().expect("packs"),
            )
        })
        .collect()
}

/// `n` incompressible files of `len` bytes each, no two alike (and a small text file) under
/// `dir`/root.
fn noise_tree(dir: &Path, n: u64, len: usize) -> PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    for i in 0..n {
        // `noise` sets the seed's low bit: odd seeds only, or two files come out the same
        let bytes = common::iso::noise(len, 0xfeed + 2 * i);
        std::fs::write(root.join(format!("noise{i}.bin")), bytes).unwrap();
    }
    std::fs::write(root.join("notes.txt"), "a small file\n".repeat(100)).unwrap();
    root
}

/// Extracts `address` and compares it with `root`; `verify` must pass too.
fn assert_reads_back(env: &[(String, String)], address: &str, root: &Path, out: &Path) {
    osimage(env, &[s("verify"), s(address)]).ok();
    osimage(env, &[s("extract"), s(address), s("-C"), out.as_os_str()]).ok();
    assert_no_differences(
        &diff_trees(root, out, Options { nlink: true }),
        &format!("{address} extracted vs the tree"),
    );
}

#[test]
fn an_interrupted_capture_lists_its_packs_and_the_next_uploads_only_the_rest() {
    let dir = common::scratch();
    // ~80 MiB of noise in packs of at most 8 MiB: about ten packs.
    let root = noise_tree(dir.path(), 10, 8 << 20);
    let g = Garage::start();
    let cache = dir.path().join("cache");
    let direct = env(&g, &cache, &[]);
    let store = format!("s3://{}/site", g.bucket());
    osimage(
        &direct,
        &[s("store"), s("init"), s(&store), s("--pack-size"), s("8M")],
    )
    .ok();
    let address = format!("{store}/web");

    // Five pack PUTs go through the gate, the rest are held: with an index object every two
    // packs, two index objects follow packs 1–4, and pack 5 waits for the next one.
    let gate = S3Gate::start(g.s3_port(), 5);
    let endpoint = gate.endpoint();
    let gated = env(
        &g,
        &cache,
        &[
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("OSIMAGE_TEST_PACKS_PER_INDEX", "2"),
        ],
    );
    let stderr_path = dir.path().join("interrupted.stderr");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_osimage"))
        .args([
            s("capture"),
            root.as_os_str(),
            s("-o"),
            s(&address),
            s("-q"),
        ])
        .envs(gated.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("starting the capture");
    // Every upload thread (3) waits on a held PUT: all that went before is up and answered.
    gate.wait_held(3);
    assert_eq!(objects(&g, "site/packs/").len(), 5);
    assert_eq!(
        objects(&g, "site/index/").len(),
        2,
        "one index object per two packs"
    );
    // SAFETY: kill(2) on the child's pid, which is still ours (not waited for yet).
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = child.wait().expect("waiting for the capture");
    let said = std::fs::read_to_string(&stderr_path).unwrap();
    assert_eq!(status.code(), Some(130), "128 + SIGINT: {said}");
    assert!(
        said.contains("1 pack uploaded since the last index object: listed in"),
        "{said}"
    );
    let first_packs = objects(&g, "site/packs/");
    assert_eq!(first_packs.len(), 5, "the held packs never went up");
    assert_eq!(objects(&g, "site/index/").len(), 3, "pack 5 is listed too");
    assert!(
        objects(&g, "site/images/").is_empty(),
        "nothing was committed"
    );

    // The next capture (straight to Garage) references all five and uploads only the rest.
    osimage(
        &direct,
        &[
            s("capture"),
            root.as_os_str(),
            s("-o"),
            s(&address),
            s("-q"),
        ],
    )
    .ok();
    let all = versions(&direct, &store);
    assert_eq!(all.len(), 1, "{all:?}");
    let (_, new_bytes, version_packs) = all[0].clone();
    let packs_now = objects(&g, "site/packs/");
    assert_eq!(
        version_packs,
        packs_now.len() as u64,
        "the version references every pack, the interrupted capture's five among them"
    );
    let first: Vec<&String> = first_packs.iter().map(|(k, _)| k).collect();
    let rest: u64 = packs_now
        .iter()
        .filter(|(k, _)| !first.contains(&k))
        .map(|(_, size)| size)
        .sum();
    let before: u64 = first_packs.iter().map(|(_, size)| size).sum();
    assert_eq!(new_bytes, rest, "uploaded: the packs that were not up");
    assert!(
        before > 30 << 20 && new_bytes > 20 << 20,
        "both captures uploaded part of the tree: {before} then {new_bytes} bytes"
    );
    assert_reads_back(&direct, &address, &root, &dir.path().join("out"));
}

/// The summary's counts after `label: ` (`index objects: 2 fetched, 0 cached`, `3 files
/// read, 0 unchanged`) as they follow the words given.
fn counted(run: &common::Run, after: &str) -> u64 {
    let out = format!("{}{}", run.stdout_str(), run.stderr);
    let at = out
        .find(after)
        .unwrap_or_else(|| panic!("no {after:?} in the summary: {}", run.describe()));
    let digits: String = out[..at]
        .chars()
        .rev()
        .skip_while(|c| c.is_whitespace())
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits
        .chars()
        .rev()
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("no count before {after:?}: {}", run.describe()))
}

#[test]
fn the_index_cache_saves_gets_and_a_damaged_copy_is_fetched_again() {
    let dir = common::scratch();
    let root = noise_tree(dir.path(), 3, 1 << 20);
    let g = Garage::start();
    let cache = dir.path().join("xdg");
    let e = env(&g, &cache, &[]);
    let store = format!("s3://{}/cached", g.bucket());
    osimage(&e, &[s("store"), s("init"), s(&store)]).ok();
    let address = format!("{store}/host");
    let capture = |extra: &[&str]| {
        let mut args = vec![s("capture"), root.as_os_str(), s("-o"), s(&address)];
        args.extend(extra.iter().map(|x| s(x)));
        osimage(&e, &args).ok()
    };
    let first = capture(&[]);
    assert_eq!(
        counted(&first, "fetched, "),
        0,
        "an empty store has no index"
    );
    // The first capture's own index object was kept as it was written.
    let id_dirs: Vec<_> = std::fs::read_dir(cache.join("osimage/stores"))
        .expect("the cache folder")
        .map(|d| d.unwrap().path().join("index"))
        .collect();
    assert_eq!(id_dirs.len(), 1, "{id_dirs:?}");
    let cached_dir = &id_dirs[0];
    let listed: Vec<String> = objects(&g, "cached/index/")
        .into_iter()
        .map(|(k, _)| k.rsplit('/').next().unwrap().to_string())
        .collect();
    let files = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|f| f.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(files(cached_dir), listed);

    // Another capture GETs nothing it has; a copy the store no longer lists is deleted.
    let stale = cached_dir.join("ab".repeat(32));
    std::fs::write(&stale, b"an index object since removed from the store").unwrap();
    let second = capture(&[]);
    assert_eq!(counted(&second, "fetched, "), 0, "{}", second.describe());
    assert_eq!(counted(&second, "cached; "), 1, "{}", second.describe());
    assert!(!stale.exists(), "a copy of an unlisted object is deleted");

    // A damaged copy is dropped with a note and fetched again, never used.
    let victim = cached_dir.join(&listed[0]);
    let mut bytes = std::fs::read(&victim).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&victim, &bytes).unwrap();
    let before_third = objects(&g, "cached/index/").len() as u64;
    let third = capture(&[]);
    assert!(
        third.stderr.contains("is damaged") && third.stderr.contains("fetched again"),
        "{}",
        third.describe()
    );
    assert_eq!(counted(&third, "fetched, "), 1, "{}", third.describe());
    assert_eq!(counted(&third, "cached; "), before_third - 1);
    let good = std::fs::read(&victim).unwrap();
    assert_eq!(
        osimage::store::names::hex(blake3::hash(&good).as_bytes()),
        listed[0],
        "the copy is whole again"
    );

    // --no-cache keeps nothing; --cache-dir DIR keeps them under DIR.
    let elsewhere = dir.path().join("elsewhere");
    let before = objects(&g, "cached/index/").len() as u64;
    let fourth = capture(&["--cache-dir", elsewhere.to_str().unwrap()]);
    assert_eq!(
        counted(&fourth, "fetched, "),
        before,
        "{}",
        fourth.describe()
    );
    assert_eq!(
        std::fs::read_dir(elsewhere.join("stores")).unwrap().count(),
        1
    );
    let nocache = dir.path().join("nocache-xdg");
    let e2 = env(&g, &nocache, &[]);
    let before = objects(&g, "cached/index/").len() as u64;
    let args = [
        s("capture"),
        root.as_os_str(),
        s("-o"),
        s(&address),
        s("--no-cache"),
    ];
    let fifth = osimage(&e2, &args).ok();
    assert_eq!(counted(&fifth, "fetched, "), before, "{}", fifth.describe());
    assert!(!nocache.exists(), "--no-cache writes no cache");
    assert_reads_back(&e, &address, &root, &dir.path().join("out"));
}

#[test]
fn no_base_reads_every_file_and_still_uploads_almost_nothing() {
    let dir = common::scratch();
    let root = noise_tree(dir.path(), 4, 2 << 20);
    for i in 0..50 {
        std::fs::write(
            root.join(format!("small{i}.txt")),
            format!("{i}\n").repeat(300),
        )
        .unwrap();
    }
    let g = Garage::start();
    let e = env(&g, &dir.path().join("xdg"), &[]);
    let store = format!("s3://{}/nobase", g.bucket());
    osimage(&e, &[s("store"), s("init"), s(&store)]).ok();
    let address = format!("{store}/host");
    let files = 4 + 1 + 50;
    let capture = |extra: &[&str]| {
        let mut args = vec![s("capture"), root.as_os_str(), s("-o"), s(&address)];
        args.extend(extra.iter().map(|x| s(x)));
        osimage(&e, &args).ok()
    };
    // Files written moments before a capture are read again by the next one (the files
    // cache's racy window, docs/REFRESH.md); let them age first.
    std::thread::sleep(std::time::Duration::from_secs(3));
    capture(&[]);
    let cached = capture(&[]);
    assert_eq!(counted(&cached, "files read, "), 0, "{}", cached.describe());
    assert_eq!(
        counted(&cached, " unchanged;"),
        files,
        "{}",
        cached.describe()
    );
    let unread = capture(&["--no-base"]);
    assert_eq!(
        counted(&unread, "files read, "),
        files,
        "{}",
        unread.describe()
    );
    assert_eq!(counted(&unread, " unchanged;"), 0, "{}", unread.describe());
    let all = versions(&e, &store);
    assert_eq!(all.len(), 3, "{all:?}");
    let (first, no_base) = (all[0].1, all[2].1);
    assert!(
        first > 8 << 20,
        "the first capture uploads the tree: {first}"
    );
    assert!(
        no_base * 100 < first,
        "with --no-base an unchanged tree still uploads under 1% ({no_base} of {first} bytes)"
    );
    assert_reads_back(&e, &address, &root, &dir.path().join("out"));

    // With a file for output, the store's flags are refused, not ignored.
    let file = dir.path().join("system.oimg");
    for flag in ["--no-base", "--no-cache"] {
        let run = osimage(
            &e,
            &[
                s("capture"),
                root.as_os_str(),
                s("-o"),
                file.as_os_str(),
                s(flag),
            ],
        );
        assert_eq!(run.code, 2, "{}", run.describe());
        assert!(run.stderr.contains(flag), "{}", run.describe());
        assert!(!file.exists());
    }
}
