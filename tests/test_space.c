/*
 * test_space.c — the region mapper: space options, map / unmap / protect /
 * advise and their exact error codes, fault-around, kernel-mode faults and
 * the space statistics.
 *
 * Checks that an address is NOT accessible are made in this process with a
 * SIGSEGV handler (sigsetjmp / siglongjmp), never in a forked child: libvmo
 * mappings are MADV_DONTFORK, so in a child every libvmo address faults and
 * such a check would prove nothing.
 */
#include "testlib.h"

#include <pthread.h>
#include <setjmp.h>
#include <stddef.h>
#include <sys/syscall.h>

/* ------------------------------------------------------------- helpers */

/* Faults taken by the handler threads. */
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

/*
 * The faulting thread is woken before its handler has finished its
 * bookkeeping (pages_mapped, clusters, latency).  The latency bucket is the
 * last thing a handler records, so once the histogram accounts for every
 * fault taken, every counter is final.  Waits at most ~10 s.
 */
static vmo_space_stats_t settle_ms(vmo_space_t *sp, int ms)
{
	vmo_space_stats_t st = sstat(sp);
	for (int i = 0; i < ms && lat_sum(&st) != handled(&st); i++) {
		usleep(1000);
		st = sstat(sp);
	}
	return st;
}

static vmo_space_stats_t settle(vmo_space_t *sp)
{
	return settle_ms(sp, 10000);
}

static void touch_read(const void *p)
{
	(void)*(const volatile unsigned char *)p;
}

/* --- SIGSEGV probe: is an address accessible? */

static sigjmp_buf probe_jb;
static volatile sig_atomic_t probe_code;

static void probe_handler(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	probe_code = si->si_code;
	siglongjmp(probe_jb, 1);
}

/* Read (write = 0) or write v (write = 1) one byte at p.  Returns 0 if the
 * access completed, else the si_code of the SIGSEGV it raised
 * (SEGV_MAPERR: nothing mapped there, SEGV_ACCERR: protection). */
static int probe(void *p, int write, unsigned char v, unsigned char *got)
{
	struct sigaction sa, old;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = probe_handler;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &old);
	volatile int r = 0;
	probe_code = 0;
	if (sigsetjmp(probe_jb, 1) == 0) {
		volatile unsigned char *q = p;
		if (write) {
			*q = v;
		} else {
			unsigned char c = *q;
			if (got)
				*got = c;
		}
	} else {
		r = probe_code ? probe_code : -1;
	}
	sigaction(SIGSEGV, &old, NULL);
	return r;
}

/* Reserve len bytes of address space nobody else will use. */
static char *reserve(size_t len)
{
	void *p = mmap(NULL, len, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	CHECK(p != MAP_FAILED);
	return p;
}

/* Object page i holds byte (i + 1) * 3 + j % 7 at offset j (anonymous
 * objects are given this content with vmo_write). */
static unsigned char mark(size_t pg, size_t j)
{
	return (unsigned char)((pg + 1) * 3 + j % 7);
}

static void write_marks(vmo_t *o, size_t first, size_t n)
{
	unsigned char *b = malloc(PG);
	for (size_t i = first; i < first + n; i++) {
		for (size_t j = 0; j < PG; j++)
			b[j] = mark(i, j);
		OK(vmo_write(o, i * PG, b, PG));
	}
	free(b);
}

/* Page at p shows object page pg written by write_marks. */
static void check_marks(const unsigned char *p, size_t pg)
{
	for (size_t j = 0; j < PG; j += 251)
		CHECK_EQ(p[j], mark(pg, j));
	CHECK_EQ(p[PG - 1], mark(pg, PG - 1));
}

static long online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	return n > 64 ? 64 : n;
}

/* ======================================================= space options */

TEST(space_create_rejects_options_size_too_small)
{
	vmo_pool_t *pool;
	OK(vmo_pool_create(NULL, &pool));
	vmo_space_t *sp = (vmo_space_t *)0x1234;
	size_t bad[] = {0, 1, sizeof(size_t),
			offsetof(vmo_space_options_t, flags)};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		vmo_space_options_t so = {.size = bad[i]};
		CHECK_ERR(vmo_space_create(pool, &so, &sp), -EINVAL);
		CHECK(sp == (vmo_space_t *)0x1234); /* out left untouched */
	}
	vmo_pool_destroy(pool);
}

TEST(space_create_rejects_unknown_flags)
{
	vmo_pool_t *pool;
	OK(vmo_pool_create(NULL, &pool));
	vmo_space_t *sp = NULL;
	unsigned bad[] = {0x2, 0x4, 0x80000000u, VMO_SPACE_USER_MODE_ONLY | 0x10};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		vmo_space_options_t so = {.size = sizeof so, .flags = bad[i]};
		CHECK_ERR(vmo_space_create(pool, &so, &sp), -EINVAL);
		CHECK(sp == NULL);
	}
	vmo_pool_destroy(pool);
}

TEST(space_create_rejects_more_than_64_handler_threads)
{
	vmo_pool_t *pool;
	OK(vmo_pool_create(NULL, &pool));
	vmo_space_t *sp = NULL;
	unsigned bad[] = {65, 1000, ~0u};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		vmo_space_options_t so = {.size = sizeof so,
					  .handler_threads = bad[i]};
		CHECK_ERR(vmo_space_create(pool, &so, &sp), -EINVAL);
		CHECK(sp == NULL);
	}
	/* 64 is the maximum and is allowed */
	vmo_space_options_t so = {.size = sizeof so, .handler_threads = 64};
	OK(vmo_space_create(pool, &so, &sp));
	CHECK_EQ(sstat(sp).handler_threads, 64);
	vmo_space_destroy(sp);
	vmo_pool_destroy(pool);
}

TEST(space_create_rejects_bad_max_cluster)
{
	vmo_pool_t *pool;
	OK(vmo_pool_create(NULL, &pool));
	vmo_space_t *sp = NULL;
	uint64_t bad[] = {
		3 * 4096,         /* not a power of two */
		4096 + 1,         /* not a power of two */
		(64u << 20) - 4096, /* not a power of two */
		2048,             /* power of two below the page size */
		1,                /* power of two below the page size */
		128u << 20,       /* power of two above 64 MiB */
		1ull << 40,       /* power of two far above */
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		vmo_space_options_t so = {.size = sizeof so,
					  .max_cluster = bad[i]};
		int r = vmo_space_create(pool, &so, &sp);
		if (r != -EINVAL)
			FAIL("max_cluster %" PRIu64 ": got %d, want -EINVAL",
			     bad[i], r);
		CHECK(sp == NULL);
	}
	uint64_t good[] = {4096, 8192, 2u << 20, 64u << 20};
	for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
		vmo_space_options_t so = {.size = sizeof so,
					  .handler_threads = 1,
					  .max_cluster = good[i]};
		OK(vmo_space_create(pool, &so, &sp));
		vmo_space_destroy(sp);
	}
	vmo_pool_destroy(pool);
}

TEST(space_with_one_handler_thread_works)
{
	struct env e = env_new(1);
	CHECK_EQ(sstat(e.sp).handler_threads, 1);
	vmo_t *o;
	OK(vmo_create(e.pool, 16 * PG, 0, &o));
	void *a = NULL;
	OK(vmo_map(e.sp, o, 0, 16 * PG, PROT_READ | PROT_WRITE, 0, &a));
	unsigned char *p = a;
	for (size_t i = 0; i < 16; i++)
		p[i * PG + 1] = (unsigned char)(i + 10);
	for (size_t i = 0; i < 16; i++) {
		unsigned char c;
		OK(vmo_read(o, i * PG + 1, &c, 1));
		CHECK_EQ(c, i + 10);
	}
	OK(vmo_unmap(e.sp, a, 16 * PG));
	vmo_unref(o);
	env_free(&e);
}

TEST(space_default_handler_threads_is_online_cpus)
{
	vmo_pool_t *pool;
	OK(vmo_pool_create(NULL, &pool));
	vmo_space_t *sp;
	OK(vmo_space_create(pool, NULL, &sp));
	CHECK_EQ(sstat(sp).handler_threads, online_cpus());
	vmo_space_destroy(sp);
	vmo_space_options_t so = {.size = sizeof so, .handler_threads = 0};
	OK(vmo_space_create(pool, &so, &sp));
	CHECK_EQ(sstat(sp).handler_threads, online_cpus());
	vmo_space_destroy(sp);
	vmo_pool_destroy(pool);
}

/* ======================================================== vmo_map errors */

TEST(map_rejects_misaligned_offset_len_and_zero_len)
{
	struct env e = env_new(1);
	vmo_t *o;
	OK(vmo_create(e.pool, 16 * PG, 0, &o));
	void *a = (void *)0x5000;
	CHECK_ERR(vmo_map(e.sp, o, 100, PG, PROT_READ, 0, &a), -EINVAL);
	CHECK_ERR(vmo_map(e.sp, o, PG / 2, PG, PROT_READ, 0, &a), -EINVAL);
	CHECK_ERR(vmo_map(e.sp, o, 0, PG + 1, PROT_READ, 0, &a), -EINVAL);
	CHECK_ERR(vmo_map(e.sp, o, 0, PG - 1, PROT_READ, 0, &a), -EINVAL);
	CHECK_ERR(vmo_map(e.sp, o, 0, 0, PROT_READ, 0, &a), -EINVAL);
	CHECK(a == (void *)0x5000);
	CHECK_EQ(sstat(e.sp).mappings, 0);
	CHECK_EQ(ostat(o).mappings, 0);
	vmo_unref(o);
	env_free(&e);
}

TEST(map_rejects_unknown_flags)
{
	struct env e = env_new(1);
	vmo_t *o;
	OK(vmo_create(e.pool, 16 * PG, 0, &o));
	void *a = NULL;
	unsigned bad[] = {0x10, 0x100, 0x80000000u,
			  VMO_MAP_POPULATE | 0x8};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		CHECK_ERR(vmo_map(e.sp, o, 0, PG, PROT_READ, bad[i], &a),
			  -EINVAL);
	CHECK(a == NULL);
	CHECK_EQ(sstat(e.sp).mappings, 0);
	vmo_unref(o);
	env_free(&e);
}

