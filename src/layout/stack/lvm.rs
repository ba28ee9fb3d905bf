//! SHIM (replaced by the s19-lvm branch at merge)
#![allow(dead_code, unused_variables)]
use super::StackError;
pub struct PvInfo {
    pub pv_uuid: String,
    pub device_size: u64,
    pub pe_start_bytes: u64,
    pub metadata: Option<String>,
    pub mda: Vec<(u64, u64)>,
}
pub fn read_pv(dev: &std::fs::File, size: u64) -> Result<Option<PvInfo>, StackError> {
    Ok(None)
}
pub struct PvMeta {
    pub key: String,
    pub id: String,
    pub device: String,
    pub dev_size: u64,
    pub pe_start: u64,
    pub pe_count: u64,
    pub tags: Vec<String>,
}
pub struct LvMeta {
    pub name: String,
    pub id: String,
    pub tags: Vec<String>,
}
impl LvMeta {
    pub fn extents(&self) -> u64 {
        0
    }
    pub fn kind(&self) -> &str {
        ""
    }
    pub fn recreatable(&self) -> bool {
        false
    }
    pub fn hidden(&self) -> bool {
        false
    }
}
pub struct VgMeta {
    pub name: String,
    pub id: String,
    pub extent_size: u64,
    pub tags: Vec<String>,
    pub pvs: Vec<PvMeta>,
    pub lvs: Vec<LvMeta>,
}
pub fn parse_vg(text: &str) -> Result<VgMeta, StackError> {
    Err(StackError::Bad(String::new()))
}
pub struct PvTarget {
    pub pv_uuid: String,
    pub dev_size_sectors: u64,
    pub device: String,
}
#[derive(Clone)]
pub struct Grow {
    pub lv: String,
    pub delta_extents: i64,
}
pub fn adapt_for_restore(
    text: &str,
    pvs: &[PvTarget],
    grow: Option<Grow>,
) -> Result<String, StackError> {
    Ok(text.into())
}
