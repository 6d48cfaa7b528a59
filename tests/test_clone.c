/*
 * test_clone.c — copy-on-write: snapshot, at-least-on-write and weak
 * clones, hidden nodes, copies, scatter and gather.  Each test states one
 * behaviour and checks page contents, error codes and counters.
 */
#include "testlib.h"

#include <setjmp.h>

#define NP 64 /* pages of the usual test object */

/* Fill page pg of a buffer of pages with a byte pattern naming (tag, pg). */
static void tag_page(unsigned char *p, unsigned tag, size_t pg)
{
	for (size_t i = 0; i < PG; i++)
		p[i] = (unsigned char)(tag * 31 + pg * 7 + i % 251);
}

/* Write pages [pg, pg+n) of o with tag through vmo_write. */
static void wtag(vmo_t *o, unsigned tag, size_t pg, size_t n)
{
	unsigned char *b = malloc(n * PG);
	for (size_t i = 0; i < n; i++)
		tag_page(b + i * PG, tag, pg + i);
	OK(vmo_write(o, pg * PG, b, n * PG));
	free(b);
}

/* Check that pages [pg, pg+n) of o read (vmo_read) as tag, written at
 * page origin + pg of the object that wrote them. */
static void rtag_(vmo_t *o, unsigned tag, size_t pg, size_t n, size_t origin,
		  int line)
{
	unsigned char *b = malloc(n * PG), *e = malloc(PG);
	int r = vmo_read(o, pg * PG, b, n * PG);
	if (r)
		FAIL("line %d: vmo_read returned %d (%s)", line, r,
		     vmo_strerror(r));
	for (size_t i = 0; i < n; i++) {
		tag_page(e, tag, origin + pg + i);
		if (memcmp(b + i * PG, e, PG))
			FAIL("line %d: page %zu is not tag %u (byte 0 = %u)",
			     line, pg + i, tag, b[i * PG]);
	}
	free(b);
	free(e);
}
#define rtag(o, tag, pg, n) rtag_((o), (tag), (pg), (n), 0, __LINE__)
#define rtago(o, tag, pg, n, origin) \
	rtag_((o), (tag), (pg), (n), (origin), __LINE__)

/* The same through a mapping (p maps the object from page 0). */
static void mtag_(const unsigned char *p, unsigned tag, size_t pg, size_t n,
		  int line)
{
	unsigned char *e = malloc(PG);
	for (size_t i = 0; i < n; i++) {
		tag_page(e, tag, pg + i);
		if (memcmp(p + (pg + i) * PG, e, PG))
			FAIL("line %d: mapped page %zu is not tag %u (byte 0 = %u)",
			     line, pg + i, tag, p[(pg + i) * PG]);
	}
	free(e);
}
#define mtag(p, tag, pg, n) mtag_((p), (tag), (pg), (n), __LINE__)

static void mwrite(unsigned char *p, unsigned tag, size_t pg, size_t n)
{
	for (size_t i = 0; i < n; i++)
		tag_page(p + (pg + i) * PG, tag, pg + i);
}

static vmo_t *anon(vmo_pool_t *p, size_t pages)
{
	vmo_t *o;
	OK(vmo_create(p, pages * PG, 0, &o));
	return o;
}

/* ---------------------------------------------------------------- snapshot */

TEST(snapshot_sees_source_as_of_clone_vmo_write)
{
	struct env e = env_new(0);
	vmo_t *s = anon(e.pool, NP), *c;
	wtag(s, 1, 0, NP);
	OK(vmo_clone(s, 0, NP * PG, VMO_CLONE_SNAPSHOT, &c));
	wtag(s, 2, 0, NP / 2);
	rtag(c, 1, 0, NP);
	rtag(s, 2, 0, NP / 2);
	rtag(s, 1, NP / 2, NP / 2);
	vmo_pool_stats_t ps = pstat(e.pool);
	CHECK_EQ(ps.hidden_nodes, 1);
	CHECK_EQ(ps.cow_preserved, NP / 2);
	CHECK_EQ(ps.hidden_pages, NP / 2);
	vmo_unref(c);
	ps = pstat(e.pool);
	CHECK_EQ(ps.hidden_nodes, 0);
	CHECK_EQ(ps.hidden_pages, 0);
	vmo_unref(s);
	env_free(&e);
}

TEST(snapshot_of_mapped_source_keeps_content_while_mapping_writes)
{
	struct env e = env_new(0);
	vmo_t *s = anon(e.pool, NP), *c;
	unsigned char *p = NULL;
	OK(vmo_map(e.sp, s, 0, NP * PG, PROT_READ | PROT_WRITE, 0, (void **)&p));
	mwrite(p, 1, 0, NP);
	OK(vmo_clone(s, 0, NP * PG, VMO_CLONE_SNAPSHOT, &c));
	mwrite(p, 2, 0, NP);
	mtag(p, 2, 0, NP);
	rtag(c, 1, 0, NP);
	rtag(s, 2, 0, NP);
	/* a second snapshot: sees tag 2; the first still tag 1 */
	vmo_t *c2;
	OK(vmo_clone(s, 0, NP * PG, VMO_CLONE_SNAPSHOT, &c2));
	mwrite(p, 3, 8, 8);
	rtag(c2, 2, 0, NP);
	rtag(c, 1, 0, NP);
	rtag(s, 3, 8, 8);
	vmo_unref(c);
	rtag(c2, 2, 0, NP);
	vmo_unref(c2);
	CHECK_EQ(pstat(e.pool).hidden_nodes, 0);
	vmo_space_destroy(e.sp);
	vmo_unref(s);
	vmo_pool_destroy(e.pool);
}

