//! Typed access to the memory of the running user address space.
//!
//! Every access names a user address range, which is checked first (inside user space, no
//! overflow), then copied by one `rep movsb` that hal's page-fault handler recognises: a
//! fault on a user address there resumes after the copy with the bytes not copied, so an
//! unmapped, read-only or otherwise bad user pointer becomes a [`Fault`] (the kernel's
//! `EFAULT`), never a kernel fault. With SMAP the copy opens user memory (`stac`) for exactly
//! that instruction; it runs with interrupts off, so no handler ever runs with it open.

use alloc::vec::Vec;
use core::{arch::global_asm, marker::PhantomData};

pub use crate::mm::{Access, AddressSpace, USER_END, deactivate};

/// A user pointer that did not work: `address` is where the range starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The first address of the access.
    pub address: u64,
}

global_asm!(
    r#"
    .section .text.hal_user_copy, "ax"
    .global hal_user_copy
    .global hal_user_copy_insn
    .global hal_user_copy_done
hal_user_copy:
    mov rcx, rdx
hal_user_copy_insn:
    rep movsb
hal_user_copy_done:
    mov rax, rcx
    ret

    .global hal_user_copy_smap
    .global hal_user_copy_smap_insn
    .global hal_user_copy_smap_done
hal_user_copy_smap:
    mov rcx, rdx
    stac
hal_user_copy_smap_insn:
    rep movsb
hal_user_copy_smap_done:
    clac
    mov rax, rcx
    ret
    "#
);

unsafe extern "C" {
    /// Copies `len` bytes from `src` to `dst`; returns how many were not copied.
    fn hal_user_copy(dst: *mut u8, src: *const u8, len: usize) -> usize;
    /// The same, with user access opened by `stac` (only where the CPU has SMAP).
    fn hal_user_copy_smap(dst: *mut u8, src: *const u8, len: usize) -> usize;
    static hal_user_copy_insn: u8;
    static hal_user_copy_done: u8;
    static hal_user_copy_smap_insn: u8;
    static hal_user_copy_smap_done: u8;
}

/// Whether `rip` is the copy instruction (a fault there may touch user memory).
pub(crate) fn is_copy(rip: u64) -> bool {
    rip == (&raw const hal_user_copy_insn) as u64
        || rip == (&raw const hal_user_copy_smap_insn) as u64
}

/// Where a page fault at `rip` on user address `address` resumes, if `rip` is the copy.
pub(crate) fn fixup(rip: u64, address: u64) -> Option<u64> {
    if address >= USER_END {
        return None;
    }
    if rip == (&raw const hal_user_copy_insn) as u64 {
        Some((&raw const hal_user_copy_done) as u64)
    } else if rip == (&raw const hal_user_copy_smap_insn) as u64 {
        Some((&raw const hal_user_copy_smap_done) as u64)
    } else {
        None
    }
}

/// Checks that `[address, address + len)` lies in user space.
fn check(address: u64, len: usize) -> Result<(), Fault> {
    match address.checked_add(len as u64) {
        Some(end) if end <= USER_END => Ok(()),
        _ => Err(Fault { address }),
    }
}

/// Copies between a checked user range and a kernel buffer; `Err` if any byte faulted.
fn copy(dst: *mut u8, src: *const u8, len: usize, user: u64) -> Result<(), Fault> {
    if len == 0 {
        return Ok(());
    }
    let smap = crate::mm::Protections::active().smap;
    let were_enabled = crate::cpu::interrupts_enabled();
    crate::cpu::disable_interrupts();
    // SAFETY: the user side was checked to lie in user space, so it can be no kernel memory
    // (a fault there resumes after the copy); the kernel side is a live buffer of `len` bytes
    // the caller borrows. `stac` is used only where SMAP exists.
    let left = unsafe {
        if smap {
            hal_user_copy_smap(dst, src, len)
        } else {
            hal_user_copy(dst, src, len)
        }
    };
    if were_enabled {
        crate::cpu::enable_interrupts();
    }
    if left == 0 {
        Ok(())
    } else {
        Err(Fault { address: user })
    }
}

