//! Reads the 22 columns of FORMAT.md §5.7 back into a `Manifest`. The body is hostile input:
//! every count is checked against the bytes of the column that must hold it before anything is
//! allocated, every column must end exactly where its last value does, and chunk indexes must
//! name a chunk. What else can be wrong (packs, blocks, hard links, paths, times) is left to
//! `format::validate`, which runs on the result as on a manifest of version 2.

use super::varint::Column;
use super::{COLUMNS, Head};
use crate::format::PayloadError;
use crate::format::manifest::{BlockRecord, ChunkId, ChunkRecord, Codec, Manifest};

/// Decodes a manifest body of `version` 4 (16-byte chunk ids) or 3 (32-byte ids, cut to 16:
/// FORMAT.md §8), the decompressed bytes of the frame, held whole (tests, fuzzing).
pub fn decode(body: &[u8], version: u16) -> Result<Manifest, PayloadError> {
    decode_from(&mut &body[..], body.len() as u64, version)
}

/// Decodes a manifest body of `version` 4 or 3 from `r`, which must give exactly `raw_len`
/// bytes. The columns are read in their order and each is dropped once decoded (the entries'
/// into the entry table one at a time, `columns::entries`): the chunk ids (16 bytes a chunk)
/// and the other columns are never held beside the entries (issue #23, memory an entry), and
/// memory grows with the bytes the stream gives, not with what a length claims.
pub fn decode_from(
    r: &mut dyn std::io::Read,
    raw_len: u64,
    version: u16,
) -> Result<Manifest, PayloadError> {
    let id_len = match version {
        super::VERSION => 16,
        super::VERSION_32 => 32,
        v => {
            return Err(PayloadError::format(format!(
                "internal: manifest version {v} is not a column encoding"
            )));
        }
    };
    let mut s = Stream {
        body: Body { r, left: raw_len },
        names: COLUMNS.into_iter(),
    };
    let counts_col = s.next()?;
    let mut counts = counts_col.col();
    let (b, c, e) = (counts.uv()?, counts.uv()?, counts.uv()?);
    counts.finish()?;
    let head = head(s.next()?.col())?;
    let (c3, c4) = (s.next()?, s.next()?);
    let blocks = blocks(b, c3.col(), c4.col())?;
    drop((c3, c4));
    let (c5, c6) = (s.next()?, s.next()?);
    let chunks = chunks(c, c5.col(), c6.col(), id_len)?;
    drop((c5, c6));
    let entries = super::entries::read(e, &chunks, &mut s)?;
    s.body.finish()?;
    Ok(Manifest {
        image: head.image,
        packs: head.packs,
        blocks,
        chunks,
        entries,
        users: head.users,
        groups: head.groups,
        filesystems: head.filesystems,
        stats: head.stats,
        extensions: head.extensions,
    })
}

/// The body's columns, taken one at a time in FORMAT.md §5.7's order.
pub(super) struct Stream<'r> {
    body: Body<'r>,
    names: std::array::IntoIter<&'static str, 22>,
}

impl Stream<'_> {
    /// The next column, read whole.
    pub(super) fn next(&mut self) -> Result<Held, PayloadError> {
        let name = self.names.next().expect("22 columns are read");
        let bytes = self.body.column(name)?;
        Ok(Held { name, bytes })
    }

    /// Bytes of the body's stated length not read yet.
    pub(super) fn left(&self) -> u64 {
        self.body.left
    }
}

/// One column's bytes with its name.
pub(super) struct Held {
    name: &'static str,
    bytes: Vec<u8>,
}

impl Held {
    pub(super) fn col(&self) -> Column<'_> {
        Column::new(self.name, &self.bytes)
    }
}

/// The body as a stream of columns: each a `uv` length then its bytes, nothing after the last,
/// `left` bytes of the stated decoded length still to come.
struct Body<'r> {
    r: &'r mut dyn std::io::Read,
    left: u64,
}

