//! Real headers made by cryptsetup 2.6.1 (Debian bookworm's cryptsetup-bin) on plain files,
//! kept up to the end of what the reader reads (LUKS1: the 4 KiB before the first key-slot
//! area; LUKS2: both header copies, before the keyslots area), zstd-compressed. The expected
//! values are those `cryptsetup luksDump` printed for them. Made with:
//!
//! ```text
//! luksFormat --type luks1 --cipher aes-xts-plain64 --key-size 256 --hash sha256
//!   --pbkdf-force-iterations 1000 --uuid 11111111-2222-4333-8444-555555555555 (8 MiB file)
//!   + luksAddKey --pbkdf-force-iterations 1000
//! luksFormat --type luks2 --pbkdf argon2id --pbkdf-memory 32768 --pbkdf-parallel 1
//!   --pbkdf-force-iterations 4 --luks2-keyslots-size 1048576
//!   --uuid 6d1c3e0a-9f5b-4c47-8e2a-0b7f1d2c3a4e (32 MiB file)
//!   + luksAddKey --pbkdf argon2i --pbkdf-memory 16384 --pbkdf-parallel 2 --pbkdf-force-iterations 5
//! luksFormat --type luks2 --pbkdf pbkdf2 --hash sha512 --pbkdf-force-iterations 1000
//!   --label 'crypt root' --subsystem osimage-test --sector-size 4096
//!   --cipher aes-cbc-essiv:sha256 --key-size 256 --luks2-metadata-size 65536
//!   --luks2-keyslots-size 262144 --uuid 0a0b0c0d-1e2f-4a5b-8c6d-7e8f90a1b2c3 (32 MiB file)
//!   + token import of {"type":"osimage-test","keyslots":["0"]}
//! ```

use super::*;
use std::os::unix::fs::FileExt;

const LUKS1: &[u8] = include_bytes!("../../../../tests/fixtures/luks/luks1.hdr.zst");
const ARGON2ID: &[u8] = include_bytes!("../../../../tests/fixtures/luks/luks2-argon2id.hdr.zst");
const PBKDF2_4K: &[u8] = include_bytes!("../../../../tests/fixtures/luks/luks2-pbkdf2-4k.hdr.zst");
const MIB: u64 = 1 << 20;

fn header(zst: &[u8]) -> Vec<u8> {
    zstd::decode_all(zst).unwrap()
}

/// A sparse device of `size` bytes starting with `head`.
fn device(head: &[u8], size: u64) -> File {
    let f = tempfile::tempfile().unwrap();
    f.set_len(size).unwrap();
    f.write_all_at(head, 0).unwrap();
    f
}

