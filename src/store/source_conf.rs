//! `source.conf` (docs/STORE.md §9.1): how a machine booted by `osimage netboot
//! s3://B/P/NAME` reads one version of a store with no credentials. It names the version
//! object and every pack the version's manifest lists, each by a URL (presigned for a
//! limited time, or plain) and its length, and pins the version by the hash of its manifest
//! frame: a version object replaced in the store is refused, and so is a pack list that is
//! not the manifest's. It is JSON, written by `netboot` into the initramfs it serves and read
//! back by the restore agent, which trusts nothing in it before these checks.

use serde::{Deserialize, Serialize};

use super::names;

/// The one layout of `source.conf` this osimage writes and reads.
pub const SOURCE_CONF_VERSION: u32 = 1;

/// The largest `source.conf` read (§9.1): ~600 bytes a pack with presigned URLs, so room
/// for ~25,000 packs (800 GiB of 32 MiB packs).
pub const MAX_SOURCE_CONF: u64 = 16 << 20;

/// The longest URL taken from it: presigned URLs with a session token are ~1.5 KB.
const MAX_URL: usize = 8 << 10;

/// What a network-booted machine restores, and where it reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConf {
    /// [`SOURCE_CONF_VERSION`].
    pub version: u32,
    /// The store id, 32 hex digits: every pack's header carries it (§2.3).
    pub store_id: String,
    pub series: String,
    /// The version string (§2.5).
    pub version_name: String,
    /// The image id, 32 hex digits (FORMAT.md §5.1).
    pub image_id: String,
    /// When presigned URLs stop working (RFC 3339, UTC); `None` for plain URLs.
    pub expires: Option<String>,
    /// The version object: its head and manifest frame.
    pub object: ConfObject,
    /// Every pack the manifest names, in manifest order.
    pub packs: Vec<ConfPack>,
    /// An encrypted store's version: its key set (§6.1), an age file in standard base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<String>,
}

/// The version object of a [`SourceConf`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfObject {
    pub url: String,
    pub len: u64,
    /// BLAKE3 of the stored manifest frame, 64 hex digits (the head's `frame_hash`).
    pub frame_hash: String,
}

/// One pack of a [`SourceConf`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfPack {
    /// The pack id, 64 hex digits: the manifest's pack hash.
    pub id: String,
    pub url: String,
    pub len: u64,
}

impl SourceConf {
    /// The JSON that `netboot` writes.
    pub fn to_json(&self) -> Vec<u8> {
        let mut text = serde_json::to_vec_pretty(self).unwrap_or_default();
        text.push(b'\n');
        text
    }

    /// Parses and checks `bytes` (`shown` in messages): the version, every hex field, every
    /// URL (http or https, bounded, printable), at least one pack and no more than
    /// [`MAX_SOURCE_CONF`] bytes.
    pub fn parse(shown: &str, bytes: &[u8]) -> Result<SourceConf, String> {
        if bytes.len() as u64 > MAX_SOURCE_CONF {
            return Err(format!(
                "{shown}: {} bytes, more than the {} MiB a source.conf may have",
                bytes.len(),
                MAX_SOURCE_CONF >> 20
            ));
        }
        let conf: SourceConf = serde_json::from_slice(bytes)
            .map_err(|e| format!("{shown}: not a source.conf osimage netboot writes: {e}"))?;
        conf.check().map_err(|e| format!("{shown}: {e}"))?;
        Ok(conf)
    }

    fn check(&self) -> Result<(), String> {
        if self.version != SOURCE_CONF_VERSION {
            return Err(format!(
                "layout version {} (this osimage reads version {SOURCE_CONF_VERSION}: make \
                 the netboot files with the osimage that restores)",
                self.version
            ));
        }
        hex_bytes::<16>("store_id", &self.store_id)?;
        hex_bytes::<16>("image_id", &self.image_id)?;
        hex_bytes::<32>("object.frame_hash", &self.object.frame_hash)?;
        names::check_series(&self.series).map_err(|e| format!("series: {e}"))?;
        names::parse_version(&self.version_name)
            .ok_or_else(|| format!("version_name {:?} is not a version", self.version_name))?;
        check_url("object.url", &self.object.url)?;
        if self.packs.is_empty() {
            return Err("it names no pack".into());
        }
        for (i, p) in self.packs.iter().enumerate() {
            hex_bytes::<32>(&format!("packs[{i}].id"), &p.id)?;
            check_url(&format!("packs[{i}].url"), &p.url)?;
        }
        self.wrapped_keys()?;
        Ok(())
    }

    /// The key set's age file (§6.1), when the store is encrypted.
    pub fn wrapped_keys(&self) -> Result<Option<Vec<u8>>, String> {
        use base64::Engine as _;
        let Some(text) = &self.keys else {
            return Ok(None);
        };
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(Some)
            .map_err(|e| format!("keys: not base64: {e}"))
    }

