/*
 * bench_fault — what a page fault through libvmo costs, next to what the
 * same work costs without the library.  Output format: bench/benchlib.h;
 * results and analysis: docs/PERFORMANCE.md.
 *
 *   fault-4k-random   random 4 KiB read faults on a file-backed object
 *                     (VMO_FILE_PRIVATE, 256 MiB file in the page cache,
 *                     20000 distinct pages in a shuffled order,
 *                     VMO_ADV_RANDOM; the stats are checked: one page per
 *                     fault), ns/page, against a minimal raw userfaultfd
 *                     loop in this program: one handler thread blocked in
 *                     read() on a uffd (UFFD_FEATURE_MISSING_SHMEM), the
 *                     region a MAP_SHARED mapping of a fresh memfd
 *                     registered MISSING, each fault resolved by pread() of
 *                     the same 4 KiB of the same file into a buffer and
 *                     UFFDIO_COPY; same pages, same order.  libvmo runs
 *                     with handler_threads=1 (the baseline's thread layout)
 *                     and, second line, with the default handler count.
 *                     Target: ratio <= 1.15.  Extra lines pin the faulting
 *                     thread and the handler to the same vCPU or to
 *                     different vCPUs (both sides alike): the two modes of
 *                     the bimodal round trip (shared/limits/RESULTS.md).
 *   fault-seq         first sequential read of a 1 GiB file-backed object,
 *                     one byte per page, ns/page, against the kernel's own
 *                     first-touch anonymous fault (MAP_PRIVATE|MAP_ANONYMOUS
 *                     1 GiB, MADV_NOHUGEPAGE, one byte written per page).
 *                     Default (adaptive) advice, and VMO_ADV_SEQUENTIAL.
 *                     Default handler count.  Target: ratio <= 1.0.  Extra
 *                     lines: the same fill by a raw one-handler uffd loop in
 *                     2 MiB clusters with the library's mechanism (pread +
 *                     UFFDIO_COPY) and two others (pread + pwrite into the
 *                     memfd + UFFDIO_CONTINUE; sendfile file -> memfd +
 *                     UFFDIO_CONTINUE).
 *   fault-scaling     two faulting threads on disjoint halves of a 256 MiB
 *                     mapping, random 4 KiB read faults (65536 faults),
 *                     faults/s with 2 handler threads vs 1, ratio = 2/1.
 *                     File object (pread + UFFDIO_COPY) and, second line,
 *                     anonymous object (UFFDIO_ZEROPAGE); then the same two
 *                     with raw uffd loops.  Target >= 1.7.  Diagnostic
 *                     lines (same 1-handler baselines): libvmo with the
 *                     halves mapped in two spaces of one handler each
 *                     (two uffds), unpinned and pinned in pairs; raw with
 *                     one uffd per handler, pinned in pairs; raw with one
 *                     uffd and 2 handlers waiting in epoll EPOLLEXCLUSIVE.
 *   components        (stderr only) null syscall, pread 4 KiB, UFFDIO_COPY
 *                     and UFFDIO_ZEROPAGE 4 KiB timed alone.
 *
 * Every comparison interleaves its variants round by round (A B C A B C ...;
 * the order rotates each round) and reports medians.  Each round maps a
 * fresh region and starts fresh handler threads, so each round draws its
 * own thread placement.  Contents are verified after every round (outside
 * the timed part).  Per-round values, libvmo statistics, handler service
 * times and context switches, and the machine noise during the round
 * (steal, CPU used by other processes) go to stderr as "# " lines.
 *
 * Rounds: fault-4k-random 7 (pinned variants 5, on the first 10000 pages
 * of the same order), fault-seq 5, fault-scaling 5; the diagnostic
 * variants of fault-seq and fault-scaling run in the first 3 rounds only.
 * Environment: BENCH_ONLY=random,seq,scaling (default all), BENCH_ROUNDS=n
 * (override every round count), BENCH_NO_EXTRA=1 (skip the diagnostic
 * lines of fault-seq and fault-scaling).  TMPDIR for the test
 * files (default /tmp; unlinked at once, see benchlib.h).
 * Run time 76-117 s in the runs of docs/PERFORMANCE.md (more when other
 * processes load the machine).  Peak memory about 2.3 GiB: the 1 GiB test
 * file in the page cache + a 1 GiB object (memfd); peak RSS 1.03 GiB.
 */
#include "benchlib.h"
#include "vmo.h"
#include "../src/sys/uapi.h"

#include <poll.h>
#include <sys/epoll.h>
#include <pthread.h>
#include <sys/sendfile.h>
#include <sys/stat.h>

#define PG ((uint64_t)BENCH_PAGE)
#define NLAT 32

static vmo_pool_t *g_pool;
static volatile uint64_t g_sink;
static int g_ncpu;

/* --------------------------------------------------------- faulting side */

/*
 * Thread placement on the 2 vCPUs.
 *   PIN_NONE   nobody pinned: the scheduler decides (the normal case)
 *   PIN_SAME   faulting thread(s) and handler(s) all on CPU 0
 *   PIN_DIFF   faulting thread on CPU 0, handler(s) on CPU 1
 *   PIN_PAIRS  faulting thread i and handler i (or the handler of space /
 *              uffd i) on CPU i
 */
enum pin { PIN_NONE, PIN_SAME, PIN_DIFF, PIN_PAIRS };
static const char *pin_name[] = {"unpinned", "samecpu", "diffcpu", "pairs"};

static int handler_cpu(enum pin p, int i)
{
	switch (p) {
	case PIN_SAME:
		return 0;
	case PIN_DIFF:
		return 1;
	case PIN_PAIRS:
		return i % g_ncpu;
	default:
		return -1;
	}
}

static int faulter_cpu(enum pin p, int i)
{
	return p == PIN_NONE ? -1 : p == PIN_PAIRS ? i % g_ncpu : 0;
}

/* Read one byte of each listed page (pages NULL: pages 0..n-1 in order). */
static void touch_pages(const char *base, const uint32_t *pages, size_t n)
{
	uint64_t s = 0;
	if (pages)
		for (size_t i = 0; i < n; i++)
			s += *(volatile const unsigned char *)(base +
							       pages[i] * PG);
	else
		for (size_t i = 0; i < n; i++)
			s += *(volatile const unsigned char *)(base + i * PG);
	g_sink += s;
}

struct faulter {
	const char *base;
	const uint32_t *pages;
	size_t n;
	int cpu;
	pthread_barrier_t *bar;
	pthread_t th;
};

