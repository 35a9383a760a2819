#!/usr/bin/env bats
# loadgen: the schedule (intended start times, no slipping behind a slow
# target, drops when saturated), latency from the intended start, the
# threshold grammar and exit 99, the summary's shape, the echo target, and
# full-flow's database polling against rows the test writes.  The scheduler
# tests need only the echo target; timing bounds are generous on purpose.

load test_helper

ECHO='loadgen --echo-target'

# lg ARGS...: a quiet run against the echo target unless -T is given.
lg() {
	loadgen -q -T "$ECHO" "$@"
}

# jqs FILTER: evaluate FILTER on the summary in $output (jq -e).
jqs() {
	printf '%s\n' "$output" | jq -e "$1" >/dev/null || {
		echo "jq -e '$1' failed on:" >&2
		printf '%s\n' "$output" | jq -c "${2:-.metrics}" >&2
		return 1
	}
}

@test "-h prints the usage on stdout and exits 0" {
	run -0 --separate-stderr loadgen -h
	[[ $output == "usage: loadgen [-hqV]"* ]]
	[ -z "$stderr" ]
}

@test "-V prints the version" {
	run -0 loadgen -V
	[[ $output == "loadgen (paykit) "* ]]
}

@test "an unknown option or operand is a usage error" {
	run -64 --separate-stderr loadgen --frobnicate
	assert_one_line_stderr "loadgen: unknown option '--frobnicate' (see 'loadgen -h')"
	run -64 --separate-stderr loadgen extra
	assert_one_line_stderr "loadgen: unexpected argument 'extra'*"
	run -64 --separate-stderr loadgen -S frob
	assert_one_line_stderr "loadgen: unknown scenario 'frob'*"
	run -64 --separate-stderr loadgen -r fast
	assert_one_line_stderr "loadgen: option '-r': 'fast' is not a rate*"
	run -64 --separate-stderr loadgen -c 0
	assert_one_line_stderr "loadgen: option '-c': '0' is not a whole number*"
	run -64 --separate-stderr loadgen -r 0
	assert_one_line_stderr "loadgen: the schedule has no iterations*"
}

@test "refuses conflicting executors and misplaced options" {
	run -64 --separate-stderr loadgen -r 10 -s 10s:100
	assert_one_line_stderr "loadgen: -s stages and -r/-d are two different executors*"
	run -64 --separate-stderr loadgen -R 10 -r 10
	assert_one_line_stderr "loadgen: -R (start rate) needs -s stages*"
	run -64 --separate-stderr loadgen --echo-target -r 10
	assert_one_line_stderr "loadgen: --echo-target takes only --delay-ms and --fail-every*"
	run -64 --separate-stderr loadgen --delay-ms 5
	assert_one_line_stderr "loadgen: --delay-ms and --fail-every need --echo-target*"
	run -64 --separate-stderr loadgen -s 10s
	assert_one_line_stderr "loadgen: stage '10s' is not duration:target*"
}

@test "invalid threshold expressions exit 64 with one line on stderr" {
	local t
	for t in 'errors' 'errors:' 'errors:rate' 'errors:rate<' 'errors:rate<abc' \
		'errors:rate=1' 'errors:p95<1' 'errors:mean<1' 'dropped_iterations:p(101)<1' \
		'Errors:rate<1' 'nosuch:rate<1' 'errors:p(95)<1' 'iterations:avg<1' \
		'authorize_duration:count<1' 'inflight:rate<1' 'flow_duration:p(95)<1000' \
		'capture_duration:p(95)<1000'; do
		run -64 --separate-stderr loadgen -t "$t" -r 10 -d 1s
		assert_one_line_stderr "loadgen: *"
		[ -z "$output" ]
	done
	run -64 --separate-stderr loadgen -t 'nosuch:rate<1'
	assert_one_line_stderr "loadgen: threshold 'nosuch:rate<1': unknown metric 'nosuch' (see 'loadgen -h')"
	run -64 --separate-stderr loadgen -t 'flow_duration:p(95)<1000'
	assert_one_line_stderr "loadgen: threshold 'flow_duration:p(95)<1000': scenario 'authorize-only' does not measure 'flow_duration'*"
}

