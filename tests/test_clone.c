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

/* Check that pages [pg, pg+n) of o read (vmo_read) as tag. */
static void rtag_(vmo_t *o, unsigned tag, size_t pg, size_t n, int line)
{
	unsigned char *b = malloc(n * PG), *e = malloc(PG);
	int r = vmo_read(o, pg * PG, b, n * PG);
	if (r)
		FAIL("line %d: vmo_read returned %d (%s)", line, r,
		     vmo_strerror(r));
	for (size_t i = 0; i < n; i++) {
		tag_page(e, tag, pg + i);
		if (memcmp(b + i * PG, e, PG))
			FAIL("line %d: page %zu is not tag %u (byte 0 = %u)",
			     line, pg + i, tag, b[i * PG]);
	}
	free(b);
	free(e);
}
#define rtag(o, tag, pg, n) rtag_((o), (tag), (pg), (n), __LINE__)

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
	wtag(s, 2, 0, 8);           /* the source writes: they go */
	mtag(p, 2, 0, 8);
	rtag(c, 2, 0, 8);
	mwrite(p, 3, 0, 4);         /* the clone writes its own */
	wtag(s, 4, 0, 8);
	mtag(p, 3, 0, 4);
	mtag(p, 4, 4, 4);
	rtag(s, 4, 0, 8);
	CHECK(pstat(e.pool).cow_invalidated >= 8);
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
	CHECK(pstat(e.pool).cow_dropped >= 1);
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
	env_free(&e);
	vmo_unref(s);
}

TEST_MAIN()
