//! The boot menu: `rescue/grub.cfg.in` rendered for one image. The same config serves BIOS
//! and UEFI GRUB; it finds its medium by the image's id file (`/osimage/id-<hex>`), defaults to
//! `restore-auto` after a countdown of at most 5 s, and talks on the serial port and the screen.

/// The template, compiled in so an installed osimage needs no data directory.
pub const GRUB_CFG_TEMPLATE: &str = include_str!("../../rescue/grub.cfg.in");

/// The longest countdown before the automatic restore (docs/DESIGN.md).
pub const MAX_TIMEOUT_SECS: u32 = 5;

/// The kernel command line every entry starts with: screen and serial console (the last
/// `console=` becomes `/dev/console`); `no_timer_check`: a virtual machine whose host is busy
/// can fail the kernel's boot-time IO-APIC timer test and panic ("IO-APIC + timer doesn't
/// work!", seen under QEMU TCG on a loaded host); the test proves nothing on such a machine
/// and hardware's timers work without it.
pub const BASE_CMDLINE: &str = "console=tty0 console=ttyS0,115200 no_timer_check";

/// What the menu needs to know about the ISO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MenuParams {
    /// ISO path of the kernel (`/osimage/rescue/vmlinuz`).
    pub kernel_path: String,
    /// ISO path of the initramfs.
    pub initrd_path: String,
    /// Countdown before `restore-auto` boots; clamped to [`MAX_TIMEOUT_SECS`].
    pub timeout_secs: u32,
    /// Shown in the entries' titles (the captured host's name).
    pub title: String,
    /// Appended to every entry's command line (`osimage.target=/dev/vda osimage.force=1`).
    pub extra_cmdline: String,
}

impl Default for MenuParams {
    fn default() -> Self {
        MenuParams {
            kernel_path: "/osimage/rescue/vmlinuz".into(),
            initrd_path: "/osimage/rescue/initrd.img".into(),
            timeout_secs: MAX_TIMEOUT_SECS,
            title: "system".into(),
            extra_cmdline: String::new(),
        }
    }
}

/// Renders the GRUB config for the image whose id is `image_id_hex`.
pub fn grub_cfg(image_id_hex: &str, params: &MenuParams) -> String {
    let mut cmdline = format!("{BASE_CMDLINE} osimage.id={image_id_hex}");
    if !params.extra_cmdline.trim().is_empty() {
        cmdline.push(' ');
        cmdline.push_str(params.extra_cmdline.trim());
    }
    GRUB_CFG_TEMPLATE
        .replace("@ID@", image_id_hex)
        .replace(
            "@TIMEOUT@",
            &params.timeout_secs.min(MAX_TIMEOUT_SECS).to_string(),
        )
        .replace("@TITLE@", &grub_quote_safe(&params.title))
        .replace("@KERNEL@", &params.kernel_path)
        .replace("@INITRD@", &params.initrd_path)
        .replace("@CMDLINE@", &cmdline)
}

/// A title cannot break out of its double quotes or expand variables.
fn grub_quote_safe(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '"' | '\\' | '$' | '\n' | '\r' | '`'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(cfg: &'a str, id: &str) -> &'a str {
        let start = cfg
            .find(&format!("--id {id} {{"))
            .unwrap_or_else(|| panic!("{id} missing:\n{cfg}"));
        let end = cfg[start..].find("\n}").unwrap() + start;
        &cfg[start..end]
    }

    #[test]
    fn menu_defaults_to_restore_auto_and_finds_its_medium_by_id() {
        let params = MenuParams {
            title: "web1\"$x".into(),
            timeout_secs: 30,
            extra_cmdline: "osimage.target=/dev/vda".into(),
            ..MenuParams::default()
        };
        let cfg = grub_cfg("00112233445566778899aabbccddeeff", &params);
        assert!(cfg.contains(
            "search --no-floppy --set=root --file /osimage/id-00112233445566778899aabbccddeeff\n"
        ));
        assert!(cfg.contains("set default=restore-auto\n"));
        assert!(cfg.contains("set timeout=5\n"), "clamped");
        assert!(cfg.contains("serial --unit=0 --speed=115200"));
        assert!(cfg.contains("terminal_output serial console"));
        assert!(cfg.contains("terminal_input serial console"));
        assert!(!cfg.contains('@'), "unrendered placeholder:\n{cfg}");
        assert!(cfg.contains("Restore web1x"));
        for (id, flag) in [
            ("restore-auto", "osimage.auto=1"),
            ("restore-interactive", "osimage.interactive=1"),
            ("rescue-shell", "osimage.shell=1"),
        ] {
            let e = entry(&cfg, id);
            let linux = e
                .lines()
                .find(|l| l.trim_start().starts_with("linux "))
                .unwrap();
            assert!(
                linux.contains("/osimage/rescue/vmlinuz console=tty0 console=ttyS0,115200"),
                "{linux}"
            );
            assert!(
                linux.contains(flag) && linux.contains("osimage.target=/dev/vda"),
                "{linux}"
            );
            assert!(linux.contains("osimage.id=00112233445566778899aabbccddeeff"));
            assert!(e.contains("initrd /osimage/rescue/initrd.img"));
        }
        // Only the automatic entry is automatic.
        assert!(!entry(&cfg, "restore-interactive").contains("osimage.auto=1"));
    }
}