@test "valid thresholds pass and are reported under their expression" {
	run -0 --separate-stderr lg -r 50 -d 1s \
		-t 'errors:rate<0.0001' -t 'req_failed:rate==0' \
		-t 'dropped_iterations:count==0' -t 'iterations:count>=50' \
		-t 'iterations:rate>1' -t 'authorize_duration:p(95)<5000' \
		-t 'authorize_duration: p(99.9) <= 10000' -t 'iteration_duration:max<60000' \
		-t 'req_duration:avg>=0' -t 'schedule_lag:med<5000' -t 'inflight:max<=1000' \
		-t 'unmatched_results:count!=1' -t 'declined:rate===0'
	jqs '.metrics.errors.thresholds["rate<0.0001"].ok == true'
	jqs '.metrics.authorize_duration.thresholds["p(99.9) <= 10000"].ok == true'
	jqs '[.metrics[].thresholds // {} | .[] | .ok] | length == 13 and all'
}

@test "exit 99 when a threshold fails, and the summary says which" {
	run -99 --separate-stderr lg -r 20 -d 1s -t 'iterations:count>1000000' \
		-t 'errors:rate<0.01'
	jqs '.metrics.iterations.thresholds["count>1000000"].ok == false'
	jqs '.metrics.errors.thresholds["rate<0.01"].ok == true'
	assert_one_line_stderr "loadgen: 1 of 2 thresholds failed"
}

@test "--dry-run prints the intended start of every iteration" {
	run -0 loadgen --dry-run -r 200 -d 2s
	[ "$(printf '%s\n' "$output" | wc -l)" -eq 400 ]
	[ "$(printf '%s\n' "$output" | head -n 1)" = '{"iteration":0,"due_ms":0.000000}' ]
	[ "$(printf '%s\n' "$output" | sed -n 2p)" = '{"iteration":1,"due_ms":5.000000}' ]
	[ "$(printf '%s\n' "$output" | tail -n 1)" = '{"iteration":399,"due_ms":1995.000000}' ]
	printf '%s\n' "$output" | jq -e -s 'map(.due_ms) | . == sort' >/dev/null
}

@test "--dry-run follows ramping stages" {
	run -0 loadgen --dry-run -s 10s:100 -s 5s:100 -s 10s:0
	[ "$(printf '%s\n' "$output" | wc -l)" -eq 1500 ]
	printf '%s\n' "$output" | jq -e -s '
		.[125].due_ms == 5000 and .[500].due_ms == 10000 and
		.[1375].due_ms == 20000 and .[1499].due_ms < 25000' >/dev/null
}

@test "runs every scheduled iteration at the requested rate" {
	run -0 --separate-stderr lg -r 200 -d 2s
	jqs '.options.scheduled_iterations == 400'
	jqs '.metrics.iterations.count == 400'
	jqs '.metrics.dropped_iterations.count == 0'
	jqs '.metrics.interrupted_iterations.count == 0'
	jqs '.metrics.reqs.count == 400 and .metrics.req_failed.rate == 0'
	jqs '.outcomes.authorize.statuses.OK == 400'
	jqs '.state.testRunDurationMs >= 1995 and .state.testRunDurationMs < 6000'
	jqs '.metrics.iterations.rate > 100 and .metrics.iterations.rate <= 201'
}

@test "the schedule does not slip behind a slow target" {
	# 400 iterations of 50 ms each would take 20 s one after another.
	run -0 --separate-stderr loadgen -q -T "$ECHO --delay-ms 50" -r 200 -d 2s -c 200
	jqs '.metrics.iterations.count == 400 and .metrics.dropped_iterations.count == 0'
	jqs '.metrics.authorize_duration.min >= 49'
	jqs '.state.testRunDurationMs < 8000'
	jqs '.metrics.inflight.max >= 5'
}