TEST(snapshot_writes_stay_in_the_clone)
{
	struct env e = env_new(0);
	vmo_t *s = anon(e.pool, NP), *c;
	wtag(s, 1, 0, NP);
	OK(vmo_clone(s, 4 * PG, 16 * PG, VMO_CLONE_SNAPSHOT, &c));
	CHECK_EQ(vmo_size(c), 16 * PG);
	unsigned char *p = NULL;
	OK(vmo_map(e.sp, c, 0, 16 * PG, PROT_READ | PROT_WRITE, 0, (void **)&p));
	/* page i of the clone is page 4 + i of the source */
	unsigned char *e1 = malloc(PG);
	tag_page(e1, 1, 4);
	CHECK_MEM(p, e1, PG);
	memset(p + 3 * PG, 0x77, PG);
	wtag(c, 9, 5, 1);
	rtag(s, 1, 0, NP);
	unsigned char b[PG];
	OK(vmo_read(c, 3 * PG, b, PG));
	CHECK_EQ(b[0], 0x77);
	rtag(c, 9, 5, 1);
	free(e1);
	env_free(&e);
	vmo_unref(c);
	vmo_unref(s);
}

/* ----------------------------------------------------- at least on write */

TEST(alow_clone_sees_source_writes_until_it_writes)
{
	struct env e = env_new(0);
	vmo_t *s = anon(e.pool, NP), *c;
	wtag(s, 1, 0, NP);
	OK(vmo_clone(s, 0, NP * PG, VMO_CLONE_AT_LEAST_ON_WRITE, &c));
	unsigned char *p = NULL;
	OK(vmo_map(e.sp, c, 0, NP * PG, PROT_READ | PROT_WRITE, 0, (void **)&p));
	mtag(p, 1, 0, NP);          /* copies in the clone now */
	uint64_t inv0 = pstat(e.pool).cow_invalidated;
	wtag(s, 2, 0, 8);           /* the source writes: they go */
	CHECK_EQ(pstat(e.pool).cow_invalidated - inv0, 8);
	mtag(p, 2, 0, 8);           /* copied again */
	rtag(c, 2, 0, 8);
	mwrite(p, 3, 0, 4);         /* the clone writes its own */
	wtag(s, 4, 0, 8);           /* only the 4 copies it did not write go */
	CHECK_EQ(pstat(e.pool).cow_invalidated - inv0, 12);
	mtag(p, 3, 0, 4);
	mtag(p, 4, 4, 4);
	rtag(s, 4, 0, 8);
	env_free(&e);
	vmo_unref(c);
	vmo_unref(s);
}

/* ------------------------------------------------------------------ weak */

static sigjmp_buf bus_jb;
static volatile int bus_hits;
static void on_bus(int sig)
{
	(void)sig;
	bus_hits++;
	siglongjmp(bus_jb, 1);
}

TEST(weak_clone_page_is_dropped_when_source_writes_it)
{
	struct env e = env_new(0);
	vmo_t *s = anon(e.pool, NP), *w;
	wtag(s, 1, 0, NP);
	OK(vmo_clone(s, 0, NP * PG, VMO_CLONE_WEAK, &w));
	rtag(w, 1, 0, NP);
	wtag(s, 2, 10, 1);
	unsigned char b[PG];
	CHECK_ERR(vmo_read(w, 10 * PG, b, PG), -ENODATA);
	rtag(w, 1, 9, 1);
	rtag(w, 1, 11, 1);
	/* through a mapping: SIGBUS */
	unsigned char *p = NULL;
	OK(vmo_map(e.sp, w, 0, NP * PG, PROT_READ | PROT_WRITE, 0, (void **)&p));
	signal(SIGBUS, on_bus);
	if (!sigsetjmp(bus_jb, 1))
		(void)*(volatile unsigned char *)(p + 10 * PG);
	CHECK_EQ(bus_hits, 1);
	signal(SIGBUS, SIG_DFL);
	mtag(p, 1, 11, 1);
	/* written whole, it is the clone's own again */
	wtag(w, 5, 10, 1);
	rtag(w, 5, 10, 1);
	CHECK_EQ(pstat(e.pool).cow_dropped, 1);
	CHECK_EQ(pstat(e.pool).hidden_nodes, 0);
	env_free(&e);
	vmo_unref(w);
	vmo_unref(s);
}

/* ---------------------------------------------------------------- copies */

TEST(copy_scatter_gather_share_then_diverge)
{
	struct env e = env_new(0);
	vmo_t *s = anon(e.pool, NP), *d = anon(e.pool, NP), *g;
	wtag(s, 1, 0, NP);
	wtag(d, 7, 0, NP);
	OK(vmo_copy(s, 0, d, 16 * PG, 8 * PG, 0));
	uint64_t dst[3] = {40, 2, 50};
	OK(vmo_copy_scatter(s, 20 * PG, d, dst, 3, 0));
	uint64_t src[2] = {33, 5};
	OK(vmo_copy_gather(s, src, 2, d, 60 * PG, 0));
	uint64_t gp[3] = {9, 9, 1};
	OK(vmo_gather(s, gp, 3, 0, &g));
	wtag(s, 2, 0, NP); /* none of them sees this */
	unsigned char *b = malloc(PG), *x = malloc(PG);
	for (size_t i = 0; i < 8; i++) {
		OK(vmo_read(d, (16 + i) * PG, b, PG));
		tag_page(x, 1, i);
		CHECK_MEM(b, x, PG);
	}
	for (size_t i = 0; i < 3; i++) {
		OK(vmo_read(d, dst[i] * PG, b, PG));
		tag_page(x, 1, 20 + i);
		CHECK_MEM(b, x, PG);
	}
	for (size_t i = 0; i < 2; i++) {
		OK(vmo_read(d, (60 + i) * PG, b, PG));
		tag_page(x, 1, src[i]);
		CHECK_MEM(b, x, PG);
	}
	for (size_t i = 0; i < 3; i++) {
		OK(vmo_read(g, i * PG, b, PG));
		tag_page(x, 1, gp[i]);
		CHECK_MEM(b, x, PG);
	}
	rtag(d, 7, 0, 2);
	rtag(d, 7, 3, 13);
	/* the destination's own writes stay its own */
	wtag(d, 8, 16, 1);
	rtag(d, 8, 16, 1);
	rtag(s, 2, 0, NP);
	vmo_unref(g);
	vmo_unref(d);
	vmo_unref(s);
	vmo_pool_stats_t ps = pstat(e.pool);
	CHECK_EQ(ps.hidden_nodes, 0);
	CHECK_EQ(ps.resident_pages, 0);
	env_free(&e);
	free(b);
	free(x);
}