static void *faulter_main(void *arg)
{
	struct faulter *f = arg;
	if (f->cpu >= 0)
		bench_pin(0, f->cpu);
	pthread_barrier_wait(f->bar);
	touch_pages(f->base, f->pages, f->n);
	return NULL;
}

/*
 * Fault the listed pages with nf threads (1: the calling thread itself;
 * 2: two new threads, thread i takes half i of the list).  Returns wall ns.
 */
static uint64_t run_faulters(const char *base, const uint32_t *pages,
			     size_t n, int nf, enum pin pin)
{
	if (nf == 1) {
		if (faulter_cpu(pin, 0) >= 0)
			bench_pin(0, faulter_cpu(pin, 0));
		uint64_t t0 = bench_now_ns();
		touch_pages(base, pages, n);
		uint64_t t1 = bench_now_ns();
		if (faulter_cpu(pin, 0) >= 0)
			bench_pin(0, -1);
		return t1 - t0;
	}
	if (!pages || nf > 2)
		bench_die("run_faulters: unsupported split");
	pthread_barrier_t bar;
	struct faulter f[2];
	pthread_barrier_init(&bar, NULL, (unsigned)nf + 1);
	for (int i = 0; i < nf; i++) {
		size_t lo = n * (size_t)i / (size_t)nf;
		size_t hi = n * (size_t)(i + 1) / (size_t)nf;
		f[i] = (struct faulter){base, pages + lo, hi - lo,
					faulter_cpu(pin, i), &bar, 0};
		if (pthread_create(&f[i].th, NULL, faulter_main, &f[i]))
			bench_die("pthread_create");
	}
	usleep(1000);
	pthread_barrier_wait(&bar);
	uint64_t t0 = bench_now_ns();
	for (int i = 0; i < nf; i++)
		pthread_join(f[i].th, NULL);
	uint64_t t1 = bench_now_ns();
	pthread_barrier_destroy(&bar);
	return t1 - t0;
}

/* What one round measured besides its time. */
struct rinfo {
	double ns_per_page;
	uint64_t pages;      /* pages touched */
	uint64_t faults;     /* faults the handlers saw */
	uint64_t hsw;        /* handler context switches during the run */
	uint64_t svc_ns;     /* raw only: exact sum of service times */
	uint64_t lat[NLAT];  /* service time histogram, log2 ns */
	vmo_space_stats_t st; /* libvmo only (summed over spaces) */
	bool is_vmo;
	char noise[128];     /* machine noise during the timed part */
	double user_ns, sys_ns; /* this process's CPU time during the timed
				   part, per fault (all threads) */
};

static void cpu_per_fault(struct rinfo *ri, bench_cpustat_t a,
			  bench_cpustat_t b)
{
	if (!ri->faults)
		return;
	double u = (double)(b.user_us - a.user_us) * 1e3;
	double t = (double)(b.self_us - a.self_us) * 1e3;
	ri->user_ns = u / (double)ri->faults;
	ri->sys_ns = (t - u) / (double)ri->faults;
}

static unsigned log2_bucket(uint64_t ns)
{
	if (ns < 2)
		return 0;
	unsigned b = 63u - (unsigned)__builtin_clzll(ns);
	return b < NLAT ? b : NLAT - 1;
}

/* Mean of a log2 histogram, each bucket [2^i, 2^(i+1)) taken at 1.5*2^i
 * (an estimate: libvmo only exports the histogram). */
static double hist_mean(const uint64_t *lat)
{
	double s = 0, n = 0;
	for (int i = 0; i < NLAT; i++) {
		s += (double)lat[i] * 1.5 * (double)(1ull << i);
		n += (double)lat[i];
	}
	return n ? s / n : 0;
}

static void hist_str(const uint64_t *lat, char *out, size_t cap)
{
	size_t o = 0;
	out[0] = 0;
	for (int i = 0; i < NLAT && o + 32 < cap; i++)
		if (lat[i])
			o += (size_t)snprintf(out + o, cap - o, " 2^%d:%" PRIu64,
					      i, lat[i]);
}

/* -------------------------------------------------- raw userfaultfd loop */

enum raw_mode {
	RAW_COPY,     /* pread into a buffer + UFFDIO_COPY */
	RAW_ZERO,     /* UFFDIO_ZEROPAGE (anonymous) */
	RAW_PWCONT,   /* pread + pwrite into the memfd + UFFDIO_CONTINUE */
	RAW_SFCONT,   /* sendfile file -> memfd + UFFDIO_CONTINUE */
};

struct raw_cfg {
	const bench_file_t *f; /* backing file; NULL with RAW_ZERO */
	uint64_t len;
	enum raw_mode mode;
	uint64_t cluster;      /* bytes resolved per fault (aligned) */
	int nh;                /* handler threads (1 or 2) */
	enum pin pin;
	bool per_uffd;         /* one uffd per handler, uffd i registered on
				  part i of the region (else one shared uffd) */
	bool epollx;           /* handlers wait in their own epoll with
				  EPOLLEXCLUSIVE instead of a blocking read */
};

struct raw_srv;
struct raw_h {
	struct raw_srv *s;
	pthread_t th;
	pid_t tid;
	int uffd, ep;
	void *buf;
	uint64_t faults, svc_ns;
	uint64_t lat[NLAT];
};

struct raw_srv {
	struct raw_cfg c;
	int memfd;
	char *base;
	struct raw_h h[2];
};

static void raw_wake(int uffd, uint64_t a, uint64_t len)
{
	struct uffdio_range r = {.start = a, .len = len};
	ioctl(uffd, UFFDIO_WAKE, &r);
}

static void pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	while (done < len) {
		ssize_t r = pread(fd, (char *)buf + done, len - done,
				  (off_t)(off + done));
		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			bench_die("pread");
		}
		done += (size_t)r;
	}
}

