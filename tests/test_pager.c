/*
 * test_pager.c — user pagers (vmo_create_pager): argument errors, fills
 * through vmo_read and mappings, exactly one read per page fill under
 * concurrency, read errors (-EIO, SIGBUS, retries), read-only pagers,
 * write-back of exactly the dirty pages, failing write-back, release.
 */
#include "testlib.h"

#include <pthread.h>
#include <sched.h>
#include <setjmp.h>

#define SENTINEL ((vmo_t *)(uintptr_t)0x5a5a5a5a5a5a5000ull)
#define MP_MAXPG 512
#define MP_MAXWR 256

/* ------------------------------------------------------ a mock pager */

struct wrec {
	uint64_t off;
	size_t len;
};

struct mp {
	size_t npages;
	unsigned char *store; /* the backing store the pager serves */
	pthread_mutex_t lock;
	/* reads (atomics) */
	int reads[MP_MAXPG];   /* read calls covering each page */
	uint64_t read_calls, read_bytes, read_fails;
	int read_sleep_ms;
	/* failure injection for reads (lock) */
	int64_t fail_page; /* -1: none */
	int fail_times;    /* failures left; < 0: forever */
	int fail_err;      /* positive errno */
	/* writes (lock) */
	int write_fail; /* positive errno to fail with, 0: succeed */
	struct wrec wr[MP_MAXWR];
	int nwr;
	int written[MP_MAXPG];
	uint64_t write_fails;
	/* order of events (lock) */
	uint64_t seq, last_write_seq, release_seq;
	int release_calls;
	/* optional hook run inside write and release */
	void (*hook)(struct mp *);
};

static void mp_init(struct mp *m, size_t npages, uint64_t seed)
{
	memset(m, 0, sizeof *m);
	CHECK(npages <= MP_MAXPG);
	m->npages = npages;
	m->store = malloc(npages * PG);
	pattern_fill(m->store, npages * PG, seed, 0);
	pthread_mutex_init(&m->lock, NULL);
	m->fail_page = -1;
}

static void mp_free(struct mp *m)
{
	free(m->store);
	pthread_mutex_destroy(&m->lock);
}

static int mp_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	struct mp *m = ctx;
	if (off % PG || len % PG || len == 0 || off + len > m->npages * PG)
		FAIL("read callback with bad range %" PRIu64 " +%zu", off, len);
	for (uint64_t p = off / PG; p < (off + len) / PG; p++)
		__atomic_fetch_add(&m->reads[p], 1, __ATOMIC_SEQ_CST);
	__atomic_fetch_add(&m->read_calls, 1, __ATOMIC_SEQ_CST);
	if (m->read_sleep_ms) {
		struct timespec ts = {0, (long)m->read_sleep_ms * 1000000L};
		nanosleep(&ts, NULL);
	}
	pthread_mutex_lock(&m->lock);
	if (m->fail_page >= 0 && m->fail_times != 0 &&
	    (uint64_t)m->fail_page >= off / PG &&
	    (uint64_t)m->fail_page < (off + len) / PG) {
		if (m->fail_times > 0)
			m->fail_times--;
		m->read_fails++;
		int e = m->fail_err;
		pthread_mutex_unlock(&m->lock);
		return -e;
	}
	memcpy(buf, m->store + off, len);
	pthread_mutex_unlock(&m->lock);
	__atomic_fetch_add(&m->read_bytes, len, __ATOMIC_SEQ_CST);
	return 0;
}

static int mp_write(void *ctx, uint64_t off, const void *buf, size_t len)
{
	struct mp *m = ctx;
	if (off % PG || len % PG || len == 0 || off + len > m->npages * PG)
		FAIL("write callback with bad range %" PRIu64 " +%zu", off,
		     len);
	if (m->hook)
		m->hook(m);
	pthread_mutex_lock(&m->lock);
	if (m->write_fail) {
		m->write_fails++;
		int e = m->write_fail;
		pthread_mutex_unlock(&m->lock);
		return -e;
	}
	if (m->nwr < MP_MAXWR)
		m->wr[m->nwr] = (struct wrec){off, len};
	m->nwr++;
	for (uint64_t p = off / PG; p < (off + len) / PG; p++)
		m->written[p]++;
	memcpy(m->store + off, buf, len);
	m->last_write_seq = ++m->seq;
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static void mp_release(void *ctx)
{
	struct mp *m = ctx;
	if (m->hook)
		m->hook(m);
	pthread_mutex_lock(&m->lock);
	m->release_calls++;
	m->release_seq = ++m->seq;
	pthread_mutex_unlock(&m->lock);
}

static int mp_nwr(struct mp *m)
{
	pthread_mutex_lock(&m->lock);
	int n = m->nwr;
	pthread_mutex_unlock(&m->lock);
	return n;
}

static const vmo_pager_ops_t ops_ro = {mp_read, NULL, mp_release};
static const vmo_pager_ops_t ops_rw = {mp_read, mp_write, mp_release};

/* ------------------------------------------------------------ helpers */

static vmo_pool_t *new_pool(void)
{
	vmo_pool_t *p = NULL;
	OK(vmo_pool_create(NULL, &p));
	return p;
}

/* A space whose faults fill exactly one page each (no fault-around). */
static vmo_space_t *new_space_1page(vmo_pool_t *p)
{
	vmo_space_options_t o;
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.max_cluster = VMO_PAGE_SIZE;
	vmo_space_t *s = NULL;
	OK(vmo_space_create(p, &o, &s));
	return s;
}

/*
 * Wait until the fills of [off, off+len) (all pages already touched) are
 * accounted: vmo_commit waits for pages still FILLING.  Keeps the tests
 * that use it independent of when a handler updates the counters relative
 * to waking the faulting thread; stats_current_when_fault_returns tests
 * that on its own.
 */
static void settle(vmo_t *o, uint64_t off, uint64_t len)
{
	OK(vmo_commit(o, off, len));
}

/* Map with VMO_ADV_RANDOM: every fault fills exactly its own page (no
 * fault-around, no read-ahead). */
static void *map_random(vmo_space_t *sp, vmo_t *o, uint64_t off, size_t len,
			int prot)
{
	void *a = NULL;
	OK(vmo_map(sp, o, off, len, prot, 0, &a));
	OK(vmo_advise(sp, a, len, VMO_ADV_RANDOM));
	return a;
}

static vmo_space_t *new_space(vmo_pool_t *p)
{
	vmo_space_t *s = NULL;
	OK(vmo_space_create(p, NULL, &s));
	return s;
}

/* ------------------------------------------------------------ creation */

static int dummy_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	memset(buf, 0, len);
	return 0;
}

