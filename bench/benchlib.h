/*
 * benchlib.h — helpers shared by the benchmark programs (bench/bench_*.c).
 *
 * Output.  Every figure is printed on stdout as exactly one line:
 *
 *   BENCH <name> <value> <unit>
 *   BENCH <name> <value> <unit> vs <baseline-name> <baseline-value> <ratio>
 *
 * e.g.  BENCH fault-4k-random 12345.6 ns/page vs raw-uffd 11000.0 1.12
 *
 * <value> and <baseline-value> are in the same <unit>, printed with one
 * decimal.  <ratio> is ALWAYS value / baseline-value, printed with two
 * decimals, whatever the unit:
 *   - for a cost (ns/page, ns/fault: lower is better) it is the slowdown
 *     against the baseline: 1.12 means 12 % slower, a target "<= 1.15"
 *     means at most 15 % slower;
 *   - for a rate (faults/s, pages/s: higher is better) it is the speed-up
 *     against the baseline: "fault-scaling ... faults/s vs handlers-1 ...
 *     1.70" means 2 handlers serve 1.7x the faults per second of one.
 * The unit says which direction is better; the docs state every target.
 * When value and baseline are medians of repetitions, the ratio is the
 * ratio of the two medians (benchmarks print per-repetition ratios on
 * stderr when they are of interest).
 * Everything else a benchmark wants to say (every repetition, statistics,
 * checks) goes to stderr as lines starting with "# ", so stdout stays
 * machine-readable.
 *
 * Method.  bench_now_ns() is CLOCK_MONOTONIC.  A figure is the median of
 * several repetitions (bench_median); benchmarks that compare against a
 * baseline interleave the repetitions of both (A B A B ...) so slow phases
 * of this noisy, shared 2-vCPU machine hit both alike.
 *
 * Test files.  bench_file_create() makes a file of the requested size in
 * $TMPDIR (default /tmp; the root ext4 disk here), fills it with a
 * position-dependent pattern, fdatasync()s it (so no writeback runs during
 * the measurements), reads it back once, checking the pattern, and checks
 * with mincore() that every page is in the page cache.  The file is
 * unlinked as soon as it is open, so nothing is left behind even if the
 * benchmark is killed; bench_file_close() (or process exit) frees it and
 * its page cache.  bench_verify_pages() checks mapped memory against the
 * same pattern.
 *
 * Threads and noise.  bench_tids / bench_new_tids find the threads a
 * library call started (e.g. libvmo's handler threads), bench_pin pins any
 * thread, bench_ctxsw reads a thread's context switches.  bench_cpustat +
 * bench_noise report, for an interval, the steal time and the CPU time
 * used by other processes ("foreign"), so every figure can be read next to
 * the noise it was measured in.
 *
 * Header-only (static inline functions): each benchmark is one .c file.
 */
#ifndef VMO_BENCHLIB_H
#define VMO_BENCHLIB_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_PAGE 4096u
#define BENCH_KIB ((uint64_t)1 << 10)
#define BENCH_MIB ((uint64_t)1 << 20)
#define BENCH_GIB ((uint64_t)1 << 30)

/* ------------------------------------------------------------ errors */

#define bench_die(...)                                                     \
	do {                                                               \
		int e_ = errno;                                            \
		fprintf(stderr, "bench: FATAL %s:%d: ", __FILE__, __LINE__); \
		fprintf(stderr, __VA_ARGS__);                              \
		fprintf(stderr, " (errno %d: %s)\n", e_, strerror(e_));    \
		exit(1);                                                   \
	} while (0)