static void raw_resolve(struct raw_srv *s, struct raw_h *h, uint64_t a,
			uint64_t off, uint64_t len)
{
	int r, fd = s->c.f ? s->c.f->fd : -1;
	switch (s->c.mode) {
	case RAW_COPY: {
		pread_full(fd, h->buf, len, off);
		struct uffdio_copy c = {.dst = a, .src = (uintptr_t)h->buf,
					.len = len, .mode = 0};
		r = ioctl(h->uffd, UFFDIO_COPY, &c);
		break;
	}
	case RAW_ZERO: {
		struct uffdio_zeropage z = {.range = {a, len}, .mode = 0};
		r = ioctl(h->uffd, UFFDIO_ZEROPAGE, &z);
		break;
	}
	case RAW_PWCONT:
	case RAW_SFCONT: {
		if (s->c.mode == RAW_PWCONT) {
			pread_full(fd, h->buf, len, off);
			size_t done = 0;
			while (done < len) {
				ssize_t w = pwrite(s->memfd,
						   (char *)h->buf + done,
						   len - done,
						   (off_t)(off + done));
				if (w <= 0)
					bench_die("pwrite memfd");
				done += (size_t)w;
			}
		} else {
			/* one handler thread only: the memfd offset is ours */
			off_t in = (off_t)off;
			if (lseek(s->memfd, (off_t)off, SEEK_SET) < 0)
				bench_die("lseek");
			size_t done = 0;
			while (done < len) {
				ssize_t w = sendfile(s->memfd, fd, &in,
						     len - done);
				if (w <= 0)
					bench_die("sendfile");
				done += (size_t)w;
			}
		}
		struct uffdio_continue c = {.range = {a, len}, .mode = 0};
		r = ioctl(h->uffd, UFFDIO_CONTINUE, &c);
		break;
	}
	default:
		r = -1;
		errno = EINVAL;
	}
	if (r) {
		if (errno == EEXIST)
			raw_wake(h->uffd, a, len);
		else
			bench_die("raw uffd resolve (mode %d)", (int)s->c.mode);
	}
}

static void *raw_handler(void *arg)
{
	struct raw_h *h = arg;
	struct raw_srv *s = h->s;
	struct uffd_msg msgs[16];
	__atomic_store_n(&h->tid, bench_gettid(), __ATOMIC_RELEASE);
	for (;;) {
		if (h->ep >= 0) {
			struct epoll_event ev;
			if (epoll_wait(h->ep, &ev, 1, -1) < 0 && errno != EINTR)
				bench_die("epoll_wait");
		}
		ssize_t n = read(h->uffd, msgs, sizeof msgs);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			bench_die("read uffd");
		}
		uint64_t t0 = bench_now_ns();
		for (size_t i = 0; i < (size_t)n / sizeof msgs[0]; i++) {
			if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
				continue;
			/* clusters are aligned to the region, which need
			 * not be aligned to the cluster size */
			uint64_t off = (msgs[i].arg.pagefault.address -
					(uintptr_t)s->base) &
				       ~(s->c.cluster - 1);
			uint64_t a = (uintptr_t)s->base + off;
			uint64_t len = s->c.cluster;
			if (off + len > s->c.len)
				len = s->c.len - off;
			raw_resolve(s, h, a, off, len);
			uint64_t dt = bench_now_ns() - t0;
			h->faults++;
			h->svc_ns += dt;
			h->lat[log2_bucket(dt)]++;
		}
	}
	return NULL;
}

static int raw_uffd(const struct raw_cfg *c, void *addr, uint64_t len)
{
	bool cont = c->mode == RAW_PWCONT || c->mode == RAW_SFCONT;
	int fd = (int)syscall(SYS_userfaultfd,
			      O_CLOEXEC | (c->epollx ? O_NONBLOCK : 0));
	if (fd < 0)
		bench_die("userfaultfd");
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_MISSING_SHMEM |
			    (cont ? UFFD_FEATURE_MINOR_SHMEM : 0)};
	if (ioctl(fd, UFFDIO_API, &api))
		bench_die("UFFDIO_API");
	struct uffdio_register reg = {
		.range = {(uintptr_t)addr, len},
		.mode = UFFDIO_REGISTER_MODE_MISSING |
			(cont ? UFFDIO_REGISTER_MODE_MINOR : 0)};
	if (ioctl(fd, UFFDIO_REGISTER, &reg))
		bench_die("UFFDIO_REGISTER");
	return fd;
}

/*
 * One raw round: fresh memfd + MAP_SHARED mapping + uffd(s) + handler
 * threads; fault `pages` (n of them) with nf threads; verify; tear down.
 * Returns ns per touched page.
 */
static double raw_round(const struct raw_cfg *c, const uint32_t *pages,
			size_t n, int nf, struct rinfo *ri)
{
	struct raw_srv s;
	memset(&s, 0, sizeof s);
	s.c = *c;
	s.memfd = memfd_create("bench-raw", MFD_CLOEXEC);
	if (s.memfd < 0 || ftruncate(s.memfd, (off_t)c->len))
		bench_die("memfd");
	s.base = mmap(NULL, c->len, PROT_READ, MAP_SHARED | MAP_NORESERVE,
		      s.memfd, 0);
	if (s.base == MAP_FAILED)
		bench_die("mmap memfd");
	int nu = c->per_uffd ? c->nh : 1;
	for (int i = 0; i < nu; i++) {
		uint64_t lo = c->len / (uint64_t)nu * (uint64_t)i;
		uint64_t hi = i == nu - 1 ? c->len
					  : c->len / (uint64_t)nu * (uint64_t)(i + 1);
		s.h[i].uffd = raw_uffd(c, s.base + lo, hi - lo);
	}
	for (int i = 0; i < c->nh; i++) {
		struct raw_h *h = &s.h[i];
		h->s = &s;
		if (!c->per_uffd)
			h->uffd = s.h[0].uffd;
		h->ep = -1;
		if (c->epollx) {
			h->ep = epoll_create1(EPOLL_CLOEXEC);
			struct epoll_event ev = {.events = EPOLLIN |
							   EPOLLEXCLUSIVE};
			if (h->ep < 0 ||
			    epoll_ctl(h->ep, EPOLL_CTL_ADD, h->uffd, &ev))
				bench_die("epoll");
		}
		if (posix_memalign(&h->buf, PG, c->cluster))
			bench_die("posix_memalign");
		memset(h->buf, 0, c->cluster);
		if (pthread_create(&h->th, NULL, raw_handler, h))
			bench_die("pthread_create");
		while (!__atomic_load_n(&h->tid, __ATOMIC_ACQUIRE))
			usleep(100);
		if (c->pin != PIN_NONE)
			bench_pin(h->tid, handler_cpu(c->pin, i));
	}
	usleep(2000); /* handlers asleep */

	uint64_t sw0 = 0, sw1 = 0;
	for (int i = 0; i < c->nh; i++)
		sw0 += bench_ctxsw(s.h[i].tid);
	bench_cpustat_t c0 = bench_cpustat();
	uint64_t dt = run_faulters(s.base, pages, n, nf, c->pin);
	bench_cpustat_t c1 = bench_cpustat();
	for (int i = 0; i < c->nh; i++)
		sw1 += bench_ctxsw(s.h[i].tid);

	memset(ri, 0, sizeof *ri);
	bench_noise(c0, c1, ri->noise, sizeof ri->noise);
	ri->ns_per_page = (double)dt / (double)n;
	ri->pages = n;
	ri->hsw = sw1 - sw0;
	for (int i = 0; i < c->nh; i++) {
		struct raw_h *h = &s.h[i];
		pthread_cancel(h->th);
		pthread_join(h->th, NULL);
		ri->faults += h->faults;
		ri->svc_ns += h->svc_ns;
		for (int b = 0; b < NLAT; b++)
			ri->lat[b] += h->lat[b];
		free(h->buf);
		if (h->ep >= 0)
			close(h->ep);
	}
	cpu_per_fault(ri, c0, c1);
	if (c->f && pages &&
	    bench_verify_pages(s.base, c->f->seed, 0, pages, n))
		bench_die("raw round: wrong content");
	if (c->f && !pages) {
		/* a diagnostic sequential fill: check every 7th page */
		for (size_t i = 0; i < n; i += 7)
			if (!bench_page_ok(s.base + i * PG, c->f->seed, i))
				bench_die("raw round: wrong content, page %zu",
					  i);
	}
	for (int i = 0; i < nu; i++)
		close(s.h[i].uffd);
	munmap(s.base, c->len);
	close(s.memfd);
	return ri->ns_per_page;
}

