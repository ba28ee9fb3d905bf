//! Segment encryption of a pack or of the manifest (docs/FORMAT.md §11.3): the plaintext is cut
//! into 64 KiB segments, each sealed with ChaCha20-Poly1305 in the STREAM construction
//! (RustCrypto `aead::stream::StreamBE32`: a 4-byte big-endian segment counter and a last-segment
//! flag in the nonce), so any byte range can be decrypted on its own and truncation, reordering
//! or splicing of segments fails authentication.

use chacha20poly1305::aead::stream::{NewStream, StreamBE32, StreamPrimitive};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};

/// Plaintext bytes per segment.
pub const SEGMENT: u64 = 64 << 10;
/// Authentication tag appended to each segment.
pub const TAG: u64 = 16;

/// Which stream of an image a key is for (mixed into the key derivation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamId {
    Pack(u32),
    Manifest,
}

impl StreamId {
    fn code(self) -> u64 {
        match self {
            StreamId::Pack(i) => i as u64,
            StreamId::Manifest => 1 << 32,
        }
    }
}

/// The key of one stream, derived from the image's data key (FORMAT.md §11.3).
pub struct StreamCipher {
    stream: StreamBE32<ChaCha20Poly1305>,
    /// Associated data: the image id, so a stream cannot be moved to another image.
    ad: [u8; 16],
}

/// BLAKE3 `derive_key` context (FORMAT.md §11.3).
const KDF_CONTEXT: &str = "osimage 2026-11 encryption envelope v1 stream key";

impl StreamCipher {
    /// The cipher of stream `id` of image `image_id` under `data_key`.
    pub fn new(data_key: &[u8; 32], image_id: &[u8; 16], id: StreamId) -> Self {
        let mut material = [0u8; 32 + 16 + 8];
        material[..32].copy_from_slice(data_key);
        material[32..48].copy_from_slice(image_id);
        material[48..].copy_from_slice(&id.code().to_le_bytes());
        let key = blake3::derive_key(KDF_CONTEXT, &material);
        material.fill(0);
        Self::with_key(key, *image_id)
    }

    /// The cipher of a stream whose key was derived elsewhere (an encrypted store's objects,
    /// docs/STORE.md §6), with `ad` as every segment's associated data.
    pub fn with_key(mut key: [u8; 32], ad: [u8; 16]) -> Self {
        let aead = ChaCha20Poly1305::new((&key).into());
        key.fill(0);
        // Each stream has its own key, so a zero nonce prefix never repeats under a key.
        let stream = StreamBE32::from_aead(aead, &Default::default());
        StreamCipher { stream, ad }
    }

    /// Seals segment `n` in place (`buf` grows by the tag).
    pub fn seal(&self, n: u32, last: bool, buf: &mut Vec<u8>) -> Result<(), SealError> {
        self.stream
            .encrypt_in_place(n, last, &self.ad, buf)
            .map_err(|_| SealError)
    }

    /// Opens segment `n` in place (`buf` shrinks by the tag); fails when it was altered.
    pub fn open(&self, n: u32, last: bool, buf: &mut Vec<u8>) -> Result<(), SealError> {
        self.stream
            .decrypt_in_place(n, last, &self.ad, buf)
            .map_err(|_| SealError)
    }
}

/// A segment failed authentication (or could not be sealed).
#[derive(Debug)]
pub struct SealError;

/// Stored length of `plain` bytes: every segment carries a tag; an empty stream is one segment.
pub fn sealed_len(plain: u64) -> u64 {
    plain + TAG * segments(plain)
}

/// Number of segments of a `plain`-byte stream.
pub fn segments(plain: u64) -> u64 {
    plain.div_ceil(SEGMENT).max(1)
}

/// Plaintext length of a `stored`-byte stream, or None when no plaintext has that length.
pub fn plain_len(stored: u64) -> Option<u64> {
    let full = stored / (SEGMENT + TAG);
    let rest = stored % (SEGMENT + TAG);
    let plain = match rest {
        0 if full > 0 => full * SEGMENT,
        r if r >= TAG => full * SEGMENT + (r - TAG),
        _ => return None,
    };
    (sealed_len(plain) == stored).then_some(plain)
}

/// Encrypts a stream as it is written: feed plaintext, get sealed segments.
pub struct Sealer {
    cipher: std::sync::Arc<StreamCipher>,
    buf: Vec<u8>,
    next: u32,
}

impl Sealer {
    pub fn new(cipher: std::sync::Arc<StreamCipher>) -> Self {
        Sealer {
            cipher,
            buf: Vec::with_capacity(SEGMENT as usize + TAG as usize),
            next: 0,
        }
    }

