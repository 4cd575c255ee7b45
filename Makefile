# Simpleton - plain Makefile.
#   make            build ./simpleton
#   make run        install missing packages, build, start the server on its defaults
#   make test       install missing packages, build, run every test layer
#   make test SANITIZE=1   the same with AddressSanitizer + UndefinedBehaviorSanitizer
#   make bench      run the benchmarks        make fuzz   run the fuzzers (clang)
#   make mutate     mutation testing: each mutant in tests/mutate/mutants.sh must
#                   fail its tests (not part of make test; ONLY=id-substring)
# Knobs: SANITIZE=1, DEBUG=1, CC=...

CC      ?= cc
PKGS    := libmicrohttpd jansson hiredis libcurl libcrypto sqlite3 lept tesseract \
           libavformat libavcodec libswresample libavutil
CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -pthread \
           -mavx2 -mfma -mf16c -Isrc -MMD -MP
LDLIBS  := -lm -lpthread

BUILD   := build
ifeq ($(SANITIZE),1)
  CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  LDFLAGS += -fsanitize=address,undefined
  BUILD   := build-san
endif
ifeq ($(DEBUG),1)
  CFLAGS  += -O0 -DSMP_DEBUG
endif

PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

SRCS     := $(filter-out src/main.c,$(wildcard src/*/*.c src/*/*/*.c))
OBJS     := $(SRCS:%.c=$(BUILD)/%.o)

# The default model is built into the binary when the shared assets are there.
EMBED_MODEL ?= ../shared/models/stories260K.gguf
ifneq ($(wildcard $(EMBED_MODEL)),)
  OBJS += $(BUILD)/embedded_model.o
  $(BUILD)/src/engine/embedded.o: CFLAGS += -DSMP_HAVE_EMBEDDED_MODEL
endif
LIB      := $(BUILD)/libsimpleton.a
BIN      := $(BUILD)/simpleton
UNIT_SRC := $(wildcard tests/unit/*.c)
UNIT_BIN := $(BUILD)/unit_tests
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_REPLAY := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/%_replay)

.PHONY: all deps test-deps run test unit fuzz-replay integration e2e bench fuzz mutate clean check-pkgs

all: simpleton

simpleton: check-pkgs $(BIN)
	@ln -sf $(BIN) simpleton

check-pkgs:
	@pkg-config --exists $(PKGS) || { echo "missing libraries: run 'scripts/deps.sh build' (or 'make run' / 'make test', which do it)"; \
	  for p in $(PKGS); do pkg-config --exists $$p || echo "  not found: $$p"; done; exit 1; }

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -c $< -o $@

$(BUILD)/embedded_model.o: $(EMBED_MODEL)
	@mkdir -p $(BUILD)
	printf '.section .rodata\n.balign 64\n.global smp_embedded_start\nsmp_embedded_start:\n.incbin "%s"\n.global smp_embedded_end\nsmp_embedded_end:\n.section .note.GNU-stack,"",@progbits\n' "$(abspath $<)" > $(BUILD)/embedded_model.S
	$(CC) -c $(BUILD)/embedded_model.S -o $@

$(LIB): $(OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(BUILD)/src/main.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(LDLIBS)

$(UNIT_BIN): $(UNIT_SRC:%.c=$(BUILD)/%.o) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(LDLIBS)

$(BUILD)/bench_monitor: $(BUILD)/bench/http/monitor_cost.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(LDLIBS)

$(BUILD)/fuzz_%_replay: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/tests/fuzz/replay.o $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(LDLIBS)

deps:
	@scripts/deps.sh build

test-deps:
	@scripts/deps.sh test

run: deps
	@$(MAKE) --no-print-directory simpleton
	./simpleton serve

test: test-deps
	@$(MAKE) --no-print-directory simpleton $(UNIT_BIN) $(FUZZ_REPLAY)
	@$(MAKE) --no-print-directory unit fuzz-replay integration e2e

unit: $(UNIT_BIN)
	$(UNIT_BIN)

fuzz-replay: $(FUZZ_REPLAY)
	@for f in $(FUZZ_REPLAY); do n=$$(basename $$f _replay); $$f tests/fuzz/corpus/$${n#fuzz_} || exit 1; done

integration: simpleton
	SIMPLETON_BIN=$(abspath $(BIN)) node --test --test-concurrency=1 tests/integration/

tests/e2e/node_modules/.package-lock.json: tests/e2e/package.json tests/e2e/package-lock.json
	cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error

e2e: simpleton tests/e2e/node_modules/.package-lock.json
	SIMPLETON_BIN=$(abspath $(BIN)) node --test --test-concurrency=1 tests/e2e/

bench: simpleton $(BUILD)/bench_rag $(BUILD)/bench_monitor $(BUILD)/bench_schema $(BUILD)/bench_batch
	$(BUILD)/bench_monitor
	bench/http/run.sh
	bench/gateway/run.sh
	bench/engine/run.sh
	bench/engine/batch.sh
	bench/rag/run.sh
	bench/vision/run.sh
	bench/audio/run.sh
	bench/hardening/run.sh
	bench/grammar/run.sh
	bench/serving/run.sh

$(BUILD)/bench_rag: bench/rag/bench_rag.c $(LIB)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(PKG_LIBS) $(LDLIBS)

$(BUILD)/bench_schema: bench/grammar/bench_schema.c $(LIB)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(PKG_LIBS) $(LDLIBS)

$(BUILD)/bench_batch: bench/engine/bench_batch.c $(LIB)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) $(LDFLAGS) -o $@ $< $(LIB) $(PKG_LIBS) $(LDLIBS)

# Mutation testing in a scratch copy (the working tree is not touched).
mutate: check-pkgs
	@tests/mutate/run.sh $(ONLY)

# libFuzzer builds (clang); FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 60
fuzz:
	@mkdir -p build-fuzz
	@for f in $(FUZZ_SRC); do n=$$(basename $$f .c); \
	  clang -O1 -g -fsanitize=fuzzer,address,undefined -std=gnu11 -Isrc -mavx2 -mfma -mf16c $(PKG_CFLAGS) \
	    $$f $(SRCS) -o build-fuzz/$$n $(PKG_LIBS) $(LDLIBS) || exit 1; \
	  mkdir -p build-fuzz/corpus-$$n; \
	  build-fuzz/$$n -max_total_time=$(FUZZ_SECONDS) build-fuzz/corpus-$$n tests/fuzz/corpus/$${n#fuzz_} || exit 1; done

clean:
	rm -rf build build-san build-fuzz simpleton

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
