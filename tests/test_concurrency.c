/*
 * test_concurrency.c — many threads at once: faults on the same and on
 * different pages, two spaces on one object, map / unmap / decommit /
 * vmo_read / vmo_write / vmo_sync racing faults.  Every test checks page
 * contents and counters at the end, never timing.  Also built and run
 * under ThreadSanitizer (make tsan), so the test code itself is race-free:
 * threads share data through joins, barriers and atomics only.
 */
#include "testlib.h"

#include <pthread.h>
#include <setjmp.h>

#define NTHREADS 8

/* ------------------------------------------------------------- helpers */

static uint64_t handled(const vmo_space_stats_t *st)
{
	return st->faults_missing + st->faults_minor + st->faults_wp;
}

static uint64_t lat_sum(const vmo_space_stats_t *st)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < VMO_LAT_BUCKETS; i++)
		n += st->latency_ns_log2[i];
	return n;
}

/* A faulting thread is woken before its handler has finished the fault's
 * bookkeeping (fill_done, counters).  The latency bucket is recorded last,
 * so once the histogram accounts for every fault the space is quiescent.
 * Bounded (~10 s). */
static void settle(vmo_space_t *sp)
{
	vmo_space_stats_t st = sstat(sp);
	for (int i = 0; i < 10000 && lat_sum(&st) != handled(&st); i++) {
		usleep(1000);
		st = sstat(sp);
	}
}

/* The pattern file's content, computed once per test. */
static unsigned char *pattern_buf(size_t len, uint64_t seed)
{
	unsigned char *b = malloc(len);
	CHECK(b != NULL);
	pattern_fill(b, len, seed, 0);
	return b;
}

typedef void *(*thread_fn)(void *);

static void run_threads(size_t n, thread_fn fn, void *args, size_t argsz)
{
	pthread_t th[64];
	CHECK(n <= 64);
	for (size_t i = 0; i < n; i++)
		CHECK_EQ(pthread_create(&th[i], NULL, fn,
					(char *)args + i * argsz),
			 0);
	for (size_t i = 0; i < n; i++)
		CHECK_EQ(pthread_join(th[i], NULL), 0);
}

/* ============================================ same pages, many threads */

struct same_arg {
	int id;
	const unsigned char *map;
	const unsigned char *exp;
	size_t pages;
	pthread_barrier_t *bar;
	int bad; /* first wrong page + 1 */
};

/* Even threads walk the object forwards, odd ones backwards, all starting
 * together: every page is faulted by several threads at once. */
static void *same_main(void *a_)
{
	struct same_arg *a = a_;
	pthread_barrier_wait(a->bar);
	for (size_t k = 0; k < a->pages; k++) {
		size_t pg = (a->id % 2) ? a->pages - 1 - k : k;
		if ((a->id / 2) % 2)
			pg = (pg + a->pages / 2) % a->pages;
		if (memcmp(a->map + pg * PG, a->exp + pg * PG, PG) != 0) {
			a->bad = (int)pg + 1;
			break;
		}
	}
	return NULL;
}

static void same_pages_round(struct env *e, vmo_t *o, size_t pages,
			     const unsigned char *exp, int advice)
{
	void *m = NULL;
	OK(vmo_map(e->sp, o, 0, pages * PG, PROT_READ, 0, &m));
	if (advice != VMO_ADV_NORMAL)
		OK(vmo_advise(e->sp, m, pages * PG, advice));
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, NTHREADS);
	struct same_arg args[NTHREADS];
	for (int i = 0; i < NTHREADS; i++)
		args[i] = (struct same_arg){i, m, exp, pages, &bar, 0};
	run_threads(NTHREADS, same_main, args, sizeof *args);
	pthread_barrier_destroy(&bar);
	for (int i = 0; i < NTHREADS; i++)
		if (args[i].bad)
			FAIL("thread %d (advice %d) saw wrong content in page %d",
			     i, advice, args[i].bad - 1);
	settle(e->sp);
	vmo_stats_t st = ostat(o);
	if (st.pages_filled != pages || st.pager_read_bytes != pages * PG)
		FAIL("advice %d: pages_filled %" PRIu64 ", pager_read_bytes %"
		     PRIu64 ", want %zu and %zu",
		     advice, st.pages_filled, st.pager_read_bytes, pages,
		     pages * PG);
	CHECK(st.pager_reads <= pages);
	CHECK_EQ(st.resident_pages, pages);
	OK(vmo_unmap(e->sp, m, pages * PG));
}

TEST(same_pages_faulted_by_many_threads_are_right_and_filled_once_file)
{
	struct env e = env_new(0);
	size_t pages = 512, len = pages * PG;
	int fd = temp_file(len, 101);
	unsigned char *exp = pattern_buf(len, 101);
	int adv[] = {VMO_ADV_RANDOM, VMO_ADV_NORMAL, VMO_ADV_SEQUENTIAL,
		     VMO_ADV_RANDOM};
	for (size_t r = 0; r < sizeof adv / sizeof *adv; r++) {
		vmo_t *o;
		OK(vmo_create_file(e.pool, fd, 0, len,
				   r % 2 ? VMO_FILE_SHARED : VMO_FILE_PRIVATE,
				   &o));
		same_pages_round(&e, o, pages, exp, adv[r]);
		vmo_unref(o);
	}
	free(exp);
	close(fd);
	env_free(&e);
}

