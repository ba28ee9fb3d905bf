//! The on-disk side of an LVM2 physical volume: the label sector, the PV header and the
//! metadata areas' ring buffers, read from the block device itself.
//!
//! Structures as LVM2 defines them (lib/label/label.h `struct label_header`,
//! lib/format_text/layout.h `struct pv_header`, `struct disk_locn`, `struct mda_header`,
//! `struct raw_locn`); all integers little-endian.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::super::StackError;

/// The sector LVM's label is searched in: the first four (label.h `LABEL_SCAN_SECTORS`).
const LABEL_SCAN_SECTORS: u64 = 4;
const SECTOR: u64 = 512;
/// layout.h `MDA_HEADER_SIZE`: the header at the start of each metadata area.
const MDA_HEADER_SIZE: u64 = 512;
/// layout.h `FMTT_MAGIC`.
const MDA_MAGIC: &[u8; 16] = b" LVM2 x[5A%r0N*>";
/// layout.h `FMTT_VERSION`.
const MDA_VERSION: u32 = 1;
/// layout.h `RAW_LOCN_IGNORED`: this copy of the metadata is deliberately not kept.
const RAW_LOCN_IGNORED: u32 = 1;
/// The most metadata text we accept (LVM's own default area is 1 MiB).
pub const MAX_TEXT: u64 = 4 << 20;
/// Bounds on the PV header's two lists (LVM writes one data area and at most two
/// metadata areas).
const MAX_AREAS: usize = 8;

/// What a physical volume's label and metadata area say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PvInfo {
    /// The PV UUID as LVM prints it: 32 characters dashed 6-4-4-4-4-4-6.
    pub pv_uuid: String,
    /// The device size the PV header records, in bytes (`pv_header.device_size_xl`).
    pub device_size: u64,
    /// Where the first extent starts, in bytes from the device's start (data area 0).
    pub pe_start_bytes: u64,
    /// The current VG metadata text of the first metadata area that holds an intact one
    /// (a damaged area is an error only when no later area has the text); `None` when the
    /// PV has no metadata area, or all of them are marked ignored (the VG's metadata then
    /// lives on its other PVs).
    pub metadata: Option<String>,
    /// The metadata areas: (offset, size) in bytes from the device's start.
    pub mda: Vec<(u64, u64)>,
}

/// LVM's checksum (lib/misc/crc.c `calc_crc`): the reflected CRC-32 of polynomial
/// 0xEDB88320 without the usual final inversion, started from `initial`.
pub fn calc_crc(initial: u32, data: &[u8]) -> u32 {
    let mut crc = initial;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    crc
}

/// lib/misc/crc.h `INITIAL_CRC`.
pub const INITIAL_CRC: u32 = 0xf597_a6cf;

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn read_exact(
    dev: &File,
    what: &'static str,
    offset: u64,
    buf: &mut [u8],
) -> Result<(), StackError> {
    dev.read_exact_at(buf, offset)
        .map_err(|source| StackError::Io {
            what,
            offset,
            source,
        })
}

/// Reads the PV label and the current metadata of a device; `Ok(None)` when the first
/// four sectors carry no `LABELONE` label of type `LVM2 001`. `size` is the device's size
/// in bytes: every offset the device states is checked against it.
pub fn read_pv(dev: &File, size: u64) -> Result<Option<PvInfo>, StackError> {
    let Some((sector, buf)) = find_label(dev, size)? else {
        return Ok(None);
    };
    let hdr = parse_pv_header(&buf, sector)?;
    let mut metadata = None;
    let mut first_err = None;
    let mut mda = Vec::new();
    for &(offset, len) in &hdr.mdas {
        check_area("metadata area", offset, len, size)?;
        mda.push((offset, len));
        if metadata.is_some() {
            continue;
        }
        // A damaged area with an intact copy after it is what LVM itself reads past.
        match read_mda(dev, offset, len) {
            Ok(text) => metadata = text,
            Err(e) => first_err = first_err.or(Some(e)),
        }
    }
    if let (None, Some(e)) = (&metadata, first_err) {
        return Err(e);
    }
    Ok(Some(PvInfo {
        pv_uuid: hdr.uuid,
        device_size: hdr.device_size,
        pe_start_bytes: hdr.pe_start,
        metadata,
        mda,
    }))
}

