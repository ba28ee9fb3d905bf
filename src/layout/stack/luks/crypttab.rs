//! The captured root's `etc/crypttab` (crypttab(5)): which LUKS container the system opens
//! at boot, under which name, with which key and options.

use crate::layout::fstab::{option, unescape};

/// One line of crypttab: `name device [key [options]]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrypttabEntry {
    /// 1-based line number.
    pub line: u32,
    /// The mapped name: `/dev/mapper/<name>`.
    pub name: String,
    /// The device as written: `UUID=…`, `PARTUUID=…`, `LABEL=…`, `/dev/…`.
    pub device: String,
    /// The key file as written; `None` when the field is absent, `none` or `-`, which all
    /// mean "ask for a passphrase" (crypttab(5), third field).
    pub key: Option<String>,
    /// The comma-separated options as written (`luks,discard`); empty when absent or `-`.
    pub options: String,
}

impl CrypttabEntry {
    /// The value of option `name` (`keyscript=…`), or `Some("")` for a flag (`discard`).
    pub fn option(&self, name: &str) -> Option<&str> {
        option(&self.options, name)
    }
}

/// Parses crypttab text. Blank lines and comments (`#`) are skipped, and so are lines with
/// fewer than two or more than four fields, which systemd-cryptsetup-generator and Debian's
/// cryptdisks ignore as well; fields take fstab's octal escapes (`\040` for a space).
pub fn parse_crypttab(text: &str) -> Vec<CrypttabEntry> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let fields: Vec<String> = trimmed.split_whitespace().map(unescape).collect();
        let (name, device, key, options) = match &fields[..] {
            [n, d] => (n, d, None, None),
            [n, d, k] => (n, d, Some(k), None),
            [n, d, k, o] => (n, d, Some(k), Some(o)),
            _ => continue,
        };
        out.push(CrypttabEntry {
            line: n as u32 + 1,
            name: name.clone(),
            device: device.clone(),
            key: key.filter(|k| *k != "none" && *k != "-").cloned(),
            options: options.filter(|o| *o != "-").cloned().unwrap_or_default(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_devices_keys_and_options() {
        let text = "# <target> <source> <key> <options>\n\
            \n\
            sda3_crypt UUID=6d1c3e0a-9f5b-4c47-8e2a-0b7f1d2c3a4e none luks,discard\n\
            \t  # indented comment\n\
            swap /dev/vda2 /dev/urandom swap,cipher=aes-xts-plain64,size=256\n\
            home PARTUUID=0a0b-01 /etc/keys/home\\040key.bin\n\
            data LABEL=data\n\
            broken\n\
            too many fields here really\n\
            dash /dev/vdb - -\n";
        let e = parse_crypttab(text);
        let short: Vec<_> = e
            .iter()
            .map(|x| {
                (
                    x.line,
                    x.name.as_str(),
                    x.device.as_str(),
                    x.key.as_deref(),
                    x.options.as_str(),
                )
            })
            .collect();
        assert_eq!(
            short,
            [
                (
                    3,
                    "sda3_crypt",
                    "UUID=6d1c3e0a-9f5b-4c47-8e2a-0b7f1d2c3a4e",
                    None,
                    "luks,discard"
                ),
                (
                    5,
                    "swap",
                    "/dev/vda2",
                    Some("/dev/urandom"),
                    "swap,cipher=aes-xts-plain64,size=256"
                ),
                (
                    6,
                    "home",
                    "PARTUUID=0a0b-01",
                    Some("/etc/keys/home key.bin"),
                    ""
                ),
                (7, "data", "LABEL=data", None, ""),
                (10, "dash", "/dev/vdb", None, ""),
            ]
        );
        assert_eq!(e[0].option("discard"), Some(""));
        assert_eq!(e[1].option("size"), Some("256"));
        assert_eq!(e[0].option("keyscript"), None);
    }
}
