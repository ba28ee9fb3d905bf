//! The manifest frame: the encoded manifest, zstd, BLAKE3, behind a 64-byte header
//! (FORMAT.md §4). New frames hold manifest version 4 (the columns of `format::columns`,
//! §5.7, with 16-byte chunk ids); frames of version 3 (the same columns with 32-byte ids) and
//! of versions 1 and 2 (bincode) are still read, their ids cut to 16 bytes.

use std::io::Write;

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

/// Encodes `m` as a complete frame (header + body) of manifest version 4, held whole (an
/// encrypted image seals it so; a plain `.oimg` streams it with [`write_manifest`]).
pub fn encode_manifest(m: &Manifest) -> Result<Vec<u8>, PayloadError> {
    // The header's place first; the body is compressed behind it.
    let mut out = vec![0u8; RECORD_LEN];
    let header = write_manifest(m, &mut out)?;
    out[..RECORD_LEN].copy_from_slice(&header.encode());
    Ok(out)
}

/// Compresses `m`'s encoding (manifest version 4) into `out` and returns the header of the
/// frame it is the body of (its length and hash known only now, so the caller writes it in
/// front: FORMAT.md §4). The columns are streamed into the zstd encoder and its output into
/// `out`: neither the encoding nor the compressed body is held whole (issue #23).
pub fn write_manifest(m: &Manifest, out: &mut dyn Write) -> Result<FrameHeader, PayloadError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        PayloadError::format(format!("{what} the manifest: {e}"))
    };
    let body = Hashing {
        inner: out,
        hasher: blake3::Hasher::new(),
        count: 0,
    };
    let zstd = zstd::stream::write::Encoder::new(body, MANIFEST_LEVEL)
        .map_err(|e| failed("compressing", &e))?;
    let mut raw = Counting::new(std::io::BufWriter::with_capacity(1 << 16, zstd));
    super::columns::encode(m, &mut raw)?;
    let raw_len = raw.count;
    let body = raw
        .inner
        .into_inner()
        .map_err(|e| failed("compressing", &e.into_error()))?
        .finish()
        .map_err(|e| failed("compressing", &e))?;
    if body.count > MAX_MANIFEST_STORED {
        return Err(PayloadError::format(
            "manifest larger than 1 GiB: too many entries",
        ));
    }
    Ok(FrameHeader {
        version: crate::format::manifest::MANIFEST_VERSION,
        sealed: false,
        stored_len: body.count,
        raw_len,
        hash: *body.hasher.finalize().as_bytes(),
    })
}

/// A writer that hashes and counts the bytes through it: the frame's body.
struct Hashing<'a> {
    inner: &'a mut dyn Write,
    hasher: blake3::Hasher,
    count: u64,
}

