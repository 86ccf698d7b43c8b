#!/usr/bin/env bash
# Manual helper: run a throw-away etcd + kube-apiserver on free loopback ports.
#   tests/control-plane.sh up DIR     start; writes DIR/kubeconfig, logs in DIR
#   tests/control-plane.sh down DIR   stop both (DIR is kept)
# Binaries: $SAVEPOINT_WEBHOOK_KUBE_APISERVER, $SAVEPOINT_WEBHOOK_ETCD
# (see `eval "$(tests/provision.sh --print-env)"`).
set -euo pipefail

usage() { echo "usage: $0 up|down DIR" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
cmd=$1; dir=$2

# A random port nothing answers on (good enough for a manual helper).
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 30000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

stop() {
  local f pid
  for f in "$dir/kube-apiserver.pid" "$dir/etcd.pid"; do
    [[ -f $f ]] || continue
    pid=$(<"$f")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
  done
}

case $cmd in
up)
  apiserver=${SAVEPOINT_WEBHOOK_KUBE_APISERVER:?not set; run: eval \"\$(tests/provision.sh --print-env)\"}
  etcd=${SAVEPOINT_WEBHOOK_ETCD:-/usr/bin/etcd}
  mkdir -p "$dir" && dir=$(cd "$dir" && pwd)
  [[ ! -f $dir/etcd.pid ]] || { echo "$dir already has a control plane; run: $0 down $dir" >&2; exit 1; }
  trap 'stop' ERR
  eport=$(free_port); pport=$(free_port); aport=$(free_port)
  token=$(openssl rand -hex 16)
  [[ -f $dir/sa.key ]] || openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null
  echo "$token,admin,admin,\"system:masters\"" >"$dir/tokens.csv"

  "$etcd" --name=default --data-dir="$dir/etcd" \
    --listen-client-urls="http://127.0.0.1:$eport" --advertise-client-urls="http://127.0.0.1:$eport" \
    --listen-peer-urls="http://127.0.0.1:$pport" --initial-advertise-peer-urls="http://127.0.0.1:$pport" \
    --initial-cluster="default=http://127.0.0.1:$pport" >"$dir/etcd.log" 2>&1 </dev/null &
  echo $! >"$dir/etcd.pid"

  # --insecure-port is off by default from 1.20 and gone from 1.24.
  insecure=()
  minor=$("$apiserver" --version | sed -n 's/^Kubernetes v1\.\([0-9]*\)\..*/\1/p')
  if [[ ${minor:-0} -lt 24 ]]; then insecure=(--insecure-port=0); fi
  "$apiserver" --etcd-servers="http://127.0.0.1:$eport" --secure-port="$aport" \
    --bind-address=127.0.0.1 "${insecure[@]}" --cert-dir="$dir/certs" \
    --token-auth-file="$dir/tokens.csv" --authorization-mode=RBAC \
    --service-account-key-file="$dir/sa.key" --service-account-signing-key-file="$dir/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc --service-cluster-ip-range=10.96.0.0/24 \
    --disable-admission-plugins=ServiceAccount >"$dir/kube-apiserver.log" 2>&1 </dev/null &
  echo $! >"$dir/kube-apiserver.pid"

  cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: savepoint-test
  cluster: {server: "https://127.0.0.1:$aport", insecure-skip-tls-verify: true}
users:
- name: admin
  user: {token: "$token"}
contexts:
- name: savepoint-test
  context: {cluster: savepoint-test, user: admin, namespace: default}
current-context: savepoint-test
EOF
  for _ in $(seq 240); do
    [[ $(curl -sk --max-time 2 -H "Authorization: Bearer $token" "https://127.0.0.1:$aport/readyz" || true) == ok ]] && break
    kill -0 "$(<"$dir/kube-apiserver.pid")" 2>/dev/null || { tail -n 40 "$dir/kube-apiserver.log" >&2; false; }
    sleep 0.25
  done
  [[ $(curl -sk --max-time 2 -H "Authorization: Bearer $token" "https://127.0.0.1:$aport/readyz" || true) == ok ]] \
    || { tail -n 40 "$dir/kube-apiserver.log" >&2; echo "kube-apiserver not ready" >&2; false; }
  echo "control plane up: export KUBECONFIG=$dir/kubeconfig   (stop: $0 down $dir)"
  ;;
down) stop ;;
*) usage ;;
esac
