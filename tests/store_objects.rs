//! The store's own objects against a real Garage (docs/STORE.md §2, §5.6, issue #22):
//! `store init` writes a config that `store ls` then reads, a second init and a prefix
//! without a store are each refused in words, version objects written through the library
//! (`Store::put_version`) are listed oldest first and their heads read back by `store ls -l`,
//! and an index object is read back only while its bytes still hash to its name.

use crate::common;

use std::ffi::OsStr;

use common::garage::Garage;
use osimage::format::manifest::{ChunkHash, Codec, Timestamp};
use osimage::store::objects::{
    IndexBlock, IndexChunk, IndexPack, StoreIndex, VersionHead, VersionSummary, encode_index,
};
use osimage::store::{Store, StoreRoot, names};
use osimage::{RetryPolicy, Trust, s3};

/// `osimage ARGS…` against `g`.
fn osimage(g: &Garage, args: &[&str]) -> common::Run {
    let env = g.osimage_env();
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    common::osimage_env(args.iter().map(OsStr::new), &pairs)
}

/// A client for `g`'s bucket, set up as the osimage binary sets up its own.
fn client(g: &Garage) -> s3::S3Client {
    let env = g.osimage_env();
    let var = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let settings = s3::S3Settings::resolve(&var, None).expect("settings");
    s3::S3Client::new(
        &settings,
        g.bucket(),
        RetryPolicy::default(),
        &Trust::default(),
    )
    .expect("a client")
}

fn json(run: &common::Run) -> serde_json::Value {
    serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", run.describe()))
}

/// A made-up head for a version of `series` created at `sec`, naming `frame`.
fn head(series: &str, sec: i64, id: u8, frame: &[u8]) -> VersionHead {
    let image_id = [id; 16];
    let created = Timestamp { sec, nsec: 0 };
    let at = chrono::DateTime::from_timestamp(sec, 0).expect("a time");
    VersionHead {
        image_id,
        series: series.into(),
        version: names::version_name(at, &image_id),
        created,
        hostname: format!("{series}.example"),
        os_release: "Debian GNU/Linux 13 (trixie)".into(),
        tool_version: "0.0.0-test".into(),
        parent: None,
        frame_hash: *blake3::hash(frame).as_bytes(),
        packs: vec![[id; 32], [id.wrapping_add(1); 32]],
        rescue: None,
        summary: VersionSummary {
            entries: 12,
            files: 9,
            file_bytes: 123_456,
            stored_bytes: 65_000,
            new_bytes: 40_000,
        },
        tags: vec!["nightly".into()],
    }
}

#[test]
fn a_new_store_lists_empty_and_is_not_made_twice() {
    let g = Garage::start();
    let store = format!("s3://{}/site-a/fleet", g.bucket());
    let made = osimage(&g, &["store", "init", &store, "--pack-size", "16M"]).ok();
    assert!(
        made.stderr.contains(&format!("{store}: store ")) && made.stderr.contains("created"),
        "{}",
        made.describe()
    );

    let ls = osimage(&g, &["store", "ls", &store]).ok();
    let text = ls.stdout_str();
    assert!(
        text.starts_with(&format!("{store}: store ")),
        "{}",
        ls.describe()
    );
    assert!(
        text.contains("packs of 16") && text.contains("no images yet"),
        "{text}"
    );
    let doc = json(&osimage(&g, &["store", "ls", &store, "--json"]).ok());
    assert_eq!(doc["command"], "store ls");
    assert_eq!(doc["store"], store.as_str());
    assert_eq!(doc["pack_size"], 16 << 20);
    assert_eq!(doc["series"], serde_json::json!([]));
    let id = doc["store_id"].as_str().expect("store_id").to_string();
    assert_eq!(id.len(), 32);

    // The library opens what the command made.
    let opened = Store::open(client(&g), StoreRoot::parse(&store).unwrap(), "test").unwrap();
    assert_eq!(names::hex(&opened.id), id);
    assert_eq!(opened.config.pack_size, 16 << 20);
    assert_eq!(opened.config.zstd_level, 3);

    let again = osimage(&g, &["store", "init", &store]).fails();
    assert!(
        again
            .stderr
            .contains(&format!("an osimage store already exists at {store}")),
        "{}",
        again.describe()
    );
    // Refused without touching it: the same store id.
    let doc = json(&osimage(&g, &["store", "ls", &store, "--json"]).ok());
    assert_eq!(doc["store_id"], id.as_str());

    let elsewhere = format!("s3://{}/site-b", g.bucket());
    let none = osimage(&g, &["store", "ls", &elsewhere]).fails();
    assert!(
        none.stderr.contains(&format!(
            "no osimage store at {elsewhere} (osimage store init {elsewhere})"
        )),
        "{}",
        none.describe()
    );
    // A malformed address or pack size is a usage error (exit 2).
    for args in [
        vec!["store", "ls", "s3://Bad_Bucket/x"],
        vec!["store", "init", "s3://images/p", "--pack-size", "4M"],
        vec!["store", "ls", store.as_str(), "--series", ".hidden"],
    ] {
        let run = osimage(&g, &args);
        assert_eq!(run.code, 2, "{}", run.describe());
    }
}