/// Recomputes the sha256 checksum of the LUKS2 header copy at `at` (§2.1), as a writer would.
fn reseal(h: &mut [u8], at: usize, hdr_size: usize) {
    let area = &mut h[at..at + hdr_size];
    area[448..512].fill(0);
    let d = sha256::digest(area);
    area[448..480].copy_from_slice(&d);
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[test]
fn reads_a_luks1_header() {
    let i = read(&device(&header(LUKS1), 8 * MIB), 8 * MIB)
        .unwrap()
        .unwrap();
    assert_eq!(
        (i.version, i.uuid.as_str()),
        (1, "11111111-2222-4333-8444-555555555555")
    );
    assert_eq!(
        (i.cipher.as_str(), i.key_bits, i.pbkdf_hash.as_str()),
        ("aes-xts-plain64", 256, "sha256")
    );
    // luksDump: "Payload offset: 4096" (sectors).
    assert_eq!((i.data_offset_bytes, i.sector_size), (4096 * 512, 512));
    assert_eq!(
        (i.pbkdf.as_str(), i.pbkdf_iterations, i.keyslots),
        ("pbkdf2", 1000, 2)
    );
    assert_eq!(
        i.luks_format_args(),
        args(&[
            "--type=luks1",
            "--uuid=11111111-2222-4333-8444-555555555555",
            "--cipher=aes-xts-plain64",
            "--key-size=256",
            "--hash=sha256",
            "--pbkdf-force-iterations=1000",
            "--offset=4096",
        ])
    );
}

#[test]
fn reads_a_luks2_header_with_argon2id() {
    let i = read(&device(&header(ARGON2ID), 32 * MIB), 32 * MIB)
        .unwrap()
        .unwrap();
    assert_eq!(
        (i.version, i.uuid.as_str()),
        (2, "6d1c3e0a-9f5b-4c47-8e2a-0b7f1d2c3a4e")
    );
    assert_eq!(
        (i.label.as_str(), i.subsystem.as_str(), i.seqid),
        ("", "", 4)
    );
    assert_eq!((i.header_bytes, i.keyslots_bytes), (16384, 1_048_576));
    assert_eq!((i.data_offset_bytes, i.data_size_bytes), (2_097_152, None));
    assert_eq!(
        (i.cipher.as_str(), i.key_bits, i.sector_size),
        ("aes-xts-plain64", 512, 4096)
    );
    assert_eq!((i.pbkdf.as_str(), i.pbkdf_iterations), ("argon2id", 4));
    assert_eq!(
        (i.pbkdf_memory_kib, i.pbkdf_parallel),
        (Some(32768), Some(1))
    );
    assert_eq!(
        (i.pbkdf_hash.as_str(), i.keyslots, i.tokens),
        ("sha256", 2, 0)
    );
    assert!(i.flags.is_empty() && i.requirements.is_empty() && i.integrity.is_none());
    assert!(i.notes.is_empty(), "{:?}", i.notes);
    assert_eq!(
        i.luks_format_args(),
        args(&[
            "--type=luks2",
            "--uuid=6d1c3e0a-9f5b-4c47-8e2a-0b7f1d2c3a4e",
            "--cipher=aes-xts-plain64",
            "--key-size=512",
            "--hash=sha256",
            "--sector-size=4096",
            "--pbkdf=argon2id",
            "--pbkdf-memory=32768",
            "--pbkdf-parallel=1",
            "--pbkdf-force-iterations=4",
            "--luks2-metadata-size=16384",
            "--luks2-keyslots-size=1048576",
            "--offset=4096",
        ])
    );
}

#[test]
fn reads_a_luks2_header_with_pbkdf2_a_label_and_a_token() {
    let i = read(&device(&header(PBKDF2_4K), 32 * MIB), 32 * MIB)
        .unwrap()
        .unwrap();
    assert_eq!(i.uuid, "0a0b0c0d-1e2f-4a5b-8c6d-7e8f90a1b2c3");
    assert_eq!(
        (i.label.as_str(), i.subsystem.as_str()),
        ("crypt root", "osimage-test")
    );
    assert_eq!(
        (i.header_bytes, i.keyslots_bytes, i.data_offset_bytes),
        (65536, 262_144, 1_048_576)
    );
    assert_eq!(
        (i.cipher.as_str(), i.key_bits, i.sector_size),
        ("aes-cbc-essiv:sha256", 256, 4096)
    );
    assert_eq!(
        (i.pbkdf.as_str(), i.pbkdf_hash.as_str(), i.pbkdf_iterations),
        ("pbkdf2", "sha512", 1000)
    );
    assert_eq!((i.pbkdf_memory_kib, i.keyslots, i.tokens), (None, 1, 1));
    assert_eq!(
        (i.token_types.clone(), i.seqid),
        (vec!["osimage-test".to_string()], 4)
    );
    let a = i.luks_format_args();
    assert_eq!(
        &a[..4],
        args(&[
            "--type=luks2",
            "--uuid=0a0b0c0d-1e2f-4a5b-8c6d-7e8f90a1b2c3",
            "--label=crypt root",
            "--subsystem=osimage-test"
        ])
    );
    assert!(
        a.contains(&"--luks2-metadata-size=65536".to_string()),
        "{a:?}"
    );
    assert!(a.contains(&"--offset=2048".to_string()), "{a:?}");
    assert!(!a.iter().any(|x| x.starts_with("--pbkdf-memory")), "{a:?}");
}

#[test]
fn the_newer_valid_copy_wins() {
    let mut h = header(ARGON2ID);
    h[16..24].copy_from_slice(&3u64.to_be_bytes());
    reseal(&mut h, 0, 16384);
    let i = read(&device(&h, 32 * MIB), 32 * MIB).unwrap().unwrap();
    assert_eq!(i.seqid, 4);
    assert!(
        i.notes[0].contains("primary header seqid 3 is older than the secondary's 4"),
        "{:?}",
        i.notes
    );
    // The secondary older instead: the primary is used and the difference said.
    let mut h = header(ARGON2ID);
    h[16384 + 16..16384 + 24].copy_from_slice(&2u64.to_be_bytes());
    reseal(&mut h, 16384, 16384);
    let i = read(&device(&h, 32 * MIB), 32 * MIB).unwrap().unwrap();
    assert_eq!(i.seqid, 4);
    assert!(
        i.notes[0].contains("secondary header seqid 2 is older"),
        "{:?}",
        i.notes
    );
}

#[test]
fn a_damaged_copy_gives_way_to_the_other() {
    // A changed JSON byte without a new checksum.
    let mut h = header(PBKDF2_4K);
    h[4096 + 20] ^= 1;
    let i = read(&device(&h, 32 * MIB), 32 * MIB).unwrap().unwrap();
    assert_eq!(i.uuid, "0a0b0c0d-1e2f-4a5b-8c6d-7e8f90a1b2c3");
    assert!(
        i.notes[0].contains("primary copy at 0: sha256 checksum does not match"),
        "{:?}",
        i.notes
    );
    // A JSON area without its terminating NUL, resealed.
    let mut h = header(ARGON2ID);
    h[4096..16384].fill(b' ');
    reseal(&mut h, 0, 16384);
    let i = read(&device(&h, 32 * MIB), 32 * MIB).unwrap().unwrap();
    assert!(i.notes[0].contains("not NUL-terminated"), "{:?}", i.notes);
    // An impossible hdr_size: the secondary is searched for at every allowed offset.
    let mut h = header(ARGON2ID);
    h[8..16].copy_from_slice(&12345u64.to_be_bytes());
    reseal(&mut h, 0, 16384);
    let i = read(&device(&h, 32 * MIB), 32 * MIB).unwrap().unwrap();
    assert!(i.notes[0].contains("hdr_size 12345"), "{:?}", i.notes);
    // No primary at all (its first 4 KiB wiped): still LUKS2, from the secondary.
    let mut h = header(ARGON2ID);
    h[..4096].fill(0);
    let i = read(&device(&h, 32 * MIB), 32 * MIB).unwrap().unwrap();
    assert_eq!(
        (i.uuid.as_str(), i.keyslots),
        ("6d1c3e0a-9f5b-4c47-8e2a-0b7f1d2c3a4e", 2)
    );
    // The secondary damaged: the primary is used and the damage said.
    let mut h = header(ARGON2ID);
    h[16384 + 5000] ^= 1;
    let i = read(&device(&h, 32 * MIB), 32 * MIB).unwrap().unwrap();
    assert!(
        i.notes[0].contains("secondary header copy: secondary copy at 16384: sha256"),
        "{:?}",
        i.notes
    );
}

#[test]
fn both_copies_damaged_is_an_error() {
    let mut h = header(ARGON2ID);
    h[4096 + 20] ^= 1;
    h[16384 + 4096 + 20] ^= 1;
    let e = read(&device(&h, 32 * MIB), 32 * MIB)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("LUKS2 header: primary copy at 0: sha256 checksum does not match"),
        "{e}"
    );
}

