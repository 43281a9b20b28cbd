# Scenario: the image endpoints through a real registry (Debian's docker-registry on a free
# 127.0.0.1 port, storage under $T), driven by the docker CLI 28 and Debian's 20.10 client
# (images, tag, push, rmi, pull, save, load), then berth's CLI: its pull/push/load progress,
# plain lines without control codes in a pipe and bars on a terminal, and a failed pull
# ending with exit 1 and the daemon's message. Sourced by run.sh (ONLY=images runs it alone).

# di ARGS...: the docker client under test, never allowed to hang the suite
di() { timeout 120 "$DK" "$@"; }

images_one() {
    local tag=$1 reg=$2 out rc ref id
    ref=$reg/acc/bb$tag:v1
    di tag busybox:latest "$ref"; eq "$tag tag" 0 $?
    out=$(di images --format '{{.Repository}}:{{.Tag}}' 2>&1)
    contains "$tag images lists the new tag" "$reg/acc/bb$tag:v1" "$out"
    id=$(di inspect --format '{{.Id}}' busybox:latest 2>&1)
    out=$(di push "$ref" 2>&1); rc=$?
    eq "$tag push exit code" 0 "$rc"
    if [[ $out =~ v1:\ digest:\ sha256:[0-9a-f]{64}\ size:\ [0-9]+ ]]; then
        ok "$tag push prints the digest"
    else
        fail "$tag push prints the digest: $out"
    fi
    out=$(di rmi "$ref" 2>&1); rc=$?
    eq "$tag rmi exit code" 0 "$rc"
    contains "$tag rmi untags" "Untagged: $ref" "$out"
    out=$(di images -q "$ref" 2>&1); eq "$tag rmi: the tag is gone" "" "$out"
    out=$(di pull "$ref" 2>&1); rc=$?
    eq "$tag pull exit code" 0 "$rc"
    contains "$tag pull status" "Status: " "$out"
    contains "$tag pull digest" "Digest: sha256:" "$out"
    eq "$tag pull gives the same image" "$id" "$(di inspect --format '{{.Id}}' "$ref" 2>&1)"
    out=$(di pull "$reg/acc/nosuch$tag:v1" 2>&1); rc=$?
    if [ "$rc" != 0 ]; then ok "$tag pull of a missing image fails"; else fail "$tag pull of a missing image succeeded: $out"; fi
    di save -o "$T/save$tag.tar" "$ref"; eq "$tag save -o exit code" 0 $?
    if tar -tf "$T/save$tag.tar" | grep -q '^manifest.json$'; then ok "$tag save writes a docker archive"; else fail "$tag save writes a docker archive"; fi
    di rmi "$ref" >/dev/null 2>&1
    out=$(di load -i "$T/save$tag.tar" 2>&1); rc=$?
    eq "$tag load exit code" 0 "$rc"
    contains "$tag load names the image" "Loaded image: $ref" "$out"
    out=$(di save "$ref" | di load 2>&1); rc=$?
    eq "$tag save | load through pipes" 0 "$rc"
    di rmi "$ref" >/dev/null 2>&1
    rm -f "$T/save$tag.tar"
}

