//! The recorded partition table in target sectors: every partition keeps its number, type,
//! GUIDs and byte offset (docs/DESIGN.md "Boot loader on restore"), and the recorded geometry is
//! checked before the plan's arithmetic relies on it.

use super::build::Builder;
use super::{PartKind, PartPlan, PlanError, TablePlan, is_extended};
use crate::layout::{GptPartition, MbrPartition, PartitionTable};

impl Builder<'_> {
    /// The partitions in number order (a whole-disk filesystem when there is no table), then
    /// the one that changes size.
    pub(super) fn partitions(&mut self) -> Result<(), PlanError> {
        let Some(table) = &self.disk.table else {
            return self.whole_disk();
        };
        let mut parts = match table {
            PartitionTable::Gpt(t) => {
                self.plan.table = TablePlan::Gpt {
                    disk_guid: t.disk_guid.clone(),
                };
                t.partitions
                    .iter()
                    .map(|p| self.gpt_partition(p))
                    .collect::<Result<Vec<_>, _>>()?
            }
            PartitionTable::Mbr(t) => {
                self.plan.table = TablePlan::Mbr {
                    signature: t.signature,
                };
                t.partitions
                    .iter()
                    .map(|p| self.mbr_partition(p))
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        parts.sort_by_key(|p| p.number);
        check_geometry(&parts)?;
        self.plan.partitions = parts;
        self.resize()
    }

    fn gpt_partition(&self, p: &GptPartition) -> Result<PartPlan, PlanError> {
        Ok(PartPlan {
            number: p.number,
            first_lba: self.lba(p.first_lba)?,
            last_lba: self.end(p.last_lba)?,
            kind: PartKind::Gpt {
                type_guid: p.type_guid.clone(),
                part_guid: p.part_guid.clone(),
                name: p.name.clone(),
                attributes: p.attributes,
            },
            content: String::new(),
        })
    }

    fn mbr_partition(&self, p: &MbrPartition) -> Result<PartPlan, PlanError> {
        let first = u64::from(p.start_lba);
        Ok(PartPlan {
            number: p.number,
            first_lba: self.lba(first)?,
            last_lba: self.end(
                (first + u64::from(p.sectors))
                    .checked_sub(1)
                    .ok_or_else(|| PlanError(format!("partition {} has no sectors", p.number)))?,
            )?,
            kind: PartKind::Mbr {
                type_byte: p.type_byte,
                bootable: p.bootable,
                extended: p.extended,
                logical: p.logical,
            },
            content: String::new(),
        })
    }
}

/// The recorded partitions make sense as a disk: each ends after it starts, and none overlaps
/// another (an MBR extended partition holds its logical ones and is left out). The layout
/// record is image data; the plan's arithmetic relies on this.
fn check_geometry(parts: &[PartPlan]) -> Result<(), PlanError> {
    let bad = |msg: String| {
        Err(PlanError(format!(
            "the layout record is inconsistent: {msg}"
        )))
    };
    let mut spans: Vec<&PartPlan> = Vec::new();
    for p in parts {
        if p.last_lba < p.first_lba {
            return bad(format!(
                "partition {} ends (sector {}) before it starts (sector {})",
                p.number, p.last_lba, p.first_lba
            ));
        }
        if !is_extended(p) {
            spans.push(p);
        }
    }
    spans.sort_by_key(|p| p.first_lba);
    for w in spans.windows(2) {
        if w[1].first_lba <= w[0].last_lba {
            return bad(format!(
                "partitions {} and {} overlap",
                w[0].number, w[1].number
            ));
        }
    }
    Ok(())
}
