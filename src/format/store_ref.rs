//! Extension `store`, version 1 (docs/FORMAT.md §14): the image's packs are store packs
//! (FORMAT.md §3, version 3) of the store this record names, shared with other images of it.
//! Required: a reader that does not know it would judge the packs by the rules of an image's
//! own packs.

use serde::{Deserialize, Serialize};

use super::PayloadError;
use super::manifest::{Extension, Manifest};
use super::records::PackHeader;

/// The extension's name in `Manifest::extensions`.
pub const NAME: &str = "store";
/// The version this build writes and reads.
pub const VERSION: u16 = 1;
/// Longest `data` a reader accepts.
const MAX_LEN: usize = 4 << 10;
/// Longest `series` or `version`, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// Which store an image's packs belong to, and which version of which series it is there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreRef {
    /// The store's id: every pack header's id field holds it.
    pub store_id: [u8; 16],
    /// The image series (a NAME in the store, docs/STORE.md "Terms").
    pub series: String,
    /// This image's version in the series.
    pub version: String,
}

impl StoreRef {
    /// Encodes the record as the manifest's required extension, after checking it as a
    /// reader will: a writer never makes an image its own reader refuses.
    pub fn to_extension(&self) -> Result<Extension, PayloadError> {
        self.check()?;
        let data = bincode::serde::encode_to_vec(self, bincode::config::standard())
            .map_err(|e| PayloadError::format(format!("the store record does not encode: {e}")))?;
        if data.len() > MAX_LEN {
            return Err(PayloadError::format("the store record is too long"));
        }
        Ok(Extension {
            name: NAME.into(),
            version: VERSION,
            required: true,
            data,
        })
    }

    /// FORMAT.md §14: names that are shown and become parts of object names.
    fn check(&self) -> Result<(), PayloadError> {
        for (what, name) in [("series", &self.series), ("version", &self.version)] {
            let why = if name.is_empty() {
                "is empty"
            } else if name.len() > MAX_NAME_LEN {
                "is longer than 255 bytes"
            } else if name.chars().any(char::is_control) {
                "holds a control character"
            } else {
                continue;
            };
            return Err(PayloadError::format(format!(
                "the store record's {what} {name:?} {why}"
            )));
        }
        Ok(())
    }
}

/// The store record of `m`, checked; `None` for an image whose packs are its own. The data is
/// hostile input: bounded, decoded with that limit, every byte used, its names checked.
/// `format::validate` runs it when an image is opened; the payload reader, which knows the
/// manifest's version, refuses it in a manifest of version 1.
pub fn from_manifest(m: &Manifest) -> Result<Option<StoreRef>, PayloadError> {
    let r = m.decode_extension::<StoreRef, MAX_LEN>(NAME, VERSION, "the store record")?;
    if let Some(r) = &r {
        r.check()?;
    }
    Ok(r)
}