static int dummy_write(void *ctx, uint64_t off, const void *buf, size_t len)
{
	return 0;
}

TEST(create_invalid_args_einval)
{
	vmo_pool_t *p = new_pool();
	vmo_t *o = SENTINEL;
	vmo_pager_ops_t ok_ops = {dummy_read, dummy_write, NULL};
	vmo_pager_ops_t no_read = {NULL, dummy_write, NULL};
	CHECK_ERR(vmo_create_pager(p, PG, NULL, NULL, 0, &o), -EINVAL);
	CHECK_ERR(vmo_create_pager(p, PG, &no_read, NULL, 0, &o), -EINVAL);
	CHECK_ERR(vmo_create_pager(p, PG, &ok_ops, NULL, 1, &o), -EINVAL);
	CHECK_ERR(vmo_create_pager(p, PG, &ok_ops, NULL, VMO_FILE_SHARED, &o),
		  -EINVAL);
	CHECK_ERR(vmo_create_pager(p, PG, &ok_ops, NULL, 0x80000000u, &o),
		  -EINVAL);
	CHECK_ERR(vmo_create_pager(p, 0, &ok_ops, NULL, 0, &o), -EINVAL);
	CHECK_ERR(vmo_create_pager(p, PG + 1, &ok_ops, NULL, 0, &o), -EINVAL);
	CHECK_ERR(vmo_create_pager(p, 100, &ok_ops, NULL, 0, &o), -EINVAL);
	CHECK_ERR(vmo_create_pager(NULL, PG, &ok_ops, NULL, 0, &o), -EINVAL);
	CHECK_ERR(vmo_create_pager(p, VMO_MAX_SIZE + PG, &ok_ops, NULL, 0, &o),
		  -EFBIG);
	CHECK(o == SENTINEL);
	CHECK_EQ(pstat(p).objects, 0);
	vmo_pool_destroy(p);
}

TEST(create_null_out_einval)
{
	vmo_pool_t *p = new_pool();
	vmo_pager_ops_t ok_ops = {dummy_read, dummy_write, NULL};
	/* must return -EINVAL, not store through NULL */
	CHECK_ERR(vmo_create_pager(p, PG, &ok_ops, NULL, 0, NULL), -EINVAL);
	CHECK_EQ(pstat(p).objects, 0);
	vmo_pool_destroy(p);
}

TEST(ops_struct_is_copied)
{
	struct mp m;
	mp_init(&m, 4, 1);
	vmo_pool_t *p = new_pool();
	vmo_pager_ops_t ops = ops_ro;
	vmo_t *o;
	OK(vmo_create_pager(p, 4 * PG, &ops, &m, 0, &o));
	memset(&ops, 0, sizeof ops); /* the caller's copy may go away */
	unsigned char b[PG];
	OK(vmo_read(o, PG, b, PG));
	CHECK_MEM(b, m.store + PG, PG);
	vmo_unref(o);
	CHECK_EQ(m.release_calls, 1);
	vmo_pool_destroy(p);
	mp_free(&m);
}

/* --------------------------------------------------------------- fills */

TEST(read_callback_fills_vmo_read)
{
	struct mp m;
	mp_init(&m, 16, 2);
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	OK(vmo_create_pager(p, 16 * PG, &ops_ro, &m, 0, &o));
	CHECK_EQ(m.read_calls, 0); /* lazy */
	unsigned char *b = malloc(16 * PG);
	OK(vmo_read(o, 3, b, 16 * PG - 5));
	CHECK_MEM(b, m.store + 3, 16 * PG - 5);
	for (int i = 0; i < 16; i++)
		CHECK_EQ(m.reads[i], 1);
	OK(vmo_read(o, 0, b, 16 * PG)); /* resident now: no more reads */
	CHECK_MEM(b, m.store, 16 * PG);
	for (int i = 0; i < 16; i++)
		CHECK_EQ(m.reads[i], 1);
	vmo_stats_t s = ostat(o);
	CHECK_EQ(s.resident_pages, 16);
	CHECK_EQ(s.pages_filled, 16);
	CHECK_EQ(s.pager_read_bytes, 16 * PG);
	CHECK_EQ(s.pager_reads, m.read_calls);
	CHECK_EQ(s.pager_errors, 0);
	free(b);
	vmo_unref(o);
	vmo_pool_destroy(p);
	mp_free(&m);
}

TEST(read_callback_fills_mapping)
{
	struct mp m;
	mp_init(&m, 16, 3);
	vmo_pool_t *p = new_pool();
	vmo_space_t *sp = new_space(p);
	vmo_t *o;
	OK(vmo_create_pager(p, 16 * PG, &ops_ro, &m, 0, &o));
	void *a = NULL;
	OK(vmo_map(sp, o, 0, 16 * PG, PROT_READ, 0, &a));
	CHECK_MEM(a, m.store, 16 * PG);
	for (int i = 0; i < 16; i++)
		CHECK_EQ(m.reads[i], 1);
	settle(o, 0, 16 * PG);
	for (int i = 0; i < 16; i++)
		CHECK_EQ(m.reads[i], 1);
	vmo_stats_t s = ostat(o);
	CHECK_EQ(s.resident_pages, 16);
	CHECK_EQ(s.pager_read_bytes, 16 * PG);
	CHECK(s.faults >= 1);
	/* the mapped pages are the object's pages */
	unsigned char b[PG];
	OK(vmo_read(o, 9 * PG, b, PG));
	CHECK_MEM(b, (unsigned char *)a + 9 * PG, PG);
	CHECK_EQ(m.reads[9], 1);
	vmo_space_destroy(sp);
	vmo_unref(o);
	vmo_pool_destroy(p);
	mp_free(&m);
}

TEST(mapping_at_offset_fills_right_pages)
{
	struct mp m;
	mp_init(&m, 16, 4);
	vmo_pool_t *p = new_pool();
	vmo_space_t *sp = new_space(p);
	vmo_t *o;
	OK(vmo_create_pager(p, 16 * PG, &ops_ro, &m, 0, &o));
	void *a = NULL;
	OK(vmo_map(sp, o, 6 * PG, 3 * PG, PROT_READ, 0, &a));
	CHECK_MEM(a, m.store + 6 * PG, 3 * PG);
	for (int i = 0; i < 16; i++)
		CHECK_EQ(m.reads[i], i >= 6 && i < 9 ? 1 : 0);
	vmo_space_destroy(sp);
	vmo_unref(o);
	vmo_pool_destroy(p);
	mp_free(&m);
}

/* --------------------------------------------------- exactly once */