    /// Takes `bytes`; calls `out` with each completed sealed segment.
    pub fn push(
        &mut self,
        mut bytes: &[u8],
        out: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        while !bytes.is_empty() {
            // A full segment is only sealed once more bytes follow: the last one is flagged.
            if self.buf.len() as u64 == SEGMENT {
                self.seal_current(false, out)?;
            }
            let room = SEGMENT as usize - self.buf.len();
            let take = room.min(bytes.len());
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        Ok(())
    }

    /// Seals the last segment.
    pub fn finish(
        mut self,
        out: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        self.seal_current(true, out)
    }

    fn seal_current(
        &mut self,
        last: bool,
        out: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        self.cipher
            .seal(self.next, last, &mut self.buf)
            .map_err(|_| std::io::Error::other("encryption failed"))?;
        out(&self.buf)?;
        self.buf.clear();
        self.next = self
            .next
            .checked_add(1)
            .ok_or_else(|| std::io::Error::other("stream too long to encrypt"))?;
        Ok(())
    }
}

/// Encrypts a whole buffer as one stream.
pub fn seal_all(cipher: std::sync::Arc<StreamCipher>, plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(sealed_len(plain.len() as u64) as usize);
    let mut s = Sealer::new(cipher);
    let mut sink = |b: &[u8]| {
        out.extend_from_slice(b);
        Ok(())
    };
    // Writing into a Vec cannot fail, and the counter cannot overflow for an in-memory buffer.
    let _ = s.push(plain, &mut sink);
    let _ = s.finish(&mut sink);
    out
}

/// Reads plaintext `buf.len()` bytes at plaintext offset `at` of a sealed stream whose stored
/// bytes `read_stored(offset, buf)` returns, `plain` bytes long in all.
pub fn read_at(
    cipher: &StreamCipher,
    plain: u64,
    buf: &mut [u8],
    at: u64,
    read_stored: &dyn Fn(&mut [u8], u64) -> std::io::Result<()>,
) -> std::io::Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    let last_seg = segments(plain) - 1;
    let first = at / SEGMENT;
    let end = at + buf.len() as u64;
    let mut seg_buf = Vec::with_capacity((SEGMENT + TAG) as usize);
    let mut done = 0usize;
    for n in first..=(end - 1) / SEGMENT {
        let seg_start = n * SEGMENT;
        let seg_plain = SEGMENT.min(plain - seg_start);
        seg_buf.resize((seg_plain + TAG) as usize, 0);
        read_stored(&mut seg_buf, n * (SEGMENT + TAG))?;
        let pos = u32::try_from(n).map_err(|_| std::io::Error::other("offset out of range"))?;
        cipher.open(pos, n == last_seg, &mut seg_buf).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("encrypted segment {n} fails authentication (damaged or altered)"),
            )
        })?;
        let from = (at.max(seg_start) - seg_start) as usize;
        let to = (end.min(seg_start + seg_plain) - seg_start) as usize;
        buf[done..done + to - from].copy_from_slice(&seg_buf[from..to]);
        done += to - from;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher(id: StreamId) -> std::sync::Arc<StreamCipher> {
        std::sync::Arc::new(StreamCipher::new(&[7; 32], &[1; 16], id))
    }

    #[test]
    fn lengths_round_trip() {
        for plain in [
            0,
            1,
            SEGMENT - 1,
            SEGMENT,
            SEGMENT + 1,
            3 * SEGMENT,
            1 << 30,
        ] {
            assert_eq!(plain_len(sealed_len(plain)), Some(plain), "{plain}");
        }
        assert_eq!(plain_len(5), None);
        assert_eq!(plain_len(SEGMENT + TAG + 3), None);
    }

    #[test]
    fn any_range_decrypts_and_damage_is_caught() {
        let plain: Vec<u8> = (0..(3 * SEGMENT + 100)).map(|i| (i % 251) as u8).collect();
        let mut stored = seal_all(cipher(StreamId::Pack(0)), &plain);
        assert_eq!(stored.len() as u64, sealed_len(plain.len() as u64));
        let c = cipher(StreamId::Pack(0));
        for (at, len) in [
            (0, 16),
            (SEGMENT - 3, 10),
            (5, 3 * SEGMENT + 95),
            (3 * SEGMENT, 100),
        ] {
            let mut buf = vec![0u8; len as usize];
            let src = stored.clone();
            read_at(&c, plain.len() as u64, &mut buf, at, &|b, o| {
                b.copy_from_slice(&src[o as usize..o as usize + b.len()]);
                Ok(())
            })
            .unwrap();
            assert_eq!(buf, plain[at as usize..(at + len) as usize]);
        }
        // Another stream's key (another pack) does not open it.
        let other = cipher(StreamId::Pack(1));
        let mut buf = [0u8; 4];
        let src = stored.clone();
        let read = |b: &mut [u8], o: u64| {
            b.copy_from_slice(&src[o as usize..o as usize + b.len()]);
            Ok(())
        };
        assert!(read_at(&other, plain.len() as u64, &mut buf, 0, &read).is_err());
        // One flipped bit in the second segment.
        stored[(SEGMENT + TAG + 9) as usize] ^= 1;
        let read = |b: &mut [u8], o: u64| {
            b.copy_from_slice(&stored[o as usize..o as usize + b.len()]);
            Ok(())
        };
        assert!(read_at(&c, plain.len() as u64, &mut buf, 0, &read).is_ok());
        let err = read_at(&c, plain.len() as u64, &mut buf, SEGMENT, &read).unwrap_err();
        assert!(err.to_string().contains("segment 1"), "{err}");
    }

    #[test]
    fn a_stream_cut_at_a_segment_boundary_is_refused() {
        let plain = vec![9u8; (2 * SEGMENT) as usize];
        let stored = seal_all(cipher(StreamId::Manifest), &plain);
        // Drop the last segment: the first one is not flagged last, so it does not open as last.
        let cut = &stored[..(SEGMENT + TAG) as usize];
        let mut buf = [0u8; 8];
        let read = |b: &mut [u8], o: u64| {
            b.copy_from_slice(&cut[o as usize..o as usize + b.len()]);
            Ok(())
        };
        assert!(read_at(&cipher(StreamId::Manifest), SEGMENT, &mut buf, 0, &read).is_err());
    }
}
