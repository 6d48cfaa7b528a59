/*
 * testlib.h — a tiny test harness.
 *
 * Each test file defines tests with TEST(name) { ... } and ends with
 * TEST_MAIN().  Every test runs in its own forked child with a time limit
 * (TEST_TIMEOUT seconds, default 120), so a crash, a hang or a leaked
 * thread fails that test only.  Checks print the expression, the values and
 * the line, and fail the test at once.
 *
 * A binary prints one line per test and a final "N passed, N failed";
 * tests/run.sh adds up all binaries.  Pass test names as arguments to run
 * only those.
 */
#ifndef VMO_TESTLIB_H
#define VMO_TESTLIB_H

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vmo.h"

typedef void (*test_fn)(void);
struct test_case {
	const char *name;
	test_fn fn;
};
#define TEST_MAX 256
static struct test_case test_cases[TEST_MAX];
static int test_count;

#define TEST(name)                                                    \
	static void test_##name(void);                                \
	__attribute__((constructor)) static void reg_##name(void)     \
	{                                                             \
		if (test_count < TEST_MAX)                            \
			test_cases[test_count++] =                    \
				(struct test_case){#name, test_##name}; \
	}                                                             \
	static void test_##name(void)

#define FAIL(...)                                                      \
	do {                                                           \
		fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);      \
		fprintf(stderr, __VA_ARGS__);                          \
		fprintf(stderr, "\n");                                 \
		_exit(1);                                              \
	} while (0)