#define NTHREADS 8

struct racer {
	pthread_barrier_t *bar;
	volatile unsigned char *addr; /* mapping, or NULL for vmo_read */
	vmo_t *obj;
	uint64_t off;
	size_t npages;
	const unsigned char *expect;
	int bad;
};

static void *racer_main(void *arg)
{
	struct racer *r = arg;
	pthread_barrier_wait(r->bar);
	for (size_t i = 0; i < r->npages; i++) {
		if (r->addr) {
			/* touch the page, then compare all of it */
			(void)r->addr[i * PG + 123];
			if (memcmp((const void *)(r->addr + i * PG),
				   r->expect + i * PG, PG))
				r->bad = 1;
		} else {
			unsigned char b[PG];
			if (vmo_read(r->obj, r->off + i * PG, b, PG) ||
			    memcmp(b, r->expect + i * PG, PG))
				r->bad = 1;
		}
	}
	return NULL;
}

static void race(struct racer *rs, int n)
{
	pthread_t t[NTHREADS];
	for (int i = 0; i < n; i++)
		CHECK_EQ(pthread_create(&t[i], NULL, racer_main, &rs[i]), 0);
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < n; i++)
		if (rs[i].bad)
			FAIL("racer %d saw wrong data", i);
}

TEST(concurrent_faults_read_each_page_once)
{
	struct mp m;
	mp_init(&m, 16, 5);
	m.read_sleep_ms = 50; /* so that the faults overlap */
	vmo_pool_t *p = new_pool();
	vmo_space_t *sp = new_space_1page(p);
	vmo_t *o;
	OK(vmo_create_pager(p, 16 * PG, &ops_ro, &m, 0, &o));
	unsigned char *base = map_random(sp, o, 0, 16 * PG, PROT_READ);
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, NTHREADS);
	struct racer rs[NTHREADS];
	for (int i = 0; i < NTHREADS; i++)
		rs[i] = (struct racer){&bar, base + 4 * PG, NULL, 0, 4,
				       m.store + 4 * PG, 0};
	race(rs, NTHREADS);
	pthread_barrier_destroy(&bar);
	for (int i = 0; i < 16; i++)
		if (m.reads[i] != (i >= 4 && i < 8 ? 1 : 0))
			FAIL("page %d read %d times", i, m.reads[i]);
	CHECK_EQ(m.read_bytes, 4 * PG);
	CHECK_EQ(m.read_calls, 4);
	settle(o, 4 * PG, 4 * PG);
	CHECK_EQ(m.read_calls, 4);
	vmo_stats_t s = ostat(o);
	CHECK_EQ(s.pager_read_bytes, 4 * PG);
	CHECK_EQ(s.pager_reads, 4);
	CHECK_EQ(s.resident_pages, 4);
	vmo_space_destroy(sp);
	vmo_unref(o);
	vmo_pool_destroy(p);
	mp_free(&m);
}

TEST(concurrent_vmo_reads_read_page_once)
{
	struct mp m;
	mp_init(&m, 8, 6);
	m.read_sleep_ms = 50;
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	OK(vmo_create_pager(p, 8 * PG, &ops_ro, &m, 0, &o));
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, NTHREADS);
	struct racer rs[NTHREADS];
	for (int i = 0; i < NTHREADS; i++)
		rs[i] = (struct racer){&bar, NULL, o, 3 * PG, 1,
				       m.store + 3 * PG, 0};
	race(rs, NTHREADS);
	pthread_barrier_destroy(&bar);
	for (int i = 0; i < 8; i++)
		if (m.reads[i] != (i == 3 ? 1 : 0))
			FAIL("page %d read %d times", i, m.reads[i]);
	CHECK_EQ(m.read_bytes, PG);
	CHECK_EQ(ostat(o).pages_filled, 1);
	vmo_unref(o);
	vmo_pool_destroy(p);
	mp_free(&m);
}

TEST(concurrent_faults_and_vmo_reads_read_page_once)
{
	struct mp m;
	mp_init(&m, 8, 7);
	m.read_sleep_ms = 50;
	vmo_pool_t *p = new_pool();
	vmo_space_t *sp = new_space_1page(p);
	vmo_t *o;
	OK(vmo_create_pager(p, 8 * PG, &ops_ro, &m, 0, &o));
	unsigned char *base = map_random(sp, o, 0, 8 * PG, PROT_READ);
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, NTHREADS);
	struct racer rs[NTHREADS];
	for (int i = 0; i < NTHREADS; i++)
		rs[i] = (struct racer){&bar, i % 2 ? base + 5 * PG : NULL, o,
				       5 * PG, 1, m.store + 5 * PG, 0};
	race(rs, NTHREADS);
	pthread_barrier_destroy(&bar);
	for (int i = 0; i < 8; i++)
		if (m.reads[i] != (i == 5 ? 1 : 0))
			FAIL("page %d read %d times", i, m.reads[i]);
	CHECK_EQ(m.read_bytes, PG);
	settle(o, 5 * PG, PG);
	CHECK_EQ(ostat(o).resident_pages, 1);
	vmo_space_destroy(sp);
	vmo_unref(o);
	vmo_pool_destroy(p);
	mp_free(&m);
}

/* --------------------------------------------------------- read errors */

TEST(read_error_vmo_read_eio)
{
	int errs[2] = {EIO, ENOSPC};
	for (int k = 0; k < 2; k++) {
		struct mp m;
		mp_init(&m, 8, 8);
		m.fail_page = 3;
		m.fail_times = -1;
		m.fail_err = errs[k];
		vmo_pool_t *p = new_pool();
		vmo_t *o;
		OK(vmo_create_pager(p, 8 * PG, &ops_ro, &m, 0, &o));
		unsigned char b[3 * PG];
		CHECK_ERR(vmo_read(o, 3 * PG, b, PG), -EIO);
		CHECK_ERR(vmo_read(o, 3 * PG + 100, b, 1), -EIO);
		/* spanning pages 2..4: nothing copied from page 3 on */
		memset(b, 0xEE, sizeof b);
		CHECK_ERR(vmo_read(o, 2 * PG, b, 3 * PG), -EIO);
		for (size_t i = PG; i < 3 * PG; i++)
			if (b[i] != 0xEE)
				FAIL("byte %zu of a failed page was copied", i);
		/* other pages still work */
		OK(vmo_read(o, 2 * PG, b, PG));
		CHECK_MEM(b, m.store + 2 * PG, PG);
		OK(vmo_read(o, 4 * PG, b, 2 * PG));
		CHECK_MEM(b, m.store + 4 * PG, 2 * PG);
		vmo_stats_t s = ostat(o);
		CHECK(m.read_fails >= 3);
		CHECK_EQ(s.pager_errors, m.read_fails);
		CHECK_EQ(s.resident_pages, 3); /* pages 2, 4, 5 */
		vmo_unref(o);
		vmo_pool_destroy(p);
		mp_free(&m);
	}
}