/* ------------------------------------------------------------ libvmo side */

struct vmo_cfg {
	const bench_file_t *f; /* NULL: anonymous object */
	uint64_t len;
	unsigned nh;           /* handler threads per space, 0 = default */
	int advice;            /* vmo_advise for the mapping, -1: none */
	enum pin pin;
	int nspaces;           /* 1, or 2: half i of the object mapped in
				  space i, the halves adjacent (one range) */
};

/*
 * One libvmo round: fresh space(s), a fresh object (file-backed
 * VMO_FILE_PRIVATE, or anonymous), mapped PROT_READ, advice, fault `pages`
 * with nf threads, verify, tear down.  Returns ns per touched page.
 */
static double vmo_round(const struct vmo_cfg *c, const uint32_t *pages,
			size_t n, int nf, struct rinfo *ri)
{
	const int ns = c->nspaces;
	vmo_space_t *sp[2];
	pid_t htid[2][64];
	int nht[2];
	for (int k = 0; k < ns; k++) {
		pid_t before[128], after[128];
		int nb = bench_tids(before, 128);
		vmo_space_options_t o;
		memset(&o, 0, sizeof o);
		o.size = sizeof o;
		o.handler_threads = c->nh;
		bench_ok(vmo_space_create(g_pool, &o, &sp[k]));
		int na = bench_tids(after, 128);
		nht[k] = bench_new_tids(before, nb, after, na, htid[k], 64);
	}

	vmo_t *obj;
	if (c->f)
		bench_ok(vmo_create_file(g_pool, c->f->fd, 0, c->len,
					 VMO_FILE_PRIVATE, &obj));
	else
		bench_ok(vmo_create(g_pool, c->len, 0, &obj));
	void *addr = NULL, *resv = NULL;
	if (ns == 1) {
		bench_ok(vmo_map(sp[0], obj, 0, c->len, PROT_READ, 0, &addr));
	} else {
		/* reserve the range, then map the halves into it */
		resv = mmap(NULL, c->len, PROT_NONE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (resv == MAP_FAILED)
			bench_die("mmap reserve");
		for (int k = 0; k < ns; k++) {
			void *a = (char *)resv + c->len / 2 * (uint64_t)k;
			bench_ok(vmo_map(sp[k], obj, c->len / 2 * (uint64_t)k,
					 c->len / 2, PROT_READ, VMO_MAP_FIXED,
					 &a));
		}
		addr = resv;
	}
	if (c->advice >= 0)
		for (int k = 0; k < ns; k++)
			bench_ok(vmo_advise(sp[k],
					    (char *)addr + c->len / (uint64_t)ns *
								   (uint64_t)k,
					    c->len / (uint64_t)ns, c->advice));
	if (c->pin != PIN_NONE)
		for (int k = 0; k < ns; k++)
			for (int i = 0; i < nht[k]; i++)
				bench_pin(htid[k][i],
					  handler_cpu(c->pin, ns > 1 ? k : i));
	usleep(2000);

	uint64_t sw0 = 0, sw1 = 0;
	for (int k = 0; k < ns; k++)
		for (int i = 0; i < nht[k]; i++)
			sw0 += bench_ctxsw(htid[k][i]);
	bench_cpustat_t c0 = bench_cpustat();
	uint64_t dt = run_faulters(addr, pages, n, nf, c->pin);
	bench_cpustat_t c1 = bench_cpustat();
	for (int k = 0; k < ns; k++)
		for (int i = 0; i < nht[k]; i++)
			sw1 += bench_ctxsw(htid[k][i]);
	usleep(1000); /* let the handlers finish their counters (the faulting
			 thread is woken before they are updated) */

	memset(ri, 0, sizeof *ri);
	bench_noise(c0, c1, ri->noise, sizeof ri->noise);
	ri->is_vmo = true;
	ri->ns_per_page = (double)dt / (double)n;
	ri->pages = n;
	ri->hsw = sw1 - sw0;
	for (int k = 0; k < ns; k++) {
		vmo_space_stats_t st;
		st.size = sizeof st;
		bench_ok(vmo_space_stats(sp[k], &st));
		/* the handlers plus the read-ahead worker */
		if ((int)st.handler_threads + 1 != nht[k])
			bench_note("WARNING: %d new threads, %u handler threads",
				   nht[k], st.handler_threads);
		ri->st.handler_threads += st.handler_threads;
		ri->st.faults_missing += st.faults_missing;
		ri->st.faults_minor += st.faults_minor;
		ri->st.faults_wp += st.faults_wp;
		ri->st.faults_spurious += st.faults_spurious;
		ri->st.pages_filled += st.pages_filled;
		ri->st.pages_mapped += st.pages_mapped;
		ri->st.clusters += st.clusters;
		ri->st.pager_calls += st.pager_calls;
		ri->st.waits += st.waits;
		ri->st.pages_readahead += st.pages_readahead;
		ri->st.errors += st.errors;
		for (int b = 0; b < NLAT && b < VMO_LAT_BUCKETS; b++)
			ri->lat[b] += st.latency_ns_log2[b];
	}
	ri->faults = ri->st.faults_missing + ri->st.faults_minor +
		     ri->st.faults_wp;
	cpu_per_fault(ri, c0, c1);
	if (c->f) {
		if (bench_verify_pages(addr, c->f->seed, 0, pages, n))
			bench_die("libvmo round: wrong content");
	} else {
		/* anonymous: the touched pages read as zeros */
		uint64_t bad = 0;
		for (size_t i = 0; i < n; i++) {
			const uint64_t *p =
				(const uint64_t *)((const char *)addr +
						   (pages ? pages[i] : i) * PG);
			bad += p[0] != 0 || p[PG / 8 - 1] != 0;
		}
		if (bad)
			bench_die("libvmo round: anonymous page not zero");
	}
	for (int k = 0; k < ns; k++)
		bench_ok(vmo_unmap(sp[k],
				   (char *)addr + c->len / (uint64_t)ns * (uint64_t)k,
				   c->len / (uint64_t)ns));
	if (resv)
		munmap(resv, c->len);
	vmo_unref(obj);
	for (int k = 0; k < ns; k++)
		vmo_space_destroy(sp[k]);
	return ri->ns_per_page;
}

static void note_rinfo(const char *what, int round, const struct rinfo *ri)
{
	char h[512];
	hist_str(ri->lat, h, sizeof h);
	double svc = ri->svc_ns && ri->faults
			     ? (double)ri->svc_ns / (double)ri->faults
			     : hist_mean(ri->lat);
	bench_note("%-30s r%d %9.1f ns/page  faults %" PRIu64
		   "  handler ctxsw/fault %.2f  service %s%.0f ns  cpu/fault "
		   "user %.0f sys %.0f ns  [%s]",
		   what, round, ri->ns_per_page, ri->faults,
		   ri->faults ? (double)ri->hsw / (double)ri->faults : 0.0,
		   ri->svc_ns ? "" : "~", svc, ri->user_ns, ri->sys_ns,
		   ri->noise);
	bench_note("%-30s r%d service-time histogram:%s", what, round, h);
	if (ri->is_vmo)
		bench_note("%-30s r%d stats: missing %" PRIu64 " minor %" PRIu64
			   " spurious %" PRIu64 " pages_filled %" PRIu64
			   " pages_mapped %" PRIu64 " clusters %" PRIu64
			   " pager_calls %" PRIu64 " waits %" PRIu64
			   " readahead %" PRIu64 " errors %" PRIu64,
			   what, round, ri->st.faults_missing,
			   ri->st.faults_minor, ri->st.faults_spurious,
			   ri->st.pages_filled, ri->st.pages_mapped,
			   ri->st.clusters, ri->st.pager_calls, ri->st.waits,
			   ri->st.pages_readahead, ri->st.errors);
}

/* ------------------------------------------------------------ sections */

static void note_noise(const char *section, bench_cpustat_t c0)
{
	char b[160];
	bench_cpustat_t c1 = bench_cpustat();
	bench_noise(c0, c1, b, sizeof b);
	bench_note("%s: %.1f s; noise during the section: %s", section,
		   (double)(c1.t_ns - c0.t_ns) * 1e-9, b);
}

/* Diagnostic variants run in the first DIAG_ROUNDS rounds only. */
#define DIAG_ROUNDS 3

static int rounds(int dflt)
{
	long r = bench_env_long("BENCH_ROUNDS", dflt);
	return r < 1 ? 1 : r > 64 ? 64 : (int)r;
}

static bool want(const char *section)
{
	const char *only = getenv("BENCH_ONLY");
	return !only || !*only || strstr(only, section);
}

/* A set of variants measured in interleaved rounds. */
struct variant {
	const char *name;
	double v[64];
	/* stats of interest, summed over rounds */
	uint64_t faults, pages, hsw, clusters;
};

/* --- fault-4k-random ---------------------------------------------------- */

#define RAND_FILE (256 * BENCH_MIB)
#define RAND_PAGES 20000u

static void section_random(const bench_file_t *f)
{
	const int R = rounds(7), RP = rounds(5);
	const uint64_t np = RAND_FILE / PG;
	uint32_t *all = malloc(np * sizeof *all);
	for (uint64_t i = 0; i < np; i++)
		all[i] = (uint32_t)i;
	bench_shuffle(all, np, 0x5eed0001);
	const uint32_t *order = all; /* the first RAND_PAGES: distinct */
	const size_t n = RAND_PAGES;
	const size_t npin = RAND_PAGES / 2; /* pinned variants: the first half
					       of the same order */

	bench_note("fault-4k-random: %zu distinct random pages of a %" PRIu64
		   " MiB file, %d interleaved rounds (pinned variants: %zu "
		   "pages, %d rounds)",
		   n, RAND_FILE >> 20, R, npin, RP);
	bench_cpustat_t c0 = bench_cpustat();

	/* unpinned: raw (1 handler), libvmo h=1, libvmo default */
	struct variant var[3] = {{.name = "raw-uffd"},
				 {.name = "libvmo-h1"},
				 {.name = "libvmo-hdefault"}};
	for (int r = 0; r < R; r++) {
		for (int k = 0; k < 3; k++) {
			int j = (k + r) % 3;
			struct rinfo ri;
			double v;
			if (j == 0) {
				struct raw_cfg c = {f, RAND_FILE, RAW_COPY, PG,
						    1, PIN_NONE, false, false};
				v = raw_round(&c, order, n, 1, &ri);
			} else {
				struct vmo_cfg c = {f, RAND_FILE,
						    j == 1 ? 1 : 0,
						    VMO_ADV_RANDOM, PIN_NONE, 1};
				v = vmo_round(&c, order, n, 1, &ri);
			}
			var[j].v[r] = v;
			var[j].faults += ri.faults;
			var[j].pages += ri.pages;
			var[j].hsw += ri.hsw;
			var[j].clusters += ri.st.clusters;
			note_rinfo(var[j].name, r, &ri);
			if (ri.is_vmo &&
			    (ri.st.faults_missing != n || ri.st.clusters ||
			     ri.st.pages_filled != n))
				bench_note("WARNING: %s r%d: expected %zu "
					   "one-page faults",
					   var[j].name, r, n);
		}
	}
	for (int j = 0; j < 3; j++)
		bench_runs(var[j].name, var[j].v, R, "ns/page");
	for (int j = 1; j < 3; j++)
		bench_note("%s: %.3f pages/fault, %" PRIu64
			   " clusters, %.2f handler ctxsw/fault",
			   var[j].name,
			   (double)var[j].pages / (double)var[j].faults,
			   var[j].clusters,
			   (double)var[j].hsw / (double)var[j].faults);
	bench_note("raw-uffd: %.2f handler ctxsw/fault",
		   (double)var[0].hsw / (double)var[0].faults);
	double raw = bench_median(var[0].v, R);
	bench_print_vs("fault-4k-random", bench_median(var[1].v, R), "ns/page",
		       "raw-uffd", raw);
	bench_print_vs("fault-4k-random-default-handlers",
		       bench_median(var[2].v, R), "ns/page", "raw-uffd", raw);

	/* pinned: the two placement modes, each side pinned alike */
	for (enum pin p = PIN_SAME; p <= PIN_DIFF; p++) {
		struct variant pv[2] = {{.name = "raw-uffd"},
					{.name = "libvmo-h1"}};
		for (int r = 0; r < RP; r++)
			for (int k = 0; k < 2; k++) {
				int j = (k + r) % 2;
				struct rinfo ri;
				char nm[64];
				snprintf(nm, sizeof nm, "%s-%s", pv[j].name,
					 pin_name[p]);
				struct raw_cfg rc = {f, RAND_FILE, RAW_COPY,
						     PG, 1, p, false, false};
				struct vmo_cfg vc = {f, RAND_FILE, 1,
						     VMO_ADV_RANDOM, p, 1};
				pv[j].v[r] = j == 0 ? raw_round(&rc, order, npin,
								1, &ri)
						    : vmo_round(&vc, order, npin,
								1, &ri);
				note_rinfo(nm, r, &ri);
			}
		char nm[64], bn[64];
		snprintf(nm, sizeof nm, "fault-4k-random-%s", pin_name[p]);
		snprintf(bn, sizeof bn, "raw-uffd-%s", pin_name[p]);
		bench_runs(bn, pv[0].v, RP, "ns/page");
		bench_runs(nm, pv[1].v, RP, "ns/page");
		bench_print_vs(nm, bench_median(pv[1].v, RP), "ns/page", bn,
			       bench_median(pv[0].v, RP));
	}
	note_noise("fault-4k-random", c0);
	free(all);
}

/* --- components --------------------------------------------------------- */

/*
 * The pieces a 4 KiB fault is made of, timed alone in this thread (no
 * fault, no hand-off): what the handler's own work costs, so the rest of a
 * round trip is the trap, the two wake-ups and the scheduler.  stderr only.
 */
static void section_components(const bench_file_t *f)
{
	const uint64_t np = f->size / PG;
	const size_t n = 20000;
	uint32_t *order = malloc(np * sizeof *order);
	for (uint64_t i = 0; i < np; i++)
		order[i] = (uint32_t)i;
	bench_shuffle(order, np, 0x5eed0004);
	void *buf;
	if (posix_memalign(&buf, PG, 64 * PG))
		bench_die("posix_memalign");
	memset(buf, 1, 64 * PG);

	uint64_t t0 = bench_now_ns();
	for (size_t i = 0; i < n; i++)
		syscall(SYS_getppid);
	double null_sc = (double)(bench_now_ns() - t0) / (double)n;

	t0 = bench_now_ns();
	for (size_t i = 0; i < n; i++)
		pread_full(f->fd, buf, PG, order[i] * PG);
	double pread4k = (double)(bench_now_ns() - t0) / (double)n;

	/* UFFDIO_COPY / ZEROPAGE of single pages into a registered memfd
	 * mapping, random order, nobody waiting */
	double copy4k = 0, zero4k = 0;
	for (int kind = 0; kind < 2; kind++) {
		int memfd = memfd_create("bench-comp", MFD_CLOEXEC);
		if (memfd < 0 || ftruncate(memfd, (off_t)f->size))
			bench_die("memfd");
		char *base = mmap(NULL, f->size, PROT_READ,
				  MAP_SHARED | MAP_NORESERVE, memfd, 0);
		if (base == MAP_FAILED)
			bench_die("mmap");
		int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
		struct uffdio_api api = {.api = UFFD_API,
					 .features = UFFD_FEATURE_MISSING_SHMEM};
		struct uffdio_register reg = {
			.range = {(uintptr_t)base, f->size},
			.mode = UFFDIO_REGISTER_MODE_MISSING};
		if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api) ||
		    ioctl(uffd, UFFDIO_REGISTER, &reg))
			bench_die("uffd");
		t0 = bench_now_ns();
		for (size_t i = 0; i < n; i++) {
			uint64_t a = (uintptr_t)base + order[i] * PG;
			int r;
			if (kind == 0) {
				struct uffdio_copy c = {
					.dst = a, .src = (uintptr_t)buf,
					.len = PG, .mode = 0};
				r = ioctl(uffd, UFFDIO_COPY, &c);
			} else {
				struct uffdio_zeropage z = {
					.range = {a, PG}, .mode = 0};
				r = ioctl(uffd, UFFDIO_ZEROPAGE, &z);
			}
			if (r)
				bench_die("component ioctl");
		}
		double v = (double)(bench_now_ns() - t0) / (double)n;
		if (kind == 0)
			copy4k = v;
		else
			zero4k = v;
		close(uffd);
		munmap(base, f->size);
		close(memfd);
	}
	bench_note("components (one thread, no fault): null syscall %.0f ns, "
		   "pread 4 KiB (page cache, random) %.0f ns, UFFDIO_COPY "
		   "4 KiB into memfd %.0f ns, UFFDIO_ZEROPAGE 4 KiB into memfd "
		   "%.0f ns: handler work per 4 KiB file fault ~%.0f ns",
		   null_sc, pread4k, copy4k, zero4k, pread4k + copy4k);
	free(buf);
	free(order);
}