/* A pager that counts read callbacks per page. */
#define CPAGES 256
struct counting_pager {
	int reads[CPAGES];
	uint64_t seed;
};

static int counting_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	struct counting_pager *cp = ctx;
	for (size_t i = 0; i < len / PG; i++)
		__atomic_fetch_add(&cp->reads[off / PG + i], 1,
				   __ATOMIC_RELAXED);
	pattern_fill(buf, len, cp->seed, off);
	return 0;
}

TEST(same_pages_faulted_by_many_threads_call_the_pager_once_per_page)
{
	struct env e = env_new(0);
	unsigned char *exp = pattern_buf(CPAGES * PG, 7);
	int adv[] = {VMO_ADV_RANDOM, VMO_ADV_NORMAL};
	for (size_t r = 0; r < 2; r++) {
		struct counting_pager cp;
		memset(&cp, 0, sizeof cp);
		cp.seed = 7;
		vmo_pager_ops_t ops = {.read = counting_read};
		vmo_t *o;
		OK(vmo_create_pager(e.pool, CPAGES * PG, &ops, &cp, 0, &o));
		same_pages_round(&e, o, CPAGES, exp, adv[r]);
		for (size_t i = 0; i < CPAGES; i++)
			if (__atomic_load_n(&cp.reads[i], __ATOMIC_RELAXED) != 1)
				FAIL("page %zu read %d times by the pager", i,
				     cp.reads[i]);
		vmo_unref(o);
	}
	free(exp);
	env_free(&e);
}

/* ======================================== different pages, many threads */

/* Content thread-written page pg gets (distinct per page and byte). */
static unsigned char wbyte(size_t pg, size_t j, unsigned gen)
{
	return (unsigned char)(pg * 131 + j * 7 + gen * 29 + 1);
}

static void fill_page(unsigned char *p, size_t pg, unsigned gen)
{
	for (size_t j = 0; j < PG; j++)
		p[j] = wbyte(pg, j, gen);
}

struct diff_arg {
	int id, nthreads;
	unsigned char *map;
	size_t pages;
	pthread_barrier_t *bar;
};

/* Thread t owns pages with pg % n == t and writes them in an interleaved
 * order, so neighbouring pages are faulted by different threads at once. */
static void *diff_main(void *a_)
{
	struct diff_arg *a = a_;
	pthread_barrier_wait(a->bar);
	for (size_t pg = (size_t)a->id; pg < a->pages;
	     pg += (size_t)a->nthreads)
		fill_page(a->map + pg * PG, pg, 0);
	return NULL;
}

static void different_pages_case(int kind)
{
	struct env e = env_new(0);
	size_t pages = 1024, len = pages * PG;
	int fd = -1;
	vmo_t *o;
	if (kind == 0) {
		OK(vmo_create(e.pool, len, 0, &o));
	} else {
		fd = temp_file(len, 3);
		OK(vmo_create_file(e.pool, fd, 0, len,
				   kind == 1 ? VMO_FILE_SHARED : VMO_FILE_PRIVATE,
				   &o));
	}
	void *m = NULL;
	OK(vmo_map(e.sp, o, 0, len, PROT_READ | PROT_WRITE, 0, &m));
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, NTHREADS);
	struct diff_arg args[NTHREADS];
	for (int i = 0; i < NTHREADS; i++)
		args[i] = (struct diff_arg){i, NTHREADS, m, pages, &bar};
	run_threads(NTHREADS, diff_main, args, sizeof *args);
	pthread_barrier_destroy(&bar);
	unsigned char *exp = malloc(len), *got = malloc(len);
	for (size_t pg = 0; pg < pages; pg++)
		fill_page(exp + pg * PG, pg, 0);
	OK(vmo_read(o, 0, got, len));
	for (size_t pg = 0; pg < pages; pg++)
		if (memcmp(got + pg * PG, exp + pg * PG, PG))
			FAIL("vmo_read: page %zu differs from what was written",
			     pg);
	CHECK_MEM(m, exp, len);
	if (kind == 1) {
		OK(vmo_sync(o, 0, len));
		CHECK_EQ(pread(fd, got, len, 0), (ssize_t)len);
		for (size_t pg = 0; pg < pages; pg++)
			if (memcmp(got + pg * PG, exp + pg * PG, PG))
				FAIL("file page %zu differs after sync", pg);
		CHECK_EQ(ostat(o).dirty_pages, 0);
	}
	settle(e.sp);
	if (kind != 0)
		CHECK_EQ(ostat(o).pages_filled, pages);
	OK(vmo_unmap(e.sp, m, len));
	vmo_unref(o);
	free(exp);
	free(got);
	if (fd >= 0)
		close(fd);
	env_free(&e);
}

TEST(different_pages_written_by_many_threads_anon)
{
	different_pages_case(0);
}

TEST(different_pages_written_by_many_threads_file_shared)
{
	different_pages_case(1);
}

TEST(different_pages_written_by_many_threads_file_private)
{
	different_pages_case(2);
}

/* ====================================== two spaces, threads in both */

struct two_arg {
	int id;
	unsigned char *map; /* this thread's space's mapping */
	size_t pages;
	pthread_barrier_t *bar;
	int bad;
};

/* Threads 0..3 work in space A, 4..7 in space B.  Phase 1: every thread
 * reads every page (the same pages through two spaces at once); phase 2:
 * each writes its own pages; phase 3: each checks the pages its partner in
 * the other space wrote. */