static sigjmp_buf bus_jb;
static void *volatile bus_addr;
static volatile int bus_signo;

static void bus_handler(int sig, siginfo_t *si, void *uc)
{
	bus_signo = sig;
	bus_addr = si->si_addr;
	siglongjmp(bus_jb, 1);
}

TEST(read_error_fault_sigbus)
{
	struct mp m;
	mp_init(&m, 8, 9);
	m.fail_page = 2;
	m.fail_times = -1;
	m.fail_err = ENOSPC;
	vmo_pool_t *p = new_pool();
	/* one handler thread: it has finished the failed fault's
	 * bookkeeping before it serves the later faults below */
	vmo_space_options_t so;
	memset(&so, 0, sizeof so);
	so.size = sizeof so;
	so.handler_threads = 1;
	vmo_space_t *sp;
	OK(vmo_space_create(p, &so, &sp));
	vmo_t *o;
	OK(vmo_create_pager(p, 8 * PG, &ops_ro, &m, 0, &o));
	volatile unsigned char *v = map_random(sp, o, 0, 8 * PG, PROT_READ);
	CHECK_EQ(v[0], m.store[0]);

	struct sigaction sa, old;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = bus_handler;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	CHECK_EQ(sigaction(SIGBUS, &sa, &old), 0);
	if (sigsetjmp(bus_jb, 1) == 0) {
		unsigned char c = v[2 * PG];
		FAIL("read of a failed page returned %u instead of SIGBUS", c);
	}
	CHECK_EQ(sigaction(SIGBUS, &old, NULL), 0);
	CHECK_EQ(bus_signo, SIGBUS);
	CHECK(bus_addr == (void *)(v + 2 * PG));

	/* other pages still work */
	CHECK_MEM((const void *)(v + 3 * PG), m.store + 3 * PG, 5 * PG);
	CHECK_MEM((const void *)(v + PG), m.store + PG, PG);
	settle(o, 0, 2 * PG);
	settle(o, 3 * PG, 5 * PG);
	vmo_stats_t s = ostat(o);
	CHECK_EQ(m.read_fails, 1);
	CHECK_EQ(s.pager_errors, 1);
	CHECK_EQ(s.resident_pages, 7);
	vmo_space_stats_t ss = sstat(sp);
	CHECK_EQ(ss.errors, 1);
	CHECK_EQ(ss.sigbus, 1);
	vmo_space_destroy(sp);
	vmo_unref(o);
	vmo_pool_destroy(p);
	mp_free(&m);
}

TEST(read_error_retried_by_next_read)
{
	struct mp m;
	mp_init(&m, 4, 10);
	m.fail_page = 1;
	m.fail_times = 1; /* only the first read fails */
	m.fail_err = EIO;
	vmo_pool_t *p = new_pool();
	vmo_space_t *sp = new_space_1page(p);
	vmo_t *o;
	OK(vmo_create_pager(p, 4 * PG, &ops_ro, &m, 0, &o));
	unsigned char b[PG];
	CHECK_ERR(vmo_read(o, PG + 5, b, 10), -EIO);
	CHECK_EQ(m.reads[1], 1);
	CHECK_EQ(ostat(o).resident_pages, 0);
	OK(vmo_read(o, PG, b, PG));
	CHECK_MEM(b, m.store + PG, PG);
	CHECK_EQ(m.reads[1], 2);
	vmo_stats_t s = ostat(o);
	CHECK_EQ(s.pager_errors, 1);
	CHECK_EQ(s.resident_pages, 1);
	vmo_unref(o);
	vmo_space_destroy(sp);
	vmo_pool_destroy(p);
	mp_free(&m);
}

TEST(read_error_then_fault_retries_pager)
{
	struct mp m;
	mp_init(&m, 4, 11);
	m.fail_page = 2;
	m.fail_times = 1;
	m.fail_err = EIO;
	vmo_pool_t *p = new_pool();
	vmo_space_t *sp = new_space_1page(p);
	vmo_t *o;
	OK(vmo_create_pager(p, 4 * PG, &ops_ro, &m, 0, &o));
	unsigned char b[PG];
	CHECK_ERR(vmo_read(o, 2 * PG, b, PG), -EIO);
	void *a = NULL;
	OK(vmo_map(sp, o, 0, 4 * PG, PROT_READ, 0, &a));
	CHECK_MEM((unsigned char *)a + 2 * PG, m.store + 2 * PG, PG);
	CHECK_EQ(m.reads[2], 2);
	vmo_space_destroy(sp);
	vmo_unref(o);
	vmo_pool_destroy(p);
	mp_free(&m);
}

TEST(read_error_vmo_write_writes_nothing)
{
	struct mp m;
	mp_init(&m, 8, 12);
	m.fail_page = 1;
	m.fail_times = -1;
	m.fail_err = EIO;
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	OK(vmo_create_pager(p, 8 * PG, &ops_rw, &m, 0, &o));
	unsigned char w[PG];
	memset(w, 0x6B, PG);
	/* partial writes of pages 1 and 2; page 1 cannot be filled */
	CHECK_ERR(vmo_write(o, PG + 10, w, PG), -EIO);
	CHECK_ERR(vmo_write(o, 2 * PG - 1, w, 2), -EIO);
	vmo_stats_t s = ostat(o);
	CHECK_EQ(s.dirty_pages, 0);
	CHECK_EQ(pstat(p).dirty_pages, 0);
	unsigned char b[PG];
	OK(vmo_read(o, 2 * PG, b, PG));
	CHECK_MEM(b, m.store + 2 * PG, PG); /* page 2 unchanged */
	OK(vmo_sync(o, 0, 8 * PG));
	CHECK_EQ(mp_nwr(&m), 0);
	/* a whole-page write needs no fill, so it works */
	OK(vmo_write(o, PG, w, PG));
	OK(vmo_read(o, PG, b, PG));
	CHECK_MEM(b, w, PG);
	vmo_unref(o);
	vmo_pool_destroy(p);
	mp_free(&m);
}