scenario_images() {
    echo "# scenario images"
    [ -x /usr/bin/docker-registry ] || sh "$REPO/tests/registry/setup.sh" >/dev/null 2>&1
    if [ ! -x /usr/bin/docker-registry ]; then
        skip "images: /usr/bin/docker-registry is not installed (apt-get install docker-registry)"
        return
    fi
    # shellcheck source=/dev/null
    . "$REPO/tests/registry/lib.sh"
    local port reg
    port=$(free_port)
    reg=127.0.0.1:$port
    if ! start_registry "$T/registry" "$port"; then
        fail "images: start docker-registry on $reg"
        return
    fi
    for DK in "$DOCKER28" "$DOCKER20"; do
        if [ ! -x "$DK" ]; then
            skip "images: $DK is not installed"
            continue
        fi
        local v
        v=$("$DK" version --format '{{.Client.Version}}' 2>/dev/null)
        images_one "docker${v%%.*}" "$reg"
    done

    # berth's CLI: progress in a pipe is plain lines, one per change of a layer's state. An
    # image of its own (a layer nothing else has) so that the layer really moves.
    local B=(timeout 120 env BERTH_HOST="unix://$SOCK" "$BERTH") ref=$reg/acc/bbberth:v1 out rc
    mkdir -p "$T/uniq"
    head -c 3000000 /dev/urandom >"$T/uniq/blob"
    tar -C "$T/uniq" -cf "$T/uniq.tar" blob
    "${B[@]}" import "$T/uniq.tar" "$ref" >/dev/null
    out=$("${B[@]}" push "$ref" 2>&1); rc=$?
    eq "berth push exit code" 0 "$rc"
    if [[ $out =~ [0-9a-f]{12}:\ Pushed ]]; then ok "berth push in a pipe: a line per layer"; else fail "berth push in a pipe: a line per layer: $out"; fi
    "${B[@]}" rmi "$ref" >/dev/null
    out=$("${B[@]}" pull "$ref" 2>&1); rc=$?
    eq "berth pull exit code" 0 "$rc"
    if [[ $out =~ [0-9a-f]{12}:\ Pull\ complete ]]; then ok "berth pull in a pipe: a line per layer"; else fail "berth pull in a pipe: a line per layer: $out"; fi
    case "$out" in
        *$'\e'* | *$'\r'*) fail "berth pull in a pipe prints control codes: $(printf %q "$out")" ;;
        *) ok "berth pull in a pipe prints no control codes" ;;
    esac
    contains "berth pull ends with the reference" "$ref" "$out"
    out=$("${B[@]}" pull "$reg/acc/nosuchberth:v1" 2>&1); rc=$?
    eq "berth pull of a missing image exits 1" 1 "$rc"
    contains "berth pull of a missing image says so" "nosuchberth" "$out"
    # on a terminal: bars, drawn in place
    "${B[@]}" rmi "$ref" >/dev/null
    out=$(timeout 120 python3 "$REPO/tests/cli/pty_run.py" 24 120 "" -- env BERTH_HOST="unix://$SOCK" \
        "$BERTH" pull "$ref" 2>&1)
    contains "berth pull on a terminal exits 0" "rc=0" "$out"
    case "$out" in
        *$'\e['*) ok "berth pull on a terminal draws in place" ;;
        *) fail "berth pull on a terminal draws in place: $(printf %q "$out")" ;;
    esac
    contains "berth pull on a terminal: Pull complete" "Pull complete" "$out"
    # an error inside the stream (errorDetail after the progress began): a layer blob that
    # the registry serves corrupted fails its digest check; exit 1 with the message
    "${B[@]}" rmi "$ref" >/dev/null
    local blob
    # the largest blob: the 3 MB of random bytes do not compress, busybox's layer does
    blob=$(find "$T/registry/data" -path '*/blobs/sha256/*' -name data -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2-)
    if [ -n "$blob" ]; then
        cp "$blob" "$T/blob.orig"
        printf 'corrupt' | dd of="$blob" bs=1 seek=1000 conv=notrunc 2>/dev/null
        out=$("${B[@]}" pull "$ref" 2>&1); rc=$?
        eq "berth pull of a corrupted layer exits 1" 1 "$rc"
        contains "berth pull of a corrupted layer: progress, then the error" "Pulling fs layer" "$out"
        if printf '%s' "$out" | tail -1 | grep -qi 'digest'; then
            ok "berth pull of a corrupted layer ends with the digest error"
        else
            fail "berth pull of a corrupted layer ends with the digest error: $out"
        fi
        cp "$T/blob.orig" "$blob"
        "${B[@]}" pull -q "$ref" >/dev/null
    else
        fail "images: no layer blob found in the registry's storage"
    fi
    "${B[@]}" save -o "$T/saveberth.tar" "$ref"
    "${B[@]}" rmi "$ref" >/dev/null
    out=$("${B[@]}" load -i "$T/saveberth.tar" 2>&1); rc=$?
    eq "berth load exit code" 0 "$rc"
    eq "berth load in a pipe: the result only" "Loaded image: $ref" "$out"
    out=$(printf 'not a tar' | "${B[@]}" load 2>&1); rc=$?
    eq "berth load of garbage exits 1" 1 "$rc"
    "${B[@]}" rmi "$ref" >/dev/null 2>&1
    rm -rf "$T/saveberth.tar" "$T/uniq" "$T/uniq.tar"
    stop_registry
}
