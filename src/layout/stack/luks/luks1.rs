//! The LUKS1 header (on-disk-format.pdf §2.4, "PHDR"; big-endian): 208 bytes of fields and
//! eight 48-byte key-slot descriptors. Only the descriptors' state and iteration count are
//! read; the key material they point at is not.

use super::{LuksInfo, StackError, text};

/// Byte offsets in the LUKS1 `phdr` (§2.4, Figure 2) and its key slots (Figure 3).
mod off {
    pub const CIPHER_NAME: usize = 8;
    pub const CIPHER_MODE: usize = 40;
    pub const HASH_SPEC: usize = 72;
    pub const PAYLOAD_OFFSET: usize = 104;
    pub const KEY_BYTES: usize = 108;
    pub const UUID: usize = 168;
    pub const KEY_SLOTS: usize = 208;
    pub const KEY_SLOT_LEN: usize = 48;
    /// In a key slot: `active` at 0, `iterations` at 4.
    pub const SLOT_ITERATIONS: usize = 4;
}
/// §2.4: a key slot's `active` field.
const KEY_ENABLED: u32 = 0x00ac_71f3;
const KEY_DISABLED: u32 = 0x0000_dead;
/// §2.4: eight key slots.
const SLOTS: usize = 8;
/// A bound on the volume key: cryptsetup's largest LUKS1 key is 64 bytes (512 bits); 128
/// leaves room for any cipher while refusing nonsense.
const MAX_KEY_BYTES: u32 = 128;

fn be32(b: &[u8], o: usize) -> u32 {
    u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// The facts of the LUKS1 header in `head` (the device's first 4 KiB; the caller has checked
/// magic and version), on a device of `size` bytes.
pub fn decode(head: &[u8], size: u64) -> Result<LuksInfo, StackError> {
    let bad = |what: String| StackError::Bad(format!("LUKS1 header: {what}"));
    let key_bytes = be32(head, off::KEY_BYTES);
    if key_bytes == 0 || key_bytes > MAX_KEY_BYTES {
        return Err(bad(format!("key size {key_bytes} bytes")));
    }
    let payload = u64::from(be32(head, off::PAYLOAD_OFFSET)) * 512;
    if payload > size {
        return Err(bad(format!(
            "payload offset {payload} is past the device's {size} bytes"
        )));
    }
    let mut keyslots = 0;
    let mut iterations = 0;
    for i in 0..SLOTS {
        let at = off::KEY_SLOTS + i * off::KEY_SLOT_LEN;
        match be32(head, at) {
            KEY_ENABLED => {
                keyslots += 1;
                if iterations == 0 {
                    iterations = be32(head, at + off::SLOT_ITERATIONS);
                }
            }
            KEY_DISABLED => {}
            s => return Err(bad(format!("key slot {i} state {s:#010x}"))),
        }
    }
    let name = text(
        &head[off::CIPHER_NAME..off::CIPHER_NAME + 32],
        "cipher name",
    )?;
    let mode = text(
        &head[off::CIPHER_MODE..off::CIPHER_MODE + 32],
        "cipher mode",
    )?;
    let hash = text(&head[off::HASH_SPEC..off::HASH_SPEC + 32], "hash spec")?;
    Ok(LuksInfo {
        version: 1,
        uuid: text(&head[off::UUID..off::UUID + 40], "UUID")?,
        cipher: if mode.is_empty() {
            name
        } else {
            format!("{name}-{mode}")
        },
        key_bits: key_bytes * 8,
        sector_size: 512,
        data_offset_bytes: payload,
        pbkdf: "pbkdf2".into(),
        pbkdf_hash: hash,
        pbkdf_iterations: iterations,
        keyslots,
        ..LuksInfo::default()
    })
}
