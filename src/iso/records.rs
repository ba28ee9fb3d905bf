//! ECMA-119 on-disk records: volume descriptors (8.4, 8.5), directory records (9.1), path table
//! records (9.4) and the two date formats (8.4.26.1, 9.1.5). One struct per record, one
//! `encode`/`decode` each; decoders take hostile bytes and never panic.

/// Logical block (sector) size of every image we write (ECMA-119 6.1.2).
pub const SECTOR: usize = 2048;
/// First sector of the volume descriptor set (ECMA-119 6.2.1: after the 32 KiB system area).
pub const FIRST_VD_SECTOR: u32 = 16;

/// A logical block address in 2048-byte sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Lba(pub u32);

impl Lba {
    /// Byte offset of this block in the image.
    pub fn byte_offset(self) -> u64 {
        u64::from(self.0) * SECTOR as u64
    }
}

/// Writes `v` as a both-byte-order u16 (ECMA-119 7.2.3) at `b[0..4]`.
pub fn put_u16_both(b: &mut [u8], v: u16) {
    b[0..2].copy_from_slice(&v.to_le_bytes());
    b[2..4].copy_from_slice(&v.to_be_bytes());
}

/// Writes `v` as a both-byte-order u32 (ECMA-119 7.3.3) at `b[0..8]`.
pub fn put_u32_both(b: &mut [u8], v: u32) {
    b[0..4].copy_from_slice(&v.to_le_bytes());
    b[4..8].copy_from_slice(&v.to_be_bytes());
}

/// Little-endian u32 at `b[at..at+4]`, `None` if out of bounds.
pub fn get_u32_le(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Civil date (UTC) of a Unix time: (year, month 1-12, day, hour, minute, second).
pub fn civil_from_unix(t: i64) -> (i64, u8, u8, u8, u8, u8) {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // H. Hinnant's days_from_civil inverse (proleptic Gregorian).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    (year, month, day, h as u8, m as u8, s as u8)
}

/// Unix time of a civil UTC date (inverse of [`civil_from_unix`]).
pub fn unix_from_civil(y: i64, mo: u8, d: u8, h: u8, mi: u8, s: u8) -> i64 {
    let y = y - i64::from(mo <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(mo) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s)
}

/// ECMA-119 9.1.5 seven-byte date, always written in UTC. Years outside 1900..=2155 clamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordDate(pub i64);

impl RecordDate {
    const MIN: i64 = -2_208_988_800; // 1900-01-01T00:00:00Z
    const MAX: i64 = 5_965_286_399; // 2155-12-31T23:59:59Z

    /// Encodes: [0] years since 1900, [1] month, [2] day, [3] hour, [4] minute, [5] second,
    /// [6] offset from GMT in 15-minute units (0).
    pub fn encode(self) -> [u8; 7] {
        let (y, mo, d, h, mi, s) = civil_from_unix(self.0.clamp(Self::MIN, Self::MAX));
        [(y - 1900) as u8, mo, d, h, mi, s, 0]
    }

    /// Decodes, applying the GMT offset; `None` for impossible field values.
    pub fn decode(b: &[u8; 7]) -> Option<Self> {
        let (mo, d, h, mi, s) = (b[1], b[2], b[3], b[4], b[5]);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
            return None;
        }
        let t = unix_from_civil(1900 + i64::from(b[0]), mo, d, h, mi, s);
        Some(RecordDate(t - i64::from(b[6] as i8) * 900))
    }
}

/// ECMA-119 8.4.26.1 seventeen-byte date: "YYYYMMDDHHMMSScc" digits + GMT offset byte.
/// `None` encodes "not specified" (all '0' digits, offset 0).
pub fn encode_volume_date(t: Option<i64>) -> [u8; 17] {
    let mut out = [b'0'; 17];
    out[16] = 0;
    if let Some(t) = t {
        let (y, mo, d, h, mi, s) = civil_from_unix(t.clamp(0, 253_402_300_799));
        let digits = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}00");
        out[..16].copy_from_slice(&digits.as_bytes()[..16]);
    }
    out
}