TEST(map_rejects_prot_exec_and_unknown_prot_bits)
{
	struct env e = env_new(1);
	vmo_t *o;
	OK(vmo_create(e.pool, 16 * PG, 0, &o));
	void *a = NULL;
	CHECK_ERR(vmo_map(e.sp, o, 0, PG, PROT_READ | PROT_EXEC, 0, &a),
		  -EINVAL);
	CHECK_ERR(vmo_map(e.sp, o, 0, PG, PROT_EXEC, 0, &a), -EINVAL);
	CHECK_ERR(vmo_map(e.sp, o, 0, PG,
			  PROT_READ | PROT_WRITE | PROT_EXEC, 0, &a),
		  -EINVAL);
	CHECK_ERR(vmo_map(e.sp, o, 0, PG, PROT_READ | 0x100, 0, &a), -EINVAL);
	CHECK(a == NULL);
	CHECK_EQ(sstat(e.sp).mappings, 0);
	/* the allowed values are allowed */
	int okp[] = {PROT_NONE, PROT_READ, PROT_READ | PROT_WRITE};
	for (size_t i = 0; i < 3; i++) {
		OK(vmo_map(e.sp, o, 0, PG, okp[i], 0, &a));
		OK(vmo_unmap(e.sp, a, PG));
	}
	vmo_unref(o);
	env_free(&e);
}

TEST(map_rejects_null_addr)
{
	struct env e = env_new(1);
	vmo_t *o;
	OK(vmo_create(e.pool, 16 * PG, 0, &o));
	CHECK_ERR(vmo_map(e.sp, o, 0, PG, PROT_READ, 0, NULL), -EINVAL);
	CHECK_ERR(vmo_map(e.sp, o, 0, PG, PROT_READ, VMO_MAP_FIXED, NULL),
		  -EINVAL);
	CHECK_EQ(sstat(e.sp).mappings, 0);
	vmo_unref(o);
	env_free(&e);
}

TEST(map_rejects_range_beyond_object_with_erange)
{
	struct env e = env_new(1);
	vmo_t *o;
	OK(vmo_create(e.pool, 16 * PG, 0, &o));
	void *a = NULL;
	CHECK_ERR(vmo_map(e.sp, o, 0, 17 * PG, PROT_READ, 0, &a), -ERANGE);
	CHECK_ERR(vmo_map(e.sp, o, 16 * PG, PG, PROT_READ, 0, &a), -ERANGE);
	CHECK_ERR(vmo_map(e.sp, o, 15 * PG, 2 * PG, PROT_READ, 0, &a),
		  -ERANGE);
	CHECK_ERR(vmo_map(e.sp, o, 1024 * PG, PG, PROT_READ, 0, &a), -ERANGE);
	/* offset + len wraps around 2^64 */
	CHECK_ERR(vmo_map(e.sp, o, UINT64_MAX - PG + 1, 2 * PG, PROT_READ, 0,
			  &a),
		  -ERANGE);
	CHECK(a == NULL);
	CHECK_EQ(sstat(e.sp).mappings, 0);
	/* the last page is inside */
	OK(vmo_map(e.sp, o, 15 * PG, PG, PROT_READ, 0, &a));
	OK(vmo_unmap(e.sp, a, PG));
	vmo_unref(o);
	env_free(&e);
}

TEST(map_fixed_rejects_misaligned_address)
{
	struct env e = env_new(1);
	vmo_t *o;
	OK(vmo_create(e.pool, 16 * PG, 0, &o));
	char *r = reserve(32 * PG);
	void *a = r + 100;
	CHECK_ERR(vmo_map(e.sp, o, 0, 4 * PG, PROT_READ, VMO_MAP_FIXED, &a),
		  -EINVAL);
	CHECK(a == r + 100);
	a = r + PG / 2;
	CHECK_ERR(vmo_map(e.sp, o, 0, 4 * PG, PROT_READ, VMO_MAP_FIXED, &a),
		  -EINVAL);
	CHECK_EQ(sstat(e.sp).mappings, 0);
	/* the reservation is untouched: still PROT_NONE */
	CHECK_EQ(probe(r, 0, 0, NULL), SEGV_ACCERR);
	munmap(r, 32 * PG);
	vmo_unref(o);
	env_free(&e);
}

TEST(map_fixed_over_existing_mapping_is_eexist_and_keeps_it)
{
	struct env e = env_new(1);
	vmo_t *o, *o2;
	OK(vmo_create(e.pool, 16 * PG, 0, &o));
	OK(vmo_create(e.pool, 64 * PG, 0, &o2));
	write_marks(o, 0, 16);
	char *r = reserve(48 * PG);
	void *a = r + 16 * PG;
	OK(vmo_map(e.sp, o, 0, 16 * PG, PROT_READ | PROT_WRITE, VMO_MAP_FIXED,
		   &a));
	CHECK(a == r + 16 * PG);
	struct {
		size_t at, len;
	} over[] = {
		{16, 16}, /* exactly */
		{20, 4},  /* inside */
		{8, 16},  /* over the front */
		{24, 16}, /* over the back */
		{0, 48},  /* around it */
		{31, 1},  /* the last page */
	};
	for (size_t i = 0; i < sizeof over / sizeof *over; i++) {
		void *b = r + over[i].at * PG;
		CHECK_ERR(vmo_map(e.sp, o2, 0, over[i].len * PG,
				  PROT_READ | PROT_WRITE, VMO_MAP_FIXED, &b),
			  -EEXIST);
		CHECK(b == r + over[i].at * PG);
	}
	CHECK_EQ(sstat(e.sp).mappings, 1);
	CHECK_EQ(ostat(o2).mappings, 0);
	/* the existing mapping still shows and takes o's pages */
	unsigned char *p = a;
	for (size_t i = 0; i < 16; i++)
		check_marks(p + i * PG, i);
	p[5 * PG] = 0xEE;
	unsigned char c;
	OK(vmo_read(o, 5 * PG, &c, 1));
	CHECK_EQ(c, 0xEE);
	/* and the reservation around it was not replaced either */
	CHECK_EQ(probe(r + 15 * PG, 0, 0, NULL), SEGV_ACCERR);
	CHECK_EQ(probe(r + 32 * PG, 0, 0, NULL), SEGV_ACCERR);
	OK(vmo_unmap(e.sp, a, 16 * PG));
	munmap(r, 48 * PG);
	vmo_unref(o);
	vmo_unref(o2);
	env_free(&e);
}

/* The header: -EEXIST "VMO_MAP_FIXED over part of another libvmo mapping"
 * -- not only one of the same space.  Replacing another space's mapping
 * would leave that space's mapping database pointing at memory it no
 * longer maps (its next unmap would then destroy this mapping). */
TEST(map_fixed_over_another_spaces_mapping_is_eexist)
{
	vmo_pool_t *pool;
	OK(vmo_pool_create(NULL, &pool));
	vmo_space_t *sa, *sb;
	vmo_space_options_t so = {.size = sizeof so, .handler_threads = 1};
	OK(vmo_space_create(pool, &so, &sa));
	OK(vmo_space_create(pool, &so, &sb));
	vmo_t *o, *o2;
	OK(vmo_create(pool, 8 * PG, 0, &o));
	OK(vmo_create(pool, 8 * PG, 0, &o2));
	write_marks(o, 0, 8);
	void *a = NULL;
	OK(vmo_map(sa, o, 0, 8 * PG, PROT_READ | PROT_WRITE, 0, &a));
	void *b = a;
	int r = vmo_map(sb, o2, 0, 8 * PG, PROT_READ | PROT_WRITE,
			VMO_MAP_FIXED, &b);
	if (r != -EEXIST)
		fprintf(stderr, "  VMO_MAP_FIXED over space A's mapping from "
				"space B returned %d\n",
			r);
	/* Whatever was returned, A's mapping must still show o. */
	unsigned char *p = a;
	for (size_t i = 0; i < 8; i++)
		check_marks(p + i * PG, i);
	CHECK_ERR(r, -EEXIST);
	OK(vmo_unmap(sa, a, 8 * PG));
	vmo_unref(o);
	vmo_unref(o2);
	vmo_space_destroy(sa);
	vmo_space_destroy(sb);
	vmo_pool_destroy(pool);
}

TEST(map_fixed_into_reserved_region_maps_at_that_address)
{
	struct env e = env_new(1);
	vmo_t *o;
	OK(vmo_create(e.pool, 16 * PG, 0, &o));
	write_marks(o, 0, 16);
	char *r = reserve(32 * PG);
	void *a = r + 8 * PG;
	OK(vmo_map(e.sp, o, 4 * PG, 8 * PG, PROT_READ | PROT_WRITE,
		   VMO_MAP_FIXED, &a));
	CHECK(a == r + 8 * PG);
	unsigned char *p = a;
	for (size_t i = 0; i < 8; i++)
		check_marks(p + i * PG, 4 + i);
	p[3 * PG + 9] = 0x5A;
	unsigned char c;
	OK(vmo_read(o, 7 * PG + 9, &c, 1));
	CHECK_EQ(c, 0x5A);
	/* the rest of the reservation stays inaccessible */
	CHECK_EQ(probe(r + 7 * PG, 0, 0, NULL), SEGV_ACCERR);
	CHECK_EQ(probe(r + 16 * PG, 0, 0, NULL), SEGV_ACCERR);
	CHECK_EQ(sstat(e.sp).mappings, 1);
	OK(vmo_unmap(e.sp, a, 8 * PG));
	munmap(r, 32 * PG);
	vmo_unref(o);
	env_free(&e);
}

TEST(map_at_object_offset_shows_the_right_pages)
{
	struct env e = env_new(0);
	size_t len = 32 * PG;
	int fd = temp_file(len, 21);
	vmo_t *f, *an;
	OK(vmo_create_file(e.pool, fd, 0, len, VMO_FILE_PRIVATE, &f));
	OK(vmo_create(e.pool, len, 0, &an));
	write_marks(an, 0, 32);
	void *a = NULL, *b = NULL;
	OK(vmo_map(e.sp, f, 5 * PG, 10 * PG, PROT_READ, 0, &a));
	OK(vmo_map(e.sp, an, 5 * PG, 10 * PG, PROT_READ | PROT_WRITE, 0, &b));
	const unsigned char *p = a;
	for (size_t i = 0; i < 10 * PG; i += 61)
		CHECK_EQ(p[i], pattern_byte(21, 5 * PG + i));
	CHECK_EQ(p[10 * PG - 1], pattern_byte(21, 15 * PG - 1));
	unsigned char *q = b;
	for (size_t i = 0; i < 10; i++)
		check_marks(q + i * PG, 5 + i);
	/* a write through the mapping lands at object offset 5 pages + x */
	q[2 * PG + 77] = 0xC3;
	unsigned char c;
	OK(vmo_read(an, 7 * PG + 77, &c, 1));
	CHECK_EQ(c, 0xC3);
	OK(vmo_unmap(e.sp, a, 10 * PG));
	OK(vmo_unmap(e.sp, b, 10 * PG));
	vmo_unref(f);
	vmo_unref(an);
	close(fd);
	env_free(&e);
}

