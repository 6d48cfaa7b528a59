/*
 * test_object.c — anonymous objects used without mappings: creation
 * errors, vmo_size, vmo_read / vmo_write, commit / decommit / sync, sparse
 * objects, pool accounting, references, vmo_strerror.
 */
#include "testlib.h"

#define SENTINEL ((vmo_t *)(uintptr_t)0x5a5a5a5a5a5a5000ull)

static vmo_pool_t *new_pool(void)
{
	vmo_pool_t *p = NULL;
	OK(vmo_pool_create(NULL, &p));
	CHECK(p != NULL);
	return p;
}

/* Resident set size of this process in bytes (/proc/self/statm). */
static uint64_t rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	CHECK(f != NULL);
	unsigned long long size = 0, res = 0;
	CHECK_EQ(fscanf(f, "%llu %llu", &size, &res), 2);
	fclose(f);
	return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* ------------------------------------------------------------ creation */

TEST(create_size_zero_einval)
{
	vmo_pool_t *p = new_pool();
	vmo_t *o = SENTINEL;
	CHECK_ERR(vmo_create(p, 0, 0, &o), -EINVAL);
	CHECK(o == SENTINEL);
	CHECK_EQ(pstat(p).objects, 0);
	vmo_pool_destroy(p);
}

TEST(create_misaligned_size_einval)
{
	vmo_pool_t *p = new_pool();
	vmo_t *o = SENTINEL;
	CHECK_ERR(vmo_create(p, 1, 0, &o), -EINVAL);
	CHECK_ERR(vmo_create(p, PG - 1, 0, &o), -EINVAL);
	CHECK_ERR(vmo_create(p, PG + 1, 0, &o), -EINVAL);
	CHECK_ERR(vmo_create(p, 3 * PG + 512, 0, &o), -EINVAL);
	CHECK(o == SENTINEL);
	CHECK_EQ(pstat(p).objects, 0);
	vmo_pool_destroy(p);
}

TEST(create_unknown_flags_einval)
{
	vmo_pool_t *p = new_pool();
	vmo_t *o = SENTINEL;
	CHECK_ERR(vmo_create(p, PG, 1, &o), -EINVAL);
	CHECK_ERR(vmo_create(p, PG, VMO_FILE_SHARED, &o), -EINVAL);
	CHECK_ERR(vmo_create(p, PG, VMO_FILE_PRIVATE, &o), -EINVAL);
	CHECK_ERR(vmo_create(p, PG, 0x80000000u, &o), -EINVAL);
	CHECK(o == SENTINEL);
	CHECK_EQ(pstat(p).objects, 0);
	vmo_pool_destroy(p);
}

TEST(create_larger_than_max_efbig)
{
	vmo_pool_t *p = new_pool();
	vmo_t *o = SENTINEL;
	CHECK_ERR(vmo_create(p, VMO_MAX_SIZE + PG, 0, &o), -EFBIG);
	CHECK_ERR(vmo_create(p, VMO_MAX_SIZE * 2, 0, &o), -EFBIG);
	CHECK_ERR(vmo_create(p, UINT64_MAX - (PG - 1), 0, &o), -EFBIG);
	CHECK(o == SENTINEL);
	CHECK_EQ(pstat(p).objects, 0);
	vmo_pool_destroy(p);
}

TEST(create_exactly_max_size_ok)
{
	vmo_pool_t *p = new_pool();
	vmo_t *o = NULL;
	OK(vmo_create(p, VMO_MAX_SIZE, 0, &o));
	CHECK(o != NULL);
	CHECK_EQ(vmo_size(o), VMO_MAX_SIZE);
	unsigned char b = 0xEE;
	OK(vmo_read(o, VMO_MAX_SIZE - 1, &b, 1));
	CHECK_EQ(b, 0);
	vmo_unref(o);
	vmo_pool_destroy(p);
}

TEST(create_null_pool_einval)
{
	vmo_t *o = SENTINEL;
	CHECK_ERR(vmo_create(NULL, PG, 0, &o), -EINVAL);
	CHECK(o == SENTINEL);
}