/// Kind of a volume descriptor we write (ECMA-119 8.4 primary, 8.5 supplementary/Joliet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VdKind {
    Primary,
    Joliet,
}

/// Joliet's UCS-2 level 3 escape sequence (Joliet spec 5.3), in SVD bytes 88..91.
pub const JOLIET_ESCAPE: [u8; 3] = *b"%/E";

/// ECMA-119 8.4 primary / 8.5 supplementary volume descriptor (one 2048-byte sector).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeDescriptor {
    pub kind: VdKind,
    /// Volume identifier, already encoded (d-characters, or UCS-2 BE for Joliet), ≤ 32 bytes.
    pub volume_id: Vec<u8>,
    /// Application identifier (encoded like `volume_id`), ≤ 128 bytes.
    pub application_id: Vec<u8>,
    pub volume_space_size: u32,
    pub path_table_size: u32,
    pub l_path_table: Lba,
    pub m_path_table: Lba,
    /// The 34-byte root directory record (9.1 with a one-byte identifier 0x00).
    pub root: DirRecord,
    pub created: i64,
}

impl VolumeDescriptor {
    /// Encodes the sector. Offsets per ECMA-119 8.4 (same for an SVD, 8.5).
    pub fn encode(&self) -> [u8; SECTOR] {
        let mut s = [0u8; SECTOR];
        let joliet = self.kind == VdKind::Joliet;
        s[0] = if joliet { 2 } else { 1 }; // 8.4.1 volume descriptor type
        s[1..6].copy_from_slice(b"CD001"); // 8.4.2 standard identifier
        s[6] = 1; // 8.4.3 version
        let blank = |s: &mut [u8]| fill_blank(s, joliet);
        blank(&mut s[8..40]); // 8.4.5 system identifier
        put_padded(&mut s[40..72], &self.volume_id, joliet); // 8.4.6 volume identifier
        put_u32_both(&mut s[80..88], self.volume_space_size); // 8.4.8
        if joliet {
            s[88..91].copy_from_slice(&JOLIET_ESCAPE); // 8.5.6 escape sequences
        }
        put_u16_both(&mut s[120..124], 1); // 8.4.10 volume set size
        put_u16_both(&mut s[124..128], 1); // 8.4.11 volume sequence number
        put_u16_both(&mut s[128..132], SECTOR as u16); // 8.4.12 logical block size
        put_u32_both(&mut s[132..140], self.path_table_size); // 8.4.13
        s[140..144].copy_from_slice(&self.l_path_table.0.to_le_bytes()); // 8.4.14
        s[148..152].copy_from_slice(&self.m_path_table.0.to_be_bytes()); // 8.4.16
        let root = self.root.encode();
        s[156..190].copy_from_slice(&root[..34]); // 8.4.18 root directory record
        blank(&mut s[190..318]); // 8.4.19 volume set identifier
        blank(&mut s[318..446]); // 8.4.20 publisher identifier
        blank(&mut s[446..574]); // 8.4.21 data preparer identifier
        put_padded(&mut s[574..702], &self.application_id, joliet); // 8.4.22
        blank(&mut s[702..813]); // 8.4.23-25 copyright, abstract, bibliographic file ids
        s[813..830].copy_from_slice(&encode_volume_date(Some(self.created))); // 8.4.26
        s[830..847].copy_from_slice(&encode_volume_date(Some(self.created))); // 8.4.27
        s[847..864].copy_from_slice(&encode_volume_date(None)); // 8.4.28 expiration
        s[864..881].copy_from_slice(&encode_volume_date(Some(self.created))); // 8.4.29
        s[881] = 1; // 8.4.31 file structure version
        s
    }

