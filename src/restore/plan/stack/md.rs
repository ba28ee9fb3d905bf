//! MD arrays: made anew by `mdadm --create` with the recorded metadata version, UUID, name,
//! level, chunk, layout, bitmap and data offset, on the planned devices of its members in
//! their recorded roles. Its size on the targets follows from the smallest member.

use super::super::{PlanError, err};
use super::{MdPlan, PlanDev, Planner, StackStep};
use crate::layout::MdArray;

/// What mdadm keeps besides data on each member, beyond the recorded data offset (the 1.0
/// superblock and bitmap at the end): the layers above are sized to leave it.
const MEMBER_RESERVE: u64 = 1 << 20;

impl Planner<'_> {
    pub(super) fn md(&mut self, m: &MdArray, depth: u32) -> Result<(PlanDev, u64), PlanError> {
        if m.create_args.is_empty() {
            return err(format!(
                "{} ({}): the image recorded no mdadm parameters for it",
                m.path, m.level
            ));
        }
        let mut members = Vec::new();
        let mut smallest = u64::MAX;
        for x in &m.members {
            let (dev, bytes) = self.device(&x.device, depth + 1)?;
            smallest = smallest.min(bytes);
            members.push(dev);
            self.describe(&x.device, &format!("MD {} member", m.path));
        }
        let active = m.members.iter().filter(|x| x.role != u32::MAX).count() as u64;
        if members.is_empty() || active == 0 {
            return err(format!("{}: no member to make it on", m.path));
        }
        let data = smallest
            .saturating_sub(m.data_offset_sectors.saturating_mul(512))
            .saturating_sub(MEMBER_RESERVE)
            / MEMBER_RESERVE
            * MEMBER_RESERVE;
        let n = u64::from(m.raid_disks.max(1));
        let size = match m.level.as_str() {
            "raid1" => data,
            "raid0" | "linear" => data * active,
            "raid4" | "raid5" => data * n.saturating_sub(1),
            "raid6" => data * n.saturating_sub(2),
            "raid10" => data * n / 2,
            other => return err(format!("{}: level {other} is not recreated", m.path)),
        };
        if size == 0 {
            return err(format!(
                "{}: its members are too small on the targets ({} bytes)",
                m.path, smallest
            ));
        }
        let dev = PlanDev::Volume(m.path.clone());
        self.volumes.insert(m.name.clone(), (dev.clone(), size));
        self.steps.push(StackStep::Md(MdPlan {
            path: m.path.clone(),
            level: m.level.clone(),
            uuid: m.uuid.clone(),
            members,
            raid_devices: m.raid_disks,
            args: m.create_args.clone(),
            size_bytes: size,
        }));
        Ok((dev, size))
    }
}
