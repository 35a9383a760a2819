#!/usr/bin/env bats
# Operations: scripts/wait-for-services against the suite's stack, make
# install/uninstall, the systemd units (scripts/verify-units), the crontab,
# the compose file, and the Docker build context.

load test_helper

# A port on 127.0.0.1 where nothing listens: 1 (tcpmux) needs root to bind.
CLOSED=127.0.0.1:1

stage_install() {
	make -s -C "$TOP" install PREFIX="${1:-/usr/local}" DESTDIR="$BATS_TEST_TMPDIR/stage" >/dev/null
}

@test "wait-for-services finds the database, the broker and the gateway ready" {
	run -0 --separate-stderr wait-for-services --tries 5 --interval 0.2
	[ -z "$stderr" ]
	echo "$output" | jq -e -s 'length == 3 and all(.ready and .tries == 1) and
		(map(.service) == ["db", "kafka", "pg"])'
	echo "$output" | jq -e -s --arg pg "$PAY_PG_URL" '.[2].address == $pg'
}

@test "wait-for-services names the gateway when it does not answer" {
	PAY_PG_URL=http://$CLOSED run -69 --separate-stderr wait-for-services --tries 2 --interval 0.1
	assert_one_line_stderr "wait-for-services: pg 'http://$CLOSED': not ready (2 tries): curl: *"
	echo "$output" | jq -e -s 'map({(.service): .ready}) | add == {db: true, kafka: true, pg: false}'
}

@test "wait-for-services names the broker when it does not answer" {
	PAY_KAFKA_BROKERS=$CLOSED run -69 --separate-stderr wait-for-services -n 2 -i 0.1 -t 1 kafka
	assert_one_line_stderr "wait-for-services: kafka '$CLOSED': not ready (2 tries): *"
	echo "$output" | jq -e '.service == "kafka" and .ready == false and .tries == 2'
}

@test "wait-for-services names the database when it does not answer" {
	PAY_DB_PORT=1 run -69 --separate-stderr wait-for-services -n 2 -i 0.1 -t 1 db
	assert_one_line_stderr "wait-for-services: db '$CLOSED': not ready (2 tries): ERROR 2002 *"
}

@test "wait-for-services stops at once when the database refuses the account" {
	PAY_DB_PASSWORD=wrong run -78 --separate-stderr timeout 20 wait-for-services --tries 60 --interval 5 db
	assert_one_line_stderr "wait-for-services: db '127.0.0.1:$PAY_DB_PORT': ERROR 1045 *Access denied*"
	echo "$output" | jq -e '.ready == false and .tries == 1'
}

@test "wait-for-services checks only the services named" {
	PAY_KAFKA_BROKERS=$CLOSED run -0 --separate-stderr wait-for-services -n 1 pg db
	echo "$output" | jq -e -s 'map(.service) == ["pg", "db"] and all(.ready)'
}

@test "wait-for-services reads the settings file when the environment has none" {
	export PAY_CONFIG=$BATS_TEST_TMPDIR/paykit.conf
	printf 'pg_url = "http://%s"\ndb_port = 1\n' "$CLOSED" >"$PAY_CONFIG"
	unset PAY_PG_URL
	# The environment's PAY_DB_PORT still wins over the file's db_port.
	run -69 --separate-stderr wait-for-services -n 1 db pg
	assert_one_line_stderr "wait-for-services: pg 'http://$CLOSED': *"
	echo "$output" | jq -e -s 'map({(.service): .ready}) | add == {db: true, pg: false}'
}

@test "wait-for-services passes -X properties to the Kafka check" {
	run -69 --separate-stderr wait-for-services -n 1 -t 1 -X security.protocol=bogus kafka
	assert_one_line_stderr "wait-for-services: kafka '*': not ready (1 tries): *security.protocol*"
}