TEST(create_null_out_einval)
{
	vmo_pool_t *p = new_pool();
	/* must return -EINVAL, not store through NULL */
	CHECK_ERR(vmo_create(p, PG, 0, NULL), -EINVAL);
	CHECK_EQ(pstat(p).objects, 0);
	vmo_pool_destroy(p);
}

TEST(size_reports_bytes)
{
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	OK(vmo_create(p, 37 * PG, 0, &o));
	CHECK_EQ(vmo_size(o), 37 * PG);
	CHECK_EQ(vmo_size(NULL), 0);
	vmo_stats_t s = ostat(o);
	CHECK_EQ(s.version, VMO_STATS_VERSION);
	CHECK_EQ(s.size_bytes, 37 * PG);
	CHECK_EQ(s.resident_pages, 0);
	CHECK_EQ(s.mappings, 0);
	vmo_unref(o);
	vmo_pool_destroy(p);
}

/* ---------------------------------------------------------- read/write */

TEST(read_write_unaligned_spanning_pages)
{
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	size_t size = 8 * PG;
	OK(vmo_create(p, size, 0, &o));
	unsigned char *model = calloc(1, size), *buf = malloc(size);
	/* several unaligned writes crossing page boundaries */
	struct {
		uint64_t off;
		size_t len;
	} w[] = {{PG - 3, 7},
		 {2 * PG + 100, 2 * PG + 17},
		 {5, 1},
		 {7 * PG + 4000, 96},
		 {3 * PG - 1, PG + 2}};
	for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
		pattern_fill(buf, w[i].len, 100 + i, 0);
		OK(vmo_write(o, w[i].off, buf, w[i].len));
		memcpy(model + w[i].off, buf, w[i].len);
	}
	/* whole object */
	memset(buf, 0xEE, size);
	OK(vmo_read(o, 0, buf, size));
	CHECK_MEM(buf, model, size);
	/* unaligned reads spanning pages */
	uint64_t r[][2] = {{PG - 5, 10}, {2 * PG + 1, 3 * PG},
			   {7 * PG + 4095, 1}, {1, size - 2}};
	for (size_t i = 0; i < sizeof r / sizeof r[0]; i++) {
		memset(buf, 0xEE, size);
		OK(vmo_read(o, r[i][0], buf, r[i][1]));
		CHECK_MEM(buf, model + r[i][0], r[i][1]);
	}
	free(model);
	free(buf);
	vmo_unref(o);
	vmo_pool_destroy(p);
}

TEST(zero_length_read_write_is_noop)
{
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	OK(vmo_create(p, 4 * PG, 0, &o));
	unsigned char b[4] = {1, 2, 3, 4};
	OK(vmo_write(o, 5, b, 0));
	OK(vmo_write(o, 4 * PG, b, 0));
	OK(vmo_write(o, 7, NULL, 0));
	unsigned char r[4] = {9, 9, 9, 9};
	OK(vmo_read(o, 5, r, 0));
	OK(vmo_read(o, 4 * PG, r, 0));
	OK(vmo_read(o, 7, NULL, 0));
	CHECK_EQ(r[0], 9);
	CHECK_EQ(r[3], 9);
	vmo_stats_t s = ostat(o);
	CHECK_EQ(s.resident_pages, 0);
	CHECK_EQ(s.dirty_pages, 0);
	OK(vmo_read(o, 4, r, 4));
	CHECK_EQ(r[0], 0);
	CHECK_EQ(r[3], 0);
	vmo_unref(o);
	vmo_pool_destroy(p);
}