TEST(two_mappings_in_one_space_see_each_others_writes)
{
	struct env e = env_new(0);
	vmo_t *o;
	OK(vmo_create(e.pool, 16 * PG, 0, &o));
	void *a = NULL, *b = NULL;
	OK(vmo_map(e.sp, o, 0, 16 * PG, PROT_READ | PROT_WRITE, 0, &a));
	OK(vmo_map(e.sp, o, 4 * PG, 8 * PG, PROT_READ | PROT_WRITE, 0, &b));
	CHECK(a != b);
	unsigned char *p = a, *q = b;
	p[5 * PG + 3] = 0x11;  /* = q[1 * PG + 3] */
	CHECK_EQ(q[1 * PG + 3], 0x11);
	q[7 * PG + 100] = 0x22; /* = p[11 * PG + 100] */
	CHECK_EQ(p[11 * PG + 100], 0x22);
	/* pages first touched through b are visible through a */
	q[3 * PG] = 0x33;
	CHECK_EQ(p[7 * PG], 0x33);
	CHECK_EQ(ostat(o).mappings, 2);
	CHECK_EQ(sstat(e.sp).mappings, 2);
	OK(vmo_unmap(e.sp, a, 16 * PG));
	OK(vmo_unmap(e.sp, b, 8 * PG));
	vmo_unref(o);
	env_free(&e);
}

TEST(mappings_in_two_spaces_see_each_others_writes)
{
	vmo_pool_t *pool;
	OK(vmo_pool_create(NULL, &pool));
	vmo_space_t *s1, *s2;
	OK(vmo_space_create(pool, NULL, &s1));
	OK(vmo_space_create(pool, NULL, &s2));
	size_t len = 16 * PG;
	int fd = temp_file(len, 5);
	vmo_t *o;
	OK(vmo_create_file(pool, fd, 0, len, VMO_FILE_SHARED, &o));
	void *a = NULL, *b = NULL;
	OK(vmo_map(s1, o, 0, len, PROT_READ | PROT_WRITE, 0, &a));
	OK(vmo_map(s2, o, 0, len, PROT_READ | PROT_WRITE, 0, &b));
	unsigned char *p = a, *q = b;
	CHECK_EQ(q[9 * PG + 1], pattern_byte(5, 9 * PG + 1));
	p[9 * PG + 1] = 0x44;
	CHECK_EQ(q[9 * PG + 1], 0x44);
	q[2 * PG] = 0x55;
	CHECK_EQ(p[2 * PG], 0x55);
	CHECK_EQ(ostat(o).mappings, 2);
	CHECK_EQ(sstat(s1).mappings, 1);
	CHECK_EQ(sstat(s2).mappings, 1);
	OK(vmo_sync(o, 0, len));
	unsigned char c;
	CHECK_EQ(pread(fd, &c, 1, 9 * PG + 1), 1);
	CHECK_EQ(c, 0x44);
	CHECK_EQ(pread(fd, &c, 1, 2 * PG), 1);
	CHECK_EQ(c, 0x55);
	OK(vmo_unmap(s1, a, len));
	OK(vmo_unmap(s2, b, len));
	vmo_unref(o);
	close(fd);
	vmo_space_destroy(s1);
	vmo_space_destroy(s2);
	vmo_pool_destroy(pool);
}

TEST(mapping_holds_a_reference_on_its_object)
{
	struct env e = env_new(1);
	vmo_t *o;
	OK(vmo_create(e.pool, 8 * PG, 0, &o));
	void *a = NULL;
	OK(vmo_map(e.sp, o, 0, 8 * PG, PROT_READ | PROT_WRITE, 0, &a));
	vmo_unref(o); /* the mapping's reference keeps it */
	CHECK_EQ(pstat(e.pool).objects, 1);
	unsigned char *p = a;
	for (size_t i = 0; i < 8; i++)
		p[i * PG] = (unsigned char)(0xA0 + i);
	for (size_t i = 0; i < 8; i++)
		CHECK_EQ(p[i * PG], 0xA0 + i);
	CHECK_EQ(pstat(e.pool).objects, 1);
	/* splitting keeps it alive too */
	OK(vmo_unmap(e.sp, p + 2 * PG, 2 * PG));
	CHECK_EQ(pstat(e.pool).objects, 1);
	CHECK_EQ(p[5 * PG], 0xA5);
	OK(vmo_unmap(e.sp, p, 2 * PG));
	CHECK_EQ(pstat(e.pool).objects, 1);
	/* (a handler resolving a fault holds a reference for a moment after
	 * the faulting thread resumed: wait until none is in flight; that
	 * race is test_teardown's last_unmap_after_unref_...) */
	settle(e.sp);
	OK(vmo_unmap(e.sp, p + 4 * PG, 4 * PG));
	CHECK_EQ(pstat(e.pool).objects, 0);
	CHECK_EQ(pstat(e.pool).resident_pages, 0);
	env_free(&e);
}

static void populate_case(int file)
{
	struct env e = env_new(0);
	size_t n = 300, len = n * PG;
	int fd = -1;
	vmo_t *o;
	if (file) {
		fd = temp_file(len, 9);
		OK(vmo_create_file(e.pool, fd, 0, len, VMO_FILE_SHARED, &o));
	} else {
		OK(vmo_create(e.pool, len, 0, &o));
	}
	void *a = NULL;
	OK(vmo_map(e.sp, o, 0, len, PROT_READ | PROT_WRITE, VMO_MAP_POPULATE,
		   &a));
	vmo_space_stats_t st = sstat(e.sp);
	CHECK_EQ(st.pages_mapped, n);
	CHECK_EQ(handled(&st), 0);
	CHECK_EQ(ostat(o).resident_pages, n);
	unsigned char *p = a;
	for (size_t i = 0; i < n; i++) {
		unsigned char want = file ? pattern_byte(9, i * PG + 7) : 0;
		CHECK_EQ(p[i * PG + 7], want);
		p[i * PG + 8] = (unsigned char)i;
	}
	st = sstat(e.sp);
	CHECK_EQ(st.faults_missing + st.faults_minor, 0);
	CHECK_EQ(st.pages_mapped, n);
	for (size_t i = 0; i < n; i++) {
		unsigned char c;
		OK(vmo_read(o, i * PG + 8, &c, 1));
		CHECK_EQ(c, (unsigned char)i);
	}
	OK(vmo_unmap(e.sp, a, len));
	vmo_unref(o);
	if (fd >= 0)
		close(fd);
	env_free(&e);
}

TEST(map_populate_maps_everything_up_front_anon)
{
	populate_case(0);
}

TEST(map_populate_maps_everything_up_front_file)
{
	populate_case(1);
}

/* ================================================================ unmap */

TEST(unmap_of_unmapped_range_is_enoent_and_unmaps_nothing)
{
	struct env e = env_new(1);
	vmo_t *o;
	OK(vmo_create(e.pool, 8 * PG, 0, &o));
	write_marks(o, 0, 8);
	char *r = reserve(32 * PG);
	void *a = r + 8 * PG;
	OK(vmo_map(e.sp, o, 0, 8 * PG, PROT_READ, VMO_MAP_FIXED, &a));
	CHECK_ERR(vmo_unmap(e.sp, r, 4 * PG), -ENOENT);
	CHECK_ERR(vmo_unmap(e.sp, r + 20 * PG, 8 * PG), -ENOENT);
	/* ordinary memory that libvmo did not map */
	void *heap = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(heap != MAP_FAILED);
	((char *)heap)[0] = 1;
	CHECK_ERR(vmo_unmap(e.sp, heap, 4 * PG), -ENOENT);
	CHECK_EQ(((char *)heap)[0], 1); /* still mapped */
	CHECK_EQ(probe(r, 0, 0, NULL), SEGV_ACCERR); /* reservation intact */
	CHECK_EQ(sstat(e.sp).mappings, 1);
	for (size_t i = 0; i < 8; i++)
		check_marks((unsigned char *)a + i * PG, i);
	OK(vmo_unmap(e.sp, a, 8 * PG));
	munmap(heap, 4 * PG);
	munmap(r, 32 * PG);
	vmo_unref(o);
	env_free(&e);
}

TEST(unmap_of_partially_mapped_range_is_enoent_and_unmaps_nothing)
{
	struct env e = env_new(1);
	vmo_t *o;
	OK(vmo_create(e.pool, 8 * PG, 0, &o));
	write_marks(o, 0, 8);
	char *r = reserve(32 * PG);
	void *a = r + 8 * PG;
	OK(vmo_map(e.sp, o, 0, 8 * PG, PROT_READ, VMO_MAP_FIXED, &a));
	char *p = a;
	CHECK_ERR(vmo_unmap(e.sp, p + 4 * PG, 8 * PG), -ENOENT); /* tail out */
	CHECK_ERR(vmo_unmap(e.sp, p - 2 * PG, 4 * PG), -ENOENT); /* head out */
	CHECK_ERR(vmo_unmap(e.sp, p - PG, 10 * PG), -ENOENT);    /* around */
	CHECK_EQ(sstat(e.sp).mappings, 1);
	CHECK_EQ(ostat(o).mappings, 1);
	for (size_t i = 0; i < 8; i++) {
		unsigned char c = 0;
		CHECK_EQ(probe(p + i * PG, 0, 0, &c), 0);
		CHECK_EQ(c, mark(i, 0));
	}
	OK(vmo_unmap(e.sp, a, 8 * PG));
	munmap(r, 32 * PG);
	vmo_unref(o);
	env_free(&e);
}

TEST(unmap_of_partially_mapped_range_with_a_gap_is_enoent)
{
	struct env e = env_new(1);
	vmo_t *o;
	OK(vmo_create(e.pool, 8 * PG, 0, &o));
	write_marks(o, 0, 8);
	char *r = reserve(32 * PG);
	void *a = r, *b = r + 12 * PG;
	OK(vmo_map(e.sp, o, 0, 8 * PG, PROT_READ, VMO_MAP_FIXED, &a));
	OK(vmo_map(e.sp, o, 0, 8 * PG, PROT_READ, VMO_MAP_FIXED, &b));
	/* both ends mapped, pages 8..11 in between are not */
	CHECK_ERR(vmo_unmap(e.sp, r + 4 * PG, 12 * PG), -ENOENT);
	CHECK_EQ(sstat(e.sp).mappings, 2);
	for (size_t i = 0; i < 8; i++) {
		check_marks((unsigned char *)a + i * PG, i);
		check_marks((unsigned char *)b + i * PG, i);
	}
	OK(vmo_unmap(e.sp, a, 8 * PG));
	OK(vmo_unmap(e.sp, b, 8 * PG));
	munmap(r, 32 * PG);
	vmo_unref(o);
	env_free(&e);
}

