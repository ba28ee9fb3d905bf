//! SHIM (replaced by the s19-luksmd branch at merge)
#![allow(dead_code, unused_variables)]
use super::StackError;
pub struct LuksInfo {
    pub version: u16,
    pub uuid: String,
    pub label: String,
    pub subsystem: String,
    pub cipher: String,
    pub key_bits: u32,
    pub sector_size: u32,
    pub pbkdf: String,
    pub data_offset_bytes: u64,
}
impl LuksInfo {
    pub fn luks_format_args(&self) -> Vec<String> {
        vec![]
    }
}
pub fn read(dev: &std::fs::File, size: u64) -> Result<Option<LuksInfo>, StackError> {
    Ok(None)
}
pub struct CrypttabEntry {
    pub line: u32,
    pub name: String,
    pub device: String,
    pub key: String,
    pub options: String,
}
pub fn parse_crypttab(text: &str) -> Vec<CrypttabEntry> {
    vec![]
}
