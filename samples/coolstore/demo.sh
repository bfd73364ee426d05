#!/usr/bin/env bash
# The coolstore demo, from a fresh machine: install envoygen, make sure Docker
# answers, build the gateway image from samples/coolstore with `envoygen build`,
# start the webapp and catalog backends on a Docker network, start the gateway
# with its ports published on 127.0.0.1, and curl it.
#
#   samples/coolstore/demo.sh            # leaves the gateway running
#   samples/coolstore/demo.sh down       # removes the demo containers and network
#
# DEMO_PORT (default 8080): host port for the gateway's HTTP listener.
set -euo pipefail
cd "$(dirname "$0")/../.."
PORT="${DEMO_PORT:-8080}"
READY_PORT="${DEMO_READY_PORT:-15021}"
NET=coolstore-demo
down() { docker rm -f coolstore-gateway coolstore-webapp coolstore-catalog >/dev/null 2>&1 || true
         docker network rm "$NET" >/dev/null 2>&1 || true; }
if [ "${1:-}" = down ]; then down; echo "demo removed"; exit 0; fi

bash .ci/setup.sh >/dev/null
bash .ci/docker.sh
echo "== envoygen build -f samples/coolstore -t coolstore-gateway:demo"
.venv/bin/envoygen build -f samples/coolstore -t coolstore-gateway:demo 2>&1 | tail -n 3
echo "== backends (webapp, catalog) from the local base image"
docker build -q -t coolstore-backends:demo samples/coolstore/demo >/dev/null 2>/tmp/coolstore-backends-build.log || { cat /tmp/coolstore-backends-build.log; exit 1; }
down
docker network create "$NET" >/dev/null
docker run -d --name coolstore-catalog --network "$NET" \
    --network-alias catalog.istioinaction.svc.cluster.local coolstore-backends:demo /etc/demo/catalog.json >/dev/null
docker run -d --name coolstore-webapp --network "$NET" \
    --network-alias webapp.istioinaction.svc.cluster.local coolstore-backends:demo /etc/demo/webapp.json >/dev/null
docker run -d --name coolstore-gateway --network "$NET" \
    -p "127.0.0.1:${PORT}:8080" -p "127.0.0.1:${READY_PORT}:15021" coolstore-gateway:demo >/dev/null
for _ in $(seq 1 60); do
    if curl -fsS -o /dev/null "http://127.0.0.1:${READY_PORT}/healthz/ready" 2>/dev/null; then break; fi
    sleep 0.5
done
curl -fsS -o /dev/null "http://127.0.0.1:${READY_PORT}/healthz/ready" || { docker logs coolstore-gateway; exit 1; }
echo "== gateway ready on 127.0.0.1:${PORT}"
set -x
curl -sS -i -H "Host: webapp.istioinaction.io" "http://127.0.0.1:${PORT}/api/catalog"
curl -sS -o /dev/null -w "unknown host -> %{http_code}\n" -H "Host: nobody.example.com" "http://127.0.0.1:${PORT}/"
set +x
echo "The gateway keeps running: curl -H 'Host: webapp.istioinaction.io' http://127.0.0.1:${PORT}/"
echo "Remove it with: samples/coolstore/demo.sh down"