    /// The version object's frame hash, checked by `parse`.
    pub fn frame_hash(&self) -> Result<[u8; 32], String> {
        hex_bytes::<32>("object.frame_hash", &self.object.frame_hash)
    }

    /// The store id, checked by `parse`.
    pub fn store_id(&self) -> Result<[u8; 16], String> {
        hex_bytes::<16>("store_id", &self.store_id)
    }

    /// How messages name the version: `SERIES@VERSION of store ID`.
    pub fn shown(&self) -> String {
        format!(
            "{}@{} (store {})",
            self.series, self.version_name, self.store_id
        )
    }
}

/// `text` as N bytes of lower-case hex digits, or an error naming `field`.
fn hex_bytes<const N: usize>(field: &str, text: &str) -> Result<[u8; N], String> {
    names::from_hex::<N>(text)
        .ok_or_else(|| format!("{field} {text:?} is not {} hex digits", 2 * N))
}

fn check_url(field: &str, url: &str) -> Result<(), String> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(format!(
            "{field} {} is not an http:// or https:// URL",
            crate::remote::redact(url)
        ));
    }
    if url.len() > MAX_URL {
        return Err(format!(
            "{field} is {} bytes long, more than the {MAX_URL} a URL may have",
            url.len()
        ));
    }
    if url.chars().any(|c| c.is_ascii_control() || c == ' ') {
        return Err(format!("{field} holds a space or a control character"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SourceConf {
        SourceConf {
            version: 1,
            store_id: "00112233445566778899aabbccddeeff".into(),
            series: "web01".into(),
            version_name: "20261206T170000Z-0011223344556677".into(),
            image_id: "0011223344556677aabbccddeeff0011".into(),
            expires: Some("2026-12-07T17:00:00Z".into()),
            object: ConfObject {
                url: "http://10.0.2.100:3900/b/p/images/web01/v?X-Amz-Signature=ab".into(),
                len: 4096,
                frame_hash: "ab".repeat(32),
            },
            packs: vec![ConfPack {
                id: "cd".repeat(32),
                url: "http://10.0.2.100:3900/b/p/packs/cd/cdcd".into(),
                len: 1 << 20,
            }],
            keys: None,
        }
    }

    #[test]
    fn a_written_conf_reads_back_the_same() {
        let c = sample();
        assert!(
            names::parse_version(&c.version_name).is_some(),
            "the sample's version string must be one"
        );
        let back = SourceConf::parse("source.conf", &c.to_json()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.frame_hash().unwrap(), [0xab; 32]);
        assert_eq!(back.store_id().unwrap()[..2], [0x00, 0x11]);
    }

    #[test]
    fn every_bad_field_is_named() {
        type Spoil = Box<dyn Fn(&mut SourceConf)>;
        let cases: Vec<(Spoil, &str)> = vec![
            (Box::new(|c| c.version = 2), "layout version 2"),
            (Box::new(|c| c.store_id = "xyz".into()), "store_id"),
            (Box::new(|c| c.image_id.push('0')), "image_id"),
            (
                Box::new(|c| c.object.frame_hash = "zz".repeat(32)),
                "object.frame_hash",
            ),
            (Box::new(|c| c.series = "../x".into()), "series"),
            (
                Box::new(|c| c.version_name = "latest".into()),
                "version_name",
            ),
            (
                Box::new(|c| c.object.url = "ftp://h/x".into()),
                "object.url",
            ),
            (Box::new(|c| c.packs.clear()), "no pack"),
            (
                Box::new(|c| c.packs[0].url = format!("http://h/{}", "a".repeat(9000))),
                "packs[0].url is 9009 bytes",
            ),
            (
                Box::new(|c| c.packs[0].url = "http://h/a b".into()),
                "packs[0].url holds a space",
            ),
            (Box::new(|c| c.packs[0].id = "00".into()), "packs[0].id"),
        ];
        for (spoil, want) in cases {
            let mut c = sample();
            spoil(&mut c);
            let e = SourceConf::parse("/osimage/source.conf", &c.to_json()).unwrap_err();
            assert!(
                e.starts_with("/osimage/source.conf: ") && e.contains(want),
                "{want}: {e}"
            );
        }
    }

    #[test]
    fn what_is_not_a_source_conf_is_refused() {
        for bytes in [&b""[..], b"{}", b"[1,2]", b"{\"version\":1,\"extra\":true}"] {
            let e = SourceConf::parse("s.conf", bytes).unwrap_err();
            assert!(e.contains("not a source.conf"), "{e}");
        }
        let big = vec![b' '; (MAX_SOURCE_CONF + 1) as usize];
        assert!(
            SourceConf::parse("s.conf", &big)
                .unwrap_err()
                .contains("more than the 16 MiB")
        );
    }
}