static void *two_main(void *a_)
{
	struct two_arg *a = a_;
	pthread_barrier_wait(a->bar);
	for (size_t k = 0; k < a->pages && !a->bad; k++) {
		size_t pg = (k * 97 + (size_t)a->id * 13) % a->pages;
		for (size_t j = 1; j < PG; j += 509)
			if (a->map[pg * PG + j] != pattern_byte(33, pg * PG + j)) {
				a->bad = (int)pg + 1;
				break;
			}
	}
	pthread_barrier_wait(a->bar);
	for (size_t pg = (size_t)a->id; pg < a->pages; pg += NTHREADS)
		fill_page(a->map + pg * PG, pg, 0);
	pthread_barrier_wait(a->bar);
	size_t partner = ((size_t)a->id + NTHREADS / 2) % NTHREADS;
	for (size_t pg = partner; pg < a->pages && !a->bad; pg += NTHREADS)
		for (size_t j = 0; j < PG; j += 97)
			if (a->map[pg * PG + j] != wbyte(pg, j, 0)) {
				a->bad = (int)pg + 1;
				break;
			}
	return NULL;
}

TEST(two_spaces_on_one_object_with_threads_in_both)
{
	vmo_pool_t *pool;
	OK(vmo_pool_create(NULL, &pool));
	vmo_space_t *sa, *sb;
	OK(vmo_space_create(pool, NULL, &sa));
	OK(vmo_space_create(pool, NULL, &sb));
	size_t pages = 512, len = pages * PG;
	int fd = temp_file(len, 33);
	vmo_t *o;
	OK(vmo_create_file(pool, fd, 0, len, VMO_FILE_SHARED, &o));
	void *ma = NULL, *mb = NULL;
	OK(vmo_map(sa, o, 0, len, PROT_READ | PROT_WRITE, 0, &ma));
	OK(vmo_map(sb, o, 0, len, PROT_READ | PROT_WRITE, 0, &mb));
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, NTHREADS);
	struct two_arg args[NTHREADS];
	for (int i = 0; i < NTHREADS; i++)
		args[i] = (struct two_arg){i, i < NTHREADS / 2 ? ma : mb, pages,
					   &bar, 0};
	run_threads(NTHREADS, two_main, args, sizeof *args);
	pthread_barrier_destroy(&bar);
	for (int i = 0; i < NTHREADS; i++)
		if (args[i].bad)
			FAIL("thread %d saw wrong content in page %d", i,
			     args[i].bad - 1);
	settle(sa);
	settle(sb);
	CHECK_EQ(ostat(o).pages_filled, pages);
	CHECK_EQ(ostat(o).pager_read_bytes, len);
	OK(vmo_sync(o, 0, len));
	unsigned char *exp = malloc(len), *got = malloc(len);
	for (size_t pg = 0; pg < pages; pg++)
		fill_page(exp + pg * PG, pg, 0);
	CHECK_EQ(pread(fd, got, len, 0), (ssize_t)len);
	CHECK_MEM(got, exp, len);
	CHECK_MEM(ma, exp, len);
	CHECK_MEM(mb, exp, len);
	free(exp);
	free(got);
	OK(vmo_unmap(sa, ma, len));
	OK(vmo_unmap(sb, mb, len));
	vmo_unref(o);
	close(fd);
	vmo_space_destroy(sa);
	vmo_space_destroy(sb);
	vmo_pool_destroy(pool);
}

/* ============================= map / unmap racing faults elsewhere */

struct mu_shared {
	vmo_space_t *sp;
	vmo_t *obj;
	size_t pages;
	const unsigned char *exp;
	int stop; /* atomic */
};

struct mu_reader {
	struct mu_shared *sh;
	unsigned char *map; /* a stable mapping of [off, off+len) */
	size_t off_pg, npg;
	uint64_t rounds;
	int bad;
};

/* Read every page of a stable mapping, check it, drop its page-table
 * entries (so the next round faults again), until the mapper is done. */
static void *mu_reader_main(void *a_)
{
	struct mu_reader *r = a_;
	struct mu_shared *sh = r->sh;
	uint64_t s = (uint64_t)(uintptr_t)r | 1;
	while (!__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE) || r->rounds < 2) {
		for (size_t i = 0; i < r->npg; i++) {
			size_t pg = (i + rnd(&s)) % r->npg;
			if (memcmp(r->map + pg * PG,
				   sh->exp + (r->off_pg + pg) * PG, PG)) {
				r->bad = (int)(r->off_pg + pg) + 1;
				return NULL;
			}
		}
		int e = vmo_advise(sh->sp, r->map, r->npg * PG,
				   VMO_ADV_DONTNEED);
		if (e) {
			r->bad = -1;
			return NULL;
		}
		r->rounds++;
	}
	return NULL;
}

struct mu_mapper {
	struct mu_shared *sh;
	int iters;
	int err;     /* first failing call's result */
	int bad;     /* wrong content seen through a transient mapping */
};