/* --- fault-seq ---------------------------------------------------------- */

#define SEQ_FILE (1 * BENCH_GIB)

static double anon_first_touch(uint64_t len)
{
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		bench_die("mmap anon");
	madvise(p, len, MADV_NOHUGEPAGE);
	uint64_t t0 = bench_now_ns();
	for (uint64_t o = 0; o < len; o += PG)
		((volatile char *)p)[o] = 1;
	uint64_t t1 = bench_now_ns();
	munmap(p, len);
	return (double)(t1 - t0) / (double)(len / PG);
}

static void section_seq(const bench_file_t *f)
{
	const int R = rounds(5);
	const uint64_t np = SEQ_FILE / PG;
	bool extra = !bench_env_long("BENCH_NO_EXTRA", 0);
	enum { V_ANON, V_NORMAL, V_SEQ, V_RCOPY, V_RPW, V_RSF, NV };
	struct variant var[NV] = {
		{.name = "kernel-anon-fault"},
		{.name = "libvmo-adaptive"},
		{.name = "libvmo-sequential"},
		{.name = "raw-uffd-copy-2m"},
		{.name = "raw-pwrite-continue-2m"},
		{.name = "raw-sendfile-continue-2m"},
	};
	const int nv = extra ? NV : V_SEQ + 1;
	const int RD = R < DIAG_ROUNDS ? R : DIAG_ROUNDS;
	bench_note("fault-seq: %" PRIu64 " MiB, one byte per page, %d "
		   "interleaved rounds, %d variants",
		   SEQ_FILE >> 20, R, nv);
	bench_cpustat_t c0 = bench_cpustat();
	for (int r = 0; r < R; r++) {
		for (int k = 0; k < nv; k++) {
			int j = (k + r) % nv;
			struct rinfo ri;
			if (j > V_SEQ && r >= RD)
				continue; /* diagnostics: first RD rounds */
			memset(&ri, 0, sizeof ri);
			double v;
			switch (j) {
			case V_ANON:
				v = anon_first_touch(SEQ_FILE);
				bench_note("%-28s r%d %9.1f ns/page", var[j].name,
					   r, v);
				break;
			case V_NORMAL:
			case V_SEQ: {
				struct vmo_cfg c = {
					f, SEQ_FILE, 0,
					j == V_SEQ ? VMO_ADV_SEQUENTIAL : -1,
					PIN_NONE, 1};
				v = vmo_round(&c, NULL, np, 1, &ri);
				note_rinfo(var[j].name, r, &ri);
				var[j].faults += ri.faults;
				var[j].clusters += ri.st.clusters;
				break;
			}
			default: {
				struct raw_cfg c = {
					f, SEQ_FILE,
					j == V_RCOPY ? RAW_COPY
					: j == V_RPW ? RAW_PWCONT
						     : RAW_SFCONT,
					2 * BENCH_MIB, 1, PIN_NONE, false,
					false};
				v = raw_round(&c, NULL, np, 1, &ri);
				note_rinfo(var[j].name, r, &ri);
				break;
			}
			}
			var[j].v[r] = v;
		}
	}
	for (int j = 0; j < nv; j++)
		bench_runs(var[j].name, var[j].v, j > V_SEQ ? RD : R,
			   "ns/page");
	for (int j = V_NORMAL; j <= V_SEQ; j++)
		bench_note("%s: %.1f faults/round, %.1f clusters/round, "
			   "%.1f pages/fault",
			   var[j].name, (double)var[j].faults / R,
			   (double)var[j].clusters / R,
			   (double)np * R / (double)var[j].faults);
	double anon = bench_median(var[V_ANON].v, R);
	bench_print_vs("fault-seq", bench_median(var[V_NORMAL].v, R),
		       "ns/page", "kernel-anon-fault", anon);
	bench_print_vs("fault-seq-advise-sequential",
		       bench_median(var[V_SEQ].v, R), "ns/page",
		       "kernel-anon-fault", anon);
	if (extra) {
		bench_print_vs("fault-seq-raw-uffd-copy-2m",
			       bench_median(var[V_RCOPY].v, RD), "ns/page",
			       "kernel-anon-fault", anon);
		bench_print_vs("fault-seq-raw-pwrite-continue-2m",
			       bench_median(var[V_RPW].v, RD), "ns/page",
			       "kernel-anon-fault", anon);
		bench_print_vs("fault-seq-raw-sendfile-continue-2m",
			       bench_median(var[V_RSF].v, RD), "ns/page",
			       "kernel-anon-fault", anon);
	}
	note_noise("fault-seq", c0);
}