TEST(unmap_rejects_misaligned_and_zero_len)
{
	struct env e = env_new(1);
	vmo_t *o;
	OK(vmo_create(e.pool, 8 * PG, 0, &o));
	void *a = NULL;
	OK(vmo_map(e.sp, o, 0, 8 * PG, PROT_READ, 0, &a));
	char *p = a;
	CHECK_ERR(vmo_unmap(e.sp, p + 1, PG), -EINVAL);
	CHECK_ERR(vmo_unmap(e.sp, p + PG / 2, PG), -EINVAL);
	CHECK_ERR(vmo_unmap(e.sp, p, PG + 1), -EINVAL);
	CHECK_ERR(vmo_unmap(e.sp, p, PG - 1), -EINVAL);
	CHECK_ERR(vmo_unmap(e.sp, p, 0), -EINVAL);
	CHECK_EQ(sstat(e.sp).mappings, 1);
	touch_read(p + 7 * PG);
	OK(vmo_unmap(e.sp, a, 8 * PG));
	vmo_unref(o);
	env_free(&e);
}

TEST(unmap_of_the_middle_splits_the_mapping)
{
	struct env e = env_new(0);
	vmo_t *o;
	OK(vmo_create(e.pool, 12 * PG, 0, &o));
	write_marks(o, 0, 12);
	void *a = NULL;
	OK(vmo_map(e.sp, o, 0, 12 * PG, PROT_READ | PROT_WRITE, 0, &a));
	unsigned char *p = a;
	touch_read(p + 5 * PG); /* one page of the hole was mapped */
	OK(vmo_unmap(e.sp, p + 4 * PG, 4 * PG));
	CHECK_EQ(sstat(e.sp).mappings, 2);
	CHECK_EQ(ostat(o).mappings, 2);
	for (size_t i = 0; i < 4; i++)
		check_marks(p + i * PG, i);
	for (size_t i = 8; i < 12; i++)
		check_marks(p + i * PG, i);
	for (size_t i = 4; i < 8; i++) {
		CHECK_EQ(probe(p + i * PG, 0, 0, NULL), SEGV_MAPERR);
		CHECK_EQ(probe(p + i * PG + PG - 1, 1, 1, NULL), SEGV_MAPERR);
	}
	/* both parts are still writable and still the same object */
	p[1 * PG] = 0x71;
	p[10 * PG] = 0x72;
	unsigned char c;
	OK(vmo_read(o, 1 * PG, &c, 1));
	CHECK_EQ(c, 0x71);
	OK(vmo_read(o, 10 * PG, &c, 1));
	CHECK_EQ(c, 0x72);
	/* the data of the hole is still in the object */
	OK(vmo_read(o, 5 * PG + 3, &c, 1));
	CHECK_EQ(c, mark(5, 3));
	/* each part unmaps as a whole */
	OK(vmo_unmap(e.sp, p + 8 * PG, 4 * PG));
	OK(vmo_unmap(e.sp, p, 4 * PG));
	CHECK_EQ(sstat(e.sp).mappings, 0);
	CHECK_EQ(ostat(o).mappings, 0);
	vmo_unref(o);
	env_free(&e);
}

TEST(unmap_trims_the_front_and_the_back)
{
	struct env e = env_new(0);
	vmo_t *o;
	OK(vmo_create(e.pool, 12 * PG, 0, &o));
	write_marks(o, 0, 12);
	void *a = NULL;
	OK(vmo_map(e.sp, o, 0, 12 * PG, PROT_READ, 0, &a));
	unsigned char *p = a;
	touch_read(p);
	touch_read(p + 11 * PG);
	OK(vmo_unmap(e.sp, p, 3 * PG)); /* front */
	CHECK_EQ(sstat(e.sp).mappings, 1);
	for (size_t i = 0; i < 3; i++)
		CHECK_EQ(probe(p + i * PG, 0, 0, NULL), SEGV_MAPERR);
	for (size_t i = 3; i < 12; i++)
		check_marks(p + i * PG, i);
	OK(vmo_unmap(e.sp, p + 10 * PG, 2 * PG)); /* back */
	CHECK_EQ(sstat(e.sp).mappings, 1);
	for (size_t i = 10; i < 12; i++)
		CHECK_EQ(probe(p + i * PG, 0, 0, NULL), SEGV_MAPERR);
	for (size_t i = 3; i < 10; i++)
		check_marks(p + i * PG, i);
	/* what is left is [3, 10) */
	CHECK_ERR(vmo_unmap(e.sp, p + 2 * PG, 8 * PG), -ENOENT);
	CHECK_ERR(vmo_unmap(e.sp, p + 3 * PG, 8 * PG), -ENOENT);
	OK(vmo_unmap(e.sp, p + 3 * PG, 7 * PG));
	CHECK_EQ(sstat(e.sp).mappings, 0);
	CHECK_EQ(pstat(e.pool).objects, 1);
	vmo_unref(o);
	env_free(&e);
}

TEST(unmap_spanning_two_adjacent_mappings)
{
	struct env e = env_new(0);
	vmo_t *o1, *o2;
	OK(vmo_create(e.pool, 8 * PG, 0, &o1));
	OK(vmo_create(e.pool, 16 * PG, 0, &o2));
	write_marks(o1, 0, 8);
	write_marks(o2, 0, 16);
	char *r = reserve(16 * PG);
	void *a = r, *b = r + 8 * PG;
	OK(vmo_map(e.sp, o1, 0, 8 * PG, PROT_READ, VMO_MAP_FIXED, &a));
	OK(vmo_map(e.sp, o2, 8 * PG, 8 * PG, PROT_READ, VMO_MAP_FIXED, &b));
	unsigned char *p = (unsigned char *)r;
	for (size_t i = 0; i < 8; i++) {
		check_marks(p + i * PG, i);
		check_marks(p + (8 + i) * PG, 8 + i);
	}
	OK(vmo_unmap(e.sp, r + 4 * PG, 8 * PG));
	CHECK_EQ(sstat(e.sp).mappings, 2);
	for (size_t i = 0; i < 4; i++)
		check_marks(p + i * PG, i);
	for (size_t i = 4; i < 12; i++)
		CHECK_EQ(probe(p + i * PG, 0, 0, NULL), SEGV_MAPERR);
	for (size_t i = 12; i < 16; i++)
		check_marks(p + i * PG, i); /* o2 page 12..15 */
	OK(vmo_unmap(e.sp, r, 4 * PG));
	OK(vmo_unmap(e.sp, r + 12 * PG, 4 * PG));
	CHECK_EQ(sstat(e.sp).mappings, 0);
	CHECK_EQ(ostat(o1).mappings, 0);
	CHECK_EQ(ostat(o2).mappings, 0);
	vmo_unref(o1);
	vmo_unref(o2);
	env_free(&e);
}

TEST(unmap_of_several_whole_mappings_at_once)
{
	struct env e = env_new(0);
	vmo_t *o;
	OK(vmo_create(e.pool, 4 * PG, 0, &o));
	char *r = reserve(12 * PG);
	for (size_t i = 0; i < 3; i++) {
		void *a = r + i * 4 * PG;
		OK(vmo_map(e.sp, o, 0, 4 * PG, PROT_READ, VMO_MAP_FIXED, &a));
	}
	CHECK_EQ(sstat(e.sp).mappings, 3);
	CHECK_EQ(ostat(o).mappings, 3);
	OK(vmo_unmap(e.sp, r, 12 * PG));
	CHECK_EQ(sstat(e.sp).mappings, 0);
	CHECK_EQ(ostat(o).mappings, 0);
	for (size_t i = 0; i < 12; i++)
		CHECK_EQ(probe(r + i * PG, 0, 0, NULL), SEGV_MAPERR);
	vmo_unref(o);
	env_free(&e);
}

TEST(space_stats_mappings_follow_map_and_unmap)
{
	struct env e = env_new(1);
	vmo_t *o;
	OK(vmo_create(e.pool, 64 * PG, 0, &o));
	void *m[5];
	CHECK_EQ(sstat(e.sp).mappings, 0);
	for (size_t i = 0; i < 5; i++) {
		m[i] = NULL;
		OK(vmo_map(e.sp, o, i * 8 * PG, 8 * PG, PROT_READ, 0, &m[i]));
		CHECK_EQ(sstat(e.sp).mappings, i + 1);
		CHECK_EQ(ostat(o).mappings, i + 1);
	}
	OK(vmo_unmap(e.sp, (char *)m[2] + 2 * PG, 2 * PG)); /* split: +1 */
	CHECK_EQ(sstat(e.sp).mappings, 6);
	OK(vmo_unmap(e.sp, m[0], 8 * PG));
	CHECK_EQ(sstat(e.sp).mappings, 5);
	OK(vmo_unmap(e.sp, m[2], 2 * PG));
	CHECK_EQ(sstat(e.sp).mappings, 4);
	OK(vmo_unmap(e.sp, (char *)m[2] + 4 * PG, 4 * PG));
	CHECK_EQ(sstat(e.sp).mappings, 3);
	for (size_t i = 1; i < 5; i++)
		if (i != 2)
			OK(vmo_unmap(e.sp, m[i], 8 * PG));
	CHECK_EQ(sstat(e.sp).mappings, 0);
	CHECK_EQ(ostat(o).mappings, 0);
	vmo_unref(o);
	env_free(&e);
}

/* ============================================================== protect */

TEST(protect_read_only_makes_writes_segv_and_reads_work)
{
	struct env e = env_new(0);
	vmo_t *o;
	OK(vmo_create(e.pool, 8 * PG, 0, &o));
	write_marks(o, 0, 4); /* pages 4..7 stay absent */
	void *a = NULL;
	OK(vmo_map(e.sp, o, 0, 8 * PG, PROT_READ | PROT_WRITE, 0, &a));
	unsigned char *p = a;
	touch_read(p + PG); /* page 1 mapped before the change */
	OK(vmo_protect(e.sp, p, 8 * PG, PROT_READ));
	for (size_t i = 0; i < 8; i++) {
		unsigned char c = 0xFF;
		CHECK_EQ(probe(p + i * PG + 1, 0, 0, &c), 0);
		CHECK_EQ(c, i < 4 ? mark(i, 1) : 0);
		CHECK_EQ(probe(p + i * PG + 1, 1, 0x99, NULL), SEGV_ACCERR);
	}
	/* nothing was written */
	for (size_t i = 0; i < 8; i++) {
		unsigned char c;
		OK(vmo_read(o, i * PG + 1, &c, 1));
		CHECK_EQ(c, i < 4 ? mark(i, 1) : 0);
	}
	/* back to read-write */
	OK(vmo_protect(e.sp, p, 8 * PG, PROT_READ | PROT_WRITE));
	for (size_t i = 0; i < 8; i++)
		CHECK_EQ(probe(p + i * PG + 1, 1, (unsigned char)(0x40 + i),
			       NULL),
			 0);
	for (size_t i = 0; i < 8; i++) {
		unsigned char c;
		OK(vmo_read(o, i * PG + 1, &c, 1));
		CHECK_EQ(c, 0x40 + i);
	}
	OK(vmo_unmap(e.sp, a, 8 * PG));
	vmo_unref(o);
	env_free(&e);
}

