#!/usr/bin/env bash
# The tutorial as a Swarm stack across the harness's nodes (issue 12's multi-node scenario). Run it
# through the harness, which tears every node down afterwards:
#
#   npm run build && test/cluster/swarm-harness.sh -- test/cluster/swarm-tutorial.sh
#
# Builds the image on the manager (base from this machine's glibc, dist/serve-bin, the tutorial at
# /app), loads it on every node, writes the stack with `serve-bin build --target swarm`, deploys it,
# and then, talking only to addresses inside the harness's namespaces: the exact tutorial answers;
# Model scaled 1 → 4 by PATCH under a bounded load (0 failed); the controller's container killed under
# load (the data plane keeps answering, the next controller adopts the replicas).
# Prints one "RESULT name: …" line per step; exits non-zero at the first failed check.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
read -r -a SOCKS <<<"$SB_SWARM_SOCKETS"
read -r -a NSS <<<"$SB_SWARM_NETNS"
read -r -a ADDRS <<<"$SB_SWARM_ADDRS"
W=$(mktemp -d /tmp/sb-swarm-tutorial-XXXXXX)
trap 'rm -rf "$W"' EXIT
T0=$SECONDS
say() { echo "[swarm-tutorial $(date +%T) +$((SECONDS - T0))s] $*" >&2; }
fail() { say "FAILED: $*"; docker service ls >&2 || true; for s in controller proxy default-model; do docker service logs --raw sb_$s 2>&1 | tail -30 >&2 || true; done; exit 1; }
# Requests go from inside the manager's namespace to the harness's own node addresses (ports are
# published in host mode: the proxy's on the node it runs on, the admin API on the manager's).
in_ns() { nsenter --net="/run/netns/${NSS[0]}" "$@"; }
ADMIN="http://${ADDRS[0]}:8265"

say "building the image on the manager"
docker/make-base.sh dist/serve-bin local/glibc-base:1 >/dev/null
docker build -q --target prebuilt --build-arg BASE=local/glibc-base:1 -t local/serve-bin:swarm . >/dev/null
mkdir -p "$W/img" && cp examples/tutorial/graph.ts "$W/img/graph.ts"
printf 'FROM local/serve-bin:swarm\nCOPY graph.ts /app/graph.ts\n' > "$W/img/Dockerfile"
docker build -q -t local/sb-tutorial:1 "$W/img" >/dev/null
docker save local/sb-tutorial:1 -o "$W/img.tar"
# Every other node loads the one saved tarball at the same time.
pids=()
for s in "${SOCKS[@]:1}"; do docker -H "$s" load -q -i "$W/img.tar" >/dev/null & pids+=($!); done
for p in ${pids[@]+"${pids[@]}"}; do wait "$p" || fail "loading the image on a node failed"; done

say "image built and loaded; writing and deploying the stack"
dist/serve-bin build examples/tutorial/graph.ts --target swarm --image local/sb-tutorial:1 -o "$W/stack" >&2
# The harness's manager socket is not /var/run/docker.sock on this host.
sed -i "s#/var/run/docker.sock:/var/run/docker.sock#${SOCKS[0]#unix://}:/var/run/docker.sock#" "$W/stack/stack.yml"
openssl rand -hex 32 | docker secret create serve-bin-cluster-token - >/dev/null
ADMIN_TOKEN=$(openssl rand -hex 16)
printf '%s' "$ADMIN_TOKEN" | docker secret create serve-bin-admin-token - >/dev/null
(cd "$W/stack" && docker stack deploy --resolve-image never -c stack.yml sb >&2)

# The proxy's node is known once its task started (Swarm calls a task Running only after its first
# health check, 10 s in); readiness is then asked of the proxy itself, polled.
PNODE=""
for _ in $(seq 1 600); do
  PNODE=$(docker service ps sb_proxy --filter desired-state=running --format '{{.Node}} {{.CurrentState}}' | awk '/Starting|Running/ {print $1; exit}')
  if [ -n "$PNODE" ]; then
    URL="http://${ADDRS[$(( ${PNODE#node} - 1 ))]}:8000"
    [ "$(in_ns curl -s -o /dev/null -w '%{http_code}' -m 2 "$URL/-/ready" || true)" = 200 ] && break
  fi
  sleep 0.5
done
[ -n "$PNODE" ] || fail "the proxy task never started"
[ "$(in_ns curl -s -o /dev/null -w '%{http_code}' -m 2 "$URL/-/ready")" = 200 ] || fail "the proxy never became ready"
say "proxy on $PNODE ready: $URL"
ask() { in_ns curl -s -m 10 -d '["5",[1,2],"sum"]' "$URL/my-dag" || echo "(curl exit $?)"; }
# The first answer is waited for, not assumed: one run in six saw the very first request time out right
# after the proxy said ready (cause not found); later requests in that run were never retried.
for try in 1 2 3 4 5 6; do
  ANSWER=$(ask)
  [ "$ANSWER" = "sum(['(1 * (5 + 1.5))', '(2 * (5 + 1.5))'])" ] && break
  echo "first request, try $try: $ANSWER" >&2
  sleep 1
done
[ "$ANSWER" = "sum(['(1 * (5 + 1.5))', '(2 * (5 + 1.5))'])" ] || { docker service logs --raw sb_proxy >&2; docker service logs --raw sb_default-dagdriver >&2; fail "tutorial answer: $ANSWER"; }
echo "RESULT tutorial: $ANSWER"
docker service ps --filter desired-state=running --format '{{.Name}} {{.Node}}' $(docker stack services -q sb) | sort >&2

