//! The command line's spelling of the library's enumerated choices: clap's `ValueEnum` lives
//! here, on the front-end, so the library does not depend on clap (issue #18). Each enum
//! converts into the library's own type.

use clap::ValueEnum;
use osimage::ImageFormat;
use osimage::{AccelChoice, FirmwareChoice};

/// `verify --boot --firmware`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Firmware {
    Bios,
    Uefi,
    /// UEFI with Secure Boot on and Microsoft's keys enrolled (SECUREBOOT.md in
    /// /usr/share/doc/osimage).
    #[value(name = "uefi-secureboot")]
    UefiSecureBoot,
    Both,
}

impl From<Firmware> for FirmwareChoice {
    fn from(f: Firmware) -> Self {
        match f {
            Firmware::Bios => FirmwareChoice::Bios,
            Firmware::Uefi => FirmwareChoice::Uefi,
            Firmware::UefiSecureBoot => FirmwareChoice::UefiSecureBoot,
            Firmware::Both => FirmwareChoice::Both,
        }
    }
}

/// `verify --boot --accel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Accel {
    /// KVM when a test guest runs on /dev/kvm, else TCG.
    Auto,
    Kvm,
    Tcg,
}

impl From<Accel> for AccelChoice {
    fn from(a: Accel) -> Self {
        match a {
            Accel::Auto => AccelChoice::Auto,
            Accel::Kvm => AccelChoice::Kvm,
            Accel::Tcg => AccelChoice::Tcg,
        }
    }
}

/// `schedule install --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A bootable ISO (payload + rescue environment); `latest.iso`.
    Iso,
    /// The payload alone; `latest.oimg`.
    Oimg,
}

impl From<Format> for ImageFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Iso => ImageFormat::Iso,
            Format::Oimg => ImageFormat::Oimg,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The command line offers exactly the library's choices, under the names they had when
    /// the library derived them itself.
    #[test]
    fn names_are_the_documented_ones() {
        let fw: Vec<String> = Firmware::value_variants()
            .iter()
            .map(|v| v.to_possible_value().unwrap().get_name().to_string())
            .collect();
        assert_eq!(fw, ["bios", "uefi", "uefi-secureboot", "both"]);
        let accel: Vec<String> = Accel::value_variants()
            .iter()
            .map(|v| v.to_possible_value().unwrap().get_name().to_string())
            .collect();
        assert_eq!(accel, ["auto", "kvm", "tcg"]);
        let fmt: Vec<String> = Format::value_variants()
            .iter()
            .map(|v| v.to_possible_value().unwrap().get_name().to_string())
            .collect();
        assert_eq!(fmt, ["iso", "oimg"]);
    }
}
