//! The btrfs ioctls a restore uses (include/uapi/linux/btrfs.h): create a subvolume, look up
//! a subvolume's id, set the default subvolume, set a subvolume's flags.

use std::ffi::OsStr;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

use rustix::ioctl::{Opcode, Setter, Updater, ioctl, opcode};

/// `struct btrfs_ioctl_vol_args { __s64 fd; char name[4088]; }`.
#[repr(C)]
struct VolArgs {
    fd: i64,
    name: [u8; 4088],
}

/// `struct btrfs_ioctl_ino_lookup_args { __u64 treeid; __u64 objectid; char name[4080]; }`.
#[repr(C)]
struct InoLookupArgs {
    treeid: u64,
    objectid: u64,
    name: [u8; 4080],
}

/// `_IOW(0x94, 14, struct btrfs_ioctl_vol_args)`: create a subvolume in the directory.
const SUBVOL_CREATE: Opcode = opcode::write::<VolArgs>(0x94, 14);
/// `_IOWR(0x94, 18, struct btrfs_ioctl_ino_lookup_args)`.
const INO_LOOKUP: Opcode = opcode::read_write::<InoLookupArgs>(0x94, 18);
/// `_IOW(0x94, 19, __u64)`: set the default subvolume.
const DEFAULT_SUBVOL: Opcode = opcode::write::<u64>(0x94, 19);
/// `_IOW(0x94, 26, __u64)`: set subvolume flags.
const SUBVOL_SETFLAGS: Opcode = opcode::write::<u64>(0x94, 26);
/// The subvolume flag of `SUBVOL_SETFLAGS` that makes it read-only.
pub const SUBVOL_RDONLY: u64 = 1 << 1;
/// The longest name `create_subvolume` passes on (the array's size less the closing NUL).
const MAX_NAME: usize = 4087;

/// Creates subvolume `name` (one path component) in the directory `dir`.
pub fn create_subvolume(dir: impl AsFd, name: &OsStr) -> io::Result<()> {
    let name = name.as_bytes();
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "unusable btrfs subvolume name",
        ));
    }
    let mut args = VolArgs {
        fd: 0,
        name: [0; 4088],
    };
    args.name[..name.len()].copy_from_slice(name);
    // SAFETY: BTRFS_IOC_SUBVOL_CREATE reads one btrfs_ioctl_vol_args, which Setter passes by
    // pointer; `name` is NUL-terminated (the array is longer than the name).
    unsafe { ioctl(dir, Setter::<SUBVOL_CREATE, VolArgs>::new(args)) }?;
    Ok(())
}

/// The id of the subvolume holding `file`: BTRFS_IOC_INO_LOOKUP with tree id 0 looks up
/// `objectid` in the file's own subvolume and returns that subvolume's id as the tree id.
pub fn subvolume_id(file: impl AsFd, objectid: u64) -> io::Result<u64> {
    let mut args = InoLookupArgs {
        treeid: 0,
        objectid,
        name: [0; 4080],
    };
    // SAFETY: BTRFS_IOC_INO_LOOKUP reads and fills one btrfs_ioctl_ino_lookup_args, which
    // Updater passes by pointer.
    unsafe { ioctl(file, Updater::<INO_LOOKUP, InoLookupArgs>::new(&mut args)) }?;
    Ok(args.treeid)
}

/// Makes subvolume `id` the default of the filesystem holding `dir`.
pub fn set_default_subvolume(dir: impl AsFd, id: u64) -> io::Result<()> {
    // SAFETY: BTRFS_IOC_DEFAULT reads one u64, which Setter passes by pointer.
    unsafe { ioctl(dir, Setter::<DEFAULT_SUBVOL, u64>::new(id)) }?;
    Ok(())
}

/// Sets the flags (`SUBVOL_RDONLY`) of the subvolume whose root `subvolume` is.
pub fn set_subvolume_flags(subvolume: impl AsFd, flags: u64) -> io::Result<()> {
    // SAFETY: BTRFS_IOC_SUBVOL_SETFLAGS reads one u64, which Setter passes by pointer.
    unsafe { ioctl(subvolume, Setter::<SUBVOL_SETFLAGS, u64>::new(flags)) }?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcodes_match_linux_btrfs_h() {
        assert_eq!(SUBVOL_CREATE as u64, 0x5000_940E);
        assert_eq!(INO_LOOKUP as u64, 0xD000_9412);
        assert_eq!(DEFAULT_SUBVOL as u64, 0x4008_9413);
        assert_eq!(SUBVOL_SETFLAGS as u64, 0x4008_941A);
        assert_eq!(std::mem::size_of::<VolArgs>(), 4096);
        assert_eq!(std::mem::size_of::<InoLookupArgs>(), 4096);
    }
}