TEST(protect_part_of_a_mapping_affects_only_that_part)
{
	struct env e = env_new(0);
	vmo_t *o;
	OK(vmo_create(e.pool, 8 * PG, 0, &o));
	void *a = NULL;
	OK(vmo_map(e.sp, o, 0, 8 * PG, PROT_READ | PROT_WRITE, 0, &a));
	unsigned char *p = a;
	OK(vmo_protect(e.sp, p + 2 * PG, 2 * PG, PROT_READ));
	for (size_t i = 0; i < 8; i++) {
		int ro = i == 2 || i == 3;
		CHECK_EQ(probe(p + i * PG, 1, 7, NULL), ro ? SEGV_ACCERR : 0);
		CHECK_EQ(probe(p + i * PG, 0, 0, NULL), 0);
	}
	/* the whole range still unmaps as one */
	OK(vmo_unmap(e.sp, a, 8 * PG));
	CHECK_EQ(sstat(e.sp).mappings, 0);
	vmo_unref(o);
	env_free(&e);
}

TEST(protect_none_then_back)
{
	struct env e = env_new(0);
	vmo_t *o;
	OK(vmo_create(e.pool, 4 * PG, 0, &o));
	write_marks(o, 0, 4);
	void *a = NULL;
	OK(vmo_map(e.sp, o, 0, 4 * PG, PROT_READ, 0, &a));
	unsigned char *p = a;
	touch_read(p);
	OK(vmo_protect(e.sp, p, 4 * PG, PROT_NONE));
	for (size_t i = 0; i < 4; i++)
		CHECK_EQ(probe(p + i * PG, 0, 0, NULL), SEGV_ACCERR);
	OK(vmo_protect(e.sp, p, 4 * PG, PROT_READ));
	for (size_t i = 0; i < 4; i++)
		check_marks(p + i * PG, i);
	OK(vmo_unmap(e.sp, a, 4 * PG));
	vmo_unref(o);
	env_free(&e);
}

TEST(protect_of_unmapped_range_is_enoent)
{
	struct env e = env_new(1);
	vmo_t *o;
	OK(vmo_create(e.pool, 8 * PG, 0, &o));
	char *r = reserve(32 * PG);
	void *a = r + 8 * PG;
	OK(vmo_map(e.sp, o, 0, 8 * PG, PROT_READ | PROT_WRITE, VMO_MAP_FIXED,
		   &a));
	CHECK_ERR(vmo_protect(e.sp, r, 4 * PG, PROT_READ), -ENOENT);
	CHECK_ERR(vmo_protect(e.sp, r + 4 * PG, 8 * PG, PROT_READ), -ENOENT);
	CHECK_ERR(vmo_protect(e.sp, r + 12 * PG, 8 * PG, PROT_READ), -ENOENT);
	/* nothing changed: the mapping is still writable everywhere */
	for (size_t i = 8; i < 16; i++)
		CHECK_EQ(probe(r + i * PG, 1, 3, NULL), 0);
	CHECK_EQ(probe(r + 4 * PG, 0, 0, NULL), SEGV_ACCERR);
	OK(vmo_unmap(e.sp, a, 8 * PG));
	munmap(r, 32 * PG);
	vmo_unref(o);
	env_free(&e);
}

TEST(protect_rejects_misaligned_zero_len_and_unknown_prot)
{
	struct env e = env_new(1);
	vmo_t *o;
	OK(vmo_create(e.pool, 8 * PG, 0, &o));
	void *a = NULL;
	OK(vmo_map(e.sp, o, 0, 8 * PG, PROT_READ | PROT_WRITE, 0, &a));
	char *p = a;
	CHECK_ERR(vmo_protect(e.sp, p + 1, PG, PROT_READ), -EINVAL);
	CHECK_ERR(vmo_protect(e.sp, p, PG + 1, PROT_READ), -EINVAL);
	CHECK_ERR(vmo_protect(e.sp, p, 0, PROT_READ), -EINVAL);
	CHECK_ERR(vmo_protect(e.sp, p, PG, PROT_READ | PROT_EXEC), -EINVAL);
	CHECK_ERR(vmo_protect(e.sp, p, PG, 0x100), -EINVAL);
	CHECK_EQ(probe(p, 1, 1, NULL), 0);
	OK(vmo_unmap(e.sp, a, 8 * PG));
	vmo_unref(o);
	env_free(&e);
}

static int null_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	(void)ctx;
	(void)off;
	memset(buf, 0x3C, len);
	return 0;
}

TEST(write_on_read_only_file_object_is_eacces)
{
	struct env e = env_new(1);
	size_t len = 8 * PG;
	int fd = temp_file(len, 3);
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	int rfd = open(path, O_RDONLY);
	CHECK(rfd >= 0);
	vmo_t *o;
	OK(vmo_create_file(e.pool, rfd, 0, len, VMO_FILE_SHARED, &o));
	void *a = NULL;
	CHECK_ERR(vmo_map(e.sp, o, 0, len, PROT_READ | PROT_WRITE, 0, &a),
		  -EACCES);
	CHECK(a == NULL);
	CHECK_EQ(sstat(e.sp).mappings, 0);
	OK(vmo_map(e.sp, o, 0, len, PROT_READ, 0, &a));
	CHECK_ERR(vmo_protect(e.sp, a, len, PROT_READ | PROT_WRITE), -EACCES);
	CHECK_ERR(vmo_protect(e.sp, a, PG, PROT_WRITE), -EACCES);
	unsigned char *p = a;
	CHECK_EQ(p[3 * PG + 3], pattern_byte(3, 3 * PG + 3));
	CHECK_EQ(probe(p + 3 * PG, 1, 0, NULL), SEGV_ACCERR);
	OK(vmo_unmap(e.sp, a, len));
	vmo_unref(o);
	close(rfd);
	close(fd);
	env_free(&e);
}

TEST(write_on_pager_without_write_callback_is_eacces)
{
	struct env e = env_new(1);
	vmo_pager_ops_t ops = {.read = null_read};
	vmo_t *o;
	OK(vmo_create_pager(e.pool, 8 * PG, &ops, NULL, 0, &o));
	void *a = NULL;
	CHECK_ERR(vmo_map(e.sp, o, 0, 8 * PG, PROT_READ | PROT_WRITE, 0, &a),
		  -EACCES);
	CHECK_EQ(sstat(e.sp).mappings, 0);
	OK(vmo_map(e.sp, o, 0, 8 * PG, PROT_READ, 0, &a));
	CHECK_ERR(vmo_protect(e.sp, a, 8 * PG, PROT_READ | PROT_WRITE),
		  -EACCES);
	unsigned char *p = a;
	CHECK_EQ(p[5 * PG], 0x3C);
	CHECK_EQ(probe(p + 5 * PG, 1, 0, NULL), SEGV_ACCERR);
	OK(vmo_unmap(e.sp, a, 8 * PG));
	vmo_unref(o);
	env_free(&e);
}

/* =============================================================== advise */

TEST(advise_rejects_unknown_advice_misaligned_and_unmapped)
{
	struct env e = env_new(1);
	vmo_t *o;
	OK(vmo_create(e.pool, 8 * PG, 0, &o));
	char *r = reserve(32 * PG);
	void *a = r + 8 * PG;
	OK(vmo_map(e.sp, o, 0, 8 * PG, PROT_READ | PROT_WRITE, VMO_MAP_FIXED,
		   &a));
	char *p = a;
	CHECK_ERR(vmo_advise(e.sp, p, PG, 5), -EINVAL);
	CHECK_ERR(vmo_advise(e.sp, p, PG, -1), -EINVAL);
	CHECK_ERR(vmo_advise(e.sp, p, PG, 1000), -EINVAL);
	CHECK_ERR(vmo_advise(e.sp, p + 1, PG, VMO_ADV_WILLNEED), -EINVAL);
	CHECK_ERR(vmo_advise(e.sp, p, PG + 1, VMO_ADV_DONTNEED), -EINVAL);
	CHECK_ERR(vmo_advise(e.sp, p, 0, VMO_ADV_RANDOM), -EINVAL);
	int all[] = {VMO_ADV_NORMAL, VMO_ADV_SEQUENTIAL, VMO_ADV_RANDOM,
		     VMO_ADV_WILLNEED, VMO_ADV_DONTNEED};
	for (size_t i = 0; i < 5; i++) {
		CHECK_ERR(vmo_advise(e.sp, r, 4 * PG, all[i]), -ENOENT);
		CHECK_ERR(vmo_advise(e.sp, p - PG, 2 * PG, all[i]), -ENOENT);
		CHECK_ERR(vmo_advise(e.sp, p + 4 * PG, 8 * PG, all[i]),
			  -ENOENT);
	}
	/* the failed WILLNEEDs made nothing resident or mapped */
	CHECK_EQ(ostat(o).resident_pages, 0);
	CHECK_EQ(sstat(e.sp).pages_mapped, 0);
	for (size_t i = 0; i < 5; i++)
		OK(vmo_advise(e.sp, p, 8 * PG, all[i]));
	OK(vmo_unmap(e.sp, a, 8 * PG));
	munmap(r, 32 * PG);
	vmo_unref(o);
	env_free(&e);
}

#define SCAN_LEN ((size_t)64 << 20)

/* Read one byte of every page of [p, p+len), first to last. */
static void scan(const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i += PG)
		touch_read(p + i);
}

static void sequential_case(int file, int advice, uint64_t max_faults)
{
	struct env e = env_new(0);
	size_t pages = SCAN_LEN / PG;
	int fd = -1;
	vmo_t *o;
	if (file) {
		fd = temp_file(SCAN_LEN, 77);
		OK(vmo_create_file(e.pool, fd, 0, SCAN_LEN,
				   advice == VMO_ADV_SEQUENTIAL ? VMO_FILE_SHARED
								: VMO_FILE_PRIVATE,
				   &o));
	} else {
		OK(vmo_create(e.pool, SCAN_LEN, 0, &o));
	}
	void *a = NULL;
	OK(vmo_map(e.sp, o, 0, SCAN_LEN, PROT_READ, 0, &a));
	if (advice != VMO_ADV_NORMAL)
		OK(vmo_advise(e.sp, a, SCAN_LEN, advice));
	const unsigned char *p = a;
	scan(p, SCAN_LEN);
	vmo_space_stats_t st = settle(e.sp);
	uint64_t f = handled(&st);
	if (f >= max_faults)
		FAIL("%s scan of %zu pages took %" PRIu64
		     " faults (limit %" PRIu64 ")",
		     file ? "file" : "anon", pages, f, max_faults);
	CHECK(f >= 1);
	CHECK(st.clusters > 0);
	CHECK_EQ(st.pages_mapped, pages);
	CHECK_EQ(ostat(o).resident_pages, pages);
	if (file)
		for (size_t i = 0; i < SCAN_LEN; i += 4093)
			CHECK_EQ(p[i], pattern_byte(77, i));
	else
		for (size_t i = 0; i < SCAN_LEN; i += 4093)
			CHECK_EQ(p[i], 0);
	OK(vmo_unmap(e.sp, a, SCAN_LEN));
	vmo_unref(o);
	if (fd >= 0)
		close(fd);
	env_free(&e);
}

