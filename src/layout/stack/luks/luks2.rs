//! The LUKS2 header (on-disk-format-luks2.pdf): two copies of a 4 KiB binary header followed
//! by a JSON area (§2), the secondary right after the primary; each copy's SHA-256 checksum
//! covers the whole copy (§2.1). The copy with the higher `seqid` among the valid ones wins
//! (§2.3), as cryptsetup decides.

use std::fs::File;

use serde_json::Value;

use super::{LuksInfo, MAGIC, StackError, read_block, sha256, text};

/// The secondary header's magic (§2.1).
const MAGIC_2ND: &[u8; 6] = b"SKUL\xba\xbe";
/// §2.2 / Table 1: the sizes a header copy (binary header + JSON area) may have, which are
/// also where a secondary copy may sit.
const HDR_SIZES: [u64; 9] = [
    0x4000, 0x8000, 0x1_0000, 0x2_0000, 0x4_0000, 0x8_0000, 0x10_0000, 0x20_0000, 0x40_0000,
];

/// Byte offsets in the binary header (§2.1, Figure 2).
mod off {
    pub const VERSION: usize = 6;
    pub const HDR_SIZE: usize = 8;
    pub const SEQID: usize = 16;
    pub const LABEL: usize = 24;
    pub const CHECKSUM_ALG: usize = 72;
    pub const UUID: usize = 168;
    pub const SUBSYSTEM: usize = 208;
    pub const HDR_OFFSET: usize = 256;
    pub const CSUM: usize = 448;
    pub const BINARY_LEN: usize = 4096;
}

fn be64(b: &[u8], o: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[o..o + 8]);
    u64::from_be_bytes(x)
}

/// One header copy that passed its checks.
struct Copy {
    seqid: u64,
    hdr_size: u64,
    binary: Vec<u8>,
    json: Value,
}

/// The LUKS2 container on a device of `size` bytes. `head` is the device's first 4 KiB when
/// it carries the primary magic with version 2; without it only a secondary copy is looked for.
pub fn read(dev: &File, size: u64, head: Option<&[u8]>) -> Result<Option<LuksInfo>, StackError> {
    let primary = match head {
        Some(_) => load(dev, size, 0, MAGIC),
        None => Ok(None),
    };
    let primary_size = head
        .map(|h| be64(h, off::HDR_SIZE))
        .filter(|s| HDR_SIZES.contains(s));
    let mut secondary = Ok(None);
    for at in primary_size
        .map(|s| vec![s])
        .unwrap_or_else(|| HDR_SIZES.to_vec())
    {
        secondary = load(dev, size, at, MAGIC_2ND);
        if !matches!(secondary, Ok(None)) {
            break;
        }
    }
    let mut notes = Vec::new();
    let copy = match (primary, secondary) {
        (Ok(Some(p)), Ok(Some(s))) if s.seqid > p.seqid => {
            notes.push(format!(
                "primary header seqid {} is older than the secondary's {}; using the secondary",
                p.seqid, s.seqid
            ));
            s
        }
        (Ok(Some(p)), Ok(Some(s))) => {
            if s.seqid != p.seqid {
                notes.push(format!(
                    "secondary header seqid {} is older than the primary's {}",
                    s.seqid, p.seqid
                ));
            }
            p
        }
        (Ok(Some(p)), Err(e)) => {
            notes.push(format!("secondary header copy: {e}"));
            p
        }
        (Ok(Some(p)), Ok(None)) => {
            notes.push("no secondary header copy".into());
            p
        }
        (Err(e), Ok(Some(s))) => {
            notes.push(format!("primary header copy: {e}; using the secondary"));
            s
        }
        (Ok(None), Ok(Some(s))) => {
            notes.push("no primary header; using the secondary copy".into());
            s
        }
        (Err(e), _) | (Ok(None), Err(e)) => {
            return Err(StackError::Bad(format!("LUKS2 header: {e}")));
        }
        (Ok(None), Ok(None)) => return Ok(None),
    };
    info(copy, notes, size).map(Some)
}

