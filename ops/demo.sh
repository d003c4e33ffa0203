#!/usr/bin/env bash
# Tells one whole story through the gateway of a running Courier (ops/up.sh), printing each
# step: an admin stocks a product, Ada signs up, logs in, lists the products, orders, watches
# the order become confirmed, and reads her notifications. Every request is printed with its
# status and reply; the script stops with exit code 1 at the first step that does not go as
# told.
#
#   ops/demo.sh                 against http://127.0.0.1:8080 ($COURIER_GATEWAY__BIND)
#   ops/demo.sh --errors        then what goes wrong, as a dashboard should show it: bad input
#                               (400), an unknown id (404), no token (401), someone else's
#                               account (403), a taken email (409), an order of more than the
#                               stock and one over the payments limit, both sagas `cancelled`
#   GATEWAY=http://host:port ops/demo.sh
#
# Needs curl and python3. DEMO_TIMEOUT (seconds, 15) bounds each wait for a saga or a
# notification.
set -euo pipefail

usage="usage: ops/demo.sh [--errors]"
errors=false
for arg in "$@"; do
    case $arg in
        --errors) errors=true ;;
        -h | --help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "$usage" >&2; exit 2 ;;
    esac
done

step() { printf '\n== %s\n' "$*"; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }
for tool in curl python3; do
    command -v "$tool" >/dev/null || die "$tool not found: install it (Debian: apt-get install $tool) and run again"
done