TEST(advise_sequential_anon_scan_takes_few_faults)
{
	sequential_case(0, VMO_ADV_SEQUENTIAL, SCAN_LEN / PG / 100);
}

TEST(advise_sequential_file_scan_takes_few_faults)
{
	sequential_case(1, VMO_ADV_SEQUENTIAL, SCAN_LEN / PG / 100);
}

TEST(adaptive_default_anon_sequential_scan_takes_few_faults)
{
	sequential_case(0, VMO_ADV_NORMAL, SCAN_LEN / PG / 50);
}

TEST(adaptive_default_file_sequential_scan_takes_few_faults)
{
	sequential_case(1, VMO_ADV_NORMAL, SCAN_LEN / PG / 50);
}

static void random_case(int file)
{
	struct env e = env_new(1);
	size_t pages = 2048, len = pages * PG, touches = 400;
	int fd = -1;
	vmo_t *o;
	if (file) {
		fd = temp_file(len, 13);
		OK(vmo_create_file(e.pool, fd, 0, len, VMO_FILE_PRIVATE, &o));
	} else {
		OK(vmo_create(e.pool, len, 0, &o));
	}
	void *a = NULL;
	OK(vmo_map(e.sp, o, 0, len, PROT_READ | PROT_WRITE, 0, &a));
	OK(vmo_advise(e.sp, a, len, VMO_ADV_RANDOM));
	unsigned char *p = a;
	/* 400 distinct pages: a run of 50 neighbours, then a scattered
	 * order ((i*769 + 11) mod 2048 visits every page once) */
	size_t list[400], n = 0;
	unsigned char seen[2048];
	memset(seen, 0, sizeof seen);
	for (size_t i = 0; n < 50; i++, n++) /* a sequential run */
		list[n] = 1000 + i, seen[1000 + i] = 1;
	for (size_t i = 0; n < touches; i++) {
		size_t pg = (i * 769 + 11) % pages;
		if (!seen[pg]) {
			seen[pg] = 1;
			list[n++] = pg;
		}
	}
	for (size_t i = 0; i < touches; i++) {
		unsigned char *q = p + list[i] * PG + 5;
		if (i % 2)
			*q = (unsigned char)(i + 1);
		else
			CHECK_EQ(*q, file ? pattern_byte(13, list[i] * PG + 5)
					  : 0);
	}
	vmo_space_stats_t st = settle(e.sp);
	CHECK_EQ(handled(&st), touches);
	CHECK_EQ(st.pages_mapped, touches);
	CHECK_EQ(st.clusters, 0);
	CHECK_EQ(ostat(o).resident_pages, touches);
	/* touching them again takes no fault */
	for (size_t i = 0; i < touches; i++)
		touch_read(p + list[i] * PG);
	st = settle(e.sp);
	CHECK_EQ(handled(&st), touches);
	OK(vmo_unmap(e.sp, a, len));
	vmo_unref(o);
	if (fd >= 0)
		close(fd);
	env_free(&e);
}

TEST(advise_random_takes_one_fault_per_page_anon)
{
	random_case(0);
}

TEST(advise_random_takes_one_fault_per_page_file)
{
	random_case(1);
}

TEST(advise_willneed_makes_the_range_resident_and_mapped)
{
	struct env e = env_new(0);
	size_t len = 64 * PG;
	int fd = temp_file(len, 31);
	vmo_t *o;
	OK(vmo_create_file(e.pool, fd, 0, len, VMO_FILE_PRIVATE, &o));
	void *a = NULL;
	OK(vmo_map(e.sp, o, 0, len, PROT_READ, 0, &a));
	unsigned char *p = a;
	OK(vmo_advise(e.sp, p + 8 * PG, 16 * PG, VMO_ADV_WILLNEED));
	CHECK_EQ(ostat(o).resident_pages, 16);
	CHECK_EQ(ostat(o).pages_filled, 16);
	vmo_space_stats_t st = sstat(e.sp);
	CHECK_EQ(st.pages_mapped, 16);
	CHECK_EQ(handled(&st), 0);
	for (size_t i = 8 * PG; i < 24 * PG; i += 509)
		CHECK_EQ(p[i], pattern_byte(31, i));
	st = sstat(e.sp);
	CHECK_EQ(handled(&st), 0); /* mapped, not only resident */
	/* outside the range nothing happened */
	CHECK_EQ(p[30 * PG], pattern_byte(31, 30 * PG));
	st = settle(e.sp);
	CHECK(handled(&st) >= 1);
	OK(vmo_unmap(e.sp, a, len));
	vmo_unref(o);
	close(fd);
	env_free(&e);
}

TEST(advise_willneed_on_anon_maps_zeros)
{
	struct env e = env_new(0);
	vmo_t *o;
	OK(vmo_create(e.pool, 32 * PG, 0, &o));
	void *a = NULL;
	OK(vmo_map(e.sp, o, 0, 32 * PG, PROT_READ | PROT_WRITE, 0, &a));
	OK(vmo_advise(e.sp, a, 32 * PG, VMO_ADV_WILLNEED));
	CHECK_EQ(ostat(o).resident_pages, 32);
	unsigned char *p = a;
	for (size_t i = 0; i < 32; i++) {
		CHECK_EQ(p[i * PG + 17], 0);
		p[i * PG + 17] = 1;
	}
	vmo_space_stats_t st = sstat(e.sp);
	CHECK_EQ(handled(&st), 0);
	CHECK_EQ(st.pages_mapped, 32);
	OK(vmo_unmap(e.sp, a, 32 * PG));
	vmo_unref(o);
	env_free(&e);
}

TEST(advise_dontneed_keeps_the_data_and_refaults_minor)
{
	struct env e = env_new(0);
	size_t n = 16;
	vmo_t *o;
	OK(vmo_create(e.pool, n * PG, 0, &o));
	void *a = NULL;
	OK(vmo_map(e.sp, o, 0, n * PG, PROT_READ | PROT_WRITE, 0, &a));
	unsigned char *p = a;
	for (size_t i = 0; i < n * PG; i++)
		p[i] = (unsigned char)(i * 7 + i / PG);
	vmo_space_stats_t st0 = settle(e.sp);
	CHECK(st0.faults_missing >= 1);
	OK(vmo_advise(e.sp, a, n * PG, VMO_ADV_DONTNEED));
	CHECK_EQ(ostat(o).resident_pages, n);
	for (size_t i = 0; i < n * PG; i++)
		if (p[i] != (unsigned char)(i * 7 + i / PG))
			FAIL("byte %zu: %u after DONTNEED, want %u", i, p[i],
			     (unsigned char)(i * 7 + i / PG));
	vmo_space_stats_t st1 = settle(e.sp);
	CHECK_EQ(st1.faults_missing, st0.faults_missing);
	CHECK(st1.faults_minor > st0.faults_minor);
	/* and the object has the same bytes */
	unsigned char *b = malloc(n * PG);
	OK(vmo_read(o, 0, b, n * PG));
	CHECK_MEM(b, p, n * PG);
	free(b);
	OK(vmo_unmap(e.sp, a, n * PG));
	vmo_unref(o);
	env_free(&e);
}

TEST(advise_dontneed_keeps_written_file_data_for_sync)
{
	struct env e = env_new(0);
	size_t len = 8 * PG;
	int fd = temp_file(len, 41);
	vmo_t *o;
	OK(vmo_create_file(e.pool, fd, 0, len, VMO_FILE_SHARED, &o));
	void *a = NULL;
	OK(vmo_map(e.sp, o, 0, len, PROT_READ | PROT_WRITE, 0, &a));
	unsigned char *p = a;
	p[2 * PG + 1] = 0xD1;
	p[6 * PG + 2] = 0xD2;
	OK(vmo_advise(e.sp, a, len, VMO_ADV_DONTNEED));
	CHECK_EQ(p[2 * PG + 1], 0xD1);
	CHECK_EQ(p[6 * PG + 2], 0xD2);
	OK(vmo_sync(o, 0, len));
	unsigned char c;
	CHECK_EQ(pread(fd, &c, 1, 2 * PG + 1), 1);
	CHECK_EQ(c, 0xD1);
	CHECK_EQ(pread(fd, &c, 1, 6 * PG + 2), 1);
	CHECK_EQ(c, 0xD2);
	OK(vmo_unmap(e.sp, a, len));
	vmo_unref(o);
	close(fd);
	env_free(&e);
}

/* ==================================================== kernel-mode faults */

TEST(kernel_fault_read_from_pipe_into_absent_page_is_served)
{
	struct env e = env_new(0);
	CHECK_EQ(sstat(e.sp).kernel_faults, 0);
	vmo_t *o;
	OK(vmo_create(e.pool, 8 * PG, 0, &o));
	void *a = NULL;
	OK(vmo_map(e.sp, o, 0, 8 * PG, PROT_READ | PROT_WRITE, 0, &a));
	unsigned char *p = a;
	int pfd[2];
	CHECK_EQ(pipe(pfd), 0);
	unsigned char msg[100];
	for (size_t i = 0; i < sizeof msg; i++)
		msg[i] = (unsigned char)(i + 1);
	CHECK_EQ(write(pfd[1], msg, sizeof msg), (ssize_t)sizeof msg);
	CHECK_EQ(read(pfd[0], p + 3 * PG + 10, sizeof msg), (ssize_t)sizeof msg);
	CHECK_MEM(p + 3 * PG + 10, msg, sizeof msg);
	CHECK_EQ(p[3 * PG + 9], 0);
	CHECK_EQ(p[3 * PG + 110], 0);
	unsigned char b[sizeof msg];
	OK(vmo_read(o, 3 * PG + 10, b, sizeof msg));
	CHECK_MEM(b, msg, sizeof msg);
	CHECK(sstat(e.sp).faults_missing >= 1);
	/* a write(2) out of an absent page (the kernel reads it) */
	CHECK_EQ(write(pfd[1], p + 6 * PG, 16), 16);
	CHECK_EQ(read(pfd[0], b, 16), 16);
	for (size_t i = 0; i < 16; i++)
		CHECK_EQ(b[i], 0);
	close(pfd[0]);
	close(pfd[1]);
	OK(vmo_unmap(e.sp, a, 8 * PG));
	vmo_unref(o);
	env_free(&e);
}

