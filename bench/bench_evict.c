/*
 * bench_evict — self-paging: how well a pool with a budget chooses its
 * victims, and what a miss costs when the data is larger than the budget.
 * Output format: bench/benchlib.h.
 *
 *   evict-zipf   miss ratio of the replacement policy (CLOCK with sampled
 *                references, reclaim.c) on a Zipf(0.99) page trace over a
 *                256 MiB dataset (65536 pages, the first 256 MiB of the
 *                test file, file-backed VMO_FILE_PRIVATE object, mapped
 *                PROT_READ, VMO_ADV_RANDOM so that each miss fills exactly
 *                one page) with a budget of 10 % (6553 pages).  The trace
 *                (8 x 65536 accesses, fixed seed; ranks scattered over the
 *                pages by a fixed random permutation) is replayed as real
 *                reads through the mapping; misses = the pool's
 *                pages_filled over the measured part (after a warm-up of
 *                2 x 65536 accesses), in % of the accesses.  Baseline:
 *                exact LRU with capacity = budget pages, simulated on the
 *                same trace and part in the same run.  Target: ratio
 *                <= 1.10.  stderr also gives two simulations of the
 *                library's own policy (CLOCK with the hand in page order:
 *                capacity = budget, and with the pool's watermarks), so a
 *                gap to LRU can be split into policy and implementation.
 *   ooc-random   random 4 KiB reads (uniform, with repetition) over a
 *                1 GiB file-backed object with a 100 MiB budget, one read
 *                per access through a PROT_READ mapping (VMO_ADV_RANDOM):
 *                ns per miss = time of the measured accesses / pages_filled
 *                over them, after a warm-up of 2 x budget accesses (the
 *                budget is full and the hand has gone round).  Baseline:
 *                ns per fault of random first touches of the same kind of
 *                object, same file, no budget (fresh pool and object).
 *                Target: ratio <= 1.3.
 *   ooc-seq      sequential scan of the 1 GiB file-backed object, one read
 *                per page, default (adaptive) advice, 100 MiB budget, cold
 *                (fresh object), ns/page, against the same scan without a
 *                budget.  Target: ratio <= 1.3.
 *   ooc-rmw      random read-modify-write of whole 4 KiB pages (every
 *                64-bit word incremented) over a 1 GiB anonymous object,
 *                mapped PROT_READ|PROT_WRITE, VMO_ADV_RANDOM, 100 MiB
 *                budget and a swap file of 1 GiB + 64 MiB; before the
 *                measured part every page was written once (a sequential
 *                pass with the default advice, untimed) so that misses are
 *                swap-ins, then a random warm-up of one budget's worth of
 *                accesses.  ns per miss
 *                against the first-touch fault (with the same RMW) of an
 *                anonymous object without budget.  No target (reported).
 *
 * The page cache.  The test file (bench_file_create) stays in the page
 * cache for the whole run: a page cache cannot be dropped in general
 * without privileges, and both sides of every comparison then read the
 * same thing the same way (the object's pager preads from the page
 * cache), so the ratios compare the library's paging work, not the disk.
 * Likewise the swap file of ooc-rmw lives in the page cache (nothing syncs
 * it; the machine has the memory): swap I/O here costs a pread/pwrite
 * from/to the page cache.
 *
 * Every access checks the content it reads (file pattern, or the count of
 * read-modify-writes of that page): a wrong byte is fatal.  Every round
 * uses a fresh pool, space and object; variants are interleaved round by
 * round (A B A B ...).  stderr ("# " lines) gives, per round, the value,
 * the pool's statistics over the measured part (pages_filled, evictions,
 * refaults, ref_clears, reclaim_runs, direct_reclaims, over_budget_events,
 * swap_outs / swap_ins, ...), the peak of resident pages (sampled every
 * 10 ms; "OVER BUDGET" when above the budget by more than two
 * 2 MiB fills in flight), minor faults
 * (reference sampling), CPU time of the whole process and of the
 * reclaimer thread (and how long it waited for a CPU), the handlers'
 * service-time histogram, for the random sections the latency
 * distribution of the accesses (p50 against the tail), and the noise
 * (steal, foreign load).  The library's threads are named vmo-reclaim and
 * vmo-space (handlers, read-ahead worker) for perf and top.
 *
 * Rounds: evict-zipf 3, ooc-random 5, ooc-seq 5, ooc-rmw 3.  Environment:
 * BENCH_ONLY=evict-zipf,ooc-random,ooc-seq,ooc-rmw (default all),
 * BENCH_ROUNDS=n (every round count), TMPDIR for the test file (default
 * /tmp, unlinked at once), BENCH_SWAPDIR for the swap file (default
 * /var/tmp; the pool creates it and removes it when it goes away; this
 * program also removes it on exit or SIGINT/SIGTERM).  Peak memory: the
 * 1 GiB test file in the page cache + one 1 GiB object (no-budget
 * baselines) + up to 1 GiB of swap file in the page cache.
 */
#include "benchlib.h"
#include "vmo.h"

#include <pthread.h>
#include <signal.h>

#define PG ((uint64_t)BENCH_PAGE)
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define OOC_LEN (1 * BENCH_GIB)
#define OOC_BUDGET (100 * BENCH_MIB)
#define SWAP_BYTES (OOC_LEN + 64 * BENCH_MIB)
#define FILE_SEED 0xf11e0003ull
/* pages that fills in flight may hold above the budget (see note_meas) */
#define IN_FLIGHT_PAGES (2 * 512u)

static char g_swap_path[256];

/* ------------------------------------------------------------- swap file */

static void swap_cleanup(void)
{
	if (g_swap_path[0])
		unlink(g_swap_path);
}

