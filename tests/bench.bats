#!/usr/bin/env bats
# scripts/bench (make bench): one --quick run on its own private stack,
# then its output is checked for shape, not for speed: every stdout line a
# JSON object with bench, value, unit, ceiling and ratio; every benchmark
# there; the table on stderr; the README section written into a copy
# between the markers and nowhere else; the stack and its processes gone.
# The usage errors need no stack.
# shellcheck disable=SC2154 # bats' run sets output and stderr.

load test_helper

# Every figure a run makes; full flow needs payctl refund's stream mode.
NAMES='db_ceiling kafka_produce_ceiling gateway_ceiling loadgen_noop_rate
authorize_stream_rate authorize_stream_p99 authorize_stream_p99_over_gateway
authorize_stream_dropped authorize_stream_error_rate authorize_stream_max
authorize_stream_max_no_breaker breaker_overhead authorize_single_added
breaker_time_to_open cbtest_total relay_drain_rate relay_latency_p99 relay_rss settle_rate ledger_apply_rate
pipeline_latency_p99 full_flow_rate full_flow_p99 dbstat_time cpu_steal'

setup_file() {
	export OUT="$BATS_FILE_TMPDIR"
	cp "$TOP/README.md" "$OUT/README.md"
	sha256sum "$TOP/README.md" >"$OUT/readme.sum"
	local rc=0
	timeout 300 "$TOP/scripts/bench" --quick -o "$OUT/README.md" \
		>"$OUT/stdout" 2>"$OUT/stderr" || rc=$?
	echo "$rc" >"$OUT/rc"
}

# The lines of a file outside the bench markers.
outside() {
	sed '/^<!-- bench:start -->$/,/^<!-- bench:end -->$/d' "$1"
}

@test "a quick run measures everything and exits 0" {
	[ "$(cat "$OUT/rc")" = 0 ] || {
		cat "$OUT/stderr" >&2
		return 1
	}
	grep -q 'bench: \[[0-9]*s\] ceilings: database' "$OUT/stderr"
	run -1 grep 'not measured' "$OUT/stderr"
}

@test "every stdout line is one JSON object with bench, value, unit, ceiling and ratio" {
	[ -s "$OUT/stdout" ]
	while IFS= read -r line; do
		printf '%s\n' "$line" | jq -e '
			type == "object" and (keys == ["bench", "ceiling", "ratio", "unit", "value"])
			and (.bench | type == "string") and (.unit | type == "string")
			and (.value | type == "number")
			and ((.ceiling == null and .ratio == null)
				or ((.ceiling | type == "number") and (.ratio | type == "number")))' \
			>/dev/null || {
			echo "bad line: $line" >&2
			return 1
		}
		# Compact: one object per line, as jq -c writes it.
		[ "$(printf '%s\n' "$line" | jq -c .)" = "$line" ]
	done <"$OUT/stdout"
}

@test "every benchmark is there once, and the ratios are against their ceilings" {
	for n in $NAMES; do
		[ "$(jq -r --arg n "$n" 'select(.bench == $n) | .bench' "$OUT/stdout" | wc -l)" = 1 ] || {
			echo "missing or repeated: $n" >&2
			return 1
		}
	done
	# shellcheck disable=SC2086 # a list of words
	[ "$(wc -l <"$OUT/stdout")" = "$(echo $NAMES | wc -w)" ]
	# One object keyed by bench, to compare figures with each other.
	jq -s 'map({(.bench): .}) | add' "$OUT/stdout" >"$BATS_TEST_TMPDIR/all.json"
	jq -e '.db_ceiling as $db | .db_ceiling.ceiling == null and $db.value > 0
		and (.authorize_stream_rate | .ceiling == $db.value
			and ((.ratio - .value / $db.value) | fabs) < 0.001)
		and .authorize_stream_max.ceiling == $db.value
		and .relay_drain_rate.ceiling == .kafka_produce_ceiling.value
		and ([.[] | select(.ceiling != null)] | length) == 4' \
		"$BATS_TEST_TMPDIR/all.json"
}