@test "drops iterations when no slot is free, and counts them" {
	run -0 --separate-stderr loadgen -q -T "$ECHO --delay-ms 100" -r 100 -d 2s -c 1
	jqs '.metrics.dropped_iterations.count > 100'
	jqs '.metrics.iterations.count >= 5 and .metrics.iterations.count <= 40'
	jqs '.metrics.iterations.count + .metrics.dropped_iterations.count
		+ .metrics.interrupted_iterations.count == 200'
	jqs '.metrics.inflight.max == 1'
	run -99 --separate-stderr loadgen -q -T "$ECHO --delay-ms 100" -r 100 -d 1s -c 1 \
		-t 'dropped_iterations:count==0'
	jqs '.metrics.dropped_iterations.thresholds["count==0"].ok == false'
}

@test "latency from the intended start is at least the service time" {
	run -0 --separate-stderr loadgen -q -T "$ECHO --delay-ms 20" -r 100 -d 1s
	jqs '.metrics.iteration_duration.min >= .metrics.authorize_duration.min'
	jqs '.metrics.iteration_duration.avg >= .metrics.authorize_duration.avg'
	jqs '.metrics.iteration_duration.max >= .metrics.authorize_duration.max'
	jqs '.metrics.iteration_duration["p(95)"] >= .metrics.authorize_duration["p(95)"]'
	jqs '.metrics.schedule_lag.min >= 0'
}

@test "ramping stages start as many iterations as the rate's integral" {
	run -0 --separate-stderr lg -R 0 -s 1s:100 -s 1s:0
	jqs '.options.executor == "ramping-arrival-rate"'
	jqs '.options.stages == [{"duration_ms":1000,"target":100},{"duration_ms":1000,"target":0}]'
	jqs '.metrics.iterations.count == 100 and .metrics.dropped_iterations.count == 0'
}

@test "failed results are errors, counted by class" {
	run -99 --separate-stderr loadgen -q -T "$ECHO --fail-every 4" -r 100 -d 1s \
		-t 'errors:rate<0.01'
	jqs '.metrics.errors.passes == 25 and .metrics.errors.fails == 75'
	jqs '.metrics.errors.rate == 0.25 and .metrics.req_failed.rate == 0.25'
	jqs '.outcomes.authorize.errors.ECHO_FAILURE == 25'
	jqs '.outcomes.authorize.statuses.OK == 75'
	jqs '.root_group.checks["authorize ok"] | .passes == 75 and .fails == 25'
}

@test "--abort-on-fail ends the run when a threshold fails" {
	run -99 --separate-stderr timeout 60 loadgen -q -T "$ECHO --fail-every 2" \
		-r 50 -d 30s -t 'errors:rate<0.01' --abort-on-fail
	jqs '.state.aborted == true'
	jqs '.state.testRunDurationMs < 20000'
	jqs '.metrics.errors.thresholds["rate<0.01"].ok == false'
}

@test "a request without an answer times out" {
	# The answers come long after the timeout.
	run -0 --separate-stderr lg -T "$ECHO --delay-ms 3000" -r 10 -d 1s --timeout 200ms
	jqs '.outcomes.authorize.errors.TIMEOUT == 10'
	jqs '.metrics.req_failed.rate == 1 and .metrics.iterations.count == 10'
	jqs '.metrics.unmatched_results.count == 0'
}

@test "what is still in flight after the grace period is interrupted" {
	run -0 --separate-stderr lg -T "$ECHO --delay-ms 5000" -r 10 -d 1s --grace 200ms
	jqs '.metrics.interrupted_iterations.count == 10 and .metrics.iterations.count == 0'
	jqs '.state.testRunDurationMs < 4000'
}