static void swap_cleanup_sig(int sig)
{
	swap_cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void swap_path_init(void)
{
	const char *dir = getenv("BENCH_SWAPDIR");
	if (!dir || !*dir)
		dir = "/var/tmp";
	snprintf(g_swap_path, sizeof g_swap_path, "%s/libvmo-bench-swap-%d",
		 dir, (int)getpid());
	atexit(swap_cleanup);
	signal(SIGINT, swap_cleanup_sig);
	signal(SIGTERM, swap_cleanup_sig);
	signal(SIGHUP, swap_cleanup_sig);
}

/* ------------------------------------------------ pool, space and object */

struct env {
	vmo_pool_t *pool;
	vmo_space_t *space;
	vmo_t *obj;
	char *base;
	uint64_t len;
	pid_t reclaimer; /* the pool's reclaimer thread, 0: none */
	bool swap;
};

/*
 * A fresh pool (budget 0: unlimited; swap: g_swap_path), a space with the
 * default handler count, an object of len bytes (f: VMO_FILE_PRIVATE over
 * the file, mapped PROT_READ; NULL: anonymous, PROT_READ|PROT_WRITE),
 * mapped whole, with `advice` (-1: none).
 */
static void env_new(struct env *e, uint64_t budget, bool swap,
		    const bench_file_t *f, uint64_t len, int advice)
{
	memset(e, 0, sizeof *e);
	vmo_pool_options_t o;
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.budget_bytes = budget;
	if (swap) {
		o.swap_path = g_swap_path;
		o.swap_bytes = SWAP_BYTES;
		e->swap = true;
	}
	pid_t before[256], after[256], nt[8];
	int nb = bench_tids(before, 256);
	bench_ok(vmo_pool_create(&o, &e->pool));
	int na = bench_tids(after, 256);
	int k = bench_new_tids(before, nb, after, na, nt, 8);
	if (budget && k != 1)
		bench_note("WARNING: pool with a budget started %d threads "
			   "(expected the reclaimer alone)", k);
	e->reclaimer = budget && k >= 1 ? nt[0] : 0;
	if (e->reclaimer)
		bench_name_thread(e->reclaimer, "vmo-reclaim");
	vmo_space_options_t so;
	memset(&so, 0, sizeof so);
	so.size = sizeof so;
	nb = bench_tids(before, 256);
	bench_ok(vmo_space_create(e->pool, &so, &e->space));
	na = bench_tids(after, 256);
	/* the handler threads and the read-ahead worker */
	k = bench_new_tids(before, nb, after, na, nt, 8);
	for (int i = 0; i < k; i++)
		bench_name_thread(nt[i], "vmo-space");
	if (f)
		bench_ok(vmo_create_file(e->pool, f->fd, 0, len,
					 VMO_FILE_PRIVATE, &e->obj));
	else
		bench_ok(vmo_create(e->pool, len, 0, &e->obj));
	void *a = NULL;
	bench_ok(vmo_map(e->space, e->obj, 0, len,
			 f ? PROT_READ : PROT_READ | PROT_WRITE, 0, &a));
	if (advice >= 0)
		bench_ok(vmo_advise(e->space, a, len, advice));
	e->base = a;
	e->len = len;
	usleep(2000); /* threads settled */
}

static void env_free(struct env *e)
{
	bench_ok(vmo_unmap(e->space, e->base, e->len));
	vmo_unref(e->obj);
	vmo_space_destroy(e->space);
	vmo_pool_destroy(e->pool);
	if (e->swap && access(g_swap_path, F_OK) == 0) {
		bench_note("WARNING: swap file %s still exists after the pool "
			   "was destroyed", g_swap_path);
		unlink(g_swap_path);
	}
}

static vmo_pool_stats_t pool_stats(vmo_pool_t *p)
{
	vmo_pool_stats_t s;
	memset(&s, 0, sizeof s);
	s.size = sizeof s;
	bench_ok(vmo_pool_stats(p, &s));
	return s;
}

static vmo_space_stats_t space_stats(vmo_space_t *sp)
{
	vmo_space_stats_t s;
	memset(&s, 0, sizeof s);
	s.size = sizeof s;
	bench_ok(vmo_space_stats(sp, &s));
	return s;
}

/*
 * Peak resident pages of the pool during a part: a thread samples
 * vmo_pool_stats every 10 ms (a few us of CPU each time, on both sides of
 * every comparison; sampling every 1 ms measurably slowed the CPU-bound
 * ooc-seq).  It catches sustained overshoots, not every transient one.
 * The budget is a limit: a peak above it is reported.
 */
struct peak {
	vmo_pool_t *pool;
	uint64_t max;
	int stop;
	pthread_t th;
};

/* Everything a measured part did, besides its time. */
struct meas {
	uint64_t ns;                /* wall time of the measured part */
	uint64_t accesses;
	vmo_pool_stats_t a, b;      /* pool stats before / after */
	vmo_space_stats_t sa, sb;   /* space stats before / after */
	bench_cpustat_t ca, cb;     /* process CPU and machine noise */
	uint64_t rcl_ns;            /* reclaimer CPU during the part */
	uint64_t rcl_wait_ns;       /* reclaimer runnable, waiting for a CPU */
	struct peak pk;
	uint64_t peak;              /* most resident pages seen */
};

static void *peak_main(void *arg)
{
	struct peak *pk = arg;
	while (!__atomic_load_n(&pk->stop, __ATOMIC_ACQUIRE)) {
		uint64_t r = pool_stats(pk->pool).resident_pages;
		if (r > pk->max)
			pk->max = r;
		usleep(10000);
	}
	return NULL;
}

static void peak_start(struct peak *pk, vmo_pool_t *pool)
{
	pk->pool = pool;
	pk->max = 0;
	pk->stop = 0;
	if (pthread_create(&pk->th, NULL, peak_main, pk))
		bench_die("pthread_create");
}

static uint64_t peak_stop(struct peak *pk)
{
	__atomic_store_n(&pk->stop, 1, __ATOMIC_RELEASE);
	pthread_join(pk->th, NULL);
	uint64_t r = pool_stats(pk->pool).resident_pages;
	return r > pk->max ? r : pk->max;
}

static void meas_begin(struct meas *m, const struct env *e)
{
	memset(m, 0, sizeof *m);
	m->a = pool_stats(e->pool);
	m->sa = space_stats(e->space);
	m->rcl_ns = e->reclaimer ? bench_thread_cpu_ns(e->reclaimer,
						       &m->rcl_wait_ns)
				 : 0;
	peak_start(&m->pk, e->pool);
	m->ca = bench_cpustat();
}

static void meas_end(struct meas *m, const struct env *e, uint64_t ns,
		     uint64_t accesses)
{
	m->cb = bench_cpustat();
	m->peak = peak_stop(&m->pk);
	m->ns = ns;
	m->accesses = accesses;
	m->b = pool_stats(e->pool);
	m->sb = space_stats(e->space);
	if (e->reclaimer) {
		uint64_t w;
		m->rcl_ns = bench_thread_cpu_ns(e->reclaimer, &w) - m->rcl_ns;
		m->rcl_wait_ns = w - m->rcl_wait_ns;
	}
}

#define D(f) (m->b.f - m->a.f)

static uint64_t meas_filled(const struct meas *m)
{
	return D(pages_filled);
}

static void note_service(const char *what, int r, const struct meas *m);

/* "# " lines: the pool's counters over the part, where the time went,
 * and the handlers' service times. */
static void note_meas(const char *what, int r, const struct meas *m)
{
	char noise[160];
	bench_noise(m->ca, m->cb, noise, sizeof noise);
	uint64_t filled = D(pages_filled);
	uint64_t minor = m->sb.faults_minor - m->sa.faults_minor;
	uint64_t missing = m->sb.faults_missing - m->sa.faults_missing;
	double cpu_ns = (double)(m->cb.self_us - m->ca.self_us) * 1e3;
	bench_note("%-22s r%d pool: accesses %" PRIu64 " filled %" PRIu64
		   " evictions %" PRIu64 " refaults %" PRIu64
		   " ref_clears %" PRIu64 " reclaim_runs %" PRIu64
		   " direct_reclaims %" PRIu64 " over_budget_events %" PRIu64
		   " writebacks %" PRIu64 " swap_outs %" PRIu64
		   " swap_ins %" PRIu64 " swap_full_events %" PRIu64
		   " | resident %" PRIu64 " (peak %" PRIu64 ") budget %" PRIu64
		   " swapped %" PRIu64 " slots_used %" PRIu64,
		   what, r, m->accesses, filled, D(evictions), D(refaults),
		   D(ref_clears), D(reclaim_runs), D(direct_reclaims),
		   D(over_budget_events), D(writebacks), D(swap_outs),
		   D(swap_ins), D(swap_full_events), m->b.resident_pages,
		   m->peak, m->b.budget_pages, m->b.swapped_pages,
		   m->b.swap_slots_used);
	/* A fill is charged before the pages it displaces are evicted, so
	 * the fills in flight may pass the budget for a moment: up to two
	 * fault-around clusters of 2 MiB here (a handler and the read-ahead
	 * worker).  More than that is a budget the pool did not keep. */
	if (m->b.budget_pages &&
	    m->peak > m->b.budget_pages + IN_FLIGHT_PAGES)
		bench_note("%-22s r%d OVER BUDGET: peak %" PRIu64
			   " resident pages = %.2f x the budget of %" PRIu64
			   " (+%" PRIu64 " pages)",
			   what, r, m->peak,
			   (double)m->peak / (double)m->b.budget_pages,
			   m->b.budget_pages, m->peak - m->b.budget_pages);
	bench_note("%-22s r%d time: %.3f s, %.1f ns/access, %.1f ns/fill; "
		   "faults missing %" PRIu64 " minor %" PRIu64
		   " (%.3f minor/access); process CPU %.0f ns/fill, "
		   "reclaimer CPU %.3f s = %.0f ns/eviction, waited for a "
		   "CPU %.3f s  [%s]",
		   what, r, (double)m->ns * 1e-9,
		   (double)m->ns / (double)(m->accesses ? m->accesses : 1),
		   filled ? (double)m->ns / (double)filled : 0.0, missing,
		   minor,
		   (double)minor / (double)(m->accesses ? m->accesses : 1),
		   filled ? cpu_ns / (double)filled : 0.0,
		   (double)m->rcl_ns * 1e-9,
		   D(evictions) ? (double)m->rcl_ns / (double)D(evictions)
				: 0.0,
		   (double)m->rcl_wait_ns * 1e-9, noise);
	note_service(what, r, m);
}

#undef D

/* The handlers' service-time histogram over the part (log2 buckets of
 * vmo_space_stats_t): "i:count" for [2^i, 2^(i+1)) ns, and the share of
 * faults that took 65 us or more (a handler stalled or reclaiming). */
static void note_service(const char *what, int r, const struct meas *m)
{
	char h[600];
	size_t o = 0;
	uint64_t tot = 0, slow = 0, sum = 0;
	for (int i = 0; i < VMO_LAT_BUCKETS; i++) {
		uint64_t c = m->sb.latency_ns_log2[i] - m->sa.latency_ns_log2[i];
		tot += c;
		sum += c * (3ull << i) / 2; /* bucket middle */
		if (i >= 16)
			slow += c;
		if (c && o < sizeof h - 32)
			o += (size_t)snprintf(h + o, sizeof h - o,
					      " %d:%" PRIu64, i, c);
	}
	bench_note("%-22s r%d service time: faults %" PRIu64
		   ", mean ~%.1f us, >= 65 us: %" PRIu64 " (%.2f%%); "
		   "log2(ns) buckets:%s",
		   what, r, tot, tot ? (double)sum / (double)tot * 1e-3 : 0.0,
		   slow, tot ? 100.0 * (double)slow / (double)tot : 0.0,
		   o ? h : " -");
}

static void note_section(const char *section, bench_cpustat_t c0)
{
	char b[160];
	bench_cpustat_t c1 = bench_cpustat();
	bench_noise(c0, c1, b, sizeof b);
	bench_note("%s: %.1f s; noise during the section: %s", section,
		   (double)(c1.t_ns - c0.t_ns) * 1e-9, b);
}

/* ------------------------------------------------------------- accesses */

/*
 * Per-access latency of the random sections (two clock reads per access,
 * ~50 ns against ~10-40 us per miss, alike on both sides): where the time
 * per miss comes from, every access or a tail.
 */
static uint32_t *g_lat;      /* ns per access of the measured part */
static uint64_t g_nlat;

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

static void note_latency(const char *what, int r)
{
	if (!g_lat || !g_nlat)
		return;
	uint64_t n = g_nlat, tot = 0, slow = 0, nslow = 0;
	for (uint64_t i = 0; i < n; i++) {
		tot += g_lat[i];
		if (g_lat[i] >= 100000) {
			slow += g_lat[i];
			nslow++;
		}
	}
	qsort(g_lat, n, sizeof *g_lat, cmp_u32);
#define Q(p) ((double)g_lat[(uint64_t)((double)(n - 1) * (p))] * 1e-3)
	bench_note("%-22s r%d access latency (us): p10 %.1f p50 %.1f p90 %.1f "
		   "p99 %.1f p99.9 %.1f max %.0f; mean %.1f; accesses >= "
		   "100 us: %" PRIu64 " = %.1f%% of the time",
		   what, r, Q(0.10), Q(0.50), Q(0.90), Q(0.99), Q(0.999),
		   (double)g_lat[n - 1] * 1e-3, (double)tot / (double)n * 1e-3,
		   nslow, tot ? 100.0 * (double)slow / (double)tot : 0.0);
#undef Q
	g_nlat = 0;
}

/*
 * Read word 0 of each listed page of a file-backed mapping (pages NULL:
 * pages first..first+n-1 in order) and check it against the file pattern.
 * Returns the number of wrong pages.
 */
static uint64_t read_pages(const char *base, const uint32_t *pages,
			   uint64_t first, uint64_t n, uint64_t seed)
{
	uint64_t bad = 0;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t pg = pages ? pages[i] : first + i;
		uint64_t v = *(volatile const uint64_t *)(base + pg * PG);
		bad += v != bench_pattern_word(seed, pg * (PG / 8));
	}
	return bad;
}