TEST(read_write_out_of_range_erange)
{
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	size_t size = 4 * PG;
	OK(vmo_create(p, size, 0, &o));
	unsigned char *orig = malloc(size), *buf = malloc(2 * size);
	pattern_fill(orig, size, 1, 0);
	OK(vmo_write(o, 0, orig, size));
	memset(buf, 0xAB, 2 * size);
	/* crossing the end */
	CHECK_ERR(vmo_write(o, size - 10, buf, 11), -ERANGE);
	CHECK_ERR(vmo_write(o, PG, buf, size), -ERANGE);
	/* entirely outside */
	CHECK_ERR(vmo_write(o, size, buf, 1), -ERANGE);
	CHECK_ERR(vmo_write(o, size + PG, buf, PG), -ERANGE);
	/* offset + len overflowing 64 bits */
	CHECK_ERR(vmo_write(o, UINT64_MAX - 2, buf, 8), -ERANGE);
	CHECK_ERR(vmo_write(o, 8, buf, SIZE_MAX - 4), -ERANGE);
	CHECK_ERR(vmo_read(o, size - 10, buf, 11), -ERANGE);
	CHECK_ERR(vmo_read(o, size, buf, 1), -ERANGE);
	CHECK_ERR(vmo_read(o, UINT64_MAX - 2, buf, 8), -ERANGE);
	CHECK_ERR(vmo_read(o, 8, buf, SIZE_MAX - 4), -ERANGE);
	/* nothing was written */
	memset(buf, 0, size);
	OK(vmo_read(o, 0, buf, size));
	CHECK_MEM(buf, orig, size);
	free(orig);
	free(buf);
	vmo_unref(o);
	vmo_pool_destroy(p);
}

TEST(read_write_null_buf_einval)
{
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	OK(vmo_create(p, 2 * PG, 0, &o));
	CHECK_ERR(vmo_write(o, 0, NULL, 1), -EINVAL);
	CHECK_ERR(vmo_write(o, 10, NULL, PG), -EINVAL);
	CHECK_ERR(vmo_read(o, 0, NULL, 1), -EINVAL);
	CHECK_ERR(vmo_read(o, 10, NULL, PG), -EINVAL);
	vmo_stats_t s = ostat(o);
	CHECK_EQ(s.resident_pages, 0);
	CHECK_EQ(s.dirty_pages, 0);
	vmo_unref(o);
	vmo_pool_destroy(p);
}

TEST(never_written_pages_read_zeros)
{
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	size_t size = 16 * PG;
	OK(vmo_create(p, size, 0, &o));
	unsigned char *buf = malloc(size), *zero = calloc(1, size);
	unsigned char one = 0x77;
	OK(vmo_write(o, 5 * PG + 9, &one, 1));
	memset(buf, 0xEE, size);
	OK(vmo_read(o, 0, buf, size));
	CHECK_EQ(buf[5 * PG + 9], 0x77);
	buf[5 * PG + 9] = 0;
	CHECK_MEM(buf, zero, size);
	memset(buf, 0xEE, size);
	OK(vmo_read(o, 11 * PG + 3, buf, 2 * PG));
	CHECK_MEM(buf, zero, 2 * PG);
	free(buf);
	free(zero);
	vmo_unref(o);
	vmo_pool_destroy(p);
}

/* ------------------------------------------- commit / decommit / sync */

TEST(commit_decommit_sync_misaligned_einval)
{
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	OK(vmo_create(p, 8 * PG, 0, &o));
	int (*fn[3])(vmo_t *, uint64_t, uint64_t) = {vmo_commit, vmo_decommit,
						     vmo_sync};
	for (int i = 0; i < 3; i++) {
		CHECK_ERR(fn[i](o, 1, PG), -EINVAL);
		CHECK_ERR(fn[i](o, PG / 2, PG), -EINVAL);
		CHECK_ERR(fn[i](o, 0, PG + 1), -EINVAL);
		CHECK_ERR(fn[i](o, PG, 100), -EINVAL);
		CHECK_ERR(fn[i](o, PG + 8, 2 * PG - 8), -EINVAL);
	}
	CHECK_EQ(ostat(o).resident_pages, 0);
	vmo_unref(o);
	vmo_pool_destroy(p);
}

