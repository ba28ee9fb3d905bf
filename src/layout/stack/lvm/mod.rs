//! LVM2, read without the lvm tools: a PV's label and metadata area (`label`), LVM's config
//! text format (`config`), a VG's metadata as facts (`vg`), and the metadata rewritten for a
//! restore onto devices of other sizes (`restore`) or with new identities (`ids`), which the
//! rescue environment hands to `pvcreate --restorefile` and `vgcfgrestore`.
//!
//! Learned from LVM2's lib/label/label.h, lib/format_text/layout.h, format-text.c and
//! import_vsn1.c, and libdm/libdm-config.c; the fixtures under tests/fixtures/lvm/ were made
//! by LVM 2.03.16 itself.

pub mod config;
pub mod ids;
pub mod label;
pub mod relayout;
pub mod restore;
pub mod vg;

pub use ids::{metadata_ids, new_id, with_new_ids};
pub use label::{PvInfo, read_pv};
pub use relayout::relayout_for_restore;
pub use restore::{Grow, PvTail, PvTarget, adapt_for_restore, fill_delta, pv_tails};
pub use vg::{LvKind, LvMeta, PvMeta, PvRun, Segment, VgMeta, parse_vg};

#[cfg(test)]
mod tests;