/// Copies `out.len()` bytes from user address `src`.
pub fn copy_from_user(src: u64, out: &mut [u8]) -> Result<(), Fault> {
    check(src, out.len())?;
    copy(out.as_mut_ptr(), src as *const u8, out.len(), src)
}

/// Copies `data` to user address `dst`.
pub fn copy_to_user(dst: u64, data: &[u8]) -> Result<(), Fault> {
    check(dst, data.len())?;
    copy(dst as *mut u8, data.as_ptr(), data.len(), dst)
}

/// Why [`read_cstr`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CStrError {
    /// A byte before the terminator could not be read.
    Fault(Fault),
    /// No terminator within the limit (Linux: `ENAMETOOLONG` for paths, `E2BIG` for args).
    TooLong,
}

/// Reads a NUL-terminated string of at most `max` bytes (terminator excluded) from `src`.
pub fn read_cstr(src: u64, max: usize) -> Result<Vec<u8>, CStrError> {
    let mut out = Vec::new();
    let mut at = src;
    loop {
        // Read up to the end of the page: the next page may legitimately be unmapped.
        let in_page = (4096 - (at & 4095)) as usize;
        let want = in_page.min(max + 1 - out.len());
        let mut chunk = [0u8; 4096];
        copy_from_user(at, &mut chunk[..want]).map_err(CStrError::Fault)?;
        if let Some(nul) = chunk[..want].iter().position(|&b| b == 0) {
            out.extend_from_slice(&chunk[..nul]);
            return Ok(out);
        }
        out.extend_from_slice(&chunk[..want]);
        if out.len() > max {
            return Err(CStrError::TooLong);
        }
        at += want as u64;
    }
}

/// Plain data that may be copied to and from user memory: every bit pattern is a valid value
/// and it has no padding. Implemented by hal for the types the ABI uses.
///
/// # Safety
/// Implementors must have no padding bytes and no invalid bit patterns.
pub unsafe trait UserValue: Copy + Default {}

macro_rules! user_values {
    ($($t:ty),*) => {
        // SAFETY: integers have no padding and every bit pattern is valid.
        $(unsafe impl UserValue for $t {})*
    };
}
user_values!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);
// SAFETY: an array of plain values is plain: no padding between elements of these types.
unsafe impl<T: UserValue, const N: usize> UserValue for [T; N] where [T; N]: Default {}

/// A typed pointer into user memory. Holding one proves nothing: each access is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserPtr<T> {
    address: u64,
    _type: PhantomData<fn() -> T>,
}

impl<T: UserValue> UserPtr<T> {
    /// The pointer a user program passed.
    pub fn new(address: u64) -> Self {
        Self {
            address,
            _type: PhantomData,
        }
    }

    /// Its address.
    pub fn address(self) -> u64 {
        self.address
    }

    /// The pointer `count` elements further on (`Err` on overflow).
    pub fn offset(self, count: usize) -> Result<Self, Fault> {
        let bytes = (size_of::<T>() as u64).checked_mul(count as u64);
        bytes
            .and_then(|b| self.address.checked_add(b))
            .map(Self::new)
            .ok_or(Fault {
                address: self.address,
            })
    }

    /// Reads the value.
    pub fn read(self) -> Result<T, Fault> {
        let mut value = T::default();
        check(self.address, size_of::<T>())?;
        copy(
            (&raw mut value).cast::<u8>(),
            self.address as *const u8,
            size_of::<T>(),
            self.address,
        )?;
        Ok(value)
    }

    /// Writes `value`.
    pub fn write(self, value: T) -> Result<(), Fault> {
        check(self.address, size_of::<T>())?;
        copy(
            self.address as *mut u8,
            (&raw const value).cast::<u8>(),
            size_of::<T>(),
            self.address,
        )
    }
}
