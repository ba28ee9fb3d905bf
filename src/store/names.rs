//! The object keys of a store, relative to its prefix (docs/STORE.md §2), the version
//! strings of §2.5, and the parsers that turn listed keys back into ids and names. A parser
//! refuses anything that is not exactly what the writers make: a listing is input from the
//! server, and a stray object in the prefix must not pass as a pack or a version.

use chrono::{DateTime, NaiveDateTime, Utc};

/// The store's configuration object.
pub const CONFIG: &str = "config";
/// Where the version objects live, one folder per series.
pub const IMAGES: &str = "images/";
/// Where the index objects live.
pub const INDEX: &str = "index/";
/// Where the packs live, in 256 folders by their first byte.
pub const PACKS: &str = "packs/";
/// Where the rescue blobs live.
pub const RESCUE: &str = "rescue/";
/// Where the running writers' and readers' locks live (§2.7).
pub const LOCKS: &str = "locks/";
/// Where the prunes' condemnations, wait lists and sweep records live (§2.7, §5.2).
pub const PRUNE: &str = "prune/";
/// Where the pins live (§2.7, §9.3).
pub const PINS: &str = "pins/";

/// The longest series NAME (§1).
pub const MAX_SERIES: usize = 128;
/// The longest `@VERSION` selector.
const MAX_SELECTOR: usize = 64;
/// `strftime` form of a version's time (§2.5): sorts as it reads.
const VERSION_TIME: &str = "%Y%m%dT%H%M%SZ";
/// Length of a version string: 16 for the time, `-`, 16 hex of the image id.
pub const VERSION_LEN: usize = 33;

pub use crate::units::hex;

/// `N` bytes from exactly `2N` lower-case hex digits.
pub fn from_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let b = s.as_bytes();
    if b.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (digit(b[2 * i])? << 4) | digit(b[2 * i + 1])?;
    }
    Some(out)
}

/// Whether `name` is a series NAME (§1): 1–128 bytes of `[A-Za-z0-9._-]`, not starting with
/// `.`, not ending in `.iso` or `.oimg` (which name images kept whole as one object, §1.1).
pub fn check_series(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the image NAME is empty".into());
    }
    if name.len() > MAX_SERIES {
        return Err(format!(
            "the image NAME is {} bytes (at most {MAX_SERIES})",
            name.len()
        ));
    }
    let ok = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-');
    if !name.bytes().all(ok) {
        return Err(format!(
            "the image NAME {name:?} may hold only [A-Za-z0-9._-]"
        ));
    }
    if name.starts_with('.') {
        return Err(format!("the image NAME {name:?} starts with '.'"));
    }
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".iso") || lower.ends_with(".oimg") {
        return Err(format!(
            "the image NAME {name:?} ends in .iso or .oimg, which names an image kept whole \
             as one object, not a series in a store"
        ));
    }
    Ok(())
}

/// Whether `v` may select a version (`@VERSION`): 1–64 bytes of `[A-Za-z0-9-]`, a prefix of a
/// version string or of an image id in hex.
pub fn check_version_selector(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Err("the @VERSION is empty".into());
    }
    if v.len() > MAX_SELECTOR || !v.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-') {
        return Err(format!(
            "the @VERSION {v:?} is not 1-{MAX_SELECTOR} bytes of [A-Za-z0-9-]"
        ));
    }
    Ok(())
}

/// The key of the pack `id`: `packs/<2 hex>/<64 hex>`.
pub fn pack_key(id: &[u8; 32]) -> String {
    format!("{PACKS}{:02x}/{}", id[0], hex(id))
}

/// The key of the index object named `id`: `index/<64 hex>`.
pub fn index_key(id: &[u8; 32]) -> String {
    format!("{INDEX}{}", hex(id))
}

/// The key of the lock named `id`: `locks/<32 hex random>`.
pub fn lock_key(id: &[u8; 16]) -> String {
    format!("{LOCKS}{}", hex(id))
}

/// The key of the condemnation named `id`: `prune/<32 hex random>`.
pub fn condemnation_key(id: &[u8; 16]) -> String {
    format!("{PRUNE}{}", hex(id))
}