gateway=${GATEWAY:-http://${COURIER_GATEWAY__BIND:-127.0.0.1:8080}}
gateway=${gateway%/}
password='correct horse'
timeout=${DEMO_TIMEOUT:-15}
# Unique per run, so that the demo runs again and again against the same system.
run_id=$(date +%s)-$$
reply_file=$(mktemp)
trap 'rm -f "$reply_file"' EXIT

# The value of a top-level field of the JSON in $reply ("" when absent or not JSON). With a
# second argument, of the JSON given there.
field() {
    python3 -c '
import json, sys
try:
    v = json.loads(sys.argv[2]).get(sys.argv[1], "")
except (ValueError, AttributeError):
    v = ""
print(v if isinstance(v, str) else json.dumps(v))' "$1" "${2-$reply}"
}

# call <method> <path> [<body>] [<token>]: sends one request through the gateway, prints it and
# its answer, and sets $status (the HTTP status, 000 when none came) and $reply (the body).
call() {
    local method=$1 path=$2 body=${3:-} token=${4:-} args=()
    [[ -n $token ]] && args+=(-H "Authorization: Bearer $token")
    [[ -n $body ]] && args+=(-H 'Content-Type: application/json' -d "$body")
    printf '> %s %s %s\n' "$method" "$path" "$body"
    status=$(curl -sS --max-time 15 -o "$reply_file" -w '%{http_code}' -X "$method" "$gateway$path" "${args[@]}") ||
        status=${status:-000}
    reply=$(<"$reply_file")
    printf '< %s %s\n' "$status" "$reply"
}

# expect <status> <method> <path> [<body>] [<token>]: call, and stop unless it answers <status>.
expect() {
    local want=$1
    shift
    call "$@"
    [[ $status == "$want" ]] || die "$1 $2 answered $status, expected $want"
}

# settle <order id> <token>: waits until the order leaves `pending`; sets $state.
settle() {
    local id=$1 token=$2 deadline=$((SECONDS + timeout))
    printf '> GET /orders/%s   (again until it is no longer pending)\n' "$id"
    while :; do
        call GET "/orders/$id" "" "$token" >/dev/null
        [[ $status == 200 ]] || die "GET /orders/$id answered $status: $reply"
        state=$(field state)
        [[ $state != pending ]] && break
        ((SECONDS < deadline)) || die "order $id still pending after $timeout s"
        sleep 0.1
    done
    printf '< %s %s\n' "$status" "$reply"
}

# notified <kind> <order id or ""> <token>: waits until the user has a notification of <kind>
# (about the order, when given).
notified() {
    local kind=$1 order=$2 token=$3 deadline=$((SECONDS + timeout)) found
    printf '> GET /notifications   (again until one is %s%s)\n' "$kind" "${order:+ about $order}"
    while :; do
        call GET /notifications "" "$token" >/dev/null
        [[ $status == 200 ]] || die "GET /notifications answered $status: $reply"
        found=$(python3 -c '
import json, sys
kind, order = sys.argv[1], sys.argv[2]
print(any(n.get("kind") == kind and (not order or n.get("order_id") == order)
          for n in json.loads(sys.argv[3]).get("notifications", [])))' "$kind" "$order" "$reply")
        [[ $found == True ]] && break
        ((SECONDS < deadline)) || die "no $kind notification after $timeout s: $reply"
        sleep 0.2
    done
    printf '< %s %s\n' "$status" "$reply"
}

curl -fsS --max-time 5 "$gateway/health" >/dev/null 2>&1 || die "no gateway answers at $gateway: start Courier with ops/up.sh"

step "the admin signs up (admin@example.com gets role admin; 409 when signed up before) and logs in"
call POST /users "{\"name\":\"Admin\",\"email\":\"admin@example.com\",\"password\":\"$password\"}"
[[ $status == 201 || $status == 409 ]] || die "the admin's sign-up answered $status"
expect 200 POST /auth/login "{\"email\":\"admin@example.com\",\"password\":\"$password\"}"
admin=$(field access_token)
[[ -n $admin ]] || die "the admin could not log in (signed up earlier with another password?)"

step "the admin stocks a product"
expect 201 POST /products "{\"name\":\"Tea $run_id\",\"price\":450,\"currency\":\"EUR\",\"stock\":20}" "$admin"
product_id=$(field id)
[[ -n $product_id ]] || die "the product was not created"

step "Ada signs up and logs in"
email="ada+$run_id@example.com"
expect 201 POST /users "{\"name\":\"Ada\",\"email\":\"$email\",\"password\":\"$password\"}"
expect 200 POST /auth/login "{\"email\":\"$email\",\"password\":\"$password\"}"
ada=$(field access_token)
[[ -n $ada ]] || die "Ada could not log in"

step "Ada lists the products (public)"
expect 200 GET "/products?limit=5"

step "Ada orders two of them (202: the order is pending while its saga runs)"
expect 202 POST /orders "{\"items\":[{\"product_id\":\"$product_id\",\"quantity\":2}]}" "$ada"
order_id=$(field id)
[[ -n $order_id ]] || die "the order was not taken"

step "the saga reserves the stock and charges the payment"
settle "$order_id" "$ada"
[[ $state == confirmed ]] || die "the order ended $state, expected confirmed"

step "the stock went down by two"
expect 200 GET "/products/$product_id"
[[ $(field stock) == 18 ]] || die "the stock is $(field stock), expected 18"

step "Ada's notifications (a welcome, and her order confirmed)"
notified order_confirmed "$order_id" "$ada"

if ! $errors; then
    printf '\ndemo: the story went as told\n'
    exit 0
fi

step "errors the callers make: each answered with its status and one JSON shape"
expect 400 POST /users '{"name":"Bea","email":"not an email","password":"correct horse"}'
expect 400 POST /orders "{\"items\":[{\"product_id\":\"$product_id\",\"quantity\":0}]}" "$ada"
expect 404 GET /products/00000000-0000-7000-8000-000000000000
expect 404 GET /orders/00000000-0000-7000-8000-000000000000 "" "$ada"
expect 401 GET /users/profile
expect 401 POST /orders "{\"items\":[{\"product_id\":\"$product_id\",\"quantity\":1}]}"
expect 403 GET /users "" "$ada"
expect 409 POST /users "{\"name\":\"Ada\",\"email\":\"$email\",\"password\":\"$password\"}"
expect 401 POST /auth/login "{\"email\":\"$email\",\"password\":\"wrong horse\"}"

step "Ada orders more than the stock: the saga cannot reserve it, and cancels the order"
expect 202 POST /orders "{\"items\":[{\"product_id\":\"$product_id\",\"quantity\":1000}]}" "$ada"
short_id=$(field id)
settle "$short_id" "$ada"
[[ $state == cancelled ]] || die "the order ended $state, expected cancelled"

step "Ada orders past her payments limit (100000 minor units by default): the charge is declined, the stock released, the order cancelled"
expect 201 POST /products "{\"name\":\"Samovar $run_id\",\"price\":60000,\"currency\":\"EUR\",\"stock\":5}" "$admin"
dear_id=$(field id)
expect 202 POST /orders "{\"items\":[{\"product_id\":\"$dear_id\",\"quantity\":2}]}" "$ada"
declined_id=$(field id)
settle "$declined_id" "$ada"
[[ $state == cancelled ]] || die "the order ended $state, expected cancelled (payments.user_limit above 120000?)"
expect 200 GET "/products/$dear_id"
[[ $(field stock) == 5 ]] || die "the stock is $(field stock) after the release, expected 5"

step "Ada's notifications tell her of both"
notified order_cancelled "$short_id" "$ada"
notified order_cancelled "$declined_id" "$ada"

printf '\ndemo: the story and its errors went as told\n'
