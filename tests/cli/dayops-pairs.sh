# stats, update, cp, export, commit, diff and system df: berth's CLI beside docker's on the
# same containers (sourced by cli.sh: pair, both, b, d, $IMG, $work).
# one change only: a daemon lists changes in its directory walk's order, which differs
# from container to container
both run -d --name @-dy "$IMG" sh -c 'rm /etc/group; sleep 600'
for side in b d; do
    for _ in $(seq 1 100); do
        $side exec "$P-$side-dy" test ! -e /etc/group 2>/dev/null && break
        sleep 0.1
    done
done
pair "diff" "out err rc" "" diff @-dy
pair "diff of a missing container" "out err1 rc" "" diff @-nosuch
# (not NetIO or the usage columns: they move between the two clients' runs; the IDs differ)
pair "stats --no-stream --format" "out err rc" "" stats --no-stream --format '{{.Name}} {{.PIDs}}' @-dy
pair "stats of a missing container" "out err1 rc" "" stats --no-stream @-nosuch
pair "update" "out err rc" "" update --memory 64m --memory-swap 128m --cpu-shares 512 @-dy
pair "update shows in inspect" "out rc" "" inspect -f '{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.CpuShares}}' @-dy
pair "update of a missing container" "out err1 rc" "" update --memory 64m @-nosuch
pair "cp to stdout: the same tar" "out err rc" "" cp @-dy:/etc/passwd -
pair "cp of a missing path" "out err1 rc" "" cp @-dy:/no/such "$work/none"
pair "export of a missing container" "out err1 rc" "" export -o "$work/none.tar" @-nosuch
pair "commit of a missing container" "out err1 rc" "" commit @-nosuch
pair "system df" "out err rc" "" system df
pair "system df --format" "out err rc" "" system df --format '{{.Type}}: {{.TotalCount}} {{.Active}} {{.Size}} {{.Reclaimable}}'
