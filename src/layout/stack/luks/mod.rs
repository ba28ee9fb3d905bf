//! LUKS containers (issue #19): what a LUKS1 or LUKS2 header says about the container, read
//! without cryptsetup, so the restore can run `cryptsetup luksFormat` with the same UUID,
//! label and parameters; and /etc/crypttab, which says how the system opens it.
//!
//! Specs: cryptsetup's docs/on-disk-format.pdf (LUKS1) and docs/on-disk-format-luks2.pdf
//! (LUKS2). Nothing here reads or keeps key material: the LUKS1 key-slot areas start past the
//! 592-byte header, the LUKS2 ones past both header copies, and neither is read.

mod crypttab;
mod luks1;
mod luks2;
mod sha256;

use std::fs::File;

pub use crypttab::{CrypttabEntry, parse_crypttab};

use super::{StackError, read_block};

/// The magic of a LUKS header (both versions; LUKS2's secondary copy has `SKUL\xba\xbe`).
const MAGIC: &[u8; 6] = b"LUKS\xba\xbe";

/// What a LUKS header says, minus the keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LuksInfo {
    /// 1 or 2.
    pub version: u16,
    pub uuid: String,
    /// LUKS2 label and subsystem (empty when unset, and always for LUKS1).
    pub label: String,
    pub subsystem: String,
    /// In cryptsetup's `--cipher` form: `aes-xts-plain64`.
    pub cipher: String,
    /// Volume key size in bits (0 for a LUKS2 header without any keyslot).
    pub key_bits: u32,
    /// Encryption sector size in bytes (512 for LUKS1).
    pub sector_size: u32,
    /// Where the encrypted data starts.
    pub data_offset_bytes: u64,
    /// LUKS2 segment size; `None` for "dynamic" (to the end of the device) and for LUKS1.
    pub data_size_bytes: Option<u64>,
    /// LUKS2 metadata size per copy (`hdr_size`: binary header + JSON area); 0 for LUKS1.
    pub header_bytes: u64,
    /// LUKS2 keyslots area size (`config.keyslots_size`); 0 for LUKS1.
    pub keyslots_bytes: u64,
    /// "pbkdf2", "argon2i" or "argon2id" of the first keyslot.
    pub pbkdf: String,
    /// The hash: LUKS1's hash spec; LUKS2's keyslot PBKDF2 hash, or the volume key digest's
    /// hash for an Argon2 keyslot (what `--hash` sets for LUKS2).
    pub pbkdf_hash: String,
    /// Argon2 memory cost (KiB) and threads.
    pub pbkdf_memory_kib: Option<u32>,
    pub pbkdf_parallel: Option<u32>,
    /// PBKDF2 iterations, or Argon2's time cost: what the header stores. The iteration time in
    /// milliseconds that produced them is not stored anywhere.
    pub pbkdf_iterations: u32,
    /// LUKS2 authenticated encryption (`segments.0.integrity.type`, e.g. "hmac(sha256)").
    pub integrity: Option<String>,
    /// LUKS2 persistent activation flags (`config.flags`: "allow-discards", …).
    pub flags: Vec<String>,
    /// LUKS2 mandatory requirements (`config.requirements.mandatory`: "online-reencrypt", …).
    pub requirements: Vec<String>,
    /// Active keyslots.
    pub keyslots: u32,
    /// LUKS2 tokens, and their types ("systemd-tpm2", "clevis", …): none is recreated.
    pub tokens: u32,
    pub token_types: Vec<String>,
    /// LUKS2 header sequence id of the copy used; 0 for LUKS1.
    pub seqid: u64,
    /// What the reader noticed about the two header copies (a damaged or older copy).
    pub notes: Vec<String>,
}

