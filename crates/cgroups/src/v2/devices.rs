//! v2 devices: cgroup v2 has no devices files; access is decided by an eBPF program of type
//! BPF_PROG_TYPE_CGROUP_DEVICE attached to the container's cgroup. This module compiles the
//! spec's rules into that program and swaps it in for the one berth attached before.
//!
//! The program sees `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`,
//! where `access_type` is `(access << 16) | type`, and returns 1 to allow, 0 to deny (EPERM).
//! Rules are tested from the last to the first, so the last matching rule wins, like runc;
//! nothing matching means deny. An allow rule matches when the requested access is a subset
//! of the rule's; a deny rule when they share any bit (asking for `rw` where `w` is denied
//! is denied, as in v1).

use std::os::fd::AsFd;
use std::path::Path;

use oci_spec::runtime::LinuxDeviceCgroup;

use super::bpf::{self, Insn, OP_AND, OP_JEQ, OP_JNE, OP_MOV, OP_RSH};
use crate::devices::{normalize, Kind, Rule, ACC_ALL};
use crate::{Error, Result};

// Registers: R1 holds the context on entry, then serves as scratch once it has been read.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2; // device type
const R3: u8 = 3; // requested access
const R4: u8 = 4; // major
const R5: u8 = 5; // minor

// BPF_DEVCG_DEV_* values.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

/// One condition of a rule: instructions ending with a jump taken when it does NOT hold.
fn condition(rule: &Rule) -> Vec<Vec<Insn>> {
    let mut checks = Vec::new();
    match rule.kind {
        Kind::All => {}
        Kind::Char => checks.push(vec![Insn::jump_imm(OP_JNE, R2, DEV_CHAR, 0)]),
        Kind::Block => checks.push(vec![Insn::jump_imm(OP_JNE, R2, DEV_BLOCK, 0)]),
    }
    if rule.access != ACC_ALL {
        // access bits are 3 wide, so the cast cannot truncate.
        let mask = rule.access as i32;
        let mut check = vec![
            Insn::alu32_reg(OP_MOV, R1, R3),
            Insn::alu32_imm(OP_AND, R1, mask),
        ];
        check.push(if rule.allow {
            // requested & rule != requested → some requested bit is not allowed here
            Insn::jump_reg(OP_JNE, R1, R3, 0)
        } else {
            // requested & rule == 0 → nothing requested is denied here
            Insn::jump_imm(OP_JEQ, R1, 0, 0)
        });
        checks.push(check);
    }
    // normalize() keeps numbers within i32, so the casts are exact.
    if let Some(major) = rule.major {
        checks.push(vec![Insn::jump_imm(OP_JNE, R4, major as i32, 0)]);
    }
    if let Some(minor) = rule.minor {
        checks.push(vec![Insn::jump_imm(OP_JNE, R5, minor as i32, 0)]);
    }
    checks
}

/// Compile rules into a program. A rule without conditions ends the program: what follows
/// it (the earlier rules, and the default) could never run, and the verifier refuses
/// unreachable instructions.
pub(super) fn program(rules: &[Rule]) -> Vec<Insn> {
    let mut insns = vec![
        Insn::load_word(R2, R1, 0),
        Insn::alu32_imm(OP_AND, R2, 0xffff),
        Insn::load_word(R3, R1, 0),
        Insn::alu32_imm(OP_RSH, R3, 16),
        Insn::load_word(R4, R1, 4),
        Insn::load_word(R5, R1, 8),
    ];
    for rule in rules.iter().rev() {
        let checks = condition(rule);
        let unconditional = checks.is_empty();
        let mut block: Vec<Insn> = checks.into_iter().flatten().collect();
        block.push(Insn::alu32_imm(OP_MOV, R0, i32::from(rule.allow)));
        block.push(Insn::exit());
        // Each failed check jumps to the first instruction after this block.
        let len = block.len();
        for (i, insn) in block.iter_mut().enumerate() {
            if insn.is_jump() {
                // Blocks are at most 9 instructions long.
                insn.off = (len - i - 1) as i16;
            }
        }
        insns.extend(block);
        if unconditional {
            return insns;
        }
    }
    insns.push(Insn::alu32_imm(OP_MOV, R0, 0));
    insns.push(Insn::exit());
    insns
}