impl Body<'_> {
    fn short() -> PayloadError {
        PayloadError::format("manifest has the wrong decoded length")
    }

    fn io(e: std::io::Error) -> PayloadError {
        PayloadError::format(format!("manifest does not decompress: {e}"))
    }

    /// The next column's bytes, read only as far as the stream gives them.
    fn column(&mut self, name: &'static str) -> Result<Vec<u8>, PayloadError> {
        use std::io::Read as _;
        let ends = || {
            PayloadError::format(format!(
                "manifest does not decode: the body ends before column {name}"
            ))
        };
        let mut len_bytes = Vec::with_capacity(10);
        loop {
            if self.left == 0 || len_bytes.len() == 10 {
                return Err(ends());
            }
            let mut b = [0u8];
            self.r.read_exact(&mut b).map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => Self::short(),
                _ => Self::io(e),
            })?;
            self.left -= 1;
            len_bytes.push(b[0]);
            if b[0] & 0x80 == 0 {
                break;
            }
        }
        let len = Column::new("lengths", &len_bytes)
            .uv()
            .map_err(|_| ends())?;
        if len > self.left {
            return Err(PayloadError::format(format!(
                "manifest does not decode: column {name} claims {len} bytes, {} are left",
                self.left
            )));
        }
        let mut bytes = Vec::new();
        (&mut self.r)
            .take(len)
            .read_to_end(&mut bytes)
            .map_err(Self::io)?;
        if bytes.len() as u64 != len {
            return Err(Self::short());
        }
        self.left -= len;
        Ok(bytes)
    }

    /// Nothing after the last column, and the stream ends where the stated length does.
    fn finish(self) -> Result<(), PayloadError> {
        if self.left != 0 {
            return Err(PayloadError::format(format!(
                "manifest does not decode: {} bytes after the last column",
                self.left
            )));
        }
        let mut b = [0u8];
        match self.r.read(&mut b).map_err(Self::io)? {
            0 => Ok(()),
            _ => Err(Self::short()),
        }
    }
}

/// Column 2: bincode, limited to the column, every byte used.
fn head(col: Column) -> Result<Head, PayloadError> {
    let bytes = col.all();
    let cfg = bincode::config::standard().with_limit::<{ 4 << 30 }>();
    let (head, used): (Head, usize) =
        bincode::serde::decode_from_slice(bytes, cfg).map_err(|e| col_err(1, format!("{e}")))?;
    if used != bytes.len() {
        return Err(col_err(
            1,
            format!("{} bytes left over", bytes.len() - used),
        ));
    }
    Ok(head)
}

fn col_err(i: usize, msg: String) -> PayloadError {
    PayloadError::format(format!(
        "manifest does not decode: column {}: {msg}",
        COLUMNS[i]
    ))
}

/// Columns 3 and 4: the block table.
fn blocks(n: u64, mut col: Column, mut hashes: Column) -> Result<Vec<BlockRecord>, PayloadError> {
    let n = col.room_for(n, 5, "blocks")?;
    exact(&hashes, n, 32, "block hashes")?;
    let mut out = Vec::with_capacity(n);
    let (mut pack, mut end) = (0u32, 64u64);
    for _ in 0..n {
        let p = col.sv32(pack)?;
        let offset = col.sv64(if p == pack { end } else { 64 })?;
        let b = BlockRecord {
            pack: p,
            offset,
            stored_len: col.uv32()?,
            raw_len: col.uv32()?,
            codec: match col.byte()? {
                0 => Codec::Raw,
                1 => Codec::Zstd,
                x => return Err(col.bad(format!("unknown codec {x}"))),
            },
            hash: hashes.take(32)?.try_into().expect("32 bytes"),
        };
        pack = b.pack;
        end = super::write::block_end(&b);
        out.push(b);
    }
    col.finish()?;
    hashes.finish()?;
    Ok(out)
}

/// Columns 5 and 6: the chunk table, whose ids take `id_len` bytes each (16, or 32 in
/// version 3, of which the first 16 are kept).
fn chunks(
    n: u64,
    mut col: Column,
    mut ids: Column,
    id_len: usize,
) -> Result<Vec<ChunkRecord>, PayloadError> {
    let n = col.room_for(n, 3, "chunks")?;
    exact(&ids, n, id_len, "chunk ids")?;
    let mut out = Vec::with_capacity(n);
    let (mut block, mut end) = (0u32, 0u32);
    for _ in 0..n {
        let b = col.sv32(block)?;
        let offset = col.sv32(if b == block { end } else { 0 })?;
        let len = col.uv32()?;
        out.push(ChunkRecord {
            id: ChunkId(ids.take(id_len)?[..16].try_into().expect("16 bytes")),
            block: b,
            offset,
            len,
        });
        block = b;
        end = offset.wrapping_add(len);
    }
    col.finish()?;
    ids.finish()?;
    Ok(out)
}

/// FORMAT.md §5.7: a column of fixed-size values is exactly `n` of them long.
pub(super) fn exact(col: &Column, n: usize, each: usize, what: &str) -> Result<(), PayloadError> {
    if col.len() as u64 != n as u64 * each as u64 {
        return Err(col.bad(format!(
            "{} bytes for {n} {what} of {each} bytes",
            col.len()
        )));
    }
    Ok(())
}