/// label.h `struct label_header` (32 bytes at the start of the label sector):
/// 0 id "LABELONE", 8 sector_xl (u64, this sector's number), 16 crc_xl (u32, over bytes
/// 20..512), 20 offset_xl (u32, where the PV header starts), 24 type "LVM2 001".
fn find_label(dev: &File, size: u64) -> Result<Option<(u64, Vec<u8>)>, StackError> {
    for sector in 0..LABEL_SCAN_SECTORS {
        let at = sector * SECTOR;
        if at + SECTOR > size {
            break;
        }
        let mut buf = vec![0u8; SECTOR as usize];
        read_exact(dev, "LVM label sector", at, &mut buf)?;
        if &buf[0..8] != b"LABELONE" {
            continue;
        }
        if u64_at(&buf, 8) != sector {
            return Err(bad(format!(
                "LVM label in sector {sector} says it is in sector {}",
                u64_at(&buf, 8)
            )));
        }
        let (want, got) = (u32_at(&buf, 16), calc_crc(INITIAL_CRC, &buf[20..]));
        if want != got {
            return Err(bad(format!(
                "LVM label in sector {sector}: checksum {want:#010x}, computed {got:#010x}"
            )));
        }
        if &buf[24..32] != b"LVM2 001" {
            return Ok(None);
        }
        return Ok(Some((sector, buf)));
    }
    Ok(None)
}

struct PvHeader {
    uuid: String,
    device_size: u64,
    pe_start: u64,
    mdas: Vec<(u64, u64)>,
}

/// layout.h `struct pv_header`: pv_uuid[32], device_size_xl (u64), then `disk_locn`
/// {offset u64, size u64} entries: the data areas, a zero entry, the metadata areas, a
/// zero entry. Both lists must end inside the label sector.
fn parse_pv_header(buf: &[u8], sector: u64) -> Result<PvHeader, StackError> {
    let start = u32_at(buf, 20) as usize;
    if start < 32 || start + 40 > buf.len() {
        return Err(bad(format!(
            "LVM label in sector {sector}: PV header offset {start} outside the sector"
        )));
    }
    let uuid = dashed_uuid(&buf[start..start + 32])?;
    let device_size = u64_at(buf, start + 32);
    let mut at = start + 40;
    let data = locn_list(buf, &mut at, "data area")?;
    let mdas = locn_list(buf, &mut at, "metadata area")?;
    let Some(&(pe_start, _)) = data.first() else {
        return Err(bad(format!("LVM PV {uuid}: no data area in its header")));
    };
    Ok(PvHeader {
        uuid,
        device_size,
        pe_start,
        mdas,
    })
}

/// One zero-terminated `disk_locn` list, advancing `at` past its terminator.
fn locn_list(buf: &[u8], at: &mut usize, what: &str) -> Result<Vec<(u64, u64)>, StackError> {
    let mut out = Vec::new();
    loop {
        if *at + 16 > buf.len() {
            return Err(bad(format!(
                "LVM PV header: {what} list runs past the label sector"
            )));
        }
        let (offset, size) = (u64_at(buf, *at), u64_at(buf, *at + 8));
        *at += 16;
        if offset == 0 {
            return Ok(out);
        }
        if out.len() == MAX_AREAS {
            return Err(bad(format!("LVM PV header: more than {MAX_AREAS} {what}s")));
        }
        out.push((offset, size));
    }
}

/// The 32-character PV UUID in LVM's printed form (lib/uuid/uuid.c `id_write_format`:
/// groups of 6-4-4-4-4-4-6).
fn dashed_uuid(raw: &[u8]) -> Result<String, StackError> {
    if !raw.iter().all(|b| b.is_ascii_alphanumeric()) {
        return Err(bad(format!(
            "LVM PV header: UUID {:?} is not 32 letters and digits",
            String::from_utf8_lossy(raw)
        )));
    }
    let mut s = String::with_capacity(38);
    let mut at = 0;
    for (i, n) in [6, 4, 4, 4, 4, 4, 6].into_iter().enumerate() {
        if i > 0 {
            s.push('-');
        }
        s.extend(raw[at..at + n].iter().map(|&b| b as char));
        at += n;
    }
    Ok(s)
}