/*
 * Page 3 of d shares a page of s; page 2 of d is then copied from page 3:
 * it shares it through d's own snapshot node, which shows d's live page 3.
 * A fill of pages 2 and 3 together (one write fault with fault-around, or
 * one vmo_write across both) claims both and must read page 2 through page
 * 3 -- not wait for page 3, which the same fill holds.
 */
TEST(fill_of_a_page_copied_from_a_shared_neighbour_in_the_same_run)
{
	struct env e = env_new(0);
	for (int via_map = 0; via_map < 2; via_map++) {
		vmo_t *s = anon(e.pool, NP), *d = anon(e.pool, NP);
		wtag(s, 1, 0, NP);
		wtag(d, 7, 0, NP);
		OK(vmo_copy(s, 10 * PG, d, 3 * PG, PG, 0));
		OK(vmo_copy(d, 3 * PG, d, 2 * PG, PG, 0));
		unsigned char *x = malloc(PG), *b = malloc(2 * PG);
		tag_page(x, 1, 10);
		if (via_map) {
			unsigned char *m = NULL;
			OK(vmo_map(e.sp, d, 0, NP * PG, PROT_READ | PROT_WRITE, 0,
				   (void **)&m));
			OK(vmo_advise(e.sp, m, NP * PG, VMO_ADV_SEQUENTIAL));
			m[2 * PG + 5] = 0xEE; /* one fault fills pages 2.. */
			m[3 * PG + 6] = 0xDD;
			memcpy(b, m + 2 * PG, 2 * PG);
			OK(vmo_unmap(e.sp, m, NP * PG));
		} else {
			/* bytes 5.. of page 2 and ..6 of page 3: both pages
			 * are partly written, so both are filled first */
			unsigned char *w = malloc(PG + 2);
			memcpy(w, x + 5, PG - 5);
			memcpy(w + PG - 5, x, 7);
			w[0] = 0xEE;
			w[PG + 1] = 0xDD;
			OK(vmo_write(d, 2 * PG + 5, w, PG + 2));
			free(w);
			OK(vmo_read(d, 2 * PG, b, 2 * PG));
		}
		for (size_t pg = 0; pg < 2; pg++)
			for (size_t i = 0; i < PG; i++) {
				unsigned char want = x[i];
				if (pg == 0 && i == 5)
					want = 0xEE;
				if (pg == 1 && i == 6)
					want = 0xDD;
				if (b[pg * PG + i] != want)
					FAIL("%s: page %zu byte %zu is %#x, want "
					     "%#x", via_map ? "mapping" : "vmo_write",
					     2 + pg, i, b[pg * PG + i], want);
			}
		rtag(s, 1, 0, NP); /* the source is untouched */
		rtag(d, 7, 0, 2);
		rtag(d, 7, 4, NP - 4);
		free(x);
		free(b);
		vmo_unref(d);
		vmo_unref(s);
		CHECK_EQ(pstat(e.pool).hidden_nodes, 0);
	}
	env_free(&e);
}

/* ------------------------------------------------------------- bad input */

TEST(bad_input_changes_nothing)
{
	struct env e = env_new(0);
	vmo_t *s = anon(e.pool, NP), *c = NULL;
	wtag(s, 1, 0, NP);
	CHECK_ERR(vmo_clone(s, 0, PG, 0, &c), -EINVAL);
	CHECK_ERR(vmo_clone(s, 0, PG, VMO_CLONE_SNAPSHOT | VMO_CLONE_WEAK, &c),
		  -EINVAL);
	CHECK_ERR(vmo_clone(s, 0, PG, 0x80, &c), -EINVAL);
	CHECK_ERR(vmo_clone(s, 1, PG, VMO_CLONE_SNAPSHOT, &c), -EINVAL);
	CHECK_ERR(vmo_clone(s, 0, 0, VMO_CLONE_SNAPSHOT, &c), -EINVAL);
	CHECK_ERR(vmo_clone(s, 0, (NP + 1) * PG, VMO_CLONE_SNAPSHOT, &c), -ERANGE);
	CHECK_ERR(vmo_clone(NULL, 0, PG, VMO_CLONE_SNAPSHOT, &c), -EINVAL);
	CHECK_ERR(vmo_clone(s, 0, PG, VMO_CLONE_SNAPSHOT, NULL), -EINVAL);
	CHECK(c == NULL);
	CHECK_ERR(vmo_copy(s, 0, s, 4 * PG, 8 * PG, 0), -EINVAL);
	uint64_t bad[2] = {1, NP};
	CHECK_ERR(vmo_copy_scatter(s, 0, s, bad, 2, 0), -ERANGE);
	uint64_t dup[2] = {30, 30};
	CHECK_ERR(vmo_copy_scatter(s, 0, s, dup, 2, 0), -EINVAL);
	uint64_t ov[1] = {0};
	CHECK_ERR(vmo_copy_gather(s, ov, 1, s, 0, 0), -EINVAL);
	CHECK_ERR(vmo_gather(s, bad, 2, 0, &c), -ERANGE);
	CHECK_ERR(vmo_copy(s, 0, s, 8 * PG, 8 * PG, 0x10), -EINVAL);
	vmo_t *dead = anon(e.pool, 4);
	vmo_unref(dead);
	CHECK_ERR(vmo_clone(dead, 0, PG, VMO_CLONE_SNAPSHOT, &c), -EBADF);
	CHECK(c == NULL);
	vmo_pool_stats_t ps = pstat(e.pool);
	CHECK_EQ(ps.objects, 1);
	CHECK_EQ(ps.hidden_nodes, 0);
	CHECK_EQ(ps.cow_preserved, 0);
	CHECK_EQ(ps.cow_copies, 0);
	CHECK_EQ(ps.resident_pages, NP);
	rtag(s, 1, 0, NP); /* and the source is as it was */
	env_free(&e);
	vmo_unref(s);
}


