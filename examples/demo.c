/*
 * demo.c — libvmo end to end: a 1 GiB file mapped through a write-back
 * file object, read and modified by four threads at once, written back
 * with vmo_sync, checked byte for byte from the file itself, then
 * snapshotted while the mapping keeps being written.
 *
 * What it shows, step by step:
 *
 *   1. A 1 GiB file of deterministic pseudo-random words is written to
 *      $TMPDIR (or /tmp).  Word i of the file is gen(i), a stateless
 *      mixing function, so any word can be checked on its own.
 *   2. A pool, a space (default handler threads) and a VMO_FILE_SHARED
 *      object over the file; the whole object is mapped read-write.
 *   3. Four threads each scan a quarter of the mapping, checking every
 *      8-byte word against gen() — every page they touch is brought in by
 *      libvmo's handler threads from the file — and modify it as they go:
 *      the first word of every 16th page is XORed with a constant, and a
 *      few "marker" pages get a record naming the thread that wrote it.
 *   4. A second scan reads the whole mapping again (now fully mapped: no
 *      faults) and checks that the threads' writes are visible.
 *   5. vmo_sync writes the dirty pages back to the file.
 *   6. The FILE is read back with pread and compared with what it must now
 *      hold, byte for byte over the whole gigabyte.
 *   7. Statistics.
 *   8. A snapshot (vmo_clone, VMO_CLONE_SNAPSHOT) of the whole object is
 *      taken, the live mapping undoes the XOR of every 16th page, and the
 *      snapshot, read with vmo_read, must still show the object as it
 *      was when the snapshot was taken, word for word, while the mapping
 *      shows the new writes: a consistent copy of a live gigabyte without
 *      fork().
 *   9. Timings, cleanup (the file is deleted; the undone XORs are never
 *      synced; the object's last reference writes them to the file just
 *      before it goes).
 *
 * Any mismatch, library error, unexpected signal or a run longer than
 * WATCHDOG_S seconds ends the program with exit status 1 and a message
 * saying what went wrong.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "vmo.h"

#define FILE_SIZE ((uint64_t)1 << 30)
#define CHUNK (1u << 20)              /* file generation / verification */
#define NTHREADS 4
#define PAGE VMO_PAGE_SIZE
#define WORDS_PER_PAGE (PAGE / 8)
#define NPAGES (FILE_SIZE / PAGE)
#define MIN_FREE ((uint64_t)3 << 29)        /* 1.5 GiB */
#define WATCHDOG_S 120

#define SEED 0x6c6962766d6f2121ull    /* "libvmo!!" */
#define XOR_K 0xa5a5f00dcafe5a5aull   /* XORed into word 0 of every 16th page */
#define XOR_EVERY 16
#define MARK_EVERY 509                /* marker pages: page % 509 == 3 */
#define MARK_PHASE 3
#define MARK_WORD 100                 /* the marker occupies words 100..102 */
#define MARK_MAGIC 0x4b52414d00000000ull /* "MARK" in the high half */

/* ------------------------------------------------------------- content */

