//! Reads the 22 columns of FORMAT.md §5.7 back into a `Manifest`. The body is hostile input:
//! every count is checked against the bytes of the column that must hold it before anything is
//! allocated, every column must end exactly where its last value does, and chunk indexes must
//! name a chunk. What else can be wrong (packs, blocks, hard links, paths, times) is left to
//! `format::validate`, which runs on the result as on a manifest of version 2.

use super::varint::Column;
use super::write::data_end;
use super::{ATIME_DIFFERS, COLUMNS, CTIME_DIFFERS, Head, MAX_PATH_BYTES, NEXT_CHUNKS, NO_RUNS};
use crate::format::PayloadError;
use crate::format::manifest::{
    BlockRecord, ChunkId, ChunkRecord, Codec, DataRun, Entry, EntryKind, Manifest, Meta, RunChunks,
    Runs, Timestamp, Xattr,
};

/// Decodes a manifest body of `version` 4 (16-byte chunk ids) or 3 (32-byte ids, cut to 16:
/// FORMAT.md §8), the decompressed bytes of the frame, held whole (tests, fuzzing).
pub fn decode(body: &[u8], version: u16) -> Result<Manifest, PayloadError> {
    decode_from(&mut &body[..], body.len() as u64, version)
}

/// Decodes a manifest body of `version` 4 or 3 from `r`, which must give exactly `raw_len`
/// bytes. The columns are read in their order and each is dropped once decoded, except the
/// entries' sixteen, which are read side by side: the chunk ids (16 bytes a chunk) and the
/// other tables are never held beside the entries (issue #23, memory an entry), and memory
/// grows with the bytes the stream gives, not with what a length claims.
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
    let mut body = Body { r, left: raw_len };
    let mut names = COLUMNS.into_iter();
    let mut next = || {
        let name = names.next().expect("22 columns are read");
        body.column(name).map(|bytes| (name, bytes))
    };
    let (name, bytes) = next()?;
    let mut counts = Column::new(name, &bytes);
    let (b, c, e) = (counts.uv()?, counts.uv()?, counts.uv()?);
    counts.finish()?;
    let (name, bytes) = next()?;
    let head = head(Column::new(name, &bytes))?;
    let ((n3, c3), (n4, c4)) = (next()?, next()?);
    let blocks = blocks(b, Column::new(n3, &c3), Column::new(n4, &c4))?;
    drop((c3, c4));
    let ((n5, c5), (n6, c6)) = (next()?, next()?);
    let chunks = chunks(c, Column::new(n5, &c5), Column::new(n6, &c6), id_len)?;
    drop((c5, c6));
    let mut held = Vec::with_capacity(16);
    for _ in 0..16 {
        held.push(next()?);
    }
    let mut cols = held.iter().map(|(name, bytes)| Column::new(name, bytes));
    let entries = Entries::new(
        e,
        &chunks,
        [(); 16].map(|_| cols.next().expect("16 columns")),
    )?
    .read()?;
    drop(held);
    body.finish()?;
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
fn exact(col: &Column, n: usize, each: usize, what: &str) -> Result<(), PayloadError> {
    if col.len() as u64 != n as u64 * each as u64 {
        return Err(col.bad(format!(
            "{} bytes for {n} {what} of {each} bytes",
            col.len()
        )));
    }
    Ok(())
}

/// Columns 7 to 22, read side by side, one entry at a time.
struct Entries<'a> {
    n: usize,
    /// The chunk table, decoded before the entries: its length bounds chunk indexes, its
    /// lengths are the base of file sizes.
    chunks: &'a [ChunkRecord],
    n_chunks: u64,
    kinds: Column<'a>,
    paths: Column<'a>,
    sizes: Column<'a>,
    runs: Column<'a>,
    links: Column<'a>,
    modes: Column<'a>,
    uids: Column<'a>,
    gids: Column<'a>,
    time_flags: Column<'a>,
    mtimes: Column<'a>,
    mtime_nsec: Column<'a>,
    other_times: Column<'a>,
    inodes: Column<'a>,
    filesystems: Column<'a>,
    nlinks: Column<'a>,
    xattrs: Column<'a>,
    /// One more than the highest chunk index named so far (FORMAT.md §5.7, `next`).
    next: u64,
    /// Bytes of the paths decoded so far.
    path_bytes: u64,
}

