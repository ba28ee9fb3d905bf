//! System Use Sharing Protocol (SUSP 1.12) and Rock Ridge (RRIP 1.10, "RRIP_1991A") entries:
//! what a directory record carries in its system use field (ECMA-119 9.1.13) so that readers
//! see POSIX names, modes, times and symlinks. Entries that do not fit in the 255-byte record go
//! to a continuation area (SUSP 5.1 `CE`), chained when one sector is not enough.

use super::records::{Lba, SECTOR, put_u32_both};

/// Rock Ridge identification for the `ER` entry (RRIP 1.10, 4.3).
const ER_ID: &[u8] = b"RRIP_1991A";
const ER_DES: &[u8] =
    b"THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS";
const ER_SRC: &[u8] = b"PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.";

/// Length of a `CE` entry (SUSP 5.1).
pub const CE_LEN: usize = 28;
/// Largest payload of one SUSP entry: the length byte covers the 4-byte header too.
const MAX_ENTRY: usize = 255;

pub const S_IFDIR: u32 = 0o040_000;
pub const S_IFREG: u32 = 0o100_000;
pub const S_IFLNK: u32 = 0o120_000;

fn entry(sig: &[u8; 2], body: &[u8]) -> Vec<u8> {
    let mut e = Vec::with_capacity(4 + body.len());
    e.extend_from_slice(sig);
    e.push((4 + body.len()) as u8);
    e.push(1); // entry version
    e.extend_from_slice(body);
    e
}

/// SUSP 5.3 `SP`: [4..6] check bytes BE EF, [6] bytes skipped (0). First entry of the root ".".
pub fn sp() -> Vec<u8> {
    entry(b"SP", &[0xBE, 0xEF, 0])
}

/// SUSP 5.5 `ER`: [4] LEN_ID [5] LEN_DES [6] LEN_SRC [7] EXT_VER, then the three strings.
pub fn er() -> Vec<u8> {
    let mut body = vec![ER_ID.len() as u8, ER_DES.len() as u8, ER_SRC.len() as u8, 1];
    body.extend_from_slice(ER_ID);
    body.extend_from_slice(ER_DES);
    body.extend_from_slice(ER_SRC);
    entry(b"ER", &body)
}

/// RRIP 4.1.1 `PX` (36 bytes, 1.10): [4..12] mode, [12..20] links, [20..28] uid, [28..36] gid,
/// each both-byte-order.
pub fn px(mode: u32, nlink: u32) -> Vec<u8> {
    let mut body = [0u8; 32];
    put_u32_both(&mut body[0..8], mode);
    put_u32_both(&mut body[8..16], nlink);
    entry(b"PX", &body)
}

/// RRIP 4.1.6 `TF`: [4] flags (0x02 modify, 0x04 access, 0x08 attributes), then one 7-byte
/// date per flag in that order. We record the one time we have in all three.
pub fn tf(mtime: i64) -> Vec<u8> {
    let d = super::records::RecordDate(mtime).encode();
    let mut body = vec![0x0E];
    for _ in 0..3 {
        body.extend_from_slice(&d);
    }
    entry(b"TF", &body)
}

/// RRIP 4.1.4 `NM`: [4] flags (0x01 CONTINUE), [5..] name bytes. Names longer than one entry
/// are split over several, all but the last flagged CONTINUE.
pub fn nm(name: &[u8]) -> Vec<Vec<u8>> {
    let room = MAX_ENTRY - 5;
    let chunks: Vec<&[u8]> = name.chunks(room).collect();
    let n = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let mut body = vec![u8::from(i + 1 < n)];
            body.extend_from_slice(c);
            entry(b"NM", &body)
        })
        .collect()
}