/* read_pages, timing each access into g_lat. */
static uint64_t read_pages_timed(const char *base, const uint32_t *pages,
				 uint64_t n, uint64_t seed)
{
	uint64_t bad = 0;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t pg = pages[i];
		uint64_t t0 = bench_now_ns();
		uint64_t v = *(volatile const uint64_t *)(base + pg * PG);
		uint64_t t1 = bench_now_ns();
		g_lat[i] = (uint32_t)MIN(t1 - t0, (uint64_t)UINT32_MAX);
		bad += v != bench_pattern_word(seed, pg * (PG / 8));
	}
	g_nlat = n;
	return bad;
}

/*
 * Read-modify-write the listed pages of an anonymous mapping (pages NULL:
 * first..first+n-1): every 64-bit word += 1.  cnt[pg] is how many times
 * page pg was modified so far: its words must equal it.  Returns the
 * number of wrong pages.
 */
static uint64_t rmw_pages(char *base, const uint32_t *pages, uint64_t first,
			  uint64_t n, uint16_t *cnt)
{
	uint64_t bad = 0;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t pg = pages ? pages[i] : first + i;
		volatile uint64_t *w = (volatile uint64_t *)(base + pg * PG);
		uint64_t want = cnt[pg];
		uint64_t t0 = g_lat ? bench_now_ns() : 0;
		bad += w[0] != want || w[PG / 8 - 1] != want;
		for (unsigned k = 0; k < PG / 8; k++)
			w[k] = w[k] + 1;
		if (g_lat)
			g_lat[i] = (uint32_t)MIN(bench_now_ns() - t0,
						 (uint64_t)UINT32_MAX);
		cnt[pg]++;
	}
	if (g_lat)
		g_nlat = n;
	return bad;
}

