//! Against PVs made by LVM 2.03.16 on loop devices (tests/fixtures/lvm/README.md says how):
//! pv1 holds VG vgsys (linear root, swap, home; VG tags), pv2 and pv3 VG vgdata (an LV
//! striped over both), pv4 VG vgwrap with two metadata areas whose current text wraps
//! around the first area's end. The literals below are what `pvs`, `vgs`, `lvs` and
//! `vgcfgbackup` printed for them.

use std::io::Write;

use super::config::{self, Node, Section, Value};
use super::*;
use crate::layout::stack::StackError;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/lvm/{name}", env!("CARGO_MANIFEST_DIR"));
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    if name.ends_with(".zst") {
        zstd::decode_all(&data[..]).expect("zstd fixture")
    } else {
        data
    }
}

fn text_fixture(name: &str) -> String {
    String::from_utf8(fixture(name)).expect("UTF-8 fixture")
}

/// A file of `size` bytes starting with `head` (the rest sparse zeros), as the device.
fn device(head: &[u8], size: u64) -> std::fs::File {
    let mut f = tempfile::tempfile().expect("tempfile");
    f.write_all(head).expect("write");
    f.set_len(size).expect("set_len");
    f
}

fn read(head: &[u8], size: u64) -> Result<Option<PvInfo>, StackError> {
    read_pv(&device(head, size), size)
}

const MIB: u64 = 1 << 20;

/// The VG section of a metadata text, for comparing an area's text with a backup file's.
fn vg_tree(text: &str) -> Section {
    let root = config::parse(text).expect("parse");
    let (name, vg) = vg::vg_section(&root).expect("one VG");
    Section {
        entries: vec![(name.to_string(), Node::Section(vg.clone()))],
    }
}

#[test]
fn read_pv_finds_vgsys_on_pv1() {
    let pv = read(&fixture("pv1.head.zst"), 64 * MIB)
        .unwrap()
        .expect("a PV");
    assert_eq!(pv.pv_uuid, "YLIRXm-gyvO-0lEQ-ZraS-b5TB-weUw-r7M4XQ");
    assert_eq!(pv.device_size, 67_108_864);
    assert_eq!(pv.pe_start_bytes, 1_048_576);
    assert_eq!(pv.mda, vec![(4096, 1_044_480)]);
    let text = pv.metadata.expect("metadata");
    // The area's text is the VG vgcfgbackup wrote, key for key.
    assert_eq!(vg_tree(&text), vg_tree(&text_fixture("vgsys.vg")));
    assert!(
        text.starts_with("vgsys {\nid = \"xA1djd-XRLR-hkh0-PakQ-rHit-ifke-2k5rJW\"\nseqno = 4\n")
    );
}

#[test]
fn read_pv_finds_both_pvs_of_vgdata() {
    let backup = vg_tree(&text_fixture("vgdata.vg"));
    for (name, uuid) in [
        ("pv2.head.zst", "t80DyQ-Hvsx-rImM-iBMZ-fWXy-XnhG-hKJg8h"),
        ("pv3.head.zst", "0KNmgW-EuPQ-NGl1-UQvP-yHvK-0vST-bu7TkN"),
    ] {
        let pv = read(&fixture(name), 32 * MIB).unwrap().expect("a PV");
        assert_eq!(
            (pv.pv_uuid.as_str(), pv.device_size, pv.pe_start_bytes),
            (uuid, 32 * MIB, MIB)
        );
        assert_eq!(vg_tree(&pv.metadata.expect("metadata")), backup);
    }
}