@test "SIGTERM stops the schedule, lets what is in flight finish and still reports" {
	# timeout sends SIGTERM after 2 s of a 30 s run, to loadgen alone:
	# without --foreground it signals its whole process group as well, and
	# a loadgen scheduled between the two deliveries takes the second for
	# an operator's "stop now".
	run -0 --separate-stderr timeout --foreground --preserve-status -s TERM 2 \
		loadgen -q -T "$ECHO --delay-ms 300" -r 20 -d 30s
	jqs '.state.stopped == true and .state.aborted == false'
	jqs '.metrics.iterations.count >= 20 and .metrics.iterations.count < 200'
	jqs '.metrics.interrupted_iterations.count == 0'
	jqs '.state.testRunDurationMs < 10000'
}

@test "the summary has every documented key, on stdout and in the file" {
	local f="$BATS_TEST_TMPDIR/summary.json" m k
	run -0 --separate-stderr lg -r 20 -d 1s -o "$f" -t 'errors:rate<0.01'
	[ "$(jq -c . "$f")" = "$(printf '%s\n' "$output" | jq -c .)" ]
	for m in iterations dropped_iterations interrupted_iterations reqs unmatched_results; do
		jqs ".metrics.$m | (.count | type == \"number\") and (.rate | type == \"number\")"
	done
	for m in errors declined req_failed; do
		jqs ".metrics.$m | [.rate, .value, .passes, .fails] | map(type == \"number\") | all"
	done
	for m in iteration_duration schedule_lag req_duration authorize_duration; do
		for k in avg min med max 'p(90)' 'p(95)' 'p(99)'; do
			jqs ".metrics.${m}[\"$k\"] | type == \"number\""
		done
	done
	jqs '.metrics.inflight | [.value, .min, .max] | map(type == "number") | all'
	jqs '.metrics | has("capture_duration") or has("flow_duration") | not'
	jqs '.root_group | .name == "" and .path == "" and (.checks | type == "object")'
	jqs '.options | .scenario == "authorize-only" and .executor == "constant-arrival-rate"
		and .rate == 20 and .duration_ms == 1000 and .max_inflight == 1000
		and .targets == 1 and .seed == 1 and (.key_prefix | startswith("lg-"))
		and .timeout_ms == 30000 and .grace_ms == 30000 and .scheduled_iterations == 20
		and (.summary_trend_stats | length == 7)'
	jqs '.state | (.testRunDurationMs | type == "number") and .aborted == false and .stopped == false'
	jqs '.outcomes.authorize | has("statuses") and has("errors")'
}

@test "prints progress and a human summary on stderr unless -q" {
	run -0 --separate-stderr loadgen -T "$ECHO" -r 20 -d 1500ms -t 'errors:rate<0.01'
	[[ $stderr == *"loadgen: authorize-only, constant-arrival-rate 20/s"* ]]
	[[ $stderr == *"loadgen: 1s "*"/s p95="*"ms errors=0 dropped=0 inflight="* ]]
	[[ $stderr == *"  iterations....."*": 30 "* ]]
	[[ $stderr == *"    ok   rate<0.01"* ]]
}

@test "authorize-capture captures every authorization through the capture target" {
	run -0 --separate-stderr lg -S authorize-capture --capture-target "$ECHO" -r 20 -d 1s -n 2
	jqs '.metrics.iterations.count == 20 and .metrics.errors.rate == 0'
	jqs '.metrics.reqs.count == 40'
	jqs '.outcomes.capture.statuses.OK == 20'
	jqs '.metrics.capture_duration.max > 0'
	jqs '.options.capture_target == "loadgen --echo-target" and .options.targets == 2'
}