static uint32_t *uniform_trace(uint64_t npages, uint64_t n, uint64_t seed)
{
	uint32_t *t = malloc(n * sizeof *t);
	if (!t)
		bench_die("malloc");
	uint64_t st = seed;
	for (uint64_t i = 0; i < n; i++)
		t[i] = (uint32_t)(bench_rand64(&st) % npages);
	return t;
}

static uint32_t *permutation(uint64_t npages, uint64_t seed)
{
	uint32_t *t = malloc(npages * sizeof *t);
	if (!t)
		bench_die("malloc");
	for (uint64_t i = 0; i < npages; i++)
		t[i] = (uint32_t)i;
	bench_shuffle(t, npages, seed);
	return t;
}

/* Print the rounds of a figure and of its same-run baseline, their
 * per-round ratios, and the BENCH line (medians). */
static void report_vs(const char *name, const double *v, const char *bname,
		      const double *base, int R, const char *unit)
{
	bench_runs(name, v, R, unit);
	bench_runs(bname, base, R, unit);
	double per[64];
	char pname[96];
	for (int r = 0; r < R; r++)
		per[r] = v[r] / base[r];
	snprintf(pname, sizeof pname, "%s per-round-ratio", name);
	bench_runs(pname, per, R, "x");
	bench_print_vs(name, bench_median(v, R), unit, bname,
		       bench_median(base, R));
}

