//! Decoding a container's manifest frame (FORMAT.md §4) straight from a local file, without
//! holding the frame: at 2 million entries it is 46 MB, 23 bytes an entry beside the decoded
//! manifest (issue #23, memory an entry).
//!
//! The frame is read twice. The first pass hashes it and refuses it before anything is
//! decoded, as `frame::decode_manifest` does with the frame in memory. The second decodes it
//! as it is read and hashes the same bytes again: a frame that changed between the passes
//! (another writer of the file) is refused, so what was decoded is always what was checked
//! (`restore --require-signature` checks the signature over the same file).

use std::io::Read;

use super::Container;
use crate::format::PayloadError;
use crate::format::frame::{check_body, decode_body, decode_manifest};
use crate::format::manifest::Manifest;
use crate::format::records::RECORD_LEN;

/// Bytes read from the file at a time by the first pass.
const READ_LEN: usize = 1 << 16;

impl Container {
    /// Reads, checks and decodes the manifest (FORMAT.md §4); returns it and its format
    /// version. A plain local file's frame is streamed from it twice (see the module); an
    /// encrypted frame, or one read over HTTP, is read whole once, as `manifest_bytes` gives
    /// it.
    pub fn read_manifest(&self) -> Result<(Manifest, u16), PayloadError> {
        let sealed = self.key.is_some() || self.manifest_cipher.is_some();
        if sealed || self.manifest.sealed.is_some() || self.manifest.file.is_none() {
            let frame = self.manifest_bytes()?;
            return decode_manifest(&frame).map_err(|e| e.at(&self.path));
        }
        let h = self.manifest_header()?;
        // The same checks as `manifest_bytes` then `decode_manifest`.
        let hashed = self.hash_frame()?;
        let body_len = self.manifest.len.saturating_sub(RECORD_LEN as u64);
        check_body(&h, body_len, &hashed).map_err(|e| e.at(&self.path))?;
        let mut body = FrameReader {
            container: self,
            at: RECORD_LEN as u64,
            hasher: blake3::Hasher::new(),
        };
        let decoded = decode_body(&h, &mut body).map_err(|e| e.at(&self.path))?;
        // The zstd frame may end before the body does: the rest is hashed too.
        std::io::copy(&mut body, &mut std::io::sink())
            .map_err(|e| PayloadError::io("cannot read the manifest of", &self.path, e))?;
        if *body.hasher.finalize().as_bytes() != hashed {
            return Err(self.damaged(
                "the manifest changed while it was read (the image is being written to)",
            ));
        }
        Ok(decoded)
    }

    /// The first pass: the whole frame's hash against the one a store version records.
    /// Returns the body's hash, for the frame header's.
    fn hash_frame(&self) -> Result<[u8; 32], PayloadError> {
        let mut frame = blake3::Hasher::new();
        let mut body = blake3::Hasher::new();
        let mut buf = vec![0u8; READ_LEN];
        let mut at = 0u64;
        while at < self.manifest.len {
            let n = (self.manifest.len - at).min(READ_LEN as u64) as usize;
            self.manifest
                .read_exact_at(&mut buf[..n], at)
                .map_err(|e| PayloadError::io("cannot read the manifest of", &self.path, e))?;
            frame.update(&buf[..n]);
            let head = RECORD_LEN.saturating_sub(at as usize).min(n);
            body.update(&buf[head..n]);
            at += n as u64;
        }
        if let Some(want) = self.frame_hash
            && *frame.finalize().as_bytes() != want
        {
            return Err(self.damaged(
                "the manifest does not match the hash its version records (damaged or altered)",
            ));
        }
        Ok(*body.finalize().as_bytes())
    }

    fn damaged(&self, msg: &str) -> PayloadError {
        PayloadError::Image {
            path: self.path.clone(),
            msg: msg.into(),
        }
    }
}

/// The frame's body read from the container in order, hashed as it is read.
struct FrameReader<'a> {
    container: &'a Container,
    at: u64,
    hasher: blake3::Hasher,
}

impl Read for FrameReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let span = &self.container.manifest;
        let n = span.len.saturating_sub(self.at).min(buf.len() as u64) as usize;
        span.read_exact_at(&mut buf[..n], self.at)?;
        self.hasher.update(&buf[..n]);
        self.at += n as u64;
        Ok(n)
    }
}
