# chatd — build, run, test.
#
#   make deps        install every Debian and npm package below (no-op when
#                    present); each target installs only its own set
#                    (scripts/deps.sh run|cluster|bench|test)
#   make             build/chatd, build/chat-client, build/chat-bench
#   make bench       chatd against Janus TextRoom: docs/BENCHMARKS.md (scripts/bench.sh)
#   make bench-smoke the bench-smoke suite alone: chat-bench counts right (under a minute)
#   make bench-cluster  one room spread over 1, 2 and 3 clustered nodes (NATS,
#                    PostgreSQL started by it): the NATS hop's latency, CPU per
#                    delivery per node (scripts/bench-cluster.sh; 2.5 min, up to
#                    3 more while other processes keep the CPUs busy); prints
#                    its result lines, figures in docs/BENCHMARKS.md
#   make run         the runtime packages (compiler, -dev libraries; Node.js
#                    only if the public JSONPlaceholder does not answer) +
#                    build + start chatd (prints its URL); ARGS=... to chatd
#   make cluster     its packages + build + a local cluster: NATS, PostgreSQL, 3 chatd
#                    nodes, nginx with TLS in front (scripts/cluster.sh,
#                    docs/DEPLOY.md); ARGS=... to every node
#   make test        every package + every suite (unit, integration, interop, browser,
#                    fuzz, sanitizer build, load, coverage); ends with "N passed,
#                    N failed, N skipped". The product suites run once, on the
#                    gcov build, and coverage is read from that run.
#   make test-asan   the suites again, built with ASan + UBSan
#   make fuzz        libFuzzer targets, FUZZ_SECONDS each
#   make format      clang-format -i over the C sources (.clang-format)
#   make coverage    gcov build, the suites on it, "coverage: lines X% branches
#                    Y%" for src/, HTML report in build/coverage/
#   make install     the programs, man pages, systemd unit, environment file and
#                    sysusers.d entry under PREFIX (/usr/local), DESTDIR staged;
#                    make uninstall removes them (docs/DEPLOY.md)
#   make deb         build/deb/chatd_VERSION_ARCH.deb with debhelper (debian/,
#                    scripts/deb.sh), checked by lintian
#
# MODE=asan or MODE=cov selects an instrumented build under build/asan or
# build/cov; BUILD overrides the output folder. EXTRA_CFLAGS and
# EXTRA_LDFLAGS are added last (debian/rules passes dpkg-buildflags' there).

MODE ?= release
ifeq ($(MODE),asan)
BUILD ?= build/asan
MODE_CFLAGS := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
MODE_LDFLAGS := -fsanitize=address,undefined
else ifeq ($(MODE),fuzz)
BUILD ?= build/fuzzlib
CC := clang
MODE_CFLAGS := -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
MODE_LDFLAGS := -fsanitize=address,undefined
else ifeq ($(MODE),cov)
BUILD ?= build/cov
MODE_CFLAGS := -O0 --coverage
MODE_LDFLAGS := --coverage
else
BUILD ?= build
MODE_CFLAGS := -O2
MODE_LDFLAGS :=
endif

CC ?= gcc
PKGS := glib-2.0 nice openssl usrsctp libmicrohttpd gnutls jansson libcurl libpq sqlite3 libnats
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g -Isrc -MMD -MP $(MODE_CFLAGS) $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDLIBS := $(PKG_LIBS) -lpthread -lm
LDFLAGS := $(MODE_LDFLAGS) $(EXTRA_LDFLAGS)

# The project's one version (the VERSION file; util/version.h): --version,
# /api/health, /metrics and the package. Only version.o is built with it.
CHATD_VERSION := $(shell cat VERSION 2>/dev/null)
ifeq ($(shell printf '%s' '$(CHATD_VERSION)' | grep -Ex '[0-9A-Za-z.+~-]{1,64}'),)
$(error VERSION must hold one version: 1 to 64 letters, digits and . + ~ - (found '$(CHATD_VERSION)'))
endif

