//! The raw `bpf(2)` calls behind the cgroup v2 device controller: load a
//! BPF_PROG_TYPE_CGROUP_DEVICE program, attach it to a cgroup directory, list and detach the
//! programs attached there. The only module of the crate allowed to use `unsafe`.
//!
//! Why by hand rather than a crate: aya and libbpf-rs load programs compiled from C or Rust
//! into ELF objects (a build-time BPF toolchain, BTF, a loader of a few thousand lines) while
//! we need about twenty instructions generated at run time from the spec's rules, plus
//! PROG_QUERY/DETACH to replace our previous program; youki and runc do the same by hand.
//! Each call below fills the leading fields of the kernel's `union bpf_attr` for its command;
//! the kernel zero-fills the rest (it copies only `size` bytes and checks unused fields are 0).

use std::ffi::c_long;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

// bpf(2) commands (include/uapi/linux/bpf.h).
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;
const BPF_PROG_QUERY: libc::c_int = 16;

const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Several programs may sit on one cgroup; all must allow an access. It lets a new program
/// be attached before the old one is detached, so there is no moment without a filter.
const BPF_F_ALLOW_MULTI: u32 = 2;

/// Name given to berth's programs, so an update finds and replaces only its own.
pub(super) const PROG_NAME: &str = "berth_devices";

/// One eBPF instruction, laid out as the kernel's `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Insn {
    pub code: u8,
    /// dst register in the low nibble, src in the high one (little-endian bitfields).
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

// Opcode parts (include/uapi/linux/bpf_common.h, bpf.h).
pub(super) const LDX_MEM_W: u8 = 0x01 | 0x60; // BPF_LDX | BPF_MEM | BPF_W
pub(super) const ALU32: u8 = 0x04;
pub(super) const JMP: u8 = 0x05;
pub(super) const K: u8 = 0x00;
pub(super) const X: u8 = 0x08;
pub(super) const OP_AND: u8 = 0x50;
pub(super) const OP_RSH: u8 = 0x70;
pub(super) const OP_MOV: u8 = 0xb0;
pub(super) const OP_JEQ: u8 = 0x10;
pub(super) const OP_JNE: u8 = 0x50;
pub(super) const OP_EXIT: u8 = 0x90;

impl Insn {
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Self {
            code,
            regs: (dst & 0x0f) | (src << 4),
            off,
            imm,
        }
    }
    #[cfg(test)]
    pub const fn dst(&self) -> u8 {
        self.regs & 0x0f
    }
    #[cfg(test)]
    pub const fn src(&self) -> u8 {
        self.regs >> 4
    }
    /// `dst = *(u32 *)(src + off)`
    pub const fn load_word(dst: u8, src: u8, off: i16) -> Self {
        Self::new(LDX_MEM_W, dst, src, off, 0)
    }
    /// 32-bit `dst op= imm`
    pub const fn alu32_imm(op: u8, dst: u8, imm: i32) -> Self {
        Self::new(ALU32 | op | K, dst, 0, 0, imm)
    }
    /// 32-bit `dst op= src`
    pub const fn alu32_reg(op: u8, dst: u8, src: u8) -> Self {
        Self::new(ALU32 | op | X, dst, src, 0, 0)
    }
    /// `if dst op imm goto +off`
    pub const fn jump_imm(op: u8, dst: u8, imm: i32, off: i16) -> Self {
        Self::new(JMP | op | K, dst, 0, off, imm)
    }
    /// `if dst op src goto +off`
    pub const fn jump_reg(op: u8, dst: u8, src: u8, off: i16) -> Self {
        Self::new(JMP | op | X, dst, src, off, 0)
    }
    pub const fn exit() -> Self {
        Self::new(JMP | OP_EXIT, 0, 0, 0, 0)
    }
    pub fn is_jump(&self) -> bool {
        self.code & 0x07 == JMP && self.code & 0xf0 != OP_EXIT
    }
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The head of the kernel's `struct bpf_prog_info`, up to and including `name`.
#[repr(C)]
#[derive(Default)]
struct ProgInfo {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; 16],
}