#[test]
fn read_pv_follows_text_that_wraps_around_the_area() {
    let img = fixture("pv4.zst");
    // The committed raw_locn (mda header at 4096, raw_locns at +40): offset 59904, size
    // 1741 in an area of 61440 bytes, so 205 bytes continue after the 512-byte header.
    assert_eq!(
        u64::from_le_bytes(img[4136..4144].try_into().unwrap()),
        59_904
    );
    assert_eq!(
        u64::from_le_bytes(img[4144..4152].try_into().unwrap()),
        1741
    );
    let pv = read(&img, img.len() as u64).unwrap().expect("a PV");
    assert_eq!(pv.pv_uuid, "5Q5k1L-P6Y2-7fiO-Qfs1-weTi-Fxvu-E2EWVn");
    assert_eq!((pv.device_size, pv.pe_start_bytes), (16 * MIB, 65_536));
    assert_eq!(pv.mda, vec![(4096, 61_440), (16_711_680, 65_536)]);
    let text = pv.metadata.expect("metadata");
    assert_eq!(vg_tree(&text), vg_tree(&text_fixture("vgwrap.vg")));
    assert_eq!(parse_vg(&text).unwrap().seqno, 70);
}

#[test]
fn read_pv_reads_the_second_area_when_the_first_is_damaged() {
    let mut img = fixture("pv4.zst");
    img[4096 + 59_904 + 100] ^= 1; // inside the first area's text
    let pv = read(&img, img.len() as u64).unwrap().expect("a PV");
    let text = pv
        .metadata
        .expect("the copy in the area at the device's end");
    assert_eq!(vg_tree(&text), vg_tree(&text_fixture("vgwrap.vg")));
    // The second area's raw_locn: its text at 55808, 1741 bytes, not wrapped.
    assert_eq!(
        u64::from_le_bytes(img[16_711_720..16_711_728].try_into().unwrap()),
        55_808
    );
    img[16_711_680 + 55_808 + 100] ^= 1;
    let m = format!("{:?}", read(&img, img.len() as u64));
    assert!(
        m.contains("metadata text at byte 64000: checksum"),
        "the first area's error: {m}"
    );
}

#[test]
fn read_pv_says_none_without_a_label() {
    assert_eq!(read(&[0u8; 4096], MIB).unwrap(), None);
    assert_eq!(
        read(&[], 100).unwrap(),
        None,
        "a device smaller than a sector"
    );
}

#[test]
fn read_pv_says_none_when_the_only_area_is_ignored() {
    let mut img = fixture("pv1.head.zst");
    img[4156] |= 1; // raw_locns[0].flags: RAW_LOCN_IGNORED
    fix_mda_crc(&mut img, 4096);
    let pv = read(&img, 64 * MIB).unwrap().expect("a PV");
    assert_eq!((pv.metadata, pv.mda.len()), (None, 1));
}

fn fix_mda_crc(img: &mut [u8], at: usize) {
    let crc = label::calc_crc(label::INITIAL_CRC, &img[at + 4..at + 512]);
    img[at..at + 4].copy_from_slice(&crc.to_le_bytes());
}

fn fix_label_crc(img: &mut [u8]) {
    let crc = label::calc_crc(label::INITIAL_CRC, &img[512 + 20..1024]);
    img[512 + 16..512 + 20].copy_from_slice(&crc.to_le_bytes());
}

fn bad_message(r: Result<Option<PvInfo>, StackError>) -> String {
    match r {
        Err(StackError::Bad(m)) => m,
        other => panic!("expected StackError::Bad, got {other:?}"),
    }
}