/// The copy at byte `at` if it carries `magic`: `Ok(None)` without it, `Err` with what is wrong
/// when it is there but invalid (§2.1: version, size, offset, checksum; §3: the JSON).
fn load(dev: &File, size: u64, at: u64, magic: &[u8; 6]) -> Result<Option<Copy>, String> {
    if at + off::BINARY_LEN as u64 > size {
        return Ok(None);
    }
    let bin =
        read_block(dev, at, off::BINARY_LEN, "LUKS2 binary header").map_err(|e| e.to_string())?;
    if bin[..6] != magic[..] {
        return Ok(None);
    }
    let where_ = if at == 0 { "primary" } else { "secondary" };
    if u16::from_be_bytes([bin[off::VERSION], bin[off::VERSION + 1]]) != 2 {
        return Err(format!("{where_} copy at {at}: version is not 2"));
    }
    let hdr_size = be64(&bin, off::HDR_SIZE);
    if !HDR_SIZES.contains(&hdr_size) || be64(&bin, off::HDR_OFFSET) != at {
        return Err(format!(
            "{where_} copy at {at}: hdr_size {hdr_size}, hdr_offset {}",
            be64(&bin, off::HDR_OFFSET)
        ));
    }
    if at + hdr_size > size {
        return Err(format!(
            "{where_} copy at {at}: {hdr_size} bytes do not fit in the device's {size}"
        ));
    }
    let mut area =
        read_block(dev, at, hdr_size as usize, "LUKS2 header area").map_err(|e| e.to_string())?;
    verify_checksum(&mut area).map_err(|e| format!("{where_} copy at {at}: {e}"))?;
    let json_area = &area[off::BINARY_LEN..];
    let end = json_area
        .iter()
        .position(|c| *c == 0)
        .ok_or_else(|| format!("{where_} copy at {at}: the JSON area is not NUL-terminated"))?;
    let json: Value = serde_json::from_slice(&json_area[..end])
        .map_err(|e| format!("{where_} copy at {at}: JSON: {e}"))?;
    let json_size = str_u64(&json["config"]["json_size"], "config.json_size")?;
    if json_size != hdr_size - off::BINARY_LEN as u64 {
        return Err(format!(
            "{where_} copy at {at}: json_size {json_size} for hdr_size {hdr_size}"
        ));
    }
    area.truncate(off::BINARY_LEN);
    Ok(Some(Copy {
        seqid: be64(&area, off::SEQID),
        hdr_size,
        binary: area,
        json,
    }))
}

/// §2.1: `csum` is the checksum_alg hash of the whole copy with `csum` zeroed. Only sha256,
/// cryptsetup's choice, is checked; another algorithm is taken on trust.
fn verify_checksum(area: &mut [u8]) -> Result<(), String> {
    let alg = text(
        &area[off::CHECKSUM_ALG..off::CHECKSUM_ALG + 32],
        "checksum_alg",
    )
    .map_err(|e| e.to_string())?;
    if alg != "sha256" {
        return Ok(());
    }
    let mut stored = [0u8; 64];
    stored.copy_from_slice(&area[off::CSUM..off::CSUM + 64]);
    area[off::CSUM..off::CSUM + 64].fill(0);
    let computed = sha256::digest(area);
    area[off::CSUM..off::CSUM + 64].copy_from_slice(&stored);
    if stored[..32] != computed || stored[32..].iter().any(|b| *b != 0) {
        return Err("sha256 checksum does not match".into());
    }
    Ok(())
}

/// A JSON number written as a string (§3: offsets and sizes are strings, as JSON numbers
/// cannot hold every u64); a plain number is accepted too.
fn str_u64(v: &Value, what: &str) -> Result<u64, String> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
    .ok_or_else(|| format!("{what} is missing or not a number"))
}