static void *mu_mapper_main(void *a_)
{
	struct mu_mapper *m = a_;
	struct mu_shared *sh = m->sh;
	uint64_t s = 0x9e3779b97f4a7c15ull;
	for (int it = 0; it < m->iters && !m->err && !m->bad; it++) {
		size_t off = rnd(&s) % (sh->pages - 8);
		size_t n = 8 + rnd(&s) % (sh->pages - off - 7);
		if (off + n > sh->pages)
			n = sh->pages - off;
		void *a = NULL;
		unsigned fl = it % 5 == 0 ? VMO_MAP_POPULATE : 0;
		int r = vmo_map(sh->sp, sh->obj, off * PG, n * PG, PROT_READ,
				fl, &a);
		if (r) {
			m->err = r;
			break;
		}
		unsigned char *p = a;
		for (size_t i = 0; i < n; i += 3)
			if (p[i * PG + 5] != sh->exp[(off + i) * PG + 5])
				m->bad = (int)(off + i) + 1;
		if (it % 7 == 0)
			vmo_decommit(sh->obj, off * PG, n * PG); /* refetch */
		/* unmap a middle piece, check the rest, unmap the rest */
		size_t h = 1 + rnd(&s) % (n - 2), hl = 1 + rnd(&s) % (n - h - 1);
		if ((r = vmo_unmap(sh->sp, p + h * PG, hl * PG)) != 0) {
			m->err = r;
			break;
		}
		for (size_t i = 0; i < n; i++)
			if ((i < h || i >= h + hl) &&
			    p[i * PG + 9] != sh->exp[(off + i) * PG + 9])
				m->bad = (int)(off + i) + 1;
		if ((r = vmo_unmap(sh->sp, p, h * PG)) != 0 ||
		    (r = vmo_unmap(sh->sp, p + (h + hl) * PG,
				   (n - h - hl) * PG)) != 0) {
			m->err = r;
			break;
		}
	}
	__atomic_store_n(&sh->stop, 1, __ATOMIC_RELEASE);
	return NULL;
}

struct mu_thread {
	int mapper;
	struct mu_reader r;
	struct mu_mapper m;
};

static void *mu_main(void *a_)
{
	struct mu_thread *t = a_;
	return t->mapper ? mu_mapper_main(&t->m) : mu_reader_main(&t->r);
}

TEST(map_unmap_racing_faults_on_other_mappings_of_the_object)
{
	struct env e = env_new(0);
	size_t pages = 256, len = pages * PG;
	int fd = temp_file(len, 61);
	unsigned char *exp = pattern_buf(len, 61);
	vmo_t *o;
	OK(vmo_create_file(e.pool, fd, 0, len, VMO_FILE_PRIVATE, &o));
	struct mu_shared sh = {e.sp, o, pages, exp, 0};
	enum { NR = 4 };
	struct mu_thread t[NR + 1];
	memset(t, 0, sizeof t);
	size_t offs[NR] = {0, 64, 100, 200}, lens[NR] = {256, 128, 40, 56};
	for (int i = 0; i < NR; i++) {
		void *a = NULL;
		OK(vmo_map(e.sp, o, offs[i] * PG, lens[i] * PG, PROT_READ, 0,
			   &a));
		t[i].r = (struct mu_reader){&sh, a, offs[i], lens[i], 0, 0};
	}
	t[NR].mapper = 1;
	t[NR].m = (struct mu_mapper){&sh, 200, 0, 0};
	run_threads(NR + 1, mu_main, t, sizeof *t);
	CHECK_ERR(t[NR].m.err, 0);
	if (t[NR].m.bad)
		FAIL("mapper saw wrong content in page %d", t[NR].m.bad - 1);
	for (int i = 0; i < NR; i++) {
		if (t[i].r.bad == -1)
			FAIL("reader %d: vmo_advise(DONTNEED) failed", i);
		if (t[i].r.bad)
			FAIL("reader %d saw wrong content in page %d", i,
			     t[i].r.bad - 1);
		CHECK(t[i].r.rounds >= 2);
	}
	settle(e.sp);
	CHECK_EQ(sstat(e.sp).mappings, NR);
	CHECK_EQ(ostat(o).mappings, NR);
	for (int i = 0; i < NR; i++) {
		CHECK_MEM(t[i].r.map, exp + offs[i] * PG, lens[i] * PG);
		OK(vmo_unmap(e.sp, t[i].r.map, lens[i] * PG));
	}
	CHECK_EQ(ostat(o).mappings, 0);
	vmo_unref(o);
	free(exp);
	close(fd);
	env_free(&e);
}

/* ==================== unmap racing faults on the SAME mapping (SIGSEGV) */

static __thread sigjmp_buf segv_jb;
static __thread volatile int segv_armed;

static void segv_handler(int sig, siginfo_t *si, void *uc)
{
	(void)si;
	(void)uc;
	if (segv_armed) {
		segv_armed = 0;
		siglongjmp(segv_jb, 1);
	}
	signal(sig, SIG_DFL); /* not ours: crash for real */
}

#define SU_PAGES 64

/*
 * The readers below race the mapper's mmap/munmap of the very addresses
 * they read: that race is the point of the test (a read either faults or
 * returns the right bytes).  ThreadSanitizer models mmap as a write by the
 * mapping thread and would report every such read, and its annotations to
 * ignore reads do not survive a siglongjmp out of a signal handler; so the
 * load is one instruction of inline assembly, which it does not see.
 */
