#!/usr/bin/env bash
# test_endpoint_errors.sh - an endpoint that is not what it should be gives one clear line and
# exit 1, never a crash or a hang:
#   1. https with a self-signed certificate: refused (TLS verification is on by default);
#   2. the same with --ca-file trusting it: the TLS handshake passes, but the server answers
#      HTTP 200 with an HTML page: "not a Kinesis JSON response";
#   3. plain http to a port where nothing listens: "unreachable", naming the endpoint.
# Server: a few lines of Python (http.server + ssl) on 127.0.0.1 and a free port, stopped at
# exit; the certificate is made here with openssl.
set -euo pipefail
bin="${K2P_BINARY_DIR:?}/kinesis2pg"
work=$(mktemp -d)
srv=""
cleanup() {
    local rc=$?
    set +e # wait reports the server's SIGTERM (143): not our failure
    [ -n "$srv" ] && kill "$srv" 2>/dev/null && wait "$srv" 2>/dev/null
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
    -addext "subjectAltName=IP:127.0.0.1" -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat > "$work/html_server.py" <<'PY'
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b"<html><body>Welcome to nginx!</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
PY
python3 "$work/html_server.py" "$work/cert.pem" "$work/key.pem" > "$work/port" 2>/dev/null &
srv=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.05; done
port=$(head -1 "$work/port")

export AWS_ACCESS_KEY_ID=AKIDENDPOINTTEST AWS_SECRET_ACCESS_KEY=endpoint-test-secret-value
export AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
common=(load --stream s --pg "host=127.0.0.1 port=1" --log-level error)

run() { # name, expected exit, pattern, args...
    local name=$1 want=$2 pat=$3 rc=0
    shift 3
    timeout 60 "$bin" "$@" >"$work/out" 2>"$work/err" || rc=$?
    [ "$rc" = "$want" ] || { cat "$work/err" >&2; fail "$name: exit $rc, expected $want"; }
    grep -q "$pat" "$work/err" || { cat "$work/err" >&2; fail "$name: no '$pat' in the error"; }
    [ "$(wc -l < "$work/err")" -le 2 ] || { cat "$work/err" >&2; fail "$name: more than one error line"; }
    if grep -q "endpoint-test-secret-value" "$work/out" "$work/err"; then fail "$name: secret printed"; fi
    echo "ok: $name: $(head -1 "$work/err")"
}

run "untrusted certificate" 1 "TLS verification failed" "${common[@]}" --endpoint "https://127.0.0.1:$port"
run "HTML instead of Kinesis" 1 "not a Kinesis JSON response" "${common[@]}" \
    --endpoint "https://127.0.0.1:$port" --ca-file "$work/cert.pem"
closed=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
run "nothing listening" 1 "127.0.0.1:$closed.*unreachable" "${common[@]}" --endpoint "http://127.0.0.1:$closed"
echo "3 passed, 0 failed"
