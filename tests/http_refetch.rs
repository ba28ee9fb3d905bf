//! Blocks damaged in flight (issue #22, docs/STORE.md §7.4): over HTTP a block whose bytes
//! fail their hash (or, encrypted, whose segment fails authentication) is fetched once more
//! from the server, past the page cache, and the extract is whole; damaged again, it is
//! damage named with the URL, pack and block, and the extract removes what it wrote.
//! `tests/common/http.rs`'s `Flip` damages the bytes.

use crate::common;
use crate::http_read::{extracted, images, osimage, s, serve, summary};

use std::path::Path;
use std::sync::atomic::Ordering;

use common::compare::{Options, assert_no_differences, diff_trees};
use common::http::{Flip, Server};
use osimage::format::manifest::{EntryKind, Manifest};

/// The blocks that hold data of exactly one file.
fn own_blocks(m: &Manifest) -> Vec<u32> {
    let files: Vec<Vec<u32>> = m
        .entries
        .iter()
        .filter_map(|e| match &e.kind() {
            EntryKind::File { runs, .. } => Some(
                runs.iter()
                    .flat_map(|r| &r.chunks)
                    .map(|c| m.chunks[*c as usize].block)
                    .collect(),
            ),
            _ => None,
        })
        .collect();
    (0..m.blocks.len() as u32)
        .filter(|b| files.iter().filter(|bs| bs.contains(b)).count() == 1)
        .collect()
}

const PAGE: u64 = 256 << 10;

/// The bytes one read of block `b` asks for: its header and stored bytes.
fn read_len(m: &Manifest, b: u32) -> u64 {
    osimage::format::records::BLOCK_HEADER_LEN as u64 + u64::from(m.blocks[b as usize].stored_len)
}

/// Damage in flight of a byte in the middle of a block that holds data of one file and of no
/// other (so `extract` reads it, on one thread): the largest such block, read with its header
/// in a request of its own (blocks are 4 KiB or more here, so none goes through the page
/// cache; its damaged copy must not be served again from the recent reads, STORE.md §7.4).
/// The flip hits the answers to the block's read, `times` of them; with it, the block's pack
/// and index.
fn a_data_byte(times: u64) -> (Flip, u32, u32) {
    use osimage::format::records::BLOCK_HEADER_LEN;
    let bytes = std::fs::read(&images().oimg).expect("reading the .oimg");
    let (m, _) = common::oimg::manifest_of(&bytes);
    // Of the blocks holding data of one file only, the largest.
    let b = own_blocks(&m)
        .into_iter()
        .max_by_key(|b| m.blocks[*b as usize].stored_len)
        .expect("a block of one file");
    assert!(
        read_len(&m, b) >= PAGE,
        "the fixture's largest block is read past a page"
    );
    let rec = &m.blocks[b as usize];
    let head = common::oimg::block_at(&m, b);
    let at = head + BLOCK_HEADER_LEN as u64 + u64::from(rec.stored_len) / 2;
    // a block is read with its header, in one read
    (
        Flip {
            at,
            start: head,
            times,
        },
        rec.pack,
        b,
    )
}

/// STORE.md §7.4: a block whose bytes were damaged on the way fails its hash, is fetched once
/// more from the server (not from the page cache) and the extract is whole.
#[test]
fn a_block_damaged_in_flight_once_is_fetched_again() {
    let i = images();
    let from_file = extracted(&i.oimg, "flipped-once.file");
    let server = serve();
    let (flip, _, _) = a_data_byte(1);
    *server.faults.flip.lock().unwrap() = Some(flip);
    let url = server.url("system.oimg");
    let over_http = i.dir.join("flipped-once.http");
    let run = osimage(&[s("extract"), s(&url), s("-C"), over_http.as_os_str()]).ok();
    assert_eq!(server.faults.flipped.load(Ordering::SeqCst), 1, "one flip");
    let line = summary(&run);
    assert!(line.ends_with(", 1 block refetched"), "{line}");
    let diffs = diff_trees(&from_file, &over_http, Options { nlink: true });
    assert_no_differences(&diffs, "extract over HTTP with a byte damaged once");
}

/// Damaged every time it is fetched: damage, named with the URL, the pack and the block, and
/// the extract removes what it wrote (DESIGN.md "Extract").
#[test]
fn a_block_damaged_on_every_fetch_stops_the_extract_naming_it() {
    let i = images();
    let server = serve();
    let (flip, pack, b) = a_data_byte(u64::MAX);
    *server.faults.flip.lock().unwrap() = Some(flip);
    let url = server.url("system.oimg");
    let out = i.dir.join("flipped-always.http");
    let run = osimage(&[s("extract"), s(&url), s("-C"), out.as_os_str()]).fails();
    let block = format!("pack {pack} block {b} is damaged (BLAKE3 mismatch), fetched twice");
    assert!(
        run.stderr.contains(&url) && run.stderr.contains(&block),
        "{}",
        run.describe()
    );
    assert_eq!(
        server.faults.flipped.load(Ordering::SeqCst),
        2,
        "fetched twice, no more"
    );
    assert!(!out.exists(), "the failed extract left {}", out.display());
}

