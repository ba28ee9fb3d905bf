//! The agent's questions as plain functions over "say a line" and "ask, read a line" (`None`:
//! end of input), so the dialogue is tested in-process with a scripted terminal.

use crate::restore::default_layout::{BIOS_BOOT_MIB, ESP_MIB};

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
}