static inline uint64_t raw_load64(const void *p)
{
	uint64_t v;
#if defined(__x86_64__)
	__asm__ volatile("movq (%1), %0" : "=r"(v) : "r"(p) : "memory");
#elif defined(__aarch64__)
	__asm__ volatile("ldr %0, [%1]" : "=r"(v) : "r"(p) : "memory");
#else
	v = *(const volatile uint64_t *)p;
#endif
	return v;
}

struct su_shared {
	char *base; /* reserved region where the object is mapped FIXED */
	const unsigned char *exp;
	int stop;    /* atomic */
	int running; /* atomic: readers that have done their first load */
};

struct su_reader {
	struct su_shared *sh;
	uint64_t ok, segv, wrong, zero_wrong;
	int first_wrong_pg;
	uint64_t first_wrong, first_want;
};

/* Load 8 bytes at p; 0, or -1 if the load raised SIGSEGV. */
static __attribute__((noinline)) int try_load(const char *p, uint64_t *out)
{
	if (sigsetjmp(segv_jb, 1) == 0) {
		segv_armed = 1;
		*out = raw_load64(p);
		segv_armed = 0;
		return 0;
	}
	return -1;
}

/* Pin the calling thread to one CPU (if there is more than one): the
 * readers then run on a CPU of their own while the mapper maps, which is
 * when the race this test is about happens.  Placement only changes how
 * often the race is tried, never what a read may return. */
static void pin_self(int last)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 2)
		return;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(last ? (int)n - 1 : 0, &set);
	pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void *su_reader_main(void *a_)
{
	struct su_reader *r = a_;
	struct su_shared *sh = r->sh;
	uint64_t s = ((uint64_t)(uintptr_t)r << 1) | 1;
	int first = 1;
	pin_self(1);
	while (!__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE)) {
		size_t pg = rnd(&s) % SU_PAGES, off = (rnd(&s) % (PG / 8)) * 8;
		uint64_t v = 0;
		int f = try_load(sh->base + pg * PG + off, &v);
		if (first) {
			first = 0;
			__atomic_fetch_add(&sh->running, 1, __ATOMIC_RELEASE);
		}
		if (f) {
			r->segv++;
			continue;
		}
		uint64_t want;
		memcpy(&want, sh->exp + pg * PG + off, 8);
		if (v == want) {
			r->ok++;
		} else {
			r->wrong++;
			r->zero_wrong += v == 0;
			if (!r->first_wrong_pg) {
				r->first_wrong_pg = (int)pg + 1;
				r->first_wrong = v;
				r->first_want = want;
			}
		}
	}
	return NULL;
}

/* Runs in a forked child (all state created there): exits 0 when every
 * successful read returned the right bytes. */
