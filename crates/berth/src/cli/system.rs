//! `version` and `info`: the daemon's answers, printed as docker prints them or through
//! `--format`.

use serde_json::json;

use super::format::{self, Format};
use super::{CliError, Client, Result};

#[derive(clap::Args, Debug)]
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
    println!("{out}");
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
    println!("Client:");
    println!(" Version:           {}", s(&client_info, "Version"));
    println!(" API version:       {}", s(&client_info, "ApiVersion"));
    println!(
        " OS/Arch:           {}/{}",
        s(&client_info, "Os"),
        s(&client_info, "Arch")
    );
    println!();
    println!("Server:");
    println!(" Engine:");
    println!("  Version:          {}", s(&server, "Version"));
    println!(
        "  API version:      {} (minimum version {})",
        s(&server, "ApiVersion"),
        s(&server, "MinAPIVersion")
    );
    println!("  Git commit:       {}", s(&server, "GitCommit"));
    println!("  Built:            {}", s(&server, "BuildTime"));
    println!(
        "  OS/Arch:          {}/{}",
        s(&server, "Os"),
        s(&server, "Arch")
    );
    println!("  Kernel Version:   {}", s(&server, "KernelVersion"));
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
    println!("Server:");
    println!(" Containers: {}", s(&v, "Containers"));
    println!("  Running: {}", s(&v, "ContainersRunning"));
    println!("  Paused: {}", s(&v, "ContainersPaused"));
    println!("  Stopped: {}", s(&v, "ContainersStopped"));
    println!(" Images: {}", s(&v, "Images"));
    println!(" Server Version: {}", s(&v, "ServerVersion"));
    println!(" Storage Driver: {}", s(&v, "Driver"));
    println!(" Logging Driver: {}", s(&v, "LoggingDriver"));
    println!(" Cgroup Driver: {}", s(&v, "CgroupDriver"));
    println!(" Cgroup Version: {}", s(&v, "CgroupVersion"));
    println!(" Kernel Version: {}", s(&v, "KernelVersion"));
    println!(" Operating System: {}", s(&v, "OperatingSystem"));
    println!(" OSType: {}", s(&v, "OSType"));
    println!(" Architecture: {}", s(&v, "Architecture"));
    println!(" CPUs: {}", s(&v, "NCPU"));
    let mem = v.get("MemTotal").and_then(|m| m.as_f64()).unwrap_or(0.0);
    println!(" Total Memory: {:.4}GiB", mem / (1u64 << 30) as f64);
    println!(" Name: {}", s(&v, "Name"));
    println!(" ID: {}", s(&v, "ID"));
    println!(" Docker Root Dir: {}", s(&v, "DockerRootDir"));
    Ok(0)
}