/// An encrypted image (FORMAT.md §11.3): a byte damaged in flight fails its 64 KiB segment's
/// authentication before any hash; the segment is fetched again (its recent read dropped), once;
/// damaged every time, the error names the segment's failure and the second fetch.
#[test]
fn an_encrypted_segment_damaged_in_flight_is_fetched_again() {
    let i = images();
    let dir = common::scratch();
    let pw = dir.path().join("passphrase");
    std::fs::write(&pw, "correct horse battery staple\n").expect("write passphrase");
    let enc = dir.path().join("sealed.oimg");
    let pw_arg = pw.to_str().expect("utf-8");
    common::capture(
        &i.dir.join("src"),
        &enc,
        &["-q", "--encrypt", "--passphrase-file", pw_arg],
    );
    let (flip, pack, b) = a_sealed_byte(&enc, "correct horse battery staple");
    let key = [s("--passphrase-file"), pw.as_os_str()];
    let extract = |img: &str, out: &Path| {
        osimage(&[&[s("extract"), s(img), s("-C"), out.as_os_str()], &key[..]].concat())
    };
    let from_file = dir.path().join("from-file");
    extract(enc.to_str().expect("utf-8"), &from_file).ok();

    let server = Server::start(&[("sealed.oimg", enc.clone())]);
    *server.faults.flip.lock().unwrap() = Some(Flip { times: 1, ..flip });
    let url = server.url("sealed.oimg");
    let once = dir.path().join("once");
    let run = extract(&url, &once).ok();
    assert_eq!(server.faults.flipped.load(Ordering::SeqCst), 1, "one flip");
    assert!(
        summary(&run).ends_with(", 1 block refetched"),
        "{}",
        run.describe()
    );
    let diffs = diff_trees(&from_file, &once, Options { nlink: true });
    assert_no_differences(&diffs, "encrypted extract with a byte damaged once");

    let server = Server::start(&[("sealed.oimg", enc.clone())]);
    *server.faults.flip.lock().unwrap() = Some(Flip {
        times: u64::MAX,
        ..flip
    });
    let url = server.url("sealed.oimg");
    let always = dir.path().join("always");
    let run = extract(&url, &always).fails();
    let says = format!("pack {pack} block {b} is damaged (encrypted segment ");
    assert!(
        run.stderr.contains(&url)
            && run.stderr.contains(&says)
            && run.stderr.contains("fails authentication")
            && run.stderr.contains("fetched twice from the server"),
        "{}",
        run.describe()
    );
    assert!(server.faults.flipped.load(Ordering::SeqCst) >= 2);
    assert!(
        !always.exists(),
        "the failed extract left {}",
        always.display()
    );
}

/// In the encrypted image `enc`, the object offset of a ciphertext byte in the middle of the
/// largest block that holds data of one file only, as a flip of the answer to its segment's
/// read (64 KiB and its tag: one request); with the block's pack and index.
fn a_sealed_byte(enc: &Path, passphrase: &str) -> (Flip, u32, u32) {
    use osimage::format::records::BLOCK_HEADER_LEN;
    let unlock = osimage::Unlock {
        passphrase: Some(passphrase.to_string().into()),
        ..Default::default()
    };
    let reader = osimage::PayloadReader::open(enc, &unlock).expect("open the sealed image");
    let m = reader.manifest();
    let b = own_blocks(m)
        .into_iter()
        .max_by_key(|b| m.blocks[*b as usize].stored_len)
        .expect("a block of one file");
    let rec = &m.blocks[b as usize];
    // FORMAT.md §11.3: 64 KiB segments, each stored with a 16-byte tag after it; the
    // ciphertext of a plaintext byte is at the same place in its segment.
    let (seg, tag) = (64u64 << 10, 16);
    let plain = rec.offset + BLOCK_HEADER_LEN as u64 + u64::from(rec.stored_len) / 2;
    let span = &reader.pack_spans()[rec.pack as usize];
    let segment = span.offset + plain / seg * (seg + tag);
    let flip = Flip {
        at: segment + plain % seg,
        // a whole segment is one read, past the page cache
        start: segment,
        times: 1,
    };
    (flip, rec.pack, b)
}