@test "wait-for-services refuses bad usage with exit 64 and one line" {
	local bad
	for bad in "--tries 0" "--tries x" "-n" "--interval -1" "--interval=1.2.3" \
		"--timeout 0" "-X novalue" "--bogus" "frobnicate"; do
		# shellcheck disable=SC2086 # each case is a list of words
		run -64 --separate-stderr wait-for-services $bad
		assert_one_line_stderr "wait-for-services: *\\(see 'wait-for-services -h'\\)"
		[ -z "$output" ]
	done
}

@test "wait-for-services -h prints its usage on stdout" {
	run -0 --separate-stderr wait-for-services -h
	[[ ${lines[0]} == "wait-for-services: wait until the database"* ]]
	[[ $output == *"-n, --tries n"* ]]
	[ -z "$stderr" ]
}

@test "make install puts programs, man pages, units and examples in place; uninstall takes them all away" {
	stage_install
	local s=$BATS_TEST_TMPDIR/stage/usr/local
	for p in payctl outbox-relay settle refund ledger-apply; do
		[ -x "$s/bin/$p" ]
	done
	[ -f "$s/share/man/man7/paykit.7" ]
	[ -f "$s/share/man/man1/payctl-migrate.1" ]
	for u in "$TOP"/compose/systemd/*; do
		cmp "$u" "$s/lib/systemd/system/${u##*/}"
	done
	[ -f "$s/lib/systemd/system/settle.service" ]
	[ -f "$s/lib/systemd/system/settle-retry.timer" ]
	cmp "$TOP/compose/paykit.conf.example" "$s/share/paykit/paykit.conf.example"
	cmp "$TOP/compose/paykit.env.example" "$s/share/paykit/paykit.env.example"
	cmp "$TOP/compose/cron/paykit.cron" "$s/share/paykit/paykit.cron"

	run -0 make -s -C "$TOP" uninstall PREFIX=/usr/local DESTDIR="$BATS_TEST_TMPDIR/stage"
	run -0 find "$BATS_TEST_TMPDIR/stage" ! -type d
	[ -z "$output" ]
	[ ! -e "$s/share/paykit" ]
}

@test "make install with another PREFIX writes its paths into the units and the crontab" {
	stage_install /opt/paykit
	local s=$BATS_TEST_TMPDIR/stage/opt/paykit
	grep -qx 'ExecStart=/opt/paykit/bin/settle' "$s/lib/systemd/system/settle.service"
	grep -q '^PATH=/opt/paykit/bin:' "$s/share/paykit/paykit.cron"
	grep -q 'crontab -u paykit /opt/paykit/share/paykit/paykit.cron' "$s/share/paykit/paykit.cron"
	run ! grep -r /usr/local "$s/lib/systemd/system" "$s/share/paykit"
}

@test "the systemd units pass systemd-analyze verify and the exposure ceiling" {
	run -0 --separate-stderr verify-units
	[ -z "$stderr" ]
}

@test "every program the installed units run is one make install installed" {
	stage_install
	local s=$BATS_TEST_TMPDIR/stage/usr/local p
	run -0 --separate-stderr verify-units -b "$s/bin" "$s"/lib/systemd/system/*
	# verify does not look inside `sh -c '...'` (the dbstat unit): any
	# program a unit names whose source is in cmd/ must be installed.
	sed -n 's|.*/usr/local/bin/\([A-Za-z0-9_.-]*\).*|\1|p' "$TOP"/compose/systemd/* |
		sort -u >"$BATS_TEST_TMPDIR/progs"
	grep -qx dbstat "$BATS_TEST_TMPDIR/progs"
	while read -r p; do
		if [ -e "$TOP/cmd/$p.c" ] || [ -d "$TOP/cmd/$p" ]; then
			[ -x "$s/bin/$p" ] || {
				echo "a unit runs $p, which make install leaves out (PROGS)" >&2
				return 1
			}
		fi
	done <"$BATS_TEST_TMPDIR/progs"
}