/// Issue `bpf(cmd, attr, sizeof attr)`.
///
/// # Safety
/// `T` must be the `#[repr(C)]` prefix of `union bpf_attr` for `cmd`, and every pointer
/// stored in it must point to memory valid (and writable where the kernel writes) for the
/// length stated beside it, for the duration of the call.
unsafe fn sys_bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<c_long> {
    // SAFETY: `attr` is a live, exclusively borrowed struct of exactly size_of::<T>() bytes;
    // the caller guarantees its layout and the pointers inside it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>(),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Wrap a file descriptor the kernel just returned to us.
fn owned_fd(ret: c_long) -> io::Result<OwnedFd> {
    let fd = RawFd::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: bpf(2) returned a new descriptor that nothing else owns or will close.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fd_u32(fd: BorrowedFd<'_>) -> u32 {
    // Valid descriptors are never negative.
    fd.as_raw_fd() as u32
}

/// Load a cgroup device program. On failure the verifier's log is asked for and returned in
/// the error, since "EACCES" alone says nothing about which instruction it disliked.
pub(super) fn load_cgroup_device(insns: &[Insn]) -> Result<OwnedFd, String> {
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..PROG_NAME.len()].copy_from_slice(PROG_NAME.as_bytes());
    let insn_cnt =
        u32::try_from(insns.len()).map_err(|_| format!("{} instructions", insns.len()))?;
    let mut log = vec![0u8; 0];
    for attempt in 0..2 {
        if attempt == 1 {
            log = vec![0u8; 1 << 16];
        }
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt,
            insns: insns.as_ptr() as u64,
            // Cgroup device programs call no GPL-only helper (they call none at all), so any
            // license string is accepted; this is berth's own.
            license: license.as_ptr() as u64,
            log_level: u32::from(attempt == 1),
            log_size: log.len() as u32,
            log_buf: if attempt == 1 {
                log.as_mut_ptr() as u64
            } else {
                0
            },
            prog_name: name,
            ..Default::default()
        };
        // SAFETY: ProgLoadAttr is the BPF_PROG_LOAD prefix of bpf_attr; `insns` (insn_cnt
        // entries), `license` (NUL-terminated) and `log` (log_size bytes, writable) all live
        // until after the call.
        match unsafe { sys_bpf(BPF_PROG_LOAD, &mut attr) } {
            Ok(fd) => return owned_fd(fd).map_err(|e| format!("BPF_PROG_LOAD: {e}")),
            Err(e) if attempt == 0 => {
                tracing::debug!(error = %e, "BPF_PROG_LOAD failed; retrying for the verifier log");
            }
            Err(e) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(&log[..end]);
                return Err(format!("BPF_PROG_LOAD: {e}; verifier: {}", text.trim()));
            }
        }
    }
    Err("BPF_PROG_LOAD: failed".to_string())
}

/// Attach `prog` to the cgroup, beside whatever is already there.
pub(super) fn attach(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: fd_u32(cgroup),
        attach_bpf_fd: fd_u32(prog),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    // SAFETY: AttachAttr is the BPF_PROG_ATTACH prefix of bpf_attr and holds no pointers.
    unsafe { sys_bpf(BPF_PROG_ATTACH, &mut attr) }.map(drop)
}

pub(super) fn detach(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: fd_u32(cgroup),
        attach_bpf_fd: fd_u32(prog),
        attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    // SAFETY: AttachAttr is the BPF_PROG_DETACH prefix of bpf_attr and holds no pointers.
    unsafe { sys_bpf(BPF_PROG_DETACH, &mut attr) }.map(drop)
}

/// Ids of the device programs attached directly to this cgroup (not inherited ones).
pub(super) fn query(cgroup: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    // The kernel allows at most 64 programs per cgroup and attach type.
    let mut ids = vec![0u32; 64];
    let mut attr = QueryAttr {
        target_fd: fd_u32(cgroup),
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    // SAFETY: QueryAttr is the BPF_PROG_QUERY prefix of bpf_attr; `prog_ids` points to
    // `prog_cnt` writable u32s that outlive the call.
    unsafe { sys_bpf(BPF_PROG_QUERY, &mut attr) }?;
    ids.truncate(attr.prog_cnt as usize);
    Ok(ids)
}

/// A descriptor for a loaded program; `None` if it has gone since it was listed.
pub(super) fn prog_by_id(id: u32) -> io::Result<Option<OwnedFd>> {
    let mut attr = GetFdByIdAttr {
        prog_id: id,
        ..Default::default()
    };
    // SAFETY: GetFdByIdAttr is the BPF_PROG_GET_FD_BY_ID prefix of bpf_attr; no pointers.
    match unsafe { sys_bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) } {
        Ok(fd) => owned_fd(fd).map(Some),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A program's id and name.
pub(super) fn prog_info(prog: BorrowedFd<'_>) -> io::Result<(u32, String)> {
    let mut info = ProgInfo::default();
    let mut attr = InfoAttr {
        bpf_fd: fd_u32(prog),
        info_len: std::mem::size_of::<ProgInfo>() as u32,
        info: &mut info as *mut ProgInfo as u64,
    };
    // SAFETY: InfoAttr is the BPF_OBJ_GET_INFO_BY_FD prefix of bpf_attr; `info` points to a
    // writable ProgInfo of `info_len` bytes that outlives the call, and its pointer fields
    // are zero, so the kernel writes nothing through them.
    unsafe { sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) }?;
    let end = info
        .name
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(info.name.len());
    Ok((
        info.id,
        String::from_utf8_lossy(&info.name[..end]).into_owned(),
    ))
}
