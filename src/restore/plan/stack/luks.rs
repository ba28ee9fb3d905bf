//! LUKS containers: made anew by `cryptsetup luksFormat` with the recorded UUID, label,
//! cipher, key size, sector size, PBKDF and data offset — and a new master key, under the
//! passphrase given at restore — then opened as the recorded mapping, so the captured
//! crypttab, initramfs and fstab find them.

use super::super::{PlanError, err};
use super::{LuksPlan, PlanDev, Planner, StackStep};
use crate::layout::LuksVolume;

impl Planner<'_> {
    pub(super) fn luks(&mut self, l: &LuksVolume, depth: u32) -> Result<(PlanDev, u64), PlanError> {
        if l.mapping.is_empty() || l.format_args.is_empty() {
            return err(format!(
                "LUKS {} on {}: the image recorded no mapping name or parameters",
                l.uuid, l.device.name
            ));
        }
        let (on, bytes) = self.device(&l.device, depth + 1)?;
        let size = bytes.saturating_sub(l.data_offset_bytes);
        if size == 0 {
            return err(format!(
                "LUKS {} ({}): {on} holds {bytes} bytes, not more than its header \
                 ({} bytes)",
                l.mapping, l.uuid, l.data_offset_bytes
            ));
        }
        self.describe(&l.device, &format!("LUKS{} {}", l.version, l.mapping));
        let dev = PlanDev::Volume(format!("/dev/mapper/{}", l.mapping));
        self.volumes.insert(l.name.clone(), (dev.clone(), size));
        self.steps.push(StackStep::Luks(LuksPlan {
            mapping: l.mapping.clone(),
            uuid: l.uuid.clone(),
            on,
            args: l.format_args.clone(),
            open_args: l.open_args.clone(),
            size_bytes: size,
        }));
        Ok((dev, size))
    }
}
