# Sourced by the scripts that start a berth daemon of their own. A daemon that stops keeps its
# bridges and its nftables tables (the containers a restart adopts need them); a test's
# daemon, once stopped, takes them along: the bridges its tables name (user networks a failed
# test left), its default bridge, its ip and ip6 tables. The names are the ones
# berth_engine::network::instance_names derives from the data root. Safe under `set -e`.
#
#   berth_net_cleanup DATA_ROOT
berth_net_cleanup() {
    local h b
    h=$(printf %s "$1" | sha256sum | cut -c1-6)
    for b in $({ nft list table ip "berth_$h"; nft list table ip6 "berth_$h"; } 2>/dev/null |
        grep -o 'oifname "[^"]*"' | cut -d'"' -f2 | sort -u) "berth$h"; do
        [ -d "/sys/class/net/$b" ] && { ip link del "$b" 2>/dev/null || true; }
    done
    nft delete table ip "berth_$h" 2>/dev/null || true
    nft delete table ip6 "berth_$h" 2>/dev/null || true
    return 0
}
