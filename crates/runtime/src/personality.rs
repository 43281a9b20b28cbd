//! linux.personality: the execution domain (linux32 for 32-bit userlands on x86_64).

use nix::sys::personality::Persona;
use oci_spec::runtime::{LinuxPersonality, LinuxPersonalityDomain};

use crate::error::{Error, Result};

pub fn apply(p: &LinuxPersonality) -> Result<()> {
    let base = match p.domain() {
        LinuxPersonalityDomain::PerLinux => Persona::empty(),
        // PER_LINUX32 is 0x0008, which nix has no name for
        LinuxPersonalityDomain::PerLinux32 => Persona::from_bits_retain(0x0008),
    };
    nix::sys::personality::set(base).map_err(|e| Error::sys("personality", e))?;
    Ok(())
}