/* ------------------------------------------------------- file and pager */

TEST(snapshot_of_shared_file_keeps_content_after_write_and_sync)
{
	struct env e = env_new(0);
	size_t len = 32 * PG;
	int fd = temp_file(len, 5);
	vmo_t *f, *c;
	OK(vmo_create_file(e.pool, fd, 0, len, VMO_FILE_SHARED, &f));
	unsigned char *p = NULL;
	OK(vmo_map(e.sp, f, 0, len, PROT_READ | PROT_WRITE, 0, (void **)&p));
	/* touched and written before the clone: its mapping is on the
	 * async set and is converted by the clone */
	p[3 * PG] = 0x11;
	OK(vmo_clone(f, 0, len, VMO_CLONE_SNAPSHOT, &c));
	unsigned char *want = malloc(len), *got = malloc(len);
	pattern_fill(want, len, 5, 0);
	want[3 * PG] = 0x11;
	/* the mapping keeps running and writing */
	for (size_t i = 0; i < 32; i++)
		p[i * PG + 7] = (unsigned char)(0x40 + i);
	OK(vmo_sync(f, 0, len));
	CHECK_EQ(pread(fd, got, len, 0), (ssize_t)len);
	for (size_t i = 0; i < 32; i++)
		CHECK_EQ(got[i * PG + 7], 0x40 + i); /* written back */
	OK(vmo_decommit(f, 0, len)); /* even refetched from the file */
	OK(vmo_read(c, 0, got, len));
	SAME(got, want, len, 0, "snapshot of the file");
	vmo_unref(c);
	CHECK_EQ(pstat(e.pool).hidden_nodes, 0);
	env_free(&e);
	vmo_unref(f);
	free(want);
	free(got);
	close(fd);
}

/* The first clone of a write-logged object moves its mappings to the
 * other uffd set (a new view replaces the old one); the resident pages
 * come along mapped, so reading them takes no fault and shows what was
 * written, and the first writes take at most one write-protect fault per
 * page (their copy-on-write; a sequential writer takes fewer). */
TEST(first_clone_of_a_tracked_object_keeps_its_pages_mapped)
{
	struct env e = env_new(1);
	size_t n = 48, len = n * PG;
	int fd = temp_file(len, 9);
	vmo_t *f, *c;
	OK(vmo_create_file(e.pool, fd, 0, len, VMO_FILE_SHARED, &f));
	unsigned char *p = NULL;
	OK(vmo_map(e.sp, f, 0, len, PROT_READ | PROT_WRITE, 0, (void **)&p));
	OK(vmo_advise(e.sp, p, len, VMO_ADV_WILLNEED));
	for (size_t i = 0; i < n; i += 2)
		p[i * PG + 1] = (unsigned char)(0x80 + i);
	CHECK_EQ(sstat(e.sp).mappings, 1);
	OK(vmo_clone(f, 0, len, VMO_CLONE_SNAPSHOT, &c));
	unsigned char *want = malloc(len), *got = malloc(len);
	pattern_fill(want, len, 9, 0);
	for (size_t i = 0; i < n; i += 2)
		want[i * PG + 1] = (unsigned char)(0x80 + i);
	vmo_space_stats_t s0 = sstat(e.sp);
	SAME(p, want, len, 0, "mapping after the clone");
	vmo_space_stats_t s1 = sstat(e.sp);
	CHECK_EQ(s1.faults_missing - s0.faults_missing, 0);
	CHECK_EQ(s1.faults_minor - s0.faults_minor, 0);
	CHECK_EQ(s1.faults_wp - s0.faults_wp, 0);
	for (size_t i = 0; i < n; i++)
		p[i * PG + 2] = 0x5A;
	vmo_space_stats_t s2 = sstat(e.sp);
	CHECK_EQ(s2.faults_minor - s1.faults_minor, 0);
	CHECK_EQ(s2.faults_missing - s1.faults_missing, 0);
	uint64_t stale = s2.faults_spurious - s1.faults_spurious;
	CHECK(stale <= s2.handler_threads);
	CHECK(s2.faults_wp - s1.faults_wp - stale >= 1);
	CHECK(s2.faults_wp - s1.faults_wp - stale <= n);
	OK(vmo_read(c, 0, got, len));
	SAME(got, want, len, 0, "snapshot");
	for (size_t i = 0; i < n; i++)
		want[i * PG + 2] = 0x5A;
	OK(vmo_read(f, 0, got, len));
	SAME(got, want, len, 0, "source");
	SAME(p, want, len, 0, "mapping after the writes");
	vmo_unref(c);
	OK(vmo_unmap(e.sp, p, len));
	vmo_unref(f);
	env_free(&e);
	free(want);
	free(got);
	close(fd);
}

/* A family object nothing depends on (its clone is gone) installs a
 * page written through a mapping writable at once; a vmo_sync right after
 * the write must write it back (the page may not be settled yet when the
 * writer runs again). */
TEST(sync_right_after_a_first_write_through_a_mapping_writes_it_back)
{
	struct env e = env_new(1);
	size_t n = 512, len = n * PG;
	int fd = temp_file(len, 13);
	vmo_t *f, *c;
	OK(vmo_create_file(e.pool, fd, 0, len, VMO_FILE_SHARED, &f));
	OK(vmo_clone(f, 0, len, VMO_CLONE_SNAPSHOT, &c));
	vmo_unref(c);
	unsigned char *p = NULL;
	OK(vmo_map(e.sp, f, 0, len, PROT_READ | PROT_WRITE, 0, (void **)&p));
	OK(vmo_advise(e.sp, p, len, VMO_ADV_RANDOM));
	for (size_t i = 0; i < n; i++) {
		unsigned char v = (unsigned char)(i * 3 + 1), got = 0;
		p[i * PG + 5] = v;
		OK(vmo_sync(f, i * PG, PG));
		CHECK_EQ(pread(fd, &got, 1, (off_t)(i * PG + 5)), 1);
		if (got != v)
			FAIL("page %zu: the file has %#x after vmo_sync, the "
			     "mapping wrote %#x", i, got, v);
	}
	OK(vmo_unmap(e.sp, p, len));
	vmo_unref(f);
	env_free(&e);
	close(fd);
}