@test "sends authorize requests in the stream protocol, reproducibly" {
	local f="$BATS_TEST_TMPDIR/requests"
	run -0 lg -T "tee -a $f | $ECHO" -r 20 -d 1s --seed 7 --key-prefix run1
	run -0 jq -e -s 'length == 20 and all(.[];
		(.requestId | type == "string") and (.merchantId | test("^MERCHANT-([1-9][0-9]{0,2}|1000)$"))
		and (.amount % 1000 == 0 and .amount >= 1000 and .amount <= 50000)
		and .currency == "KRW" and (.idempotencyKey | startswith("run1-"))
		and (has("capture") | not))
		and (map(.idempotencyKey) | unique | length == 20)' "$f"
	jq -c '[.merchantId, .amount, .idempotencyKey]' "$f" | sort >"$f.1"
	rm "$f"
	run -0 lg -T "tee -a $f | $ECHO" -r 20 -d 1s --seed 7 --key-prefix run1
	jq -c '[.merchantId, .amount, .idempotencyKey]' "$f" | sort >"$f.2"
	cmp "$f.1" "$f.2"
}

@test "the echo target answers each request line with its requestId" {
	run -0 --separate-stderr loadgen --echo-target <<-'EOF'
		{"requestId":"a.1.0","merchantId":"MERCHANT-1"}
		{"requestId": "b\"x", "paymentId": 42}
		{"nothing":1}
	EOF
	[ "${lines[0]}" = '{"requestId":"a.1.0","status":"OK","paymentId":1}' ]
	[ "${lines[1]}" = '{"requestId":"b\"x","status":"OK","paymentId":42}' ]
	[ "${lines[2]}" = '{"error":"BAD_REQUEST","message":"no requestId"}' ]
	run -0 loadgen --echo-target --fail-every 1 <<<'{"requestId":"z"}'
	printf '%s\n' "$output" | jq -e '.requestId == "z" and .error == "ECHO_FAILURE"'
}

@test "a target that cannot start exits 69" {
	run -69 --separate-stderr loadgen -q -T /nonexistent/payctl -r 10 -d 1s
	[[ $stderr == *"loadgen: target '/nonexistent/payctl' exited with status 127 during the run"* ]]
	[ -z "$output" ]
}

@test "a target that dies during the run exits 69" {
	run -69 --separate-stderr loadgen -q -T "head -n 3 | $ECHO" -r 50 -d 2s
	assert_one_line_stderr "loadgen: target 'head -n 3 | $ECHO' exited with status 0 during the run"
}

@test "a target that does not speak JSON lines exits 65" {
	run -65 --separate-stderr loadgen -q -T "sed -u 's/^/garbage /'" -r 10 -d 1s
	assert_one_line_stderr "loadgen: target 'sed -u 's/^/garbage /'': result is not a JSON object: 'garbage {*"
}

@test "a summary or stdout that cannot be written exits 74" {
	run -74 --separate-stderr lg -r 10 -d 1s -o /dev/full
	[[ $stderr == *"loadgen: summary '/dev/full': No space left on device"* ]]
	run -74 --separate-stderr sh -c "loadgen -q -T '$ECHO' -r 10 -d 1s >/dev/full"
	assert_one_line_stderr "loadgen: write to standard output: No space left on device"
}

@test "full-flow with a bad database setting exits 78" {
	PAY_DB_PORT=abc run -78 --separate-stderr lg -S full-flow -r 10 -d 1s
	assert_one_line_stderr "loadgen: setting 'PAY_DB_PORT': 'abc' is not an integer"
}

@test "full-flow without a database exits 69" {
	PAY_DB_PORT=1 run -69 --separate-stderr lg -S full-flow -r 10 -d 1s
	assert_one_line_stderr "loadgen: connect to '$PAY_DB_HOST:1': *"
}