    /// Decodes a primary (type 1) or Joliet (type 2 with a UCS-2 escape) descriptor; `None`
    /// for anything else, including a sector without `CD001`.
    pub fn decode(s: &[u8]) -> Option<Self> {
        if s.len() < SECTOR || &s[1..6] != b"CD001" {
            return None;
        }
        let kind = match s[0] {
            1 => VdKind::Primary,
            2 if s[88] == b'%' && s[89] == b'/' && matches!(s[90], b'@' | b'C' | b'E') => {
                VdKind::Joliet
            }
            _ => return None,
        };
        let (root, _) = DirRecord::decode(&s[156..190])?;
        Some(VolumeDescriptor {
            kind,
            volume_id: s[40..72].to_vec(),
            application_id: s[574..702].to_vec(),
            volume_space_size: get_u32_le(s, 80)?,
            path_table_size: get_u32_le(s, 132)?,
            l_path_table: Lba(get_u32_le(s, 140)?),
            m_path_table: Lba(u32::from_be_bytes(s[148..152].try_into().ok()?)),
            root,
            created: 0,
        })
    }
}

/// Fills an identifier field with blanks: a-character spaces, or UCS-2 spaces for Joliet.
fn fill_blank(b: &mut [u8], joliet: bool) {
    if joliet {
        for pair in b.chunks_mut(2) {
            pair[0] = 0;
            if pair.len() > 1 {
                pair[1] = b' ';
            }
        }
    } else {
        b.fill(b' ');
    }
}

fn put_padded(b: &mut [u8], v: &[u8], joliet: bool) {
    fill_blank(b, joliet);
    let n = v.len().min(b.len());
    b[..n].copy_from_slice(&v[..n]);
}

/// ECMA-119 8.3 volume descriptor set terminator.
pub fn encode_terminator() -> [u8; SECTOR] {
    let mut s = [0u8; SECTOR];
    s[0] = 255;
    s[1..6].copy_from_slice(b"CD001");
    s[6] = 1;
    s
}

/// ECMA-119 9.1.6 file flags.
pub mod flags {
    pub const DIRECTORY: u8 = 0x02;
    pub const MULTI_EXTENT: u8 = 0x80;
}

/// ECMA-119 9.1 directory record. `system_use` holds SUSP/Rock Ridge entries (9.1.13).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirRecord {
    pub extent: Lba,
    pub data_len: u32,
    pub date: RecordDate,
    pub flags: u8,
    /// File identifier bytes (9.1.11): `0x00` for ".", `0x01` for "..".
    pub ident: Vec<u8>,
    pub system_use: Vec<u8>,
}

impl DirRecord {
    /// Length of the encoded record for an identifier and system use of these lengths.
    pub fn encoded_len(ident_len: usize, su_len: usize) -> usize {
        33 + ident_len + usize::from(ident_len.is_multiple_of(2)) + su_len
    }

    /// Encodes; the caller keeps the total ≤ 255 bytes (checked in debug builds).
    pub fn encode(&self) -> Vec<u8> {
        let len = Self::encoded_len(self.ident.len(), self.system_use.len());
        debug_assert!(len <= 255, "directory record of {len} bytes");
        let mut r = vec![0u8; len];
        r[0] = len as u8; // 9.1.1 length of directory record
        // 9.1.2 [1] extended attribute record length: 0
        put_u32_both(&mut r[2..10], self.extent.0); // 9.1.3 location of extent
        put_u32_both(&mut r[10..18], self.data_len); // 9.1.4 data length
        r[18..25].copy_from_slice(&self.date.encode()); // 9.1.5 recording date and time
        r[25] = self.flags; // 9.1.6 file flags
        // 9.1.7 [26] file unit size, 9.1.8 [27] interleave gap: 0 (not interleaved)
        put_u16_both(&mut r[28..32], 1); // 9.1.9 volume sequence number
        r[32] = self.ident.len() as u8; // 9.1.10 length of file identifier
        r[33..33 + self.ident.len()].copy_from_slice(&self.ident); // 9.1.11
        let su = 33 + self.ident.len() + usize::from(self.ident.len().is_multiple_of(2)); // 9.1.12 pad
        r[su..].copy_from_slice(&self.system_use); // 9.1.13 system use
        r
    }