/// The key of the wait list of the condemnation `id`: `prune/<32 hex>.wait`.
pub fn wait_key(id: &[u8; 16]) -> String {
    format!("{}.wait", condemnation_key(id))
}

/// The key of the sweep record of the condemnation `id`: `prune/<32 hex>.swept`.
pub fn swept_key(id: &[u8; 16]) -> String {
    format!("{}.swept", condemnation_key(id))
}

/// The key of the pin named `id`: `pins/<32 hex random>`.
pub fn pin_key(id: &[u8; 16]) -> String {
    format!("{PINS}{}", hex(id))
}

/// Which of a condemnation's three objects a key under `prune/` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PruneObject {
    Condemnation,
    Wait,
    Swept,
}

/// The folder of a series' versions: `images/<NAME>/`.
pub fn series_prefix(series: &str) -> String {
    format!("{IMAGES}{series}/")
}

/// The key of a version object: `images/<NAME>/<VERSION>`.
pub fn version_key(series: &str, version: &str) -> String {
    format!("{IMAGES}{series}/{version}")
}

/// The key of a rescue blob: `rescue/<64 hex of its BLAKE3>.<16 hex random>`.
pub fn rescue_key(id: &[u8; 32], suffix: &[u8; 8]) -> String {
    format!("{RESCUE}{}.{}", hex(id), hex(suffix))
}

/// The version string of an image made at `created` with `image_id` (§2.5):
/// `20261205T195045Z-3fa2c81d09be4471`, so a listing sorts versions oldest first.
pub fn version_name(created: DateTime<Utc>, image_id: &[u8; 16]) -> String {
    format!("{}-{}", created.format(VERSION_TIME), hex(&image_id[..8]))
}

/// The time and the first 8 bytes of the image id a version string holds; `None` unless
/// `v` is exactly what [`version_name`] writes.
pub fn parse_version(v: &str) -> Option<(DateTime<Utc>, [u8; 8])> {
    if v.len() != VERSION_LEN {
        return None;
    }
    let (time, id) = v.split_at(16);
    let id = from_hex::<8>(id.strip_prefix('-')?)?;
    let t = time.as_bytes();
    let digits = |r: std::ops::Range<usize>| t[r].iter().all(u8::is_ascii_digit);
    if !(digits(0..8) && t[8] == b'T' && digits(9..15) && t[15] == b'Z') {
        return None;
    }
    let at = NaiveDateTime::parse_from_str(time, VERSION_TIME)
        .ok()?
        .and_utc();
    Some((at, id))
}

/// The id of a listed pack key; refuses a malformed one, or one in the wrong folder.
pub fn parse_pack_key(rel: &str) -> Result<[u8; 32], String> {
    let bad = || format!("{rel:?} is not a pack's key (packs/<2 hex>/<64 hex>)");
    let rest = rel.strip_prefix(PACKS).ok_or_else(bad)?;
    let (dir, name) = rest.split_once('/').ok_or_else(bad)?;
    let id = from_hex::<32>(name).ok_or_else(bad)?;
    if from_hex::<1>(dir) != Some([id[0]]) {
        return Err(bad());
    }
    Ok(id)
}

/// The name of a listed index object.
pub fn parse_index_key(rel: &str) -> Result<[u8; 32], String> {
    rel.strip_prefix(INDEX)
        .and_then(from_hex::<32>)
        .ok_or_else(|| format!("{rel:?} is not an index object's key (index/<64 hex>)"))
}

/// The name of a listed lock.
pub fn parse_lock_key(rel: &str) -> Result<[u8; 16], String> {
    rel.strip_prefix(LOCKS)
        .and_then(from_hex::<16>)
        .ok_or_else(|| format!("{rel:?} is not a lock's key (locks/<32 hex>)"))
}

