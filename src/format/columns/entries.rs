//! Columns 7 to 22 of FORMAT.md §5.7 read into the entry table one column at a time: each is
//! taken from the stream, decoded into every entry and dropped before the next is read, so
//! at most the few columns one field needs are held beside the table (issue #23, memory an
//! entry: holding the sixteen side by side cost about 40 bytes an entry at the peak).
//! What a column may hold is checked exactly as when the entries were read row by row.

use super::read::{Stream, exact};
use super::write::data_end;
use super::{ATIME_DIFFERS, CTIME_DIFFERS, MAX_PATH_BYTES, NEXT_CHUNKS, NO_RUNS};
use crate::format::PayloadError;
use crate::format::columns::varint::Column;
use crate::format::manifest::{
    ChunkRecord, DataRun, Entries, EntryKind, EntryRow, Meta, Paths, RunChunks, Runs, Timestamp,
    Xattr,
};

/// The fewest bytes columns 8 to 22 take for one entry: two of a path, four of mtime
/// nanoseconds, one each of nine more. Checked against the body's stated length before the
/// table is allocated, as each column's own length is checked before it is decoded.
const LEAST_AN_ENTRY: u64 = 15;

/// Reads columns 7 to 22 from `s` into `n` entries; `chunks` (already decoded) bounds chunk
/// indexes and gives the data ends file sizes are coded against.
pub(super) fn read(
    n: u64,
    chunks: &[ChunkRecord],
    s: &mut Stream,
) -> Result<Entries, PayloadError> {
    let mut out = kinds(n, s)?;
    let paths = paths(out.len(), s)?;
    files(&mut out, &paths, chunks, s)?;
    links(&mut out, s)?;
    meta(&mut out, s)?;
    let held = s.next()?;
    each(&mut out, held.col(), 1, |c, e| {
        e.set_xattrs(xattrs(c)?);
        Ok(())
    })?;
    Ok(Entries::from_parts(paths, out))
}

/// Column 7: one byte an entry, which sizes the table; every field the later columns fill is
/// left empty.
fn kinds(n: u64, s: &mut Stream) -> Result<Vec<EntryRow>, PayloadError> {
    let held = s.next()?;
    let mut c = held.col();
    // One byte an entry: the table is never larger than the column that lists it.
    let n = c.room_for(n, 1, "entries")?;
    exact(&c, n, 1, "kinds")?;
    let need = n as u64 * LEAST_AN_ENTRY;
    if s.left() < need {
        return Err(c.bad(format!(
            "{n} entries need at least {need} bytes of the columns after it, {} are left",
            s.left()
        )));
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let kind = match c.byte()? {
            0 => EntryKind::Directory,
            1 => EntryKind::File {
                size: 0,
                runs: Runs::new(),
            },
            2 => EntryKind::Symlink { target: Vec::new() },
            3 => EntryKind::HardLink { target: 0 },
            4 => EntryKind::CharDevice { rdev: 0 },
            5 => EntryKind::BlockDevice { rdev: 0 },
            6 => EntryKind::Fifo,
            7 => EntryKind::Socket,
            x => return Err(c.bad(format!("entry {i}: unknown kind {x}"))),
        };
        out.push(EntryRow::new(kind, Meta::default(), Vec::new()));
    }
    c.finish()?;
    Ok(out)
}

/// Decodes one column into every entry with `f`, after checking it holds at least `least`
/// bytes an entry; the column must end where its last value does.
fn each(
    out: &mut [EntryRow],
    mut c: Column,
    least: u64,
    mut f: impl FnMut(&mut Column, &mut EntryRow) -> Result<(), PayloadError>,
) -> Result<(), PayloadError> {
    c.room_for(out.len() as u64, least, "entries")?;
    for e in out.iter_mut() {
        f(&mut c, e)?;
    }
    c.finish()
}