#[test]
fn versions_written_through_the_library_are_listed_oldest_first() {
    let g = Garage::start();
    let address = format!("s3://{}/fleet", g.bucket());
    osimage(&g, &["store", "init", &address]).ok();
    let store = Store::open(client(&g), StoreRoot::parse(&address).unwrap(), "test").unwrap();

    let frame = b"stands for a manifest frame".to_vec();
    let newer = head("web01", 1_796_600_000, 2, &frame);
    let older = head("web01", 1_796_500_000, 9, &frame);
    // A head longer than the first read (64 KiB): read_head needs its second request.
    let mut golden = head("golden", 1_796_550_000, 5, &frame);
    golden.tags = (0..2000)
        .map(|i| format!("tag-{i:05}-{}", "x".repeat(30)))
        .collect();
    for h in [&newer, &older, &golden] {
        let (key, _) = store.put_version(h, &frame, None).unwrap();
        assert_eq!(key, format!("images/{}/{}", h.series, h.version));
    }
    let e = store
        .put_version(&older, &frame, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("exists already"), "{e}");

    assert_eq!(store.series().unwrap(), ["golden", "web01"]);
    assert_eq!(
        store.versions("web01").unwrap(),
        [older.version.clone(), newer.version.clone()]
    );
    assert_eq!(store.newest("web01").unwrap(), Some(newer.version.clone()));
    assert_eq!(store.newest("nothing").unwrap(), None);
    assert_eq!(store.read_head("web01", &older.version).unwrap(), older);
    assert_eq!(store.read_head("golden", &golden.version).unwrap(), golden);

    let ls = osimage(&g, &["store", "ls", &address]).ok().stdout_str();
    let at = |s: &str| ls.find(s).unwrap_or_else(|| panic!("{s} not in:\n{ls}"));
    assert!(at("golden  1 version") < at("web01  2 versions"), "{ls}");
    assert!(at(&older.version) < at(&newer.version), "{ls}");
    assert!(!ls.contains("web01.example"), "no heads without -l: {ls}");

    let long = osimage(&g, &["store", "ls", &address, "-l", "--series", "web01"])
        .ok()
        .stdout_str();
    assert!(!long.contains("golden"), "{long}");
    assert!(
        long.contains("web01.example, Debian GNU/Linux 13 (trixie)")
            && long.contains("9 files")
            && long.contains("2 packs")
            && long.contains("tags nightly"),
        "{long}"
    );

    let doc = json(&osimage(&g, &["store", "ls", &address, "-l", "--json"]).ok());
    let series = doc["series"].as_array().expect("series");
    assert_eq!(series.len(), 2);
    assert_eq!(series[1]["name"], "web01");
    let versions = series[1]["versions"].as_array().expect("versions");
    assert_eq!(versions[0]["version"], older.version.as_str());
    assert_eq!(versions[1]["version"], newer.version.as_str());
    let h = &versions[0]["head"];
    assert_eq!(h["image_id"], "09".repeat(16).as_str());
    assert_eq!(h["hostname"], "web01.example");
    assert_eq!(h["files"], 9);
    assert_eq!(h["file_bytes"], 123_456);
    assert_eq!(h["stored_bytes"], 65_000);
    assert_eq!(h["new_bytes"], 40_000);
    assert_eq!(h["packs"], 2);
    assert_eq!(h["tags"], serde_json::json!(["nightly"]));
    assert_eq!(h["created_ns"], 1_796_500_000_000_000_000i64);
    let size = versions[0]["size"].as_u64().expect("size");
    assert!(size > frame.len() as u64 + 64, "{size}");
    let plain = json(&osimage(&g, &["store", "ls", &address, "--json"]).ok());
    assert_eq!(
        plain["series"][1]["versions"][0]["head"],
        serde_json::Value::Null
    );

    // A version object whose bytes were replaced under its name is refused by its hash.
    let c = client(&g);
    let key = store.root.key(&names::version_key("web01", &newer.version));
    let mut bytes = c.get(&key, 1 << 20).unwrap().expect("the object");
    bytes[70] ^= 1;
    c.put(&key, &bytes).unwrap();
    let e = store
        .read_head("web01", &newer.version)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&newer.version) && e.contains("does not match its hash"),
        "{e}"
    );
    let run = osimage(&g, &["store", "ls", &address, "-l"]).fails();
    assert!(
        run.stderr.contains("does not match its hash"),
        "{}",
        run.describe()
    );
}

