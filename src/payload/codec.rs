//! Block compression: zstd on our own threads, or raw when it does not pay (FORMAT.md §2).

use crate::format::PayloadError;
use crate::format::manifest::Codec;
use crate::format::records::MAX_BLOCK_RAW;

/// Compresses blocks; one per worker thread (a zstd context is not shared).
pub struct BlockCompressor {
    zstd: zstd::bulk::Compressor<'static>,
    out: Vec<u8>,
}

impl BlockCompressor {
    pub fn new(level: i32) -> Result<Self, PayloadError> {
        let zstd = zstd::bulk::Compressor::new(level)
            .map_err(|e| PayloadError::format(format!("zstd level {level}: {e}")))?;
        Ok(BlockCompressor {
            zstd,
            out: Vec::new(),
        })
    }

    /// Compresses `raw`; returns the codec chosen and the bytes to store. Data that does not
    /// shrink by at least 1/32 is stored raw, so reading it back costs nothing.
    pub fn compress<'a>(&'a mut self, raw: &'a [u8]) -> Result<(Codec, &'a [u8]), PayloadError> {
        let bound = zstd::zstd_safe::compress_bound(raw.len());
        self.out.clear();
        self.out.reserve(bound);
        self.zstd
            .compress_to_buffer(raw, &mut self.out)
            .map_err(|e| PayloadError::format(format!("zstd compression failed: {e}")))?;
        if self.out.len() + raw.len() / 32 >= raw.len() {
            Ok((Codec::Raw, raw))
        } else {
            Ok((Codec::Zstd, &self.out))
        }
    }
}

/// Decompresses blocks; one per reader thread.
pub struct BlockDecompressor {
    zstd: zstd::bulk::Decompressor<'static>,
}

impl BlockDecompressor {
    pub fn new() -> Result<Self, PayloadError> {
        let zstd = zstd::bulk::Decompressor::new()
            .map_err(|e| PayloadError::format(format!("zstd: {e}")))?;
        Ok(BlockDecompressor { zstd })
    }

    /// Decodes a stored body into `out`, which must come out exactly `raw_len` long.
    pub fn decompress(
        &mut self,
        codec: Codec,
        stored: &[u8],
        raw_len: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), PayloadError> {
        if raw_len > MAX_BLOCK_RAW {
            return Err(PayloadError::format(format!(
                "block claims {raw_len} bytes"
            )));
        }
        out.clear();
        match codec {
            Codec::Raw => out.extend_from_slice(stored),
            Codec::Zstd => {
                out.reserve(raw_len as usize);
                self.zstd
                    .decompress_to_buffer(stored, out)
                    .map_err(|e| PayloadError::format(format!("damaged block: zstd says {e}")))?;
            }
        }
        if out.len() != raw_len as usize {
            return Err(PayloadError::format(format!(
                "damaged block: {} bytes decoded, {raw_len} expected",
                out.len()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressible_and_incompressible_round_trip() {
        let mut c = BlockCompressor::new(3).unwrap();
        let mut d = BlockDecompressor::new().unwrap();
        let text = b"osimage ".repeat(10_000);
        let (codec, stored) = c.compress(&text).unwrap();
        assert_eq!(codec, Codec::Zstd);
        let stored = stored.to_vec();
        let mut out = Vec::new();
        d.decompress(codec, &stored, text.len() as u32, &mut out)
            .unwrap();
        assert_eq!(out, text);

        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..100_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        let (codec, _) = c.compress(&noise).unwrap();
        assert_eq!(codec, Codec::Raw);
    }

    #[test]
    fn damaged_bodies_are_errors_not_panics() {
        let mut d = BlockDecompressor::new().unwrap();
        let mut out = Vec::new();
        assert!(
            d.decompress(Codec::Zstd, b"garbage", 100, &mut out)
                .is_err()
        );
        assert!(d.decompress(Codec::Raw, b"short", 100, &mut out).is_err());
        assert!(d.decompress(Codec::Raw, b"x", u32::MAX, &mut out).is_err());
    }
}