# seed_payments N STATUS LEDGER_ROWS: payments 1..N as the pipeline would
# leave them, so the echo target's payment ids 1..N find them.
seed_payments() {
	local i j values="" ledger=""
	for i in $(seq 1 "$1"); do
		values="$values${values:+,}($i, 'MERCHANT-$i', 'seed-$i', 1000, 'KRW', '$2', 1000, $([ "$2" = REFUNDED ] && echo 1000 || echo 0))"
		for j in $(seq 1 "$3"); do
			ledger="$ledger${ledger:+,}(UUID(), $i, 'acct', IF($j % 2, 'DEBIT', 'CREDIT'), 1000, 'KRW', NOW(6))"
		done
	done
	sql "DELETE FROM ledger_entry; DELETE FROM refund_request; DELETE FROM settlement_request;
		DELETE FROM outbox_event; DELETE FROM payment;
		INSERT INTO payment (payment_id, merchant_id, idempotency_key, amount, currency,
			status, captured_amount, refunded_amount) VALUES $values"
	[ -z "$ledger" ] || sql "INSERT INTO ledger_entry (event_key, payment_id, account,
		side, amount, currency, occurred_at) VALUES $ledger"
}

@test "full-flow waits in the database until the refund's ledger rows exist" {
	use_own_db
	seed_payments 10 REFUNDED 4
	run -0 --separate-stderr lg -S full-flow --refund-target "$ECHO" -r 10 -d 1s \
		--poll-interval 20ms -t 'flow_duration:p(99)<5000'
	jqs '.metrics.iterations.count == 10 and .metrics.errors.rate == 0'
	jqs '.metrics.flow_duration.min > 0 and .metrics.capture_wait.min > 0 and .metrics.refund_wait.min > 0'
	jqs '.outcomes.capture_wait.statuses.REFUNDED == 10 and .outcomes.refund.statuses.OK == 10'
	jqs '.outcomes.refund_wait.statuses.REFUNDED == 10'
	jqs '.metrics.flow_duration.thresholds["p(99)<5000"].ok == true'
	jqs '.metrics.flow_duration.min >= .metrics.authorize_duration.min'
}

@test "full-flow times out a payment whose ledger rows never come" {
	use_own_db
	seed_payments 5 REFUNDED 2
	run -99 --separate-stderr lg -S full-flow --refund-target "$ECHO" -r 5 -d 1s \
		--poll-interval 20ms --timeout 300ms -t 'errors:rate<0.01'
	jqs '.outcomes.refund_wait.errors.TIMEOUT == 5'
	jqs '.metrics.flow_duration.max == 0 and .metrics.errors.rate == 1'
	seed_payments 5 CAPTURE_FAILED 0
	run -0 --separate-stderr lg -S full-flow --refund-target "$ECHO" -r 5 -d 1s \
		--poll-interval 20ms --timeout 2s
	jqs '.outcomes.capture_wait.errors.CAPTURE_FAILED == 5'
}

@test "scripts/loadtest runs a scenario with its defaults and keeps summary and report" {
	local dir="$BATS_TEST_TMPDIR/results"
	RESULTS_DIR=$dir run -0 --separate-stderr loadtest -r 50 -d 1s authorize-only \
		-T "$ECHO" -q
	jqs '.options.scenario == "authorize-only" and .options.rate == 50'
	jqs '.metrics.errors.thresholds["rate<0.0001"].ok and
		.metrics.dropped_iterations.thresholds["count==0"].ok and
		.metrics.iteration_duration.thresholds["p(99)<=100"].ok'
	[ "$(find "$dir" -name 'summary-authorize-only-*.json' | wc -l)" -eq 1 ]
	grep -q '^## Grade: ' "$dir"/report-authorize-only-*.md
	[[ $stderr == *"loadtest: report in $dir/report-authorize-only-"*".md"* ]]
	# No such payments in the database: every flow times out.
	use_own_db
	RATE=20 DURATION=1s run -99 --separate-stderr loadtest -o "$dir" full-flow \
		-T "$ECHO" --refund-target "$ECHO" -q --timeout 300ms
	jqs '.options.rate == 20 and .options.duration_ms == 1000'
	jqs '.metrics.errors.thresholds["rate<0.0001"].ok == false'
	jqs '.metrics.flow_duration.thresholds["p(99)<=1000"] | type == "object"'
}