# Every module folder below src/; src/chatd.c is main and wiring only.
MODULE_DIRS ?= $(sort $(dir $(wildcard src/*/*.c)))
LIB_SRC := $(wildcard $(addsuffix *.c,$(MODULE_DIRS)))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
# The web client, embedded: generated from web/ by scripts/embed-web.py.
WEB_GEN := $(BUILD)/gen/web_assets.c
ifneq ($(filter src/http/,$(MODULE_DIRS)),)
LIB_OBJ += $(BUILD)/obj/gen/web_assets.o
endif
LIB := $(BUILD)/libchatd.a

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

PROGRAMS := $(BUILD)/chatd $(BUILD)/chat-client $(BUILD)/chat-bench

.PHONY: all deps run cluster test test-asan unit fuzz coverage bench bench-smoke bench-cluster \
    clean man install uninstall deb
# Keep object files of test binaries (they are intermediates to make).
.SECONDARY:
all: $(PROGRAMS)

deps:
	@./scripts/deps.sh

# V=1 shows the full commands.
Q := $(if $(V),,@)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(V),,printf '  CC      %s\n' $<)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/src/util/version.o: CFLAGS += -DCHATD_VERSION='"$(CHATD_VERSION)"'
$(BUILD)/obj/src/util/version.o: VERSION

$(WEB_GEN): scripts/embed-web.py $(wildcard web/*)
	@mkdir -p $(dir $@)
	$(Q)python3 scripts/embed-web.py $@

$(BUILD)/obj/gen/web_assets.o: $(WEB_GEN)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/chatd: $(BUILD)/obj/src/chatd.o $(LIB)
	@$(if $(V),,printf '  LD      %s\n' $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Code the tools share (tools/common/): the HTTP client.
TOOLS_COMMON_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tools/common/*.c))

$(BUILD)/chat-client: $(BUILD)/obj/tools/chat-client.o $(TOOLS_COMMON_OBJ) $(LIB)
	@$(if $(V),,printf '  LD      %s\n' $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# chat-bench: the load generator, tools/chat-bench.c and its modules.
BENCH_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,tools/chat-bench.c $(wildcard tools/bench/*.c)) $(TOOLS_COMMON_OBJ)
$(BUILD)/chat-bench: $(BENCH_OBJ) $(LIB)
	@$(if $(V),,printf '  LD      %s\n' $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(V),,printf '  LD      %s\n' $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcriterion

# libjwt is not chatd's: only test_auth uses it, as an independent JWT
# implementation to check chatd's tokens against.
$(BUILD)/obj/tests/unit/test_auth.o: CFLAGS += $(shell pkg-config --cflags libjwt 2>/dev/null)
$(BUILD)/tests/test_auth: LDLIBS += $(shell pkg-config --libs libjwt 2>/dev/null)

# tests/load/crosstalk.c: thousands of shared-socket peers in one process,
# in pairs, for tests/integration/test_mux.py (not a Criterion binary).
TEST_TOOLS := $(BUILD)/tests/crosstalk
$(BUILD)/obj/tests/load/crosstalk.o: CFLAGS += -Itools
$(BUILD)/tests/crosstalk: $(BUILD)/obj/tests/load/crosstalk.o $(TOOLS_COMMON_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(V),,printf '  LD      %s\n' $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

unit: $(UNIT_BIN) $(TEST_TOOLS)

# The benchmark against Janus TextRoom; writes docs/BENCHMARKS.md. Not
# part of make test (it measures wall-clock figures).
bench:
	@./scripts/deps.sh bench
	@$(MAKE) --no-print-directory all
	./scripts/bench.sh

# chat-bench against a cluster (issue 12): one room on one node without and
# with --cluster, then spread over two and three nodes. Not part of make test.
bench-cluster:
	@./scripts/deps.sh bench
	@./scripts/deps.sh cluster
	@$(MAKE) --no-print-directory all
	./scripts/bench-cluster.sh

# The quick check of the bench's tools: chat-bench's scenarios against
# chatd and Janus with a few peers, counts only (tests/integration/test_bench.py).
bench-smoke:
	@./scripts/deps.sh test
	@$(MAKE) --no-print-directory all
	./scripts/test.sh --only bench-smoke

# ARGS go to chatd, e.g. make run ARGS='--listen 0.0.0.0:8080'.
run:
	@./scripts/deps.sh run
	@$(MAKE) --no-print-directory all
	./scripts/run.sh $(ARGS)

# A cluster on this machine behind an HTTPS nginx; prints the URL to open,
# Ctrl-C stops it all. ARGS go to every node.
cluster:
	@./scripts/deps.sh cluster
	@$(MAKE) --no-print-directory all
	./scripts/cluster.sh $(ARGS)

# The suites are run by scripts/test.sh, which prints per-suite counts and
# the final "N passed, N failed, N skipped" line. --cov: unit, integration,
# integration-chat, fault, interop, browser and cluster run on the gcov build (once),
# and the coverage suite reports on that run; the release build serves
# bench-smoke, churn-valgrind and load (the timings and ratios), the ASan
# build the *-asan suites. Fuzzing here is a corpus replay and
# TEST_FUZZ_SECONDS (5) per target; `make fuzz` runs FUZZ_SECONDS (30).
test:
	@./scripts/deps.sh test
	@$(MAKE) --no-print-directory all unit fuzz-build
	@$(MAKE) --no-print-directory MODE=asan all unit
	@$(MAKE) --no-print-directory MODE=cov all unit
	./scripts/test.sh --cov

# Every *-asan suite; churn-asan drives the ASan chatd with release clients.
test-asan:
	@./scripts/deps.sh test
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory MODE=asan all unit
	./scripts/test.sh --only '*-asan'

# libFuzzer targets (clang): the library is built once with MODE=fuzz,
# each target links it with libFuzzer's main. `make fuzz` replays each
# corpus and fuzzes each target for FUZZ_SECONDS.
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)
FUZZ_SECONDS ?= 30
FUZZ_LIB := build/fuzzlib/libchatd.a
build/fuzz/%: tests/fuzz/%.c $(FUZZ_LIB)
	@mkdir -p build/fuzz
	@$(if $(V),,printf '  FUZZ    %s\n' $@)
	$(Q)clang -std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -Werror -Isrc -fsanitize=fuzzer,address,undefined $(PKG_CFLAGS) -o $@ $< $(FUZZ_LIB) $(LDLIBS)

ifneq ($(MODE),fuzz)
# FORCE is phony: with .SECONDARY (every target) a missing FORCE file would
# count as an intermediate that need not be made, and the fuzz library
# would never be rebuilt after a source change.
.PHONY: FORCE
$(FUZZ_LIB): FORCE
	@$(MAKE) --no-print-directory MODE=fuzz $(FUZZ_LIB)
FORCE:
endif

.PHONY: fuzz-build
fuzz-build: $(FUZZ_BIN)
fuzz:
	@./scripts/deps.sh test
	@$(MAKE) --no-print-directory fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) ./scripts/fuzz.sh

# Line and branch coverage of src/ (scripts/coverage.py; floors there).
coverage:
	@./scripts/deps.sh test
	@$(MAKE) --no-print-directory MODE=cov all unit
	/usr/bin/python3 scripts/coverage.py

# The C style (.clang-format, clang-format 14): make format rewrites in place.
FORMAT_SRC = $(wildcard src/*.c src/*/*.[ch] tools/*.c tools/*/*.[ch] tests/unit/*.[ch] tests/fuzz/*.c tests/load/*.c)
.PHONY: format
format:
	clang-format -i $(FORMAT_SRC)

# --- install ---------------------------------------------------------------
# chatd goes to sbin: it is a daemon an administrator starts (chatd(8), as
# the Debian package has it in /usr/sbin); the clients to bin. The unit's
# paths follow SBINDIR and SYSCONFDIR. SYSCONFDIR is /etc whatever the
# PREFIX (the unit reads SYSCONFDIR/default/chatd); an environment file
# already there is kept. The Debian package: PREFIX=/usr
# UNITDIR=/lib/systemd/system (debian/rules).
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
MANDIR ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
INSTALL ?= install

# The man pages: man/NAME.SECTION.in (hand-written roff) with OPTIONS,
# ENVIRONMENT and EXIT STATUS made from the program's --help
# (scripts/man.py), so they list exactly what it accepts. Rebuilt every
# time (a fraction of a second): the paths in them follow the variables above.
MAN_PAGES := $(BUILD)/man/chatd.8 $(BUILD)/man/chat-client.1 $(BUILD)/man/chat-bench.1
MAN_DEFS = SBINDIR=$(SBINDIR) SYSCONFDIR=$(SYSCONFDIR) UNITDIR=$(UNITDIR)
man: $(PROGRAMS)
	@mkdir -p $(BUILD)/man
	$(Q)for page in $(MAN_PAGES); do \
	    name=$$(basename $$page); \
	    python3 scripts/man.py $(BUILD)/$${name%.*} man/$$name.in $$page $(MAN_DEFS) || exit 1; \
	done

install: man
	$(INSTALL) -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man1 \
	    $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) \
	    $(DESTDIR)$(SYSCONFDIR)/default
	$(INSTALL) -m 0755 $(BUILD)/chatd $(DESTDIR)$(SBINDIR)/chatd
	$(INSTALL) -m 0755 $(BUILD)/chat-client $(BUILD)/chat-bench $(DESTDIR)$(BINDIR)/
	$(INSTALL) -m 0644 $(BUILD)/man/chatd.8 $(DESTDIR)$(MANDIR)/man8/chatd.8
	$(INSTALL) -m 0644 $(BUILD)/man/chat-client.1 $(BUILD)/man/chat-bench.1 $(DESTDIR)$(MANDIR)/man1/
	sed -e 's|/usr/sbin/chatd|$(SBINDIR)/chatd|' -e 's|/etc/default/chatd|$(SYSCONFDIR)/default/chatd|' \
	    deploy/systemd/chatd.service >$(BUILD)/chatd.service
	$(INSTALL) -m 0644 $(BUILD)/chatd.service $(DESTDIR)$(UNITDIR)/chatd.service
	$(INSTALL) -m 0644 deploy/systemd/chatd.sysusers $(DESTDIR)$(SYSUSERSDIR)/chatd.conf
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/default/chatd ]; then \
	    echo "install: keeping $(DESTDIR)$(SYSCONFDIR)/default/chatd (deploy/systemd/chatd.default is the shipped one)"; \
	else \
	    echo "$(INSTALL) -m 0600 deploy/systemd/chatd.default $(DESTDIR)$(SYSCONFDIR)/default/chatd"; \
	    $(INSTALL) -m 0600 deploy/systemd/chatd.default $(DESTDIR)$(SYSCONFDIR)/default/chatd; \
	fi

# The environment file goes only when it is the one shipped (never the
# settings someone wrote).
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/chatd $(DESTDIR)$(BINDIR)/chat-client $(DESTDIR)$(BINDIR)/chat-bench \
	    $(DESTDIR)$(MANDIR)/man8/chatd.8 $(DESTDIR)$(MANDIR)/man1/chat-client.1 \
	    $(DESTDIR)$(MANDIR)/man1/chat-bench.1 $(DESTDIR)$(UNITDIR)/chatd.service \
	    $(DESTDIR)$(SYSUSERSDIR)/chatd.conf
	@f=$(DESTDIR)$(SYSCONFDIR)/default/chatd; \
	if [ -e $$f ] && ! cmp -s $$f deploy/systemd/chatd.default; then \
	    echo "uninstall: keeping $$f (changed since install)"; \
	else \
	    rm -f $$f; \
	fi

# The Debian package, from a copy of this tree, with dpkg-buildpackage
# (debian/rules: the release build with dpkg-buildflags, then make install
# PREFIX=/usr); no test suite in the build (make test runs the `package`
# suite); lintian after. Installs what it needs, and only that: PKG_DEBS
# of scripts/deps.sh and debian/control's Build-Depends.
deb:
	./scripts/deb.sh

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(BUILD)/obj/src/chatd.d $(BUILD)/obj/tools/chat-client.d $(BENCH_OBJ:.o=.d) \
    $(UNIT_SRC:tests/unit/%.c=$(BUILD)/obj/tests/unit/%.d) $(BUILD)/obj/tests/load/crosstalk.d