TEST(populate_read_error_eio_nothing_mapped)
{
	struct mp m;
	mp_init(&m, 8, 13);
	m.fail_page = 5;
	m.fail_times = -1;
	m.fail_err = EIO;
	vmo_pool_t *p = new_pool();
	vmo_space_t *sp = new_space(p);
	vmo_t *o;
	OK(vmo_create_pager(p, 8 * PG, &ops_ro, &m, 0, &o));
	void *a = (void *)(uintptr_t)0x1234000;
	CHECK_ERR(vmo_map(sp, o, 0, 8 * PG, PROT_READ, VMO_MAP_POPULATE, &a),
		  -EIO);
	CHECK(a == (void *)(uintptr_t)0x1234000);
	CHECK_EQ(sstat(sp).mappings, 0);
	CHECK_EQ(ostat(o).mappings, 0);
	/* the failed map left no reference behind */
	vmo_unref(o);
	CHECK_EQ(m.release_calls, 1);
	CHECK_EQ(pstat(p).objects, 0);
	vmo_space_destroy(sp);
	vmo_pool_destroy(p);
	mp_free(&m);
}

/* -------------------------------------------------- read-only pagers */

TEST(no_write_callback_is_read_only)
{
	struct mp m;
	mp_init(&m, 4, 14);
	vmo_pool_t *p = new_pool();
	vmo_space_t *sp = new_space(p);
	vmo_t *o;
	OK(vmo_create_pager(p, 4 * PG, &ops_ro, &m, 0, &o));
	unsigned char b[PG];
	memset(b, 1, PG);
	CHECK_ERR(vmo_write(o, 0, b, 1), -EACCES);
	CHECK_ERR(vmo_write(o, PG, b, PG), -EACCES);
	void *a = NULL;
	CHECK_ERR(vmo_map(sp, o, 0, 4 * PG, PROT_READ | PROT_WRITE, 0, &a),
		  -EACCES);
	CHECK_ERR(vmo_map(sp, o, 0, PG, PROT_WRITE, 0, &a), -EACCES);
	CHECK_EQ(ostat(o).mappings, 0);
	OK(vmo_map(sp, o, 0, 4 * PG, PROT_READ, 0, &a));
	CHECK_MEM(a, m.store, 4 * PG);
	CHECK_ERR(vmo_protect(sp, a, PG, PROT_READ | PROT_WRITE), -EACCES);
	OK(vmo_sync(o, 0, 4 * PG));
	vmo_stats_t s = ostat(o);
	CHECK_EQ(s.dirty_pages, 0);
	CHECK_EQ(s.pager_writes, 0);
	OK(vmo_read(o, 0, b, PG));
	CHECK_MEM(b, m.store, PG);
	vmo_space_destroy(sp);
	vmo_unref(o);
	vmo_pool_destroy(p);
	mp_free(&m);
}

/* ----------------------------------------------------------- write-back */

/* Pages written back, as a bitmask, with each page at most once. */
static uint64_t written_mask(struct mp *m)
{
	uint64_t mask = 0;
	CHECK(m->npages <= 64);
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->npages; i++) {
		if (m->written[i] > 1)
			FAIL("page %zu written back %d times", i, m->written[i]);
		if (m->written[i])
			mask |= 1ull << i;
	}
	pthread_mutex_unlock(&m->lock);
	return mask;
}

TEST(sync_writes_exactly_dirty_pages)
{
	struct mp m;
	mp_init(&m, 16, 15);
	unsigned char *model = malloc(16 * PG);
	memcpy(model, m.store, 16 * PG);
	vmo_pool_t *p = new_pool();
	vmo_space_t *sp = new_space(p);
	vmo_t *o;
	OK(vmo_create_pager(p, 16 * PG, &ops_rw, &m, 0, &o));
	unsigned char w[PG];
	pattern_fill(w, PG, 77, 0);
	OK(vmo_write(o, PG, w, PG)); /* page 1, whole */
	memcpy(model + PG, w, PG);
	OK(vmo_write(o, 5 * PG + 100, "five", 4)); /* page 5, partial */
	memcpy(model + 5 * PG + 100, "five", 4);
	void *a = NULL;
	OK(vmo_map(sp, o, 0, 16 * PG, PROT_READ | PROT_WRITE, 0, &a));
	volatile unsigned char *v = a;
	(void)v[9 * PG + 1]; /* read only */
	(void)v[PG];         /* read a dirty page */
	v[12 * PG + 7] = 0xC3; /* page 12, through the mapping */
	model[12 * PG + 7] = 0xC3;
	CHECK_EQ(mp_nwr(&m), 0);
	OK(vmo_sync(o, 0, 16 * PG));
	CHECK_EQ(written_mask(&m), (1ull << 1) | (1ull << 5) | (1ull << 12));
	CHECK_MEM(m.store, model, 16 * PG);
	vmo_stats_t s = ostat(o);
	CHECK_EQ(s.dirty_pages, 0);
	CHECK_EQ(s.pager_write_bytes, 3 * PG);
	CHECK_EQ(s.pager_writes, (uint64_t)mp_nwr(&m));
	/* clean now: a second sync writes nothing */
	int n = mp_nwr(&m);
	OK(vmo_sync(o, 0, 16 * PG));
	CHECK_EQ(mp_nwr(&m), n);
	/* a new write through the mapping is caught again */
	v[9 * PG + 2] = 0x19;
	model[9 * PG + 2] = 0x19;
	OK(vmo_sync(o, 0, 16 * PG));
	CHECK_EQ(mp_nwr(&m), n + 1);
	CHECK_EQ(m.wr[n].off, 9 * PG);
	CHECK_EQ(m.wr[n].len, PG);
	CHECK_MEM(m.store, model, 16 * PG);
	free(model);
	vmo_space_destroy(sp);
	vmo_unref(o);
	vmo_pool_destroy(p);
	mp_free(&m);
}

/*
 * A page made resident by vmo_read (or written back by an earlier sync)
 * and never touched through a mapping is clean: a mapping that merely
 * covers it (writable or not) must not make vmo_sync write it back.
 * For a file this matters: writing back a clean page overwrites changes
 * made to the file by others since the page was read.
 */
TEST(sync_skips_clean_pages_never_touched_through_mapping)
{
	struct mp m;
	mp_init(&m, 16, 27);
	vmo_pool_t *p = new_pool();
	vmo_space_t *sp = new_space(p);
	vmo_t *o;
	OK(vmo_create_pager(p, 16 * PG, &ops_rw, &m, 0, &o));
	void *a = NULL, *b = NULL;
	OK(vmo_map(sp, o, 0, 8 * PG, PROT_READ | PROT_WRITE, 0, &a));
	OK(vmo_map(sp, o, 8 * PG, 8 * PG, PROT_READ, 0, &b));
	unsigned char buf[PG];
	OK(vmo_read(o, 3 * PG, buf, PG));  /* under the writable mapping */
	OK(vmo_read(o, 12 * PG, buf, PG)); /* under the read-only one */
	CHECK_EQ(ostat(o).dirty_pages, 0);
	OK(vmo_sync(o, 0, 16 * PG));
	if (mp_nwr(&m))
		FAIL("vmo_sync wrote back clean pages (mask %#" PRIx64
		     ") that were never written",
		     written_mask(&m));
	CHECK_EQ(ostat(o).pager_writes, 0);
	vmo_space_destroy(sp);
	vmo_unref(o);
	vmo_pool_destroy(p);
	mp_free(&m);
}