    /// Decodes the record at the start of `b`; returns it and its length. `None` if the
    /// length byte is 0 (end of entries in this sector) or any field runs past the record.
    pub fn decode(b: &[u8]) -> Option<(Self, usize)> {
        let len = usize::from(*b.first()?);
        if len < 34 || len > b.len() {
            return None;
        }
        let r = &b[..len];
        let ident_len = usize::from(r[32]);
        let ident_end = 33 + ident_len;
        if ident_end > len {
            return None;
        }
        let su_start = (ident_end + usize::from(ident_len.is_multiple_of(2))).min(len);
        let date: &[u8; 7] = r[18..25].try_into().ok()?;
        Some((
            DirRecord {
                extent: Lba(get_u32_le(r, 2)?),
                data_len: get_u32_le(r, 10)?,
                date: RecordDate::decode(date).unwrap_or(RecordDate(0)),
                flags: r[25],
                ident: r[33..ident_end].to_vec(),
                system_use: r[su_start..].to_vec(),
            },
            len,
        ))
    }
}

/// ECMA-119 9.4 path table record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTableRecord {
    pub extent: Lba,
    /// Directory number (1-based) of the parent; the root is its own parent (1).
    pub parent: u16,
    /// Directory identifier (`0x00` for the root).
    pub ident: Vec<u8>,
}

impl PathTableRecord {
    pub fn encoded_len(ident_len: usize) -> usize {
        8 + ident_len + ident_len % 2
    }

