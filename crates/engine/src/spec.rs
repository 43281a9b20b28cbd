//! The OCI spec of a container, built from its image's config and a Docker create request.
//! PLACEHOLDER until the full builder lands: the runtime's default spec plus the process.

use std::path::{Path, PathBuf};

use bollard_stubs::models::{ContainerCreateBody, ExecConfig};
use oci_spec::runtime::{Process, Spec};

pub struct SpecInput<'a> {
    pub id: &'a str,
    pub body: &'a ContainerCreateBody,
    pub image: &'a berth_image::manifest::ImageConfig,
    pub rootfs: &'a Path,
    pub hosts_path: &'a Path,
    pub hostname_path: &'a Path,
    pub resolv_path: &'a Path,
    pub cgroups_path: String,
    pub ns_of: &'a dyn Fn(&str, &str) -> Result<PathBuf, SpecError>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{0}")]
    Invalid(String),
}

impl SpecError {
    pub fn is_invalid_argument(&self) -> bool {
        true
    }
}

pub fn build(input: &SpecInput) -> Result<Spec, SpecError> {
    let cfg = input.body;
    let img = input.image.config.clone().unwrap_or_default();
    let mut args: Vec<String> = Vec::new();
    let ep = cfg.entrypoint.clone().or(img.entrypoint.clone()).unwrap_or_default();
    let cmd = if cfg.entrypoint.is_some() {
        cfg.cmd.clone().unwrap_or_default()
    } else {
        cfg.cmd.clone().or(img.cmd.clone()).unwrap_or_default()
    };
    args.extend(ep);
    args.extend(cmd);
    if args.is_empty() {
        return Err(SpecError::Invalid("no command specified".into()));
    }
    let mut env = img.env.clone().unwrap_or_default();
    env.extend(cfg.env.clone().unwrap_or_default());
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    let tty = cfg.tty.unwrap_or(false);
    let hostname = cfg.hostname.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| input.id[..12].to_string());
    let mut v = serde_json::to_value(berth_runtime::spec::default_spec(false)).map_err(|e| SpecError::Invalid(e.to_string()))?;
    v["root"] = serde_json::json!({"path": input.rootfs, "readonly": false});
    v["process"]["args"] = serde_json::json!(args);
    v["process"]["env"] = serde_json::json!(env);
    v["process"]["terminal"] = serde_json::json!(tty);
    v["process"]["cwd"] = serde_json::json!(cfg.working_dir.clone().filter(|w| !w.is_empty()).or(img.working_dir.clone()).filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into()));
    v["hostname"] = serde_json::json!(hostname);
    v["linux"]["cgroupsPath"] = serde_json::json!(input.cgroups_path);
    let mounts = v["mounts"].as_array_mut().ok_or_else(|| SpecError::Invalid("no mounts".into()))?;
    for (src, dst) in [(input.hosts_path, "/etc/hosts"), (input.hostname_path, "/etc/hostname"), (input.resolv_path, "/etc/resolv.conf")] {
        mounts.push(serde_json::json!({"destination": dst, "type": "bind", "source": src, "options": ["rbind", "rprivate"]}));
    }
    serde_json::from_value(v).map_err(|e| SpecError::Invalid(e.to_string()))
}

pub fn exec_process(body: &ExecConfig, container: &Spec, _rootfs: &Path) -> Result<Process, SpecError> {
    let mut p = container.process().clone().ok_or_else(|| SpecError::Invalid("no process".into()))?;
    p.set_args(body.cmd.clone());
    p.set_terminal(body.tty);
    if let Some(w) = body.working_dir.clone().filter(|w| !w.is_empty()) {
        p.set_cwd(w.into());
    }
    if let Some(e) = &body.env {
        let mut env = p.env().clone().unwrap_or_default();
        env.extend(e.iter().cloned());
        p.set_env(Some(env));
    }
    Ok(p)
}