/* ------------------------------------------------------------ evict-zipf */

/*
 * ln and exp without libm (the benchmarks are linked without -lm), for
 * k^-s = exp(-s ln k); both accurate to ~1e-14 relative (checked against
 * libm's pow over the ranks used here), plenty for a CDF.
 */
static double ln_pos(double x)
{
	/* x = m * 2^e, m in [sqrt(1/2), sqrt(2)); ln m = 2 atanh(z) */
	int e = 0;
	while (x > 1.4142135623730951) {
		x *= 0.5;
		e++;
	}
	while (x < 0.7071067811865476) {
		x *= 2.0;
		e--;
	}
	double z = (x - 1.0) / (x + 1.0), z2 = z * z, term = z, sum = 0;
	for (int k = 1; k < 60; k += 2) {
		sum += term / k;
		term *= z2;
	}
	return 2.0 * sum + e * 0.6931471805599453;
}

static double exp_any(double y)
{
	/* y = n ln2 + r, |r| <= ln2 / 2; Taylor series of e^r */
	double nf = y / 0.6931471805599453;
	long n = (long)(nf < 0 ? nf - 0.5 : nf + 0.5);
	double r = y - (double)n * 0.6931471805599453, sum = 1, term = 1;
	for (int k = 1; k < 30; k++) {
		term *= r / k;
		sum += term;
	}
	for (; n > 0; n--)
		sum *= 2.0;
	for (; n < 0; n++)
		sum *= 0.5;
	return sum;
}

/*
 * n accesses of a Zipf(s) distribution over npages ranks (P(rank k) ~
 * 1/k^s, k = 1..npages): inverse CDF by binary search over the exact,
 * precomputed CDF; rank k is page perm[k-1] (a fixed random permutation,
 * so hot pages are scattered over the object).
 */
static uint32_t *zipf_trace(uint32_t npages, uint64_t n, double s,
			    uint64_t seed, double *top_share)
{
	double *cdf = malloc(npages * sizeof *cdf);
	uint32_t *perm = permutation(npages, seed ^ 0x9e3779b97f4a7c15ull);
	uint32_t *t = malloc(n * sizeof *t);
	if (!cdf || !t)
		bench_die("malloc");
	double sum = 0;
	for (uint32_t k = 0; k < npages; k++) {
		sum += exp_any(-s * ln_pos((double)(k + 1)));
		cdf[k] = sum;
	}
	for (uint32_t k = 0; k < npages; k++)
		cdf[k] /= sum;
	cdf[npages - 1] = 1.0;
	*top_share = cdf[npages / 10 - 1];
	uint64_t st = seed;
	for (uint64_t i = 0; i < n; i++) {
		double u = (double)(bench_rand64(&st) >> 11) * 0x1p-53;
		uint32_t lo = 0, hi = npages - 1; /* first k: cdf[k] > u */
		while (lo < hi) {
			uint32_t mid = lo + (hi - lo) / 2;
			if (cdf[mid] > u)
				hi = mid;
			else
				lo = mid + 1;
		}
		t[i] = perm[lo];
	}
	free(cdf);
	free(perm);
	return t;
}

/* Exact LRU of `cap` pages on trace t: misses among accesses [warm, n).
 * O(1) per access: an array-indexed doubly linked list, MRU at head. */
static uint64_t sim_lru(const uint32_t *t, uint64_t n, uint64_t warm,
			uint32_t npages, uint32_t cap)
{
	int32_t *prv = malloc(npages * sizeof *prv);
	int32_t *nxt = malloc(npages * sizeof *nxt);
	uint8_t *in = calloc(npages, 1);
	if (!prv || !nxt || !in)
		bench_die("malloc");
	int32_t head = -1, tail = -1;
	uint32_t size = 0;
	uint64_t miss = 0;
	for (uint64_t i = 0; i < n; i++) {
		int32_t x = (int32_t)t[i];
		if (in[x]) {
			if (head == x)
				continue;
			/* unlink (x is not the head) */
			nxt[prv[x]] = nxt[x];
			if (nxt[x] >= 0)
				prv[nxt[x]] = prv[x];
			else
				tail = prv[x];
		} else {
			if (i >= warm)
				miss++;
			if (size == cap) {
				int32_t v = tail;
				tail = prv[v];
				if (tail >= 0)
					nxt[tail] = -1;
				else
					head = -1;
				in[v] = 0;
				size--;
			}
			in[x] = 1;
			size++;
		}
		/* push front */
		prv[x] = -1;
		nxt[x] = head;
		if (head >= 0)
			prv[head] = x;
		head = x;
		if (tail < 0)
			tail = x;
	}
	free(prv);
	free(nxt);
	free(in);
	return miss;
}

/*
 * The library's policy, simulated: CLOCK whose hand walks page numbers in
 * order (one object), a fresh page referenced, a referenced page losing
 * its reference when the hand passes.  Eviction starts when more than
 * `high` pages are resident and goes down to `low` (high == low: one
 * victim per miss once full).  Misses among accesses [warm, n).
 */