#define CHECK(cond)                                                    \
	do {                                                           \
		if (!(cond))                                           \
			FAIL("CHECK(%s) failed", #cond);               \
	} while (0)

#define CHECK_EQ(a, b)                                                     \
	do {                                                               \
		long long _a = (long long)(a), _b = (long long)(b);        \
		if (_a != _b)                                              \
			FAIL("CHECK_EQ(%s, %s): %lld != %lld", #a, #b, _a, \
			     _b);                                          \
	} while (0)

/* A call that must succeed (returns 0). */
#define OK(call)                                                         \
	do {                                                             \
		int _r = (call);                                         \
		if (_r != 0)                                             \
			FAIL("%s returned %d (%s)", #call, _r,           \
			     vmo_strerror(_r));                          \
	} while (0)

/* A call that must fail with exactly err (a negative errno). */
#define CHECK_ERR(call, err)                                             \
	do {                                                             \
		int _r = (call);                                         \
		if (_r != (err))                                         \
			FAIL("%s returned %d, expected %s (%d)", #call,  \
			     _r, #err, (err));                           \
	} while (0)

#define CHECK_MEM(p, q, n)                                               \
	do {                                                             \
		if (memcmp((p), (q), (n)) != 0)                          \
			FAIL("CHECK_MEM(%s, %s, %zu): contents differ",  \
			     #p, #q, (size_t)(n));                       \
	} while (0)

#define PG ((size_t)VMO_PAGE_SIZE)

/* A pool and a space with `threads` handlers (0: default). */
struct env {
	vmo_pool_t *pool;
	vmo_space_t *sp;
};

static inline struct env env_new(unsigned threads)
{
	struct env e;
	OK(vmo_pool_create(NULL, &e.pool));
	vmo_space_options_t so = {.size = sizeof so, .handler_threads = threads};
	OK(vmo_space_create(e.pool, &so, &e.sp));
	return e;
}

static inline void env_free(struct env *e)
{
	vmo_space_destroy(e->sp);
	vmo_pool_destroy(e->pool);
}

/* Current statistics, or fail the test. */
static inline vmo_space_stats_t sstat(vmo_space_t *sp)
{
	vmo_space_stats_t st;
	memset(&st, 0, sizeof st);
	st.size = sizeof st;
	OK(vmo_space_stats(sp, &st));
	return st;
}

/* sstat() once the handlers have finished their bookkeeping: a faulting
 * thread is woken before its handler records pages_mapped, sigbus,
 * latency...; the latency bucket comes last, so once the histogram
 * accounts for every fault read, every counter is final (~10 s at most). */
static inline vmo_space_stats_t sstat_settled(vmo_space_t *sp)
{
	vmo_space_stats_t st = sstat(sp);
	for (int i = 0; i < 10000; i++) {
		uint64_t n = 0;
		for (unsigned b = 0; b < VMO_LAT_BUCKETS; b++)
			n += st.latency_ns_log2[b];
		if (n == st.faults_missing + st.faults_minor + st.faults_wp)
			break;
		usleep(1000);
		st = sstat(sp);
	}
	return st;
}

static inline vmo_stats_t ostat(vmo_t *o)
{
	vmo_stats_t st;
	memset(&st, 0, sizeof st);
	st.size = sizeof st;
	OK(vmo_stats(o, &st));
	return st;
}

static inline vmo_pool_stats_t pstat(vmo_pool_t *pool)
{
	vmo_pool_stats_t st;
	memset(&st, 0, sizeof st);
	st.size = sizeof st;
	OK(vmo_pool_stats(pool, &st));
	return st;
}

/* ----------------------------------------------------------- self-paging */

/*
 * An already unlinked temporary file for swap, named for vmo_pool_create
 * by "/proc/self/fd/N": the library opens it as an existing file (so it
 * neither creates nor removes anything), and nothing is left behind even
 * when a test fails half way.  Close *fd once the pool exists (the pool
 * holds its own descriptor).
 */
static inline const char *temp_swap(char path[32], int *fd)
{
	char tmpl[] = "/tmp/vmoswapXXXXXX";
	*fd = mkstemp(tmpl);
	if (*fd < 0)
		FAIL("mkstemp: %s", strerror(errno));
	unlink(tmpl);
	snprintf(path, 32, "/proc/self/fd/%d", *fd);
	return path;
}

/* A pool with a budget of budget_pages (0: none) and, if swap_pages > 0,
 * a temporary swap file of that many pages. */
static inline vmo_pool_t *pool_budget(uint64_t budget_pages,
				      uint64_t swap_pages)
{
	vmo_pool_options_t po;
	memset(&po, 0, sizeof po);
	po.size = sizeof po;
	po.budget_bytes = budget_pages * PG;
	char path[32];
	int fd = -1;
	if (swap_pages) {
		po.swap_path = temp_swap(path, &fd);
		po.swap_bytes = swap_pages * PG;
	}
	vmo_pool_t *p = NULL;
	OK(vmo_pool_create(&po, &p));
	if (fd >= 0)
		close(fd);
	return p;
}

/* pool_budget() plus a space with `threads` handlers (0: default). */
static inline struct env env_budget(unsigned threads, uint64_t budget_pages,
				    uint64_t swap_pages)
{
	struct env e;
	e.pool = pool_budget(budget_pages, swap_pages);
	vmo_space_options_t so = {.size = sizeof so, .handler_threads = threads};
	OK(vmo_space_create(e.pool, &so, &e.sp));
	return e;
}

/* Wait until the pool holds at most `limit` resident pages (the reclaimer
 * works in the background), for at most ~10 s; returns the last
 * statistics, for the caller to check. */
static inline vmo_pool_stats_t pool_settle(vmo_pool_t *p, uint64_t limit)
{
	vmo_pool_stats_t st = pstat(p);
	for (int i = 0; i < 10000 && st.resident_pages > limit; i++) {
		usleep(1000);
		st = pstat(p);
	}
	return st;
}

/*
 * A space with one handler thread and a barrier mapping.  drain() takes a
 * fault on a fresh barrier page: when it returns, the single handler has
 * finished every fault it read before, including dropping its own object
 * references.  Keeps the tests that use it independent of when a handler
 * lets go of an object relative to waking the faulting thread;
 * shared_writeback_done_when_unmap_and_unref_return tests that on its own.
 */
struct serial {
	vmo_space_t *sp;
	vmo_t *bar;
	volatile unsigned char *bar_map;
	int next;
};

static inline void serial_init(struct serial *s, vmo_pool_t *p)
{
	vmo_space_options_t o;
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.handler_threads = 1;
	OK(vmo_space_create(p, &o, &s->sp));
	OK(vmo_create(p, 64 * PG, 0, &s->bar));
	void *a = NULL;
	OK(vmo_map(s->sp, s->bar, 0, 64 * PG, PROT_READ, 0, &a));
	OK(vmo_advise(s->sp, a, 64 * PG, VMO_ADV_RANDOM));
	s->bar_map = a;
	s->next = 0;
}

static inline void drain(struct serial *s)
{
	CHECK(s->next < 64);
	(void)s->bar_map[(size_t)s->next++ * PG];
}

static inline void serial_fini(struct serial *s)
{
	OK(vmo_unmap(s->sp, (void *)s->bar_map, 64 * PG));
	vmo_space_destroy(s->sp);
	vmo_unref(s->bar);
}

/* Deterministic content: byte i of "file" seed s. */
static inline uint8_t pattern_byte(uint64_t seed, uint64_t i)
{
	uint64_t x = (i >> 3) * 0x9E3779B97F4A7C15ull + seed;
	x ^= x >> 29;
	x *= 0xBF58476D1CE4E5B9ull;
	x ^= x >> 32;
	return (uint8_t)(x >> ((i & 7) * 8));
}

static inline void pattern_fill(void *buf, size_t len, uint64_t seed,
				uint64_t off)
{
	uint8_t *b = buf;
	for (size_t i = 0; i < len; i++)
		b[i] = pattern_byte(seed, off + i);
}

/* A temporary regular file of len bytes with pattern content; returns an
 * O_RDWR fd (the file is already unlinked). */
static inline int temp_file(size_t len, uint64_t seed)
{
	char path[] = "/tmp/vmotestXXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		FAIL("mkstemp: %s", strerror(errno));
	unlink(path);
	char *buf = malloc(1 << 20);
	for (size_t off = 0; off < len; off += 1 << 20) {
		size_t n = len - off < (1u << 20) ? len - off : 1u << 20;
		pattern_fill(buf, n, seed, off);
		if (pwrite(fd, buf, n, (off_t)off) != (ssize_t)n)
			FAIL("pwrite: %s", strerror(errno));
	}
	free(buf);
	return fd;
}

/* ------------------------------------------ shared by the eviction tests */

/* xorshift64: a fast, seedable generator (never seed with 0). */
static inline uint64_t rnd(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* Compare and, on a difference, fail with the first differing byte. */
#define SAME(got, exp, n, off, what) \
	same_((const unsigned char *)(got), (const unsigned char *)(exp), \
	      (n), (off), (what), __LINE__)
static inline void same_(const unsigned char *got, const unsigned char *exp,
		  size_t n, size_t off, const char *what, int line)
{
	if (!memcmp(got, exp, n))
		return;
	size_t i = 0;
	while (got[i] == exp[i])
		i++;
	fprintf(stderr,
		"  %s:%d: %s: byte %zu (page %zu + %zu) is 0x%02x, expected "
		"0x%02x\n",
		__FILE__, line, what, off + i, (off + i) / PG, (off + i) % PG,
		got[i], exp[i]);
	_exit(1);
}

/* A user pager over a malloc'd backing store; its write callback can be
 * made to fail (up_set_err) to test write-back errors. */
struct upager {
	pthread_mutex_t lock;
	unsigned char *store; /* the backing store (lock) */
	size_t len;
	int write_err;        /* (lock) errno the write callback returns */
	uint64_t reads, writes, write_fails; /* (lock) */
};

static inline int up_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	struct upager *u = ctx;
	if (off % PG || len % PG || len == 0 || off + len > u->len)
		FAIL("read callback with bad range %" PRIu64 " +%zu", off, len);
	pthread_mutex_lock(&u->lock);
	memcpy(buf, u->store + off, len);
	u->reads++;
	pthread_mutex_unlock(&u->lock);
	return 0;
}

static inline int up_write(void *ctx, uint64_t off, const void *buf, size_t len)
{
	struct upager *u = ctx;
	if (off % PG || len % PG || len == 0 || off + len > u->len)
		FAIL("write callback with bad range %" PRIu64 " +%zu", off,
		     len);
	pthread_mutex_lock(&u->lock);
	if (u->write_err) {
		u->write_fails++;
		int e = u->write_err;
		pthread_mutex_unlock(&u->lock);
		return -e;
	}
	memcpy(u->store + off, buf, len);
	u->writes++;
	pthread_mutex_unlock(&u->lock);
	return 0;
}

static const vmo_pager_ops_t up_ops = {up_read, up_write, NULL};

static inline void up_init(struct upager *u, size_t len, uint64_t seed)
{
	memset(u, 0, sizeof *u);
	pthread_mutex_init(&u->lock, NULL);
	u->len = len;
	u->store = malloc(len);
	CHECK(u->store != NULL);
	pattern_fill(u->store, len, seed, 0);
}

static inline void up_free(struct upager *u)
{
	free(u->store);
	pthread_mutex_destroy(&u->lock);
}

static int test_run_one(struct test_case *t, int timeout)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		alarm((unsigned)timeout);
		t->fn();
		fflush(NULL);
		_exit(0);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	if (WIFSIGNALED(st))
		fprintf(stderr, "  killed by signal %d%s\n", WTERMSIG(st),
			WTERMSIG(st) == SIGALRM ? " (timeout)" : "");
	return 1;
}

static inline int test_main(int argc, char **argv, const char *file)
{
	const char *to = getenv("TEST_TIMEOUT");
	int timeout = to ? atoi(to) : 120;
	int passed = 0, failed = 0;
	for (int i = 0; i < test_count; i++) {
		struct test_case *t = &test_cases[i];
		if (argc > 1) {
			int want = 0;
			for (int j = 1; j < argc; j++)
				want |= !strcmp(argv[j], t->name);
			if (!want)
				continue;
		}
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		int r = test_run_one(t, timeout);
		clock_gettime(CLOCK_MONOTONIC, &b);
		double ms = (double)(b.tv_sec - a.tv_sec) * 1e3 +
			    (double)(b.tv_nsec - a.tv_nsec) / 1e6;
		printf("%s %s.%s (%.0f ms)\n", r ? "FAIL" : "ok  ", file,
		       t->name, ms);
		fflush(stdout);
		if (r)
			failed++;
		else
			passed++;
	}
	printf("%s: %d passed, %d failed\n", file, passed, failed);
	return failed ? 1 : 0;
}

#define TEST_MAIN()                                                    \
	int main(int argc, char **argv)                                \
	{                                                              \
		const char *f = strrchr(__FILE__, '/');                \
		return test_main(argc, argv, f ? f + 1 : __FILE__);    \
	}

#endif