    /// Encodes for the L (little-endian) or M (big-endian) table.
    pub fn encode(&self, big_endian: bool) -> Vec<u8> {
        let mut r = vec![0u8; Self::encoded_len(self.ident.len())];
        r[0] = self.ident.len() as u8; // 9.4.1 length of directory identifier
        // 9.4.2 [1] extended attribute record length: 0
        let (lba, parent) = if big_endian {
            (self.extent.0.to_be_bytes(), self.parent.to_be_bytes())
        } else {
            (self.extent.0.to_le_bytes(), self.parent.to_le_bytes())
        };
        r[2..6].copy_from_slice(&lba); // 9.4.3 location of extent
        r[6..8].copy_from_slice(&parent); // 9.4.4 parent directory number
        r[8..8 + self.ident.len()].copy_from_slice(&self.ident); // 9.4.5 (+ 9.4.6 padding)
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_match_known_values() {
        assert_eq!(civil_from_unix(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil_from_unix(951_782_400), (2000, 2, 29, 0, 0, 0));
        for t in [0, 1, 951_782_400, 1_700_000_000, -86_400, 4_102_444_800] {
            let (y, mo, d, h, mi, s) = civil_from_unix(t);
            assert_eq!(unix_from_civil(y, mo, d, h, mi, s), t);
        }
        let d = RecordDate(1_700_000_000).encode(); // 2023-11-14T22:13:20Z
        assert_eq!(d, [123, 11, 14, 22, 13, 20, 0]);
        assert_eq!(RecordDate::decode(&d), Some(RecordDate(1_700_000_000)));
        assert_eq!(
            &encode_volume_date(Some(1_700_000_000))[..16],
            b"2023111422132000"
        );
        assert_eq!(encode_volume_date(None), *b"0000000000000000\0");
    }

    #[test]
    fn dir_record_fields_sit_at_spec_offsets() {
        let rec = DirRecord {
            extent: Lba(0x1234_5678),
            data_len: 0x0A0B_0C0D,
            date: RecordDate(0),
            flags: flags::DIRECTORY,
            ident: b"ABC;1".to_vec(),
            system_use: vec![0xEE; 4],
        };
        let b = rec.encode();
        assert_eq!(b.len(), 33 + 5 + 4); // odd identifier: no padding byte
        assert_eq!(b[0] as usize, b.len());
        assert_eq!(&b[2..6], &0x1234_5678u32.to_le_bytes());
        assert_eq!(&b[6..10], &0x1234_5678u32.to_be_bytes());
        assert_eq!(&b[10..14], &0x0A0B_0C0Du32.to_le_bytes());
        assert_eq!(&b[14..18], &0x0A0B_0C0Du32.to_be_bytes());
        assert_eq!(b[18], 70); // 1970 - 1900
        assert_eq!(b[25], 2);
        assert_eq!(&b[28..32], &[1, 0, 0, 1]);
        assert_eq!(b[32], 5);
        assert_eq!(&b[33..38], b"ABC;1");
        assert_eq!(&b[38..], &[0xEE; 4]);
        assert_eq!(DirRecord::decode(&b), Some((rec, 42)));
        // even identifier length gets a padding byte before system use (9.1.12)
        let even = DirRecord::encoded_len(4, 0);
        assert_eq!(even, 38);
    }

    #[test]
    fn dir_record_decode_rejects_garbage() {
        assert_eq!(DirRecord::decode(&[]), None);
        assert_eq!(DirRecord::decode(&[0; 40]), None);
        let mut b = vec![0u8; 40];
        b[0] = 40;
        b[32] = 200; // identifier runs past the record
        assert_eq!(DirRecord::decode(&b), None);
        b[0] = 80; // record longer than the buffer
        assert_eq!(DirRecord::decode(&b), None);
    }

    #[test]
    fn path_table_record_offsets() {
        let r = PathTableRecord {
            extent: Lba(0x0102_0304),
            parent: 0x0506,
            ident: b"DIR".to_vec(),
        };
        let l = r.encode(false);
        assert_eq!(l, [3, 0, 4, 3, 2, 1, 6, 5, b'D', b'I', b'R', 0]);
        let m = r.encode(true);
        assert_eq!(&m[2..8], &[1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn volume_descriptor_offsets_and_round_trip() {
        let vd = VolumeDescriptor {
            kind: VdKind::Primary,
            volume_id: b"OSIMAGE".to_vec(),
            application_id: b"OSIMAGE".to_vec(),
            volume_space_size: 1000,
            path_table_size: 10,
            l_path_table: Lba(20),
            m_path_table: Lba(22),
            root: DirRecord {
                extent: Lba(30),
                data_len: 2048,
                date: RecordDate(0),
                flags: flags::DIRECTORY,
                ident: vec![0],
                system_use: vec![],
            },
            created: 1_700_000_000,
        };
        let s = vd.encode();
        assert_eq!(&s[0..7], b"\x01CD001\x01");
        assert_eq!(&s[40..50], b"OSIMAGE   ");
        assert_eq!(&s[80..88], &[0xE8, 3, 0, 0, 0, 0, 3, 0xE8]);
        assert_eq!(&s[128..132], &[0, 8, 8, 0]);
        assert_eq!(s[156], 34);
        assert_eq!(&s[813..829], b"2023111422132000");
        assert_eq!(s[881], 1);
        let back = VolumeDescriptor::decode(&s).expect("decodes");
        assert_eq!(back.volume_space_size, 1000);
        assert_eq!(back.root.extent, Lba(30));
        assert_eq!(back.m_path_table, Lba(22));
        let mut j = vd.clone();
        j.kind = VdKind::Joliet;
        let s = j.encode();
        assert_eq!(s[0], 2);
        assert_eq!(&s[88..91], b"%/E");
        assert_eq!(
            VolumeDescriptor::decode(&s).map(|v| v.kind),
            Some(VdKind::Joliet)
        );
        assert!(VolumeDescriptor::decode(&encode_terminator()).is_none());
    }
}