TEST(commit_decommit_sync_zero_len_einval)
{
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	OK(vmo_create(p, 8 * PG, 0, &o));
	int (*fn[3])(vmo_t *, uint64_t, uint64_t) = {vmo_commit, vmo_decommit,
						     vmo_sync};
	for (int i = 0; i < 3; i++) {
		CHECK_ERR(fn[i](o, 0, 0), -EINVAL);
		CHECK_ERR(fn[i](o, 3 * PG, 0), -EINVAL);
		CHECK_ERR(fn[i](o, 8 * PG, 0), -EINVAL);
	}
	vmo_unref(o);
	vmo_pool_destroy(p);
}

TEST(commit_decommit_sync_out_of_range_erange)
{
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	OK(vmo_create(p, 8 * PG, 0, &o));
	unsigned char b = 0x42;
	OK(vmo_write(o, 7 * PG, &b, 1));
	int (*fn[3])(vmo_t *, uint64_t, uint64_t) = {vmo_commit, vmo_decommit,
						     vmo_sync};
	for (int i = 0; i < 3; i++) {
		CHECK_ERR(fn[i](o, 7 * PG, 2 * PG), -ERANGE);
		CHECK_ERR(fn[i](o, 0, 9 * PG), -ERANGE);
		CHECK_ERR(fn[i](o, 8 * PG, PG), -ERANGE);
		CHECK_ERR(fn[i](o, 100 * PG, PG), -ERANGE);
		CHECK_ERR(fn[i](o, UINT64_MAX - (PG - 1), 2 * PG), -ERANGE);
		CHECK_ERR(fn[i](o, PG, UINT64_MAX - (PG - 1)), -ERANGE);
	}
	/* the failed decommits changed nothing */
	vmo_stats_t s = ostat(o);
	CHECK_EQ(s.resident_pages, 1);
	CHECK_EQ(s.decommitted_pages, 0);
	b = 0;
	OK(vmo_read(o, 7 * PG, &b, 1));
	CHECK_EQ(b, 0x42);
	vmo_unref(o);
	vmo_pool_destroy(p);
}

TEST(commit_makes_pages_resident)
{
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	OK(vmo_create(p, 64 * PG, 0, &o));
	CHECK_EQ(ostat(o).resident_pages, 0);
	OK(vmo_commit(o, 4 * PG, 10 * PG));
	CHECK_EQ(ostat(o).resident_pages, 10);
	CHECK_EQ(pstat(p).resident_pages, 10);
	/* overlapping commit counts each page once */
	OK(vmo_commit(o, 0, 8 * PG));
	CHECK_EQ(ostat(o).resident_pages, 14);
	OK(vmo_commit(o, 63 * PG, PG));
	CHECK_EQ(ostat(o).resident_pages, 15);
	CHECK_EQ(pstat(p).resident_pages, 15);
	/* committed anonymous pages read zeros */
	unsigned char *buf = malloc(14 * PG), *zero = calloc(1, 14 * PG);
	memset(buf, 0xEE, 14 * PG);
	OK(vmo_read(o, 0, buf, 14 * PG));
	CHECK_MEM(buf, zero, 14 * PG);
	free(buf);
	free(zero);
	vmo_unref(o);
	vmo_pool_destroy(p);
}

TEST(commit_whole_object)
{
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	OK(vmo_create(p, 1024 * PG, 0, &o));
	OK(vmo_commit(o, 0, 1024 * PG));
	CHECK_EQ(ostat(o).resident_pages, 1024);
	CHECK_EQ(pstat(p).resident_pages, 1024);
	vmo_unref(o);
	CHECK_EQ(pstat(p).resident_pages, 0);
	vmo_pool_destroy(p);
}