static int released;
static void count_release(void *ctx)
{
	(void)ctx;
	released++;
}

TEST(snapshot_of_pager_object_outlives_source_and_keeps_its_pager)
{
	struct env e = env_new(0);
	struct upager u;
	up_init(&u, 16 * PG, 9);
	vmo_pager_ops_t ops = up_ops;
	ops.release = count_release;
	vmo_t *o, *c;
	OK(vmo_create_pager(e.pool, 16 * PG, &ops, &u, 0, &o));
	unsigned char *want = malloc(16 * PG), *got = malloc(16 * PG);
	memcpy(want, u.store, 16 * PG);
	OK(vmo_clone(o, 0, 16 * PG, VMO_CLONE_SNAPSHOT, &c));
	wtag(o, 3, 0, 16);          /* needs the pager's old pages first */
	OK(vmo_sync(o, 0, 16 * PG));
	rtag(o, 3, 0, 16);
	vmo_unref(o);               /* written back now... */
	CHECK_EQ(released, 0);      /* ...but the clone still sees through it */
	unsigned char e3[PG];
	tag_page(e3, 3, 2);
	CHECK_MEM(u.store + 2 * PG, e3, PG);
	OK(vmo_read(c, 0, got, 16 * PG));
	SAME(got, want, 16 * PG, 0, "snapshot of the pager object");
	vmo_unref(c);
	CHECK_EQ(released, 1);
	vmo_pool_stats_t ps = pstat(e.pool);
	CHECK_EQ(ps.objects, 0);
	CHECK_EQ(ps.hidden_nodes, 0);
	CHECK_EQ(ps.resident_pages, 0);
	env_free(&e);
	up_free(&u);
	free(want);
	free(got);
}

/* --------------------------------------------------------------- chains */

TEST(chain_of_snapshots_merges_as_clones_go)
{
	struct env e = env_new(0);
	vmo_t *s = anon(e.pool, 8), *c[4];
	for (unsigned i = 0; i < 4; i++) {
		wtag(s, 10 + i, 0, 8);
		OK(vmo_clone(s, 0, 8 * PG, VMO_CLONE_SNAPSHOT, &c[i]));
	}
	wtag(s, 20, 0, 8);
	vmo_pool_stats_t ps = pstat(e.pool);
	CHECK_EQ(ps.hidden_nodes, 4); /* one per live snapshot */
	CHECK_EQ(ps.hidden_pages, 32);
	for (unsigned i = 0; i < 4; i++)
		rtag(c[i], 10 + i, 0, 8);
	/* a middle one goes: its pre-images are still needed by c[0..1],
	 * which see through it -- merged into the older node */
	vmo_unref(c[2]);
	ps = pstat(e.pool);
	CHECK_EQ(ps.hidden_nodes, 3);
	CHECK_EQ(ps.hidden_pages, 24);
	rtag(c[0], 10, 0, 8);
	rtag(c[1], 11, 0, 8);
	rtag(c[3], 13, 0, 8);
	vmo_unref(c[0]); /* the oldest: freed, nobody sees through it */
	ps = pstat(e.pool);
	CHECK_EQ(ps.hidden_nodes, 2);
	CHECK_EQ(ps.hidden_pages, 16);
	vmo_unref(c[3]);
	vmo_unref(c[1]);
	ps = pstat(e.pool);
	CHECK_EQ(ps.hidden_nodes, 0);
	CHECK_EQ(ps.hidden_pages, 0);
	CHECK_EQ(ps.resident_pages, 8);
	rtag(s, 20, 0, 8);
	env_free(&e);
	vmo_unref(s);
}

TEST(snapshot_without_writes_in_between_shares_a_node)
{
	struct env e = env_new(0);
	vmo_t *s = anon(e.pool, 8), *a, *b;
	wtag(s, 1, 0, 8);
	OK(vmo_clone(s, 0, 8 * PG, VMO_CLONE_SNAPSHOT, &a));
	OK(vmo_clone(s, 0, 8 * PG, VMO_CLONE_SNAPSHOT, &b));
	CHECK_EQ(pstat(e.pool).hidden_nodes, 1);
	wtag(s, 2, 0, 8);
	CHECK_EQ(pstat(e.pool).hidden_pages, 8); /* one pre-image each */
	rtag(a, 1, 0, 8);
	rtag(b, 1, 0, 8);
	env_free(&e);
	vmo_unref(a);
	vmo_unref(b);
	vmo_unref(s);
}

TEST(clones_of_clones)
{
	struct env e = env_new(0);
	vmo_t *s = anon(e.pool, 16), *a, *b, *w;
	wtag(s, 1, 0, 16);
	OK(vmo_clone(s, 0, 16 * PG, VMO_CLONE_AT_LEAST_ON_WRITE, &a));
	OK(vmo_clone(a, 4 * PG, 8 * PG, VMO_CLONE_SNAPSHOT, &b));
	OK(vmo_clone(b, 0, 8 * PG, VMO_CLONE_WEAK, &w));
	/* b's page i is s's page 4 + i */
	wtag(s, 2, 4, 2);  /* a sees it; b keeps tag 1; w too */
	rtag(a, 2, 4, 2);
	rtago(b, 1, 0, 8, 4);
	rtago(w, 1, 0, 8, 4);
	wtag(b, 3, 1, 1);  /* b's own write: w's page 1 is dropped */
	unsigned char x[PG];
	CHECK_ERR(vmo_read(w, 1 * PG, x, PG), -ENODATA);
	rtago(w, 1, 0, 1, 4);
	rtago(w, 1, 2, 6, 4);
	vmo_unref(a);      /* b still sees through it */
	wtag(s, 4, 0, 16);
	rtago(b, 1, 0, 1, 4);
	rtag(b, 3, 1, 1);
	rtago(b, 1, 2, 6, 4);
	vmo_unref(w);
	vmo_unref(b);
	vmo_unref(s);
	vmo_pool_stats_t ps = pstat(e.pool);
	CHECK_EQ(ps.objects, 0);
	CHECK_EQ(ps.hidden_nodes, 0);
	CHECK_EQ(ps.resident_pages, 0);
	env_free(&e);
}