static void unmap_same_mapping_child(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = segv_handler;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);

	vmo_pool_t *pool;
	vmo_space_t *sp;
	OK(vmo_pool_create(NULL, &pool));
	OK(vmo_space_create(pool, NULL, &sp));
	size_t len = SU_PAGES * PG;
	int fd = temp_file(len, 73);
	unsigned char *exp = pattern_buf(len, 73);
	vmo_t *o;
	OK(vmo_create_file(pool, fd, 0, len, VMO_FILE_PRIVATE, &o));
	char *base = mmap(NULL, len, PROT_NONE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	CHECK(base != MAP_FAILED);
	struct su_shared sh = {base, exp, 0, 0};
	enum { NR = 2 };
	struct su_reader rd[NR];
	pthread_t th[NR];
	for (int i = 0; i < NR; i++) {
		memset(&rd[i], 0, sizeof rd[i]);
		rd[i].sh = &sh;
		CHECK_EQ(pthread_create(&th[i], NULL, su_reader_main, &rd[i]),
			 0);
	}
	pin_self(0); /* after creating the space and readers: they float */
	while (__atomic_load_n(&sh.running, __ATOMIC_ACQUIRE) < NR)
		sched_yield();
	uint64_t s = 12345;
	for (int it = 0; it < 500; it++) {
		/* every page absent again: each fault must fetch the file */
		OK(vmo_decommit(o, 0, len));
		void *a = base;
		OK(vmo_map(sp, o, 0, len, PROT_READ, VMO_MAP_FIXED, &a));
		CHECK(a == base);
		/* let the readers fault for a while, then unmap in pieces */
		for (volatile int k = 0; k < 30000; k++)
			;
		size_t h = 1 + rnd(&s) % (SU_PAGES - 2);
		OK(vmo_unmap(sp, base + h * PG, PG));
		/* keep the address range ours while nothing is mapped */
		mmap(base + h * PG, PG, PROT_NONE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		OK(vmo_unmap(sp, base, h * PG));
		mmap(base, h * PG, PROT_NONE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		OK(vmo_unmap(sp, base + (h + 1) * PG, len - (h + 1) * PG));
		mmap(base + (h + 1) * PG, len - (h + 1) * PG, PROT_NONE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	}
	__atomic_store_n(&sh.stop, 1, __ATOMIC_RELEASE);
	uint64_t ok = 0, segv = 0, wrong = 0;
	for (int i = 0; i < NR; i++) {
		CHECK_EQ(pthread_join(th[i], NULL), 0);
		ok += rd[i].ok;
		segv += rd[i].segv;
		wrong += rd[i].wrong;
		if (rd[i].wrong)
			fprintf(stderr, "  reader %d: %" PRIu64
					" wrong reads (%" PRIu64 " of them zero), "
					"first in page %d: %#" PRIx64
					" instead of %#" PRIx64 "\n",
				i, rd[i].wrong, rd[i].zero_wrong,
				rd[i].first_wrong_pg - 1, rd[i].first_wrong,
				rd[i].first_want);
	}
	fprintf(stderr, "  (reads: %" PRIu64 " right, %" PRIu64
			" SIGSEGV, %" PRIu64 " wrong)\n",
		ok, segv, wrong);
	CHECK_EQ(wrong, 0);
	CHECK(ok > 0);
	CHECK_EQ(sstat(sp).mappings, 0);
	vmo_unref(o);
	vmo_space_destroy(sp);
	vmo_pool_destroy(pool);
	munmap(base, len);
	free(exp);
	close(fd);
}

TEST(unmap_racing_faults_on_the_same_mapping_never_returns_wrong_data)
{
#if defined(__SANITIZE_THREAD__)
	/* Readers here recover from SIGSEGV with siglongjmp, which
	 * ThreadSanitizer's signal handling does not support (the child
	 * dies or hangs inside the runtime at random).  The release and
	 * ASan runs cover this test; TSan covers the others in this file. */
	printf("  (skipped under ThreadSanitizer)\n");
	return;
#endif
	fflush(NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		alarm(60); /* not inherited from the test's own time limit */
		unmap_same_mapping_child();
		fflush(NULL);
		_exit(0);
	}
	int st = 0;
	CHECK_EQ(waitpid(pid, &st, 0), pid);
	if (WIFSIGNALED(st))
		FAIL("child killed by signal %d%s", WTERMSIG(st),
		     WTERMSIG(st) == SIGALRM ? " (hung for 60 s)" : "");
	CHECK(WIFEXITED(st));
	CHECK_EQ(WEXITSTATUS(st), 0);
}

/* ================= vmo_read / vmo_write racing writes through mappings */

struct rw_arg {
	int id;
	vmo_t *obj;
	unsigned char *map;
	size_t pages;
	int iters;
	int bad, err;
	pthread_barrier_t *bar;
};

/* Threads 0..3 write even pages through the mapping; threads 4..7
 * vmo_write and vmo_read back unaligned pieces of odd pages. */
static void *rw_main(void *a_)
{
	struct rw_arg *a = a_;
	unsigned char buf[1500], back[1500];
	uint64_t s = (uint64_t)a->id * 7919 + 1;
	pthread_barrier_wait(a->bar);
	for (int it = 0; it < a->iters; it++) {
		if (a->id < 4) {
			for (size_t pg = (size_t)a->id * 2; pg < a->pages;
			     pg += 8)
				fill_page(a->map + pg * PG, pg, (unsigned)it);
		} else {
			size_t pg = (rnd(&s) % (a->pages / 8)) * 8 +
				    (size_t)(a->id - 4) * 2 + 1;
			size_t off = rnd(&s) % (PG - sizeof buf);
			for (size_t j = 0; j < sizeof buf; j++)
				buf[j] = wbyte(pg, off + j, (unsigned)it + 100);
			int r = vmo_write(a->obj, pg * PG + off, buf, sizeof buf);
			if (!r)
				r = vmo_read(a->obj, pg * PG + off, back,
					     sizeof back);
			if (r) {
				a->err = r;
				return NULL;
			}
			if (memcmp(buf, back, sizeof buf)) {
				a->bad = (int)pg + 1;
				return NULL;
			}
			/* the mapping shows it too (this thread owns pg) */
			if (memcmp(a->map + pg * PG + off, buf, sizeof buf)) {
				a->bad = (int)pg + 1;
				return NULL;
			}
		}
	}
	return NULL;
}

static void read_write_race_case(int file)
{
	struct env e = env_new(0);
	size_t pages = 256, len = pages * PG;
	int fd = -1;
	vmo_t *o;
	if (file) {
		fd = temp_file(len, 5);
		OK(vmo_create_file(e.pool, fd, 0, len, VMO_FILE_SHARED, &o));
	} else {
		OK(vmo_create(e.pool, len, 0, &o));
	}
	void *m = NULL;
	OK(vmo_map(e.sp, o, 0, len, PROT_READ | PROT_WRITE, 0, &m));
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, NTHREADS);
	struct rw_arg args[NTHREADS];
	for (int i = 0; i < NTHREADS; i++)
		args[i] = (struct rw_arg){i, o, m, pages, 20, 0, 0, &bar};
	run_threads(NTHREADS, rw_main, args, sizeof *args);
	pthread_barrier_destroy(&bar);
	for (int i = 0; i < NTHREADS; i++) {
		CHECK_ERR(args[i].err, 0);
		if (args[i].bad)
			FAIL("thread %d: page %d did not read back", i,
			     args[i].bad - 1);
	}
	/* even pages hold the last generation written through the map */
	unsigned char *got = malloc(len), *exp = malloc(PG);
	OK(vmo_read(o, 0, got, len));
	for (size_t pg = 0; pg < pages; pg += 2) {
		fill_page(exp, pg, 19);
		if (memcmp(got + pg * PG, exp, PG))
			FAIL("page %zu: vmo_read differs from the last write",
			     pg);
	}
	CHECK_MEM(got, m, len);
	if (file) {
		OK(vmo_sync(o, 0, len));
		unsigned char *f = malloc(len);
		CHECK_EQ(pread(fd, f, len, 0), (ssize_t)len);
		CHECK_MEM(f, got, len);
		free(f);
	}
	free(got);
	free(exp);
	OK(vmo_unmap(e.sp, m, len));
	vmo_unref(o);
	if (fd >= 0)
		close(fd);
	env_free(&e);
}

TEST(vmo_read_write_racing_mapping_writes_on_other_pages_anon)
{
	read_write_race_case(0);
}

TEST(vmo_read_write_racing_mapping_writes_on_other_pages_file)
{
	read_write_race_case(1);
}

/* ======================================= decommit racing faults (anon) */

#define DC_PAGES 128

struct dc_arg {
	int id;
	vmo_t *obj;
	unsigned char *map;
	int iters;
	int *stop;
	uint64_t last[DC_PAGES]; /* last value written per owned page */
	int bad, err;
	uint64_t decommits;
};

/* Page ownership: pg % 8 in 0..3: thread pg%8 stores one 64-bit word at
 * offset 0 through the mapping; pg % 8 in 4..5: thread pg%8 vmo_writes
 * whole pages; 6..7: nobody writes, readers only fault them. */
static uint64_t dc_val(size_t pg, int it)
{
	return ((uint64_t)(pg + 1) << 32) | (uint64_t)(it + 1);
}

static void *dc_main(void *a_)
{
	struct dc_arg *a = a_;
	uint64_t s = (uint64_t)a->id * 31 + 7;
	if (a->id == 8) { /* the decommitter */
		while (!__atomic_load_n(a->stop, __ATOMIC_ACQUIRE)) {
			size_t pg = rnd(&s) % DC_PAGES;
			size_t n = 1 + rnd(&s) % 16;
			if (pg + n > DC_PAGES)
				n = DC_PAGES - pg;
			int r = vmo_decommit(a->obj, pg * PG, n * PG);
			if (r) {
				a->err = r;
				break;
			}
			a->decommits++;
		}
		return NULL;
	}
	unsigned char *page = malloc(PG), *back = malloc(PG);
	for (int it = 0; it < a->iters && !a->bad && !a->err; it++) {
		for (size_t pg = (size_t)a->id; pg < DC_PAGES; pg += 8) {
			uint64_t v = dc_val(pg, it);
			if (a->id < 4) {
				uint64_t *w = (uint64_t *)(a->map + pg * PG);
				__atomic_store_n(w, v, __ATOMIC_RELAXED);
				uint64_t r = __atomic_load_n(w, __ATOMIC_RELAXED);
				if (r != v && r != 0)
					a->bad = (int)pg + 1;
			} else if (a->id < 6) {
				memset(page, (int)(v & 0xff), PG);
				memcpy(page, &v, 8);
				int r = vmo_write(a->obj, pg * PG, page, PG);
				if (!r)
					r = vmo_read(a->obj, pg * PG, back, PG);
				if (r) {
					a->err = r;
					break;
				}
				/* all of the write, or all zeros */
				int zero = 1;
				for (size_t j = 0; j < PG && zero; j++)
					zero = back[j] == 0;
				if (!zero && memcmp(back, page, PG))
					a->bad = (int)pg + 1;
			} else {
				/* read-only faults on pages nobody writes */
				uint64_t r = __atomic_load_n(
					(uint64_t *)(a->map + pg * PG + 64),
					__ATOMIC_RELAXED);
				if (r != 0)
					a->bad = (int)pg + 1;
			}
			a->last[pg] = v;
		}
	}
	free(page);
	free(back);
	return NULL;
}

TEST(decommit_racing_faults_leaves_each_page_zero_or_last_written_anon)
{
	struct env e = env_new(0);
	size_t len = DC_PAGES * PG;
	vmo_t *o;
	OK(vmo_create(e.pool, len, 0, &o));
	void *m = NULL;
	OK(vmo_map(e.sp, o, 0, len, PROT_READ | PROT_WRITE, 0, &m));
	int stop = 0;
	enum { NW = 8 };
	static struct dc_arg args[NW + 1];
	memset(args, 0, sizeof args);
	pthread_t th[NW + 1];
	for (int i = 0; i <= NW; i++) {
		args[i].id = i;
		args[i].obj = o;
		args[i].map = m;
		args[i].iters = 150;
		args[i].stop = &stop;
		CHECK_EQ(pthread_create(&th[i], NULL, dc_main, &args[i]), 0);
	}
	for (int i = 0; i < NW; i++)
		CHECK_EQ(pthread_join(th[i], NULL), 0);
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	CHECK_EQ(pthread_join(th[NW], NULL), 0);
	for (int i = 0; i <= NW; i++) {
		CHECK_ERR(args[i].err, 0);
		if (args[i].bad)
			FAIL("thread %d: page %d read a value it never wrote",
			     i, args[i].bad - 1);
	}
	CHECK(args[NW].decommits > 0);
	CHECK(ostat(o).decommitted_pages > 0);
	unsigned char *got = malloc(len);
	OK(vmo_read(o, 0, got, len));
	CHECK_MEM(got, m, len); /* the mapping and the object agree */
	for (size_t pg = 0; pg < DC_PAGES; pg++) {
		unsigned char *p = got + pg * PG;
		int w = (int)(pg % 8);
		uint64_t last = w < 6 ? args[w].last[pg] : 0, first;
		memcpy(&first, p, 8);
		int zero = 1;
		for (size_t j = 8; j < PG && zero; j++)
			zero = p[j] == 0;
		if (w < 4 || w >= 6) {
			/* one word, the rest zeros */
			if (!zero || (first != 0 && first != last))
				FAIL("page %zu: word %#" PRIx64 " (last %#" PRIx64
				     "), rest %s",
				     pg, first, last, zero ? "zero" : "NOT zero");
		} else {
			/* the whole last vmo_write, or all zeros */
			if (first == 0 && zero)
				continue;
			CHECK_EQ(first, last);
			for (size_t j = 8; j < PG; j++)
				if (p[j] != (unsigned char)(last & 0xff))
					FAIL("page %zu byte %zu: %u, want %u",
					     pg, j, p[j],
					     (unsigned)(last & 0xff));
		}
	}
	free(got);
	OK(vmo_unmap(e.sp, m, len));
	vmo_unref(o);
	env_free(&e);
}

/* =========================== vmo_sync racing writers (VMO_FILE_SHARED) */

struct sy_arg {
	int id;
	vmo_t *obj;
	vmo_space_t *sp;
	unsigned char *map;
	size_t pages;
	int iters;
	int *stop;
	int err;
	uint64_t syncs;
};

/* Threads 0..3 write bytes of their own pages (pg % 4 == id) through the
 * mapping; 4..5 sync the whole object or random ranges; 6 drops page-table
 * entries of random ranges (VMO_ADV_DONTNEED). */
static void *sy_main(void *a_)
{
	struct sy_arg *a = a_;
	uint64_t s = (uint64_t)a->id * 1103 + 3;
	if (a->id < 4) {
		for (int it = 0; it < a->iters; it++) {
			size_t pg = (rnd(&s) % (a->pages / 4)) * 4 +
				    (size_t)a->id;
			size_t off = rnd(&s) % PG;
			a->map[pg * PG + off] = (unsigned char)(rnd(&s) | 1);
		}
		return NULL;
	}
	while (!__atomic_load_n(a->stop, __ATOMIC_ACQUIRE)) {
		size_t pg = rnd(&s) % a->pages;
		size_t n = 1 + rnd(&s) % 64;
		if (pg + n > a->pages)
			n = a->pages - pg;
		int r;
		if (a->id == 6)
			r = vmo_advise(a->sp, a->map + pg * PG, n * PG,
				       VMO_ADV_DONTNEED);
		else if (a->syncs % 3 == 0)
			r = vmo_sync(a->obj, 0, a->pages * PG);
		else
			r = vmo_sync(a->obj, pg * PG, n * PG);
		if (r) {
			a->err = r;
			return NULL;
		}
		a->syncs++;
		/* a breath between calls: three threads calling in a tight
		 * loop on a 2-CPU machine starve the writers and the handler
		 * thread of the object lock (the test then takes minutes
		 * under TSan), and the races this test is after happen
		 * with or without it */
		struct timespec ts = {0, 20000};
		nanosleep(&ts, NULL);
	}
	return NULL;
}

TEST(concurrent_sync_with_writers_then_file_matches_byte_for_byte)
{
	struct env e = env_new(0);
	size_t pages = 512, len = pages * PG;
	int fd = temp_file(len, 91);
	vmo_t *o;
	OK(vmo_create_file(e.pool, fd, 0, len, VMO_FILE_SHARED, &o));
	void *m = NULL;
	OK(vmo_map(e.sp, o, 0, len, PROT_READ | PROT_WRITE, 0, &m));
	int stop = 0;
	enum { NT = 7 };
	struct sy_arg args[NT];
	pthread_t th[NT];
	for (int i = 0; i < NT; i++) {
		args[i] = (struct sy_arg){i, o, e.sp, m, pages, 10000, &stop, 0, 0};
		CHECK_EQ(pthread_create(&th[i], NULL, sy_main, &args[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		CHECK_EQ(pthread_join(th[i], NULL), 0);
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	for (int i = 4; i < NT; i++)
		CHECK_EQ(pthread_join(th[i], NULL), 0);
	for (int i = 4; i < NT; i++) {
		CHECK_ERR(args[i].err, 0);
		CHECK(args[i].syncs > 0);
	}
	OK(vmo_sync(o, 0, len));
	CHECK_EQ(ostat(o).dirty_pages, 0);
	unsigned char *f = malloc(len), *snap = malloc(len);
	memcpy(snap, m, len);
	CHECK_EQ(pread(fd, f, len, 0), (ssize_t)len);
	for (size_t pg = 0; pg < pages; pg++)
		if (memcmp(f + pg * PG, snap + pg * PG, PG)) {
			size_t j = 0;
			while (f[pg * PG + j] == snap[pg * PG + j])
				j++;
			FAIL("after the final sync, file page %zu differs at "
			     "byte %zu: file %u, memory %u",
			     pg, j, f[pg * PG + j], snap[pg * PG + j]);
		}
	/* the writes really happened: not every page kept the pattern */
	size_t changed = 0;
	for (size_t i = 0; i < len; i++)
		changed += snap[i] != pattern_byte(91, i);
	CHECK(changed > 1000);
	OK(vmo_unmap(e.sp, m, len));
	vmo_unref(o);
	CHECK_EQ(pread(fd, f, len, 0), (ssize_t)len);
	CHECK_MEM(f, snap, len);
	free(f);
	free(snap);
	close(fd);
	env_free(&e);
}

TEST_MAIN()