TEST(decommit_reads_zeros_and_drops_resident)
{
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	size_t size = 8 * PG;
	OK(vmo_create(p, size, 0, &o));
	unsigned char *buf = malloc(size), *zero = calloc(1, size);
	pattern_fill(buf, size, 3, 0);
	OK(vmo_write(o, 0, buf, size));
	CHECK_EQ(ostat(o).resident_pages, 8);
	OK(vmo_decommit(o, 2 * PG, 3 * PG));
	vmo_stats_t s = ostat(o);
	CHECK_EQ(s.resident_pages, 5);
	CHECK_EQ(s.decommitted_pages, 3);
	CHECK_EQ(pstat(p).resident_pages, 5);
	unsigned char *r = malloc(size);
	OK(vmo_read(o, 0, r, size));
	CHECK_MEM(r, buf, 2 * PG);
	CHECK_MEM(r + 2 * PG, zero, 3 * PG);
	CHECK_MEM(r + 5 * PG, buf + 5 * PG, 3 * PG);
	/* decommitted pages can be written again */
	OK(vmo_write(o, 3 * PG + 1, "xy", 2));
	OK(vmo_read(o, 3 * PG, r, 4));
	CHECK_EQ(r[0], 0);
	CHECK_EQ(r[1], 'x');
	CHECK_EQ(r[2], 'y');
	CHECK_EQ(r[3], 0);
	CHECK_EQ(ostat(o).resident_pages, 6);
	free(buf);
	free(zero);
	free(r);
	vmo_unref(o);
	vmo_pool_destroy(p);
}

TEST(decommit_counts_only_resident_pages)
{
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	OK(vmo_create(p, 32 * PG, 0, &o));
	OK(vmo_commit(o, 2 * PG, PG));
	OK(vmo_commit(o, 9 * PG, 3 * PG));
	OK(vmo_commit(o, 30 * PG, PG));
	CHECK_EQ(ostat(o).resident_pages, 5);
	OK(vmo_decommit(o, 0, 16 * PG));
	vmo_stats_t s = ostat(o);
	CHECK_EQ(s.resident_pages, 1);
	CHECK_EQ(s.decommitted_pages, 4);
	/* decommitting absent pages is fine and counts nothing */
	OK(vmo_decommit(o, 0, 16 * PG));
	s = ostat(o);
	CHECK_EQ(s.decommitted_pages, 4);
	OK(vmo_decommit(o, 0, 32 * PG));
	s = ostat(o);
	CHECK_EQ(s.resident_pages, 0);
	CHECK_EQ(s.decommitted_pages, 5);
	CHECK_EQ(pstat(p).resident_pages, 0);
	vmo_unref(o);
	vmo_pool_destroy(p);
}

TEST(sync_of_anonymous_object_is_noop)
{
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	OK(vmo_create(p, 4 * PG, 0, &o));
	OK(vmo_write(o, PG + 5, "abc", 3));
	OK(vmo_sync(o, 0, 4 * PG));
	vmo_stats_t s = ostat(o);
	CHECK_EQ(s.pager_writes, 0);
	CHECK_EQ(s.pager_write_bytes, 0);
	CHECK_EQ(s.pager_errors, 0);
	char b[3];
	OK(vmo_read(o, PG + 5, b, 3));
	CHECK_MEM(b, "abc", 3);
	vmo_unref(o);
	vmo_pool_destroy(p);
}

/* ------------------------------------------------------------- sparse */