/* ------------------------------------------------------------- decommit */

TEST(decommit_of_a_clone_discards_its_own_changes)
{
	struct env e = env_new(0);
	vmo_t *s = anon(e.pool, 4), *c, *a, *w;
	wtag(s, 1, 0, 4);
	OK(vmo_clone(s, 0, 4 * PG, VMO_CLONE_SNAPSHOT, &c));
	OK(vmo_clone(s, 0, 4 * PG, VMO_CLONE_AT_LEAST_ON_WRITE, &a));
	OK(vmo_clone(s, 0, 4 * PG, VMO_CLONE_WEAK, &w));
	wtag(c, 5, 0, 4);
	wtag(a, 5, 0, 4);
	wtag(w, 5, 0, 2);
	wtag(s, 2, 0, 4);
	OK(vmo_decommit(c, 0, 4 * PG));
	OK(vmo_decommit(a, 0, 4 * PG));
	OK(vmo_decommit(w, 0, 4 * PG));
	rtag(c, 1, 0, 4); /* the snapshot again */
	rtag(a, 2, 0, 4); /* what the source shows now */
	unsigned char x[PG];
	/* a weak clone's own pages have nothing to go back to; the ones
	 * it only showed were dropped when the source wrote them */
	for (int i = 0; i < 4; i++)
		CHECK_ERR(vmo_read(w, (uint64_t)i * PG, x, PG), -ENODATA);
	env_free(&e);
	vmo_unref(c);
	vmo_unref(a);
	vmo_unref(w);
	vmo_unref(s);
}

TEST(source_decommit_is_a_change_for_its_clones)
{
	struct env e = env_new(0);
	vmo_t *s = anon(e.pool, 4), *c, *a, *w;
	wtag(s, 1, 0, 4);
	OK(vmo_clone(s, 0, 4 * PG, VMO_CLONE_SNAPSHOT, &c));
	OK(vmo_clone(s, 0, 4 * PG, VMO_CLONE_AT_LEAST_ON_WRITE, &a));
	OK(vmo_clone(s, 0, 4 * PG, VMO_CLONE_WEAK, &w));
	OK(vmo_decommit(s, PG, PG));
	rtag(c, 1, 0, 4);
	unsigned char x[PG], z[PG];
	memset(z, 0, PG);
	OK(vmo_read(a, PG, x, PG));
	CHECK_MEM(x, z, PG);
	CHECK_ERR(vmo_read(w, PG, x, PG), -ENODATA);
	rtag(w, 1, 0, 1);
	env_free(&e);
	vmo_unref(c);
	vmo_unref(a);
	vmo_unref(w);
	vmo_unref(s);
}

/* --------------------------------------------------------------- copies */

TEST(eager_and_cross_pool_copies_share_nothing)
{
	struct env e = env_new(0);
	vmo_pool_t *p2;
	OK(vmo_pool_create(NULL, &p2));
	vmo_t *s = anon(e.pool, 8), *d = anon(e.pool, 8), *x = anon(p2, 8), *g;
	wtag(s, 1, 0, 8);
	OK(vmo_copy(s, 0, d, 0, 8 * PG, VMO_COPY_EAGER));
	OK(vmo_copy(s, 0, x, 0, 8 * PG, 0)); /* another pool: bytes */
	uint64_t pages[2] = {3, 4};
	OK(vmo_gather(s, pages, 2, VMO_COPY_EAGER, &g));
	vmo_pool_stats_t ps = pstat(e.pool);
	CHECK_EQ(ps.hidden_nodes, 0);
	CHECK_EQ(pstat(p2).hidden_nodes, 0);
	wtag(s, 2, 0, 8);
	rtag(d, 1, 0, 8);
	rtag(x, 1, 0, 8);
	unsigned char b[PG], t[PG];
	OK(vmo_read(g, PG, b, PG));
	tag_page(t, 1, 4);
	CHECK_MEM(b, t, PG);
	/* copy-on-write by default: a node keeps what d2 shares */
	vmo_t *d2 = anon(e.pool, 8);
	OK(vmo_copy(s, 0, d2, 0, 8 * PG, 0));
	CHECK_EQ(pstat(e.pool).hidden_nodes, 1);
	CHECK_EQ(pstat(e.pool).cow_preserved, 0);
	wtag(s, 3, 0, 1);
	CHECK_EQ(pstat(e.pool).cow_preserved, 1);
	rtag(d2, 2, 0, 8);
	vmo_unref(d2);
	CHECK_EQ(pstat(e.pool).hidden_nodes, 0);
	env_free(&e);
	vmo_unref(s);
	vmo_unref(d);
	vmo_unref(g);
	vmo_unref(x);
	vmo_pool_destroy(p2);
}

TEST(copy_into_write_back_object_reaches_its_file)
{
	struct env e = env_new(0);
	size_t len = 8 * PG;
	int fd = temp_file(len, 3);
	vmo_t *f, *s = anon(e.pool, 8);
	OK(vmo_create_file(e.pool, fd, 0, len, VMO_FILE_SHARED, &f));
	wtag(s, 6, 0, 8);
	OK(vmo_copy(s, 2 * PG, f, 5 * PG, 2 * PG, 0));
	OK(vmo_sync(f, 0, len));
	unsigned char b[PG], t[PG];
	CHECK_EQ(pread(fd, b, PG, 6 * PG), (ssize_t)PG);
	tag_page(t, 6, 3);
	CHECK_MEM(b, t, PG);
	env_free(&e);
	vmo_unref(f);
	vmo_unref(s);
	close(fd);
}