/* --- fault-scaling ---------------------------------------------------- */

#define SCALE_LEN (256 * BENCH_MIB)

/*
 * The configurations of the scaling section.  The BENCH lines compare
 * 2 handlers with 1 (same kind); the diagnostic lines compare other ways
 * of running two handlers with the same 1-handler baseline.
 */
enum {
	S_VMO_FILE,   /* libvmo, file object, one space */
	S_VMO_ANON,   /* libvmo, anonymous object, one space */
	S_RAW_FILE,   /* raw: one uffd, pread + UFFDIO_COPY */
	S_RAW_ANON,   /* raw: one uffd, UFFDIO_ZEROPAGE */
	S_NKIND,
};

static double scale_round(int kind, int nh, const bench_file_t *f,
			  const uint32_t *pages, size_t np, struct rinfo *ri)
{
	if (kind == S_VMO_FILE || kind == S_VMO_ANON) {
		struct vmo_cfg c = {kind == S_VMO_FILE ? f : NULL, SCALE_LEN,
				    (unsigned)nh, VMO_ADV_RANDOM, PIN_NONE, 1};
		return vmo_round(&c, pages, np, 2, ri);
	}
	struct raw_cfg c = {kind == S_RAW_FILE ? f : NULL, SCALE_LEN,
			    kind == S_RAW_FILE ? RAW_COPY : RAW_ZERO, PG, nh,
			    PIN_NONE, false, false};
	return raw_round(&c, pages, np, 2, ri);
}

