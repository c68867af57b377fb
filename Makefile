# chatd — build, run, test.
#
#   make deps        install Debian and npm packages (no-op when present)
#   make             build/chatd, build/chat-client, build/chat-bench
#   make bench       chatd against Janus TextRoom: docs/BENCHMARKS.md (scripts/bench.sh)
#   make bench-smoke the bench-smoke suite alone: chat-bench counts right (under a minute)
#   make bench-cluster  one room spread over 1, 2 and 3 clustered nodes (NATS,
#                    PostgreSQL started by it): the NATS hop's latency, CPU per
#                    delivery per node (scripts/bench-cluster.sh; 2.5 min, up to
#                    3 more while other processes keep the CPUs busy); prints
#                    its result lines, figures in docs/BENCHMARKS.md
#   make run         deps + build + start chatd (prints its URL); ARGS=... to chatd
#   make cluster     deps + build + a local cluster: NATS, PostgreSQL, 3 chatd
#                    nodes, nginx with TLS in front (scripts/cluster.sh,
#                    docs/DEPLOY.md); ARGS=... to every node
#   make test        deps + every suite (unit, integration, interop, browser,
#                    fuzz, sanitizer build, load, coverage); ends with "N passed,
#                    N failed, N skipped". The product suites run once, on the
#                    gcov build, and coverage is read from that run.
#   make test-asan   the suites again, built with ASan + UBSan
#   make fuzz        libFuzzer targets, FUZZ_SECONDS each
#   make format      clang-format -i over the C sources (.clang-format)
#   make coverage    gcov build, the suites on it, "coverage: lines X% branches
#                    Y%" for src/, HTML report in build/coverage/
#
# MODE=asan or MODE=cov selects an instrumented build under build/asan or
# build/cov; BUILD overrides the output folder.

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
PKGS := glib-2.0 nice openssl usrsctp libmicrohttpd jansson libcurl libpq sqlite3 libnats
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g -Isrc -MMD -MP $(MODE_CFLAGS) $(PKG_CFLAGS)
LDLIBS := $(PKG_LIBS) -lpthread -lm
LDFLAGS := $(MODE_LDFLAGS)

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

.PHONY: all deps run cluster test test-asan unit fuzz coverage bench bench-smoke bench-cluster clean
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
bench: deps
	@$(MAKE) --no-print-directory all
	./scripts/bench.sh

# chat-bench against a cluster (issue 12): one room on one node without and
# with --cluster, then spread over two and three nodes. Not part of make test.
bench-cluster: deps
	@$(MAKE) --no-print-directory all
	./scripts/bench-cluster.sh

# The quick check of the bench's tools: chat-bench's scenarios against
# chatd and Janus with a few peers, counts only (tests/integration/test_bench.py).
bench-smoke: deps
	@$(MAKE) --no-print-directory all
	./scripts/test.sh --only bench-smoke

# ARGS go to chatd, e.g. make run ARGS='--listen 0.0.0.0:8080'.
run: deps
	@$(MAKE) --no-print-directory all
	./scripts/run.sh $(ARGS)

# A cluster on this machine behind an HTTPS nginx; prints the URL to open,
# Ctrl-C stops it all. ARGS go to every node.
cluster: deps
	@$(MAKE) --no-print-directory all
	./scripts/cluster.sh $(ARGS)

# The suites are run by scripts/test.sh, which prints per-suite counts and
# the final "N passed, N failed, N skipped" line. --cov: unit, integration,
# integration-chat, fault, interop, browser and cluster run on the gcov build (once),
# and the coverage suite reports on that run; the release build serves
# bench-smoke, churn-valgrind and load (the timings and ratios), the ASan
# build the *-asan suites. Fuzzing here is a corpus replay and
# TEST_FUZZ_SECONDS (5) per target; `make fuzz` runs FUZZ_SECONDS (30).
test: deps
	@$(MAKE) --no-print-directory all unit fuzz-build
	@$(MAKE) --no-print-directory MODE=asan all unit
	@$(MAKE) --no-print-directory MODE=cov all unit
	./scripts/test.sh --cov

# Every *-asan suite; churn-asan drives the ASan chatd with release clients.
test-asan: deps
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
fuzz: deps
	@$(MAKE) --no-print-directory fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) ./scripts/fuzz.sh

# Line and branch coverage of src/ (scripts/coverage.py; floors there).
coverage: deps
	@$(MAKE) --no-print-directory MODE=cov all unit
	/usr/bin/python3 scripts/coverage.py

# The C style (.clang-format, clang-format 14): make format rewrites in place.
FORMAT_SRC = $(wildcard src/*.c src/*/*.[ch] tools/*.c tools/*/*.[ch] tests/unit/*.[ch] tests/fuzz/*.c tests/load/*.c)
.PHONY: format
format:
	clang-format -i $(FORMAT_SRC)

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(BUILD)/obj/src/chatd.d $(BUILD)/obj/tools/chat-client.d $(BENCH_OBJ:.o=.d) \
    $(UNIT_SRC:tests/unit/%.c=$(BUILD)/obj/tests/unit/%.d) $(BUILD)/obj/tests/load/crosstalk.d