/// The condemnation id of a listed key under `prune/`, and which of its objects it is.
pub fn parse_prune_key(rel: &str) -> Result<([u8; 16], PruneObject), String> {
    let bad = || format!("{rel:?} is not a prune object's key (prune/<32 hex>[.wait|.swept])");
    let rest = rel.strip_prefix(PRUNE).ok_or_else(bad)?;
    let (id, what) = match rest.split_once('.') {
        None => (rest, PruneObject::Condemnation),
        Some((id, "wait")) => (id, PruneObject::Wait),
        Some((id, "swept")) => (id, PruneObject::Swept),
        Some(_) => return Err(bad()),
    };
    Ok((from_hex::<16>(id).ok_or_else(bad)?, what))
}

/// The name of a listed pin.
pub fn parse_pin_key(rel: &str) -> Result<[u8; 16], String> {
    rel.strip_prefix(PINS)
        .and_then(from_hex::<16>)
        .ok_or_else(|| format!("{rel:?} is not a pin's key (pins/<32 hex>)"))
}

/// The blob id and random suffix of a listed rescue blob.
pub fn parse_rescue_key(rel: &str) -> Result<([u8; 32], [u8; 8]), String> {
    let bad = || format!("{rel:?} is not a rescue blob's key (rescue/<64 hex>.<16 hex>)");
    let (id, suffix) = rel
        .strip_prefix(RESCUE)
        .and_then(|r| r.split_once('.'))
        .ok_or_else(bad)?;
    Ok((
        from_hex::<32>(id).ok_or_else(bad)?,
        from_hex::<8>(suffix).ok_or_else(bad)?,
    ))
}

