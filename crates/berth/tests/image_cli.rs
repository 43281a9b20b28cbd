//! End-to-end tests of the image commands of the berth binary against a private data root:
//! import, images (columns, --format, -q, filters), tag, history, image inspect, save/load,
//! rmi and image prune, with Docker's output shapes. Needs root (layers are unpacked with
//! their owners and device nodes).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn berth(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("--data-root")
        .arg(root)
        .args(args)
        .output()
        .expect("run berth")
}

fn ok(root: &Path, args: &[&str]) -> String {
    let o = berth(root, args);
    assert!(
        o.status.success(),
        "berth {args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf-8 output")
}

fn skip(reason: &str) -> bool {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("requirement missing under CI: {reason}");
    }
    eprintln!("SKIP: image_cli: {reason}");
    true
}

fn busybox_tarball(dir: &Path) -> Option<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/make-busybox-rootfs.sh");
    let tarball = dir.join("rootfs.tar");
    let st = Command::new("sh")
        .arg(script)
        .arg(dir.join("rootfs"))
        .arg(&tarball)
        .status()
        .ok()?;
    st.success().then_some(tarball)
}

#[test]
fn image_commands_like_docker() {
    if !nix::unistd::Uid::effective().is_root() && skip("needs root") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let Some(tarball) = busybox_tarball(tmp.path()) else {
        skip("tests/make-busybox-rootfs.sh failed");
        return;
    };
    let root = tmp.path().join("data");
    let tb = tarball.to_str().unwrap();

    // import prints the full image ID
    let id = ok(
        &root,
        &[
            "import",
            "-c",
            "CMD [\"/bin/sh\"]",
            "-m",
            "test import",
            tb,
            "busybox:latest",
        ],
    );
    let id = id.trim().to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    let short = &id[7..19];

    // images: Docker's columns
    let out = ok(&root, &["images"]);
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("REPOSITORY   TAG       IMAGE ID       CREATED"),
        "{header:?}"
    );
    assert!(header.ends_with("SIZE"));
    let row = lines.next().unwrap();
    assert!(
        row.starts_with("busybox      latest    ") && row.contains(short),
        "{row:?}"
    );
    assert!(row.trim_end().ends_with("MB"), "{row:?}");

    ok(&root, &["tag", "busybox", "localhost:5000/bb:v1"]);
    let out = ok(
        &root,
        &["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"],
    );
    let mut got: Vec<&str> = out.lines().collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            format!("busybox:latest {short}"),
            format!("localhost:5000/bb:v1 {short}")
        ]
    );
    assert_eq!(ok(&root, &["images", "-q"]).trim(), short);
    assert_eq!(
        ok(&root, &["images", "--no-trunc", "-q", "busybox"]).trim(),
        id
    );
    let out = ok(
        &root,
        &[
            "images",
            "--filter",
            "reference=localhost*/*",
            "--format",
            "{{.Repository}}",
        ],
    );
    assert_eq!(out.trim(), "localhost:5000/bb");
    assert_eq!(
        ok(&root, &["images", "-f", "dangling=true", "-q"]).trim(),
        ""
    );
    let json_line = ok(&root, &["image", "ls", "--format", "json", "busybox"]);
    let v: serde_json::Value = serde_json::from_str(json_line.trim()).unwrap();
    assert_eq!(v["Repository"], "busybox");
    assert_eq!(v["Tag"], "latest");
    assert!(ok(&root, &["images", "--digests"])
        .lines()
        .next()
        .unwrap()
        .contains("DIGEST"));

    // history and inspect
    let out = ok(&root, &["history", "busybox"]);
    assert!(out.starts_with("IMAGE          CREATED"), "{out}");
    assert!(out.contains("test import"), "{out}");
    let out = ok(&root, &["image", "inspect", "busybox"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["Id"], id.as_str());
    assert_eq!(v[0]["Config"]["Cmd"][0], "/bin/sh");
    assert_eq!(v[0]["RootFS"]["Type"], "layers");
    assert_eq!(
        ok(
            &root,
            &[
                "image",
                "inspect",
                "-f",
                "{{.Os}}/{{.Architecture}} {{json .Config.Cmd}}",
                "busybox"
            ]
        )
        .trim(),
        format!("linux/{} [\"/bin/sh\"]", berth_arch())
    );
    let o = berth(&root, &["image", "inspect", "nosuch"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("No such image: nosuch"));

    // save -> load into an empty root
    let archive = tmp.path().join("save.tar");
    ok(
        &root,
        &[
            "save",
            "-o",
            archive.to_str().unwrap(),
            "busybox",
            "localhost:5000/bb:v1",
        ],
    );
    let root2 = tmp.path().join("data2");
    let out = ok(&root2, &["load", "-i", archive.to_str().unwrap()]);
    assert!(
        out.contains("Loaded image: busybox:latest")
            && out.contains("Loaded image: localhost:5000/bb:v1"),
        "{out}"
    );
    assert_eq!(ok(&root2, &["images", "--no-trunc", "-q"]).trim(), id);

    // rmi: untag, then delete with the last tag
    assert_eq!(
        ok(&root, &["rmi", "localhost:5000/bb:v1"]).trim(),
        "Untagged: localhost:5000/bb:v1"
    );
    let out = ok(&root, &["rmi", "busybox"]);
    assert_eq!(out, format!("Untagged: busybox:latest\nDeleted: {id}\n"));
    let o = berth(&root, &["rmi", "busybox"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("No such image"));

    // prune: a dangling image goes, the store is empty afterwards
    ok(&root, &["import", tb]);
    assert_eq!(
        ok(&root, &["images", "-f", "dangling=true", "-q"])
            .lines()
            .count(),
        1
    );
    let out = ok(&root, &["image", "prune", "-f"]);
    assert!(
        out.starts_with("Deleted Images:\ndeleted: sha256:"),
        "{out}"
    );
    assert!(out.contains("Total reclaimed space: "), "{out}");
    assert_eq!(ok(&root, &["images", "-q"]), "");
    let blobs: Vec<_> = std::fs::read_dir(root.join("content/blobs/sha256"))
        .unwrap()
        .collect();
    assert!(blobs.is_empty(), "{blobs:?}");
}

fn berth_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}
