/*
 * bench_protect.c — what the kernel charges for the one thing a snapshot
 * of a live object must do: write-protect again the pages written since
 * the previous snapshot.  This is the floor under `snapshot-1g`
 * (bench_clone.c); it uses raw userfaultfd, not libvmo.
 *
 * A 1 GiB memfd mapping, every page touched, is registered for
 * write-protection; each round writes 1 % of its pages (random) and then
 * protects them again by one of:
 *
 *   protect-per-page     UFFDIO_WRITEPROTECT of each written page, in a
 *                        sync-mode uffd (what libvmo does for sparse
 *                        writes: every call flushes a TLB entry that was
 *                        dirty, about a microsecond here)
 *   protect-span         one UFFDIO_WRITEPROTECT over the whole 1 GiB
 *                        (what libvmo does for dense writes: the kernel
 *                        walks every entry of the span)
 *   protect-scan-async   one PAGEMAP_SCAN with PM_SCAN_WP_MATCHING over
 *                        the range of an async-mode uffd (the kernel
 *                        finds and protects the written entries in one
 *                        walk, flushing once per page table)
 *
 * each against fork() of a process holding the same touched 1 GiB, in
 * the same run.  It also reports whether PAGEMAP_SCAN protects anything in
 * a sync-mode registration (Linux 6.18 skips such ranges: the batched
 * protect exists only for async mode, where writes are not reported and
 * so cannot be copied on write).
 *
 * Environment: BENCH_ROUNDS=n (default 7), BENCH_PROTECT_MIB (default
 * 1024).
 */
#include "benchlib.h"

#include <sys/mman.h>
#include <sys/syscall.h>

#include "../src/sys/uapi.h"

#define PG ((uint64_t)BENCH_PAGE)

struct region {
	int uffd, memfd;
	char *map;
	uint64_t bytes, npages;
};

static void region_new(struct region *r, uint64_t bytes, bool async)
{
	r->bytes = bytes;
	r->npages = bytes / PG;
	r->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (r->uffd < 0)
		bench_die("userfaultfd: %s", strerror(errno));
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_WP_HUGETLBFS_SHMEM |
			    UFFD_FEATURE_WP_UNPOPULATED |
			    (async ? UFFD_FEATURE_WP_ASYNC : 0),
	};
	if (ioctl(r->uffd, UFFDIO_API, &api))
		bench_die("UFFDIO_API (async %d): %s", async, strerror(errno));
	r->memfd = memfd_create("bench-protect", MFD_CLOEXEC);
	if (r->memfd < 0 || ftruncate(r->memfd, (off_t)bytes))
		bench_die("memfd: %s", strerror(errno));
	r->map = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED,
		      r->memfd, 0);
	if (r->map == MAP_FAILED)
		bench_die("mmap: %s", strerror(errno));
	/* fork() must not copy these (a registered range's entries are
	 * copied to keep their protection): the baseline is a process
	 * holding one touched GiB, nothing else */
	if (madvise(r->map, bytes, MADV_DONTFORK))
		bench_die("madvise: %s", strerror(errno));
	for (uint64_t p = 0; p < r->npages; p++)
		r->map[p * PG] = 1;
	struct uffdio_register reg = {
		.range = {(uintptr_t)r->map, bytes},
		.mode = UFFDIO_REGISTER_MODE_WP,
	};
	if (ioctl(r->uffd, UFFDIO_REGISTER, &reg))
		bench_die("UFFDIO_REGISTER: %s", strerror(errno));
}

static void region_free(struct region *r)
{
	munmap(r->map, r->bytes);
	close(r->memfd);
	close(r->uffd);
}

static void wp(struct region *r, uint64_t pg, uint64_t n, bool on)
{
	struct uffdio_writeprotect w = {
		.range = {(uintptr_t)r->map + pg * PG, n * PG},
		.mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};
	if (ioctl(r->uffd, UFFDIO_WRITEPROTECT, &w))
		bench_die("UFFDIO_WRITEPROTECT: %s", strerror(errno));
}

/* PAGEMAP_SCAN over r, protecting written pages; returns pages found. */
static uint64_t scan_protect(struct region *r, int pm, struct page_region *v,
			     uint64_t nv)
{
	struct pm_scan_arg a;
	memset(&a, 0, sizeof a);
	a.size = sizeof a;
	a.flags = PM_SCAN_WP_MATCHING;
	a.start = (uintptr_t)r->map;
	a.end = (uintptr_t)r->map + r->bytes;
	a.vec = (uintptr_t)v;
	a.vec_len = nv;
	a.category_mask = PAGE_IS_WRITTEN;
	a.return_mask = PAGE_IS_WRITTEN;
	long n = ioctl(pm, PAGEMAP_SCAN, &a);
	if (n < 0)
		bench_die("PAGEMAP_SCAN: %s", strerror(errno));
	uint64_t pages = 0;
	for (long i = 0; i < n; i++)
		pages += (v[i].end - v[i].start) / PG;
	return pages;
}