fn check_area(what: &str, offset: u64, len: u64, size: u64) -> Result<(), StackError> {
    if len < MDA_HEADER_SIZE * 2 || offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(bad(format!(
            "LVM {what} at byte {offset}, {len} bytes, does not fit a device of {size} bytes"
        )));
    }
    Ok(())
}

fn bad(msg: String) -> StackError {
    StackError::Bad(msg)
}

/// layout.h `struct mda_header` (512 bytes): 0 checksum_xl (u32, over bytes 4..512),
/// 4 magic[16], 20 version (u32), 24 start (u64, the area's own offset), 32 size (u64),
/// 40 raw_locns[]: {offset u64 (from the area's start), size u64, checksum u32, flags u32}.
/// raw_locns[0] is the committed metadata. Returns its text, `None` if the area holds none.
fn read_mda(dev: &File, area: u64, area_len: u64) -> Result<Option<String>, StackError> {
    let mut h = vec![0u8; MDA_HEADER_SIZE as usize];
    read_exact(dev, "LVM metadata area header", area, &mut h)?;
    let (want, got) = (u32_at(&h, 0), calc_crc(INITIAL_CRC, &h[4..]));
    if want != got {
        return Err(bad(format!(
            "LVM metadata area at byte {area}: header checksum {want:#010x}, computed {got:#010x}"
        )));
    }
    if &h[4..20] != MDA_MAGIC || u32_at(&h, 20) != MDA_VERSION {
        return Err(bad(format!(
            "LVM metadata area at byte {area}: bad magic or version"
        )));
    }
    if u64_at(&h, 24) != area || u64_at(&h, 32) != area_len {
        return Err(bad(format!(
            "LVM metadata area at byte {area}, {area_len} bytes: its header says byte {}, {} bytes",
            u64_at(&h, 24),
            u64_at(&h, 32)
        )));
    }
    let loc = RawLocn {
        offset: u64_at(&h, 40),
        size: u64_at(&h, 48),
        checksum: u32_at(&h, 56),
        flags: u32_at(&h, 60),
    };
    if loc.offset == 0 || loc.flags & RAW_LOCN_IGNORED != 0 {
        return Ok(None);
    }
    read_text(dev, area, area_len, &loc).map(Some)
}

/// layout.h `struct raw_locn`.
struct RawLocn {
    offset: u64,
    size: u64,
    checksum: u32,
    flags: u32,
}

/// The text of a raw_locn in the area's ring buffer: a text running past the area's end
/// continues right after the mda header (format_text.c `_vg_read_raw_area`).
fn read_text(dev: &File, area: u64, area_len: u64, loc: &RawLocn) -> Result<String, StackError> {
    let ring = area_len - MDA_HEADER_SIZE;
    if loc.offset < MDA_HEADER_SIZE
        || loc.offset >= area_len
        || loc.size == 0
        || loc.size > ring.min(MAX_TEXT)
    {
        return Err(bad(format!(
            "LVM metadata area at byte {area}: text at offset {}, {} bytes, does not fit its {area_len} bytes",
            loc.offset, loc.size
        )));
    }
    let first = loc.size.min(area_len - loc.offset);
    let mut buf = vec![0u8; loc.size as usize];
    let (head, tail) = buf.split_at_mut(first as usize);
    read_exact(dev, "LVM metadata text", area + loc.offset, head)?;
    read_exact(dev, "LVM metadata text", area + MDA_HEADER_SIZE, tail)?;
    let got = calc_crc(INITIAL_CRC, &buf);
    if got != loc.checksum {
        return Err(bad(format!(
            "LVM metadata text at byte {}: checksum {:#010x}, computed {got:#010x}",
            area + loc.offset,
            loc.checksum
        )));
    }
    while buf.last() == Some(&0) {
        buf.pop();
    }
    String::from_utf8(buf).map_err(|_| {
        bad(format!(
            "LVM metadata text at byte {} is not UTF-8",
            area + loc.offset
        ))
    })
}
