#!/usr/bin/env bash
# check/mock-upstream.test.sh - behaviour of the mock Anthropic upstream.
#
# Starts $MOCK_UPSTREAM (default ./check/mock-upstream; this script builds
# nothing) on --port 0, drives it with curl, stops it by PID. Needs bash,
# curl and coreutils; uses jq only to check that answers are valid JSON when
# it is installed. If wrk is installed, ends with a 3 s measurement that is
# printed, not asserted (MOCK_UPSTREAM_WRK=0 skips it).
# Exit status: 0 all checks passed, 1 some failed, 2 could not start.

set -u
MOCK=${MOCK_UPSTREAM:-./check/mock-upstream}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mock-upstream-test.XXXXXX")
pid=
pass=0
fail=0

cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT

ok() { pass=$((pass + 1)); printf 'ok   %s\n' "$1"; }
nok() {
	fail=$((fail + 1))
	printf 'FAIL %s\n' "$1"
	if [ -n "${2:-}" ]; then printf '     %s\n' "${2:0:600}"; fi
}
# check DESCRIPTION COMMAND...: passes when COMMAND succeeds
check() {
	local d=$1
	shift
	if "$@"; then ok "$d"; else nok "$d" "${detail:-}"; fi
	detail=
}
detail=

# req NAME CURL-ARGS...: $tmp/NAME.h headers, .b body, .s status, .rc curl rc
req() {
	local n=$1
	shift
	curl -sS -D "$tmp/$n.h" -o "$tmp/$n.b" -w '%{http_code}' "$@" >"$tmp/$n.s" 2>"$tmp/$n.e"
	echo $? >"$tmp/$n.rc"
}
status() { cat "$tmp/$1.s"; }
body() { cat "$tmp/$1.b"; }
rc() { cat "$tmp/$1.rc"; }
# hdr NAME HEADER: value of a response header (case-insensitive name)
hdr() { tr -d '\r' <"$tmp/$1.h" | awk -v h="$2" 'BEGIN{IGNORECASE=1} tolower($0) ~ "^"tolower(h)":" {sub(/^[^:]*:[ \t]*/, ""); print; exit}'; }
has() { detail="$(head -c 600 "$tmp/$1.b")"; grep -qF -- "$2" "$tmp/$1.b"; }
hasnt() { detail="$(head -c 600 "$tmp/$1.b")"; ! grep -qF -- "$2" "$tmp/$1.b"; }
is() { detail="got '$1', want '$2'"; [ "$1" = "$2" ]; }
json_ok() {
	if command -v jq >/dev/null 2>&1; then
		detail="$(head -c 600 "$tmp/$1.b")"
		jq -e . "$tmp/$1.b" >/dev/null 2>&1
	fi
}
now_ms() {
	local t
	if [ -n "${EPOCHREALTIME:-}" ]; then
		t=${EPOCHREALTIME//[!0-9]/}
		echo $((t / 1000))
	else
		echo $(($(date +%s%N) / 1000000))
	fi
}

echo "# starting $MOCK --port 0"
if [ ! -x "$MOCK" ]; then
	echo "FAIL $MOCK is not an executable (set MOCK_UPSTREAM)"
	exit 2
fi
"$MOCK" --port 0 --quiet --pidfile "$tmp/pid" >"$tmp/stdout" 2>"$tmp/stderr" &
pid=$!
for _ in $(seq 100); do
	grep -q '^listening on ' "$tmp/stdout" 2>/dev/null && break
	sleep 0.05
done
line=$(head -n 1 "$tmp/stdout")
port=${line##*:}
if ! [[ $line =~ ^listening\ on\ 127\.0\.0\.1:[0-9]+$ ]] || [ "$port" -eq 0 ]; then
	echo "FAIL no 'listening on 127.0.0.1:PORT' line; stdout: '$line'"
	cat "$tmp/stderr"
	exit 2
fi
ok "prints 'listening on 127.0.0.1:$port' for --port 0"
check "writes its PID to --pidfile" is "$(cat "$tmp/pid" 2>/dev/null)" "$pid"
U="http://127.0.0.1:$port"
J=(-H 'content-type: application/json' -H 'anthropic-version: 2023-06-01')

echo "# messages, non-stream"
req m1 "${J[@]}" "$U/v1/messages" -H 'x-mock-usage: 11,22,3,4,5' -H 'x-mock-text-len: 7' \
	-d '{"model":"claude-sonnet-4-5-20250929","max_tokens":9,"messages":[{"role":"user","content":"say \"model\":\"nope\""}]}'
check "non-stream answers 200" is "$(status m1)" 200
check "non-stream is application/json" is "$(hdr m1 content-type)" application/json
check "non-stream carries request-id: req_mock_<n>" grep -qiE '^request-id: req_mock_[0-9]+' "$tmp/m1.h"
check "non-stream body is valid JSON" json_ok m1
check "non-stream echoes the top-level model, not a nested one" has m1 '"model":"claude-sonnet-4-5-20250929"'
check "non-stream has id msg_mock_<n> and role assistant" grep -qE '^\{"id":"msg_mock_[0-9]+","type":"message","role":"assistant"' "$tmp/m1.b"
check "non-stream text has x-mock-text-len characters" has m1 '"content":[{"type":"text","text":"Hello f"}]'
check "non-stream stop_reason end_turn" has m1 '"stop_reason":"end_turn","stop_sequence":null'
check "non-stream usage from x-mock-usage I,O,C5,C1,R" has m1 \
	'"usage":{"input_tokens":11,"cache_creation_input_tokens":7,"cache_read_input_tokens":5,"cache_creation":{"ephemeral_5m_input_tokens":3,"ephemeral_1h_input_tokens":4},"output_tokens":22}'
req m2 "${J[@]}" "$U/v1/messages" -d '{"model":"m"}'
check "default usage is 10,20,0,0,0 and text 20 chars" has m2 \
	'"text":"Hello from the mock "}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":10,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":20}}'
req m3 "${J[@]}" "$U/v1/messages?beta=true" -d '{"model":"m","stream":false}'
check "accepts a query string (?beta=true)" is "$(status m3)" 200
req m4 "${J[@]}" "$U/v1/messages" -d '{"messages":[]}'
check "missing model is 400 invalid_request_error" is "$(status m4):$(grep -c invalid_request_error "$tmp/m4.b")" 400:1
n=$(curl -s -o /dev/null -o /dev/null -o /dev/null -w '%{num_connects}\n' "${J[@]}" \
	-d '{"model":"m"}' "$U/v1/messages" "$U/v1/messages" "$U/v1/messages" | paste -sd, -)
check "keeps the connection alive across requests" is "$n" "1,0,0"
req m5 "${J[@]}" -H 'transfer-encoding: chunked' "$U/v1/messages" -d '{"model":"chunked-body","stream":false}'
check "accepts a chunked request body" has m5 '"model":"chunked-body"'
head -c 3000000 /dev/zero | tr '\0' a | sed 's/^/{"model":"big","pad":"/; s/$/"}/' >"$tmp/big.json"
t0=$(now_ms)
req m6 "${J[@]}" "$U/v1/messages" --data-binary "@$tmp/big.json"
t1=$(now_ms)
check "3 MB body with Expect: 100-continue answered 200 without a 1 s stall" \
	test "$(status m6)" = 200 -a $((t1 - t0)) -lt 900

echo "# messages, stream"
req s1 "${J[@]}" -N "$U/v1/messages" -H 'x-mock-usage: 1,2,3,4,5' -H 'x-mock-chunks: 4' -H 'x-mock-text-len: 8' \
	-d '{"model":"claude-x","stream":true}'
check "stream answers 200 text/event-stream" is "$(status s1) $(hdr s1 content-type)" "200 text/event-stream"
check "stream uses chunked transfer encoding" is "$(hdr s1 transfer-encoding)" chunked
order=$(sed -n 's/^event: //p' "$tmp/s1.b" | paste -sd' ' -)
check "stream events in the API's order with x-mock-chunks deltas" is "$order" \
	"message_start content_block_start ping content_block_delta content_block_delta content_block_delta content_block_delta content_block_stop message_delta message_stop"
datas=$(grep -c '^data: {' "$tmp/s1.b")
check "every event has one data line" is "$datas" 10
check "message_start carries input/cache usage and output_tokens 1" has s1 \
	'"usage":{"input_tokens":1,"cache_creation_input_tokens":7,"cache_read_input_tokens":5,"cache_creation":{"ephemeral_5m_input_tokens":3,"ephemeral_1h_input_tokens":4},"output_tokens":1}}}'
check "message_delta carries output_tokens" has s1 \
	'data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":2}}'
check "deltas are text_delta of the generated text" has s1 \
	'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"He"}}'
check "ping is the API's ping" has s1 'data: {"type": "ping"}'
check "events end with a blank line" test "$(grep -c '^$' "$tmp/s1.b")" -eq 10

curl -sS -N "${J[@]}" "$U/v1/messages" -H 'x-mock-delay-ms: 200' -d '{"model":"m","stream":true}' |
	while IFS= read -r l; do
		case $l in "event: "*) echo "$(now_ms) ${l#event: }" ;; esac
	done >"$tmp/times"
span=$(awk 'NR==1{a=$1} {z=$1} END{print z-a}' "$tmp/times")
mingap=$(awk 'NR>1{g=$1-p; if(m==""||g<m)m=g} {p=$1} END{print m+0}' "$tmp/times")
detail="$(tr '\n' ' ' <"$tmp/times")"
check "x-mock-delay-ms 200: 9 events arrive one by one (span ${span} ms, min gap ${mingap} ms)" \
	test "$(wc -l <"$tmp/times")" -eq 9 -a "$span" -ge 1400 -a "$mingap" -ge 150
t0=$(now_ms)
req fb "${J[@]}" "$U/v1/messages" -H 'x-mock-first-byte-ms: 400' -d '{"model":"m"}'
t1=$(now_ms)
check "x-mock-first-byte-ms 400 delays the answer (took $((t1 - t0)) ms)" test $((t1 - t0)) -ge 380 -a "$(status fb)" = 200

echo "# faults"
now=$(date +%s)
for spec in 429:rate_limit_error 429-noheaders:rate_limit_error 429-retry-after:rate_limit_error \
	429-reset:rate_limit_error 400:invalid_request_error 401:authentication_error \
	403:permission_error 500:api_error 503:api_error 529:overloaded_error; do
	f=${spec%%:*}
	type=${spec#*:}
	req "f$f" "${J[@]}" "$U/v1/messages" -H "x-mock-fault: $f" -d '{"model":"m"}'
	check "fault $f: status ${f%%-*}, Anthropic error $type" \
		test "$(status "f$f")" = "${f%%-*}" -a "$(grep -c "^{\"type\":\"error\",\"error\":{\"type\":\"$type\",\"message\":" "$tmp/f$f.b")" = 1
done
check "fault 429: retry-after 30 by default" is "$(hdr f429 retry-after)" 30
reset=$(hdr f429 anthropic-ratelimit-unified-reset)
check "fault 429: anthropic-ratelimit-unified-reset is now+60 ($reset)" \
	test "${reset:-0}" -ge $((now + 58)) -a "${reset:-0}" -le $((now + 63))
check "fault 429-noheaders: no retry-after, no reset" is "$(hdr f429-noheaders retry-after)$(hdr f429-noheaders anthropic-ratelimit-unified-reset)" ""
check "fault 429-retry-after: only retry-after" is "$(hdr f429-retry-after retry-after)/$(hdr f429-retry-after anthropic-ratelimit-unified-reset)" "30/"
check "fault 429-reset: only the reset header" test -z "$(hdr f429-reset retry-after)" -a -n "$(hdr f429-reset anthropic-ratelimit-unified-reset)"
req f429b "${J[@]}" "$U/v1/messages" -H 'x-mock-fault: 429' -H 'x-mock-retry-after: 7' -H 'x-mock-reset-in: 5' -d '{"model":"m"}'
reset=$(hdr f429b anthropic-ratelimit-unified-reset)
check "x-mock-retry-after 7 and x-mock-reset-in 5 set the 429 headers" \
	test "$(hdr f429b retry-after)" = 7 -a "${reset:-0}" -ge $((now + 3)) -a "${reset:-0}" -le $((now + 8))
check "error body carries the request id of the request-id header" \
	grep -qF "\"request_id\":\"$(hdr f529 request-id)\"" "$tmp/f529.b"

req fm529 "${J[@]}" "$U/v1/messages" -d '{"model":"claude-mock-fault-529"}'
check "model name claude-mock-fault-529 selects fault 529" is "$(status fm529)" 529
req fm429 "${J[@]}" "$U/v1/messages" -d '{"model":"claude-sonnet-mock-fault-429-noheaders"}'
check "model name ...mock-fault-429-noheaders selects 429 without headers" is "$(status fm429)/$(hdr fm429 retry-after)" "429/"
req fm401 "${J[@]}" "$U/v1/messages/count_tokens" -d '{"model":"claude-mock-fault-401"}'
check "model-name faults apply to count_tokens too" is "$(status fm401)" 401
req fmnone "${J[@]}" "$U/v1/messages" -H 'x-mock-fault: none' -d '{"model":"claude-mock-fault-529"}'
check "x-mock-fault: none overrides the model name" is "$(status fmnone)" 200
req fbad "${J[@]}" "$U/v1/messages" -H 'x-mock-fault: nonsense' -d '{"model":"m"}'
check "unknown fault name is a 400 naming it" test "$(status fbad)" = 400 -a "$(grep -c nonsense "$tmp/fbad.b")" = 1

req dm "${J[@]}" -N "$U/v1/messages" -H 'x-mock-fault: disconnect-mid-stream' -H 'x-mock-chunks: 4' -d '{"model":"m","stream":true}'
check "disconnect-mid-stream: curl sees a cut transfer (rc 18)" is "$(rc dm)" 18
check "disconnect-mid-stream: message_start and some deltas were sent" \
	test "$(grep -c '^event: message_start' "$tmp/dm.b")" = 1 -a "$(grep -c '^event: content_block_delta' "$tmp/dm.b")" = 2
check "disconnect-mid-stream: no message_delta, no message_stop" hasnt dm message_delta
req dmm "${J[@]}" -N "$U/v1/messages" -d '{"model":"claude-mock-fault-disconnect-mid-stream","stream":true}'
check "disconnect-mid-stream by model name" test "$(rc dmm)" = 18 -a "$(grep -c "^event: message_start" "$tmp/dmm.b")" = 1
req dmj "${J[@]}" "$U/v1/messages" -H 'x-mock-fault: disconnect-mid-stream' -d '{"model":"m"}'
check "disconnect-mid-stream on a JSON answer: cut body (rc 18)" is "$(rc dmj)" 18
req em "${J[@]}" -N "$U/v1/messages" -H 'x-mock-fault: error-mid-stream' -H 'x-mock-chunks: 2' -d '{"model":"m","stream":true}'
check "error-mid-stream: 200 stream that ends cleanly" is "$(status em)/$(rc em)" 200/0
order=$(sed -n 's/^event: //p' "$tmp/em.b" | paste -sd' ' -)
check "error-mid-stream: deltas then event: error, no message_delta" is "$order" \
	"message_start content_block_start ping content_block_delta error"
check "error-mid-stream: error is overloaded_error" has em \
	'data: {"type":"error","error":{"type":"overloaded_error","message":'
req hang "${J[@]}" -m 1 "$U/v1/messages" -H 'x-mock-fault: hang' -d '{"model":"m"}'
check "hang: no answer within 1 s (curl rc 28)" is "$(rc hang)/$(status hang)" 28/000
req disc "${J[@]}" "$U/v1/messages" -H 'x-mock-fault: disconnect' -d '{"model":"m"}'
check "disconnect: empty reply (curl rc 52)" is "$(rc disc)" 52

echo "# other routes"
req ct "${J[@]}" "$U/v1/messages/count_tokens" -d '{"model":"m","messages":[]}'
check "count_tokens answers {\"input_tokens\":42}" is "$(body ct)" '{"input_tokens":42}'
req ct2 "${J[@]}" "$U/v1/messages/count_tokens" -H 'x-mock-usage: 77' -d '{"model":"m"}'
check "count_tokens uses I of x-mock-usage" is "$(body ct2)" '{"input_tokens":77}'
req models "$U/v1/models"
check "GET /v1/models lists claude-sonnet-4-5-20250929" has models '{"data":[{"type":"model","id":"claude-sonnet-4-5-20250929","display_name":'
check "GET /v1/models has has_more/first_id/last_id" has models '"has_more":false,"first_id":"claude-sonnet-4-5-20250929","last_id":'
check "GET /v1/models is valid JSON" json_ok models
req nf "$U/v1/nothing-here"
check "unknown route is 404 not_found_error" test "$(status nf)" = 404 -a "$(grep -c '"type":"not_found_error"' "$tmp/nf.b")" = 1
req nf2 -X GET "$U/v1/messages"
check "GET /v1/messages is 404" is "$(status nf2)" 404
req big -H 'content-length: 99999999999' -X POST "$U/v1/messages"
check "a body over 64 MiB is refused with 413" is "$(status big)" 413
printf 'x-h: %070000d\r\n' 0 >"$tmp/bighdr"
req bigh -H "@$tmp/bighdr" "$U/v1/models"
check "a header block over 64 KiB is refused with 431" is "$(status bigh)" 431

echo "# OAuth token endpoint"
req t1 "$U/v1/oauth/token" -d 'grant_type=refresh_token&refresh_token=rt-one'
n1=$(sed -n 's/.*"access_token":"mock-access-\([0-9]*\)".*/\1/p' "$tmp/t1.b")
check "form refresh grant: 200 with mock-access-<n>/mock-refresh-<n>" \
	grep -qE '^\{"access_token":"mock-access-[0-9]+","refresh_token":"mock-refresh-[0-9]+","expires_in":3600,"token_type":"Bearer","scope":"user:inference user:profile"\}$' "$tmp/t1.b"
req t2 "${J[@]}" "$U/v1/oauth/token" -d '{"grant_type":"refresh_token","refresh_token":"rt-two","client_id":"x"}'
check "JSON refresh grant: counter moves on" has t2 "\"access_token\":\"mock-access-$((n1 + 1))\",\"refresh_token\":\"mock-refresh-$((n1 + 1))\""
req t3 "$U/v1/oauth/token" -d 'grant_type=refresh_token&refresh_token=invalid'
check "refresh_token=invalid: 400 invalid_grant" test "$(status t3)" = 400 -a "$(grep -c '"error":"invalid_grant"' "$tmp/t3.b")" = 1
req t4 "${J[@]}" "$U/v1/oauth/token" -d '{"grant_type":"refresh_token","refresh_token":"invalid"}'
check "JSON refresh_token invalid: 400 invalid_grant" is "$(status t4)" 400
req t5 "$U/v1/oauth/token" -d 'grant_type=refresh_token'
check "missing refresh_token: 400 invalid_request" test "$(status t5)" = 400 -a "$(grep -c invalid_request "$tmp/t5.b")" = 1

echo "# last request"
req lr0 "${J[@]}" "$U/v1/messages?beta=true" -H 'x-api-key: sk-client-secret' -H 'Authorization: Bearer acct-token' \
	-H 'anthropic-beta: oauth-2025-04-20' -d '{"model":"claude-last","stream":false}'
req lr "$U/_mock/last-request"
check "last-request is valid JSON" json_ok lr
check "last-request has method, path and query" has lr '"method":"POST","path":"/v1/messages","query":"beta=true"'
check "last-request has lowercased header names" has lr '"authorization":"Bearer acct-token"'
check "last-request shows x-api-key when it was sent" has lr '"x-api-key":"sk-client-secret"'
check "last-request shows anthropic-beta" has lr '"anthropic-beta":"oauth-2025-04-20"'
check "last-request has body_len" has lr '"body_len":38'
check "last-request has the body" has lr '"body":"{\"model\":\"claude-last\",\"stream\":false}"'
req lr1 "$U/v1/models" -H 'Authorization: Bearer other'
req lr2 "$U/_mock/last-request"
check "last-request follows the newest request; its own calls are not recorded" \
	test "$(grep -c '"method":"GET","path":"/v1/models"' "$tmp/lr2.b")" = 1 -a "$(grep -c x-api-key "$tmp/lr2.b")" = 0

echo "# stats"
req rs -X POST "$U/_mock/reset"
check "POST /_mock/reset answers {\"ok\":true}" is "$(body rs)" '{"ok":true}'
req st0 "$U/_mock/stats"
check "stats are zero after reset" has st0 '"requests_total":0,"token_endpoint_calls":0,"tokens_issued":0,"messages_completed":0,"streams_completed":0'
req a1 "${J[@]}" "$U/v1/messages" -H 'x-mock-usage: 1,2,3,4,5' -d '{"model":"m"}'
req a2 "${J[@]}" -N "$U/v1/messages" -H 'x-mock-usage: 10,20,30,40,50' -d '{"model":"m","stream":true}'
req a3 "${J[@]}" -N "$U/v1/messages" -H 'x-mock-usage: 100,100,100,100,100' -H 'x-mock-fault: disconnect-mid-stream' -d '{"model":"m","stream":true}'
req a4 "${J[@]}" -N "$U/v1/messages" -H 'x-mock-usage: 100,100,100,100,100' -d '{"model":"claude-mock-fault-error-mid-stream","stream":true}'
req a5 "${J[@]}" "$U/v1/messages" -d '{"model":"claude-mock-fault-429"}'
req a6 "$U/v1/oauth/token" -d 'grant_type=refresh_token&refresh_token=x'
req a7 "$U/v1/messages/count_tokens" -d '{"model":"m"}'
req a8 "$U/nope"
req st "$U/_mock/stats"
check "stats is valid JSON" json_ok st
check "stats: requests_total, token endpoint and completed messages" has st \
	'"requests_total":8,"token_endpoint_calls":1,"tokens_issued":1,"messages_completed":2,"streams_completed":1'
check "stats: per route" has st \
	'"routes":{"messages":5,"messages_stream":3,"count_tokens":1,"models":0,"oauth_token":1,"not_found":1,"bad_request":0,"too_large":0}'
check "stats: per fault" has st '"429":1,"429-noheaders":0'
check "stats: per fault (mid-stream)" has st '"disconnect-mid-stream":1,"error-mid-stream":1,"hang":0'
check "stats: usage sums only completed responses" has st \
	'"usage":{"input":11,"output":22,"cache5m":33,"cache1h":44,"cache_read":55}'

echo "# tool use (x-mock-tool / mock-tool-NAME)"
req tu1 "${J[@]}" "$U/v1/messages" -H 'x-mock-tool: get_weather' -H 'x-mock-text-len: 5' -H 'x-mock-usage: 3,4' -d '{"model":"m"}'
check "tool, non-stream: 200" is "$(status tu1)" 200
check "tool, non-stream: valid JSON" json_ok tu1
tid=$(hdr tu1 request-id)
check "tool, non-stream: a text block, then tool_use toolu_mock_<n> with the fixed input" has tu1 \
	"\"content\":[{\"type\":\"text\",\"text\":\"Hello\"},{\"type\":\"tool_use\",\"id\":\"toolu_mock_${tid#req_mock_}\",\"name\":\"get_weather\",\"input\":{\"city\":\"Paris\",\"days\":3}}],\"stop_reason\":\"tool_use\",\"stop_sequence\":null,"
check "tool, non-stream: usage as usual" has tu1 '"input_tokens":3,'
req tu2 "${J[@]}" "$U/v1/messages" -d '{"model":"claude-sonnet-5-mock-tool-lookup_City2-mock-usage-7_8_0_0_0"}'
check "tool by model name: NAME ends at the next '-' and other knobs still apply" test \
	"$(grep -c '"name":"lookup_City2","input":{"city":"Paris","days":3}}],"stop_reason":"tool_use"' "$tmp/tu2.b")$(grep -c '"input_tokens":7,' "$tmp/tu2.b")" = 11
req tu3 "${J[@]}" "$U/v1/messages" -H 'x-mock-tool: from_header' -d '{"model":"claude-mock-tool-from_model"}'
check "tool: the header wins over the model name" has tu3 '"name":"from_header"'
req tu4 "${J[@]}" "$U/v1/messages" -d '{"model":"claude-sonnet-5"}'
check "no tool knob: no tool_use block, stop_reason end_turn" test \
	"$(grep -c tool_use "$tmp/tu4.b"):$(grep -c '"stop_reason":"end_turn"' "$tmp/tu4.b")" = 0:1
req ts1 "${J[@]}" -N "$U/v1/messages" -H 'x-mock-chunks: 2' -H 'x-mock-usage: 1,9' -d '{"model":"claude-mock-tool-get_weather","stream":true}'
check "tool, stream: 200 text/event-stream that ends cleanly" is "$(status ts1) $(hdr ts1 content-type) $(rc ts1)" "200 text/event-stream 0"
order=$(sed -n 's/^event: //p' "$tmp/ts1.b" | paste -sd' ' -)
check "tool, stream: text block, then the tool_use block with 3 deltas, then message_delta/stop" is "$order" \
	"message_start content_block_start ping content_block_delta content_block_delta content_block_stop content_block_start content_block_delta content_block_delta content_block_delta content_block_stop message_delta message_stop"
check "tool, stream: every event has one data line" is "$(grep -c '^data: {' "$tmp/ts1.b")" 13
tid=$(hdr ts1 request-id)
check "tool, stream: content_block_start index 1 with empty input" has ts1 \
	"data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_mock_${tid#req_mock_}\",\"name\":\"get_weather\",\"input\":{}}}"
check "tool, stream: input_json_delta events at index 1" test \
	"$(grep -c '^data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"' "$tmp/ts1.b")" = 3
joined=$(sed -n 's/^data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\(.*\)"}}$/\1/p' "$tmp/ts1.b" | tr -d '\n')
check "tool, stream: partial_json fragments join to the input" is "$joined" '{\"city\":\"Paris\",\"days\":3}'
if command -v jq >/dev/null 2>&1; then
	joined=$(sed -n 's/^data: //p' "$tmp/ts1.b" | jq -rj 'select(.delta.type? == "input_json_delta") | .delta.partial_json')
	check "tool, stream: decoded fragments are exactly {\"city\":\"Paris\",\"days\":3}" is "$joined" '{"city":"Paris","days":3}'
fi
check "tool, stream: the tool block is closed at index 1" has ts1 'data: {"type":"content_block_stop","index":1}'
check "tool, stream: message_delta stop_reason tool_use with output_tokens" has ts1 \
	'data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":9}}'
req tb1 "${J[@]}" "$U/v1/messages" -H 'x-mock-tool: bad-name' -d '{"model":"m"}'
check "x-mock-tool with a bad NAME is a 400 naming it" test "$(status tb1)" = 400 -a "$(grep -c bad-name "$tmp/tb1.b")" = 1
req tb2 "${J[@]}" "$U/v1/messages" -d '{"model":"claude-mock-tool-"}'
check "mock-tool- without a NAME in the model name is a 400" is "$(status tb2)" 400
long=$(printf 'n%.0s' $(seq 65))
req tb3 "${J[@]}" "$U/v1/messages" -H "x-mock-tool: $long" -d '{"model":"m"}'
req tb4 "${J[@]}" "$U/v1/messages" -H "x-mock-tool: ${long:1}" -d '{"model":"m"}'
check "x-mock-tool NAME: 64 characters accepted, 65 refused" is "$(status tb4)/$(status tb3)" 200/400

echo "# robustness"
for i in 1 2 3 4 5 6 7 8 9 10; do
	head -c $((i * 300)) /dev/urandom | curl -s -m 2 -o /dev/null --data-binary @- "$U/v1/messages" 2>/dev/null
	exec 3<>"/dev/tcp/127.0.0.1/$port" && head -c $((i * 500)) /dev/urandom >&3 2>/dev/null
	exec 3>&- 3<&-
done
printf 'GARBAGE\r\n\r\n' >"$tmp/garbage"
exec 3<>"/dev/tcp/127.0.0.1/$port"
cat "$tmp/garbage" >&3
resp=$(timeout 3 head -c 12 <&3)
exec 3>&- 3<&-
check "a malformed request line gets 400 and the connection closed" is "$resp" "HTTP/1.1 400"
req alive "$U/v1/models"
check "still serving after random bytes" is "$(status alive)" 200
sleep 0.3
req st2 "$U/_mock/stats"
check "hung, cut and garbage connections were all released" has st2 '"connections_open":1,'

echo "# shutdown"
kill -TERM "$pid"
wait "$pid"
src=$?
check "SIGTERM stops it with status 0" is "$src" 0
check "the pidfile is removed on exit" test ! -e "$tmp/pid"
pid=

if command -v wrk >/dev/null 2>&1 && [ "${MOCK_UPSTREAM_WRK:-1}" != 0 ]; then
	echo "# wrk -t2 -c64 -d3s (measured, not asserted)"
	"$MOCK" --port 0 --quiet >"$tmp/stdout2" &
	pid=$!
	for _ in $(seq 100); do
		grep -q '^listening on ' "$tmp/stdout2" 2>/dev/null && break
		sleep 0.05
	done
	port=$(sed -n 's/.*:\([0-9]*\)$/\1/p' "$tmp/stdout2")
	cat >"$tmp/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"model":"claude-sonnet-4-5-20250929","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["anthropic-version"] = "2023-06-01"
EOF
	sed 's/"max_tokens":64,/"max_tokens":64,"stream":true,/' "$tmp/post.lua" >"$tmp/stream.lua"
	printf 'non-stream POST /v1/messages: '
	wrk -t2 -c64 -d3s -s "$tmp/post.lua" "http://127.0.0.1:$port/v1/messages" | awk '/Requests\/sec/{print $2" req/s"}'
	printf 'stream POST /v1/messages:     '
	wrk -t2 -c64 -d3s -s "$tmp/stream.lua" "http://127.0.0.1:$port/v1/messages" | awk '/Requests\/sec/{print $2" req/s"}'
	kill -TERM "$pid"
	wait "$pid"
	pid=
fi

echo "# $pass passed, $fail failed"
[ "$fail" -eq 0 ]