/// RRIP 4.1.3 `SL`: [4] flags (0x01 CONTINUE), then component records
/// ([0] flags 0x01 CONTINUE / 0x02 CURRENT / 0x04 PARENT / 0x08 ROOT, [1] length, content).
pub fn sl(target: &str) -> Vec<Vec<u8>> {
    let mut comps: Vec<(u8, &[u8])> = Vec::new();
    if target.starts_with('/') {
        comps.push((0x08, b""));
    }
    for part in target.split('/').filter(|p| !p.is_empty()) {
        match part {
            "." => comps.push((0x02, b"")),
            ".." => comps.push((0x04, b"")),
            _ => {
                // a component longer than an entry continues in the next component record
                let pieces: Vec<&[u8]> = part.as_bytes().chunks(MAX_ENTRY - 7).collect();
                let n = pieces.len();
                for (i, p) in pieces.into_iter().enumerate() {
                    comps.push((u8::from(i + 1 < n), p));
                }
            }
        }
    }
    let mut bodies: Vec<Vec<u8>> = vec![vec![0]];
    for (flags, content) in comps {
        let rec_len = 2 + content.len();
        if 4 + bodies.last().map_or(0, Vec::len) + rec_len > MAX_ENTRY {
            if let Some(b) = bodies.last_mut() {
                b[0] = 0x01; // this SL entry continues in the next one
            }
            bodies.push(vec![0]);
        }
        if let Some(b) = bodies.last_mut() {
            b.push(flags);
            b.push(content.len() as u8);
            b.extend_from_slice(content);
        }
    }
    bodies.iter().map(|b| entry(b"SL", b)).collect()
}

/// Where a node's SUSP entries go: some in its directory record, the rest in a chain of
/// continuation chunks (indexes into [`CeArea::chunks`]).
#[derive(Debug, Clone, Default)]
pub struct SuspLayout {
    pub in_record: Vec<Vec<u8>>,
    pub continuation: Option<usize>,
}

/// One continuation chunk: its byte offset in the continuation area, its entries and the
/// chunk it continues in, if any.
#[derive(Debug, Clone)]
pub struct CeChunk {
    pub offset: usize,
    pub entries: Vec<Vec<u8>>,
    pub next: Option<usize>,
}

impl CeChunk {
    fn len(&self) -> usize {
        self.entries.iter().map(Vec::len).sum::<usize>()
            + if self.next.is_some() { CE_LEN } else { 0 }
    }
}

/// The continuation area: chunks packed so that none crosses a sector boundary.
#[derive(Debug, Clone, Default)]
pub struct CeArea {
    pub chunks: Vec<CeChunk>,
    pub len: usize,
}

impl CeArea {
    /// Splits `entries` into what fits in `room` bytes of a directory record and the rest.
    pub fn place(&mut self, entries: Vec<Vec<u8>>, room: usize) -> SuspLayout {
        let total: usize = entries.iter().map(Vec::len).sum();
        if total <= room {
            return SuspLayout {
                in_record: entries,
                continuation: None,
            };
        }
        let mut rest = entries.into_iter().peekable();
        let in_record = take_fitting(&mut rest, room.saturating_sub(CE_LEN));
        let first = self.chunks.len();
        while rest.peek().is_some() {
            let entries = take_fitting(&mut rest, SECTOR - CE_LEN);
            let more = rest.peek().is_some();
            let idx = self.chunks.len();
            let mut chunk = CeChunk {
                offset: 0,
                entries,
                next: more.then_some(idx + 1),
            };
            let len = chunk.len();
            if self.len % SECTOR + len > SECTOR {
                self.len = self.len.next_multiple_of(SECTOR);
            }
            chunk.offset = self.len;
            self.len += len;
            self.chunks.push(chunk);
        }
        SuspLayout {
            in_record,
            continuation: Some(first),
        }
    }

    /// Encodes a `CE` entry pointing at chunk `idx` of an area starting at `base`.
    fn ce_entry(&self, idx: usize, base: Lba) -> Vec<u8> {
        let c = &self.chunks[idx];
        let mut body = [0u8; 24];
        put_u32_both(&mut body[0..8], base.0 + (c.offset / SECTOR) as u32); // block
        put_u32_both(&mut body[8..16], (c.offset % SECTOR) as u32); // offset
        put_u32_both(&mut body[16..24], c.len() as u32); // length
        entry(b"CE", &body)
    }

