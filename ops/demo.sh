#!/usr/bin/env bash
# Tells one whole story through the gateway of a running Courier (ops/up.sh), printing each
# step: an admin stocks a product, Ada signs up, logs in, lists the products, orders, watches
# the order become confirmed, and reads her notifications.
#
#   ops/demo.sh                 against http://127.0.0.1:8080
#   GATEWAY=http://host:port ops/demo.sh
set -euo pipefail

gateway=${GATEWAY:-http://${COURIER_GATEWAY__BIND:-127.0.0.1:8080}}
json='Content-Type: application/json'
password='correct horse'
run_id=$(date +%s)

step() { printf '\n== %s\n' "$*"; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }
# The value of a top-level field of the JSON on stdin ("" when absent).
field() { python3 -c 'import json,sys; v=json.load(sys.stdin).get(sys.argv[1], ""); print(v if isinstance(v, str) else json.dumps(v))' "$1"; }
# POST / GET, printing the request and the reply; the reply body on stdout's last line.
call() {
    local method=$1 path=$2 body=${3:-} token=${4:-} args=()
    [[ -n $token ]] && args+=(-H "Authorization: Bearer $token")
    [[ -n $body ]] && args+=(-H "$json" -d "$body")
    printf '%s %s %s\n' "$method" "$path" "$body" >&2
    curl -sS -X "$method" "$gateway$path" "${args[@]}"
}

curl -fsS "$gateway/health" >/dev/null 2>&1 || die "no gateway answers at $gateway: start Courier with ops/up.sh"

step "the admin signs up (admin@example.com gets role admin) and logs in"
call POST /users "{\"name\":\"Admin\",\"email\":\"admin@example.com\",\"password\":\"$password\"}" >/dev/null || true
admin=$(call POST /auth/login "{\"email\":\"admin@example.com\",\"password\":\"$password\"}" | field access_token)
[[ -n $admin ]] || die "the admin could not log in (signed up earlier with another password?)"
echo "token: ${admin:0:24}..."

step "the admin stocks a product"
product=$(call POST /products "{\"name\":\"Tea $run_id\",\"price\":450,\"currency\":\"EUR\",\"stock\":20}" "$admin")
echo "$product"
product_id=$(field id <<<"$product")
[[ -n $product_id ]] || die "the product was not created"

step "Ada signs up and logs in"
email="ada+$run_id@example.com"
call POST /users "{\"name\":\"Ada\",\"email\":\"$email\",\"password\":\"$password\"}"; echo
ada=$(call POST /auth/login "{\"email\":\"$email\",\"password\":\"$password\"}" | field access_token)
[[ -n $ada ]] || die "Ada could not log in"

step "Ada lists the products (public)"
call GET "/products?limit=5"; echo

step "Ada orders two of them (202: the order is pending while its saga runs)"
order=$(call POST /orders "{\"items\":[{\"product_id\":\"$product_id\",\"quantity\":2}]}" "$ada")
echo "$order"
order_id=$(field id <<<"$order")
[[ -n $order_id ]] || die "the order was not taken"

step "the saga reserves the stock and charges the payment"
for _ in $(seq 1 100); do
    state=$(call GET "/orders/$order_id" "" "$ada" 2>/dev/null | field state)
    [[ $state != pending ]] && break
    sleep 0.1
done
call GET "/orders/$order_id" "" "$ada"; echo
[[ $state == confirmed ]] || die "the order ended $state"

step "the stock went down by two"
call GET "/products/$product_id"; echo

step "Ada's notifications (a welcome, and her order confirmed)"
sleep 0.5
call GET /notifications "" "$ada"; echo
