//! The capture's record of each chunk's whole BLAKE3 beyond its id (the last 16 bytes, "the
//! rest"), by chunk index, where it is known: the chunk table compares it when a chunk's id is
//! found again, and refuses two different chunks with one id instead of merging them
//! (FORMAT.md §1).
//!
//! Held in memory this took 17 bytes a chunk, the largest part of capture's peak besides the
//! entries and the chunk records (issue #23, memory an entry). Only the newest `TAIL` rests
//! are kept in memory; the older ones go, in order, to an unnamed temporary file beside the
//! output (16 bytes a chunk at 16 × its index), and are read back only when an id is found
//! again. Whether a chunk's rest is known is one bit in memory. An encrypted capture names no
//! folder, and keeps them all in memory: its chunks' hashes are never written in the clear.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Rests kept in memory before they are written out together (1 MiB).
const TAIL: usize = 1 << 16;

/// The rests, by chunk index.
#[derive(Debug, Default)]
pub struct Rests {
    /// Bit `i`: chunk `i`'s rest is known.
    known: Vec<u64>,
    /// How many chunks are recorded.
    len: usize,
    /// Chunks before this index have their rests in `file`.
    spilled: usize,
    /// The rests of chunks `spilled..len` (zeros where not known).
    tail: Vec<[u8; 16]>,
    /// Where older rests go; `None`: all are kept in memory.
    file: Option<File>,
}

impl Rests {
    /// Rests spilled to an unnamed temporary file in `dir`, or all kept in memory when `dir`
    /// is `None` or no file can be made there (the capture does not depend on it).
    pub fn in_dir(dir: Option<&Path>) -> Self {
        Rests {
            file: dir.and_then(|d| tempfile::tempfile_in(d).ok()),
            ..Default::default()
        }
    }

    /// Records the next chunk's rest.
    pub fn push(&mut self, rest: Option<[u8; 16]>) -> std::io::Result<()> {
        let i = self.len;
        if i / 64 == self.known.len() {
            self.known.push(0);
        }
        if rest.is_some() {
            self.known[i / 64] |= 1 << (i % 64);
        }
        self.tail.push(rest.unwrap_or_default());
        self.len += 1;
        if let Some(f) = &self.file
            && self.tail.len() == TAIL
        {
            f.write_all_at(self.tail.as_flattened(), self.spilled as u64 * 16)?;
            self.spilled = self.len;
            self.tail.clear();
        }
        Ok(())
    }

    /// Chunk `i`'s rest, when it is known.
    pub fn get(&self, i: usize) -> std::io::Result<Option<[u8; 16]>> {
        let known = self
            .known
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0);
        if !known || i >= self.len {
            return Ok(None);
        }
        if let Some(rest) = i.checked_sub(self.spilled) {
            return Ok(Some(self.tail[rest]));
        }
        let mut rest = [0u8; 16];
        let file = self.file.as_ref().expect("spilled rests have a file");
        file.read_exact_at(&mut rest, i as u64 * 16)?;
        Ok(Some(rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rest(i: usize) -> Option<[u8; 16]> {
        (!i.is_multiple_of(3)).then(|| {
            let mut r = [0u8; 16];
            r[..8].copy_from_slice(&(i as u64).to_le_bytes());
            r[15] = 0xa5;
            r
        })
    }

    /// What is pushed comes back, from memory and from the file alike, unknown rests as
    /// `None`, and nothing past the end.
    #[test]
    fn rests_come_back_from_memory_and_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let n = 2 * TAIL + 100;
        for mut r in [Rests::in_dir(Some(dir.path())), Rests::in_dir(None)] {
            for i in 0..n {
                r.push(rest(i)).unwrap();
            }
            for i in (0..n)
                .step_by(7)
                .chain([0, TAIL - 1, TAIL, 2 * TAIL, n - 1])
            {
                assert_eq!(r.get(i).unwrap(), rest(i), "chunk {i}");
            }
            assert_eq!(r.get(n).unwrap(), None);
        }
        // The file is unnamed: nothing is left in the folder.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
