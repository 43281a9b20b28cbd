//! `version` and `info`: the daemon's answers, printed as docker prints them or through
//! `--format`.

use serde_json::json;

use super::format::{self, Format};
use super::{CliError, Client, Result};

#[derive(clap::Args, Debug, Clone)]
pub struct FormatArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
}

fn s(v: &serde_json::Value, k: &str) -> String {
    match v.get(k) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn templated(spec: &str, v: &serde_json::Value) -> Result<i32> {
    let spec = if spec == "json" { "{{json .}}" } else { spec };
    let f = Format::parse(spec).map_err(CliError::Usage)?;
    let out = f.render(&format::from_json(v)).map_err(CliError::Usage)?;
    outln!("{out}");
    Ok(0)
}

pub async fn version(client: &Client, a: FormatArgs) -> Result<i32> {
    let client_info = json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": client.api_version,
        "Os": std::env::consts::OS,
        "Arch": match std::env::consts::ARCH { "x86_64" => "amd64", "aarch64" => "arm64", o => o },
    });
    let server = client
        .docker
        .version()
        .await
        .map_err(|e| client.err("version", e))?;
    let server = serde_json::to_value(server).unwrap_or_default();
    let all = json!({"Client": client_info, "Server": server});
    if let Some(f) = a.format.as_deref() {
        return templated(f, &all);
    }
    outln!("Client:");
    outln!(" Version:           {}", s(&client_info, "Version"));
    outln!(" API version:       {}", s(&client_info, "ApiVersion"));
    outln!(
        " OS/Arch:           {}/{}",
        s(&client_info, "Os"),
        s(&client_info, "Arch")
    );
    outln!();
    outln!("Server:");
    outln!(" Engine:");
    outln!("  Version:          {}", s(&server, "Version"));
    outln!(
        "  API version:      {} (minimum version {})",
        s(&server, "ApiVersion"),
        s(&server, "MinAPIVersion")
    );
    outln!("  Git commit:       {}", s(&server, "GitCommit"));
    outln!("  Built:            {}", s(&server, "BuildTime"));
    outln!(
        "  OS/Arch:          {}/{}",
        s(&server, "Os"),
        s(&server, "Arch")
    );
    outln!("  Kernel Version:   {}", s(&server, "KernelVersion"));
    Ok(0)
}

pub async fn info(client: &Client, a: FormatArgs) -> Result<i32> {
    let info = client
        .docker
        .info()
        .await
        .map_err(|e| client.err("info", e))?;
    let v = serde_json::to_value(info).unwrap_or_default();
    if let Some(f) = a.format.as_deref() {
        return templated(f, &v);
    }
    outln!("Server:");
    outln!(" Containers: {}", s(&v, "Containers"));
    outln!("  Running: {}", s(&v, "ContainersRunning"));
    outln!("  Paused: {}", s(&v, "ContainersPaused"));
    outln!("  Stopped: {}", s(&v, "ContainersStopped"));
    outln!(" Images: {}", s(&v, "Images"));
    outln!(" Server Version: {}", s(&v, "ServerVersion"));
    outln!(" Storage Driver: {}", s(&v, "Driver"));
    outln!(" Logging Driver: {}", s(&v, "LoggingDriver"));
    outln!(" Cgroup Driver: {}", s(&v, "CgroupDriver"));
    outln!(" Cgroup Version: {}", s(&v, "CgroupVersion"));
    outln!(" Kernel Version: {}", s(&v, "KernelVersion"));
    outln!(" Operating System: {}", s(&v, "OperatingSystem"));
    outln!(" OSType: {}", s(&v, "OSType"));
    outln!(" Architecture: {}", s(&v, "Architecture"));
    outln!(" CPUs: {}", s(&v, "NCPU"));
    let mem = v.get("MemTotal").and_then(|m| m.as_f64()).unwrap_or(0.0);
    outln!(" Total Memory: {:.4}GiB", mem / (1u64 << 30) as f64);
    outln!(" Name: {}", s(&v, "Name"));
    outln!(" ID: {}", s(&v, "ID"));
    outln!(" Docker Root Dir: {}", s(&v, "DockerRootDir"));
    Ok(0)
}