/*
 * Once a fault has returned to the faulting thread the page is resident:
 * vmo_stats must already count it (resident_pages, pages_filled), for
 * pager-backed and anonymous objects alike.
 */
TEST(stats_current_when_fault_returns)
{
	struct mp m;
	mp_init(&m, 256, 28);
	vmo_pool_t *p = new_pool();
	vmo_space_t *sp = new_space(p);
	vmo_t *objs[2];
	const int np = 256;
	OK(vmo_create_pager(p, np * PG, &ops_ro, &m, 0, &objs[0]));
	OK(vmo_create(p, np * PG, 0, &objs[1]));
	int stale[2] = {0, 0}, first[2] = {-1, -1};
	for (int k = 0; k < 2; k++) {
		vmo_t *o = objs[k];
		volatile unsigned char *v =
			map_random(sp, o, 0, np * PG, PROT_READ);
		for (int i = 0; i < np; i++) {
			(void)v[i * PG];
			vmo_stats_t s = ostat(o);
			if (s.resident_pages != (uint64_t)i + 1 ||
			    s.pages_filled != (uint64_t)i + 1) {
				stale[k]++;
				if (first[k] < 0)
					first[k] = i;
			}
		}
		OK(vmo_unmap(sp, (void *)v, np * PG));
	}
	if (stale[0] || stale[1])
		FAIL("after a returned fault vmo_stats did not count the page "
		     "yet: pager object %d of %d faults (first page %d), "
		     "anonymous object %d of %d (first page %d)",
		     stale[0], np, first[0], stale[1], np, first[1]);
	vmo_space_destroy(sp);
	vmo_unref(objs[0]);
	vmo_unref(objs[1]);
	vmo_pool_destroy(p);
	mp_free(&m);
}

TEST(sync_of_clean_object_calls_nothing)
{
	struct mp m;
	mp_init(&m, 8, 16);
	vmo_pool_t *p = new_pool();
	vmo_space_t *sp = new_space(p);
	vmo_t *o;
	OK(vmo_create_pager(p, 8 * PG, &ops_rw, &m, 0, &o));
	void *a = NULL;
	OK(vmo_map(sp, o, 0, 8 * PG, PROT_READ | PROT_WRITE, 0, &a));
	CHECK_MEM(a, m.store, 8 * PG); /* read faults only */
	unsigned char b[PG];
	OK(vmo_read(o, 0, b, PG));
	OK(vmo_sync(o, 0, 8 * PG));
	CHECK_EQ(mp_nwr(&m), 0);
	CHECK_EQ(ostat(o).pager_writes, 0);
	vmo_space_destroy(sp);
	CHECK_EQ(mp_nwr(&m), 0);
	vmo_unref(o);
	CHECK_EQ(mp_nwr(&m), 0); /* nor at release */
	CHECK_EQ(m.release_calls, 1);
	vmo_pool_destroy(p);
	mp_free(&m);
}

TEST(sync_subrange_writes_only_that_range)
{
	struct mp m;
	mp_init(&m, 16, 17);
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	OK(vmo_create_pager(p, 16 * PG, &ops_rw, &m, 0, &o));
	OK(vmo_write(o, 2 * PG, "two", 3));
	OK(vmo_write(o, 10 * PG, "ten", 3));
	OK(vmo_sync(o, 0, 8 * PG));
	CHECK_EQ(written_mask(&m), 1ull << 2);
	CHECK_EQ(ostat(o).dirty_pages, 1);
	OK(vmo_sync(o, 8 * PG, 8 * PG));
	CHECK_EQ(written_mask(&m), (1ull << 2) | (1ull << 10));
	CHECK_EQ(ostat(o).dirty_pages, 0);
	CHECK_MEM(m.store + 10 * PG, "ten", 3);
	vmo_unref(o);
	vmo_pool_destroy(p);
	mp_free(&m);
}

TEST(failing_write_keeps_page_dirty)
{
	struct mp m;
	mp_init(&m, 8, 18);
	m.write_fail = EIO;
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	OK(vmo_create_pager(p, 8 * PG, &ops_rw, &m, 0, &o));
	OK(vmo_write(o, 3 * PG + 1, "keep", 4));
	CHECK_ERR(vmo_sync(o, 0, 8 * PG), -EIO);
	vmo_stats_t s = ostat(o);
	CHECK_EQ(s.dirty_pages, 1);
	CHECK_EQ(s.resident_pages, 1);
	CHECK_EQ(s.pager_errors, 1);
	CHECK_EQ(pstat(p).dirty_pages, 1);
	char b[4];
	OK(vmo_read(o, 3 * PG + 1, b, 4));
	CHECK_MEM(b, "keep", 4);
	/* -ENOSPC from the callback is -EIO too */
	m.write_fail = ENOSPC;
	CHECK_ERR(vmo_sync(o, 0, 8 * PG), -EIO);
	CHECK_EQ(ostat(o).dirty_pages, 1);
	/* fixed: the next sync writes it */
	m.write_fail = 0;
	OK(vmo_sync(o, 0, 8 * PG));
	CHECK_EQ(written_mask(&m), 1ull << 3);
	CHECK_MEM(m.store + 3 * PG + 1, "keep", 4);
	s = ostat(o);
	CHECK_EQ(s.dirty_pages, 0);
	CHECK_EQ(s.pager_errors, 2);
	CHECK_EQ(pstat(p).dirty_pages, 0);
	vmo_unref(o);
	vmo_pool_destroy(p);
	mp_free(&m);
}