/* Diagnostic two-handler layouts (file object, pread + UFFDIO_COPY). */
enum {
	D_VMO_2SPACES,  /* libvmo: two spaces x 1 handler, half each */
	D_VMO_2SPACES_PIN, /* the same, pinned pairs (faulter i and the
			      handler of space i on CPU i) */
	D_RAW_PERCPU,   /* raw: two uffds x 1 handler, half each, pinned */
	D_RAW_EPOLLX,   /* raw: one uffd, 2 handlers in epoll EPOLLEXCLUSIVE */
	D_N,
};
static const char *dname[D_N] = {"libvmo-2spaces", "libvmo-2spaces-pinned",
				 "raw-uffd-percpu-pinned",
				 "raw-uffd-epollexclusive"};

static double diag_round(int d, const bench_file_t *f, const uint32_t *pages,
			 size_t np, struct rinfo *ri)
{
	if (d == D_VMO_2SPACES || d == D_VMO_2SPACES_PIN) {
		struct vmo_cfg c = {f, SCALE_LEN, 1, VMO_ADV_RANDOM,
				    d == D_VMO_2SPACES ? PIN_NONE : PIN_PAIRS,
				    2};
		return vmo_round(&c, pages, np, 2, ri);
	}
	struct raw_cfg c = {f, SCALE_LEN, RAW_COPY, PG, 2,
			    d == D_RAW_PERCPU ? PIN_PAIRS : PIN_NONE,
			    d == D_RAW_PERCPU, d == D_RAW_EPOLLX};
	return raw_round(&c, pages, np, 2, ri);
}