static uint64_t sim_clock(const uint32_t *t, uint64_t n, uint64_t warm,
			  uint32_t npages, uint32_t high, uint32_t low)
{
	uint8_t *st = calloc(npages, 1); /* bit 0 resident, bit 1 ref */
	if (!st)
		bench_die("malloc");
	uint32_t hand = 0, res = 0;
	uint64_t miss = 0;
	for (uint64_t i = 0; i < n; i++) {
		uint32_t x = t[i];
		if (st[x] & 1) {
			st[x] |= 2;
			continue;
		}
		if (i >= warm)
			miss++;
		st[x] = 3;
		res++;
		if (res <= high)
			continue;
		while (res > low) {
			uint8_t b = st[hand];
			if ((b & 1) && hand != x) {
				if (b & 2)
					st[hand] = 1;
				else {
					st[hand] = 0;
					res--;
				}
			}
			hand = hand + 1 == npages ? 0 : hand + 1;
		}
	}
	free(st);
	return miss;
}

#define ZIPF_PAGES 65536u
#define ZIPF_S 0.99
#define ZIPF_LEN ((uint64_t)8 * ZIPF_PAGES)
#define ZIPF_WARM ((uint64_t)2 * ZIPF_PAGES)
#define ZIPF_SEED 0x21bf0099ull

static void section_zipf(const bench_file_t *f)
{
	const int R = bench_rounds(3);
	const uint32_t np = ZIPF_PAGES;
	const uint32_t budget = np / 10;
	/* the pool's default watermarks (vmo.h) */
	const uint32_t gap = budget / 64;
	const uint32_t high = budget - gap, low = high - gap;
	double top10;
	uint64_t t0 = bench_now_ns();
	uint32_t *tr = zipf_trace(np, ZIPF_LEN, ZIPF_S, ZIPF_SEED, &top10);
	uint64_t t1 = bench_now_ns();
	const uint64_t nm = ZIPF_LEN - ZIPF_WARM;
	double lru = 100.0 *
		     (double)sim_lru(tr, ZIPF_LEN, ZIPF_WARM, np, budget) /
		     (double)nm;
	double clk = 100.0 *
		     (double)sim_clock(tr, ZIPF_LEN, ZIPF_WARM, np, budget,
				       budget) /
		     (double)nm;
	double clkw = 100.0 *
		      (double)sim_clock(tr, ZIPF_LEN, ZIPF_WARM, np, high,
					low) /
		      (double)nm;
	uint64_t t2 = bench_now_ns();
	{
		uint8_t *seen = calloc(np, 1);
		uint64_t distinct = 0;
		for (uint64_t i = 0; i < ZIPF_LEN; i++)
			if (!seen[tr[i]]++)
				distinct++;
		free(seen);
		bench_note("evict-zipf: Zipf(%.2f) over %u pages (%" PRIu64
			   " MiB), %" PRIu64 " accesses (%" PRIu64
			   " distinct pages), warm-up %" PRIu64
			   ", measured %" PRIu64 "; top 10%% of ranks take "
			   "%.1f%% of accesses; budget %u pages (watermarks "
			   "high %u low %u); %d rounds; trace %.2f s, "
			   "simulations %.2f s",
			   ZIPF_S, np, (uint64_t)np * PG >> 20, ZIPF_LEN,
			   distinct, ZIPF_WARM, nm, 100.0 * top10, budget,
			   high, low, R, (double)(t1 - t0) * 1e-9,
			   (double)(t2 - t1) * 1e-9);
	}
	bench_note("evict-zipf: simulated misses in %% of measured accesses: "
		   "LRU(%u) %.2f, CLOCK page-order hand(%u) %.2f, the same "
		   "with the pool's watermarks (%u..%u) %.2f",
		   budget, lru, budget, clk, low, high, clkw);

	bench_cpustat_t c0 = bench_cpustat();
	double v[64];
	for (int r = 0; r < R; r++) {
		struct env e;
		env_new(&e, (uint64_t)budget * PG, false, f,
			(uint64_t)np * PG, VMO_ADV_RANDOM);
		if (read_pages(e.base, tr, 0, ZIPF_WARM, f->seed))
			bench_die("evict-zipf: wrong content (warm-up)");
		struct meas m;
		meas_begin(&m, &e);
		uint64_t a = bench_now_ns();
		uint64_t bad = read_pages(e.base, tr + ZIPF_WARM, 0, nm,
					  f->seed);
		uint64_t b = bench_now_ns();
		meas_end(&m, &e, b - a, nm);
		if (bad)
			bench_die("evict-zipf: %" PRIu64 " wrong pages", bad);
		v[r] = 100.0 * (double)meas_filled(&m) / (double)nm;
		bench_note("evict-zipf r%d: miss %.2f%% (LRU %.2f%%, ratio "
			   "%.3f)",
			   r, v[r], lru, v[r] / lru);
		note_meas("evict-zipf", r, &m);
		env_free(&e);
	}
	bench_runs("evict-zipf", v, R, "miss%");
	bench_print_vs("evict-zipf", bench_median(v, R), "miss%", "lru", lru);
	note_section("evict-zipf", c0);
	free(tr);
}

/* ------------------------------------------------------------ ooc-random */

#define OOC_PAGES (OOC_LEN / PG)
#define OOC_BUDGET_PAGES (OOC_BUDGET / PG)
#define RAND_WARM (2 * OOC_BUDGET_PAGES)
#define RAND_MEAS ((uint64_t)60000)