TEST(copy_errors_change_nothing)
{
	struct env e = env_new(0);
	vmo_t *s = anon(e.pool, 8), *w, *d = anon(e.pool, 8);
	int fd = temp_file(8 * PG, 4);
	char path[64]; /* a read-only descriptor of the same file */
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	int rfd = open(path, O_RDONLY);
	vmo_t *ro;
	OK(vmo_create_file(e.pool, rfd, 0, 8 * PG, VMO_FILE_SHARED, &ro));
	wtag(s, 1, 0, 8);
	wtag(d, 7, 0, 8);
	OK(vmo_clone(s, 0, 8 * PG, VMO_CLONE_WEAK, &w));
	wtag(s, 2, 3, 1); /* w's page 3 is dropped */
	CHECK_ERR(vmo_copy(w, 0, d, 0, 8 * PG, 0), -ENODATA);
	CHECK_ERR(vmo_copy(w, 0, d, 0, 8 * PG, VMO_COPY_EAGER), -ENODATA);
	uint64_t pg3[1] = {3};
	vmo_t *g = NULL;
	CHECK_ERR(vmo_gather(w, pg3, 1, 0, &g), -ENODATA);
	CHECK(g == NULL);
	rtag(d, 7, 0, 8);
	CHECK_ERR(vmo_copy(s, 0, ro, 0, PG, 0), -EACCES);
	CHECK_ERR(vmo_copy(s, 0, d, 0, 9 * PG, 0), -ERANGE);
	CHECK_ERR(vmo_copy(s, 0, d, PG, 8 * PG, 0), -ERANGE);
	CHECK_ERR(vmo_copy(s, 1, d, 0, PG, 0), -EINVAL);
	CHECK_ERR(vmo_copy(s, 0, d, 0, 0, 0), -EINVAL);
	CHECK_ERR(vmo_copy(NULL, 0, d, 0, PG, 0), -EINVAL);
	CHECK_ERR(vmo_copy_scatter(s, 0, d, NULL, 1, 0), -EINVAL);
	CHECK_ERR(vmo_copy_gather(s, pg3, 0, d, 0, 0), -EINVAL);
	uint64_t far[1] = {8};
	CHECK_ERR(vmo_copy_gather(s, far, 1, d, 0, 0), -ERANGE);
	CHECK_ERR(vmo_copy_scatter(s, 7 * PG, d, pg3, 2, 0), -ERANGE);
	rtag(d, 7, 0, 8);
	CHECK_EQ(pstat(e.pool).hidden_nodes, 0);
	env_free(&e);
	vmo_unref(s);
	vmo_unref(w);
	vmo_unref(d);
	vmo_unref(ro);
	close(fd);
	close(rfd);
}

/* --------------------------------------------------------------- memory */

TEST(memory_returns_to_baseline_with_eviction_and_swap)
{
	struct env e = env_budget(0, 64, 1024);
	vmo_t *s = anon(e.pool, 128), *c[3];
	unsigned char *p = NULL;
	OK(vmo_map(e.sp, s, 0, 128 * PG, PROT_READ | PROT_WRITE, 0, (void **)&p));
	mwrite(p, 1, 0, 128);
	vmo_pool_stats_t base = pool_settle(e.pool, 64);
	for (unsigned i = 0; i < 3; i++) {
		OK(vmo_clone(s, 0, 128 * PG, VMO_CLONE_SNAPSHOT, &c[i]));
		mwrite(p, 2 + i, 0, 128);
	}
	for (unsigned i = 0; i < 3; i++)
		rtag(c[i], 1 + i, 0, 128);
	vmo_pool_stats_t mid = pstat(e.pool);
	CHECK_EQ(mid.hidden_nodes, 3);
	CHECK_EQ(mid.hidden_pages, 3 * 128);
	CHECK(mid.evictions > base.evictions);
	CHECK(mid.swapped_pages > base.swapped_pages); /* pre-images too */
	for (unsigned i = 0; i < 3; i++)
		vmo_unref(c[i]);
	vmo_pool_stats_t end = pstat(e.pool);
	CHECK_EQ(end.hidden_nodes, 0);
	CHECK_EQ(end.hidden_pages, 0);
	CHECK_EQ(end.objects, 1);
	CHECK_EQ(end.resident_pages + end.swapped_pages, 128);
	CHECK_EQ(end.swap_slots_used >= end.swapped_pages, 1);
	mtag(p, 4, 0, 128);
	vmo_space_destroy(e.sp);
	vmo_unref(s);
	end = pstat(e.pool);
	CHECK_EQ(end.resident_pages, 0);
	CHECK_EQ(end.swapped_pages, 0);
	CHECK_EQ(end.swap_slots_used, 0);
	vmo_pool_destroy(e.pool);
}

/* ---------------------------------------------------------- force write */

TEST(force_write_mapping_takes_no_write_fault)
{
	struct env e = env_new(1);
	vmo_t *s = anon(e.pool, 32), *c;
	wtag(s, 1, 0, 32);
	OK(vmo_clone(s, 0, 32 * PG, VMO_CLONE_SNAPSHOT, &c));
	unsigned char *p = NULL;
	CHECK_ERR(vmo_map(e.sp, c, 0, 32 * PG, PROT_READ, VMO_MAP_FORCE_WRITE,
			  (void **)&p),
		  -EINVAL);
	OK(vmo_map(e.sp, c, 0, 32 * PG, PROT_READ | PROT_WRITE,
		   VMO_MAP_FORCE_WRITE, (void **)&p));
	vmo_space_stats_t before = sstat(e.sp);
	mtag(p, 1, 0, 32);
	mwrite(p, 2, 0, 32);
	vmo_space_stats_t after = sstat(e.sp);
	CHECK_EQ(after.faults_missing + after.faults_minor + after.faults_wp,
		 before.faults_missing + before.faults_minor + before.faults_wp);
	rtag(c, 2, 0, 32);
	rtag(s, 1, 0, 32);
	/* and the source mapped with it: a live snapshot's pre-images are
	 * kept at the map, before any write */
	vmo_t *c3;
	OK(vmo_clone(s, 0, 32 * PG, VMO_CLONE_SNAPSHOT, &c3));
	uint64_t kept = pstat(e.pool).cow_preserved;
	unsigned char *q = NULL;
	OK(vmo_map(e.sp, s, 0, 32 * PG, PROT_READ | PROT_WRITE,
		   VMO_MAP_FORCE_WRITE, (void **)&q));
	CHECK_EQ(pstat(e.pool).cow_preserved - kept, 32);
	before = sstat(e.sp);
	mwrite(q, 3, 0, 32);
	after = sstat(e.sp);
	CHECK_EQ(after.faults_wp, before.faults_wp);
	rtag(s, 3, 0, 32);
	rtag(c3, 1, 0, 32);
	vmo_unref(c3);
	vmo_t *c2;
	OK(vmo_clone(s, 0, 32 * PG, VMO_CLONE_SNAPSHOT, &c2));
	mwrite(q, 4, 0, 32); /* protected again by the new clone */
	rtag(c2, 3, 0, 32);
	CHECK(sstat(e.sp).faults_wp > after.faults_wp);
	env_free(&e);
	vmo_unref(c);
	vmo_unref(c2);
	vmo_unref(s);
}