TEST(sparse_1tib_three_pages)
{
	const uint64_t size = 1ull << 40;
	vmo_pool_t *p = new_pool();
	/* warm up scratch buffers and the allocator outside the measurement */
	vmo_t *w;
	OK(vmo_create(p, 2 * PG, 0, &w));
	unsigned char tmp[64] = {0};
	OK(vmo_write(w, 0, tmp, sizeof tmp));
	OK(vmo_read(w, 0, tmp, sizeof tmp));
	vmo_unref(w);

	uint64_t before = rss_bytes();
	vmo_t *o;
	OK(vmo_create(p, size, 0, &o));
	CHECK_EQ(vmo_size(o), size);
	uint64_t offs[3] = {0, size / 2 + 12345 * PG, size - PG};
	unsigned char buf[PG], r[PG];
	for (int i = 0; i < 3; i++) {
		pattern_fill(buf, PG, 50 + (uint64_t)i, 0);
		OK(vmo_write(o, offs[i], buf, PG));
	}
	for (int i = 0; i < 3; i++) {
		pattern_fill(buf, PG, 50 + (uint64_t)i, 0);
		OK(vmo_read(o, offs[i], r, PG));
		CHECK_MEM(r, buf, PG);
	}
	/* untouched pages far from the written ones read zeros */
	uint64_t holes[] = {PG, size / 4, size / 2, size - 2 * PG};
	unsigned char zero[PG];
	memset(zero, 0, PG);
	for (size_t i = 0; i < sizeof holes / sizeof holes[0]; i++) {
		memset(r, 0xEE, PG);
		OK(vmo_read(o, holes[i], r, PG));
		CHECK_MEM(r, zero, PG);
	}
	vmo_stats_t s = ostat(o);
	CHECK_EQ(s.resident_pages, 3);
	CHECK_EQ(pstat(p).resident_pages, 3);
	uint64_t after = rss_bytes();
	uint64_t grew = after > before ? after - before : 0;
	if (grew >= (16u << 20))
		FAIL("RSS grew by %" PRIu64 " bytes for 3 pages", grew);
	vmo_unref(o);
	vmo_pool_destroy(p);
}

/* ------------------------------------------------- pool and references */

TEST(pool_stats_track_objects_and_pages)
{
	vmo_pool_t *p = new_pool();
	vmo_pool_stats_t ps = pstat(p);
	CHECK_EQ(ps.version, VMO_POOL_STATS_VERSION);
	CHECK_EQ(ps.objects, 0);
	CHECK_EQ(ps.resident_pages, 0);
	vmo_t *a, *b, *c;
	OK(vmo_create(p, 16 * PG, 0, &a));
	CHECK_EQ(pstat(p).objects, 1);
	OK(vmo_create(p, 16 * PG, 0, &b));
	OK(vmo_create(p, PG, 0, &c));
	CHECK_EQ(pstat(p).objects, 3);
	OK(vmo_commit(a, 0, 3 * PG));
	OK(vmo_commit(b, 0, 5 * PG));
	OK(vmo_write(c, 0, "z", 1));
	ps = pstat(p);
	CHECK_EQ(ps.resident_pages, 9);
	vmo_unref(b);
	ps = pstat(p);
	CHECK_EQ(ps.objects, 2);
	CHECK_EQ(ps.resident_pages, 4);
	vmo_unref(a);
	ps = pstat(p);
	CHECK_EQ(ps.objects, 1);
	CHECK_EQ(ps.resident_pages, 1);
	vmo_unref(c);
	ps = pstat(p);
	CHECK_EQ(ps.objects, 0);
	CHECK_EQ(ps.resident_pages, 0);
	CHECK_EQ(ps.dirty_pages, 0);
	vmo_pool_destroy(p);
}

TEST(pools_account_separately)
{
	vmo_pool_t *p1 = new_pool(), *p2 = new_pool();
	vmo_t *a, *b;
	OK(vmo_create(p1, 8 * PG, 0, &a));
	OK(vmo_create(p2, 8 * PG, 0, &b));
	OK(vmo_commit(a, 0, 2 * PG));
	OK(vmo_commit(b, 0, 7 * PG));
	CHECK_EQ(pstat(p1).objects, 1);
	CHECK_EQ(pstat(p1).resident_pages, 2);
	CHECK_EQ(pstat(p2).objects, 1);
	CHECK_EQ(pstat(p2).resident_pages, 7);
	vmo_unref(a);
	vmo_unref(b);
	vmo_pool_destroy(p1);
	vmo_pool_destroy(p2);
}