/* A libvmo call that must return 0. */
#define bench_ok(call)                                                   \
	do {                                                             \
		int r_ = (call);                                         \
		if (r_ != 0) {                                           \
			errno = -r_;                                     \
			bench_die("%s returned %d", #call, r_);          \
		}                                                        \
	} while (0)

/* "# ..." comment line on stderr. */
__attribute__((format(printf, 1, 2))) static inline void
bench_note(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("# ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	fflush(stderr);
}

static inline long bench_env_long(const char *name, long dflt)
{
	const char *s = getenv(name);
	return s && *s ? strtol(s, NULL, 0) : dflt;
}

/*
 * Section selection.  BENCH_ONLY is a comma-separated list of section
 * names (e.g. BENCH_ONLY=evict-zipf,ooc-seq); bench_want(name) is true
 * when BENCH_ONLY is unset or empty, or lists `name` as one of its items
 * (whole items only: "ooc-seq" does not select "seq").
 */
static inline bool bench_want(const char *name)
{
	const char *only = getenv("BENCH_ONLY");
	if (!only || !*only)
		return true;
	size_t n = strlen(name);
	for (const char *p = only; *p;) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len == n && strncmp(p, name, n) == 0)
			return true;
		if (!e)
			break;
		p = e + 1;
	}
	return false;
}

/* Repetitions: BENCH_ROUNDS if set, else dflt; clamped to [1, 64]. */
static inline int bench_rounds(int dflt)
{
	long r = bench_env_long("BENCH_ROUNDS", dflt);
	return r < 1 ? 1 : r > 64 ? 64 : (int)r;
}

/* ------------------------------------------------------------ timing */

static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline int bench_cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Median of v[0..n) (v is not changed); n >= 1. */
static inline double bench_median(const double *v, int n)
{
	double s[256];
	if (n < 1 || n > 256)
		bench_die("bench_median: n=%d", n);
	memcpy(s, v, sizeof(double) * (size_t)n);
	qsort(s, (size_t)n, sizeof(double), bench_cmp_dbl);
	return (n & 1) ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

static inline double bench_min(const double *v, int n)
{
	double m = v[0];
	for (int i = 1; i < n; i++)
		m = v[i] < m ? v[i] : m;
	return m;
}

static inline double bench_max(const double *v, int n)
{
	double m = v[0];
	for (int i = 1; i < n; i++)
		m = v[i] > m ? v[i] : m;
	return m;
}

/* Every repetition of a measurement, on stderr. */
static inline void bench_runs(const char *name, const double *v, int n,
		       const char *unit)
{
	fprintf(stderr, "# runs %s [%s] n=%d median=%.1f min=%.1f max=%.1f:",
		name, unit, n, bench_median(v, n), bench_min(v, n),
		bench_max(v, n));
	for (int i = 0; i < n; i++)
		fprintf(stderr, " %.1f", v[i]);
	fputc('\n', stderr);
	fflush(stderr);
}

/* BENCH <name> <value> <unit> */
static inline void bench_print(const char *name, double value, const char *unit)
{
	printf("BENCH %s %.1f %s\n", name, value, unit);
	fflush(stdout);
}

/* BENCH <name> <value> <unit> vs <base> <base-value> <value/base-value> */
static inline void bench_print_vs(const char *name, double value, const char *unit,
			   const char *base_name, double base_value)
{
	double ratio = base_value != 0 ? value / base_value : 0.0;
	printf("BENCH %s %.1f %s vs %s %.1f %.2f\n", name, value, unit,
	       base_name, base_value, ratio);
	fflush(stdout);
}

/* --------------------------------------------------- pseudo-random order */

static inline uint64_t bench_rand64(uint64_t *state)
{
	/* xorshift64* */
	uint64_t x = *state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545F4914F6CDD1Dull;
}

/* Fisher-Yates shuffle of a[0..n), deterministic for a given seed. */
static inline void bench_shuffle(uint32_t *a, size_t n, uint64_t seed)
{
	uint64_t st = seed ? seed : 1;
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)(bench_rand64(&st) % i);
		uint32_t t = a[i - 1];
		a[i - 1] = a[j];
		a[j] = t;
	}
}

/* ------------------------------------------------------- content pattern */