    /// The system use bytes of a directory record.
    pub fn encode_record(&self, l: &SuspLayout, base: Lba) -> Vec<u8> {
        let mut out: Vec<u8> = l.in_record.concat();
        if let Some(idx) = l.continuation {
            out.extend(self.ce_entry(idx, base));
        }
        out
    }

    /// The whole area, padded to whole sectors.
    pub fn encode(&self, base: Lba) -> Vec<u8> {
        let mut out = vec![0u8; self.len.next_multiple_of(SECTOR)];
        for c in &self.chunks {
            let mut bytes = c.entries.concat();
            if let Some(next) = c.next {
                bytes.extend(self.ce_entry(next, base));
            }
            out[c.offset..c.offset + bytes.len()].copy_from_slice(&bytes);
        }
        out
    }

    pub fn sectors(&self) -> u32 {
        self.len.div_ceil(SECTOR) as u32
    }
}

fn take_fitting(
    it: &mut std::iter::Peekable<std::vec::IntoIter<Vec<u8>>>,
    room: usize,
) -> Vec<Vec<u8>> {
    let mut used = 0;
    let mut out = Vec::new();
    while let Some(e) = it.peek() {
        if used + e.len() > room {
            break;
        }
        used += e.len();
        out.extend(it.next());
    }
    out
}

/// What a reader learns from a record's SUSP entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RrInfo {
    pub name: Option<Vec<u8>>,
    pub mode: Option<u32>,
    pub symlink: Option<String>,
    pub mtime: Option<i64>,
    /// Pending continuation area: (block, offset, length).
    pub continuation: Option<(u32, u32, u32)>,
    /// Set while an `SL` component is split over records.
    sl_continue: bool,
}

impl RrInfo {
    /// Parses SUSP entries from `b` (hostile bytes), accumulating into `self`. Sets
    /// `continuation` if a `CE` entry is found; the caller reads it and calls again.
    pub fn parse(&mut self, b: &[u8]) {
        self.continuation = None;
        let mut at = 0;
        while at + 4 <= b.len() {
            let sig = [b[at], b[at + 1]];
            let len = usize::from(b[at + 2]);
            if len < 4 || at + len > b.len() {
                break;
            }
            let body = &b[at + 4..at + len];
            match &sig {
                b"ST" => break,
                b"NM" if !body.is_empty() && body[0] & 0x06 == 0 => {
                    self.name
                        .get_or_insert_with(Vec::new)
                        .extend_from_slice(&body[1..]);
                }
                b"PX" if body.len() >= 4 => {
                    self.mode = Some(u32::from_le_bytes([body[0], body[1], body[2], body[3]]));
                }
                b"TF" if !body.is_empty() => self.parse_tf(body),
                b"SL" if !body.is_empty() => self.parse_sl(&body[1..]),
                b"CE" if body.len() >= 24 => {
                    let f = |o: usize| {
                        u32::from_le_bytes([body[o], body[o + 1], body[o + 2], body[o + 3]])
                    };
                    self.continuation = Some((f(0), f(8), f(16)));
                }
                _ => {}
            }
            at += len;
        }
    }

    fn parse_tf(&mut self, body: &[u8]) {
        let flags = body[0];
        if flags & 0x80 != 0 {
            return; // 17-byte long form: we never write it; ignore
        }
        // dates in flag order: creation (0x01), then modify (0x02)
        let idx = usize::from(flags & 0x01 != 0);
        if flags & 0x02 != 0 {
            let at = 1 + 7 * idx;
            if let Some(d) = body
                .get(at..at + 7)
                .and_then(|d| <&[u8; 7]>::try_from(d).ok())
            {
                self.mtime = super::records::RecordDate::decode(d).map(|d| d.0);
            }
        }
    }