static void section_random(const bench_file_t *f)
{
	const int R = bench_rounds(5);
	uint32_t *tr = uniform_trace(OOC_PAGES, RAND_WARM + RAND_MEAS,
				     0x5eed0101);
	uint32_t *perm = permutation(OOC_PAGES, 0x5eed0102);
	g_lat = malloc(RAND_MEAS * sizeof *g_lat);
	if (!g_lat)
		bench_die("malloc");
	bench_note("ooc-random: %" PRIu64 " MiB file-backed object, budget %"
		   PRIu64 " MiB; uniform random reads, warm-up %" PRIu64
		   ", measured %" PRIu64 " (expected hit ratio %.1f%%); "
		   "baseline: %" PRIu64 " random first touches, no budget; "
		   "%d interleaved rounds",
		   OOC_LEN >> 20, OOC_BUDGET >> 20, RAND_WARM, RAND_MEAS,
		   100.0 * (double)OOC_BUDGET_PAGES / (double)OOC_PAGES,
		   RAND_MEAS, R);
	bench_cpustat_t c0 = bench_cpustat();
	double v[64], base[64];
	for (int r = 0; r < R; r++) {
		for (int k = 0; k < 2; k++) {
			int j = (k + r) % 2;
			struct env e;
			struct meas m;
			env_new(&e, j == 0 ? OOC_BUDGET : 0, false, f, OOC_LEN,
				VMO_ADV_RANDOM);
			uint64_t bad = 0;
			if (j == 0)
				bad += read_pages(e.base, tr, 0, RAND_WARM,
						  f->seed);
			const uint32_t *list = j == 0 ? tr + RAND_WARM : perm;
			meas_begin(&m, &e);
			uint64_t a = bench_now_ns();
			bad += read_pages_timed(e.base, list, RAND_MEAS,
						f->seed);
			uint64_t b = bench_now_ns();
			meas_end(&m, &e, b - a, RAND_MEAS);
			if (bad)
				bench_die("ooc-random: %" PRIu64
					  " wrong pages", bad);
			uint64_t fl = meas_filled(&m);
			double ns = (double)(b - a) / (double)(fl ? fl : 1);
			if (j == 0) {
				v[r] = ns;
				bench_note("ooc-random r%d: %.1f ns/miss, "
					   "miss ratio %.1f%%",
					   r, ns,
					   100.0 * (double)fl /
						   (double)RAND_MEAS);
				note_meas("ooc-random", r, &m);
				note_latency("ooc-random", r);
			} else {
				base[r] = ns;
				if (fl != RAND_MEAS)
					bench_note("WARNING: baseline filled %"
						   PRIu64 " pages for %" PRIu64 " "
						   "first touches",
						   fl, RAND_MEAS);
				bench_note("first-touch r%d: %.1f ns/fault", r,
					   ns);
				note_meas("first-touch", r, &m);
				note_latency("first-touch", r);
			}
			env_free(&e);
		}
	}
	report_vs("ooc-random", v, "first-touch", base, R, "ns/miss");
	note_section("ooc-random", c0);
	free(tr);
	free(perm);
	free(g_lat);
	g_lat = NULL;
}

/* --------------------------------------------------------------- ooc-seq */

static void section_seq(const bench_file_t *f)
{
	const int R = bench_rounds(5);
	bench_note("ooc-seq: sequential read of %" PRIu64 " MiB (one read "
		   "per page, adaptive fault-around), budget %" PRIu64
		   " MiB vs no budget, fresh object each; %d interleaved "
		   "rounds",
		   OOC_LEN >> 20, OOC_BUDGET >> 20, R);
	bench_cpustat_t c0 = bench_cpustat();
	double v[64], base[64];
	for (int r = 0; r < R; r++) {
		for (int k = 0; k < 2; k++) {
			int j = (k + r) % 2;
			struct env e;
			struct meas m;
			env_new(&e, j == 0 ? OOC_BUDGET : 0, false, f, OOC_LEN,
				-1);
			meas_begin(&m, &e);
			uint64_t a = bench_now_ns();
			uint64_t bad = read_pages(e.base, NULL, 0, OOC_PAGES,
						  f->seed);
			uint64_t b = bench_now_ns();
			meas_end(&m, &e, b - a, OOC_PAGES);
			if (bad)
				bench_die("ooc-seq: %" PRIu64 " wrong pages",
					  bad);
			double ns = (double)(b - a) / (double)OOC_PAGES;
			const char *nm = j == 0 ? "ooc-seq" : "no-budget";
			(j == 0 ? v : base)[r] = ns;
			bench_note("%s r%d: %.1f ns/page", nm, r, ns);
			note_meas(nm, r, &m);
			env_free(&e);
		}
	}
	report_vs("ooc-seq", v, "no-budget", base, R, "ns/page");
	note_section("ooc-seq", c0);
}

/* --------------------------------------------------------------- ooc-rmw */

#define RMW_WARM OOC_BUDGET_PAGES
#define RMW_MEAS ((uint64_t)40000)