static void section_scaling(const bench_file_t *f)
{
	const int R = rounds(5);
	const uint64_t np = SCALE_LEN / PG;
	bool extra = !bench_env_long("BENCH_NO_EXTRA", 0);
	/* each faulter gets one half of the mapping, in its own random
	 * order: the list is [half 0 shuffled][half 1 shuffled] */
	uint32_t *pages = malloc(np * sizeof *pages);
	for (uint64_t i = 0; i < np; i++)
		pages[i] = (uint32_t)i;
	bench_shuffle(pages, np / 2, 0x5eed0002);
	bench_shuffle(pages + np / 2, np - np / 2, 0x5eed0003);

	const int ncfg = S_NKIND * 2 + (extra ? D_N : 0);
	const int RD = R < DIAG_ROUNDS ? R : DIAG_ROUNDS;
	bench_note("fault-scaling: 2 faulting threads x %" PRIu64
		   " random pages each (disjoint halves of %" PRIu64
		   " MiB), %d interleaved rounds of %d configurations",
		   np / 2, SCALE_LEN >> 20, R, ncfg);
	bench_cpustat_t c0 = bench_cpustat();
	static const char *kname[S_NKIND] = {"libvmo-file", "libvmo-anon",
					     "raw-uffd-file", "raw-uffd-anon"};
	double v[S_NKIND][2][64], dv[D_N][64];
	for (int r = 0; r < R; r++) {
		for (int k = 0; k < ncfg; k++) {
			int idx = (k + r) % ncfg;
			struct rinfo ri;
			if (idx >= S_NKIND * 2 && r >= RD)
				continue; /* diagnostics: first RD rounds */
			char nm[64];
			double ns;
			if (idx < S_NKIND * 2) {
				int kind = idx / 2, h = idx % 2;
				ns = scale_round(kind, h + 1, f, pages, np, &ri);
				v[kind][h][r] = 1e9 / ns; /* faults/s */
				snprintf(nm, sizeof nm, "%s-h%d", kname[kind],
					 h + 1);
			} else {
				int d = idx - S_NKIND * 2;
				ns = diag_round(d, f, pages, np, &ri);
				dv[d][r] = 1e9 / ns;
				snprintf(nm, sizeof nm, "%s", dname[d]);
			}
			note_rinfo(nm, r, &ri);
			if (ri.faults != np)
				bench_note("WARNING: %s r%d: %" PRIu64
					   " faults for %" PRIu64 " pages",
					   nm, r, ri.faults, np);
		}
	}
	static const char *line[S_NKIND] = {
		"fault-scaling", "fault-scaling-anon", "fault-scaling-raw-uffd",
		"fault-scaling-raw-uffd-anon"};
	for (int kind = 0; kind < S_NKIND; kind++) {
		char nm[80];
		for (int h = 0; h < 2; h++) {
			snprintf(nm, sizeof nm, "%s-h%d", kname[kind], h + 1);
			bench_runs(nm, v[kind][h], R, "faults/s");
		}
		double per[64];
		for (int r = 0; r < R; r++)
			per[r] = v[kind][1][r] / v[kind][0][r];
		snprintf(nm, sizeof nm, "%s per-round-ratio", line[kind]);
		bench_runs(nm, per, R, "x");
	}
	for (int kind = 0; kind < S_NKIND; kind++)
		bench_print_vs(line[kind], bench_median(v[kind][1], R),
			       "faults/s", "handlers-1",
			       bench_median(v[kind][0], R));
	if (extra) {
		for (int d = 0; d < D_N; d++)
			bench_runs(dname[d], dv[d], RD, "faults/s");
		/* baselines: 1 handler of the same kind */
		bench_print_vs("fault-scaling-2spaces",
			       bench_median(dv[D_VMO_2SPACES], RD), "faults/s",
			       "handlers-1",
			       bench_median(v[S_VMO_FILE][0], R));
		bench_print_vs("fault-scaling-2spaces-pinned",
			       bench_median(dv[D_VMO_2SPACES_PIN], RD),
			       "faults/s", "handlers-1",
			       bench_median(v[S_VMO_FILE][0], R));
		bench_print_vs("fault-scaling-raw-uffd-percpu-pinned",
			       bench_median(dv[D_RAW_PERCPU], RD), "faults/s",
			       "handlers-1",
			       bench_median(v[S_RAW_FILE][0], R));
		bench_print_vs("fault-scaling-raw-uffd-epollexclusive",
			       bench_median(dv[D_RAW_EPOLLX], RD), "faults/s",
			       "handlers-1",
			       bench_median(v[S_RAW_FILE][0], R));
	}
	note_noise("fault-scaling", c0);
	free(pages);
}

/* ------------------------------------------------------------------ main */

int main(void)
{
	uint64_t t0 = bench_now_ns();
	g_ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
	bench_note("bench_fault: %d online CPUs; ratio = value / baseline "
		   "(ns/page: lower is better; faults/s: higher is better)",
		   g_ncpu);
	if (g_ncpu < 2)
		bench_note("WARNING: fewer than 2 CPUs: pinned variants and "
			   "scaling are meaningless");
	bench_ok(vmo_pool_create(NULL, &g_pool));

	if (want("random") || want("scaling")) {
		bench_file_t f;
		bench_file_create(&f, RAND_FILE, 0xf11e0001);
		if (want("random")) {
			section_components(&f);
			section_random(&f);
		}
		if (want("scaling"))
			section_scaling(&f);
		bench_file_close(&f);
	}
	if (want("seq")) {
		bench_file_t f;
		bench_file_create(&f, SEQ_FILE, 0xf11e0002);
		section_seq(&f);
		bench_file_close(&f);
	}
	vmo_pool_destroy(g_pool);
	bench_note("bench_fault: done in %.1f s, peak RSS %.0f MiB",
		   (double)(bench_now_ns() - t0) * 1e-9, bench_maxrss_mib());
	return 0;
}