impl<'a> Entries<'a> {
    fn new(n: u64, chunks: &'a [ChunkRecord], c: [Column<'a>; 16]) -> Result<Self, PayloadError> {
        let [
            kinds,
            paths,
            sizes,
            runs,
            links,
            modes,
            uids,
            gids,
            time_flags,
            mtimes,
            mtime_nsec,
            other_times,
            inodes,
            filesystems,
            nlinks,
            xattrs,
        ] = c;
        // One byte an entry: the table is never larger than the column that lists it.
        let n = kinds.room_for(n, 1, "entries")?;
        exact(&kinds, n, 1, "kinds")?;
        exact(&time_flags, n, 1, "time flags")?;
        exact(&mtime_nsec, n, 4, "nanoseconds")?;
        // Every other column of an entry's own holds at least one byte an entry (paths two):
        // all are checked before the table is allocated (about 170 bytes an entry).
        paths.room_for(n as u64, 2, "entries")?;
        for c in [
            &modes,
            &uids,
            &gids,
            &mtimes,
            &inodes,
            &filesystems,
            &nlinks,
            &xattrs,
        ] {
            c.room_for(n as u64, 1, "entries")?;
        }
        Ok(Entries {
            n,
            chunks,
            n_chunks: chunks.len() as u64,
            kinds,
            paths,
            sizes,
            runs,
            links,
            modes,
            uids,
            gids,
            time_flags,
            mtimes,
            mtime_nsec,
            other_times,
            inodes,
            filesystems,
            nlinks,
            xattrs,
            next: 0,
            path_bytes: 0,
        })
    }

    fn read(mut self) -> Result<Vec<Entry>, PayloadError> {
        let mut out: Vec<Entry> = Vec::with_capacity(self.n);
        let mut prev_meta = Meta::default();
        for i in 0..self.n {
            let path = self.path(out.last().map_or(&[][..], |e| &e.path))?;
            let kind = self.kind(i, &path)?;
            let meta = self.meta(&prev_meta)?;
            let xattrs = self.xattrs()?;
            prev_meta = meta.clone();
            out.push(Entry {
                path,
                kind,
                meta,
                xattrs,
            });
        }
        for c in [
            self.kinds,
            self.paths,
            self.sizes,
            self.runs,
            self.links,
            self.modes,
            self.uids,
            self.gids,
            self.time_flags,
            self.mtimes,
            self.mtime_nsec,
            self.other_times,
            self.inodes,
            self.filesystems,
            self.nlinks,
            self.xattrs,
        ] {
            c.finish()?;
        }
        Ok(out)
    }

    /// Column 8: a prefix of the previous path, then new bytes.
    fn path(&mut self, prev: &[u8]) -> Result<Vec<u8>, PayloadError> {
        let shared = self.paths.uv()?;
        if shared > prev.len() as u64 {
            return Err(self.paths.bad(format!(
                "a path shares {shared} bytes with a previous path of {}",
                prev.len()
            )));
        }
        let rest = self.paths.bytes("path bytes")?;
        let len = shared + rest.len() as u64;
        self.path_bytes += len;
        if self.path_bytes > MAX_PATH_BYTES {
            return Err(self.paths.bad("the paths add up to more than 4 GiB"));
        }
        let mut path = Vec::with_capacity(len as usize);
        path.extend_from_slice(&prev[..shared as usize]);
        path.extend_from_slice(rest);
        Ok(path)
    }

    /// Columns 7, 9, 10 and 11.
    fn kind(&mut self, i: usize, path: &[u8]) -> Result<EntryKind, PayloadError> {
        Ok(match self.kinds.byte()? {
            0 => EntryKind::Directory,
            1 => {
                let runs = self.file_runs(i, path)?;
                let size = self.sizes.sv64(data_end(&runs, self.chunks))?;
                EntryKind::File { size, runs }
            }
            2 => EntryKind::Symlink {
                target: self.links.bytes("symlink target bytes")?.to_vec(),
            },
            3 => EntryKind::HardLink {
                target: self.links.uv32()?,
            },
            4 => EntryKind::CharDevice {
                rdev: self.links.uv()?,
            },
            5 => EntryKind::BlockDevice {
                rdev: self.links.uv()?,
            },
            6 => EntryKind::Fifo,
            7 => EntryKind::Socket,
            x => return Err(self.kinds.bad(format!("entry {i}: unknown kind {x}"))),
        })
    }

    /// Column 10: no runs, the short form, or runs in full.
    fn file_runs(&mut self, i: usize, path: &[u8]) -> Result<Runs, PayloadError> {
        let h = self.runs.uv()?;
        if h == NO_RUNS {
            return Ok(Runs::new());
        }
        if h == NEXT_CHUNKS {
            let k = self.runs.uv()?;
            if k == 0 || k > self.n_chunks - self.next {
                return Err(self.runs.bad(format!(
                    "entry {i} {:?}: {k} next chunks from chunk {} of {}",
                    String::from_utf8_lossy(path),
                    self.next,
                    self.n_chunks
                )));
            }
            let chunks = (self.next..self.next + k).map(|c| c as u32).collect();
            self.next += k;
            return Ok(smallvec::smallvec![DataRun { offset: 0, chunks }]);
        }
        let n = self.runs.room_for(h - 1, 3, "runs")?;
        let mut runs = Runs::with_capacity(n);
        let mut offset = 0u64;
        for _ in 0..n {
            offset = self.runs.sv64(offset)?;
            let m = self.runs.uv()?;
            if m == 0 {
                return Err(self.runs.bad(format!("entry {i}: a run of no chunks")));
            }
            let m = self.runs.room_for(m, 1, "chunk indexes")?;
            let mut chunks = RunChunks::with_capacity(m);
            let mut expect = self.next as u32;
            for _ in 0..m {
                let c = self.runs.sv32(expect)?;
                if c as u64 >= self.n_chunks {
                    return Err(self.runs.bad(format!(
                        "entry {i} {:?}: chunk {c} of {} does not exist",
                        String::from_utf8_lossy(path),
                        self.n_chunks
                    )));
                }
                chunks.push(c);
                expect = c + 1;
                self.next = self.next.max(c as u64 + 1);
            }
            runs.push(DataRun { offset, chunks });
        }
        Ok(runs)
    }

    /// Columns 12 to 21.
    fn meta(&mut self, prev: &Meta) -> Result<Meta, PayloadError> {
        let mode = self.modes.uv32()?;
        let uid = self.uids.sv32(prev.uid)?;
        let gid = self.gids.sv32(prev.gid)?;
        let flags = self.time_flags.byte()?;
        if flags & !(ATIME_DIFFERS | CTIME_DIFFERS) != 0 {
            return Err(self.time_flags.bad(format!("unknown flags {flags:#04x}")));
        }
        let mtime = Timestamp {
            sec: self.mtimes.sv64(prev.mtime.sec as u64)? as i64,
            nsec: self.mtime_nsec.u32le()?,
        };
        let mut other = |bit: u8| -> Result<Timestamp, PayloadError> {
            if flags & bit == 0 {
                return Ok(mtime);
            }
            Ok(Timestamp {
                sec: self.other_times.sv64(mtime.sec as u64)? as i64,
                nsec: self.other_times.u32le()?,
            })
        };
        let atime = other(ATIME_DIFFERS)?;
        let ctime = other(CTIME_DIFFERS)?;
        Ok(Meta {
            mode,
            uid,
            gid,
            atime,
            mtime,
            ctime,
            ino: self.inodes.sv64(prev.ino)?,
            fs: self.filesystems.uv32()?,
            nlink: self.nlinks.uv32()?,
        })
    }

    /// Column 22.
    fn xattrs(&mut self) -> Result<Vec<Xattr>, PayloadError> {
        let n = self.xattrs.uv()?;
        let n = self.xattrs.room_for(n, 2, "xattrs")?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(Xattr {
                name: self.xattrs.bytes("xattr name bytes")?.to_vec(),
                value: self.xattrs.bytes("xattr value bytes")?.to_vec(),
            });
        }
        Ok(out)
    }
}
