//! What `verify --boot` reads on a serial console: the rescue agent's lines (docs/RESCUE.md,
//! docs/RESTORE.md), the first-boot marker of the unit verify adds to the scratch disk
//! (`firstboot`), and the signs of a boot that will not come up.

/// The agent found its medium and the disks (end of the rescue-boot phase).
pub const RESCUE_READY: &str = "OSIMAGE-RESCUE-READY";
pub const RESTORE_DONE: &str = "OSIMAGE-RESTORE-DONE";
pub const RESTORE_FAILED: &str = "OSIMAGE-RESTORE-FAILED";
/// Unattended mode found no single empty disk and fell back to asking: it would wait forever.
pub const RESTORE_WAITING: &str = "OSIMAGE-RESTORE-WAITING";

/// Printed by the first-boot unit once the default target is active.
pub const BOOTED: &str = "OSIMAGE-VERIFY-BOOTED";
/// Printed by the first-boot hooks when the system did not come up (emergency or rescue
/// shell, default target not active).
pub const NOT_BOOTED: &str = "OSIMAGE-VERIFY-NOT-BOOTED";

/// Failures visible on a console, whoever prints them.
pub const KERNEL_PANIC: &str = "Kernel panic - not syncing";
/// systemd's emergency and rescue shells, and GRUB's prompts when it found no configuration.
pub const BOOT_FAILURES: &[&str] = &[
    KERNEL_PANIC,
    "You are in emergency mode",
    "You are in rescue mode",
    "Give root password for maintenance",
    "grub rescue>",
    "grub> ",
];

/// The last `n` lines of `console`, with terminal escape sequences and carriage returns
/// removed (GRUB's menu draws with them).
pub fn tail(console: &str, n: usize) -> Vec<String> {
    let lines: Vec<String> = console
        .lines()
        .map(clean)
        .filter(|l| !l.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// One line without ANSI escape sequences and control characters.
pub fn clean(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ params final-byte; other escapes: ESC + one character
            if chars.peek() == Some(&'[') {
                chars.next();
                for d in chars.by_ref() {
                    if ('@'..='~').contains(&d) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
        } else if !c.is_control() || c == '\t' {
            out.push(c);
        }
    }
    out
}

/// The first console line holding `needle`, cleaned.
pub fn line_with(console: &str, needle: &str) -> Option<String> {
    console
        .lines()
        .find(|l| l.contains(needle))
        .map(|l| clean(l).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_drops_escapes_and_blank_lines() {
        let c = "a\n\u{1b}[2J\u{1b}[1;1Hgrub menu\r\n\n  \nlast\n";
        assert_eq!(tail(c, 2), vec!["grub menu".to_string(), "last".into()]);
        assert_eq!(tail(c, 10).len(), 3);
    }

    #[test]
    fn finds_the_marker_line() {
        let c = "x\nfoo OSIMAGE-RESTORE-FAILED no disk\r\n";
        assert_eq!(
            line_with(c, RESTORE_FAILED).as_deref(),
            Some("foo OSIMAGE-RESTORE-FAILED no disk")
        );
        assert_eq!(line_with(c, RESTORE_DONE), None);
    }
}