TEST(kernel_fault_into_absent_file_page_keeps_the_rest_of_the_page)
{
	struct env e = env_new(0);
	size_t len = 8 * PG;
	int fd = temp_file(len, 55);
	vmo_t *o;
	OK(vmo_create_file(e.pool, fd, 0, len, VMO_FILE_SHARED, &o));
	void *a = NULL;
	OK(vmo_map(e.sp, o, 0, len, PROT_READ | PROT_WRITE, 0, &a));
	unsigned char *p = a;
	int pfd[2];
	CHECK_EQ(pipe(pfd), 0);
	unsigned char msg[64];
	memset(msg, 0xE7, sizeof msg);
	CHECK_EQ(write(pfd[1], msg, sizeof msg), (ssize_t)sizeof msg);
	CHECK_EQ(read(pfd[0], p + 5 * PG + 100, sizeof msg),
		 (ssize_t)sizeof msg);
	for (size_t i = 0; i < PG; i++) {
		unsigned char want = (i >= 100 && i < 164)
					     ? 0xE7
					     : pattern_byte(55, 5 * PG + i);
		CHECK_EQ(p[5 * PG + i], want);
	}
	OK(vmo_sync(o, 0, len));
	unsigned char c;
	CHECK_EQ(pread(fd, &c, 1, 5 * PG + 120), 1);
	CHECK_EQ(c, 0xE7);
	close(pfd[0]);
	close(pfd[1]);
	OK(vmo_unmap(e.sp, a, len));
	vmo_unref(o);
	close(fd);
	env_free(&e);
}

TEST(user_mode_only_space_reports_and_fails_kernel_faults_with_efault)
{
	vmo_pool_t *pool;
	OK(vmo_pool_create(NULL, &pool));
	vmo_space_options_t so = {.size = sizeof so,
				  .flags = VMO_SPACE_USER_MODE_ONLY};
	vmo_space_t *sp;
	OK(vmo_space_create(pool, &so, &sp));
	CHECK_EQ(sstat(sp).kernel_faults, VMO_EUSERMODE);
	const char *why = vmo_strerror(VMO_EUSERMODE);
	CHECK(why != NULL);
	CHECK(strstr(why, "EFAULT") != NULL);
	vmo_t *o;
	OK(vmo_create(pool, 8 * PG, 0, &o));
	void *a = NULL;
	OK(vmo_map(sp, o, 0, 8 * PG, PROT_READ | PROT_WRITE, 0, &a));
	unsigned char *p = a;
	int pfd[2];
	CHECK_EQ(pipe(pfd), 0);
	unsigned char msg[32];
	memset(msg, 0x61, sizeof msg);
	CHECK_EQ(write(pfd[1], msg, sizeof msg), (ssize_t)sizeof msg);
	errno = 0;
	CHECK_EQ(read(pfd[0], p + 2 * PG, sizeof msg), -1);
	CHECK_EQ(errno, EFAULT);
	/* the kernel also cannot read an absent page */
	errno = 0;
	CHECK_EQ(write(pfd[1], p + 4 * PG, 8), -1);
	CHECK_EQ(errno, EFAULT);
	/* ordinary user-mode touches work */
	for (size_t i = 0; i < 8; i++)
		p[i * PG] = (unsigned char)(0x30 + i);
	for (size_t i = 0; i < 8; i++)
		CHECK_EQ(p[i * PG], 0x30 + i);
	CHECK(sstat(sp).faults_missing >= 1);
	/* once touched, system calls work on the page */
	CHECK_EQ(read(pfd[0], p + 2 * PG + 1, sizeof msg), (ssize_t)sizeof msg);
	CHECK_MEM(p + 2 * PG + 1, msg, sizeof msg);
	CHECK_EQ(p[2 * PG], 0x32);
	close(pfd[0]);
	close(pfd[1]);
	OK(vmo_unmap(sp, a, 8 * PG));
	vmo_unref(o);
	vmo_space_destroy(sp);
	vmo_pool_destroy(pool);
}

TEST(default_space_serves_kernel_faults)
{
	/* This machine runs as root: a full userfaultfd is available, so a
	 * default space serves kernel-mode faults. */
	struct env e = env_new(1);
	CHECK_EQ(sstat(e.sp).kernel_faults, 0);
	env_free(&e);
}

/* ================================================================= stats */

TEST(latency_histogram_counts_every_handled_fault)
{
	struct env e = env_new(1);
	size_t n = 64;
	int fd = temp_file(n * PG, 17);
	vmo_t *an, *f;
	OK(vmo_create(e.pool, n * PG, 0, &an));
	OK(vmo_create_file(e.pool, fd, 0, n * PG, VMO_FILE_SHARED, &f));
	void *a = NULL, *b = NULL, *c = NULL;
	OK(vmo_map(e.sp, an, 0, n * PG, PROT_READ | PROT_WRITE, 0, &a));
	OK(vmo_map(e.sp, f, 0, n * PG, PROT_READ | PROT_WRITE, 0, &b));
	OK(vmo_map(e.sp, an, 0, n * PG, PROT_READ, 0, &c)); /* minor faults */
	OK(vmo_advise(e.sp, a, n * PG, VMO_ADV_RANDOM));
	OK(vmo_advise(e.sp, b, n * PG, VMO_ADV_RANDOM));
	OK(vmo_advise(e.sp, c, n * PG, VMO_ADV_RANDOM));
	unsigned char *pa = a, *pb = b, *pc = c;
	for (size_t i = 0; i < n; i++) {
		pa[i * PG] = (unsigned char)i; /* missing, write */
		touch_read(pb + i * PG);       /* missing, read */
		CHECK_EQ(pc[i * PG], (unsigned char)i); /* minor */
	}
	pb[0] = 1; /* no fault message: resolved by the kernel */
	OK(vmo_advise(e.sp, a, n * PG, VMO_ADV_DONTNEED));
	for (size_t i = 0; i < n; i += 2)
		touch_read(pa + i * PG); /* minor again */
	vmo_space_stats_t st = settle(e.sp);
	CHECK_EQ(st.faults_missing, 2 * n);
	CHECK_EQ(st.faults_minor, n + n / 2);
	CHECK_EQ(st.faults_write, n);
	CHECK_EQ(lat_sum(&st), handled(&st));
	CHECK_EQ(lat_sum(&st), 3 * n + n / 2);
	OK(vmo_unmap(e.sp, a, n * PG));
	OK(vmo_unmap(e.sp, b, n * PG));
	OK(vmo_unmap(e.sp, c, n * PG));
	vmo_unref(an);
	vmo_unref(f);
	close(fd);
	env_free(&e);
}

/*
 * A fault whose mapping is unmapped after the handler read the fault
 * message but before it looked the address up is still a fault handled by
 * a handler thread (it counts in faults_missing and faults_spurious), so it
 * must have a latency bucket too.
 *
 * Choreography with one handler thread and a pager whose read blocks on a
 * gate: fault P0 blocks the handler in the pager; faults P5 (same pager
 * object) and A0 (anonymous mapping MA) queue up; P0 is released, the
 * handler reads [P5, A0] in one batch and blocks in P5's pager read; MA is
 * unmapped; P5 is released; the handler then finds no mapping for A0.
 */
struct gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int entered[2], open[2];
};

static int gated_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	struct gate *g = ctx;
	int i = off == 0 ? 0 : off == 5 * PG ? 1 : -1;
	memset(buf, 0x5E, len);
	if (i >= 0) {
		pthread_mutex_lock(&g->mu);
		g->entered[i] = 1;
		pthread_cond_broadcast(&g->cv);
		while (!g->open[i])
			pthread_cond_wait(&g->cv, &g->mu);
		pthread_mutex_unlock(&g->mu);
	}
	return 0;
}

static void gate_wait_entered(struct gate *g, int i)
{
	pthread_mutex_lock(&g->mu);
	while (!g->entered[i])
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
}

static void gate_open(struct gate *g, int i)
{
	pthread_mutex_lock(&g->mu);
	g->open[i] = 1;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
}

struct toucher {
	pthread_t th;
	unsigned char *addr;
	int use_probe;
	int result; /* 0 or the SIGSEGV si_code */
	volatile pid_t tid;
};

static void *toucher_main(void *arg)
{
	struct toucher *t = arg;
	__atomic_store_n(&t->tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
	if (t->use_probe)
		t->result = probe(t->addr, 0, 0, NULL);
	else
		touch_read(t->addr);
	return NULL;
}

/* Wait (bounded) until thread tid sleeps in a userfaultfd fault. */
static void wait_in_userfault(struct toucher *t)
{
	pid_t tid;
	while (!(tid = __atomic_load_n(&t->tid, __ATOMIC_ACQUIRE)))
		usleep(100);
	char path[64], buf[64];
	snprintf(path, sizeof path, "/proc/self/task/%d/wchan", (int)tid);
	for (int i = 0; i < 20000; i++) {
		int fd = open(path, O_RDONLY);
		CHECK(fd >= 0);
		ssize_t n = read(fd, buf, sizeof buf - 1);
		close(fd);
		buf[n > 0 ? n : 0] = 0;
		if (!strcmp(buf, "handle_userfault"))
			return;
		usleep(500);
	}
	FAIL("thread %d never blocked in handle_userfault (wchan %s)",
	     (int)tid, buf);
}

TEST(latency_histogram_counts_faults_on_ranges_unmapped_meanwhile)
{
	struct env e = env_new(1);
	struct gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
			 {0, 0}, {0, 0}};
	vmo_pager_ops_t ops = {.read = gated_read};
	vmo_t *po, *ao;
	OK(vmo_create_pager(e.pool, 16 * PG, &ops, &g, 0, &po));
	OK(vmo_create(e.pool, 16 * PG, 0, &ao));
	void *mp = NULL, *ma = NULL;
	OK(vmo_map(e.sp, po, 0, 16 * PG, PROT_READ, 0, &mp));
	OK(vmo_map(e.sp, ao, 0, 16 * PG, PROT_READ, 0, &ma));
	OK(vmo_advise(e.sp, mp, 16 * PG, VMO_ADV_RANDOM));
	struct toucher t1 = {.addr = mp}, t3 = {.addr = (unsigned char *)mp + 5 * PG},
		       t2 = {.addr = ma, .use_probe = 1};
	CHECK_EQ(pthread_create(&t1.th, NULL, toucher_main, &t1), 0);
	gate_wait_entered(&g, 0);       /* handler blocked on P0 */
	CHECK_EQ(pthread_create(&t3.th, NULL, toucher_main, &t3), 0);
	wait_in_userfault(&t3);         /* P5 queued */
	CHECK_EQ(pthread_create(&t2.th, NULL, toucher_main, &t2), 0);
	wait_in_userfault(&t2);         /* A0 queued behind it */
	gate_open(&g, 0);
	gate_wait_entered(&g, 1);       /* handler holds [P5, A0], in P5 */
	OK(vmo_unmap(e.sp, ma, 16 * PG));
	CHECK_EQ(pthread_join(t2.th, NULL), 0);
	CHECK(t2.result != 0);          /* A0's thread got SIGSEGV */
	gate_open(&g, 1);
	CHECK_EQ(pthread_join(t1.th, NULL), 0);
	CHECK_EQ(pthread_join(t3.th, NULL), 0);
	vmo_space_stats_t st = sstat(e.sp);
	for (int i = 0; i < 2000 && st.faults_spurious == 0; i++) {
		usleep(1000);
		st = sstat(e.sp);
	}
	CHECK_EQ(st.faults_missing, 3);
	CHECK_EQ(st.faults_spurious, 1);
	st = settle_ms(e.sp, 1000);
	if (lat_sum(&st) != handled(&st))
		FAIL("latency histogram holds %" PRIu64 " faults, handlers "
		     "took %" PRIu64 " (missing %" PRIu64 ", spurious %" PRIu64
		     ")",
		     lat_sum(&st), handled(&st), st.faults_missing,
		     st.faults_spurious);
	OK(vmo_unmap(e.sp, mp, 16 * PG));
	vmo_unref(po);
	vmo_unref(ao);
	env_free(&e);
}

