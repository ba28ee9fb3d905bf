//! The agent's questions as plain functions over "say a line" and "ask, read a line" (`None`:
//! end of input), so the dialogue is tested in-process with a scripted terminal.

use super::Disk;
use crate::restore::default_layout::{BIOS_BOOT_MIB, ESP_MIB};
use crate::restore::plan::size;

/// What a disk holds (`found` of `restore::target::contents_of`: empty for an empty disk).
pub type Held<'a> = &'a dyn Fn(&str) -> Result<Vec<String>, String>;

/// Lists the disks with what they hold, asks for one and, for a disk that holds data, asks
/// for its name typed again. `preset`: the disk named by `osimage.target`, confirmed the same
/// way. `Ok(Some((device, holds_data)))`, `Ok(None)` when the user wants the shell (or did not
/// confirm), `Err` when the input ended.
pub fn choose_disk(
    say: &mut dyn FnMut(&str),
    ask: &mut dyn FnMut(&str) -> Option<String>,
    disks: &[Disk],
    held: Held,
    preset: Option<&String>,
) -> Result<Option<(String, bool)>, String> {
    const NO_INPUT: &str = "no-input (interactive mode needs a keyboard)";
    say("osimage: disks (the boot medium is not listed):");
    for d in disks {
        let what = match held(&d.device) {
            Ok(f) if f.is_empty() => "empty".to_string(),
            Ok(f) => f.join("; "),
            Err(e) => format!("unreadable: {e}"),
        };
        say(&format!(
            "  {}  {}  {:?}  {what}",
            d.device,
            size(d.size_bytes),
            d.model
        ));
    }
    loop {
        let pick = match preset {
            Some(p) => p.clone(),
            None => ask("osimage: restore onto which disk? (e.g. /dev/vda; 'shell' to stop)")
                .ok_or(NO_INPUT)?,
        };
        if pick == "shell" || pick.is_empty() {
            return Ok(None);
        }
        let pick = if pick.starts_with("/dev/") {
            pick
        } else {
            format!("/dev/{pick}")
        };
        let Some(d) = disks.iter().find(|d| d.device == pick) else {
            say(&format!("osimage: {pick} is not one of the disks listed"));
            if preset.is_some() {
                return Ok(None);
            }
            continue;
        };
        let found = held(&d.device)?;
        if found.is_empty() {
            return Ok(Some((pick, false)));
        }
        say(&format!(
            "osimage: the restore DESTROYS everything on {pick}:"
        ));
        for f in &found {
            say(&format!("  {f}"));
        }
        return match ask(&format!(
            "osimage: type {pick} to confirm, anything else to stop"
        )) {
            Some(a) if a == pick => Ok(Some((pick, true))),
            Some(_) => Ok(None),
            None => Err(NO_INPUT.into()),
        };
    }
}

/// The last question of an interactive restore, asked after the plan was shown: write it onto
/// `devices`? `Some(true)` yes, `Some(false)` no (back to the shell), `None` when the input
/// ended. Anything but yes/no is asked again.
pub fn confirm_plan(
    say: &mut dyn FnMut(&str),
    ask: &mut dyn FnMut(&str) -> Option<String>,
    devices: &str,
) -> Option<bool> {
    loop {
        let a = ask(&format!(
            "osimage: restore onto {devices} as planned above? [yes/no]"
        ))?;
        match a.to_ascii_lowercase().as_str() {
            "y" | "yes" => return Some(true),
            "n" | "no" => return Some(false),
            _ => say("osimage: please answer yes or no"),
        }
    }
}

