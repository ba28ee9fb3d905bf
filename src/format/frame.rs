//! The manifest frame: bincode body, zstd, BLAKE3, behind a 64-byte header (FORMAT.md §4).
//!
//! Encoding lives here alone, so the serialization crate could be swapped behind it.

use super::PayloadError;
use super::manifest::Manifest;
use super::records::{FrameHeader, MAX_MANIFEST_STORED, RECORD_LEN};

/// zstd level for the manifest. Its bulk (chunk ids, hashes) does not compress: on the e2e
/// system 2.37 MB became 1.276 MB at level 3 in 11 ms and 1.237 MB at level 9 in 85 ms.
const MANIFEST_LEVEL: i32 = 3;

/// bincode's standard configuration (FORMAT.md §5), with a decode limit: a hostile length
/// cannot make the decoder allocate more than the manifest's declared size.
fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes `m` as a complete frame (header + body).
pub fn encode_manifest(m: &Manifest) -> Result<Vec<u8>, PayloadError> {
    let raw = bincode::serde::encode_to_vec(m, config())
        .map_err(|e| PayloadError::format(format!("encoding the manifest: {e}")))?;
    let body = zstd::bulk::compress(&raw, MANIFEST_LEVEL)
        .map_err(|e| PayloadError::format(format!("compressing the manifest: {e}")))?;
    if body.len() as u64 > MAX_MANIFEST_STORED {
        return Err(PayloadError::format(
            "manifest larger than 1 GiB: too many entries",
        ));
    }
    let header = FrameHeader {
        version: crate::format::manifest::FORMAT_VERSION,
        sealed: false,
        stored_len: body.len() as u64,
        raw_len: raw.len() as u64,
        hash: *blake3::hash(&body).as_bytes(),
    };
    let mut out = Vec::with_capacity(RECORD_LEN + body.len());
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Reads the frame header at the start of `bytes`.
pub fn decode_frame_header(bytes: &[u8]) -> Result<FrameHeader, PayloadError> {
    let head: &[u8; RECORD_LEN] = bytes
        .get(..RECORD_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| PayloadError::format("manifest frame truncated"))?;
    FrameHeader::decode(head)
}

/// Decodes a complete frame: header checks, hash check, bounded decompression and decoding
/// (of format version 1 or 2); returns the manifest and its format version.
pub fn decode_manifest(frame: &[u8]) -> Result<(Manifest, u16), PayloadError> {
    let h = decode_frame_header(frame)?;
    if h.sealed {
        return Err(PayloadError::format(
            "the manifest is encrypted but the image has no key record (damaged or altered)",
        ));
    }
    let body = &frame[RECORD_LEN..];
    if body.len() as u64 != h.stored_len {
        return Err(PayloadError::format(format!(
            "manifest truncated: {} of {} bytes",
            body.len(),
            h.stored_len
        )));
    }
    if blake3::hash(body).as_bytes() != &h.hash {
        return Err(PayloadError::format(
            "manifest checksum mismatch (damaged image)",
        ));
    }
    // Streamed, so memory grows with the bytes actually produced, never with what the header
    // claims (fuzzing found a 3 GB allocation from a 500-byte frame with bulk decompression).
    let mut raw = Vec::with_capacity((h.raw_len as usize).min(64 << 20));
    zstd::stream::read::Decoder::new(body)
        .and_then(|d| {
            std::io::Read::read_to_end(&mut std::io::Read::take(d, h.raw_len + 1), &mut raw)
        })
        .map_err(|e| PayloadError::format(format!("manifest does not decompress: {e}")))?;
    if raw.len() as u64 != h.raw_len {
        return Err(PayloadError::format(
            "manifest has the wrong decoded length",
        ));
    }
    let cfg = config().with_limit::<{ 4 << 30 }>();
    let bad = |e| PayloadError::format(format!("manifest does not decode: {e}"));
    let (m, used): (Manifest, usize) = if h.version == 1 {
        let (m, used): (super::manifest::v1::Manifest, usize) =
            bincode::serde::decode_from_slice(&raw, cfg).map_err(bad)?;
        (m.into(), used)
    } else {
        bincode::serde::decode_from_slice(&raw, cfg).map_err(bad)?
    };
    if used != raw.len() {
        return Err(PayloadError::format("manifest has trailing bytes"));
    }
    Ok((m, h.version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::manifest::FORMAT_VERSION;

    #[test]
    fn manifest_round_trips_and_damage_is_caught() {
        let mut m = Manifest::default();
        m.image.hostname = "host".into();
        let mut f = encode_manifest(&m).unwrap();
        assert_eq!(decode_manifest(&f).unwrap(), (m, FORMAT_VERSION));
        let last = f.len() - 1;
        f[last] ^= 0xff;
        assert!(
            decode_manifest(&f)
                .unwrap_err()
                .to_string()
                .contains("checksum")
        );
        assert!(decode_manifest(&f[..10]).is_err());
    }
}