/* The 64-bit word at byte offset 8*w of a test file made with `seed`. */
static inline uint64_t bench_pattern_word(uint64_t seed, uint64_t w)
{
	uint64_t x = (w + 1) * 0x9E3779B97F4A7C15ull ^ seed;
	x ^= x >> 31;
	return x * 0xBF58476D1CE4E5B9ull;
}

/* Fill one 4 KiB page (file page `pg`) with the pattern. */
static inline void bench_pattern_page(void *dst, uint64_t seed, uint64_t pg)
{
	uint64_t *d = dst;
	uint64_t w0 = pg * (BENCH_PAGE / 8);
	for (unsigned i = 0; i < BENCH_PAGE / 8; i++)
		d[i] = bench_pattern_word(seed, w0 + i);
}

/* Does the page at p hold file page `pg` of a `seed` file? */
static inline bool bench_page_ok(const void *p, uint64_t seed, uint64_t pg)
{
	const uint64_t *s = p;
	uint64_t w0 = pg * (BENCH_PAGE / 8);
	for (unsigned i = 0; i < BENCH_PAGE / 8; i++)
		if (s[i] != bench_pattern_word(seed, w0 + i))
			return false;
	return true;
}

/*
 * Check n pages: page i of the list is at base + pages[i]*4096 and must
 * hold file page first_file_page + pages[i] (pages NULL: pages 0..n-1).
 * Returns the number of wrong pages (the first few are reported).
 */
static inline uint64_t bench_verify_pages(const void *base, uint64_t seed,
				   uint64_t first_file_page,
				   const uint32_t *pages, uint64_t n)
{
	uint64_t bad = 0;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t pg = pages ? pages[i] : i;
		const char *p = (const char *)base + pg * BENCH_PAGE;
		if (!bench_page_ok(p, seed, first_file_page + pg)) {
			if (bad < 3)
				bench_note("VERIFY FAILED: page %" PRIu64
					   " (word0 %016" PRIx64 ")",
					   pg, *(const uint64_t *)p);
			bad++;
		}
	}
	return bad;
}

/* -------------------------------------------------------- test files */

typedef struct bench_file {
	int fd;          /* O_RDWR; the file is already unlinked */
	uint64_t size;
	uint64_t seed;
	char path[256];  /* for messages only */
} bench_file_t;

/*
 * Create a page-cache-resident, pattern-filled test file of `size` bytes
 * (a multiple of 4 KiB).  Dies on failure.
 */
static inline void bench_file_create(bench_file_t *f, uint64_t size, uint64_t seed)
{
	const char *dir = getenv("TMPDIR");
	if (!dir || !*dir)
		dir = "/tmp";
	snprintf(f->path, sizeof f->path, "%s/libvmo-bench-XXXXXX", dir);
	f->fd = mkostemp(f->path, O_CLOEXEC);
	if (f->fd < 0)
		bench_die("mkostemp %s", f->path);
	unlink(f->path); /* nothing left behind, whatever happens */
	f->size = size;
	f->seed = seed;

	const size_t chunk = 1u << 20;
	char *buf = aligned_alloc(BENCH_PAGE, chunk);
	if (!buf)
		bench_die("malloc");
	uint64_t t0 = bench_now_ns();
	for (uint64_t off = 0; off < size; off += chunk) {
		size_t len = size - off < chunk ? (size_t)(size - off) : chunk;
		for (size_t o = 0; o < len; o += BENCH_PAGE)
			bench_pattern_page(buf + o, seed, (off + o) / BENCH_PAGE);
		size_t done = 0;
		while (done < len) {
			ssize_t r = pwrite(f->fd, buf + done, len - done,
					   (off_t)(off + done));
			if (r <= 0)
				bench_die("pwrite %s", f->path);
			done += (size_t)r;
		}
	}
	if (fdatasync(f->fd))
		bench_die("fdatasync");
	uint64_t t1 = bench_now_ns();
	/* read it once: page cache warm, and the file is what we think */
	for (uint64_t off = 0; off < size; off += chunk) {
		size_t len = size - off < chunk ? (size_t)(size - off) : chunk;
		ssize_t r = pread(f->fd, buf, len, (off_t)off);
		if (r != (ssize_t)len)
			bench_die("pread %s", f->path);
		if (bench_verify_pages(buf, seed, off / BENCH_PAGE, NULL,
				       len / BENCH_PAGE))
			bench_die("test file content wrong");
	}
	free(buf);
	/* all of it in the page cache? */
	void *m = mmap(NULL, size, PROT_READ, MAP_SHARED, f->fd, 0);
	if (m == MAP_FAILED)
		bench_die("mmap test file");
	uint64_t np = size / BENCH_PAGE, res = 0;
	unsigned char *vec = malloc(np);
	if (!vec || mincore(m, size, vec))
		bench_die("mincore");
	for (uint64_t i = 0; i < np; i++)
		res += vec[i] & 1;
	free(vec);
	munmap(m, size);
	bench_note("test file %s (unlinked): %" PRIu64 " MiB, %" PRIu64
		   "/%" PRIu64 " pages in page cache, written+synced in %.2f s",
		   f->path, size >> 20, res, np, (double)(t1 - t0) * 1e-9);
	if (res != np)
		bench_note("WARNING: test file not fully in the page cache");
}