/// Column 8 for `n` entries: a prefix of the previous path, then new bytes.
fn paths(n: usize, s: &mut Stream) -> Result<Paths, PayloadError> {
    let held = s.next()?;
    let mut c = held.col();
    c.room_for(n as u64, 2, "entries")?;
    let mut out = Paths::with_capacity(n, 0);
    let mut total = 0u64;
    let mut path = Vec::new();
    for _ in 0..n {
        let shared = c.uv()?;
        if shared > path.len() as u64 {
            return Err(c.bad(format!(
                "a path shares {shared} bytes with a previous path of {}",
                path.len()
            )));
        }
        let rest = c.bytes("path bytes")?;
        total += shared + rest.len() as u64;
        if total > MAX_PATH_BYTES {
            return Err(c.bad("the paths add up to more than 4 GiB"));
        }
        path.truncate(shared as usize);
        path.extend_from_slice(rest);
        out.push(&path);
    }
    out.shrink_to_fit();
    c.finish()?;
    Ok(out)
}

/// Columns 9 and 10, held together: a file's size is coded against the end of its runs.
fn files(
    out: &mut [EntryRow],
    paths: &Paths,
    chunks: &[ChunkRecord],
    s: &mut Stream,
) -> Result<(), PayloadError> {
    let (sizes, runs) = (s.next()?, s.next()?);
    let (mut sizes, mut runs) = (sizes.col(), runs.col());
    let mut next = 0u64;
    for (i, e) in out.iter_mut().enumerate() {
        if e.file_size().is_some() {
            let r = file_runs(&mut runs, i, paths.get(i), chunks.len() as u64, &mut next)?;
            let size = sizes.sv64(data_end(&r, chunks))?;
            e.set_kind(EntryKind::File { size, runs: r });
        }
    }
    sizes.finish()?;
    runs.finish()
}

/// Column 10 for entry `i`: no runs, the short form, or runs in full. `next` is one more than
/// the highest chunk index named so far (FORMAT.md §5.7).
fn file_runs(
    c: &mut Column,
    i: usize,
    path: &[u8],
    n_chunks: u64,
    next: &mut u64,
) -> Result<Runs, PayloadError> {
    let h = c.uv()?;
    if h == NO_RUNS {
        return Ok(Runs::new());
    }
    if h == NEXT_CHUNKS {
        let k = c.uv()?;
        if k == 0 || k > n_chunks - *next {
            return Err(c.bad(format!(
                "entry {i} {:?}: {k} next chunks from chunk {} of {n_chunks}",
                String::from_utf8_lossy(path),
                *next,
            )));
        }
        let chunks = (*next..*next + k).map(|c| c as u32).collect();
        *next += k;
        return Ok(smallvec::smallvec![DataRun { offset: 0, chunks }]);
    }
    let n = c.room_for(h - 1, 3, "runs")?;
    let mut runs = Runs::with_capacity(n);
    let mut offset = 0u64;
    for _ in 0..n {
        offset = c.sv64(offset)?;
        let m = c.uv()?;
        if m == 0 {
            return Err(c.bad(format!("entry {i}: a run of no chunks")));
        }
        let m = c.room_for(m, 1, "chunk indexes")?;
        let mut chunks = RunChunks::with_capacity(m);
        let mut expect = *next as u32;
        for _ in 0..m {
            let k = c.sv32(expect)?;
            if k as u64 >= n_chunks {
                return Err(c.bad(format!(
                    "entry {i} {:?}: chunk {k} of {n_chunks} does not exist",
                    String::from_utf8_lossy(path),
                )));
            }
            chunks.push(k);
            expect = k + 1;
            *next = (*next).max(k as u64 + 1);
        }
        runs.push(DataRun { offset, chunks });
    }
    Ok(runs)
}

