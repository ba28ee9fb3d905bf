//! The block-device ioctls (include/uapi/linux/fs.h, blkpg.h): size, logical sector size,
//! buffer-cache flush, partition table re-read, and BLKPG to add or remove one partition.

use std::io;
use std::os::fd::AsFd;

use rustix::ioctl::{Getter, NoArg, Opcode, Setter, ioctl, opcode};

/// `_IOR(0x12, 114, size_t)`: the device's size in bytes.
const BLKGETSIZE64: Opcode = opcode::read::<u64>(0x12, 114);
/// `_IO(0x12, 97)`: flush the device's buffer cache.
const BLKFLSBUF: Opcode = opcode::none(0x12, 97);
/// `_IO(0x12, 95)`: re-read the partition table.
const BLKRRPART: Opcode = opcode::none(0x12, 95);
/// `_IO(0x12, 105)`: add or delete one partition (`struct blkpg_ioctl_arg`).
const BLKPG: Opcode = opcode::none(0x12, 105);
const BLKPG_ADD_PARTITION: i32 = 1;
const BLKPG_DEL_PARTITION: i32 = 2;

/// Size in bytes of the block device `fd` (BLKGETSIZE64).
pub fn size_bytes(fd: impl AsFd) -> io::Result<u64> {
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which Getter provides.
    let n = unsafe { ioctl(fd, Getter::<BLKGETSIZE64, u64>::new()) }?;
    Ok(n)
}

/// Logical sector size of the block device `fd` (BLKSSZGET).
pub fn sector_size(fd: impl AsFd) -> io::Result<u32> {
    Ok(rustix::fs::ioctl_blksszget(fd)?)
}

/// Drops the device's buffer cache (BLKFLSBUF); dirty buffers are written first.
pub fn flush_buffers(fd: impl AsFd) -> io::Result<()> {
    // SAFETY: BLKFLSBUF takes no argument.
    unsafe { ioctl(fd, NoArg::<BLKFLSBUF>::new()) }?;
    Ok(())
}

/// Asks the driver to re-read the partition table (BLKRRPART); fails where the driver does
/// not (loop devices without partition scanning) or a partition is in use.
pub fn reread_partitions(fd: impl AsFd) -> io::Result<()> {
    // SAFETY: BLKRRPART takes no argument.
    unsafe { ioctl(fd, NoArg::<BLKRRPART>::new()) }?;
    Ok(())
}

/// `struct blkpg_partition`.
#[repr(C)]
struct BlkpgPartition {
    start: i64,
    length: i64,
    pno: i32,
    devname: [u8; 64],
    volname: [u8; 64],
}

/// `struct blkpg_ioctl_arg`.
#[repr(C)]
struct BlkpgArg {
    op: i32,
    flags: i32,
    datalen: i32,
    data: *mut BlkpgPartition,
}

fn blkpg(fd: impl AsFd, op: i32, pno: u32, start: u64, length: u64) -> io::Result<()> {
    let mut p = BlkpgPartition {
        start: start as i64,
        length: length as i64,
        pno: pno as i32,
        devname: [0; 64],
        volname: [0; 64],
    };
    let arg = BlkpgArg {
        op,
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as i32,
        data: &mut p,
    };
    // SAFETY: BLKPG reads one blkpg_ioctl_arg, which Setter passes by pointer; its `data`
    // points at `p`, a blkpg_partition alive until after the call.
    unsafe { ioctl(fd, Setter::<BLKPG, BlkpgArg>::new(arg)) }?;
    Ok(())
}

/// Tells the kernel that partition `pno` of `fd` spans `length` bytes from byte `start`.
pub fn add_partition(fd: impl AsFd, pno: u32, start: u64, length: u64) -> io::Result<()> {
    blkpg(fd, BLKPG_ADD_PARTITION, pno, start, length)
}

/// Tells the kernel to forget partition `pno` of `fd`.
pub fn delete_partition(fd: impl AsFd, pno: u32) -> io::Result<()> {
    blkpg(fd, BLKPG_DEL_PARTITION, pno, 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcodes_match_linux_fs_h() {
        assert_eq!(BLKGETSIZE64 as u64, 0x8008_1272);
        assert_eq!(BLKFLSBUF as u64, 0x1261);
        assert_eq!(BLKRRPART as u64, 0x125F);
        assert_eq!(BLKPG as u64, 0x1269);
    }

    #[test]
    fn blkpg_structs_have_the_kernel_sizes() {
        assert_eq!(std::mem::size_of::<BlkpgPartition>(), 152);
        assert_eq!(std::mem::size_of::<BlkpgArg>(), 24);
    }
}
