#!/bin/sh
# Builds the hostile-input corpus into DIR (nothing binary is committed): archives that
# `berth load` must refuse with a clear error and without changing the store, root file
# system tarballs that `berth import` must refuse the same way, and OCI layout directories
# whose blobs are a symlink to /dev/zero and a FIFO. Each file's name says what it tries.
#
#   DIR/load/*.tar*      for berth load -i
#   DIR/import/*.tar     for berth import
#   DIR/oci/*/           for berth load -i (OCI layout directories)
#   DIR/seed.tar         a harmless rootfs, to have something in the store
#
# usage: make-corpus.sh DIR
set -eu
dir=${1:?usage: make-corpus.sh DIR}
mkdir -p "$dir/load" "$dir/import" "$dir/oci"
exec python3 - "$dir" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile

out = sys.argv[1]

def member(name, data=b"", kind=tarfile.REGTYPE, link="", mode=0o644):
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = link
    ti.mode = mode
    ti.mtime = 1700000000
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    return ti, (io.BytesIO(data) if kind == tarfile.REGTYPE else None)

def tar_bytes(members):
    buf = io.BytesIO()
    # GNU format writes names verbatim, `..` and leading `/` included
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for ti, f in members:
            t.addfile(ti, f)
    return buf.getvalue()

def sha(b):
    return hashlib.sha256(b).hexdigest()

def docker_archive(layers, tags):
    """A legacy docker-archive: <n>/layer.tar, <config>.json, manifest.json."""
    cfg = json.dumps({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + sha(l) for l in layers]},
        "config": {"Cmd": ["/bin/sh"]},
    }).encode()
    cfg_name = sha(cfg) + ".json"
    ms = [member(f"{i}/layer.tar", l) for i, l in enumerate(layers)]
    ms.append(member(cfg_name, cfg))
    manifest = [{"Config": cfg_name, "RepoTags": tags,
                 "Layers": [f"{i}/layer.tar" for i in range(len(layers))]}]
    ms.append(member("manifest.json", json.dumps(manifest).encode()))
    return tar_bytes(ms)

def write(path, data):
    with open(os.path.join(out, path), "wb") as f:
        f.write(data)

tag = "berth-hostile-%d" % os.getpid()
hostile_layers = {
    # climbs out of the layer directory
    "traversal": tar_bytes([member("../../../tmp/%s-traversal" % tag, b"x")]),
    # a symlink to / and a file written through it
    "symlink-write-through": tar_bytes([
        member("escape", kind=tarfile.SYMTYPE, link="/"),
        member("escape/tmp/%s-symlink" % tag, b"x"),
    ]),
    # a hard link to a host file outside the layer
    "hardlink-out": tar_bytes([member("shadow", kind=tarfile.LNKTYPE, link="../../../../etc/shadow")]),
}
good = tar_bytes([member("hello", b"hello\n")])
write("seed.tar", tar_bytes([member("seed", b"seed\n")]))

for name, layer in hostile_layers.items():
    write(f"load/{name}.tar", docker_archive([good, layer], [f"hostile/{name}:1"]))
    write(f"import/{name}.tar", layer)

# manifest.json lists no image
write("load/empty-manifest.tar", tar_bytes([member("manifest.json", b"[]")]))
# an invalid tag: nothing may be registered, not even an untagged image
write("load/invalid-tag.tar", docker_archive([good], ["Not//A:Valid::Tag"]))
# a layer whose content is not what the config's diff ID says
bad = docker_archive([good], ["hostile/diffid:1"]).replace(
    sha(good).encode(), sha(b"something else").encode())
write("load/diff-id-mismatch.tar", bad)
# the size field of a header is not a number
t = bytearray(docker_archive([good], ["hostile/size:1"]))
t[124:136] = b"zz9999999999"
hdr = t[:512]
hdr[148:156] = b" " * 8
ck = sum(hdr)
t[148:156] = b"%06o\0 " % ck
write("load/bad-header-size.tar", bytes(t))
# thousands of large JSON entries (gigabytes in memory once): 3000 x 1 MiB, a few MB gzipped
with gzip.open(os.path.join(out, "load/json-bomb.tar.gz"), "wb", compresslevel=1) as gz:
    with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as t:
        body = b" " * (1 << 20)
        for i in range(3000):
            ti, f = member(f"junk{i}.json", body)
            t.addfile(ti, f)

def oci_layout(path):
    blobs = os.path.join(path, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    def put(b):
        with open(os.path.join(blobs, sha(b)), "wb") as f:
            f.write(b)
        return "sha256:" + sha(b)
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": ["sha256:" + sha(good)]}}).encode()
    m = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": put(cfg), "size": len(cfg)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": put(good), "size": len(good)}],
    }).encode()
    idx = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(m), "size": len(m),
        "annotations": {"io.containerd.image.name": "docker.io/hostile/oci:1"}}]}
    with open(os.path.join(path, "index.json"), "w") as f:
        json.dump(idx, f)
    with open(os.path.join(path, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    return os.path.join(blobs, sha(good))

layer = oci_layout(os.path.join(out, "oci", "blob-symlink-dev-zero"))
os.remove(layer)
os.symlink("/dev/zero", layer)
layer = oci_layout(os.path.join(out, "oci", "blob-fifo"))
os.remove(layer)
os.mkfifo(layer)
PY