#[test]
fn truncated_devices_and_bad_luks1_fields() {
    assert_eq!(read(&device(&[], 4095), 4095).unwrap(), None);
    assert_eq!(read(&device(&[0; 4096], 64 * MIB), 64 * MIB).unwrap(), None);
    // The device ends inside the secondary copy: the primary is used, the secondary named.
    let h = header(PBKDF2_4K);
    let i = read(&device(&h[..70000], 70000), 32 * MIB)
        .unwrap()
        .unwrap();
    assert!(
        i.notes[0].starts_with("secondary header copy: read LUKS2 header area at byte 65536"),
        "{:?}",
        i.notes
    );
    let e = read(&device(&h, 100_000), 100_000).unwrap_err().to_string();
    assert!(e.contains("past the device's 100000 bytes"), "{e}");
    // LUKS1: payload past the end, no key size, a slot in no known state, control characters.
    let l1 = header(LUKS1);
    let e = read(&device(&l1, MIB), MIB).unwrap_err().to_string();
    assert!(e.contains("payload offset 2097152 is past"), "{e}");
    let mut bad = l1.clone();
    bad[108..112].fill(0);
    assert!(
        read(&device(&bad, 8 * MIB), 8 * MIB)
            .unwrap_err()
            .to_string()
            .contains("key size 0")
    );
    let mut bad = l1.clone();
    bad[208 + 48 * 3..208 + 48 * 3 + 4].copy_from_slice(&7u32.to_be_bytes());
    assert!(
        read(&device(&bad, 8 * MIB), 8 * MIB)
            .unwrap_err()
            .to_string()
            .contains("key slot 3 state")
    );
    let mut bad = l1;
    bad[8] = b'\n';
    assert!(
        read(&device(&bad, 8 * MIB), 8 * MIB)
            .unwrap_err()
            .to_string()
            .contains("cipher name")
    );
}