/* Word i of the original file: splitmix64's finaliser of (i, SEED). */
static inline uint64_t gen(uint64_t i)
{
	uint64_t z = (i + SEED) * 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline unsigned owner_of(uint64_t page)
{
	return (unsigned)(page / (NPAGES / NTHREADS));
}

static inline int is_xor_page(uint64_t page)
{
	return page % XOR_EVERY == 0;
}

static inline int is_mark_page(uint64_t page)
{
	return page % MARK_EVERY == MARK_PHASE;
}

static inline uint64_t mark_word(uint64_t page, unsigned k)
{
	switch (k) {
	case 0:
		return MARK_MAGIC | owner_of(page);
	case 1:
		return page;
	default:
		return ~page ^ SEED;
	}
}

/* Word i of the file after the threads' modifications. */
static inline uint64_t expected(uint64_t i)
{
	uint64_t page = i / WORDS_PER_PAGE;
	unsigned w = (unsigned)(i % WORDS_PER_PAGE);
	if (w == 0 && is_xor_page(page))
		return gen(i) ^ XOR_K;
	if (w >= MARK_WORD && w < MARK_WORD + 3 && is_mark_page(page))
		return mark_word(page, w - MARK_WORD);
	return gen(i);
}

/* ---------------------------------------------------------- reporting */

static char g_path[4096]; /* the data file, deleted on every exit path */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void remove_file(void)
{
	if (g_path[0]) {
		unlink(g_path);
		g_path[0] = 0;
	}
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	fflush(stdout);
	fprintf(stderr, "demo: FAILED: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	remove_file();
	exit(1);
}

/* A libvmo call that must succeed. */
#define VMO_OK(call)                                                        \
	do {                                                                \
		int r_ = (call);                                            \
		if (r_ != 0)                                                \
			die("%s: %s (%d)", #call, vmo_strerror(r_), r_);    \
	} while (0)

static void on_signal(int sig)
{
	static const char bus[] =
		"demo: FAILED: SIGBUS touching the mapping (a page could "
		"not be filled by its pager)\n";
	static const char segv[] = "demo: FAILED: SIGSEGV\n";
	static const char alrm[] =
		"demo: FAILED: watchdog: no progress for too long (a fault "
		"never resolved?)\n";
	const char *m = sig == SIGBUS ? bus : sig == SIGSEGV ? segv : alrm;
	size_t n = sig == SIGBUS ? sizeof bus : sig == SIGSEGV ? sizeof segv
							      : sizeof alrm;
	if (write(2, m, n - 1) < 0) {
		/* nothing left to tell anyone */
	}
	if (g_path[0])
		unlink(g_path);
	_exit(1);
}

static void install_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGALRM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

static const char *human(uint64_t bytes, char *buf, size_t n)
{
	if (bytes >= (1ull << 30))
		snprintf(buf, n, "%.2f GiB", (double)bytes / (1ull << 30));
	else if (bytes >= (1ull << 20))
		snprintf(buf, n, "%.1f MiB", (double)bytes / (1ull << 20));
	else if (bytes >= 1024)
		snprintf(buf, n, "%.1f KiB", (double)bytes / 1024);
	else
		snprintf(buf, n, "%" PRIu64 " B", bytes);
	return buf;
}

static const char *human_ns(uint64_t ns, char *buf, size_t n)
{
	static const char *unit[] = {"ns", "us", "ms", "s"};
	double v = (double)ns;
	unsigned u = 0;
	while (v >= 1000 && u < 3) {
		v /= 1000;
		u++;
	}
	snprintf(buf, n, v < 10 && u ? "%.1f%s" : "%.0f%s", v, unit[u]);
	return buf;
}

static double mbps(uint64_t bytes, double secs)
{
	return secs > 0 ? (double)bytes / 1e6 / secs : 0;
}

/* -------------------------------------------------------- 1. the file */

static void check_space(const char *dir)
{
	struct statvfs sv;
	if (statvfs(dir, &sv) != 0)
		die("statvfs(%s): %s", dir, strerror(errno));
	uint64_t avail = (uint64_t)sv.f_bavail * sv.f_frsize;
	char b[32];
	if (avail < MIN_FREE)
		die("only %s free in %s; the demo needs 1.5 GiB (set TMPDIR "
		    "to a directory with more room)",
		    human(avail, b, sizeof b), dir);
	printf("  %s free in %s\n", human(avail, b, sizeof b), dir);
}

static int make_file(const char *dir)
{
	snprintf(g_path, sizeof g_path, "%s/libvmo-demo-XXXXXX", dir);
	int fd = mkstemp(g_path);
	if (fd < 0) {
		g_path[0] = 0;
		die("mkstemp in %s: %s", dir, strerror(errno));
	}
	uint64_t *buf = malloc(CHUNK);
	if (!buf)
		die("out of memory");
	for (uint64_t off = 0; off < FILE_SIZE; off += CHUNK) {
		uint64_t w0 = off / 8;
		for (uint64_t j = 0; j < CHUNK / 8; j++)
			buf[j] = gen(w0 + j);
		size_t done = 0;
		while (done < CHUNK) {
			ssize_t n = write(fd, (char *)buf + done, CHUNK - done);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				die("writing %s: %s", g_path,
				    n < 0 ? strerror(errno) : "short write");
			done += (size_t)n;
		}
	}
	free(buf);
	return fd;
}

/* ----------------------------------------------- 3/4. the scanning threads */

struct worker {
	pthread_t thread;
	unsigned id;
	uint64_t *base;          /* the mapping */
	int modify;              /* 1: first pass (check gen, modify) */
	/* results */
	uint64_t pages, xored, marked;
	int bad;                 /* a mismatch was found */
	uint64_t bad_word;
	uint64_t bad_want, bad_got;
};

static void *scan(void *arg)
{
	struct worker *w = arg;
	uint64_t lo = (uint64_t)w->id * (NPAGES / NTHREADS);
	uint64_t hi = lo + NPAGES / NTHREADS;
	for (uint64_t pg = lo; pg < hi; pg++) {
		uint64_t *p = w->base + pg * WORDS_PER_PAGE;
		uint64_t i0 = pg * WORDS_PER_PAGE;
		uint64_t diff = 0;
		if (w->modify)
			for (unsigned j = 0; j < WORDS_PER_PAGE; j++)
				diff |= p[j] ^ gen(i0 + j);
		else
			for (unsigned j = 0; j < WORDS_PER_PAGE; j++)
				diff |= p[j] ^ expected(i0 + j);
		if (diff) {
			for (unsigned j = 0; j < WORDS_PER_PAGE; j++) {
				uint64_t want = w->modify ? gen(i0 + j)
							  : expected(i0 + j);
				if (p[j] != want) {
					w->bad = 1;
					w->bad_word = i0 + j;
					w->bad_want = want;
					w->bad_got = p[j];
					return NULL;
				}
			}
		}
		w->pages++;
		if (!w->modify)
			continue;
		if (is_xor_page(pg)) {
			p[0] ^= XOR_K;
			w->xored++;
		}
		if (is_mark_page(pg)) {
			for (unsigned k = 0; k < 3; k++)
				p[MARK_WORD + k] = mark_word(pg, k);
			w->marked++;
		}
	}
	return NULL;
}

static void run_scan(uint64_t *base, int modify, struct worker *ws)
{
	for (unsigned t = 0; t < NTHREADS; t++) {
		memset(&ws[t], 0, sizeof ws[t]);
		ws[t].id = t;
		ws[t].base = base;
		ws[t].modify = modify;
		int r = pthread_create(&ws[t].thread, NULL, scan, &ws[t]);
		if (r)
			die("pthread_create: %s", strerror(r));
	}
	for (unsigned t = 0; t < NTHREADS; t++)
		pthread_join(ws[t].thread, NULL);
	for (unsigned t = 0; t < NTHREADS; t++)
		if (ws[t].bad)
			die("%s scan, thread %u: mapping byte offset %" PRIu64
			    " (page %" PRIu64 ", word %" PRIu64 ") reads "
			    "%016" PRIx64 ", expected %016" PRIx64 " %s",
			    modify ? "first" : "second", t, ws[t].bad_word * 8,
			    ws[t].bad_word / WORDS_PER_PAGE,
			    ws[t].bad_word % WORDS_PER_PAGE, ws[t].bad_got,
			    ws[t].bad_want,
			    modify ? "(the file's original word)"
				   : "(the file's word with this run's "
				     "modifications)");
}

/* ------------------------------------------------- 6. verify the file */

struct verify_result {
	uint64_t pages_plain, pages_modified;
};

static void verify_file(const char *path, struct verify_result *vr)
{
	/* A descriptor of our own: what any other process would read. */
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("open %s: %s", path, strerror(errno));
	uint64_t *got = malloc(CHUNK), *want = malloc(CHUNK);
	if (!got || !want)
		die("out of memory");
	memset(vr, 0, sizeof *vr);
	for (uint64_t off = 0; off < FILE_SIZE; off += CHUNK) {
		size_t done = 0;
		while (done < CHUNK) {
			ssize_t n = pread(fd, (char *)got + done, CHUNK - done,
					  (off_t)(off + done));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				die("pread %s at %" PRIu64 ": %s", path,
				    off + done,
				    n < 0 ? strerror(errno)
					  : "file is shorter than 1 GiB");
			done += (size_t)n;
		}
		uint64_t w0 = off / 8;
		for (uint64_t j = 0; j < CHUNK / 8; j++)
			want[j] = expected(w0 + j);
		if (memcmp(got, want, CHUNK) != 0) {
			for (uint64_t j = 0; j < CHUNK / 8; j++) {
				if (got[j] == want[j])
					continue;
				uint64_t i = w0 + j, pg = i / WORDS_PER_PAGE;
				int mod = is_xor_page(pg) || is_mark_page(pg);
				die("file byte offset %" PRIu64 " (page %" PRIu64
				    ", %s page, word %" PRIu64 ") holds %016" PRIx64
				    ", expected %016" PRIx64 "%s",
				    i * 8, pg, mod ? "modified" : "unmodified",
				    i % WORDS_PER_PAGE, got[j], want[j],
				    got[j] == gen(i) ? " (the original: the write "
						       "was never written back)"
						     : "");
			}
		}
		for (uint64_t pg = off / PAGE; pg < (off + CHUNK) / PAGE; pg++) {
			if (is_xor_page(pg) || is_mark_page(pg))
				vr->pages_modified++;
			else
				vr->pages_plain++;
		}
	}
	free(got);
	free(want);
	close(fd);
}

/* ---------------------------------------------------------- 8. snapshot */

/*
 * Take a snapshot of the whole object, write through the live mapping
 * (word 0 of every XOR page gets its original value back), and check both
 * views: the mapping shows the new words, the snapshot -- read with
 * vmo_read, in 1 MiB calls -- shows expected() everywhere, i.e. the object
 * as it was at the clone.  The snapshot costs nothing until a page is
 * first written; that write keeps the page's pre-image for the snapshot.
 */
static void snapshot_step(vmo_pool_t *pool, vmo_t *obj, void *addr,
			  double *t_snap, double *t_undo, double *t_check)
{
	uint64_t *base = addr;
	vmo_t *snap;
	double t = now_s();
	VMO_OK(vmo_clone(obj, 0, FILE_SIZE, VMO_CLONE_SNAPSHOT, &snap));
	*t_snap = now_s() - t;
	printf("  snapshot of 1 GiB taken in %.2f ms\n", *t_snap * 1e3);

	t = now_s();
	uint64_t undone = 0;
	for (uint64_t pg = 0; pg < NPAGES; pg += XOR_EVERY) {
		base[pg * WORDS_PER_PAGE] ^= XOR_K;
		undone++;
	}
	*t_undo = now_s() - t;
	for (uint64_t pg = 0; pg < NPAGES; pg += XOR_EVERY)
		if (base[pg * WORDS_PER_PAGE] != gen(pg * WORDS_PER_PAGE))
			die("mapping page %" PRIu64 " word 0 reads %016" PRIx64
			    " after the undo, expected %016" PRIx64, pg,
			    base[pg * WORDS_PER_PAGE], gen(pg * WORDS_PER_PAGE));
	printf("  mapping: word 0 of %" PRIu64 " pages written back to the "
	       "original in %.1f ms (first write to each page after the "
	       "snapshot)\n",
	       undone, *t_undo * 1e3);

	t = now_s();
	uint64_t *buf = malloc(CHUNK);
	if (!buf)
		die("out of memory");
	for (uint64_t off = 0; off < FILE_SIZE; off += CHUNK) {
		VMO_OK(vmo_read(snap, off, buf, CHUNK));
		uint64_t i0 = off / 8;
		for (uint64_t j = 0; j < CHUNK / 8; j++)
			if (buf[j] != expected(i0 + j))
				die("snapshot byte offset %" PRIu64 " reads %016"
				    PRIx64 ", expected %016" PRIx64 " (the "
				    "object at the snapshot)", (i0 + j) * 8,
				    buf[j], expected(i0 + j));
	}
	free(buf);
	*t_check = now_s() - t;
	vmo_pool_stats_t ps = {.size = sizeof ps};
	VMO_OK(vmo_pool_stats(pool, &ps));
	printf("  snapshot read back with vmo_read: all 1 GiB as it was at the "
	       "clone (%.2f s, %.0f MB/s)\n",
	       *t_check, mbps(FILE_SIZE, *t_check));
	printf("  pool: %" PRIu64 " pre-images kept for the snapshot, %" PRIu64
	       " pages in %" PRIu64 " hidden node(s)\n",
	       ps.cow_preserved, ps.hidden_pages, ps.hidden_nodes);
	if (ps.cow_preserved < undone)
		die("%" PRIu64 " pre-images kept for %" PRIu64 " written pages",
		    ps.cow_preserved, undone);
	vmo_unref(snap);
	VMO_OK(vmo_pool_stats(pool, &ps));
	printf("  snapshot released: %" PRIu64 " hidden pages left\n",
	       ps.hidden_pages);
	if (ps.hidden_pages)
		die("%" PRIu64 " hidden pages outlive the snapshot",
		    ps.hidden_pages);
}

/* ------------------------------------------------------------- 7. stats */

static void print_space_stats(vmo_space_t *sp)
{
	vmo_space_stats_t st = {.size = sizeof st};
	VMO_OK(vmo_space_stats(sp, &st));
	char b1[32], b2[32];
	printf("  space: %u handler threads, %" PRIu64 " mapping(s), kernel-mode "
	       "faults %s\n",
	       st.handler_threads, st.mappings,
	       st.kernel_faults ? "NOT served" : "served");
	printf("  faults: %" PRIu64 " missing, %" PRIu64 " minor, %" PRIu64
	       " write-protect, %" PRIu64 " spurious (%" PRIu64 " caused by "
	       "writes, %" PRIu64 " waited for another filler)\n",
	       st.faults_missing, st.faults_minor, st.faults_wp,
	       st.faults_spurious, st.faults_write, st.waits);
	uint64_t nf = st.faults_missing + st.faults_minor + st.faults_wp;
	printf("  clusters: %" PRIu64 " faults resolved with more than one "
	       "page; %.1f pages per fault\n",
	       st.clusters, nf ? (double)st.pages_mapped / (double)nf : 0.0);
	printf("  pages: %" PRIu64 " filled (%s), %" PRIu64 " mapped\n",
	       st.pages_filled, human(st.pages_filled * PAGE, b1, sizeof b1),
	       st.pages_mapped);
	printf("  pager: %" PRIu64 " calls, %s (%s per call); %" PRIu64
	       " errors, %" PRIu64 " SIGBUS\n",
	       st.pager_calls, human(st.pager_bytes, b1, sizeof b1),
	       human(st.pager_calls ? st.pager_bytes / st.pager_calls : 0, b2,
		     sizeof b2),
	       st.errors, st.sigbus);
	uint64_t total = 0, maxc = 0;
	for (unsigned i = 0; i < VMO_LAT_BUCKETS; i++) {
		total += st.latency_ns_log2[i];
		if (st.latency_ns_log2[i] > maxc)
			maxc = st.latency_ns_log2[i];
	}
	printf("  fault service time (%" PRIu64 " faults):\n", total);
	uint64_t cum = 0;
	for (unsigned i = 0; i < VMO_LAT_BUCKETS; i++) {
		uint64_t c = st.latency_ns_log2[i];
		if (!c)
			continue;
		cum += c;
		int bar = (int)((c * 40 + maxc - 1) / maxc);
		printf("    %6s - %-6s %8" PRIu64 " %5.1f%% %.*s\n",
		       human_ns(i ? 1ull << i : 0, b1, sizeof b1),
		       human_ns(1ull << (i + 1), b2, sizeof b2), c,
		       100.0 * (double)cum / (double)total, bar,
		       "########################################");
	}
}

static void print_obj_stats(vmo_t *obj, const char *when)
{
	vmo_stats_t os = {.size = sizeof os};
	VMO_OK(vmo_stats(obj, &os));
	char b1[32], b2[32], b3[32];
	printf("  object (%s): %s, %" PRIu64 " resident pages (%s), %" PRIu64
	       " dirty, %" PRIu64 " mapping(s), %" PRIu64 " faults\n",
	       when, human(os.size_bytes, b1, sizeof b1), os.resident_pages,
	       human(os.resident_pages * PAGE, b2, sizeof b2), os.dirty_pages,
	       os.mappings, os.faults);
	printf("    pager reads %" PRIu64 " (%s), writes %" PRIu64
	       " (%s), errors %" PRIu64 "\n",
	       os.pager_reads, human(os.pager_read_bytes, b1, sizeof b1),
	       os.pager_writes, human(os.pager_write_bytes, b3, sizeof b3),
	       os.pager_errors);
}

/* ------------------------------------------------------------------ main */

int main(void)
{
	double t_start = now_s(), t;
	const char *dir = getenv("TMPDIR");
	if (!dir || !*dir)
		dir = "/tmp";
	install_signals();
	alarm(WATCHDOG_S);
	setvbuf(stdout, NULL, _IOLBF, 0);

	printf("libvmo %d.%d demo: a 1 GiB file through a write-back file "
	       "object, 4 threads\n\n",
	       VMO_VERSION_MAJOR, VMO_VERSION_MINOR);

	/* 1 */
	printf("[1] generating the data file\n");
	check_space(dir);
	t = now_s();
	int fd = make_file(dir);
	double t_gen = now_s() - t;
	printf("  wrote %s: 1 GiB of pseudo-random words in 1 MiB chunks, "
	       "%.2f s (%.0f MB/s)\n",
	       g_path, t_gen, mbps(FILE_SIZE, t_gen));

	/* 2 */
	printf("\n[2] pool, space, VMO_FILE_SHARED object, read-write "
	       "mapping\n");
	t = now_s();
	vmo_pool_t *pool;
	vmo_space_t *sp;
	vmo_t *obj;
	void *addr = NULL;
	VMO_OK(vmo_pool_create(NULL, &pool));
	VMO_OK(vmo_space_create(pool, NULL, &sp));
	VMO_OK(vmo_create_file(pool, fd, 0, FILE_SIZE, VMO_FILE_SHARED, &obj));
	VMO_OK(vmo_map(sp, obj, 0, FILE_SIZE, PROT_READ | PROT_WRITE, 0, &addr));
	double t_setup = now_s() - t;
	printf("  mapped 1 GiB at %p in %.1f ms (nothing is read yet: pages "
	       "come in on first touch)\n",
	       addr, t_setup * 1e3);

	/* 3 */
	printf("\n[3] %d threads scan their quarter through the mapping, "
	       "check every word, modify as they go\n",
	       NTHREADS);
	struct worker ws[NTHREADS];
	t = now_s();
	run_scan(addr, 1, ws);
	double t_scan = now_s() - t;
	uint64_t xored = 0, marked = 0, pages = 0;
	for (unsigned i = 0; i < NTHREADS; i++) {
		printf("  thread %u: pages %7" PRIu64 "-%7" PRIu64 " checked, "
		       "%" PRIu64 " XORed, %" PRIu64 " marked\n",
		       i, (uint64_t)i * (NPAGES / NTHREADS),
		       (uint64_t)(i + 1) * (NPAGES / NTHREADS) - 1,
		       ws[i].xored, ws[i].marked);
		xored += ws[i].xored;
		marked += ws[i].marked;
		pages += ws[i].pages;
	}
	if (pages != NPAGES)
		die("scanned %" PRIu64 " pages, expected %" PRIu64, pages,
		    (uint64_t)NPAGES);
	uint64_t modified = 0;
	for (uint64_t pg = 0; pg < NPAGES; pg++)
		modified += is_xor_page(pg) || is_mark_page(pg);
	printf("  all %" PRIu64 " words read through the mapping equal the "
	       "file's: %.2f s, %.0f MB/s\n",
	       FILE_SIZE / 8, t_scan, mbps(FILE_SIZE, t_scan));
	printf("  %" PRIu64 " pages modified (%" PRIu64 " XORed, %" PRIu64
	       " marked)\n",
	       modified, xored, marked);
	vmo_space_stats_t st1 = {.size = sizeof st1};
	VMO_OK(vmo_space_stats(sp, &st1));

	/* 4 */
	printf("\n[4] second scan: every page is now mapped; the writes must "
	       "be visible\n");
	t = now_s();
	run_scan(addr, 0, ws);
	double t_rescan = now_s() - t;
	vmo_space_stats_t st2 = {.size = sizeof st2};
	VMO_OK(vmo_space_stats(sp, &st2));
	uint64_t f1 = st1.faults_missing + st1.faults_minor + st1.faults_wp;
	uint64_t f2 = st2.faults_missing + st2.faults_minor + st2.faults_wp;
	printf("  all words as expected: %.2f s, %.0f MB/s, %" PRIu64
	       " faults (first scan: %" PRIu64 ")\n",
	       t_rescan, mbps(FILE_SIZE, t_rescan), f2 - f1, f1);

	/* 5 */
	printf("\n[5] vmo_sync: write the dirty pages back to the file\n");
	uint64_t before;
	if (pread(fd, &before, sizeof before, 0) != sizeof before)
		die("pread %s: %s", g_path, strerror(errno));
	printf("  before: file page 0 word 0 is %s\n",
	       before == gen(0) ? "still the original (changes live in the "
				  "object until write-back)"
				: "already modified");
	print_obj_stats(obj, "before sync");
	printf("  (writes through mappings are logged by the kernel and "
	       "counted as dirty when vmo_sync harvests them)\n");
	t = now_s();
	VMO_OK(vmo_sync(obj, 0, FILE_SIZE));
	double t_sync = now_s() - t;
	vmo_stats_t os = {.size = sizeof os};
	VMO_OK(vmo_stats(obj, &os));
	printf("  synced in %.1f ms: %" PRIu64 " pages written back for %" PRIu64
	       " modified pages%s\n",
	       t_sync * 1e3, os.pager_write_bytes / PAGE, modified,
	       os.pager_write_bytes / PAGE == modified
		       ? " (exact: only written pages)"
		       : " (write tracking is page-coarse or absent)");
	if (os.pager_write_bytes / PAGE < modified)
		die("vmo_sync wrote back %" PRIu64 " pages, fewer than the %" PRIu64
		    " modified", os.pager_write_bytes / PAGE, modified);
	if (os.dirty_pages)
		die("%" PRIu64 " pages still dirty after vmo_sync",
		    os.dirty_pages);

	/* 6 */
	printf("\n[6] verify the file with pread (a separate descriptor), byte "
	       "for byte\n");
	struct verify_result vr;
	t = now_s();
	verify_file(g_path, &vr);
	double t_verify = now_s() - t;
	printf("  %" PRIu64 " unmodified pages equal the generator, %" PRIu64
	       " modified pages hold exactly the modifications\n",
	       vr.pages_plain, vr.pages_modified);
	printf("  1 GiB compared in %.2f s (%.0f MB/s)\n", t_verify,
	       mbps(FILE_SIZE, t_verify));

	/* 7 */
	printf("\n[7] statistics\n");
	print_space_stats(sp);
	print_obj_stats(obj, "after sync");

	/* 8 */
	printf("\n[8] snapshot: vmo_clone(VMO_CLONE_SNAPSHOT) of the whole "
	       "object, then the mapping undoes its XORs\n");
	double t_snap, t_undo, t_check;
	snapshot_step(pool, obj, addr, &t_snap, &t_undo, &t_check);

	t = now_s();
	VMO_OK(vmo_unmap(sp, addr, FILE_SIZE));
	vmo_unref(obj);
	vmo_pool_stats_t ps = {.size = sizeof ps};
	VMO_OK(vmo_pool_stats(pool, &ps));
	vmo_space_destroy(sp);
	vmo_pool_destroy(pool);
	close(fd);
	remove_file();
	double t_clean = now_s() - t;
	if (ps.objects != 0 || ps.writeback_errors != 0)
		die("after cleanup the pool still counts %" PRIu64 " objects, %"
		    PRIu64 " write-back errors", ps.objects, ps.writeback_errors);
	printf("  pool after unref: %" PRIu64 " objects, %" PRIu64
	       " resident pages, %" PRIu64 " write-back errors\n",
	       ps.objects, ps.resident_pages, ps.writeback_errors);

	double total = now_s() - t_start;
	printf("\ntimings: generate %.2f s | setup %.1f ms | scan+modify %.2f s "
	       "(%.0f MB/s) | rescan %.2f s (%.0f MB/s) | sync %.1f ms | verify "
	       "%.2f s | snapshot %.1f ms, undo %.1f ms, check %.2f s | "
	       "cleanup %.1f ms | total %.2f s\n",
	       t_gen, t_setup * 1e3, t_scan, mbps(FILE_SIZE, t_scan), t_rescan,
	       mbps(FILE_SIZE, t_rescan), t_sync * 1e3, t_verify,
	       t_snap * 1e3, t_undo * 1e3, t_check, t_clean * 1e3, total);
	printf("demo: OK\n");
	return 0;
}