/*
 * A writer that is not a stream but writes a 2 MiB block densely after a
 * snapshot: once an eighth of the block is written, a fault unprotects the
 * rest of the block after it, keeping its pre-images early; a sparse
 * writer gets one fault per page and no pre-image it did not cause;
 * VMO_ADV_RANDOM opts out.  The snapshot's content is exact in every case.
 */
TEST(dense_random_writer_takes_fewer_write_faults)
{
	struct env e = env_new(0);
	enum { B = 512 }; /* pages of a block */
	vmo_t *s = anon(e.pool, 3 * B), *c;
	wtag(s, 1, 0, 3 * B);
	unsigned char *p = NULL;
	OK(vmo_map(e.sp, s, 0, 3 * B * PG, PROT_READ | PROT_WRITE, 0,
		   (void **)&p));
	mtag(p, 1, 0, 3 * B); /* all mapped (read faults), protected */
	OK(vmo_advise(e.sp, p + 2 * B * PG, B * PG, VMO_ADV_RANDOM));
	OK(vmo_clone(s, 0, 3 * B * PG, VMO_CLONE_SNAPSHOT, &c));
	CHECK_EQ(pstat(e.pool).hidden_pages, 0);

	/* block 1, sparse: 32 pages (1/16), 97 apart mod B */
	vmo_space_stats_t b0 = sstat(e.sp);
	for (size_t i = 0; i < 32; i++)
		mwrite(p, 2, B + (i * 97) % B, 1);
	vmo_space_stats_t b1 = sstat(e.sp);
	/* a handler that read its first fault across the clone only wakes
	 * it (it may be stale: fault.c), and the write faults again */
	uint64_t stale = b1.faults_spurious - b0.faults_spurious;
	CHECK(stale <= b1.handler_threads);
	CHECK_EQ(b1.faults_wp - b0.faults_wp - stale, 32);
	CHECK_EQ(pstat(e.pool).hidden_pages, 32);

	/* block 0, dense: every page, 7 apart mod B */
	for (size_t i = 0; i < B; i++)
		mwrite(p, 2, (i * 7) % B, 1);
	vmo_space_stats_t b2 = sstat(e.sp);
	CHECK_EQ(b2.faults_spurious, b1.faults_spurious);
	uint64_t dense = b2.faults_wp - b1.faults_wp;
	CHECK(dense >= B / 8 && dense <= B / 4);
	CHECK_EQ(pstat(e.pool).hidden_pages, 32 + B);

	/* block 2, the same order with VMO_ADV_RANDOM: a fault per page */
	for (size_t i = 0; i < B; i++)
		mwrite(p, 2, 2 * B + (i * 7) % B, 1);
	vmo_space_stats_t b3 = sstat(e.sp);
	CHECK_EQ(b3.faults_wp - b2.faults_wp, B);
	CHECK_EQ(pstat(e.pool).hidden_pages, 32 + 2 * B);

	rtag(c, 1, 0, 3 * B);
	rtag(s, 2, 0, B);
	rtag(s, 2, 2 * B, B);
	for (size_t i = 0; i < 32; i++)
		rtag(s, 2, B + (i * 97) % B, 1);
	vmo_unref(c);
	CHECK_EQ(pstat(e.pool).hidden_pages, 0);
	env_free(&e);
	vmo_unref(s);
}

/* --------------------------------------------------------- through maps */

TEST(alow_clone_mapping_follows_source_mapping)
{
	struct env e = env_new(0);
	vmo_t *s = anon(e.pool, 16), *a;
	unsigned char *ps = NULL, *pa = NULL;
	OK(vmo_map(e.sp, s, 0, 16 * PG, PROT_READ | PROT_WRITE, 0, (void **)&ps));
	mwrite(ps, 1, 0, 16);
	OK(vmo_clone(s, 0, 16 * PG, VMO_CLONE_AT_LEAST_ON_WRITE, &a));
	OK(vmo_map(e.sp, a, 0, 16 * PG, PROT_READ | PROT_WRITE, 0, (void **)&pa));
	mtag(pa, 1, 0, 16);
	for (unsigned round = 2; round < 6; round++) {
		mwrite(ps, round, 0, 16);
		mtag(pa, round, 0, 16);
	}
	mwrite(pa, 9, 8, 8);
	mwrite(ps, 10, 0, 16);
	mtag(pa, 10, 0, 8);
	mtag(pa, 9, 8, 8);
	env_free(&e);
	vmo_unref(a);
	vmo_unref(s);
}

static void *fork_child_clone(vmo_t *s)
{
	vmo_t *c = NULL;
	return (void *)(intptr_t)vmo_clone(s, 0, PG, VMO_CLONE_SNAPSHOT, &c);
}

TEST(clone_in_forked_child_is_echild)
{
	struct env e = env_new(0);
	vmo_t *s = anon(e.pool, 4);
	pid_t pid = fork();
	if (pid == 0)
		_exit((intptr_t)fork_child_clone(s) == -ECHILD ? 0 : 1);
	int st;
	waitpid(pid, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	env_free(&e);
	vmo_unref(s);
}

TEST_MAIN()