/// The series and version of a listed version object.
pub fn parse_version_key(rel: &str) -> Result<(String, String), String> {
    let bad = || format!("{rel:?} is not a version object's key (images/<NAME>/<VERSION>)");
    let (series, version) = rel
        .strip_prefix(IMAGES)
        .and_then(|r| r.split_once('/'))
        .ok_or_else(bad)?;
    check_series(series).map_err(|_| bad())?;
    parse_version(version).ok_or_else(bad)?;
    Ok((series.to_string(), version.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const ID: [u8; 16] = [
        0x3f, 0xa2, 0xc8, 0x1d, 0x09, 0xbe, 0x44, 0x71, 1, 2, 3, 4, 5, 6, 7, 8,
    ];

    #[test]
    fn keys_are_the_ones_of_section_2() {
        let mut id = [0u8; 32];
        id[0] = 0xab;
        id[31] = 0x01;
        let h = hex(&id);
        assert_eq!(pack_key(&id), format!("packs/ab/{h}"));
        assert_eq!(index_key(&id), format!("index/{h}"));
        assert_eq!(version_key("web01", "v"), "images/web01/v");
        assert_eq!(series_prefix("web01"), "images/web01/");
        assert_eq!(
            rescue_key(&id, &[0xff; 8]),
            format!("rescue/{h}.ffffffffffffffff")
        );
        assert_eq!(parse_pack_key(&pack_key(&id)), Ok(id));
        assert_eq!(parse_index_key(&index_key(&id)), Ok(id));
        assert_eq!(lock_key(&[0x0f; 16]), format!("locks/{}", "0f".repeat(16)));
        assert_eq!(parse_lock_key(&lock_key(&[3; 16])), Ok([3; 16]));
        let p = "0f".repeat(16);
        assert_eq!(condemnation_key(&[0x0f; 16]), format!("prune/{p}"));
        assert_eq!(wait_key(&[0x0f; 16]), format!("prune/{p}.wait"));
        assert_eq!(swept_key(&[0x0f; 16]), format!("prune/{p}.swept"));
        assert_eq!(pin_key(&[0x0f; 16]), format!("pins/{p}"));
        for (key, what) in [
            (condemnation_key(&[4; 16]), PruneObject::Condemnation),
            (wait_key(&[4; 16]), PruneObject::Wait),
            (swept_key(&[4; 16]), PruneObject::Swept),
        ] {
            assert_eq!(parse_prune_key(&key), Ok(([4; 16], what)));
        }
        assert_eq!(parse_pin_key(&pin_key(&[5; 16])), Ok([5; 16]));
        assert_eq!(
            parse_rescue_key(&rescue_key(&id, &[7; 8])),
            Ok((id, [7; 8]))
        );
    }

    #[test]
    fn version_names_are_utc_time_then_the_image_id() {
        let t = Utc.with_ymd_and_hms(2026, 12, 5, 19, 50, 45).unwrap();
        let v = version_name(t, &ID);
        assert_eq!(v, "20261205T195045Z-3fa2c81d09be4471");
        assert_eq!(
            parse_version(&v),
            Some((t, [0x3f, 0xa2, 0xc8, 0x1d, 0x09, 0xbe, 0x44, 0x71]))
        );
        assert_eq!(
            parse_version_key(&version_key("web01", &v)),
            Ok(("web01".to_string(), v.clone()))
        );
        // Earlier sorts first, as a LIST returns keys.
        let earlier = version_name(
            Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0).unwrap(),
            &[0xff; 16],
        );
        assert!(earlier < v);
    }

    #[test]
    fn malformed_listed_keys_are_refused() {
        let h = "ab".repeat(32);
        for bad in [
            format!("packs/ac/{h}"),
            format!("packs/ab/{h}x"),
            format!("packs/{h}"),
            format!("packs/ab/{}", h.to_uppercase()),
            "packs/ab/".to_string(),
        ] {
            assert!(parse_pack_key(&bad).is_err(), "{bad}");
        }
        for bad in [
            format!("index/{h}.tmp"),
            format!("index/{}", &h[1..]),
            h.clone(),
        ] {
            assert!(parse_index_key(&bad).is_err(), "{bad}");
        }
        for bad in [
            format!("locks/{}", &h[..31]),
            format!("locks/{}.x", &h[..32]),
            format!("locks/{}", h[..32].to_uppercase()),
            h[..32].to_string(),
        ] {
            assert!(parse_lock_key(&bad).is_err(), "{bad}");
        }
        for bad in [
            format!("prune/{}.done", &h[..32]),
            format!("prune/{}.wait.swept", &h[..32]),
            format!("prune/{}", &h[..30]),
            format!("prune/{}.", &h[..32]),
            format!("pins/{}", &h[..32]),
        ] {
            assert!(parse_prune_key(&bad).is_err(), "{bad}");
        }
        for bad in [
            format!("pins/{}.x", &h[..32]),
            format!("prune/{}", &h[..32]),
        ] {
            assert!(parse_pin_key(&bad).is_err(), "{bad}");
        }
        for bad in [
            format!("rescue/{h}"),
            format!("rescue/{h}.0011"),
            format!("rescue/{h}.00112233445566778"),
        ] {
            assert!(parse_rescue_key(&bad).is_err(), "{bad}");
        }
        for bad in [
            "images/web01/20261205T195045Z-3fa2c81d09be447",
            "images/web01/20261305T195045Z-3fa2c81d09be4471",
            "images/web01/20261205T195045X-3fa2c81d09be4471",
            "images/web01/+0261205T195045Z-3fa2c81d09be4471",
            "images/web01/20261205T195045Z_3fa2c81d09be4471",
            "images/.web01/20261205T195045Z-3fa2c81d09be4471",
            "images/web01/sub/20261205T195045Z-3fa2c81d09be4471",
            "images/20261205T195045Z-3fa2c81d09be4471",
        ] {
            assert!(parse_version_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn series_names_follow_section_1() {
        for good in ["web01", "a", "golden.v2", "A_b-c", &"n".repeat(MAX_SERIES)] {
            assert_eq!(check_series(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            ".x",
            "a/b",
            "a b",
            "x.iso",
            "x.Oimg",
            "é",
            &"n".repeat(MAX_SERIES + 1),
        ] {
            assert!(check_series(bad).is_err(), "{bad}");
        }
        assert!(check_version_selector("20261205T1950").is_ok());
        assert!(check_version_selector("").is_err());
        assert!(check_version_selector(&"a".repeat(65)).is_err());
    }

    #[test]
    fn hex_round_trips_lower_case_only() {
        assert_eq!(hex(&[0x00, 0x9f, 0xff]), "009fff");
        assert_eq!(from_hex::<3>("009fff"), Some([0x00, 0x9f, 0xff]));
        assert_eq!(from_hex::<3>("009FFF"), None);
        assert_eq!(from_hex::<3>("009ff"), None);
    }
}