/// Load the program for `rules`, attach it to `dir`, then detach berth's previous one. The
/// new one goes on first: while both are attached both must allow, so the container never
/// runs without a device filter.
pub(super) fn set(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let rules = normalize(rules)?;
    let insns = program(&rules);
    let ctx = |what: &str, e: &dyn std::fmt::Display| {
        Error::Bpf(format!("{what} on {}: {e}", dir.display()))
    };
    let cgroup = std::fs::File::open(dir).map_err(|source| Error::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let old = bpf::query(cgroup.as_fd()).map_err(|e| ctx("BPF_PROG_QUERY", &e))?;
    let prog =
        bpf::load_cgroup_device(&insns).map_err(|e| ctx("loading the device program", &e))?;
    let (new_id, _) =
        bpf::prog_info(prog.as_fd()).map_err(|e| ctx("BPF_OBJ_GET_INFO_BY_FD", &e))?;
    bpf::attach(cgroup.as_fd(), prog.as_fd()).map_err(|e| ctx("BPF_PROG_ATTACH", &e))?;
    for id in old.into_iter().filter(|&id| id != new_id) {
        let Some(old_prog) = bpf::prog_by_id(id).map_err(|e| ctx("BPF_PROG_GET_FD_BY_ID", &e))?
        else {
            continue;
        };
        let (_, name) =
            bpf::prog_info(old_prog.as_fd()).map_err(|e| ctx("BPF_OBJ_GET_INFO_BY_FD", &e))?;
        if name != bpf::PROG_NAME {
            // Someone else's filter (systemd, a security agent): theirs to manage.
            continue;
        }
        match bpf::detach(cgroup.as_fd(), old_prog.as_fd()) {
            Ok(()) => {}
            // Detached meanwhile by a concurrent update.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(ctx("BPF_PROG_DETACH", &e)),
        }
    }
    // Dropping `prog` closes our descriptor; the attachment keeps the program alive for as
    // long as the cgroup exists.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::{ACC_MKNOD, ACC_READ, ACC_WRITE};
    use crate::v2::bpf::{ALU32, JMP, LDX_MEM_W, OP_EXIT, X};

    /// Run a program the way the kernel would, for the instructions `program` emits.
    fn run(insns: &[Insn], typ: u32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | typ, major, minor];
        let mut reg = [0u64; 11];
        let mut pc = 0usize;
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(steps < 10_000, "program loops");
            let i = insns[pc];
            let (dst, src) = (i.dst() as usize, i.src() as usize);
            pc += 1;
            match i.code {
                c if c == LDX_MEM_W => {
                    assert_eq!(src, 1, "loads only from the context");
                    reg[dst] = u64::from(ctx[i.off as usize / 4]);
                }
                c if c & 0x07 == ALU32 => {
                    let operand = if c & X != 0 {
                        reg[src] as u32
                    } else {
                        i.imm as u32
                    };
                    let d = reg[dst] as u32;
                    reg[dst] = u64::from(match c & 0xf0 {
                        OP_AND => d & operand,
                        OP_RSH => d >> operand,
                        OP_MOV => operand,
                        other => panic!("unexpected ALU op {other:#x}"),
                    });
                }
                c if c & 0x07 == JMP => {
                    if c & 0xf0 == OP_EXIT {
                        return reg[0];
                    }
                    let operand = if c & X != 0 {
                        reg[src]
                    } else {
                        i64::from(i.imm) as u64
                    };
                    let taken = match c & 0xf0 {
                        OP_JEQ => reg[dst] == operand,
                        OP_JNE => reg[dst] != operand,
                        other => panic!("unexpected jump op {other:#x}"),
                    };
                    if taken {
                        pc += i.off as usize;
                    }
                }
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    /// What the rules mean, written plainly.
    fn reference(rules: &[Rule], typ: u32, access: u32, major: u32, minor: u32) -> u64 {
        for r in rules.iter().rev() {
            let type_ok = match r.kind {
                Kind::All => true,
                Kind::Char => typ == DEV_CHAR as u32,
                Kind::Block => typ == DEV_BLOCK as u32,
            };
            let access_ok = if r.allow {
                access & r.access == access
            } else {
                access & r.access != 0
            };
            let num_ok = r.major.is_none_or(|m| m == major) && r.minor.is_none_or(|m| m == minor);
            if type_ok && access_ok && num_ok {
                return u64::from(r.allow);
            }
        }
        0
    }

    fn rule(allow: bool, kind: Kind, major: Option<u32>, minor: Option<u32>, access: u32) -> Rule {
        Rule {
            allow,
            kind,
            major,
            minor,
            access,
        }
    }

    #[test]
    fn program_matches_the_rules() {
        let docker_like = vec![
            rule(false, Kind::All, None, None, ACC_ALL),
            rule(true, Kind::Char, Some(1), Some(3), ACC_ALL),
            rule(true, Kind::Char, Some(1), Some(5), ACC_READ | ACC_WRITE),
            rule(true, Kind::Char, Some(136), None, ACC_ALL),
            rule(true, Kind::All, None, None, ACC_MKNOD),
            rule(false, Kind::Char, Some(1), Some(3), ACC_WRITE),
            rule(true, Kind::Block, Some(8), None, ACC_READ),
        ];
        let sets: Vec<Vec<Rule>> = vec![
            docker_like.clone(),
            vec![],
            vec![rule(true, Kind::All, None, None, ACC_ALL)],
            vec![
                rule(true, Kind::All, None, None, ACC_ALL),
                rule(false, Kind::Block, None, None, ACC_ALL),
            ],
            docker_like[1..].to_vec(),
        ];
        for rules in &sets {
            let prog = program(rules);
            for typ in [DEV_BLOCK as u32, DEV_CHAR as u32] {
                for access in 1..=7 {
                    for (major, minor) in
                        [(1, 3), (1, 5), (1, 7), (136, 0), (8, 0), (8, 1), (4, 64)]
                    {
                        assert_eq!(
                            run(&prog, typ, access, major, minor),
                            reference(rules, typ, access, major, minor),
                            "rules {rules:?} type {typ} access {access} {major}:{minor}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn nothing_after_an_unconditional_rule() {
        let prog = program(&[
            rule(true, Kind::Char, Some(1), Some(3), ACC_ALL),
            rule(false, Kind::All, None, None, ACC_ALL),
        ]);
        // prologue (6) + deny-all block (2): the allow rule before it is unreachable.
        assert_eq!(prog.len(), 8);
        assert_eq!(prog[6], Insn::alu32_imm(OP_MOV, R0, 0));
        // Empty rule list: prologue and "deny".
        assert_eq!(program(&[]).len(), 8);
    }
}