@test "the table goes to stderr, a row per figure with its target" {
	grep -Eq '^bench +value unit +ceiling +ratio +target +verdict$' "$OUT/stderr"
	for n in $NAMES; do
		grep -Eq "^$n +[-0-9,.]+ " "$OUT/stderr"
	done
	grep -Eq '^authorize_single_added .*<= 10 \(#3\) +(met|not met)$' "$OUT/stderr"
	grep -Eq '^authorize_stream_rate .*n/a: 1000/s for 3 s$' "$OUT/stderr"
}

@test "the README section is written between the markers, the rest untouched" {
	[ "$(outside "$OUT/README.md")" = "$(outside "$TOP/README.md")" ]
	section=$(sed -n '/^<!-- bench:start -->$/,/^<!-- bench:end -->$/p' "$OUT/README.md")
	[[ $section == *"A \`--quick\` run"* ]]
	[[ $section == *"Measured by \`make bench\` on "*" UTC"* ]]
	[[ $section == *"$(nproc) CPUs"* ]]
	[[ $section == *"CPU steal (time the hypervisor gave to other machines) "*" % over the run"* ]]
	[[ $section == *"| benchmark | figure |"* ]]
	for n in $NAMES; do
		[[ $section == *"\`$n\` |"* ]]
	done
	# The real README is left alone.
	sha256sum -c --quiet "$OUT/readme.sum"
}

@test "the private stack is stopped and its directory removed" {
	dir=$(sed -n 's/^bench: starting a private stack in \(.*\)\/stack$/\1/p' "$OUT/stderr")
	[ -n "$dir" ]
	[ ! -e "$dir" ]
	ps -eo args= >"$BATS_TEST_TMPDIR/ps"
	run -1 grep -F "$dir/" "$BATS_TEST_TMPDIR/ps"
}

@test "usage errors exit 64 before anything starts" {
	run -64 --separate-stderr "$TOP/scripts/bench" --frobnicate
	assert_one_line_stderr "bench: unknown option '--frobnicate' (see 'bench -h')"
	run -64 --separate-stderr "$TOP/scripts/bench" -s ceilings,nope
	assert_one_line_stderr "bench: unknown group 'nope' (one of: *)"
	run -64 --separate-stderr "$TOP/scripts/bench" -n 0
	assert_one_line_stderr "bench: runs: '0' is not a whole number above 0 (see 'bench -h')"
	run -64 --separate-stderr "$TOP/scripts/bench" -d soon
	assert_one_line_stderr "bench: duration: 'soon' is not a duration such as 30s or 2m (see 'bench -h')"
}

@test "a README without the markers is refused with 65" {
	echo '# no markers' >"$BATS_TEST_TMPDIR/README.md"
	run -65 --separate-stderr "$TOP/scripts/bench" -o "$BATS_TEST_TMPDIR/README.md"
	assert_one_line_stderr "bench: '*' needs one <!-- bench:start --> and one <!-- bench:end --> line"
}

@test "the relay group alone measures the produce ceiling its drain rate is judged against" {
	run -0 --separate-stderr timeout 300 "$TOP/scripts/bench" --quick -s relay -O
	echo "$output" | jq -s -e 'length == 5 and (map({(.bench): .}) | add |
		.kafka_produce_ceiling.value > 0 and
		.relay_drain_rate.ceiling == .kafka_produce_ceiling.value and
		((.relay_drain_rate.ratio - .relay_drain_rate.value /
			.kafka_produce_ceiling.value) | fabs) < 0.001 and
		.relay_latency_p99.value > 0 and .relay_rss.value > 0 and
		.cpu_steal.value >= 0 and .cpu_steal.value <= 100 and .cpu_steal.unit == "%")'
	[[ $stderr == *"ceilings: librdkafka idempotent produce"* ]]
	[[ $stderr == *"run 1: p99 "*" ms"* ]]
	[[ $stderr == *"CPU steal during relay: "*" %"* ]]
}

@test "-h prints the usage on stdout" {
	run -0 --separate-stderr "$TOP/scripts/bench" -h
	[[ ${lines[0]} == "bench: "* ]]
	[[ $output == *"bench [-eqh] [-n runs]"* ]]
	[ -z "$stderr" ]
}