/// Asks whether an image that recorded no disk layout goes onto the default layout. `Some`
/// answer, `None` when the input ended. Anything but yes/no is asked again.
pub fn default_layout(
    say: &mut dyn FnMut(&str),
    ask: &mut dyn FnMut(&str) -> Option<String>,
) -> Option<bool> {
    say("osimage: this image recorded no disk layout (a plain directory was captured).");
    say(&format!(
        "osimage: the default layout is GPT: a {BIOS_BOOT_MIB} MiB BIOS boot partition, a \
         {ESP_MIB} MiB EFI System Partition (vfat) and an ext4 root filling the disk, with fresh \
         UUIDs; etc/fstab is written for them and GRUB installed from the image's own tree."
    ));
    loop {
        let a = ask("osimage: restore onto the default layout? [yes/no]")?;
        match a.to_ascii_lowercase().as_str() {
            "y" | "yes" => return Some(true),
            "n" | "no" => return Some(false),
            _ => say("osimage: please answer yes or no"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` against scripted answers; returns its result and everything said or asked.
    fn scripted<T>(
        answers: &[&str],
        f: impl FnOnce(&mut dyn FnMut(&str), &mut dyn FnMut(&str) -> Option<String>) -> T,
    ) -> (T, Vec<String>) {
        let said = std::cell::RefCell::new(Vec::new());
        let mut answers = answers.iter().map(|a| a.to_string());
        let mut say = |l: &str| said.borrow_mut().push(l.to_string());
        let mut ask = |p: &str| {
            said.borrow_mut().push(format!("? {p}"));
            answers.next()
        };
        let r = f(&mut say, &mut ask);
        (r, said.into_inner())
    }

    fn disks() -> Vec<Disk> {
        ["/dev/vda", "/dev/vdb"]
            .iter()
            .map(|d| Disk {
                device: d.to_string(),
                size_bytes: 8 << 30,
                model: "QEMU".into(),
                blank: *d == "/dev/vda",
                removable: false,
                read_only: false,
            })
            .collect()
    }

    /// vda is empty, vdb holds a GPT with an ext4.
    fn held(device: &str) -> Result<Vec<String>, String> {
        Ok(if device == "/dev/vdb" {
            vec!["GPT partition table".into(), "ext4 at 1 MiB".into()]
        } else {
            Vec::new()
        })
    }

    #[test]
    fn empty_disk_is_taken_without_confirmation_and_unknown_names_are_asked_again() {
        let d = disks();
        let (r, said) = scripted(&["sdz", "vda"], |s, a| choose_disk(s, a, &d, &held, None));
        assert_eq!(r, Ok(Some(("/dev/vda".to_string(), false))));
        assert!(
            said.iter()
                .any(|l| l.contains("/dev/vdb") && l.contains("ext4 at 1 MiB")),
            "{said:?}"
        );
        assert!(
            said.iter()
                .any(|l| l.contains("/dev/sdz is not one of the disks")),
            "{said:?}"
        );
        assert!(!said.iter().any(|l| l.contains("DESTROYS")));
    }

    #[test]
    fn a_disk_holding_data_needs_its_name_typed_again() {
        let d = disks();
        let (r, said) = scripted(&["/dev/vdb", "/dev/vdb"], |s, a| {
            choose_disk(s, a, &d, &held, None)
        });
        assert_eq!(r, Ok(Some(("/dev/vdb".to_string(), true))));
        assert!(
            said.iter()
                .any(|l| l.contains("DESTROYS everything on /dev/vdb"))
        );
        // Anything else stops; end of input is an error, never a yes.
        let (r, _) = scripted(&["vdb", "yes"], |s, a| choose_disk(s, a, &d, &held, None));
        assert_eq!(r, Ok(None));
        let (r, _) = scripted(&["vdb"], |s, a| choose_disk(s, a, &d, &held, None));
        assert!(r.unwrap_err().contains("no-input"));
        let (r, _) = scripted(&["shell"], |s, a| choose_disk(s, a, &d, &held, None));
        assert_eq!(r, Ok(None));
        // osimage.target= preset: no question for the disk, still the confirmation.
        let t = "/dev/vdb".to_string();
        let (r, said) = scripted(&["/dev/vdb"], |s, a| choose_disk(s, a, &d, &held, Some(&t)));
        assert_eq!(r, Ok(Some((t.clone(), true))));
        assert_eq!(said.iter().filter(|l| l.starts_with("? ")).count(), 1);
    }

    #[test]
    fn default_layout_is_asked_until_yes_or_no() {
        let (r, said) = scripted(&["maybe", "YES"], |s, a| default_layout(s, a));
        assert_eq!(r, Some(true));
        assert_eq!(said.iter().filter(|l| l.starts_with("? ")).count(), 2);
        assert!(
            said.iter().any(|l| l.contains("512 MiB EFI System")),
            "{said:?}"
        );
        assert!(said.iter().any(|l| l.contains("answer yes or no")));
        assert_eq!(scripted(&["n"], |s, a| default_layout(s, a)).0, Some(false));
        assert_eq!(scripted(&[], |s, a| default_layout(s, a)).0, None);
    }

    #[test]
    fn the_plan_is_confirmed_before_anything_is_written() {
        let (r, said) = scripted(&["maybe", "yes"], |say, ask| {
            confirm_plan(say, ask, "/dev/vdb")
        });
        assert_eq!(r, Some(true));
        assert!(said.iter().any(|l| l.contains("please answer")), "{said:?}");
        assert!(said[0].contains("/dev/vdb as planned above"), "{said:?}");
        let (r, _) = scripted(&["no"], |say, ask| confirm_plan(say, ask, "/dev/vdb"));
        assert_eq!(r, Some(false));
        let (r, _) = scripted(&[], |say, ask| confirm_plan(say, ask, "/dev/vdb"));
        assert_eq!(r, None);
    }
}