    fn parse_sl(&mut self, mut comps: &[u8]) {
        let target = self.symlink.get_or_insert_with(String::new);
        while comps.len() >= 2 {
            let (flags, len) = (comps[0], usize::from(comps[1]));
            let Some(content) = comps.get(2..2 + len) else {
                break;
            };
            if !target.is_empty() && !self.sl_continue && !target.ends_with('/') {
                target.push('/');
            }
            match flags & 0x0E {
                0x02 => target.push('.'),
                0x04 => target.push_str(".."),
                0x08 => {
                    target.clear();
                    target.push('/');
                }
                _ => target.push_str(&String::from_utf8_lossy(content)),
            }
            self.sl_continue = flags & 0x01 != 0;
            comps = &comps[2 + len..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(entries: &[Vec<u8>]) -> RrInfo {
        let mut i = RrInfo::default();
        i.parse(&entries.concat());
        i
    }

    #[test]
    fn entry_layouts_follow_the_spec() {
        assert_eq!(sp(), [b'S', b'P', 7, 1, 0xBE, 0xEF, 0]);
        let p = px(0o100_644, 1);
        assert_eq!(p.len(), 36);
        assert_eq!(&p[4..12], &[0xA4, 0x81, 0, 0, 0, 0, 0x81, 0xA4]);
        assert_eq!(&p[12..16], &1u32.to_le_bytes());
        let t = tf(0);
        assert_eq!((t.len(), t[4]), (26, 0x0E));
        let e = er();
        assert_eq!((e[4], e[5], e[6], e[7]), (10, 84, 135, 1));
        assert_eq!(e.len(), 8 + 10 + 84 + 135);
    }

    #[test]
    fn long_names_and_links_round_trip() {
        let name = "n".repeat(255);
        let n = nm(name.as_bytes());
        assert_eq!(n.len(), 2);
        assert!(n.iter().all(|e| e.len() <= 255));
        assert_eq!(n[0][4], 1);
        assert_eq!(parse_all(&n).name.as_deref(), Some(name.as_bytes()));
        for target in [
            "/usr/lib/x",
            "../a/./b",
            "rel",
            &"x".repeat(300),
            &format!("/{}/{}", "a".repeat(200), "b".repeat(250)),
        ] {
            let s = sl(target);
            assert!(s.iter().all(|e| e.len() <= 255));
            assert_eq!(parse_all(&s).symlink.as_deref(), Some(target), "{target}");
        }
    }

    #[test]
    fn overflow_goes_to_chained_continuation_chunks() {
        let mut area = CeArea::default();
        let mut entries = vec![px(0o644, 1), tf(5)];
        entries.extend(nm(&[b'a'; 255]));
        entries.extend(sl(&"d/".repeat(2000)));
        let l = area.place(entries.clone(), 150);
        assert!(l.in_record.iter().map(Vec::len).sum::<usize>() + CE_LEN <= 150);
        assert!(area.chunks.len() >= 2);
        for c in &area.chunks {
            assert!(c.offset % SECTOR + c.len() <= SECTOR);
        }
        // walk the chain like a reader
        let base = Lba(100);
        let bytes = area.encode(base);
        let mut info = RrInfo::default();
        info.parse(&area.encode_record(&l, base));
        let mut hops = 0;
        while let Some((blk, off, len)) = info.continuation {
            let start = (blk - 100) as usize * SECTOR + off as usize;
            info.parse(&bytes[start..start + len as usize]);
            hops += 1;
        }
        assert_eq!(hops, area.chunks.len());
        assert_eq!(info.name.map(|n| n.len()), Some(255));
        assert_eq!(info.symlink.map(|s| s.len()), Some(4000 - 1));
        assert_eq!(info.mode, Some(0o644));
    }

    #[test]
    fn parser_survives_garbage() {
        let mut i = RrInfo::default();
        i.parse(&[b'N', b'M', 200, 1, 0]);
        i.parse(&[b'S', b'L', 9, 1, 0, 0, 200, 1, 2]);
        i.parse(&[b'T', b'F', 5, 1, 0x02]);
        i.parse(&[b'P', b'X', 3, 1]);
        assert_eq!(i.name, None);
    }
}
