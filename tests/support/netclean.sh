# Sourced by the scripts that start a berth daemon of their own. A daemon that stops keeps its
# default bridge and its nftables tables (the containers a restart adopts need them); a test's
# daemon takes them along when the test ends. The names are the ones
# berth_engine::network::instance_names derives from the data root. Safe under `set -e`.
#
#   berth_net_cleanup DATA_ROOT
berth_net_cleanup() {
    local h
    h=$(printf %s "$1" | sha256sum | cut -c1-6)
    ip link del "berth$h" 2>/dev/null || true
    nft delete table ip "berth_$h" 2>/dev/null || true
    nft delete table ip6 "berth_$h" 2>/dev/null || true
    return 0
}