/* Pick n distinct random pages (sorted: a snapshot's write log is). */
static void pick(uint64_t *pages, uint64_t n, uint64_t np, uint64_t *rng)
{
	uint8_t *seen = calloc(np, 1);
	uint64_t k = 0;
	while (k < n) {
		uint64_t p = bench_rand64(rng) % np;
		if (!seen[p]) {
			seen[p] = 1;
			k++;
		}
	}
	k = 0;
	for (uint64_t p = 0; p < np && k < n; p++)
		if (seen[p])
			pages[k++] = p;
	free(seen);
}

/* Sync mode: make the pages writable (as a handler resolving their
 * write-protect faults would) and write them. */
static void write_sync(struct region *r, const uint64_t *pages, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		wp(r, pages[i], 1, false);
		r->map[pages[i] * PG + 8]++;
	}
}

static void write_async(struct region *r, const uint64_t *pages, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		r->map[pages[i] * PG + 8]++; /* the kernel unprotects */
}

static double fork_ms(uint64_t bytes)
{
	char *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		bench_die("mmap");
	for (uint64_t o = 0; o < bytes; o += PG)
		m[o] = 1;
	double ms = bench_fork_ms();
	munmap(m, bytes);
	return ms;
}

int main(void)
{
	uint64_t bytes = (uint64_t)bench_env_long("BENCH_PROTECT_MIB", 1024) << 20;
	int rounds = bench_rounds(7);
	uint64_t np = bytes / PG, nw = np / 100;
	uint64_t *pages = malloc(nw * sizeof *pages);
	struct page_region *v = malloc(np * sizeof *v);
	int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (!pages || !v || pm < 0)
		bench_die("setup");
	double *per = calloc((size_t)rounds, sizeof(double)),
	       *span = calloc((size_t)rounds, sizeof(double)),
	       *scan = calloc((size_t)rounds, sizeof(double)),
	       *fk = calloc((size_t)rounds, sizeof(double));
	uint64_t rng = 0x70726f74656374ull;

	struct region s, a;
	region_new(&s, bytes, false);
	region_new(&a, bytes, true);
	wp(&s, 0, np, true);
	uint64_t first = scan_protect(&a, pm, v, np); /* protect all once */
	if (first != np)
		bench_die("async scan found %" PRIu64 " written pages of %" PRIu64,
			  first, np);

	/* does the batched protect reach a sync-mode registration? */
	write_sync(&s, (uint64_t[]){0, 1, 2}, 3);
	uint64_t sync_found = scan_protect(&s, pm, v, np);
	wp(&s, 0, 3, true);
	bench_note("PAGEMAP_SCAN + PM_SCAN_WP_MATCHING over a sync-mode "
		   "registration with 3 written pages: %" PRIu64 " found%s",
		   sync_found, sync_found ? "" : " (the range is skipped)");

	for (int r = 0; r < rounds; r++) {
		pick(pages, nw, np, &rng);
		write_sync(&s, pages, nw);
		uint64_t t = bench_now_ns();
		for (uint64_t i = 0; i < nw; i++)
			wp(&s, pages[i], 1, true);
		per[r] = (double)(bench_now_ns() - t) / 1e6;

		write_sync(&s, pages, nw);
		t = bench_now_ns();
		wp(&s, 0, np, true);
		span[r] = (double)(bench_now_ns() - t) / 1e6;

		write_async(&a, pages, nw);
		t = bench_now_ns();
		uint64_t found = scan_protect(&a, pm, v, np);
		scan[r] = (double)(bench_now_ns() - t) / 1e6;
		if (found != nw)
			bench_die("async scan found %" PRIu64 " written pages, "
				  "%" PRIu64 " were written", found, nw);

		fk[r] = fork_ms(bytes);
	}
	bench_runs("protect-per-page", per, rounds, "ms");
	bench_runs("protect-span", span, rounds, "ms");
	bench_runs("protect-scan-async", scan, rounds, "ms");
	bench_runs("fork-1g", fk, rounds, "ms");
	double fm = bench_median(fk, rounds);
	bench_print_vs("protect-per-page", bench_median(per, rounds), "ms",
		       "fork-1g", fm);
	bench_print_vs("protect-span", bench_median(span, rounds), "ms",
		       "fork-1g", fm);
	bench_print_vs("protect-scan-async", bench_median(scan, rounds), "ms",
		       "fork-1g", fm);
	bench_note("%" PRIu64 " pages written per round (1 %% of %" PRIu64 ")",
		   nw, np);
	region_free(&s);
	region_free(&a);
	return 0;
}