static void section_rmw(void)
{
	const int R = bench_rounds(3);
	uint32_t *tr = uniform_trace(OOC_PAGES, RMW_WARM + RMW_MEAS,
				     0x5eed0201);
	uint32_t *perm = permutation(OOC_PAGES, 0x5eed0202);
	uint16_t *cnt = malloc(OOC_PAGES * sizeof *cnt);
	uint32_t *lat = malloc(RMW_MEAS * sizeof *lat);
	if (!cnt || !lat)
		bench_die("malloc");
	bench_note("ooc-rmw: %" PRIu64 " MiB anonymous object, budget %"
		   PRIu64 " MiB, swap %" PRIu64 " MiB at %s; every page "
		   "written once (sequential, untimed), then uniform random "
		   "read-modify-write of 4 KiB pages: warm-up %" PRIu64
		   ", measured %" PRIu64 "; baseline: %" PRIu64 " random "
		   "first-touch RMWs of an anonymous object without budget; "
		   "%d interleaved rounds",
		   OOC_LEN >> 20, OOC_BUDGET >> 20, SWAP_BYTES >> 20,
		   g_swap_path, RMW_WARM, RMW_MEAS, RMW_MEAS, R);
	bench_cpustat_t c0 = bench_cpustat();
	double v[64], base[64];
	for (int r = 0; r < R; r++) {
		for (int k = 0; k < 2; k++) {
			int j = (k + r) % 2;
			struct env e;
			struct meas m;
			memset(cnt, 0, OOC_PAGES * sizeof *cnt);
			/* the sequential pass with the default (adaptive)
			 * advice, then one page per fault */
			env_new(&e, j == 0 ? OOC_BUDGET : 0, j == 0, NULL,
				OOC_LEN, j == 0 ? -1 : VMO_ADV_RANDOM);
			uint64_t bad = 0;
			if (j == 0) {
				struct meas w;
				meas_begin(&w, &e);
				uint64_t a = bench_now_ns();
				bad += rmw_pages(e.base, NULL, 0, OOC_PAGES,
						 cnt);
				uint64_t b = bench_now_ns();
				meas_end(&w, &e, b - a, OOC_PAGES);
				note_meas("ooc-rmw-seq-warmup", r, &w);
				/* the pass may leave the pool over budget (the
				 * reclaimer behind): let it catch up, so the
				 * measured part starts in the steady state */
				uint64_t t = bench_now_ns(), res;
				while ((res = pool_stats(e.pool)
						      .resident_pages) >
					       OOC_BUDGET_PAGES &&
				       bench_now_ns() - t < 10 * 1000000000ull)
					usleep(10000);
				if (res > OOC_BUDGET_PAGES ||
				    bench_now_ns() - t > 20000000)
					bench_note("ooc-rmw r%d: %.2f s after the "
						   "pass, %" PRIu64 " pages "
						   "resident (budget %" PRIu64
						   ")",
						   r, (double)(bench_now_ns() -
							       t) * 1e-9,
						   res, OOC_BUDGET_PAGES);
				bench_ok(vmo_advise(e.space, e.base, e.len,
						    VMO_ADV_RANDOM));
				bad += rmw_pages(e.base, tr, 0, RMW_WARM, cnt);
			}
			const uint32_t *list = j == 0 ? tr + RMW_WARM : perm;
			meas_begin(&m, &e);
			g_lat = lat;
			uint64_t a = bench_now_ns();
			bad += rmw_pages(e.base, list, 0, RMW_MEAS, cnt);
			uint64_t b = bench_now_ns();
			g_lat = NULL;
			meas_end(&m, &e, b - a, RMW_MEAS);
			/* spot check of pages not accessed lately: every
			 * 61st page of the object (mostly swapped out) */
			for (uint64_t pg = 0; pg < OOC_PAGES; pg += 61) {
				const uint64_t *w =
					(const uint64_t *)(e.base + pg * PG);
				bad += w[0] != cnt[pg] ||
				       w[PG / 8 - 1] != cnt[pg];
			}
			if (bad)
				bench_die("ooc-rmw: %" PRIu64 " wrong pages",
					  bad);
			uint64_t fl = meas_filled(&m);
			double ns = (double)(b - a) / (double)(fl ? fl : 1);
			if (j == 0) {
				v[r] = ns;
				bench_note("ooc-rmw r%d: %.1f ns/miss, miss "
					   "ratio %.1f%%",
					   r, ns,
					   100.0 * (double)fl /
						   (double)RMW_MEAS);
				note_meas("ooc-rmw", r, &m);
				g_lat = lat;
				note_latency("ooc-rmw", r);
				g_lat = NULL;
			} else {
				base[r] = ns;
				if (fl != RMW_MEAS)
					bench_note("WARNING: baseline filled %"
						   PRIu64 " pages for %" PRIu64 " "
						   "first touches",
						   fl, RMW_MEAS);
				bench_note("anon-first-touch r%d: %.1f "
					   "ns/fault", r, ns);
				note_meas("anon-first-touch", r, &m);
				g_lat = lat;
				note_latency("anon-first-touch", r);
				g_lat = NULL;
			}
			env_free(&e);
		}
	}
	report_vs("ooc-rmw", v, "anon-first-touch", base, R, "ns/miss");
	note_section("ooc-rmw", c0);
	free(tr);
	free(perm);
	free(cnt);
	free(lat);
}

/* ------------------------------------------------------------------ main */

int main(void)
{
	uint64_t t0 = bench_now_ns();
	bench_note("bench_evict: %ld online CPUs; ratio = value / baseline "
		   "(miss%%, ns/miss, ns/page: lower is better)",
		   sysconf(_SC_NPROCESSORS_ONLN));
	swap_path_init();
	bool zipf = bench_want("evict-zipf"), rnd = bench_want("ooc-random"),
	     seq = bench_want("ooc-seq"), rmw = bench_want("ooc-rmw");
	if (zipf || rnd || seq) {
		bench_file_t f;
		bench_file_create(&f, OOC_LEN, FILE_SEED);
		if (zipf)
			section_zipf(&f);
		if (rnd)
			section_random(&f);
		if (seq)
			section_seq(&f);
		bench_file_close(&f);
	}
	if (rmw)
		section_rmw();
	bench_note("bench_evict: done in %.1f s, peak RSS %.0f MiB",
		   (double)(bench_now_ns() - t0) * 1e-9, bench_maxrss_mib());
	return 0;
}