@test "scripts/loadtest refuses an unknown scenario and exits with loadgen's status" {
	run -64 --separate-stderr loadtest frobnicate
	assert_one_line_stderr "loadtest: unknown scenario 'frobnicate'*"
	run -64 --separate-stderr loadtest
	assert_one_line_stderr "loadtest: a scenario is needed*"
	run -99 --separate-stderr loadtest -o "$BATS_TEST_TMPDIR/r" -r 10 -d 1s \
		authorize-only -T "$ECHO --fail-every 2" -q
	ls "$BATS_TEST_TMPDIR"/r/report-*.md
}

# summary FILE JQ: write a summary made by the jq expression.
summary() {
	jq -n "$2" >"$1"
}

@test "loadtest-report grades like the original analyzer" {
	local f="$BATS_TEST_TMPDIR/s.json" p95 want
	for p95 in 50:EXCELLENT 150:GOOD 250:FAIR; do
		want=${p95#*:}
		summary "$f" "{metrics: {errors: {rate: 0}, iterations: {count: 10, rate: 100},
			authorize_duration: {avg: 1, med: 1, \"p(90)\": 1, \"p(95)\": ${p95%:*},
			\"p(99)\": ${p95%:*}, max: 1}}}"
		run -0 loadtest-report "$f"
		[[ $output == *"## Grade: $want - "* ]]
	done
	# A k6 summary works too: http_req_failed.value and http_req_duration.
	summary "$f" '{metrics: {http_req_failed: {value: 0.02}, iterations: {rate: 1000},
		http_req_duration: {avg: 10, "p(95)": 20, "p(99)": 30}}}'
	run -0 loadtest-report "$f"
	[[ $output == *"## Grade: POOR - High failure rate"* ]]
	[[ $output == *"Reduce the failure rate"* ]]
}

@test "loadtest-report finds saturation, stalls and error classes" {
	local f="$BATS_TEST_TMPDIR/s.json"
	run -99 lg -T "$ECHO --delay-ms 100" -r 100 -d 1s -c 1 -o "$f" -t 'dropped_iterations:count==0'
	run -0 loadtest-report "$f"
	[[ $output == *"# Load test report: authorize-only"* ]]
	[[ $output == *"**Saturation.**"*"were dropped"* ]]
	[[ $output == *"**FAILED**: \`dropped_iterations:count==0\`"* ]]
	summary "$f" '{options: {scenario: "full-flow", rate: 1000, max_inflight: 5000},
		metrics: {iterations: {count: 1000, rate: 990}, dropped_iterations: {count: 0},
			errors: {rate: 0.003}, flow_duration: {avg: 50, med: 40, "p(90)": 60,
			"p(95)": 80, "p(99)": 900, max: 3000}},
		outcomes: {authorize: {errors: {DATABASE_ERROR: 2}},
			refund_wait: {errors: {TIMEOUT: 1}}}}'
	run -0 loadtest-report "$f"
	[[ $output == *"## Grade: EXCELLENT"* ]]
	[[ $output == *"**Stalls.** p(99) of flow_duration is 900 ms, 11.3x its p(95) of 80 ms"* ]]
	# shellcheck disable=SC2016 # backquotes are Markdown
	[[ $output == *'`DATABASE_ERROR` at authorize: 2, `TIMEOUT` at refund_wait: 1'* ]]
	[[ $output == *"**Timeouts.**"* ]]
	[[ $output != *"Saturation"* ]]
}

@test "loadtest-report refuses what is not a summary" {
	run -64 loadtest-report
	run -74 --separate-stderr loadtest-report /nonexistent.json
	assert_one_line_stderr "loadtest-report: cannot read '/nonexistent.json'"
	echo 'not json' >"$BATS_TEST_TMPDIR/x"
	run -65 --separate-stderr loadtest-report "$BATS_TEST_TMPDIR/x"
	assert_one_line_stderr "loadtest-report: '$BATS_TEST_TMPDIR/x' is not a load-test summary*"
}