#[test]
fn read_pv_rejects_corruption_with_what_is_wrong() {
    let img = fixture("pv1.head.zst");
    let corrupt = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut c = img.clone();
        f(&mut c);
        bad_message(read(&c, 64 * MIB))
    };
    let m = corrupt(&|c| c[600] ^= 1); // inside the PV header
    assert!(m.contains("LVM label in sector 1: checksum"), "{m}");
    let m = corrupt(&|c| c[9300] ^= 1); // inside the text at 4096 + 5120 = 9216
    assert!(m.contains("metadata text at byte 9216: checksum"), "{m}");
    let m = corrupt(&|c| c[4150] ^= 1); // raw_locn size, header checksum left stale
    assert!(
        m.contains("metadata area at byte 4096: header checksum"),
        "{m}"
    );
    let m = corrupt(&|c| {
        c[4143] = 0x7f; // raw_locn offset absurd, header checksum made right
        fix_mda_crc(c, 4096);
    });
    assert!(m.contains("does not fit its 1044480 bytes"), "{m}");
    let m = corrupt(&|c| {
        c[512 + 72 + 16 + 16 + 15] = 0x7f; // metadata area size absurd
        fix_label_crc(c);
    });
    assert!(
        m.contains("metadata area at byte 4096") && m.contains("does not fit a device of 67108864"),
        "{m}"
    );
    let m = corrupt(&|c| {
        c[512 + 32] = b'!'; // UUID
        fix_label_crc(c);
    });
    assert!(m.contains("UUID"), "{m}");
    let m = corrupt(&|c| {
        c[512 + 20..512 + 22].copy_from_slice(&500u16.to_le_bytes()); // PV header past the sector
        fix_label_crc(c);
    });
    assert!(m.contains("PV header offset 500 outside the sector"), "{m}");
}

#[test]
fn read_pv_rejects_area_lists_that_never_end() {
    let mut img = fixture("pv1.head.zst");
    for at in (512 + 72..1024).step_by(16) {
        img[at] = 1; // every disk_locn non-zero: no terminator
    }
    fix_label_crc(&mut img);
    let m = bad_message(read(&img, 64 * MIB));
    assert!(
        m.contains("more than 8 data areas") || m.contains("runs past"),
        "{m}"
    );
}

#[test]
fn read_pv_on_a_cut_device_is_an_error() {
    let img = fixture("pv1.head.zst");
    // The label says the area runs to byte 1048576: a 64 KiB device cannot hold it.
    let m = bad_message(read(&img[..65536], 65536));
    assert!(m.contains("does not fit a device of 65536 bytes"), "{m}");
    // A device that claims its size but ends early (a truncated image file).
    let r = read_pv(&device(&img[..6000], 6000), 64 * MIB);
    assert!(matches!(r, Err(StackError::Io { .. })), "{r:?}");
}