/// FORMAT.md §3: whether `header`, read from the pack at `position` of the manifest's pack
/// list, is the form that manifest calls for: with a store record (`store`), a store pack of
/// that store; without one, the image's own pack at that position (`image_id`: the
/// manifest's). The error says what the pack is instead; the caller names the pack.
pub fn check_pack_owner(
    header: &PackHeader,
    position: u32,
    image_id: &[u8; 16],
    store: Option<&StoreRef>,
) -> Result<(), PayloadError> {
    let why = match (header, store) {
        (
            PackHeader::Image {
                index,
                image_id: id,
            },
            None,
        ) => {
            if *index == position && id == image_id {
                return Ok(());
            }
            "belongs to another image or position"
        }
        (PackHeader::Store { store_id, .. }, Some(s)) => {
            if *store_id == s.store_id {
                return Ok(());
            }
            "is a pack of another store (its store id is not the one the image names)"
        }
        (PackHeader::Store { .. }, None) => {
            "is a store pack, but the image names no store (no `store` extension)"
        }
        (PackHeader::Image { .. }, Some(_)) => {
            "is an image's own pack, but the image's packs belong to a store (extension `store`)"
        }
    };
    Err(PayloadError::format(why))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> StoreRef {
        StoreRef {
            store_id: [7; 16],
            series: "web01".into(),
            version: "2026-12-06T0940Z".into(),
        }
    }

    fn manifest_with(ext: Extension) -> Manifest {
        Manifest {
            extensions: vec![ext],
            ..Manifest::default()
        }
    }

    fn refusal(m: &Manifest) -> String {
        from_manifest(m).map_or_else(|e| e.to_string(), |r| format!("accepted {r:?}"))
    }

    #[test]
    fn the_record_round_trips_as_a_required_extension() {
        let ext = record().to_extension().unwrap();
        assert_eq!(
            (ext.name.as_str(), ext.version, ext.required),
            ("store", 1, true)
        );
        // bincode standard: 16 id bytes, then each string as a varint length and its bytes
        assert_eq!(&ext.data[..16], &[7; 16]);
        assert_eq!(&ext.data[16..22], b"\x05web01");
        assert_eq!(from_manifest(&manifest_with(ext)).unwrap(), Some(record()));
        assert_eq!(from_manifest(&Manifest::default()).unwrap(), None);
    }

    #[test]
    fn names_a_reader_refuses_are_not_written() {
        let long = "x".repeat(256);
        for (series, version, want) in [
            ("", "1", "series \"\" is empty"),
            ("web01", "", "version \"\" is empty"),
            (long.as_str(), "1", "longer than 255 bytes"),
            ("web\n01", "1", "holds a control character"),
            ("web01", "1\u{7f}", "holds a control character"),
        ] {
            let r = StoreRef {
                series: series.into(),
                version: version.into(),
                ..record()
            };
            let e = r.to_extension().unwrap_err().to_string();
            assert!(e.contains(want), "{series:?} {version:?}: {e}");
        }
        let r = StoreRef {
            series: "x".repeat(255),
            ..record()
        };
        r.to_extension().unwrap();
    }

    #[test]
    fn damaged_or_hostile_records_are_refused() {
        let good = record().to_extension().unwrap();
        let with = |f: &dyn Fn(&mut Extension)| {
            let mut x = good.clone();
            f(&mut x);
            refusal(&manifest_with(x))
        };
        assert!(with(&|x| x.version = 2).contains("has version 2"));
        assert!(with(&|x| x.data.push(0)).contains("trailing bytes"));
        assert!(with(&|x| x.data.truncate(20)).contains("damaged"));
        assert!(with(&|x| x.data.resize(4097, 0)).contains("too long"));
        // A series claiming 4 GiB is refused by the byte limit, not allocated.
        assert!(
            with(&|x| {
                x.data.truncate(16);
                x.data.extend_from_slice(&[252, 0, 0, 0, 0xFF]);
            })
            .contains("damaged")
        );
        // Names a writer would not make, decoded from hand-made bytes.
        let bad = StoreRef {
            series: String::new(),
            ..record()
        };
        let data = bincode::serde::encode_to_vec(&bad, bincode::config::standard()).unwrap();
        assert!(with(&|x| x.data = data.clone()).contains("series \"\" is empty"));
    }

    #[test]
    fn each_pack_must_have_the_form_the_manifest_calls_for() {
        let r = record();
        let own = PackHeader::Image {
            index: 2,
            image_id: [1; 16],
        };
        let shared = PackHeader::Store {
            store_id: r.store_id,
            salt: [9; 16],
        };
        let check = |h: &PackHeader, s: Option<&StoreRef>| {
            check_pack_owner(h, 2, &[1; 16], s).map_or_else(|e| e.to_string(), |()| "ok".into())
        };
        assert_eq!(check(&own, None), "ok");
        assert_eq!(check(&shared, Some(&r)), "ok");
        assert!(check(&shared, None).contains("is a store pack, but the image names no store"));
        assert!(check(&own, Some(&r)).contains("is an image's own pack"));
        let other = StoreRef {
            store_id: [8; 16],
            ..record()
        };
        assert!(check(&shared, Some(&other)).contains("a pack of another store"));
        let moved = check_pack_owner(&own, 3, &[1; 16], None).unwrap_err();
        assert!(moved.to_string().contains("another image or position"));
        let foreign = check_pack_owner(&own, 2, &[5; 16], None).unwrap_err();
        assert!(foreign.to_string().contains("another image or position"));
    }
}
