//! Loop devices (include/uapi/linux/loop.h): a free one from `/dev/loop-control`, a backing
//! file attached and detached, and autoclear (the device detaches itself when its last user
//! closes it).

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};

use rustix::ioctl::{Getter, Ioctl, IoctlOutput, NoArg, Opcode, Setter, ioctl, opcode};

/// The loop ioctls predate the direction bits: plain `0x4C00 + n`.
const LOOP_SET_FD: Opcode = opcode::none(0x4C, 0x00);
const LOOP_CLR_FD: Opcode = opcode::none(0x4C, 0x01);
const LOOP_SET_STATUS64: Opcode = opcode::none(0x4C, 0x04);
const LOOP_GET_STATUS64: Opcode = opcode::none(0x4C, 0x05);
const LOOP_CTL_GET_FREE: Opcode = opcode::none(0x4C, 0x82);
/// `lo_flags` bit: detach when the last user closes the device.
const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// `struct loop_info64`.
#[repr(C)]
#[derive(Clone, Copy)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    sizelimit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

/// An ioctl without argument whose result is its (non-negative) return value.
struct ReturnsInt<const OPCODE: Opcode>;

// SAFETY: the ioctl passes no pointer (null) and reads nothing back through one; its output
// is the syscall's return value, which rustix has already checked for an error.
unsafe impl<const OPCODE: Opcode> Ioctl for ReturnsInt<OPCODE> {
    type Output = IoctlOutput;
    const IS_MUTATING: bool = false;

    fn opcode(&self) -> Opcode {
        OPCODE
    }

    fn as_ptr(&mut self) -> *mut std::ffi::c_void {
        std::ptr::null_mut()
    }

    unsafe fn output_from_ptr(
        out: IoctlOutput,
        _: *mut std::ffi::c_void,
    ) -> rustix::io::Result<IoctlOutput> {
        Ok(out)
    }
}

/// The number of a free loop device (LOOP_CTL_GET_FREE on `/dev/loop-control`, which
/// creates one when none is free): the device is `/dev/loopN`.
pub fn get_free(control: &File) -> io::Result<u32> {
    // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
    let n = unsafe { ioctl(control, ReturnsInt::<LOOP_CTL_GET_FREE>) }?;
    Ok(n as u32)
}

/// Attaches `backing` to the loop device `dev` (LOOP_SET_FD); the device is read-only when
/// `backing` was opened read-only.
pub fn set_fd(dev: impl AsFd, backing: &File) -> io::Result<()> {
    let fd = backing.as_raw_fd();
    // SAFETY: LOOP_SET_FD takes an open file descriptor as its integer argument; `backing`
    // stays open across the call.
    unsafe {
        ioctl(
            dev,
            rustix::ioctl::IntegerSetter::<LOOP_SET_FD>::new_usize(fd as usize),
        )
    }?;
    Ok(())
}

/// Detaches the loop device `dev` from its backing file (LOOP_CLR_FD).
pub fn clear_fd(dev: impl AsFd) -> io::Result<()> {
    // SAFETY: LOOP_CLR_FD takes no argument.
    unsafe { ioctl(dev, NoArg::<LOOP_CLR_FD>::new()) }?;
    Ok(())
}

/// Sets autoclear on the attached loop device `dev`: it detaches itself when its last user
/// (descriptor or mount) is gone, so a killed process leaves nothing attached.
pub fn set_autoclear(dev: impl AsFd) -> io::Result<()> {
    let dev = dev.as_fd();
    // SAFETY: LOOP_GET_STATUS64 writes one loop_info64, which Getter provides.
    let mut info = unsafe { ioctl(dev, Getter::<LOOP_GET_STATUS64, LoopInfo64>::new()) }?;
    info.flags |= LO_FLAGS_AUTOCLEAR;
    // SAFETY: LOOP_SET_STATUS64 reads one loop_info64, which Setter passes by pointer.
    unsafe { ioctl(dev, Setter::<LOOP_SET_STATUS64, LoopInfo64>::new(info)) }?;
    Ok(())
}

/// Makes the attached loop device `dev` show `len` bytes of its backing file from `offset`
/// (a filesystem inside a disk image), keeping its other settings.
pub fn set_window(dev: impl AsFd, offset: u64, len: u64) -> io::Result<()> {
    let dev = dev.as_fd();
    // SAFETY: LOOP_GET_STATUS64 writes one loop_info64, which Getter provides.
    let mut info = unsafe { ioctl(dev, Getter::<LOOP_GET_STATUS64, LoopInfo64>::new()) }?;
    info.offset = offset;
    info.sizelimit = len;
    // SAFETY: LOOP_SET_STATUS64 reads one loop_info64, which Setter passes by pointer.
    unsafe { ioctl(dev, Setter::<LOOP_SET_STATUS64, LoopInfo64>::new(info)) }?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opcodes_match_linux_loop_h() {
        assert_eq!(LOOP_SET_FD as u64, 0x4C00);
        assert_eq!(LOOP_CLR_FD as u64, 0x4C01);
        assert_eq!(LOOP_SET_STATUS64 as u64, 0x4C04);
        assert_eq!(LOOP_GET_STATUS64 as u64, 0x4C05);
        assert_eq!(LOOP_CTL_GET_FREE as u64, 0x4C82);
    }

    #[test]
    fn loop_info64_has_the_kernel_size() {
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
    }
}