TEST(failing_write_decommit_keeps_data)
{
	struct mp m;
	mp_init(&m, 8, 19);
	m.write_fail = EIO;
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	OK(vmo_create_pager(p, 8 * PG, &ops_rw, &m, 0, &o));
	OK(vmo_write(o, 4 * PG, "data", 4));
	CHECK_ERR(vmo_decommit(o, 0, 8 * PG), -EIO);
	vmo_stats_t s = ostat(o);
	CHECK_EQ(s.dirty_pages, 1);
	CHECK_EQ(s.resident_pages, 1);
	char b[4];
	OK(vmo_read(o, 4 * PG, b, 4));
	CHECK_MEM(b, "data", 4);
	m.write_fail = 0;
	OK(vmo_decommit(o, 0, 8 * PG));
	CHECK_EQ(ostat(o).resident_pages, 0);
	CHECK_MEM(m.store + 4 * PG, "data", 4);
	vmo_unref(o);
	vmo_pool_destroy(p);
	mp_free(&m);
}

TEST(decommit_writes_back_then_refetches)
{
	struct mp m;
	mp_init(&m, 8, 20);
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	OK(vmo_create_pager(p, 8 * PG, &ops_rw, &m, 0, &o));
	OK(vmo_write(o, 2 * PG + 8, "refetch", 7));
	CHECK_EQ(m.reads[2], 1);
	OK(vmo_decommit(o, 0, 8 * PG));
	CHECK_EQ(written_mask(&m), 1ull << 2);
	vmo_stats_t s = ostat(o);
	CHECK_EQ(s.resident_pages, 0);
	CHECK_EQ(s.decommitted_pages, 1);
	char b[7];
	OK(vmo_read(o, 2 * PG + 8, b, 7));
	CHECK_MEM(b, "refetch", 7);
	CHECK_EQ(m.reads[2], 2); /* came back from the pager */
	vmo_unref(o);
	vmo_pool_destroy(p);
	mp_free(&m);
}

TEST(writeback_error_at_release_counted)
{
	struct mp m;
	mp_init(&m, 4, 21);
	m.write_fail = EIO;
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	OK(vmo_create_pager(p, 4 * PG, &ops_rw, &m, 0, &o));
	OK(vmo_write(o, 0, "x", 1));
	vmo_unref(o);
	CHECK_EQ(m.write_fails, 1);
	CHECK_EQ(pstat(p).writeback_errors, 1);
	CHECK_EQ(pstat(p).objects, 0);
	CHECK_EQ(pstat(p).dirty_pages, 0);
	CHECK_EQ(m.release_calls, 1);
	vmo_pool_destroy(p);
	mp_free(&m);
}

/* ------------------------------------------------------------- release */

TEST(release_once_after_final_writeback_unmap)
{
	struct mp m;
	mp_init(&m, 8, 22);
	vmo_pool_t *p = new_pool();
	struct serial ser;
	serial_init(&ser, p);
	vmo_space_t *sp = ser.sp;
	vmo_t *o;
	OK(vmo_create_pager(p, 8 * PG, &ops_rw, &m, 0, &o));
	void *a = NULL;
	OK(vmo_map(sp, o, 0, 8 * PG, PROT_READ | PROT_WRITE, 0, &a));
	unsigned char *v = a;
	v[2 * PG + 2] = 0x22;
	OK(vmo_write(o, 4 * PG, "four", 4));
	vmo_ref(o);
	vmo_unref(o);
	vmo_unref(o); /* the creator's: the mapping still holds one */
	CHECK_EQ(m.release_calls, 0);
	CHECK_EQ(v[4 * PG + 1], 'o');
	drain(&ser);
	OK(vmo_unmap(sp, a, 8 * PG)); /* last reference */
	CHECK_EQ(m.release_calls, 1);
	CHECK_EQ(written_mask(&m), (1ull << 2) | (1ull << 4));
	CHECK(m.last_write_seq < m.release_seq);
	CHECK_EQ(m.store[2 * PG + 2], 0x22);
	CHECK_MEM(m.store + 4 * PG, "four", 4);
	serial_fini(&ser);
	CHECK_EQ(m.release_calls, 1);
	CHECK_EQ(pstat(p).objects, 0);
	vmo_pool_destroy(p);
	mp_free(&m);
}

TEST(release_once_after_final_writeback_space_destroy)
{
	struct mp m;
	mp_init(&m, 8, 23);
	vmo_pool_t *p = new_pool();
	vmo_space_t *sp = new_space(p);
	vmo_t *o;
	OK(vmo_create_pager(p, 8 * PG, &ops_rw, &m, 0, &o));
	void *a = NULL, *b = NULL;
	OK(vmo_map(sp, o, 0, 4 * PG, PROT_READ | PROT_WRITE, 0, &a));
	OK(vmo_map(sp, o, 4 * PG, 4 * PG, PROT_READ | PROT_WRITE, 0, &b));
	((unsigned char *)a)[PG] = 0x11;
	((unsigned char *)b)[PG] = 0x55;
	vmo_unref(o);
	CHECK_EQ(m.release_calls, 0);
	OK(vmo_unmap(sp, a, 4 * PG));
	CHECK_EQ(m.release_calls, 0); /* the second mapping holds it */
	vmo_space_destroy(sp);
	CHECK_EQ(m.release_calls, 1);
	CHECK_EQ(written_mask(&m), (1ull << 1) | (1ull << 5));
	CHECK(m.last_write_seq < m.release_seq);
	CHECK_EQ(m.store[PG], 0x11);
	CHECK_EQ(m.store[5 * PG], 0x55);
	vmo_pool_destroy(p);
	mp_free(&m);
}

/* vmo_space_destroy with several mappings, each holding the last
 * reference of a different object: every object is written back and
 * released exactly once. */
TEST(release_once_each_when_space_destroy_drops_several_mappings)
{
	enum { N = 5 };
	struct mp m[N];
	vmo_pool_t *p = new_pool();
	vmo_space_t *sp = new_space(p);
	for (int i = 0; i < N; i++) {
		mp_init(&m[i], 4, 30 + (uint64_t)i);
		vmo_t *o;
		OK(vmo_create_pager(p, 4 * PG, &ops_rw, &m[i], 0, &o));
		void *a = NULL;
		OK(vmo_map(sp, o, 0, 4 * PG, PROT_READ | PROT_WRITE, 0, &a));
		((unsigned char *)a)[(size_t)(i % 4) * PG] = (unsigned char)(0xA0 + i);
		vmo_unref(o); /* the mapping holds the last reference */
	}
	CHECK_EQ(pstat(p).objects, N);
	vmo_space_destroy(sp);
	for (int i = 0; i < N; i++) {
		if (m[i].release_calls != 1)
			FAIL("object %d released %d times", i,
			     m[i].release_calls);
		CHECK_EQ(written_mask(&m[i]), 1ull << (i % 4));
		CHECK_EQ(m[i].store[(size_t)(i % 4) * PG], 0xA0 + i);
	}
	CHECK_EQ(pstat(p).objects, 0);
	vmo_pool_destroy(p);
	for (int i = 0; i < N; i++)
		mp_free(&m[i]);
}

