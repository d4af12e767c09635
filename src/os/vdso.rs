//! The kernel's `clock_gettime` in the vDSO, found by name, not libc's `clock_gettime`.
//!
//! A program or a preloaded library may define `clock_gettime`: `faketime` preloads
//! libfaketime, whose definition allocates on its first call. The allocator reads the clock on
//! its slow paths (the maintenance tick) and under the page heap's lock, so that definition ran
//! inside the allocator, and a program as small as `/bin/true` hung in every mode (session 75).
//! A system call per read would cost a slow path about 70 ns; the vDSO's function costs what
//! libc's does. When the vDSO or the symbol is missing (valgrind, some emulators), the system
//! call serves.
//!
//! The lookup reads the vDSO's ELF image, which the kernel maps at `AT_SYSINFO_EHDR`: its
//! program headers (the load bias and the dynamic section), the dynamic section (the symbol
//! and string tables, and the symbol count from the SysV hash table), then each symbol's name.

use super::{auxval, system_call};
use core::ffi::{c_int, c_long, CStr};
use core::sync::atomic::{AtomicUsize, Ordering};

/// The vDSO's `clock_gettime` as a function.
type ClockGettime = unsafe extern "C" fn(c_int, *mut libc::timespec) -> c_int;

/// An entry of the dynamic section (`Elf64_Dyn`, the ELF specification's; libc has no type).
#[repr(C)]
struct Dyn {
    tag: i64,
    val: u64,
}

/// Dynamic-section tags and a symbol type, from the ELF specification (`<elf.h>`).
const DT_NULL: i64 = 0;
const DT_HASH: i64 = 4;
const DT_STRTAB: i64 = 5;
const DT_SYMTAB: i64 = 6;
const STT_FUNC: u8 = 2;

/// The function's address; 0 before the lookup, 1 when the lookup found none.
static FUNCTION: AtomicUsize = AtomicUsize::new(0);

/// The symbol's name in this architecture's vDSO (Linux's `arch/*/kernel/vdso` linker scripts).
#[cfg(target_arch = "x86_64")]
const NAME: &CStr = c"__vdso_clock_gettime";
/// See the x86_64 form.
#[cfg(not(target_arch = "x86_64"))]
const NAME: &CStr = c"__kernel_clock_gettime";

/// `clock_gettime(clock, ts)` through the vDSO, or the system call without one. Returns 0, or
/// -1 with `errno` set.
pub fn clock_gettime(clock: c_int, ts: &mut libc::timespec) -> c_int {
    let mut f = FUNCTION.load(Ordering::Relaxed);
    if f == 0 {
        // Racing threads find the same address.
        f = lookup().map_or(1, |a| a);
        FUNCTION.store(f, Ordering::Relaxed);
    }
    if f > 1 {
        // SAFETY: `f` is the vDSO's `clock_gettime`, found by its name in the image the kernel
        // mapped for this process (which stays mapped for its life; a fork child has it at
        // the same address), called with the C ABI and a timespec we own.
        unsafe { core::mem::transmute::<usize, ClockGettime>(f)(clock, ts) }
    } else {
        let a = [clock as c_long, ts as *mut libc::timespec as c_long];
        // SAFETY: clock_gettime writes the timespec we own.
        unsafe { system_call(libc::SYS_clock_gettime, &a) as c_int }
    }
}

/// The address of [`NAME`] in the vDSO, if the kernel mapped one and it defines the symbol.
fn lookup() -> Option<usize> {
    let base = auxval(libc::AT_SYSINFO_EHDR) as usize;
    if base == 0 {
        return None;
    }
    // SAFETY: `AT_SYSINFO_EHDR` is the address of the vDSO's ELF header, an image the kernel
    // mapped readable whole; every offset read below comes from that image's own headers and
    // stays inside it (the kernel builds it; a malformed one is not expected, and each index is
    // bounded by the counts the image gives).
    unsafe {
        let eh = &*(base as *const libc::Elf64_Ehdr);
        if eh.e_ident[..4] != *b"\x7fELF" || eh.e_ident[4] != 2 {
            return None;
        }
        let phdrs = core::slice::from_raw_parts(
            (base + eh.e_phoff as usize) as *const libc::Elf64_Phdr,
            eh.e_phnum as usize,
        );
        // The load bias: where the image is, less where its first segment says it is.
        let load = phdrs.iter().find(|p| p.p_type == libc::PT_LOAD)?;
        let bias = base.wrapping_sub((load.p_vaddr as usize).wrapping_sub(load.p_offset as usize));
        let dynamic = phdrs.iter().find(|p| p.p_type == libc::PT_DYNAMIC)?;
        let mut entry = bias.wrapping_add(dynamic.p_vaddr as usize) as *const Dyn;
        let (mut symtab, mut strtab, mut hash) = (0usize, 0usize, 0usize);
        loop {
            let d = &*entry;
            let at = bias.wrapping_add(d.val as usize);
            match d.tag {
                DT_NULL => break,
                DT_SYMTAB => symtab = at,
                DT_STRTAB => strtab = at,
                DT_HASH => hash = at,
                _ => {}
            }
            entry = entry.add(1);
        }
        if symtab == 0 || strtab == 0 || hash == 0 {
            return None;
        }
        // The SysV hash table: nbucket, nchain, ...; nchain is the number of symbols.
        let nsyms = *(hash as *const u32).add(1) as usize;
        let syms = core::slice::from_raw_parts(symtab as *const libc::Elf64_Sym, nsyms);
        syms.iter()
            .find(|s| {
                s.st_shndx != 0
                    && s.st_value != 0
                    && (s.st_info & 0xf) == STT_FUNC
                    && CStr::from_ptr((strtab + s.st_name as usize) as *const _) == NAME
            })
            .map(|s| bias.wrapping_add(s.st_value as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vDSO's clock (or the system call) reads as libc's does.
    #[test]
    fn the_clock_reads_as_libc_reads_it() {
        let mut ours = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let mut theirs = ours;
        // SAFETY: clock_gettime writes the timespec we own.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut theirs) };
        assert_eq!(clock_gettime(libc::CLOCK_MONOTONIC, &mut ours), 0);
        let ns = |t: libc::timespec| t.tv_sec as i128 * 1_000_000_000 + t.tv_nsec as i128;
        let d = ns(ours) - ns(theirs);
        assert!((0..1_000_000_000).contains(&d), "{d} ns apart");
        // On x86_64 Linux the kernel maps a vDSO that defines the symbol.
        if cfg!(target_arch = "x86_64") {
            assert!(lookup().is_some(), "the vDSO's clock_gettime");
        }
    }
}