static inline void bench_file_close(bench_file_t *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
}

/* ------------------------------------------------ threads and placement */

static inline pid_t bench_gettid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

/* Thread ids of this process (at most max).  Returns how many. */
static inline int bench_tids(pid_t *out, int max)
{
	DIR *d = opendir("/proc/self/task");
	if (!d)
		return 0;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) && n < max)
		if (e->d_name[0] != '.')
			out[n++] = (pid_t)atoi(e->d_name);
	closedir(d);
	return n;
}

/* Threads in now[] that are not in before[]. */
static inline int bench_new_tids(const pid_t *before, int nb, const pid_t *now,
			  int nn, pid_t *out, int max)
{
	int k = 0;
	for (int i = 0; i < nn && k < max; i++) {
		bool old = false;
		for (int j = 0; j < nb && !old; j++)
			old = now[i] == before[j];
		if (!old)
			out[k++] = now[i];
	}
	return k;
}

/* Pin thread tid (0: the caller) to cpu, or to every CPU if cpu < 0. */
static inline void bench_pin(pid_t tid, int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	if (cpu >= 0) {
		CPU_SET(cpu, &set);
	} else {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		for (long i = 0; i < n && i < CPU_SETSIZE; i++)
			CPU_SET(i, &set);
	}
	if (sched_setaffinity(tid, sizeof set, &set))
		bench_die("sched_setaffinity tid %d cpu %d", (int)tid, cpu);
}

/* Context switches (voluntary + involuntary) of thread tid so far. */
static inline uint64_t bench_ctxsw(pid_t tid)
{
	char path[64], line[128];
	snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	uint64_t n = 0;
	while (fgets(line, sizeof line, f)) {
		unsigned long long v;
		if (sscanf(line, "voluntary_ctxt_switches: %llu", &v) == 1 ||
		    sscanf(line, "nonvoluntary_ctxt_switches: %llu", &v) == 1)
			n += v;
	}
	fclose(f);
	return n;
}

/* CPU time thread tid of this process has used so far, ns, and (wait_ns
 * not NULL) the time it spent runnable but waiting for a CPU (from
 * /proc/self/task/<tid>/schedstat; 0 if unavailable). */
static inline uint64_t bench_thread_cpu_ns(pid_t tid, uint64_t *wait_ns)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/self/task/%d/schedstat", (int)tid);
	unsigned long long ns = 0, wt = 0;
	FILE *f = fopen(path, "r");
	if (f) {
		if (fscanf(f, "%llu %llu", &ns, &wt) != 2)
			ns = wt = 0;
		fclose(f);
	}
	if (wait_ns)
		*wait_ns = wt;
	return ns;
}

