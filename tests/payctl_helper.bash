# Shared by the payctl payment command tests (authorize, capture, refund,
# show, list): the mock gateway's controls and counts, and payments set up
# in a given state.  Load after test_helper.

# The suite's gateway is shared by every file: a file turns random
# declines off and takes a copy of the authorize settings in setup_file
# (pg_save), every test that changes them puts them back in teardown
# (pg_restore), and teardown_file gives the next file what this one found
# (pg_leave).
pg_save() {
	curl -sf --max-time 5 "$PAY_PG_URL/control" |
		jq -c '.authorize | {endpoint:"authorize", fault, failureRate, delayMs}' \
			>"$BATS_FILE_TMPDIR/pg.found"
	pg_control '{"endpoint":"authorize","failureRate":0}' |
		jq -c '.authorize | {endpoint:"authorize", fault, failureRate, delayMs}' \
			>"$BATS_FILE_TMPDIR/pg.saved"
}

pg_restore() {
	pg_control "$(cat "$BATS_FILE_TMPDIR/pg.saved")" >/dev/null
}

pg_leave() {
	pg_control "$(cat "$BATS_FILE_TMPDIR/pg.found")" >/dev/null
}

pg_control() {
	curl -sf --max-time 5 -H 'Content-Type: application/json' -d "$1" \
		"$PAY_PG_URL/control"
}

# pg_calls KEY: how many authorizations the gateway got with KEY.
pg_calls() {
	curl -sf --max-time 5 "$PAY_PG_URL/stats?endpoint=authorize&key=$1" |
		jq -r .calls
}

# A key no other test (of any file, any run of this stack) has used.
new_key() {
	echo "${BATS_TEST_FILENAME##*/}-$BATS_TEST_NUMBER-$RANDOM$RANDOM-$1"
}

# rows WHERE: how many payments match.
rows() {
	sql "SELECT COUNT(*) FROM payment WHERE $1"
}

# events ID: the event types of a payment, in order, comma-separated.
events() {
	sql "SELECT COALESCE(GROUP_CONCAT(event_type ORDER BY event_id), '')
		FROM outbox_event WHERE aggregate_id = $1"
}

# authorized MERCHANT AMOUNT [ARGS...]: authorize a new payment, print its id.
authorized() {
	local merchant=$1 amount=$2
	shift 2
	payctl authorize -m "$merchant" -a "$amount" -k "$(new_key a)" "$@" |
		jq -er .payment_id
}

# captured MERCHANT AMOUNT: a payment the settle worker has captured.
captured() {
	local id
	id=$(authorized "$1" "$2") || return 1
	sql "UPDATE payment SET status = 'CAPTURED', captured_amount = amount
		WHERE payment_id = $id"
	echo "$id"
}
