//! Docker's JSON shape for container inspect. bollard-stubs leaves out every `None` field,
//! while dockerd always sends them, `null` or empty: clients read the difference (the docker
//! CLI prints `[]` for `{{.Config.Entrypoint}}` and `null` for `{{json .HostConfig.CapAdd}}`
//! only when the key is there). The keys and their values here are what dockerd sends for a
//! container made with no such option; fields berth fills in are never overwritten.

use serde_json::{json, Map, Value};

/// Inserts each absent key with dockerd's value for "not set".
fn fill(obj: Option<&mut Value>, defaults: &[(&str, Value)]) {
    if let Some(Value::Object(m)) = obj {
        for (k, v) in defaults {
            m.entry(k.to_string()).or_insert_with(|| v.clone());
        }
    }
}

/// Replaces a value that means "not set" in berth's model with dockerd's `null`.
fn null_when(obj: Option<&mut Value>, key: &str, unset: impl Fn(&Value) -> bool) {
    if let Some(Value::Object(m)) = obj {
        if m.get(key).is_some_and(unset) {
            m.insert(key.to_string(), Value::Null);
        }
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// The network endpoint fields dockerd sends for every network a container is on.
fn endpoint_defaults() -> Vec<(&'static str, Value)> {
    vec![
        ("IPAMConfig", Value::Null),
        ("Links", Value::Null),
        ("Aliases", Value::Null),
        ("DriverOpts", Value::Null),
        ("NetworkID", json!("")),
        ("EndpointID", json!("")),
        ("Gateway", json!("")),
        ("IPAddress", json!("")),
        ("IPPrefixLen", json!(0)),
        ("IPv6Gateway", json!("")),
        ("GlobalIPv6Address", json!("")),
        ("GlobalIPv6PrefixLen", json!(0)),
        ("MacAddress", json!("")),
    ]
}

/// Gives a container's inspect JSON the keys dockerd always sends.
pub fn container_inspect(mut v: Value) -> Value {
    fill(
        Some(&mut v),
        &[("ExecIDs", Value::Null), ("Mounts", json!([]))],
    );
    null_when(Some(&mut v), "ExecIDs", is_empty);
    let nulls = |keys: &[&'static str]| -> Vec<(&'static str, Value)> {
        keys.iter().map(|k| (*k, Value::Null)).collect()
    };
    let config = v.get_mut("Config");
    fill(
        config,
        &nulls(&["Cmd", "Entrypoint", "Env", "OnBuild", "Volumes"]),
    );
    null_when(v.get_mut("Config"), "Volumes", is_empty);
    fill(
        v.get_mut("HostConfig"),
        &nulls(&[
            "Binds",
            "CapAdd",
            "CapDrop",
            "DeviceCgroupRules",
            "DeviceRequests",
            "ExtraHosts",
            "GroupAdd",
            "Links",
            "SecurityOpt",
            "VolumesFrom",
        ]),
    );
    // dockerd keeps "unlimited" and "kernel default" as nil, not as -1 or 0.
    null_when(v.get_mut("HostConfig"), "MemorySwappiness", |x| {
        x.as_i64() == Some(-1)
    });
    null_when(v.get_mut("HostConfig"), "PidsLimit", |x| {
        x.as_i64().is_some_and(|n| n <= 0)
    });
    let ns = v.get_mut("NetworkSettings");
    fill(
        ns,
        &[
            ("Bridge", json!("")),
            ("SandboxID", json!("")),
            ("SandboxKey", json!("")),
            ("HairpinMode", json!(false)),
            ("LinkLocalIPv6Address", json!("")),
            ("LinkLocalIPv6PrefixLen", json!(0)),
            ("Ports", json!({})),
            ("SecondaryIPAddresses", Value::Null),
            ("SecondaryIPv6Addresses", Value::Null),
            ("EndpointID", json!("")),
            ("Gateway", json!("")),
            ("GlobalIPv6Address", json!("")),
            ("GlobalIPv6PrefixLen", json!(0)),
            ("IPAddress", json!("")),
            ("IPPrefixLen", json!(0)),
            ("IPv6Gateway", json!("")),
            ("MacAddress", json!("")),
            ("Networks", Value::Object(Map::new())),
        ],
    );
    let defaults = endpoint_defaults();
    if let Some(Value::Object(nets)) = v.pointer_mut("/NetworkSettings/Networks") {
        for net in nets.values_mut() {
            fill(Some(net), &defaults);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_fields_come_out_as_dockerd_sends_them() {
        let v = container_inspect(json!({
            "Config": {"Cmd": ["sh"], "Volumes": {}},
            "HostConfig": {"MemorySwappiness": -1, "PidsLimit": 0, "CapAdd": ["NET_ADMIN"]},
            "NetworkSettings": {"Networks": {"bridge": {"IPAddress": "10.0.0.2"}}},
        }));
        assert_eq!(v["Config"]["Entrypoint"], Value::Null);
        assert_eq!(v["Config"]["Cmd"], json!(["sh"]));
        assert_eq!(v["Config"]["Volumes"], Value::Null);
        assert_eq!(v["HostConfig"]["CapAdd"], json!(["NET_ADMIN"]));
        assert_eq!(v["HostConfig"]["CapDrop"], Value::Null);
        assert_eq!(v["HostConfig"]["MemorySwappiness"], Value::Null);
        assert_eq!(v["HostConfig"]["PidsLimit"], Value::Null);
        assert_eq!(v["ExecIDs"], Value::Null);
        assert_eq!(v["Mounts"], json!([]));
        let net = &v["NetworkSettings"]["Networks"]["bridge"];
        assert_eq!(net["IPAddress"], json!("10.0.0.2"));
        assert_eq!(net["Aliases"], Value::Null);
        assert_eq!(v["NetworkSettings"]["SandboxKey"], json!(""));
    }
}