static int failing_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	(void)ctx;
	memset(buf, 0, len);
	return off + len > 4 * PG ? -EIO : 0; /* pages 4.. fail */
}

TEST(map_populate_with_failing_pager_is_eio_and_maps_nothing)
{
	struct env e = env_new(1);
	vmo_pager_ops_t ops = {.read = failing_read};
	vmo_t *o;
	OK(vmo_create_pager(e.pool, 16 * PG, &ops, NULL, 0, &o));
	void *a = (void *)0x7000;
	CHECK_ERR(vmo_map(e.sp, o, 0, 16 * PG, PROT_READ, VMO_MAP_POPULATE, &a),
		  -EIO);
	CHECK(a == (void *)0x7000);
	CHECK_EQ(sstat(e.sp).mappings, 0);
	CHECK_EQ(ostat(o).mappings, 0);
	/* the pages before the failure may have been filled; the failing
	 * ones were not */
	CHECK(ostat(o).resident_pages <= 4);
	/* a range the pager can fill populates */
	OK(vmo_map(e.sp, o, 0, 4 * PG, PROT_READ, VMO_MAP_POPULATE, &a));
	CHECK_EQ(sstat(e.sp).mappings, 1);
	OK(vmo_unmap(e.sp, a, 4 * PG));
	vmo_unref(o);
	env_free(&e);
}

/* "A call that fails changes nothing": a failed VMO_MAP_FIXED |
 * VMO_MAP_POPULATE leaves what was at the address (here the caller's
 * PROT_NONE reservation) in place. */
TEST(map_fixed_populate_failure_keeps_the_callers_reservation)
{
	struct env e = env_new(1);
	vmo_pager_ops_t ops = {.read = failing_read};
	vmo_t *o;
	OK(vmo_create_pager(e.pool, 16 * PG, &ops, NULL, 0, &o));
	char *r = reserve(32 * PG);
	void *a = r + 8 * PG;
	CHECK_ERR(vmo_map(e.sp, o, 0, 16 * PG, PROT_READ,
			  VMO_MAP_FIXED | VMO_MAP_POPULATE, &a),
		  -EIO);
	CHECK_EQ(sstat(e.sp).mappings, 0);
	int code = probe(r + 8 * PG, 0, 0, NULL);
	if (code != SEGV_ACCERR)
		FAIL("after the failed fixed map, the reserved PROT_NONE range "
		     "is %s (si_code %d)",
		     code == SEGV_MAPERR ? "unmapped" : "accessible", code);
	munmap(r, 32 * PG);
	vmo_unref(o);
	env_free(&e);
}

TEST(populate_and_willneed_are_not_counted_as_faults)
{
	struct env e = env_new(1);
	vmo_t *o;
	OK(vmo_create(e.pool, 64 * PG, 0, &o));
	void *a = NULL, *b = NULL;
	OK(vmo_map(e.sp, o, 0, 32 * PG, PROT_READ, VMO_MAP_POPULATE, &a));
	OK(vmo_map(e.sp, o, 32 * PG, 32 * PG, PROT_READ, 0, &b));
	OK(vmo_advise(e.sp, b, 32 * PG, VMO_ADV_WILLNEED));
	vmo_space_stats_t st = sstat(e.sp);
	CHECK_EQ(handled(&st), 0);
	CHECK_EQ(lat_sum(&st), 0);
	CHECK_EQ(st.pages_mapped, 64);
	OK(vmo_unmap(e.sp, a, 32 * PG));
	OK(vmo_unmap(e.sp, b, 32 * PG));
	vmo_unref(o);
	env_free(&e);
}

TEST(stats_version_fields_equal_the_version_macros)
{
	struct env e = env_new(1);
	vmo_t *o;
	OK(vmo_create(e.pool, 4 * PG, 0, &o));
	CHECK_EQ(sstat(e.sp).version, VMO_SPACE_STATS_VERSION);
	CHECK_EQ(sstat(e.sp).size, sizeof(vmo_space_stats_t));
	CHECK_EQ(ostat(o).version, VMO_STATS_VERSION);
	CHECK_EQ(ostat(o).size, sizeof(vmo_stats_t));
	CHECK_EQ(ostat(o).size_bytes, 4 * PG);
	CHECK_EQ(pstat(e.pool).version, VMO_POOL_STATS_VERSION);
	vmo_unref(o);
	env_free(&e);
}

#define CANARY 0xA5

/* Call fn with st->size = sz inside a canary-filled buffer and check that
 * bytes [sz, end) were not touched. */
static void check_short(int (*fn)(void *h, void *st), void *h, uint32_t sz,
			size_t full, uint32_t want_version)
{
	union {
		uint64_t align;
		unsigned char b[512];
	} u;
	memset(u.b, CANARY, sizeof u.b);
	memcpy(u.b, &sz, sizeof sz);
	OK(fn(h, u.b));
	uint32_t got_size, version;
	memcpy(&got_size, u.b, 4);
	memcpy(&version, u.b + 4, 4);
	CHECK_EQ(version, want_version);
	CHECK(got_size <= sz);
	for (size_t i = sz; i < full + 64; i++)
		if (u.b[i] != CANARY)
			FAIL("size %u: byte %zu written (%#x)", sz, i, u.b[i]);
}

static int space_stats_fn(void *h, void *st)
{
	return vmo_space_stats(h, st);
}
static int obj_stats_fn(void *h, void *st)
{
	return vmo_stats(h, st);
}
static int pool_stats_fn(void *h, void *st)
{
	return vmo_pool_stats(h, st);
}

TEST(stats_with_smaller_size_write_only_that_many_bytes)
{
	struct env e = env_new(1);
	vmo_t *o;
	OK(vmo_create(e.pool, 4 * PG, 0, &o));
	uint32_t sizes[] = {8, 12, 16, 20, 24, 40};
	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		check_short(space_stats_fn, e.sp, sizes[i],
			    sizeof(vmo_space_stats_t), VMO_SPACE_STATS_VERSION);
		check_short(obj_stats_fn, o, sizes[i], sizeof(vmo_stats_t),
			    VMO_STATS_VERSION);
		check_short(pool_stats_fn, e.pool, sizes[i],
			    sizeof(vmo_pool_stats_t), VMO_POOL_STATS_VERSION);
	}
	/* the fields that fit are filled in */
	union {
		uint64_t align;
		unsigned char b[64];
	} u;
	memset(u.b, CANARY, sizeof u.b);
	uint32_t sz = 16;
	memcpy(u.b, &sz, 4);
	OK(vmo_space_stats(e.sp, (vmo_space_stats_t *)u.b));
	uint32_t threads;
	int32_t kf;
	memcpy(&threads, u.b + offsetof(vmo_space_stats_t, handler_threads), 4);
	memcpy(&kf, u.b + offsetof(vmo_space_stats_t, kernel_faults), 4);
	CHECK_EQ(threads, 1);
	CHECK_EQ(kf, 0);
	CHECK_EQ(u.b[16], CANARY);
	memset(u.b, CANARY, sizeof u.b);
	memcpy(u.b, &sz, 4);
	OK(vmo_stats(o, (vmo_stats_t *)u.b));
	uint64_t size_bytes;
	memcpy(&size_bytes, u.b + offsetof(vmo_stats_t, size_bytes), 8);
	CHECK_EQ(size_bytes, 4 * PG);
	CHECK_EQ(u.b[16], CANARY);
	/* a larger struct (a newer caller) is filled up to what we know */
	union {
		vmo_space_stats_t st;
		unsigned char b[sizeof(vmo_space_stats_t) + 64];
	} big;
	memset(big.b, CANARY, sizeof big.b);
	big.st.size = sizeof big.b;
	OK(vmo_space_stats(e.sp, &big.st));
	CHECK_EQ(big.st.version, VMO_SPACE_STATS_VERSION);
	CHECK_EQ(big.st.handler_threads, 1);
	vmo_unref(o);
	env_free(&e);
}

TEST(stats_size_below_8_is_einval)
{
	struct env e = env_new(1);
	vmo_t *o;
	OK(vmo_create(e.pool, 4 * PG, 0, &o));
	for (uint32_t sz = 0; sz < 8; sz++) {
		vmo_space_stats_t ss;
		vmo_stats_t os;
		vmo_pool_stats_t ps;
		memset(&ss, CANARY, sizeof ss);
		memset(&os, CANARY, sizeof os);
		memset(&ps, CANARY, sizeof ps);
		ss.size = os.size = ps.size = sz;
		CHECK_ERR(vmo_space_stats(e.sp, &ss), -EINVAL);
		CHECK_ERR(vmo_stats(o, &os), -EINVAL);
		CHECK_ERR(vmo_pool_stats(e.pool, &ps), -EINVAL);
		CHECK_EQ(ss.size, sz);
		CHECK_EQ(ss.version, 0xA5A5A5A5u);
		CHECK_EQ(os.version, 0xA5A5A5A5u);
		CHECK_EQ(ps.version, 0xA5A5A5A5u);
	}
	CHECK_ERR(vmo_space_stats(e.sp, NULL), -EINVAL);
	CHECK_ERR(vmo_stats(o, NULL), -EINVAL);
	CHECK_ERR(vmo_pool_stats(e.pool, NULL), -EINVAL);
	vmo_unref(o);
	env_free(&e);
}

TEST_MAIN()