# A bounded load from inside the manager's namespace: N requests, C at a time; prints ok/failed.
load() { in_ns "$ROOT/node_modules/.bin/bun" "$ROOT/test/cluster/load.ts" "$URL/my-dag" "$1" "$2" ${3:+"$3"}; }
# Waits until a load started with a progress file has had $2 answers: it is flowing, 8 requests in flight.
flowing() { for _ in $(seq 1 600); do [ "$(cat "$1" 2>/dev/null || echo 0)" -ge "$2" ] && return 0; sleep 0.1; done; fail "the load never got going"; }

say "PATCH Model 1 -> 4 under load"
load 400 8 > "$W/load1" &
LOADER=$!
CODE=$(in_ns curl -s -o "$W/patch" -w '%{http_code}' -m 300 -X PATCH -H "authorization: Bearer $ADMIN_TOKEN" -H 'content-type: application/json' -d '{"numReplicas": 4}' "$ADMIN/api/applications/default/deployments/Model")
wait $LOADER
say "PATCH answered and the load finished"
[ "$CODE" = 200 ] || fail "PATCH answered $CODE: $(cat "$W/patch")"
echo "RESULT scale load: $(cat "$W/load1")"
grep -q ' failed=0$' "$W/load1" || fail "requests failed during the scale-up"
NODES_OF_MODEL=$(docker service ps --filter desired-state=running --format '{{.Node}}' sb_default-model | sort -u | paste -sd,)
echo "RESULT Model tasks: $(docker service ps --filter desired-state=running -q sb_default-model | wc -l) on nodes $NODES_OF_MODEL"

replica_tasks() { for s in $(docker stack services -q sb --filter label=serve-bin.role=replica); do docker service ps -q --filter desired-state=running "$s"; done | sort; }
replica_tasks > "$W/tasks-before"

say "killing the controller's container under load"
load 300 8 "$W/progress2" > "$W/load2" &
LOADER=$!
flowing "$W/progress2" 16
CID=$(docker ps -q --filter label=com.docker.swarm.service.name=sb_controller | head -1)
[ -n "$CID" ] || fail "no controller container on the manager"
docker kill "$CID" >/dev/null
say "controller killed"
wait $LOADER
say "load finished"
echo "RESULT controller killed, load: $(cat "$W/load2")"
grep -q ' failed=0$' "$W/load2" || fail "requests failed while the controller was down"
for _ in $(seq 1 480); do
  S=$(in_ns curl -s -m 5 -H "authorization: Bearer $ADMIN_TOKEN" "$ADMIN/api/applications" || true)
  echo "$S" | grep -q '"status":"RUNNING"' && break
  sleep 0.25
done
say "new controller RUNNING"
echo "RESULT after restart: $(echo "$S" | head -c 300)"
echo "$S" | grep -q '"status":"RUNNING"' || fail "the new controller did not reach RUNNING"
replica_tasks > "$W/tasks-after"
cmp -s "$W/tasks-before" "$W/tasks-after" || fail "replica tasks changed across the controller's restart (adoption should keep them)"
echo "RESULT adoption: the same $(wc -l < "$W/tasks-after") replica tasks before and after the controller's restart"

# Cut off a worker that does not run the proxy, under load.
CUT=3; [ "$PNODE" = node3 ] && CUT=2
LOST=$(docker service ps --filter desired-state=running --filter node=node$CUT --format '{{.Name}}' $(docker stack services -q sb --filter label=serve-bin.role=replica) | paste -sd' ')
say "cutting node$CUT off (its tasks: $LOST) under load"
load 600 8 "$W/progress3" > "$W/load3" &
LOADER=$!
flowing "$W/progress3" 32
ip -n "${NSS[$((CUT - 1))]}" link set eth0 down
say "cut"
wait $LOADER
say "load finished"
echo "RESULT node$CUT cut off (tasks there: ${LOST:-none}), load: $(cat "$W/load3")"
for _ in $(seq 1 360); do
  S=$(in_ns curl -s -m 5 -H "authorization: Bearer $ADMIN_TOKEN" "$ADMIN/api/applications" || true)
  N=$(docker service ps --filter desired-state=running --format '{{.Node}} {{.CurrentState}}' $(docker stack services -q sb --filter label=serve-bin.role=replica) | grep -c "^node$CUT " || true)
  [ "$N" = 0 ] && echo "$S" | grep -q '"status":"RUNNING"' && break
  sleep 0.5
done
say "rescheduled"
echo "RESULT after the cut: replica tasks on node$CUT: $N; status $(echo "$S" | grep -o '"default":{"status":"[A-Z_]*"')"
docker service ps --filter desired-state=running --format '{{.Name}} {{.Node}} {{.CurrentState}}' $(docker stack services -q sb --filter label=serve-bin.role=replica) | sort >&2
echo "RESULT answer after the cut: $(ask)"
[ "$(ask)" = "sum(['(1 * (5 + 1.5))', '(2 * (5 + 1.5))'])" ] || fail "no answer after the cut"
load 100 8 > "$W/load4"
echo "RESULT load after the cut: $(cat "$W/load4")"
ip -n "${NSS[$((CUT - 1))]}" link set eth0 up
if [ -n "${SB_SWARM_DEBUG:-}" ]; then for s in controller proxy; do docker service logs --timestamps --raw sb_$s 2>&1 | tail -60 | sed "s/^/[$s] /" >&2 || true; done; fi
say "removing the stack"
docker stack rm sb >&2
say "done"