TEST(ref_keeps_object_alive)
{
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	OK(vmo_create(p, 4 * PG, 0, &o));
	OK(vmo_write(o, 10, "hello", 5));
	vmo_ref(o);
	vmo_unref(o); /* the ref taken above is still there */
	CHECK_EQ(pstat(p).objects, 1);
	char b[5];
	OK(vmo_read(o, 10, b, 5));
	CHECK_MEM(b, "hello", 5);
	OK(vmo_write(o, 2 * PG, "w", 1));
	CHECK_EQ(ostat(o).resident_pages, 2);
	vmo_unref(o); /* the creator's reference: gone now */
	CHECK_EQ(pstat(p).objects, 0);
	CHECK_EQ(pstat(p).resident_pages, 0);
	vmo_ref(NULL);
	vmo_unref(NULL);
	vmo_pool_destroy(p);
}

TEST(pool_outlives_destroy_while_objects_live)
{
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	OK(vmo_create(p, 4 * PG, 0, &o));
	vmo_pool_destroy(p); /* the object keeps the pool alive */
	OK(vmo_write(o, PG, "abc", 3));
	OK(vmo_commit(o, 0, 4 * PG));
	char b[3];
	OK(vmo_read(o, PG, b, 3));
	CHECK_MEM(b, "abc", 3);
	CHECK_EQ(ostat(o).resident_pages, 4);
	vmo_unref(o); /* frees the pool too (ASan checks) */
	vmo_pool_destroy(NULL);
}

TEST(stats_size_checked_and_respected)
{
	vmo_pool_t *p = new_pool();
	vmo_t *o;
	OK(vmo_create(p, 4 * PG, 0, &o));
	OK(vmo_commit(o, 0, 2 * PG));
	vmo_stats_t s;
	memset(&s, 0, sizeof s);
	s.size = 7;
	CHECK_ERR(vmo_stats(o, &s), -EINVAL);
	s.size = 0;
	CHECK_ERR(vmo_stats(o, &s), -EINVAL);
	CHECK_ERR(vmo_stats(o, NULL), -EINVAL);
	/* a short struct: only size + version + size_bytes are written */
	memset(&s, 0xCC, sizeof s);
	s.size = (uint32_t)(offsetof(vmo_stats_t, size_bytes) +
			    sizeof s.size_bytes);
	OK(vmo_stats(o, &s));
	CHECK_EQ(s.version, VMO_STATS_VERSION);
	CHECK_EQ(s.size_bytes, 4 * PG);
	CHECK(s.resident_pages == 0xCCCCCCCCCCCCCCCCull);
	CHECK(s.decommitted_pages == 0xCCCCCCCCCCCCCCCCull);

	vmo_pool_stats_t ps;
	memset(&ps, 0xCC, sizeof ps);
	ps.size = 4;
	CHECK_ERR(vmo_pool_stats(p, &ps), -EINVAL);
	CHECK_ERR(vmo_pool_stats(p, NULL), -EINVAL);
	ps.size = (uint32_t)(offsetof(vmo_pool_stats_t, objects) +
			     sizeof ps.objects);
	OK(vmo_pool_stats(p, &ps));
	CHECK_EQ(ps.version, VMO_POOL_STATS_VERSION);
	CHECK_EQ(ps.objects, 1);
	CHECK(ps.resident_pages == 0xCCCCCCCCCCCCCCCCull);
	vmo_unref(o);
	vmo_pool_destroy(p);
}

/* --------------------------------------------------------------- errors */

TEST(strerror_distinct_texts)
{
	int codes[] = {-EINVAL, -ERANGE, -EACCES, VMO_EUSERMODE};
	const char *t[4];
	for (int i = 0; i < 4; i++) {
		t[i] = vmo_strerror(codes[i]);
		CHECK(t[i] != NULL);
		CHECK(strlen(t[i]) > 0);
	}
	for (int i = 0; i < 4; i++)
		for (int j = i + 1; j < 4; j++)
			if (!strcmp(t[i], t[j]))
				FAIL("vmo_strerror(%d) == vmo_strerror(%d): %s",
				     codes[i], codes[j], t[i]);
	CHECK(vmo_strerror(0) != NULL);
	CHECK(vmo_strerror(-99999) != NULL);
	CHECK(vmo_strerror(12345) != NULL);
}

TEST_MAIN()
