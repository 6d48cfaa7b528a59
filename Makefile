# libvmo — build, test, benchmark, install.
#
#   make            libvmo.a, libvmo.so, tools
#   make demo       build and run the end-to-end demonstration
#   make test       the whole suite: normal build, then ASan+UBSan build
#   make tsan       the concurrent tests under ThreadSanitizer
#   make bench      benchmark programs (BENCH lines)
#   make install PREFIX=/usr/local
#
# Everything builds out of tree into $(BUILD)/<variant>/ (BUILD=build by
# default; another BUILD lets two builds run side by side).

CC      ?= cc
BUILD   ?= build
PREFIX  ?= /usr/local
LIBDIR  ?= $(PREFIX)/lib
INCDIR  ?= $(PREFIX)/include

VERSION := 0.1.0
SOVER   := 0

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unused-parameter
BASE_CFLAGS := -std=gnu11 -g $(WARN) -D_GNU_SOURCE -Iinclude -pthread $(PKG_CFLAGS)
OPT     ?= -O2

# The core, then the modules above it (each on a line of its own).
SRCS := src/pool.c src/ptable.c src/object.c src/pager.c src/space.c \
        src/fault.c src/swap.c src/reclaim.c src/clone.c src/sys/sys.c
HDRS := include/vmo.h src/vmo_internal.h src/sys/uapi.h

# Libraries from Debian packages (.ci/run installs them; libvmo.pc names
# them in Requires.private).
PKGS    := libzstd libxxhash
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LIBS    := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

TEST_SRCS := $(sort $(wildcard tests/test_*.c))
# Tests that exercise concurrency; they also run under ThreadSanitizer.
TSAN_TESTS := $(sort $(wildcard tests/test_concurrency*.c))
BENCH_SRCS := $(sort $(wildcard bench/bench_*.c))

# variant -> flags
FLAGS_release := $(OPT)
FLAGS_asan    := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
FLAGS_tsan    := -O1 -fno-omit-frame-pointer -fsanitize=thread

define variant
B_$(1) := $(BUILD)/$(1)
OBJS_$(1) := $$(patsubst %.c,$(BUILD)/$(1)/%.o,$$(SRCS))

$(BUILD)/$(1)/%.o: %.c $$(HDRS)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(BASE_CFLAGS) $$(FLAGS_$(1)) -fPIC -fvisibility=hidden -c $$< -o $$@

$(BUILD)/$(1)/libvmo.a: $$(OBJS_$(1))
	@rm -f $$@
	ar rcs $$@ $$^

$(BUILD)/$(1)/tests/%: tests/%.c tests/testlib.h $(BUILD)/$(1)/libvmo.a
	@mkdir -p $$(dir $$@)
	$$(CC) $$(BASE_CFLAGS) $$(FLAGS_$(1)) -Itests $$< $(BUILD)/$(1)/libvmo.a $(LIBS) -o $$@
endef
$(eval $(call variant,release))
$(eval $(call variant,asan))
$(eval $(call variant,tsan))

TESTS_release := $(patsubst tests/%.c,$(BUILD)/release/tests/%,$(TEST_SRCS))
TESTS_asan    := $(patsubst tests/%.c,$(BUILD)/asan/tests/%,$(TEST_SRCS))
TESTS_tsan    := $(patsubst tests/%.c,$(BUILD)/tsan/tests/%,$(TSAN_TESTS))

.PHONY: all lib demo test test-release test-asan tsan bench install uninstall clean

all: lib $(BUILD)/release/vmo

lib: $(BUILD)/release/libvmo.a $(BUILD)/release/libvmo.so

$(BUILD)/release/libvmo.so: $(OBJS_release)
	$(CC) -shared -pthread -Wl,-soname,libvmo.so.$(SOVER) -o $@ $^ $(LIBS)

$(BUILD)/release/vmo: tools/vmo.c $(BUILD)/release/libvmo.a
	$(CC) $(BASE_CFLAGS) $(OPT) $< $(BUILD)/release/libvmo.a $(LIBS) -o $@

$(BUILD)/release/examples/%: examples/%.c $(BUILD)/release/libvmo.a
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(OPT) $< $(BUILD)/release/libvmo.a $(LIBS) -o $@

$(BUILD)/release/bench/%: bench/%.c bench/benchlib.h $(BUILD)/release/libvmo.a
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(OPT) -Ibench $< $(BUILD)/release/libvmo.a $(LIBS) -o $@

demo: $(BUILD)/release/examples/demo
	./$(BUILD)/release/examples/demo

test: test-release test-asan

test-release: $(TESTS_release)
	./tests/run.sh release $(TESTS_release)

test-asan: $(TESTS_asan)
	./tests/run.sh asan $(TESTS_asan)

tsan: $(TESTS_tsan)
	./tests/run.sh tsan $(TESTS_tsan)

bench: $(patsubst bench/%.c,$(BUILD)/release/bench/%,$(BENCH_SRCS))
	@for b in $^; do echo "# $$b"; $$b || exit 1; done

$(BUILD)/libvmo.pc: libvmo.pc.in Makefile
	@mkdir -p build
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
	    -e 's|@INCDIR@|$(INCDIR)|' -e 's|@VERSION@|$(VERSION)|' $< > $@

install: lib $(BUILD)/libvmo.pc
	install -d $(DESTDIR)$(INCDIR) $(DESTDIR)$(LIBDIR)/pkgconfig
	install -m 644 include/vmo.h $(DESTDIR)$(INCDIR)/vmo.h
	install -m 644 $(BUILD)/release/libvmo.a $(DESTDIR)$(LIBDIR)/libvmo.a
	install -m 755 $(BUILD)/release/libvmo.so $(DESTDIR)$(LIBDIR)/libvmo.so.$(VERSION)
	ln -sf libvmo.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libvmo.so.$(SOVER)
	ln -sf libvmo.so.$(SOVER) $(DESTDIR)$(LIBDIR)/libvmo.so
	install -m 644 $(BUILD)/libvmo.pc $(DESTDIR)$(LIBDIR)/pkgconfig/libvmo.pc

uninstall:
	rm -f $(DESTDIR)$(INCDIR)/vmo.h $(DESTDIR)$(LIBDIR)/libvmo.a \
	      $(DESTDIR)$(LIBDIR)/libvmo.so* $(DESTDIR)$(LIBDIR)/pkgconfig/libvmo.pc

clean:
	rm -rf $(BUILD)