/// An index of one pack of two blocks.
fn index() -> StoreIndex {
    let chunk = |n: u8, offset, len| IndexChunk {
        id: ChunkHash([n; 32]),
        offset,
        len,
    };
    StoreIndex {
        packs: vec![IndexPack {
            id: [0x5a; 32],
            len: 64 + 16 + 100 + 16 + 200,
            blocks: vec![
                IndexBlock {
                    offset: 64,
                    stored_len: 100,
                    raw_len: 300,
                    codec: Codec::Zstd,
                    hash: [1; 32],
                    chunks: vec![chunk(1, 0, 100), chunk(2, 100, 200)],
                },
                IndexBlock {
                    offset: 64 + 16 + 100,
                    stored_len: 200,
                    raw_len: 200,
                    codec: Codec::Raw,
                    hash: [2; 32],
                    chunks: vec![chunk(3, 0, 200)],
                },
            ],
        }],
    }
}

#[test]
fn index_objects_read_back_only_while_they_hash_to_their_name() {
    let g = Garage::start();
    let address = format!("s3://{}/fleet", g.bucket());
    osimage(&g, &["store", "init", &address]).ok();
    let store = Store::open(client(&g), StoreRoot::parse(&address).unwrap(), "test").unwrap();
    assert_eq!(store.list_index().unwrap(), Vec::<[u8; 32]>::new());

    let name = store.put_index(&index()).unwrap();
    let second = store.put_index(&StoreIndex::default()).unwrap();
    let mut listed = store.list_index().unwrap();
    listed.sort();
    let mut want = vec![name, second];
    want.sort();
    assert_eq!(listed, want);
    assert_eq!(store.get_index(&name).unwrap(), index());
    assert_eq!(store.get_index(&second).unwrap(), StoreIndex::default());

    // The same index encoded again (another nonce) PUT under the first one's name: a valid
    // object, but not the one named.
    let other = encode_index(&index(), None).unwrap();
    let key = store.root.key(&names::index_key(&name));
    client(&g).put(&key, &other).unwrap();
    let e = store.get_index(&name).unwrap_err().to_string();
    assert!(
        e.contains(&format!("{address}/index/{}", names::hex(&name)))
            && e.contains("does not hash to its name"),
        "{e}"
    );

    // A stray object under index/ is named, not taken for an index.
    client(&g)
        .put(&store.root.key("index/notes.txt"), b"hello")
        .unwrap();
    let e = store.list_index().unwrap_err().to_string();
    assert!(e.contains("index/notes.txt"), "{e}");
}