/*
 * When vmo_unmap drops the last reference (the caller holds none), the
 * final write-back and release have run by the time it returns: the
 * caller may then free the pager's context, or exit.  A handler thread
 * must not hold on to the object after it has resolved the fault.
 * (Repeated because the window is short.)
 */
TEST(release_done_when_last_unmap_returns)
{
	vmo_pool_t *p = new_pool();
	vmo_space_t *sp = new_space(p);
	int late[2] = {0, 0};
	const int rounds[2] = {100, 200};
	/* case 0: a sequential fault whose cluster is still being filled
	 * after the faulting thread was woken; case 1: a MINOR fault */
	for (int c = 0; c < 2; c++) {
		size_t np = c == 0 ? 512 : 4;
		for (int i = 0; i < rounds[c]; i++) {
			struct mp *m = malloc(sizeof *m);
			mp_init(m, np, 40);
			vmo_t *o;
			OK(vmo_create_pager(p, np * PG, &ops_rw, m, 0, &o));
			if (c == 1)
				OK(vmo_write(o, PG, "r", 1));
			void *a = NULL;
			OK(vmo_map(sp, o, 0, np * PG, PROT_READ | PROT_WRITE,
				   0, &a));
			if (c == 0)
				OK(vmo_advise(sp, a, np * PG,
					      VMO_ADV_SEQUENTIAL));
			(void)((volatile unsigned char *)a)[c == 0 ? 0 : PG];
			vmo_unref(o);
			OK(vmo_unmap(sp, a, np * PG));
			if (__atomic_load_n(&m->release_calls,
					    __ATOMIC_SEQ_CST) != 1)
				late[c]++;
			/* let a late release finish before m goes away */
			while (__atomic_load_n(&m->release_calls,
					       __ATOMIC_SEQ_CST) != 1)
				sched_yield();
			pthread_mutex_lock(&m->lock);
			pthread_mutex_unlock(&m->lock);
			mp_free(m);
			free(m);
		}
	}
	if (late[0] || late[1])
		FAIL("vmo_unmap of the last mapping returned before write-back "
		     "+ release ran (a handler thread still held the object): "
		     "%d of %d rounds after a sequential fault, %d of %d after "
		     "a MINOR fault",
		     late[0], rounds[0], late[1], rounds[1]);
	vmo_space_destroy(sp);
	vmo_pool_destroy(p);
}

TEST(release_once_read_only_pager)
{
	struct mp m;
	mp_init(&m, 4, 24);
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	OK(vmo_create_pager(p, 4 * PG, &ops_ro, &m, 0, &o));
	unsigned char b[PG];
	OK(vmo_read(o, 0, b, PG));
	vmo_ref(o);
	vmo_ref(o);
	vmo_unref(o);
	vmo_unref(o);
	CHECK_EQ(m.release_calls, 0);
	vmo_unref(o);
	CHECK_EQ(m.release_calls, 1);
	CHECK_EQ(pstat(p).objects, 0);
	vmo_pool_destroy(p);
	mp_free(&m);
}

TEST(release_may_be_null)
{
	struct mp m;
	mp_init(&m, 4, 25);
	vmo_pager_ops_t ops = {mp_read, mp_write, NULL};
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	OK(vmo_create_pager(p, 4 * PG, &ops, &m, 0, &o));
	OK(vmo_write(o, PG, "n", 1));
	vmo_unref(o);
	CHECK_EQ(written_mask(&m), 1ull << 1);
	CHECK_EQ(pstat(p).objects, 0);
	vmo_pool_destroy(p);
	mp_free(&m);
}

/*
 * vmo.h: "Pager callbacks run ... with no library lock held".  When the
 * last reference goes in vmo_unmap, the final write-back and release run
 * in the caller's thread; another thread must be able to use the same
 * space meanwhile (a probe thread calls vmo_space_stats and must finish
 * while the callback waits for it).
 */
struct probe {
	vmo_space_t *sp;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	int done;
	pthread_t t[2];
	int nt;
	int blocked; /* callbacks whose probe did not finish in time */
};
static struct probe probe;

static void *probe_main(void *arg)
{
	vmo_space_stats_t st;
	memset(&st, 0, sizeof st);
	st.size = sizeof st;
	vmo_space_stats(probe.sp, &st);
	pthread_mutex_lock(&probe.lock);
	probe.done++;
	pthread_cond_broadcast(&probe.cv);
	pthread_mutex_unlock(&probe.lock);
	return NULL;
}

static void probe_hook(struct mp *m)
{
	if (probe.nt >= 2)
		return;
	int want = probe.nt + 1;
	CHECK_EQ(pthread_create(&probe.t[probe.nt++], NULL, probe_main, NULL),
		 0);
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 3; /* a deadlock breaker, not a timing assertion */
	pthread_mutex_lock(&probe.lock);
	while (probe.done < want)
		if (pthread_cond_timedwait(&probe.cv, &probe.lock, &dl))
			break;
	if (probe.done < want)
		probe.blocked++;
	pthread_mutex_unlock(&probe.lock);
}

TEST(callbacks_at_final_unmap_hold_no_space_lock)
{
	struct mp m;
	mp_init(&m, 4, 26);
	vmo_pool_t *p = new_pool();
	struct serial ser;
	serial_init(&ser, p);
	vmo_space_t *sp = ser.sp;
	memset(&probe, 0, sizeof probe);
	pthread_mutex_init(&probe.lock, NULL);
	pthread_cond_init(&probe.cv, NULL);
	probe.sp = sp;
	vmo_t *o;
	OK(vmo_create_pager(p, 4 * PG, &ops_rw, &m, 0, &o));
	void *a = NULL;
	OK(vmo_map(sp, o, 0, 4 * PG, PROT_READ | PROT_WRITE, 0, &a));
	((unsigned char *)a)[0] = 1;
	vmo_unref(o);
	drain(&ser);
	m.hook = probe_hook;
	OK(vmo_unmap(sp, a, 4 * PG)); /* write-back + release run here */
	for (int i = 0; i < probe.nt; i++)
		pthread_join(probe.t[i], NULL);
	CHECK_EQ(m.release_calls, 1);
	CHECK_EQ(probe.nt, 2);
	if (probe.blocked)
		FAIL("%d of 2 pager callbacks run by vmo_unmap held the space "
		     "lock (vmo_space_stats on the same space blocked)",
		     probe.blocked);
	serial_fini(&ser);
	vmo_pool_destroy(p);
	mp_free(&m);
}

TEST_MAIN()
