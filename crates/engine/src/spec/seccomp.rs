//! Seccomp for a container: berth's default policy (seccomp_default.json, Docker's semantics)
//! compiled for the container's capabilities and the host's architecture, and Docker's profile
//! format (what `--security-opt seccomp=<file>` sends) converted to the OCI `linux.seccomp`.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;
use serde_json::{json, Value};

use super::SpecError;

const DEFAULT_POLICY: &str = include_str!("seccomp_default.json");

#[derive(Deserialize)]
struct Policy {
    default_errno: u32,
    always: Vec<String>,
    host_arch: BTreeMap<String, Vec<String>>,
    socket_denied_families: Vec<u64>,
    personality_allowed: Vec<u64>,
    clone_namespace_flags: u64,
    clone3_errno_without_sys_admin: u32,
    with_cap: BTreeMap<String, Vec<String>>,
}

/// The seccomp architectures a filter covers on this host: the native one and the ones its
/// CPU can also run (a 64-bit x86 kernel runs i386 and x32 binaries too; a filter that named
/// only x86_64 would let those through the default action of the kernel's compat path).
pub fn host_architectures() -> Vec<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "x86" => vec!["SCMP_ARCH_X86"],
        "aarch64" => vec!["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "arm" => vec!["SCMP_ARCH_ARM"],
        "riscv64" => vec!["SCMP_ARCH_RISCV64"],
        "s390x" => vec!["SCMP_ARCH_S390X", "SCMP_ARCH_S390"],
        "powerpc64" => vec!["SCMP_ARCH_PPC64", "SCMP_ARCH_PPC"],
        _ => vec![],
    }
}

fn rule(names: &[&str], action: &str, args: Vec<Value>) -> Value {
    let mut r = json!({ "names": names, "action": action });
    if !args.is_empty() {
        r["args"] = Value::Array(args);
    }
    r
}

/// The default policy compiled for a container whose effective capabilities are `caps`
/// (names with the `CAP_` prefix): an OCI `linux.seccomp` object.
pub fn default_profile(caps: &HashSet<String>) -> Result<Value, SpecError> {
    // parsed once per process: every container's spec is built from it
    static POLICY: std::sync::OnceLock<Result<Policy, String>> = std::sync::OnceLock::new();
    let p = POLICY
        .get_or_init(|| serde_json::from_str(DEFAULT_POLICY).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| SpecError::Internal {
            what: "parse the built-in seccomp policy",
            reason: e.clone(),
        })?;
    let has = |c: &str| caps.contains(c);
    let mut allowed: Vec<&str> = p.always.iter().map(String::as_str).collect();
    if let Some(extra) = p.host_arch.get(std::env::consts::ARCH) {
        allowed.extend(extra.iter().map(String::as_str));
    }
    for (cap, names) in &p.with_cap {
        if has(cap) {
            allowed.extend(names.iter().map(String::as_str));
        }
    }
    allowed.sort_unstable();
    allowed.dedup();

    let mut syscalls = vec![rule(&allowed, "SCMP_ACT_ALLOW", vec![])];
    // socket(2) for every family but the denied ones (AF_VSOCK would reach the host).
    let socket_args = p
        .socket_denied_families
        .iter()
        .map(|f| json!({"index": 0, "value": f, "op": "SCMP_CMP_NE"}))
        .collect();
    syscalls.push(rule(&["socket"], "SCMP_ACT_ALLOW", socket_args));
    // personality(2) only for the personas programs really switch to (linux, linux32,
    // uname26 and the query value); others would weaken ASLR. Same-argument conditions
    // are alternatives, so each gets its own rule.
    for v in &p.personality_allowed {
        syscalls.push(rule(
            &["personality"],
            "SCMP_ACT_ALLOW",
            vec![json!({"index": 0, "value": v, "op": "SCMP_CMP_EQ"})],
        ));
    }
    if !has("CAP_SYS_ADMIN") {
        // clone(2) without any namespace flag; clone3 hides its flags in a struct seccomp
        // cannot read, so it fails with ENOSYS and libc falls back to clone.
        syscalls.push(rule(
            &["clone"],
            "SCMP_ACT_ALLOW",
            vec![json!({
                "index": 0,
                "value": p.clone_namespace_flags,
                "valueTwo": 0,
                "op": "SCMP_CMP_MASKED_EQ"
            })],
        ));
        let mut r = rule(&["clone3"], "SCMP_ACT_ERRNO", vec![]);
        r["errnoRet"] = json!(p.clone3_errno_without_sys_admin);
        syscalls.push(r);
    }
    Ok(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": p.default_errno,
        "architectures": host_architectures(),
        "syscalls": syscalls,
    }))
}