@test "verify-units fails a unit with a mistake or a loosened sandbox" {
	local d=$BATS_TEST_TMPDIR/units
	mkdir -p "$d"
	sed 's/^Restart=on-failure/Restart=sometimes/' "$TOP/compose/systemd/settle.service" >"$d/settle.service"
	run -1 --separate-stderr verify-units "$d/settle.service"
	[[ $stderr == *"Failed to parse service restart specifier"*"sometimes"* ]]

	sed -e '/^DynamicUser=/d' -e '/^SystemCallFilter=/d' -e '/^CapabilityBoundingSet=/d' \
		-e '/^PrivateDevices=/d' -e '/^PrivateUsers=/d' -e '/^ProtectSystem=/d' \
		"$TOP/compose/systemd/refund.service" >"$d/refund.service"
	run -1 --separate-stderr verify-units "$d/refund.service"
	[[ $stderr == *"refund.service: exposure above 2.0"* ]]
}

@test "the crontab's jobs have five time fields and run under flock -n" {
	local n=0 line
	while IFS= read -r line; do
		case $line in '' | '#'* | [A-Z]*=*) continue ;; esac
		read -r min hour dom mon dow cmd <<<"$line"
		for f in "$min" "$hour" "$dom" "$mon" "$dow"; do
			[[ $f =~ ^(\*|[0-9]+(-[0-9]+)?)(/[0-9]+)?(,[0-9]+(-[0-9]+)?)*$ ]] || {
				echo "bad time field '$f' in: $line" >&2
				return 1
			}
		done
		[[ $cmd == "flock -n /run/lock/paykit-"*".lock "* ]] || {
			echo "no flock -n in: $line" >&2
			return 1
		}
		# cron turns % into a newline.
		[[ $cmd != *%* ]]
		n=$((n + 1))
	done <"$TOP/compose/cron/paykit.cron"
	[ "$n" -ge 4 ]
}