#[test]
fn config_round_trips_lvm_texts() {
    for name in ["vgsys.vg", "vgdata.vg", "vgwrap.vg"] {
        let text = text_fixture(name);
        let tree = config::parse(&text).unwrap();
        let again = config::parse(&tree.to_text()).unwrap();
        assert_eq!(tree, again, "{name}");
        assert_eq!(again.to_text(), tree.to_text());
    }
    let desc = config::parse(&text_fixture("vgsys.vg")).unwrap();
    let d = desc.str("description").unwrap();
    assert!(d.contains(r#"filter=["a|^/dev/loop0$|","#), "{d}");
}

#[test]
fn config_values_and_escapes() {
    let t = config::parse(
        "# c\na = -12 # trailing\nb = \"q\\\"uo\\\\te\"\nc = [\n\"x\", 1,\n 2 ]\nd = []\ns {\n f = 1.5\n}\n",
    )
    .unwrap();
    assert_eq!(t.int("a"), Some(-12));
    assert_eq!(t.str("b"), Some("q\"uo\\te"));
    assert_eq!(
        t.value("c"),
        Some(&Value::Array(vec![
            Value::Str("x".into()),
            Value::Int(1),
            Value::Int(2)
        ]))
    );
    assert_eq!(t.strings("d"), Some(vec![]));
    assert_eq!(
        t.section("s").and_then(|s| s.value("f")),
        Some(&Value::Float("1.5".into()))
    );
    assert_eq!(config::parse(&t.to_text()).unwrap(), t);
    assert!(
        t.to_text().contains("b = \"q\\\"uo\\\\te\"\n"),
        "{}",
        t.to_text()
    );
    let mut t = t;
    t.set("a", Value::Int(7));
    t.set("z", Value::Str("new".into()));
    assert_eq!((t.int("a"), t.str("z")), (Some(7), Some("new")));
    assert_eq!(t.entries[0].0, "a", "set keeps the member's place");
}

#[test]
fn config_rejects_bad_text_without_panicking() {
    let text = text_fixture("vgsys.vg");
    // Every cut of a real text either parses (cut between members) or is an error.
    let mut errors = 0;
    for cut in 0..text.len() {
        if text.is_char_boundary(cut) && config::parse(&text[..cut]).is_err() {
            errors += 1;
        }
    }
    assert!(
        errors > text.len() / 2,
        "{errors} of {} cuts rejected",
        text.len()
    );
    for (bad, what) in [
        ("a = ", "expected a value"),
        ("a = [1, [2]]", "expected a value"),
        ("a { b = 1", "not closed"),
        ("}", "expected a name"),
        ("a = \"x", "string not closed"),
        ("a = 99999999999999999999", "bad integer"),
        ("a = [1 2]", "array not closed"),
        ("a b", "expected '='"),
    ] {
        match config::parse(bad) {
            Err(StackError::Bad(m)) => assert!(m.contains(what), "{bad:?}: {m}"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    let deep = "a {".repeat(config::MAX_DEPTH + 2) + &"}".repeat(config::MAX_DEPTH + 2);
    let m = format!("{:?}", config::parse(&deep));
    assert!(m.contains("nested deeper than 32"), "{m}");
}

#[test]
fn parse_vg_reads_vgsys() {
    let vg = parse_vg(&text_fixture("vgsys.vg")).unwrap();
    assert_eq!(
        (vg.name.as_str(), vg.id.as_str()),
        ("vgsys", "xA1djd-XRLR-hkh0-PakQ-rHit-ifke-2k5rJW")
    );
    assert_eq!((vg.seqno, vg.extent_size, vg.metadata_copies), (4, 8192, 0));
    assert_eq!(vg.tags, ["site_a", "backup"]);
    assert_eq!(vg.status, ["RESIZEABLE", "READ", "WRITE"]);
    let pv = &vg.pvs[0];
    assert_eq!(vg.pvs.len(), 1);
    assert_eq!(
        (pv.key.as_str(), pv.id.as_str()),
        ("pv0", "YLIRXm-gyvO-0lEQ-ZraS-b5TB-weUw-r7M4XQ")
    );
    assert_eq!(
        (pv.device.as_deref(), pv.dev_size, pv.pe_start, pv.pe_count),
        (Some("/dev/loop0"), 131_072, 2048, 15)
    );
    let lvs: Vec<_> = vg
        .lvs
        .iter()
        .map(|l| {
            (
                l.name.as_str(),
                l.extents(),
                l.kind.clone(),
                l.recreatable(),
            )
        })
        .collect();
    assert_eq!(
        lvs,
        [
            ("root", 10, LvKind::Linear, true),
            ("swap", 3, LvKind::Linear, true),
            ("home", 1, LvKind::Linear, true)
        ]
    );
    let root = &vg.lvs[0];
    assert_eq!(
        (root.id.as_str(), root.tags.clone()),
        (
            "pYeyPG-i6TT-rjIo-hNds-HPxN-flRH-DLUH1b",
            vec!["rootfs".to_string()]
        )
    );
    assert_eq!(vg.lvs[1].segments[0].stripes, [("pv0".to_string(), 10)]);
}

#[test]
fn parse_vg_reads_the_striped_lv() {
    let vg = parse_vg(&text_fixture("vgdata.vg")).unwrap();
    let data = &vg.lvs[0];
    assert_eq!(
        (data.name.as_str(), data.kind.clone(), data.recreatable()),
        ("data", LvKind::Striped, true)
    );
    assert_eq!(data.tags, ["we+ird.tag"]);
    let s = &data.segments[0];
    assert_eq!(
        (
            s.start_extent,
            s.extent_count,
            s.stripe_count,
            s.stripe_size
        ),
        (0, 40, 2, Some(128))
    );
    assert_eq!(s.stripes, [("pv0".to_string(), 0), ("pv1".to_string(), 0)]);
    let tails = pv_tails(&vg);
    assert_eq!(
        tails
            .iter()
            .map(|t| (t.used_end, t.free_at_end))
            .collect::<Vec<_>>(),
        [(20, 11), (20, 11)]
    );
}

#[test]
fn parse_vg_names_what_cannot_be_recreated() {
    let vg = parse_vg(&text_fixture("exotic.vg")).unwrap();
    let got: Vec<_> = vg
        .lvs
        .iter()
        .map(|l| {
            (
                l.name.as_str(),
                l.kind.clone(),
                l.hidden,
                l.sub_role(),
                l.recreatable(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("pool", LvKind::ThinPool, false, None, false),
            ("thin1", LvKind::Thin, false, None, false),
            ("pool_tdata", LvKind::Linear, true, Some("tdata"), false),
            ("pool_tmeta", LvKind::Linear, true, Some("tmeta"), false),
            (
                "lvol0_pmspare",
                LvKind::Linear,
                true,
                Some("pmspare"),
                false
            ),
            ("snap", LvKind::Snapshot, false, None, false),
            ("snapshot0", LvKind::Snapshot, true, None, false),
            ("base", LvKind::Linear, false, None, true),
            ("r", LvKind::Raid, false, None, false),
            ("r_rimage_0", LvKind::Linear, true, Some("rimage"), false),
        ]
    );
    let pool = &vg.lvs[0].segments[0].refs;
    assert!(
        pool.contains(&("metadata".into(), "pool_tmeta".into()))
            && pool.contains(&("pool".into(), "pool_tdata".into()))
    );
    assert_eq!(vg.lvs[8].segments[0].refs.len(), 4, "raids members");
}

#[test]
fn parse_vg_rejects_what_is_not_one_vg() {
    for (text, what) in [
        ("a = 1", "no volume group section"),
        (
            "a { extent_size = 1 id = \"x\" seqno = 1 }\nb { }",
            "more than one",
        ),
        ("a { id = \"x\" seqno = 1 }", "no integer extent_size"),
        (
            "a { id = \"x\" seqno = -1 extent_size = 8 }",
            "seqno = -1 is negative",
        ),
        (
            "a { id = \"x\" seqno = 1 extent_size = 8 tags = [1] }",
            "tags is not a list of strings",
        ),
    ] {
        let m = format!("{:?}", parse_vg(text));
        assert!(m.contains(what), "{text}: {m}");
    }
}

fn target(uuid: &str, sectors: u64) -> PvTarget {
    PvTarget {
        pv_uuid: uuid.into(),
        dev_size_sectors: sectors,
        device: "/dev/vdb2".into(),
    }
}

const PV1: &str = "YLIRXm-gyvO-0lEQ-ZraS-b5TB-weUw-r7M4XQ";

#[test]
fn adapt_for_restore_grows_the_last_lv_onto_a_larger_pv() {
    let text = text_fixture("vgsys.vg");
    let vg = parse_vg(&text).unwrap();
    let t = [target(PV1, 128 * MIB / 512)]; // 262144 sectors: (262144 - 2048) / 8192 = 31
    let tails = pv_tails(&vg);
    assert_eq!(
        (
            tails[0].used_end,
            tails[0].free_at_end,
            tails[0].last_lv.as_deref()
        ),
        (14, 1, Some("home"))
    );
    assert_eq!(fill_delta(&vg, "home", &t).unwrap(), 17);
    let out = adapt_for_restore(
        &text,
        &t,
        Some(Grow {
            lv: "home".into(),
            delta_extents: 17,
        }),
    )
    .unwrap();
    let new = parse_vg(&out).unwrap();
    let pv = &new.pvs[0];
    assert_eq!(
        (pv.pe_count, pv.dev_size, pv.device.as_deref()),
        (31, 262_144, Some("/dev/vdb2"))
    );
    assert_eq!(
        new.lvs.iter().map(|l| l.extents()).collect::<Vec<_>>(),
        [10, 3, 18]
    );
    assert_eq!(pv_tails(&new)[0].free_at_end, 0);
    // Nothing else changed: the original tree with the same four values set is the result.
    let mut want = config::parse(&text).unwrap();
    let p = want.section_mut("vgsys/physical_volumes/pv0").unwrap();
    p.set("device", Value::Str("/dev/vdb2".into()));
    p.set("dev_size", Value::Int(262_144));
    p.set("pe_count", Value::Int(31));
    want.section_mut("vgsys/logical_volumes/home/segment1")
        .unwrap()
        .set("extent_count", Value::Int(18));
    assert_eq!(config::parse(&out).unwrap(), want);
}

#[test]
fn adapt_for_restore_shrinks_onto_a_smaller_pv() {
    let text = text_fixture("vgwrap.vg");
    let vg = parse_vg(&text).unwrap();
    let uuid = "5Q5k1L-P6Y2-7fiO-Qfs1-weTi-Fxvu-E2EWVn";
    let t = [target(uuid, 4 * MIB / 512)]; // (8192 - 128) / 2048 = 3 extents, lv1 has 4
    assert_eq!(fill_delta(&vg, "lv1", &t).unwrap(), -1);
    let m = format!("{:?}", adapt_for_restore(&text, &t, None));
    assert!(
        m.contains("LV lv1 uses extents 0..4 of pv0, but its new device holds 3 extents"),
        "{m}"
    );
    let out = adapt_for_restore(
        &text,
        &t,
        Some(Grow {
            lv: "lv1".into(),
            delta_extents: -1,
        }),
    )
    .unwrap();
    let new = parse_vg(&out).unwrap();
    assert_eq!((new.pvs[0].pe_count, new.lvs[0].extents()), (3, 3));
    assert_eq!(
        (new.seqno, new.tags.len(), new.id.as_str()),
        (70, 68, "BXi9bB-1wwE-mOle-mx1M-xcXw-B23H-No1yfG")
    );
}

#[test]
fn adapt_for_restore_refuses_the_impossible_with_numbers() {
    let text = text_fixture("vgsys.vg");
    let vg = parse_vg(&text).unwrap();
    let big = [target(PV1, 128 * MIB / 512)];
    let grow = |lv: &str, d: i64| {
        Some(Grow {
            lv: lv.into(),
            delta_extents: d,
        })
    };
    let cases: Vec<(Result<String, StackError>, &str)> = vec![
        (
            adapt_for_restore(&text, &big, grow("root", 1)),
            "cannot grow to extent 11 of pv0: LV swap uses extents 10..13",
        ),
        (
            adapt_for_restore(&text, &big, grow("home", 18)),
            "would end at extent 32 of pv0, which has 31",
        ),
        (
            adapt_for_restore(&text, &big, grow("home", -1)),
            "cannot shrink by 1 extents: its last segment has 1",
        ),
        (
            adapt_for_restore(&text, &big, grow("home", i64::MAX)),
            "would end at extent 9223372036854775821 of pv0",
        ),
        (
            adapt_for_restore(&text, &big, grow("home", i64::MIN)),
            "cannot shrink by 9223372036854775808 extents",
        ),
        (
            adapt_for_restore(&text, &[target(PV1, u64::MAX)], None),
            "18446744073709551615 is too large",
        ),
        (
            adapt_for_restore(&text, &big, grow("nope", 1)),
            "no LV named nope",
        ),
        (
            adapt_for_restore(&text, &[target("not-a-pv", 1 << 20)], None),
            "no PV with UUID not-a-pv",
        ),
        (
            adapt_for_restore(&text, &[target(PV1, 4096)], None),
            "of 4096 sectors holds no extent",
        ),
        (
            adapt_for_restore(&text, &[target(PV1, 96 * MIB / 1024)], None),
            "LV swap uses extents 10..13 of pv0, but its new device holds 11 extents",
        ),
    ];
    for (r, want) in cases {
        let m = format!("{r:?}");
        assert!(m.contains(want), "want {want:?} in {m}");
    }
    let m = format!("{:?}", fill_delta(&vg, "root", &big));
    assert!(
        m.contains("LV root ends at extent 10 of pv0 but LV home ends after it, at extent 14"),
        "{m}"
    );
    let data = text_fixture("vgdata.vg");
    let m = format!("{:?}", adapt_for_restore(&data, &[], grow("data", 1)));
    assert!(
        m.contains("last segment segment1 is striped over 2 stripes, not linear"),
        "{m}"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Any bytes flipped in a real PV's label and metadata: an answer or an error, no panic.
    #[test]
    fn read_pv_never_panics(flips in proptest::collection::vec((0usize..12 * 1024, 0u8..=255), 1..8)) {
        let mut img = fixture("pv1.head.zst");
        for (at, b) in flips {
            img[at] ^= b;
        }
        // The checksums stop most flips; make the headers' right so the parsing is reached.
        fix_label_crc(&mut img);
        fix_mda_crc(&mut img, 4096);
        let _ = read(&img, 64 * MIB);
    }

    /// Any cut-and-spliced metadata text: parse, facts and rewrite answer or refuse.
    #[test]
    fn metadata_text_never_panics(cut in 0usize..2300, junk in "[ -~\n]{0,40}") {
        let text = text_fixture("vgsys.vg");
        let cut = cut.min(text.len());
        let spliced = format!("{}{junk}{}", &text[..cut], &text[cut..]);
        if let Ok(t) = config::parse(&spliced) {
            proptest::prop_assert_eq!(config::parse(&t.to_text()).ok(), Some(t));
        }
        let _ = parse_vg(&spliced);
        let _ = adapt_for_restore(&spliced, &[target(PV1, 1 << 20)], Some(Grow { lv: "home".into(), delta_extents: 3 }));
    }
}

#[test]
fn lv_runs_place_linear_lvs_on_their_pv_and_refuse_stripes() {
    let vg = parse_vg(&text_fixture("vgsys.vg")).unwrap();
    let pv = vg.pvs[0].id.clone();
    let mib = 1u64 << 20;
    // pe_start 2048 sectors = 1 MiB; 4 MiB extents
    assert_eq!(
        vg.lv_runs("swap").unwrap(),
        [PvRun {
            pv_id: pv.clone(),
            offset: mib + 10 * 4 * mib,
            len: 3 * 4 * mib
        }]
    );
    assert_eq!(vg.lv_runs("root").unwrap()[0].offset, mib);
    // two segments that follow one another on the PV are one run; a gap makes two
    let mut two = vg.clone();
    let root = two.lvs.iter_mut().find(|l| l.name == "root").unwrap();
    let mut second = root.segments[0].clone();
    root.segments[0].extent_count = 4;
    second.start_extent = 4;
    second.extent_count = 6;
    second.stripes[0].1 = 4;
    root.segments.push(second.clone());
    assert_eq!(two.lv_runs("root").unwrap().len(), 1);
    let root = two.lvs.iter_mut().find(|l| l.name == "root").unwrap();
    root.segments[1].stripes[0].1 = 14;
    root.segments[1].extent_count = 1;
    let runs = two.lv_runs("root").unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[1].offset, mib + 14 * 4 * mib);
    // past the PV's extents
    let root = two.lvs.iter_mut().find(|l| l.name == "root").unwrap();
    root.segments[1].stripes[0].1 = 15;
    let e = two.lv_runs("root").unwrap_err().to_string();
    assert!(e.contains("outside PV pv0"), "{e}");
    let data = parse_vg(&text_fixture("vgdata.vg")).unwrap();
    let e = data.lv_runs("data").unwrap_err().to_string();
    assert!(e.contains("striped over 2 stripes"), "{e}");
    assert!(vg.lv_runs("nosuch").is_err());
}