/// Column 11: symlink targets, hard link targets and device numbers.
fn links(out: &mut [EntryRow], s: &mut Stream) -> Result<(), PayloadError> {
    let held = s.next()?;
    let mut c = held.col();
    for e in out.iter_mut() {
        let kind = match e.kind() {
            EntryKind::Symlink { .. } => EntryKind::Symlink {
                target: c.bytes("symlink target bytes")?.to_vec(),
            },
            EntryKind::HardLink { .. } => EntryKind::HardLink { target: c.uv32()? },
            EntryKind::CharDevice { .. } => EntryKind::CharDevice { rdev: c.uv()? },
            EntryKind::BlockDevice { .. } => EntryKind::BlockDevice { rdev: c.uv()? },
            _ => continue,
        };
        e.set_kind(kind);
    }
    c.finish()
}

/// Columns 12 to 21, each delta-coded against the previous entry's value where FORMAT.md
/// §5.7 says so. The time flags are held until column 18, which they describe.
fn meta(out: &mut [EntryRow], s: &mut Stream) -> Result<(), PayloadError> {
    let held = s.next()?;
    each(out, held.col(), 1, |c, e| {
        let mode = c.uv32()?;
        e.update_meta(|m| m.mode = mode);
        Ok(())
    })?;
    let (held, mut prev) = (s.next()?, 0u32);
    each(out, held.col(), 1, |c, e| {
        prev = c.sv32(prev)?;
        e.update_meta(|m| m.uid = prev);
        Ok(())
    })?;
    let (held, mut prev) = (s.next()?, 0u32);
    each(out, held.col(), 1, |c, e| {
        prev = c.sv32(prev)?;
        e.update_meta(|m| m.gid = prev);
        Ok(())
    })?;
    let flags = s.next()?;
    let mut fc = flags.col();
    exact(&fc, out.len(), 1, "time flags")?;
    let (held, mut prev) = (s.next()?, 0u64);
    each(out, held.col(), 1, |c, e| {
        prev = c.sv64(prev)?;
        e.update_meta(|m| m.mtime.sec = prev as i64);
        Ok(())
    })?;
    let held = s.next()?;
    let c = held.col();
    exact(&c, out.len(), 4, "nanoseconds")?;
    each(out, c, 4, |c, e| {
        let nsec = c.u32le()?;
        e.update_meta(|m| m.mtime.nsec = nsec);
        Ok(())
    })?;
    let held = s.next()?;
    let mut c = held.col();
    for e in out.iter_mut() {
        let f = fc.byte()?;
        if f & !(ATIME_DIFFERS | CTIME_DIFFERS) != 0 {
            return Err(fc.bad(format!("unknown flags {f:#04x}")));
        }
        let mtime = e.meta().mtime;
        let mut other = |bit: u8| -> Result<Timestamp, PayloadError> {
            if f & bit == 0 {
                return Ok(mtime);
            }
            Ok(Timestamp {
                sec: c.sv64(mtime.sec as u64)? as i64,
                nsec: c.u32le()?,
            })
        };
        let (atime, ctime) = (other(ATIME_DIFFERS)?, other(CTIME_DIFFERS)?);
        e.update_meta(|m| (m.atime, m.ctime) = (atime, ctime));
    }
    fc.finish()?;
    c.finish()?;
    drop((held, flags));
    let (held, mut prev) = (s.next()?, 0u64);
    each(out, held.col(), 1, |c, e| {
        prev = c.sv64(prev)?;
        e.update_meta(|m| m.ino = prev);
        Ok(())
    })?;
    let held = s.next()?;
    each(out, held.col(), 1, |c, e| {
        let fs = c.uv32()?;
        e.update_meta(|m| m.fs = fs);
        Ok(())
    })?;
    let held = s.next()?;
    each(out, held.col(), 1, |c, e| {
        let nlink = c.uv32()?;
        e.update_meta(|m| m.nlink = nlink);
        Ok(())
    })
}

/// Column 22, one entry's: a count, then name and value pairs.
fn xattrs(c: &mut Column) -> Result<Vec<Xattr>, PayloadError> {
    let n = c.uv()?;
    let n = c.room_for(n, 2, "xattrs")?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(Xattr {
            name: c.bytes("xattr name bytes")?.to_vec(),
            value: c.bytes("xattr value bytes")?.to_vec(),
        });
    }
    Ok(out)
}