impl LuksInfo {
    /// Options for `cryptsetup luksFormat` (cryptsetup 2.6, Debian bookworm; trixie's 2.7 has
    /// the same) that recreate this container's format: same UUID, label, cipher, sizes and
    /// PBKDF costs. The costs are forced (`--pbkdf-force-iterations`, `--pbkdf-memory`) so
    /// the new keyslot opens with the effort the old one took, on the machine that opened it,
    /// instead of a benchmark in the rescue system. The device and passphrase are the caller's.
    pub fn luks_format_args(&self) -> Vec<String> {
        let mut a = vec![
            format!("--type=luks{}", self.version),
            format!("--uuid={}", self.uuid),
        ];
        if self.version >= 2 {
            opt(&mut a, "label", &self.label);
            opt(&mut a, "subsystem", &self.subsystem);
        }
        a.push(format!("--cipher={}", self.cipher));
        if self.key_bits > 0 {
            a.push(format!("--key-size={}", self.key_bits));
        }
        opt(&mut a, "hash", &self.pbkdf_hash);
        if self.version >= 2 {
            a.push(format!("--sector-size={}", self.sector_size));
            opt(&mut a, "pbkdf", &self.pbkdf);
            if let Some(m) = self.pbkdf_memory_kib {
                a.push(format!("--pbkdf-memory={m}"));
            }
            if let Some(p) = self.pbkdf_parallel {
                a.push(format!("--pbkdf-parallel={p}"));
            }
        }
        if self.pbkdf_iterations > 0 {
            a.push(format!(
                "--pbkdf-force-iterations={}",
                self.pbkdf_iterations
            ));
        }
        if self.version >= 2 {
            a.push(format!("--luks2-metadata-size={}", self.header_bytes));
            a.push(format!("--luks2-keyslots-size={}", self.keyslots_bytes));
            if let Some(i) = &self.integrity {
                a.push(format!("--integrity={i}"));
            }
        }
        // cryptsetup(8) --offset: in 512-byte sectors, for luksFormat of LUKS1 and LUKS2.
        a.push(format!("--offset={}", self.data_offset_bytes / 512));
        a
    }

    /// Options for `cryptsetup open --persistent` that store this header's activation flags
    /// again (luksFormat takes none); flags cryptsetup has no option for are left out.
    pub fn persistent_flag_args(&self) -> Vec<String> {
        let mut a: Vec<String> = self
            .flags
            .iter()
            .filter_map(|f| {
                Some(match f.as_str() {
                    "allow-discards" => "--allow-discards",
                    "same-cpu-crypt" => "--perf-same_cpu_crypt",
                    "submit-from-crypt-cpus" => "--perf-submit_from_crypt_cpus",
                    "no-read-workqueue" => "--perf-no_read_workqueue",
                    "no-write-workqueue" => "--perf-no_write_workqueue",
                    "no-journal" => "--integrity-no-journal",
                    _ => return None,
                })
            })
            .map(str::to_string)
            .collect();
        if !a.is_empty() {
            a.insert(0, "--persistent".into());
        }
        a
    }
}

fn opt(a: &mut Vec<String>, name: &str, value: &str) {
    if !value.is_empty() {
        a.push(format!("--{name}={value}"));
    }
}

/// The LUKS header on a device of `size` bytes, or `None` if it carries none (neither
/// version's magic at 0, nor — for a LUKS2 device whose primary header is gone — a secondary
/// header at one of the offsets on-disk-format-luks2 §2.2 allows).
pub fn read(dev: &File, size: u64) -> Result<Option<LuksInfo>, StackError> {
    if size < 4096 {
        return Ok(None);
    }
    let head = read_block(dev, 0, 4096, "LUKS header")?;
    if head[..6] == MAGIC[..] {
        match u16::from_be_bytes([head[6], head[7]]) {
            1 => return luks1::decode(&head, size).map(Some),
            2 => return luks2::read(dev, size, Some(&head)),
            v => return Err(StackError::Bad(format!("LUKS header version {v}"))),
        }
    }
    luks2::read(dev, size, None)
}

/// A NUL-padded text field: UTF-8 without control characters (each ends up as one argument of
/// a cryptsetup command line and in `info`'s output).
fn text(b: &[u8], what: &str) -> Result<String, StackError> {
    let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
    match std::str::from_utf8(&b[..end]) {
        Ok(s) if !s.chars().any(char::is_control) => Ok(s.to_string()),
        _ => Err(StackError::Bad(format!(
            "LUKS header: {what} is not printable text"
        ))),
    }
}

#[cfg(test)]
mod tests;
