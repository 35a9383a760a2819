# paykit: a payments pipeline as a toolkit of small Unix programs.
# Plain GNU make; `make help` lists the targets.

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
SHAREDIR ?= $(PREFIX)/share/paykit
SYSCONFDIR ?= /etc
SYSTEMDDIR ?= $(PREFIX)/lib/systemd/system
DESTDIR ?=

CC ?= cc
CFLAGS ?= -O2 -g
WARN = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wno-unused-parameter -Wno-missing-field-initializers -Wformat=2
# CI builds with -Werror; a local build only warns.
ifneq ($(CI),)
WARN += -Werror
endif
BASEFLAGS = -std=c11 -D_GNU_SOURCE -Ilib -Ibuild -MMD -MP $(WARN)
SAN = -fsanitize=address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=undefined

# Programs: payctl and dbstat are cmd/NAME/*.c, every other one cmd/NAME.c.
PROGS = payctl devbroker mockpg settle refund ledger-apply outbox-relay dbstat loadgen cbtest
BINS = $(PROGS:%=bin/%)
MAN = $(wildcard man/*.[178])
LIBSRC = $(wildcard lib/*.c)
LIBOBJ = $(LIBSRC:%.c=build/%.o) build/migrations.o
PAYCTLSRC = $(wildcard cmd/payctl/*.c)
DBSTATSRC = $(wildcard cmd/dbstat/*.c)
UNITSRC = $(wildcard tests/unit/test_*.c)
UNITS = $(UNITSRC:tests/unit/%.c=build/unit/%)
ASAN_UNITS = $(UNITSRC:tests/unit/%.c=build/asan/unit/%)
MIGRATIONS = $(sort $(wildcard lib/migrations/*.sql))

# Goals that must work before the libraries are installed (they install
# them, or do not need them) do not read build/config.mk.
NOCONF = clean deps check demo bench lint help uninstall test-bats fmt fuzz
GOALS = $(or $(MAKECMDGOALS),all)
ifneq ($(filter-out $(NOCONF),$(GOALS)),)
include build/config.mk
endif
LIBFLAGS = $(DB_CFLAGS) $(KAFKA_CFLAGS) $(CURL_CFLAGS) $(JSON_CFLAGS)
LIBS = $(DB_LIBS) $(KAFKA_LIBS) $(CURL_LIBS) $(JSON_LIBS) -lpthread -lm

.PHONY: all check demo bench lint install uninstall clean deps help \
	unit asan test-bats fmt fuzz fuzzers benchprogs
.DELETE_ON_ERROR:

all: $(BINS)

help:
	@echo 'targets: all check demo bench lint install uninstall clean deps fmt'

build/config.mk: scripts/configure
	@mkdir -p build
	@scripts/configure > $@.tmp && mv $@.tmp $@

build/lib/%.o: lib/%.c build/config.mk
	@mkdir -p $(@D)
	$(CC) $(BASEFLAGS) $(LIBFLAGS) $(MHD_CFLAGS) $(CFLAGS) -c -o $@ $<

build/cmd/%.o: cmd/%.c build/config.mk
	@mkdir -p $(@D)
	$(CC) $(BASEFLAGS) $(LIBFLAGS) $(MHD_CFLAGS) $(CFLAGS) -c -o $@ $<

# The migrations are compiled into the programs, so `payctl migrate` needs
# no files at run time.
build/migrations.c: $(MIGRATIONS) scripts/embed-sql
	@mkdir -p $(@D)
	scripts/embed-sql $(MIGRATIONS) > $@.tmp && mv $@.tmp $@

build/migrations.o: build/migrations.c
	$(CC) $(BASEFLAGS) $(CFLAGS) -c -o $@ $<

build/libpaykit.a: $(LIBOBJ)
	@rm -f $@
	$(AR) rcs $@ $^

bin/payctl: $(PAYCTLSRC:%.c=build/%.o) build/libpaykit.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LIBS)

# dbstat is split like payctl: cmd/dbstat/*.c.
bin/dbstat: $(DBSTATSRC:%.c=build/%.o) build/libpaykit.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LIBS)

bin/mockpg: build/cmd/mockpg.o build/libpaykit.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(MHD_LIBS) $(LIBS)

bin/%: build/cmd/%.o build/libpaykit.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LIBS)

# Unit tests: lib/ without services, plain and under ASan and UBSan.
build/unit/%: tests/unit/%.c build/libpaykit.a
	@mkdir -p $(@D)
	$(CC) $(BASEFLAGS) $(LIBFLAGS) -Itests/unit $(CFLAGS) -o $@ $^ $(LIBS)

build/asan/lib/%.o: lib/%.c build/config.mk
	@mkdir -p $(@D)
	$(CC) $(BASEFLAGS) $(LIBFLAGS) $(SAN) -O1 -g -c -o $@ $<

build/asan/libpaykit.a: $(LIBSRC:%.c=build/asan/%.o) build/migrations.o
	@rm -f $@
	$(AR) rcs $@ $^

build/asan/unit/%: tests/unit/%.c build/asan/libpaykit.a
	@mkdir -p $(@D)
	$(CC) $(BASEFLAGS) $(LIBFLAGS) -Itests/unit $(SAN) -O1 -g -o $@ $^ $(LIBS)

unit: $(UNITS) $(ASAN_UNITS)

# The programs under ASan and UBSan, in build/asan/bin, for the short
# end-to-end run of make check (scripts/leakcheck -t asan).
ASAN_BINS = $(PROGS:%=build/asan/bin/%)

build/asan/cmd/%.o: cmd/%.c build/config.mk
	@mkdir -p $(@D)
	$(CC) $(BASEFLAGS) $(LIBFLAGS) $(MHD_CFLAGS) $(SAN) -O1 -g -c -o $@ $<

build/asan/bin/payctl: $(PAYCTLSRC:%.c=build/asan/%.o) build/asan/libpaykit.a
	@mkdir -p $(@D)
	$(CC) $(SAN) -g $(LDFLAGS) -o $@ $^ $(LIBS)

build/asan/bin/dbstat: $(DBSTATSRC:%.c=build/asan/%.o) build/asan/libpaykit.a
	@mkdir -p $(@D)
	$(CC) $(SAN) -g $(LDFLAGS) -o $@ $^ $(LIBS)

build/asan/bin/mockpg: build/asan/cmd/mockpg.o build/asan/libpaykit.a
	@mkdir -p $(@D)
	$(CC) $(SAN) -g $(LDFLAGS) -o $@ $^ $(MHD_LIBS) $(LIBS)

build/asan/bin/%: build/asan/cmd/%.o build/asan/libpaykit.a
	@mkdir -p $(@D)
	$(CC) $(SAN) -g $(LDFLAGS) -o $@ $^ $(LIBS)

asan: $(ASAN_BINS)

# libFuzzer targets for the parsers of outside data (clang).  make check
# runs each for a few seconds; make fuzz for FUZZ_SECONDS (60) each.
FUZZSRC = $(wildcard tests/fuzz/fuzz_*.c)
FUZZERS = $(FUZZSRC:tests/fuzz/%.c=build/fuzz/%)
FUZZCC = clang
FUZZFLAGS = -std=c11 -D_GNU_SOURCE -Ilib -Ibuild -g -O1 -Wall -Wextra \
	-Wno-unused-parameter -Wno-missing-field-initializers \
	-fsanitize=address,undefined -fno-sanitize-recover=undefined

build/fuzz/lib/%.o: lib/%.c build/config.mk
	@mkdir -p $(@D)
	$(FUZZCC) $(FUZZFLAGS) -fsanitize=fuzzer-no-link $(LIBFLAGS) -c -o $@ $<

build/fuzz/libpaykit.a: $(LIBSRC:%.c=build/fuzz/%.o)
	@rm -f $@
	$(AR) rcs $@ $^

build/fuzz/%: tests/fuzz/%.c build/fuzz/libpaykit.a
	$(FUZZCC) $(FUZZFLAGS) -fsanitize=fuzzer $(LIBFLAGS) -o $@ $^ $(LIBS)

# payctl's stream request lines are parsed in payctl itself.
build/fuzz/cmd/payctl/%.o: cmd/payctl/%.c build/config.mk
	@mkdir -p $(@D)
	$(FUZZCC) $(FUZZFLAGS) -fsanitize=fuzzer-no-link $(LIBFLAGS) -c -o $@ $<

build/fuzz/fuzz_stream_line: tests/fuzz/fuzz_stream_line.c \
    build/fuzz/cmd/payctl/authorize-input.o build/fuzz/libpaykit.a
	$(FUZZCC) $(FUZZFLAGS) -Icmd/payctl -fsanitize=fuzzer $(LIBFLAGS) -o $@ $^ \
	    $(LIBS)

fuzzers: $(FUZZERS)

# Small C programs that scripts/bench runs (make bench): the raw ceilings
# and the helpers that time or feed the components, tests/bench/*.c.
BENCHSRC = $(wildcard tests/bench/*.c)
BENCHPROGS = $(BENCHSRC:tests/bench/%.c=build/bench/%)

build/bench/%: tests/bench/%.c tests/bench/bench.h build/libpaykit.a
	@mkdir -p $(@D)
	$(CC) $(BASEFLAGS) $(LIBFLAGS) $(CFLAGS) -o $@ $< build/libpaykit.a $(LIBS)

benchprogs: $(BENCHPROGS)

fuzz:
	@scripts/deps
	@$(MAKE) --no-print-directory fuzzers
	@FUZZ_SECONDS=$${FUZZ_SECONDS:-60} tests/run-fuzz

deps:
	@scripts/deps

# The README's test command: installs what is missing, builds, runs the unit
# tests (plain and sanitized) and the bats suite against the embedded stack,
# and ends with one line "N passed, N failed".
check:
	@scripts/deps
	@$(MAKE) --no-print-directory all unit asan fuzzers benchprogs
	@tests/run

demo:
	@scripts/deps
	@$(MAKE) --no-print-directory all
	@scripts/demo

bench:
	@scripts/deps
	@$(MAKE) --no-print-directory all benchprogs
	@scripts/bench

lint:
	@scripts/deps
	@scripts/lint

fmt:
	clang-format -i lib/*.[ch] cmd/*.c cmd/*/*.[ch] tests/unit/*.[ch] \
		tests/bench/*.[ch]

# The systemd units and timers, and the examples: settings, the systemd
# environment file, a crontab.  They name /usr/local/bin and
# /usr/local/share/paykit, the default PREFIX's; the installed copies get
# this PREFIX's paths.  Nothing is written to $(SYSCONFDIR): the examples
# are copied there by hand.
SYSTEMD_UNITS = $(wildcard compose/systemd/*.service compose/systemd/*.timer \
	compose/systemd/*.target)
EXAMPLES = compose/paykit.conf.example compose/paykit.env.example \
	compose/cron/paykit.cron
AT_PREFIX = sed -e 's|/usr/local/bin|$(BINDIR)|g' \
	-e 's|/usr/local/share/paykit|$(SHAREDIR)|g'

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 \
		$(DESTDIR)$(MANDIR)/man7 $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(SHAREDIR) $(DESTDIR)$(SYSTEMDDIR)
	install -m 755 $(BINS) $(DESTDIR)$(BINDIR)
	for m in $(MAN); do \
		install -m 644 $$m $(DESTDIR)$(MANDIR)/man$${m##*.}/; done
	for f in $(SYSTEMD_UNITS); do \
		$(AT_PREFIX) $$f > $(DESTDIR)$(SYSTEMDDIR)/$${f##*/} && \
		chmod 644 $(DESTDIR)$(SYSTEMDDIR)/$${f##*/} || exit 1; done
	for f in $(EXAMPLES); do \
		$(AT_PREFIX) $$f > $(DESTDIR)$(SHAREDIR)/$${f##*/} && \
		chmod 644 $(DESTDIR)$(SHAREDIR)/$${f##*/} || exit 1; done

uninstall:
	for p in $(PROGS); do rm -f $(DESTDIR)$(BINDIR)/$$p; done
	for m in $(notdir $(MAN)); do \
		rm -f $(DESTDIR)$(MANDIR)/man$${m##*.}/$$m; done
	for f in $(notdir $(SYSTEMD_UNITS)); do \
		rm -f $(DESTDIR)$(SYSTEMDDIR)/$$f; done
	for f in $(notdir $(EXAMPLES)); do rm -f $(DESTDIR)$(SHAREDIR)/$$f; done
	-rmdir $(DESTDIR)$(SHAREDIR)

clean:
	rm -rf build bin

-include $(wildcard build/*/*.d build/*/*/*.d build/*/*/*/*.d)