impl Write for Hashing<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Decompresses a body of version 3 or 4, at most `raw_len` bytes of it (memory grows with the
/// bytes actually produced, not with the header's claim), and decodes its columns (FORMAT.md
/// §5.7).
fn decode_columns(
    mut zstd: impl std::io::Read,
    raw_len: u64,
    version: u16,
) -> Result<Manifest, PayloadError> {
    super::columns::decode_from(&mut zstd, raw_len, version)
}

/// A reader or writer that counts the bytes through it.
struct Counting<T> {
    inner: T,
    count: u64,
}

impl<T> Counting<T> {
    fn new(inner: T) -> Self {
        Counting { inner, count: 0 }
    }
}

impl<W: std::io::Write> std::io::Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<R: std::io::Read> std::io::Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
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
/// (of manifest version 1 to 4); returns the manifest and its format version.
pub fn decode_manifest(frame: &[u8]) -> Result<(Manifest, u16), PayloadError> {
    let h = decode_frame_header(frame)?;
    let body = &frame[RECORD_LEN..];
    check_body(&h, body.len() as u64, blake3::hash(body).as_bytes())?;
    decode_body(&h, body)
}

/// The checks of a plain frame's body before it is decoded, in this order: not sealed (an
/// image without a key record), `len` bytes as the header says, `hash` the header's. Shared
/// by [`decode_manifest`] and the streamed read of a local file (`image::manifest`).
pub fn check_body(h: &FrameHeader, len: u64, hash: &[u8; 32]) -> Result<(), PayloadError> {
    if h.sealed {
        return Err(PayloadError::format(
            "the manifest is encrypted but the image has no key record (damaged or altered)",
        ));
    }
    if len != h.stored_len {
        return Err(PayloadError::format(format!(
            "manifest truncated: {len} of {} bytes",
            h.stored_len
        )));
    }
    if hash != &h.hash {
        return Err(PayloadError::format(
            "manifest checksum mismatch (damaged image)",
        ));
    }
    Ok(())
}

/// Decodes the body of the frame `h` heads, read from `body` (its `stored_len` bytes, whose
/// hash the caller has checked against `h`, or checks after; FORMAT.md §4): bounded
/// decompression and decoding of manifest version 1 to 4. Returns the manifest and its
/// format version. `body` may be left with bytes unread (past the zstd frame).
pub fn decode_body(
    h: &FrameHeader,
    body: impl std::io::Read,
) -> Result<(Manifest, u16), PayloadError> {
    // Streamed, so memory grows with the bytes actually produced, never with what the header
    // claims (fuzzing found a 3 GB allocation from a 500-byte frame with bulk decompression).
    // Decompressed and decoded as a stream (the decoded bytes are never held whole), at
    // most raw_len + 1 bytes of it: a bomb stops there.
    let zstd = zstd::stream::read::Decoder::new(body)
        .map_err(|e| PayloadError::format(format!("manifest does not decompress: {e}")))?;
    if h.version >= super::columns::VERSION_32 {
        return Ok((decode_columns(zstd, h.raw_len, h.version)?, h.version));
    }
    let counted = Counting::new(std::io::Read::take(zstd, h.raw_len + 1));
    let mut raw = std::io::BufReader::with_capacity(1 << 16, counted);
    let cfg = config().with_limit::<{ 4 << 30 }>();
    let bad = |e: bincode::error::DecodeError| match e {
        bincode::error::DecodeError::Io { inner, .. }
            if inner.kind() != std::io::ErrorKind::UnexpectedEof =>
        {
            PayloadError::format(format!("manifest does not decompress: {inner}"))
        }
        e => PayloadError::format(format!("manifest does not decode: {e}")),
    };
    use super::manifest::legacy;
    let m: Manifest = if h.version == 1 {
        let m: legacy::V1 = bincode::serde::decode_from_std_read(&mut raw, cfg).map_err(bad)?;
        m.into()
    } else {
        let m: legacy::V2 = bincode::serde::decode_from_std_read(&mut raw, cfg).map_err(bad)?;
        m.into()
    };
    let mut rest = [0u8; 1];
    let trailing = std::io::Read::read(&mut raw, &mut rest)
        .map_err(|e| PayloadError::format(format!("manifest does not decompress: {e}")))?;
    if trailing != 0 {
        return Err(PayloadError::format("manifest has trailing bytes"));
    }
    if raw.get_ref().count != h.raw_len {
        return Err(PayloadError::format(
            "manifest has the wrong decoded length",
        ));
    }
    Ok((m, h.version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::manifest::MANIFEST_VERSION;

    #[test]
    fn manifest_round_trips_and_damage_is_caught() {
        let mut m = Manifest::default();
        m.image.hostname = "host".into();
        let mut f = encode_manifest(&m).unwrap();
        assert_eq!(decode_manifest(&f).unwrap(), (m, MANIFEST_VERSION));
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

    /// FORMAT.md §8: a bincode frame of version 2 holds 32-byte ids, read as their first 16.
    #[test]
    fn a_version_2_manifest_reads_with_its_ids_cut_to_16_bytes() {
        use crate::format::manifest::{ChunkId, ChunkRecord, legacy};
        let mut m = Manifest::default();
        m.image.hostname = "host".into();
        m.chunks = (1..4u8)
            .map(|n| ChunkRecord {
                id: ChunkId([n; 16]),
                block: 0,
                offset: u32::from(n) * 10,
                len: 10,
            })
            .collect();
        let raw = bincode::serde::encode_to_vec(legacy::V2::of(&m, [0xee; 16]), config()).unwrap();
        let short = bincode::serde::encode_to_vec(&m, config()).unwrap();
        assert_eq!(raw.len(), short.len() + 16 * 3, "32 bytes an id, not 16");
        let body = zstd::encode_all(&raw[..], 3).unwrap();
        let header = FrameHeader {
            version: 2,
            sealed: false,
            stored_len: body.len() as u64,
            raw_len: raw.len() as u64,
            hash: *blake3::hash(&body).as_bytes(),
        };
        let frame = [&header.encode()[..], &body].concat();
        assert_eq!(decode_manifest(&frame).unwrap(), (m, 2));
    }
}