/// Docker's profile format: what the docker CLI reads from `--security-opt seccomp=FILE`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerProfile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<String>>,
    #[serde(default)]
    arch_map: Option<Vec<DockerArchMap>>,
    #[serde(default)]
    syscalls: Option<Vec<DockerSyscall>>,
    #[serde(default)]
    flags: Option<Vec<String>>,
    #[serde(default)]
    listener_path: Option<String>,
    #[serde(default)]
    listener_metadata: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerArchMap {
    architecture: String,
    #[serde(default)]
    sub_architectures: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerSyscall {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    names: Option<Vec<String>>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<Value>>,
    #[serde(default)]
    includes: Option<Filter>,
    #[serde(default)]
    excludes: Option<Filter>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// Docker's names for the host architecture in `includes.arches` (Go's GOARCH).
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn kernel_at_least(min: &str) -> bool {
    let parse = |s: &str| -> Vec<u64> {
        s.split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .take(2)
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    let have = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    parse(&have) >= parse(min)
}

/// Convert a Docker profile to an OCI `linux.seccomp` for a container with effective
/// capabilities `caps`: rules whose `includes`/`excludes` do not apply are left out, as Docker
/// does when it loads the profile.
pub fn from_docker_profile(text: &str, caps: &HashSet<String>) -> Result<Value, SpecError> {
    let bad = |reason: String| SpecError::InvalidFlag {
        flag: "--security-opt seccomp",
        reason,
    };
    let p: DockerProfile =
        serde_json::from_str(text).map_err(|e| bad(format!("not a seccomp profile: {e}")))?;
    let native = host_architectures();
    let mut arches: Vec<String> = p.architectures.unwrap_or_default();
    if let Some(map) = &p.arch_map {
        if !arches.is_empty() {
            return Err(bad(
                "both 'architectures' and 'archMap' are set; use only one".into(),
            ));
        }
        for m in map {
            if native.first() == Some(&m.architecture.as_str()) {
                arches.push(m.architecture.clone());
                arches.extend(m.sub_architectures.iter().flatten().cloned());
            }
        }
    }
    let applies = |f: &Filter, all_of: bool| -> bool {
        // `includes` needs every listed thing to hold; `excludes` drops the rule if any does.
        let arch_hit = f.arches.as_ref().map(|a| a.iter().any(|x| x == go_arch()));
        let caps_hit = f.caps.as_ref().map(|c| {
            if all_of {
                c.iter().all(|x| caps.contains(x))
            } else {
                c.iter().any(|x| caps.contains(x))
            }
        });
        let kernel_hit = f.min_kernel.as_deref().map(kernel_at_least);
        let hits = [arch_hit, caps_hit, kernel_hit];
        if all_of {
            hits.iter().flatten().all(|h| *h)
        } else {
            hits.iter().flatten().any(|h| *h)
        }
    };
    let mut syscalls = Vec::new();
    for s in p.syscalls.into_iter().flatten() {
        if let Some(inc) = &s.includes {
            if !applies(inc, true) {
                continue;
            }
        }
        if let Some(exc) = &s.excludes {
            if applies(exc, false) {
                continue;
            }
        }
        let names: Vec<String> = match (s.name, s.names) {
            (Some(_), Some(_)) => {
                return Err(bad("a syscall rule has both 'name' and 'names'".into()))
            }
            (Some(n), None) => vec![n],
            (None, Some(n)) => n,
            (None, None) => return Err(bad("a syscall rule has no 'names'".into())),
        };
        let mut r = json!({ "names": names, "action": s.action });
        if let Some(e) = s.errno_ret {
            r["errnoRet"] = json!(e);
        }
        if let Some(a) = s.args {
            r["args"] = Value::Array(a);
        }
        syscalls.push(r);
    }
    let mut out = json!({
        "defaultAction": p.default_action,
        "architectures": arches,
        "syscalls": syscalls,
    });
    if let Some(e) = p.default_errno_ret {
        out["defaultErrnoRet"] = json!(e);
    }
    if let Some(f) = p.flags {
        out["flags"] = json!(f);
    }
    if let Some(l) = p.listener_path {
        out["listenerPath"] = json!(l);
    }
    if let Some(m) = p.listener_metadata {
        out["listenerMetadata"] = json!(m);
    }
    // Checked here so that a typo in an action or operator is the user's 400, not a failure
    // deep in the daemon.
    serde_json::from_value::<oci_spec::runtime::LinuxSeccomp>(out.clone())
        .map_err(|e| bad(format!("invalid profile: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxSeccomp;

    fn caps(list: &[&str]) -> HashSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn allowed(v: &Value, name: &str) -> bool {
        v["syscalls"].as_array().into_iter().flatten().any(|r| {
            r["action"] == "SCMP_ACT_ALLOW"
                && r.get("args").is_none()
                && r["names"]
                    .as_array()
                    .is_some_and(|n| n.iter().any(|x| x == name))
        })
    }

    #[test]
    fn default_profile_gates_groups_on_capabilities() {
        let plain = default_profile(&caps(&["CAP_CHOWN"])).unwrap();
        let s: LinuxSeccomp = serde_json::from_value(plain.clone()).unwrap();
        assert_eq!(s.default_errno_ret(), Some(1));
        assert!(allowed(&plain, "read"));
        assert!(!allowed(&plain, "mount"));
        assert!(!allowed(&plain, "reboot"));
        assert!(!allowed(&plain, "clone"), "clone only with flag conditions");
        let clone3 = plain["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["names"][0] == "clone3")
            .unwrap();
        assert_eq!(clone3["errnoRet"], 38);

        let admin = default_profile(&caps(&["CAP_SYS_ADMIN", "CAP_SYS_BOOT"])).unwrap();
        assert!(allowed(&admin, "mount"));
        assert!(allowed(&admin, "clone"));
        assert!(allowed(&admin, "reboot"));
        assert!(!admin
            .to_string()
            .contains("\"clone3\"],\"action\":\"SCMP_ACT_ERRNO\""));
        let personas: Vec<&Value> = admin["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["names"][0] == "personality")
            .collect();
        assert_eq!(personas.len(), 5);
    }

    #[test]
    fn docker_profile_is_converted_with_includes_and_excludes() {
        let text = r#"{
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38, "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"name": "getpid", "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}
            ]
        }"#;
        let out = from_docker_profile(text, &caps(&["CAP_CHOWN"])).unwrap();
        let s: LinuxSeccomp = serde_json::from_value(out.clone()).unwrap();
        let names: Vec<String> = s
            .syscalls()
            .iter()
            .flatten()
            .flat_map(|r| r.names().clone())
            .collect();
        assert_eq!(names, ["read", "write", "clone3", "getpid"]);
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(s.architectures().as_ref().map(|a| a.len()), Some(3));
        }
        let admin = from_docker_profile(text, &caps(&["CAP_SYS_ADMIN"])).unwrap();
        assert!(admin.to_string().contains("mount"));
        assert!(!admin.to_string().contains("clone3"));
    }

    #[test]
    fn a_broken_docker_profile_names_the_flag() {
        let e =
            from_docker_profile("{\"defaultAction\": \"SCMP_ACT_NOPE\"}", &caps(&[])).unwrap_err();
        assert!(e.is_invalid_argument());
        assert!(e.to_string().contains("--security-opt seccomp"), "{e}");
        assert!(from_docker_profile("not json", &caps(&[])).is_err());
    }
}