fn small(v: &Value, what: &str) -> Result<u32, String> {
    u32::try_from(str_u64(v, what)?).map_err(|_| format!("{what} is too large"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The first object entry by numeric key (`"0"` before `"1"`…, §3.1) of type `kind`.
fn first<'a>(v: &'a Value, kind: &str) -> Option<&'a Value> {
    let o = v.as_object()?;
    o.iter()
        .filter(|(_, v)| v["type"] == kind)
        .filter_map(|(k, v)| Some((k.parse::<u32>().ok()?, v)))
        .min_by_key(|(k, _)| *k)
        .map(|(_, v)| v)
}

/// The facts of the chosen copy: the binary header's identity, the JSON's segment 0 (§3.2),
/// first keyslot (§3.1), digest (§3.4), config (§3.5) and tokens (§3.3); the data must start
/// past both copies and inside the device of `size` bytes.
fn info(copy: Copy, notes: Vec<String>, size: u64) -> Result<LuksInfo, StackError> {
    let bad = |e: String| StackError::Bad(format!("LUKS2 header: {e}"));
    let b = &copy.binary;
    let mut i = from_json(&copy.json).map_err(bad)?;
    i.uuid = text(&b[off::UUID..off::UUID + 40], "UUID")?;
    i.label = text(&b[off::LABEL..off::LABEL + 48], "label")?;
    i.subsystem = text(&b[off::SUBSYSTEM..off::SUBSYSTEM + 48], "subsystem")?;
    i.header_bytes = copy.hdr_size;
    i.seqid = copy.seqid;
    i.notes = notes;
    if i.data_offset_bytes < 2 * copy.hdr_size || i.data_offset_bytes > size {
        return Err(bad(format!(
            "data offset {} is inside the two header copies or past the device's {size} bytes",
            i.data_offset_bytes
        )));
    }
    Ok(i)
}

/// The JSON metadata's facts (everything but the binary header's identity).
pub(super) fn from_json(j: &Value) -> Result<LuksInfo, String> {
    let seg = &j["segments"]["0"];
    if seg["type"] != "crypt" {
        return Err(format!(
            "segment 0 is of type {} (a reencryption in progress?)",
            seg["type"]
        ));
    }
    let mut i = LuksInfo {
        version: 2,
        cipher: seg["encryption"]
            .as_str()
            .ok_or("segment 0 has no encryption")?
            .to_string(),
        sector_size: small(&seg["sector_size"], "segment 0 sector_size")?,
        data_offset_bytes: str_u64(&seg["offset"], "segment 0 offset")?,
        data_size_bytes: match &seg["size"] {
            Value::String(s) if s == "dynamic" => None,
            v => Some(str_u64(v, "segment 0 size")?),
        },
        integrity: seg["integrity"]["type"].as_str().map(str::to_string),
        keyslots_bytes: str_u64(&j["config"]["keyslots_size"], "config.keyslots_size")?,
        flags: strings(&j["config"]["flags"]),
        requirements: strings(&j["config"]["requirements"]["mandatory"]),
        ..LuksInfo::default()
    };
    if !matches!(i.sector_size, 512 | 1024 | 2048 | 4096) {
        return Err(format!("segment 0 sector_size {}", i.sector_size));
    }
    // §3.1: "luks2" keyslots hold the volume key; a "reencrypt" one holds no key.
    let slots = j["keyslots"].as_object();
    i.keyslots = slots.map_or(0, |o| {
        o.values().filter(|k| k["type"] == "luks2").count() as u32
    });
    i.pbkdf_hash = first(&j["digests"], "pbkdf2")
        .and_then(|d| d["hash"].as_str())
        .unwrap_or("")
        .to_string();
    if let Some(k) = first(&j["keyslots"], "luks2") {
        i.key_bits = small(&k["key_size"], "keyslot key_size")? * 8;
        let kdf = &k["kdf"];
        i.pbkdf = kdf["type"]
            .as_str()
            .ok_or("keyslot kdf has no type")?
            .to_string();
        if i.pbkdf == "pbkdf2" {
            i.pbkdf_hash = kdf["hash"]
                .as_str()
                .ok_or("pbkdf2 keyslot has no hash")?
                .to_string();
            i.pbkdf_iterations = small(&kdf["iterations"], "keyslot kdf iterations")?;
        } else {
            i.pbkdf_iterations = small(&kdf["time"], "keyslot kdf time")?;
            i.pbkdf_memory_kib = Some(small(&kdf["memory"], "keyslot kdf memory")?);
            i.pbkdf_parallel = Some(small(&kdf["cpus"], "keyslot kdf cpus")?);
        }
    }
    let tokens = j["tokens"].as_object();
    i.tokens = tokens.map_or(0, |o| o.len() as u32);
    i.token_types = tokens
        .map(|o| {
            o.values()
                .filter_map(|t| t["type"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok(i)
}