#[test]
fn luks2_json_facts_and_their_checks() {
    let j: serde_json::Value = serde_json::from_str(
        r#"{"keyslots":{"2":{"type":"luks2","key_size":64,"kdf":{"type":"pbkdf2","hash":"sha256","iterations":9}},
            "1":{"type":"reencrypt","key_size":1,"kdf":{"type":"none"}}},
           "tokens":{"0":{"type":"systemd-tpm2"},"1":{"type":"clevis"}},
           "segments":{"0":{"type":"crypt","offset":"16777216","size":"1048576","encryption":"aes-xts-plain64",
              "sector_size":512,"integrity":{"type":"hmac(sha256)"}}},
           "digests":{"0":{"type":"pbkdf2","hash":"sha1"}},
           "config":{"json_size":"12288","keyslots_size":"16744448","flags":["allow-discards","no-read-workqueue","odd"],
              "requirements":{"mandatory":["online-reencrypt-v2"]}}}"#,
    )
    .unwrap();
    let i = luks2::from_json(&j).unwrap();
    assert_eq!(
        (
            i.keyslots,
            i.key_bits,
            i.pbkdf_iterations,
            i.pbkdf_hash.as_str()
        ),
        (1, 512, 9, "sha256")
    );
    assert_eq!(
        (i.data_size_bytes, i.integrity.as_deref()),
        (Some(1_048_576), Some("hmac(sha256)"))
    );
    assert_eq!(
        (i.tokens, i.token_types.clone()),
        (2, vec!["systemd-tpm2".to_string(), "clevis".into()])
    );
    assert_eq!(i.requirements, ["online-reencrypt-v2"]);
    assert_eq!(
        i.persistent_flag_args(),
        args(&[
            "--persistent",
            "--allow-discards",
            "--perf-no_read_workqueue"
        ])
    );
    for (path, value, want) in [
        (
            "/segments/0/type",
            serde_json::json!("linear"),
            "segment 0 is of type \"linear\"",
        ),
        (
            "/segments/0/sector_size",
            serde_json::json!(3),
            "sector_size 3",
        ),
        (
            "/segments/0/offset",
            serde_json::json!("-1"),
            "segment 0 offset",
        ),
        (
            "/keyslots/2/key_size",
            serde_json::json!(1u64 << 40),
            "key_size is too large",
        ),
        (
            "/keyslots/2/kdf/hash",
            serde_json::json!(null),
            "pbkdf2 keyslot has no hash",
        ),
    ] {
        let mut k = j.clone();
        *k.pointer_mut(path).unwrap() = value;
        let e = luks2::from_json(&k).unwrap_err();
        assert!(e.contains(want), "{e} lacks {want}");
    }
}