/* Name thread tid of this process (at most 15 characters), so that
 * perf, top and /proc tell the library's threads apart. */
static inline void bench_name_thread(pid_t tid, const char *name)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/self/task/%d/comm", (int)tid);
	FILE *f = fopen(path, "w");
	if (!f)
		return;
	fputs(name, f);
	fclose(f);
}

/* fork() of this process as it is now: how long the call takes in the
 * parent (the child exits at once; it is waited for after the clock
 * stops).  The copy-on-write baselines of bench_clone and bench_protect. */
static inline double bench_fork_ms(void)
{
	uint64_t t = bench_now_ns();
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	double ms = (double)(bench_now_ns() - t) / 1e6;
	if (pid < 0)
		bench_die("fork: %s", strerror(errno));
	waitpid(pid, NULL, 0);
	return ms;
}

/* Peak resident set of this process, MiB (includes mapped memfd pages,
 * not the page cache of the test files). */
static inline double bench_maxrss_mib(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_maxrss / 1024.0;
}

/*
 * Noise meter.  Machine-wide CPU time from /proc/stat (all CPUs) and this
 * process's own CPU time (getrusage).  Take one snapshot before and one
 * after a section; bench_noise() then says
 *   steal    % of the vCPU time the hypervisor gave to someone else;
 *   foreign  % of the machine's CPU time used by OTHER processes (other
 *            engineers' builds and tests on this shared machine): the
 *            bigger, the less our threads had the 2 vCPUs to themselves.
 */
typedef struct bench_cpustat {
	uint64_t total, steal, idle; /* clock ticks, all CPUs */
	uint64_t self_us;            /* this process, user + system */
	uint64_t user_us;            /* this process, user only */
	uint64_t t_ns;               /* CLOCK_MONOTONIC */
} bench_cpustat_t;

static inline bench_cpustat_t bench_cpustat(void)
{
	bench_cpustat_t c = {0, 0, 0, 0, 0, bench_now_ns()};
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	c.user_us = (uint64_t)ru.ru_utime.tv_sec * 1000000u +
		    (uint64_t)ru.ru_utime.tv_usec;
	c.self_us = (uint64_t)ru.ru_utime.tv_sec * 1000000u +
		    (uint64_t)ru.ru_utime.tv_usec +
		    (uint64_t)ru.ru_stime.tv_sec * 1000000u +
		    (uint64_t)ru.ru_stime.tv_usec;
	FILE *f = fopen("/proc/stat", "r");
	if (!f)
		return c;
	unsigned long long v[10] = {0};
	if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
		   &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7],
		   &v[8], &v[9]) >= 8) {
		for (int i = 0; i < 8; i++)
			c.total += v[i];
		c.steal = v[7];
		c.idle = v[3] + v[4];
	}
	fclose(f);
	return c;
}

/* "steal S% foreign F%" for the interval between snapshots a and b. */
static inline void bench_noise(bench_cpustat_t a, bench_cpustat_t b,
			       char *out, size_t cap)
{
	double hz = (double)sysconf(_SC_CLK_TCK);
	double total = (double)(b.total - a.total);
	double busy = total - (double)(b.idle - a.idle) -
		      (double)(b.steal - a.steal);
	double self = (double)(b.self_us - a.self_us) * 1e-6 * hz;
	double foreign = busy - self;
	if (foreign < 0)
		foreign = 0;
	snprintf(out, cap, "steal %.1f%% foreign %.1f%% (of %.1f CPU-s)",
		 total ? 100.0 * (double)(b.steal - a.steal) / total : 0.0,
		 total ? 100.0 * foreign / total : 0.0, total / hz);
}

#endif /* VMO_BENCHLIB_H */