@test "the crontab's commands run, and the metrics file is replaced whole" {
	local d=$BATS_TEST_TMPDIR/cron
	mkdir -p "$d/bin" "$d/lock" "$d/textfile"
	# shellcheck disable=SC2016 # the stand-ins' own code
	for p in settle refund outbox-relay ledger-apply; do
		printf '#!/bin/sh\necho "$0 $*" >>"%s/calls"\n' "$d" >"$d/bin/$p"
	done
	# shellcheck disable=SC2016
	printf '#!/bin/sh\necho "paykit_up ${DBSTAT_RC:-0}"\nexit ${DBSTAT_RC:-0}\n' >"$d/bin/dbstat"
	chmod +x "$d"/bin/*
	grep -v -e '^#' -e '^[A-Z]*=' -e '^$' "$TOP/compose/cron/paykit.cron" |
		sed -e "s|/run/lock/|$d/lock/|" -e "s|/var/lib/node_exporter/textfile_collector|$d/textfile|" |
		cut -d' ' -f6- >"$d/jobs"
	while IFS= read -r job; do
		PATH="$d/bin:$PATH" run -0 sh -c "$job"
	done <"$d/jobs"
	run -0 cat "$d/calls"
	[[ $output == *"settle --retry-due"* && $output == *"refund --retry-due"* ]]
	[[ $output == *"outbox-relay --purge-older-than 7d"* ]]
	[[ $output == *"ledger-apply --purge-older-than 30d"* ]]
	[ "$(cat "$d/textfile/paykit.prom")" = "paykit_up 0" ]

	# A failed check (1) or a dependency down (69) still publishes the
	# metrics that say so, and passes the exit code on.
	DBSTAT_RC=69 PATH="$d/bin:$PATH" run -69 sh -c "$(grep dbstat "$d/jobs")"
	[ "$(cat "$d/textfile/paykit.prom")" = "paykit_up 69" ]
	# Any other failure keeps the old file and leaves no partial one.
	DBSTAT_RC=70 PATH="$d/bin:$PATH" run -70 sh -c "$(grep dbstat "$d/jobs")"
	[ "$(cat "$d/textfile/paykit.prom")" = "paykit_up 69" ]
	[ "$(ls "$d/textfile")" = paykit.prom ]
}

@test "docker-compose validates the compose file" {
	run -0 docker-compose -f "$TOP/compose/docker-compose.yml" config -q
	[ -z "$output" ]
}

@test "the compose workers start after the migration, their accounts and the topics, the tools only on request" {
	docker-compose -f "$TOP/compose/docker-compose.yml" config >"$BATS_TEST_TMPDIR/c.yml"
	python3 - "$BATS_TEST_TMPDIR/c.yml" <<-'EOF'
		import sys, yaml
		c = yaml.safe_load(open(sys.argv[1]))["services"]
		for w in ("outbox-relay", "settle", "refund", "ledger-apply"):
		    d = c[w]["depends_on"]
		    assert d["migrate"]["condition"] == "service_completed_successfully", w
		    assert d["kafka-init"]["condition"] == "service_completed_successfully", w
		    assert c[w]["command"] == [w], w
		assert c["migrate"]["depends_on"]["mariadb"]["condition"] == "service_healthy"
		assert c["migrate"]["command"] == ["payctl", "migrate"]
		assert c["tools"]["profiles"] == ["tools"]
		assert c["mariadb"]["image"] == "mariadb:10.11"
		assert "healthcheck" in c["mariadb"] and "healthcheck" in c["kafka"]
		assert c["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
		p = c["mariadb"]["ports"][0]
		assert (p["published"], p["target"]) in ((13306, 3306), ("13306", 3306)), p
		assert c["migrate"]["environment"]["PAY_DB_USER"] == "payuser"
		# Each daemon as its own account (scripts/db-roles), made after the
		# migration, its password from the db-roles volume.
		assert c["db-roles"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
		for w, role in (("outbox-relay", "relay"), ("settle", "settle"),
		        ("refund", "refund"), ("ledger-apply", "ledger")):
		    env = c[w]["environment"]
		    assert env["PAY_DB_USER"] == "paykit_" + role, w
		    assert env["PAY_DB_PASSWORD"] == "", w
		    assert env["PAY_DB_PASSWORD_FILE"] == "/run/paykit/roles/%s.password" % role, w
		    assert env["PAY_DB_NAME"] == "paydb", w
		    assert c[w]["depends_on"]["db-roles"]["condition"] == "service_completed_successfully", w
	EOF
}

@test "the Docker build context holds what the Dockerfile copies, and that tree builds" {
	local ctx=$BATS_TEST_TMPDIR/ctx p
	mkdir -p "$ctx"
	# The allowlist: every "!path" line of .dockerignore.
	sed -n 's|^!\(.*[^/]\)/*$|\1|p' "$TOP/.dockerignore" >"$BATS_TEST_TMPDIR/allow"
	[ -s "$BATS_TEST_TMPDIR/allow" ]
	# Every source of a COPY from the context is allowed.
	sed -n 's/^COPY \([^-].*\) [^ ]*$/\1/p' "$TOP/Dockerfile" | tr ' ' '\n' |
		sed 's|/$||' | while read -r p; do
		grep -qx "$p" "$BATS_TEST_TMPDIR/allow" || {
			echo "Dockerfile copies '$p', which .dockerignore keeps out" >&2
			return 1
		}
	done
	while read -r p; do
		mkdir -p "$ctx/$(dirname "$p")"
		cp -a "$TOP/$p" "$ctx/$p"
	done <"$BATS_TEST_TMPDIR/allow"
	# As the image's build stage does: make, in a tree holding only that.
	find "$ctx" \( -name '*.o' -o -name '*.d' \) -delete
	run -0 make -s -C "$ctx" -j4 all
	[ -x "$ctx/bin/payctl" ] && [ -x "$ctx/bin/settle" ]
}
