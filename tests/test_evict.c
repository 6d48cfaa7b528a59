/*
 * test_evict.c — self-paging: pool options (budget, swap, watermarks), the
 * pool's self-paging statistics, data integrity under eviction for every
 * kind of object (anonymous, VMO_FILE_SHARED, VMO_FILE_PRIVATE, user
 * pager) at ten times the budget, swap slots (kept by clean pages, freed by
 * dirtying, decommit and unref), swap full and no swap, write-back
 * failures at eviction, budgets of a few pages, VMO_MAP_LOCKED and
 * VMO_ADV_DONTNEED.
 *
 * Eviction runs in a reclaimer thread, so tests that need it to have run
 * poll the statistics with a bounded wait (pool_settle and friends) and
 * then check values; nothing here asserts on time.
 *
 * Budgets at the minimum (VMO_MIN_BUDGET, four pages) must not livelock:
 * vmo_write over two partially covered non-resident pages, a load across
 * two pages of a mapping, and one instruction that touches four pages.
 * Those tests run the operation in a helper thread and give up after 5 s
 * (it takes microseconds); they also bound the pages filled.  Smaller
 * budgets are refused with -EINVAL.  Bytes written beyond end of file in
 * the last page of a VMO_FILE_SHARED object survive eviction.
 */
#include "testlib.h"

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#define SENTINEL_POOL ((vmo_pool_t *)(uintptr_t)0x5a5a5a5a5a5a5000ull)

/* ------------------------------------------------------------- helpers */


static void fill_rand(unsigned char *b, size_t n, uint64_t *s)
{
	uint64_t x = 0;
	for (size_t i = 0; i < n; i++) {
		if (i % 8 == 0)
			x = rnd(s);
		b[i] = (unsigned char)(x >> (8 * (i % 8)));
	}
}

static vmo_pool_options_t popts(uint64_t budget, const char *swap,
				uint64_t swap_bytes, uint64_t lo, uint64_t hi)
{
	vmo_pool_options_t po;
	memset(&po, 0, sizeof po);
	po.size = sizeof po;
	po.budget_bytes = budget;
	po.swap_path = swap;
	po.swap_bytes = swap_bytes;
	po.low_watermark_bytes = lo;
	po.high_watermark_bytes = hi;
	return po;
}

/* vmo_pool_create must fail with err and leave *out alone. */
static void pool_create_fails(vmo_pool_options_t po, int err, int line)
{
	vmo_pool_t *p = SENTINEL_POOL;
	int r = vmo_pool_create(&po, &p);
	if (r != err)
		FAIL("line %d: vmo_pool_create returned %d (%s), expected %d",
		     line, r, vmo_strerror(r), err);
	if (p != SENTINEL_POOL)
		FAIL("line %d: failed vmo_pool_create wrote *out", line);
}
#define POOL_FAILS(po, err) pool_create_fails((po), (err), __LINE__)

static void pool_create_ok(vmo_pool_options_t po, int line)
{
	vmo_pool_t *p = NULL;
	int r = vmo_pool_create(&po, &p);
	if (r != 0)
		FAIL("line %d: vmo_pool_create returned %d (%s)", line, r,
		     vmo_strerror(r));
	CHECK(p != NULL);
	vmo_pool_destroy(p);
}
#define POOL_OK(po) pool_create_ok((po), __LINE__)

/* A fresh temporary directory (for swap files the library creates). */
static void temp_dir(char dir[64])
{
	snprintf(dir, 64, "/tmp/vmoevictXXXXXX");
	if (!mkdtemp(dir))
		FAIL("mkdtemp: %s", strerror(errno));
}

static bool exists(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0;
}

/*
 * Stream clean (zero, committed) pages of a scratch object through the
 * pool until `target` has no resident page left, or give up after a
 * bounded number of passes; the scratch object is then released.  The
 * scratch pages are never dirty, so they add no swap traffic.  Returns the
 * target's statistics for the caller to check.
 */
static vmo_stats_t push_out(vmo_pool_t *p, vmo_t *target)
{
	uint64_t budget = pstat(p).budget_pages;
	uint64_t ysz = 4 * budget * PG;
	vmo_t *y;
	OK(vmo_create(p, ysz, 0, &y));
	vmo_stats_t st = ostat(target);
	for (int pass = 0; pass < 200 && st.resident_pages; pass++) {
		for (uint64_t off = 0; off < ysz; off += 4 * PG)
			OK(vmo_commit(y, off, 4 * PG));
		st = ostat(target);
	}
	vmo_unref(y);
	return ostat(target);
}

/* Wait (bounded) until pool counter field `f` exceeds v. */
#define WAIT_POOL(pool, f, v)                                             \
	({                                                                \
		vmo_pool_stats_t _s = pstat(pool);                        \
		for (int _i = 0; _i < 10000 && !(_s.f > (v)); _i++) {     \
			usleep(1000);                                     \
			_s = pstat(pool);                                 \
		}                                                         \
		_s;                                                       \
	})

/* ------------------------------------------------------ a user pager */



static void up_set_err(struct upager *u, int err)
{
	pthread_mutex_lock(&u->lock);
	u->write_err = err;
	pthread_mutex_unlock(&u->lock);
}

static uint64_t up_count(struct upager *u, const uint64_t *field)
{
	pthread_mutex_lock(&u->lock);
	uint64_t v = *field;
	pthread_mutex_unlock(&u->lock);
	return v;
}

static void up_check(struct upager *u, const unsigned char *ref)
{
	pthread_mutex_lock(&u->lock);
	SAME(u->store, ref, u->len, 0, "pager backing store");
	pthread_mutex_unlock(&u->lock);
}


/* ------------------------------------------- a reference-checked model */

/* An object, a read-write mapping of all of it, and its expected content
 * in plain memory. */
struct model {
	vmo_t *o;
	unsigned char *map;
	unsigned char *map2; /* a second mapping of it all, or NULL */
	unsigned char *ref;
	size_t len;
	bool straddle; /* accesses may cross page boundaries */
	unsigned char *buf;
};

static void model_init(struct model *m, vmo_space_t *sp, vmo_t *o,
		       const unsigned char *initial, bool straddle)
{
	m->o = o;
	m->len = vmo_size(o);
	m->ref = malloc(m->len);
	m->buf = malloc(4 * PG);
	CHECK(m->ref && m->buf);
	if (initial)
		memcpy(m->ref, initial, m->len);
	else
		memset(m->ref, 0, m->len);
	void *a = NULL;
	OK(vmo_map(sp, o, 0, m->len, PROT_READ | PROT_WRITE, 0, &a));
	m->map = a;
	m->map2 = NULL;
	m->straddle = straddle;
}

/* The model's mapping to use for one access. */
static unsigned char *model_map(struct model *m, uint64_t *s)
{
	return m->map2 && rnd(s) % 2 ? m->map2 : m->map;
}

static void model_unmap(struct model *m, vmo_space_t *sp)
{
	OK(vmo_unmap(sp, m->map, m->len));
	m->map = NULL;
}

static void model_free(struct model *m)
{
	free(m->ref);
	free(m->buf);
}

/* A random range: whole pages, parts of a page, or (if allowed) ranges
 * across page boundaries, of at most 3 pages. */
static void pick(struct model *m, uint64_t *s, size_t *off, size_t *n)
{
	size_t pages = m->len / PG;
	size_t pg = (size_t)(rnd(s) % pages);
	size_t o = (size_t)(rnd(s) % PG);
	switch (rnd(s) % 4) {
	case 0:
		*off = pg * PG;
		*n = PG;
		return;
	case 1:
		*off = pg * PG + o;
		*n = 1 + (size_t)(rnd(s) % (PG - o));
		return;
	case 2:
		*off = pg * PG + o;
		*n = 1 + (size_t)(rnd(s) % 64);
		break;
	default:
		*off = pg * PG + o;
		*n = 1 + (size_t)(rnd(s) % (3 * PG));
		break;
	}
	if (!m->straddle && o + *n > PG)
		*n = PG - o;
	if (*off + *n > m->len)
		*n = m->len - *off;
}

static void model_op(struct model *m, uint64_t *s)
{
	size_t off, n;
	pick(m, s, &off, &n);
	switch (rnd(s) % 4) {
	case 0:
		fill_rand(m->ref + off, n, s);
		memcpy(model_map(m, s) + off, m->ref + off, n);
		break;
	case 1:
		SAME(model_map(m, s) + off, m->ref + off, n, off,
		     "read via mapping");
		break;
	case 2:
		fill_rand(m->ref + off, n, s);
		OK(vmo_write(m->o, off, m->ref + off, n));
		break;
	default:
		OK(vmo_read(m->o, off, m->buf, n));
		SAME(m->buf, m->ref + off, n, off, "vmo_read");
		break;
	}
}

/* Write every page, alternately through the mapping and vmo_write. */
static void model_write_all(struct model *m, uint64_t *s)
{
	for (size_t pg = 0; pg < m->len / PG; pg++) {
		unsigned char *r = m->ref + pg * PG;
		fill_rand(r, PG, s);
		if (pg % 2)
			memcpy(model_map(m, s) + pg * PG, r, PG);
		else
			OK(vmo_write(m->o, pg * PG, r, PG));
	}
}

/* Check all of it: page by page through the mapping, then with vmo_read
 * (one call over the whole object, then in 3-page pieces). */
static void model_check_all(struct model *m)
{
	for (size_t pg = 0; pg < m->len / PG; pg++)
		SAME(m->map + pg * PG, m->ref + pg * PG, PG, pg * PG,
		     "read via mapping");
	for (size_t pg = 0; m->map2 && pg < m->len / PG; pg++)
		SAME(m->map2 + pg * PG, m->ref + pg * PG, PG, pg * PG,
		     "read via the second mapping");
	unsigned char *all = malloc(m->len);
	CHECK(all != NULL);
	OK(vmo_read(m->o, 0, all, m->len));
	SAME(all, m->ref, m->len, 0, "vmo_read of the whole object");
	free(all);
	for (size_t off = 0; off < m->len; off += 3 * PG) {
		size_t n = m->len - off < 3 * PG ? m->len - off : 3 * PG;
		OK(vmo_read(m->o, off, m->buf, n));
		SAME(m->buf, m->ref + off, n, off, "vmo_read");
	}
}

/* ====================================================== pool options */

TEST(pool_options_misaligned_byte_counts_einval)
{
	char sw[32];
	int fd;
	temp_swap(sw, &fd);
	POOL_FAILS(popts(PG + 1, NULL, 0, 0, 0), -EINVAL);
	POOL_FAILS(popts(64 * PG - 1, NULL, 0, 0, 0), -EINVAL);
	POOL_FAILS(popts(64 * PG, sw, 16 * PG + 512, 0, 0), -EINVAL);
	POOL_FAILS(popts(64 * PG, sw, 1, 0, 0), -EINVAL);
	POOL_FAILS(popts(64 * PG, NULL, 0, 8 * PG + 1, 0), -EINVAL);
	POOL_FAILS(popts(64 * PG, NULL, 0, 0, 32 * PG + 100), -EINVAL);
	POOL_FAILS(popts(64 * PG, NULL, 0, 16 * PG - 1, 32 * PG - 1),
		   -EINVAL);
	close(fd);
}

TEST(pool_options_swap_path_and_swap_bytes_go_together)
{
	char sw[32];
	int fd;
	temp_swap(sw, &fd);
	POOL_FAILS(popts(64 * PG, sw, 0, 0, 0), -EINVAL);
	POOL_FAILS(popts(0, sw, 0, 0, 0), -EINVAL);
	POOL_FAILS(popts(64 * PG, NULL, 16 * PG, 0, 0), -EINVAL);
	POOL_FAILS(popts(0, NULL, 16 * PG, 0, 0), -EINVAL);
	/* together they are fine, with or without a budget */
	POOL_OK(popts(64 * PG, sw, 16 * PG, 0, 0));
	POOL_OK(popts(0, sw, 16 * PG, 0, 0));
	close(fd);
}

TEST(pool_options_watermarks_need_a_budget_and_order)
{
	/* without a budget */
	POOL_FAILS(popts(0, NULL, 0, 8 * PG, 0), -EINVAL);
	POOL_FAILS(popts(0, NULL, 0, 0, 8 * PG), -EINVAL);
	POOL_FAILS(popts(0, NULL, 0, 8 * PG, 16 * PG), -EINVAL);
	/* low > high */
	POOL_FAILS(popts(64 * PG, NULL, 0, 33 * PG, 32 * PG), -EINVAL);
	POOL_FAILS(popts(64 * PG, NULL, 0, 64 * PG, 63 * PG), -EINVAL);
	/* high > budget, given or implied by a low above the budget */
	POOL_FAILS(popts(64 * PG, NULL, 0, 0, 65 * PG), -EINVAL);
	POOL_FAILS(popts(64 * PG, NULL, 0, 32 * PG, 65 * PG), -EINVAL);
	POOL_FAILS(popts(64 * PG, NULL, 0, 65 * PG, 0), -EINVAL);
	POOL_FAILS(popts(64 * PG, NULL, 0, 65 * PG, 65 * PG), -EINVAL);
}

TEST(pool_options_valid_watermarks_accepted)
{
	POOL_OK(popts(64 * PG, NULL, 0, 32 * PG, 48 * PG));
	POOL_OK(popts(64 * PG, NULL, 0, 64 * PG, 64 * PG));
	POOL_OK(popts(64 * PG, NULL, 0, 0, 0));
	POOL_OK(popts(64 * PG, NULL, 0, 0, 0));
	/* one watermark alone: the other default follows it */
	POOL_OK(popts(64 * PG, NULL, 0, 0, 8 * PG));
	POOL_OK(popts(64 * PG, NULL, 0, 0, PG));
	POOL_OK(popts(64 * PG, NULL, 0, 16 * PG, 0));
	POOL_OK(popts(64 * PG, NULL, 0, 64 * PG, 0));
	POOL_OK(popts(64 * PG, NULL, 0, 0, 64 * PG));
	/* tiny budgets with default watermarks */
	for (uint64_t b = 4; b <= 8; b++)
		POOL_OK(popts(b * PG, NULL, 0, 0, 0));
	POOL_OK(popts(4 * PG, NULL, 0, PG, 4 * PG));
}

TEST(pool_options_swap_too_large_efbig)
{
	char dir[64], path[128];
	temp_dir(dir);
	snprintf(path, sizeof path, "%s/swap", dir);
	POOL_FAILS(popts(64 * PG, path, 1ull << 44, 0, 0), -EFBIG);
	POOL_FAILS(popts(64 * PG, path, (1ull << 44) + PG, 0, 0), -EFBIG);
	CHECK(!exists(path));
	CHECK_EQ(rmdir(dir), 0);
}

TEST(pool_swap_path_is_a_directory_eisdir)
{
	char dir[64];
	temp_dir(dir);
	POOL_FAILS(popts(64 * PG, dir, 16 * PG, 0, 0), -EISDIR);
	POOL_FAILS(popts(0, dir, 16 * PG, 0, 0), -EISDIR);
	/* the directory is still there and still empty */
	CHECK_EQ(rmdir(dir), 0);
}

TEST(pool_swap_path_in_missing_directory_enoent)
{
	char dir[64], path[160];
	temp_dir(dir);
	snprintf(path, sizeof path, "%s/no/such/dir/swap", dir);
	POOL_FAILS(popts(64 * PG, path, 16 * PG, 0, 0), -ENOENT);
	CHECK_EQ(rmdir(dir), 0);
}

TEST(pool_swap_path_not_a_regular_file_fails_and_is_left_alone)
{
	vmo_pool_options_t po = popts(64 * PG, "/dev/null", 16 * PG, 0, 0);
	vmo_pool_t *p = SENTINEL_POOL;
	int r = vmo_pool_create(&po, &p);
	CHECK(r < 0);
	CHECK(p == SENTINEL_POOL);
	struct stat sb;
	CHECK_EQ(stat("/dev/null", &sb), 0);
	CHECK(S_ISCHR(sb.st_mode));
}

TEST(pool_swap_file_unwritable_eacces)
{
	if (geteuid() == 0)
		return; /* root opens anything: nothing to test */
	char dir[64], path[128];
	temp_dir(dir);
	snprintf(path, sizeof path, "%s/swap", dir);
	int fd = open(path, O_CREAT | O_WRONLY, 0400);
	CHECK(fd >= 0);
	close(fd);
	POOL_FAILS(popts(64 * PG, path, 16 * PG, 0, 0), -EACCES);
	CHECK(exists(path));
	unlink(path);
	rmdir(dir);
}

TEST(pool_swap_file_created_0600_and_removed_with_the_last_object)
{
	char dir[64], path[128];
	temp_dir(dir);
	snprintf(path, sizeof path, "%s/swap", dir);
	vmo_pool_options_t po = popts(16 * PG, path, 64 * PG, 0, 0);
	vmo_pool_t *p = NULL;
	OK(vmo_pool_create(&po, &p));
	struct stat sb;
	CHECK_EQ(stat(path, &sb), 0);
	CHECK(S_ISREG(sb.st_mode));
	CHECK_EQ(sb.st_mode & 0777, 0600);
	CHECK((uint64_t)sb.st_size >= 64 * PG);
	/* an object with swapped pages keeps the pool, and the file, alive */
	vmo_t *o;
	OK(vmo_create(p, 64 * PG, 0, &o));
	unsigned char *ref = malloc(64 * PG);
	uint64_t s = 11;
	fill_rand(ref, 64 * PG, &s);
	OK(vmo_write(o, 0, ref, 64 * PG));
	vmo_pool_stats_t ps = WAIT_POOL(p, swap_outs, 0);
	CHECK(ps.swap_outs > 0);
	vmo_pool_destroy(p);
	CHECK(exists(path));
	unsigned char *got = malloc(64 * PG);
	OK(vmo_read(o, 0, got, 64 * PG));
	SAME(got, ref, 64 * PG, 0, "vmo_read after vmo_pool_destroy");
	vmo_unref(o);
	CHECK(!exists(path));
	CHECK_EQ(rmdir(dir), 0);
	free(ref);
	free(got);
}

TEST(pool_swap_existing_file_is_kept_and_its_swap_part_released)
{
	char dir[64], path[128];
	temp_dir(dir);
	snprintf(path, sizeof path, "%s/swap", dir);
	/* an existing file larger than the swap: 128 pages of pattern */
	int fd = open(path, O_CREAT | O_RDWR, 0644);
	CHECK(fd >= 0);
	unsigned char *pat = malloc(128 * PG);
	pattern_fill(pat, 128 * PG, 5, 0);
	CHECK_EQ(pwrite(fd, pat, 128 * PG, 0), (ssize_t)(128 * PG));
	vmo_pool_options_t po = popts(16 * PG, path, 64 * PG, 0, 0);
	vmo_pool_t *p = NULL;
	OK(vmo_pool_create(&po, &p));
	vmo_t *o;
	OK(vmo_create(p, 48 * PG, 0, &o));
	unsigned char *ref = malloc(48 * PG), *got = malloc(48 * PG);
	uint64_t s = 12;
	fill_rand(ref, 48 * PG, &s);
	OK(vmo_write(o, 0, ref, 48 * PG));
	vmo_pool_stats_t ps = WAIT_POOL(p, swap_outs, 0);
	CHECK(ps.swap_outs > 0);
	OK(vmo_read(o, 0, got, 48 * PG));
	SAME(got, ref, 48 * PG, 0, "vmo_read");
	vmo_unref(o);
	vmo_pool_destroy(p);
	/* the file is kept, its size too; the swap part reads as zeros (its
	 * blocks were released), the rest is untouched */
	struct stat sb;
	CHECK_EQ(fstat(fd, &sb), 0);
	CHECK(exists(path));
	CHECK_EQ(sb.st_size, 128 * PG);
	unsigned char *file = malloc(128 * PG);
	CHECK_EQ(pread(fd, file, 128 * PG, 0), (ssize_t)(128 * PG));
	unsigned char *zero = calloc(1, 64 * PG);
	SAME(file, zero, 64 * PG, 0, "released swap part of the file");
	SAME(file + 64 * PG, pat + 64 * PG, 64 * PG, 64 * PG,
	     "file beyond the swap");
	close(fd);
	unlink(path);
	CHECK_EQ(rmdir(dir), 0);
	free(pat);
	free(ref);
	free(got);
	free(file);
	free(zero);
}

TEST(pool_swap_existing_smaller_file_is_grown_and_kept)
{
	char dir[64], path[128];
	temp_dir(dir);
	snprintf(path, sizeof path, "%s/swap", dir);
	int fd = open(path, O_CREAT | O_RDWR, 0644);
	CHECK(fd >= 0);
	close(fd);
	vmo_pool_options_t po = popts(16 * PG, path, 64 * PG, 0, 0);
	vmo_pool_t *p = NULL;
	OK(vmo_pool_create(&po, &p));
	struct stat sb;
	CHECK_EQ(stat(path, &sb), 0);
	CHECK((uint64_t)sb.st_size >= 64 * PG);
	CHECK_EQ(pstat(p).swap_slots, 64);
	vmo_pool_destroy(p);
	CHECK(exists(path));
	unlink(path);
	CHECK_EQ(rmdir(dir), 0);
}

/* ============================================================ stats */

TEST(pool_stats_report_budget_and_swap)
{
	vmo_pool_t *p = pool_budget(64, 200);
	vmo_pool_stats_t st = pstat(p);
	CHECK_EQ(st.version, VMO_POOL_STATS_VERSION);
	CHECK_EQ(st.budget_pages, 64);
	CHECK_EQ(st.swap_slots, 200);
	CHECK_EQ(st.swap_slots_used, 0);
	CHECK_EQ(st.swapped_pages, 0);
	CHECK_EQ(st.resident_pages, 0);
	CHECK_EQ(st.evictions, 0);
	CHECK_EQ(st.swap_outs, 0);
	CHECK_EQ(st.swap_ins, 0);
	CHECK_EQ(st.pages_filled, 0);
	vmo_pool_destroy(p);

	vmo_pool_t *q = pool_budget(0, 0);
	st = pstat(q);
	CHECK_EQ(st.budget_pages, 0);
	CHECK_EQ(st.swap_slots, 0);
	vmo_pool_destroy(q);

	vmo_pool_t *r = pool_budget(0, 32); /* swap without a budget */
	st = pstat(r);
	CHECK_EQ(st.budget_pages, 0);
	CHECK_EQ(st.swap_slots, 32);
	vmo_pool_destroy(r);
}

TEST(pool_stats_old_struct_size_gets_only_old_fields)
{
	vmo_pool_t *p = pool_budget(64, 64);
	vmo_pool_stats_t st;
	memset(&st, 0xAB, sizeof st);
	st.size = (uint32_t)offsetof(vmo_pool_stats_t, budget_pages);
	OK(vmo_pool_stats(p, &st));
	CHECK_EQ(st.version, VMO_POOL_STATS_VERSION);
	CHECK_EQ(st.objects, 0);
	const unsigned char *b = (const unsigned char *)&st;
	for (size_t i = offsetof(vmo_pool_stats_t, budget_pages); i < sizeof st;
	     i++)
		CHECK_EQ(b[i], 0xAB);
	vmo_pool_destroy(p);
}

static sigjmp_buf swbus_jb;
static void swbus(int sig)
{
	(void)sig;
	siglongjmp(swbus_jb, 1);
}

/* A swapped page whose slot cannot be read (the swap file was truncated
 * under the pool) is an error, not a loop: vmo_read returns -EIO and a
 * mapping's access raises SIGBUS. */
TEST(unreadable_swap_slot_is_eio_and_sigbus)
{
	char dir[64], path[128];
	temp_dir(dir);
	snprintf(path, sizeof path, "%s/swap", dir);
	vmo_pool_options_t po = popts(64 * PG, path, 256 * PG, 0, 0);
	vmo_pool_t *p = NULL;
	OK(vmo_pool_create(&po, &p));
	vmo_space_options_t so = {.size = sizeof so, .handler_threads = 1};
	vmo_space_t *sp;
	OK(vmo_space_create(p, &so, &sp));
	vmo_t *o;
	OK(vmo_create(p, 32 * PG, 0, &o));
	unsigned char *ref = malloc(32 * PG);
	uint64_t s = 17;
	fill_rand(ref, 32 * PG, &s);
	OK(vmo_write(o, 0, ref, 32 * PG));
	vmo_stats_t os = push_out(p, o);
	CHECK_EQ(os.swapped_pages, 32);
	CHECK_EQ(truncate(path, 0), 0);
	unsigned char b[8];
	CHECK_ERR(vmo_read(o, 0, b, sizeof b), -EIO);
	volatile unsigned char *m = NULL;
	OK(vmo_map(sp, o, 0, 32 * PG, PROT_READ, 0, (void **)&m));
	struct sigaction sa, old;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = swbus;
	sigaction(SIGBUS, &sa, &old);
	volatile int bused = 0;
	if (!sigsetjmp(swbus_jb, 1))
		(void)m[5 * PG];
	else
		bused = 1;
	sigaction(SIGBUS, &old, NULL);
	CHECK_EQ(bused, 1);
	CHECK_EQ(sstat_settled(sp).sigbus, 1);
	OK(vmo_unmap(sp, (void *)m, 32 * PG));
	vmo_space_destroy(sp);
	vmo_unref(o);
	vmo_pool_destroy(p);
	free(ref);
	rmdir(dir);
}

TEST(object_stats_swapped_pages_and_pool_pages_filled)
{
	struct env e = env_budget(1, 64, 256);
	vmo_t *o;
	OK(vmo_create(e.pool, 32 * PG, 0, &o));
	unsigned char *ref = malloc(32 * PG);
	uint64_t s = 3;
	fill_rand(ref, 32 * PG, &s);
	OK(vmo_write(o, 0, ref, 32 * PG));
	vmo_stats_t os = push_out(e.pool, o);
	CHECK_EQ(os.resident_pages, 0);
	CHECK_EQ(os.swapped_pages, 32);
	vmo_pool_stats_t ps = pstat(e.pool);
	CHECK_EQ(ps.swapped_pages, 32);
	CHECK_EQ(ps.swap_slots_used, 32);
	uint64_t filled = ps.pages_filled;
	unsigned char *got = malloc(32 * PG);
	OK(vmo_read(o, 0, got, 32 * PG));
	SAME(got, ref, 32 * PG, 0, "vmo_read");
	ps = pstat(e.pool);
	/* 32 pages came back from swap: the pool's misses */
	CHECK_EQ(ps.pages_filled, filled + 32);
	CHECK(ps.refaults >= 32);
	os = ostat(o);
	CHECK_EQ(os.swapped_pages, 0);
	CHECK_EQ(os.resident_pages, 32);
	vmo_unref(o);
	env_free(&e);
	free(ref);
	free(got);
}

TEST(resident_settles_within_budget_default_watermarks)
{
	const size_t budget = 64, npg = 640;
	vmo_pool_t *p = pool_budget(budget, 2 * npg);
	vmo_t *o;
	OK(vmo_create(p, npg * PG, 0, &o));
	unsigned char *ref = malloc(npg * PG);
	uint64_t s = 21;
	fill_rand(ref, npg * PG, &s);
	for (size_t pg = 0; pg < npg; pg += 8)
		OK(vmo_write(o, pg * PG, ref + pg * PG, 8 * PG));
	vmo_pool_stats_t st = pool_settle(p, budget);
	CHECK(st.resident_pages <= budget);
	CHECK(st.evictions >= npg - budget);
	CHECK(st.swap_outs >= npg - budget);
	CHECK(st.reclaim_runs > 0);
	CHECK_EQ(st.resident_pages + st.swapped_pages, npg);
	unsigned char *got = malloc(npg * PG);
	OK(vmo_read(o, 0, got, npg * PG));
	SAME(got, ref, npg * PG, 0, "vmo_read");
	st = pool_settle(p, budget);
	CHECK(st.resident_pages <= budget);
	vmo_unref(o);
	vmo_pool_destroy(p);
	free(ref);
	free(got);
}

TEST(resident_settles_under_explicit_high_watermark)
{
	const size_t npg = 400;
	char sw[32];
	int fd;
	vmo_pool_options_t po =
		popts(64 * PG, temp_swap(sw, &fd), 2 * npg * PG, 16 * PG,
		      32 * PG);
	vmo_pool_t *p = NULL;
	OK(vmo_pool_create(&po, &p));
	close(fd);
	vmo_t *o;
	OK(vmo_create(p, npg * PG, 0, &o));
	unsigned char *page = malloc(PG);
	uint64_t s = 22;
	for (size_t pg = 0; pg < npg; pg++) {
		fill_rand(page, PG, &s);
		OK(vmo_write(o, pg * PG, page, PG));
	}
	vmo_pool_stats_t st = pool_settle(p, 32);
	CHECK(st.resident_pages <= 32);
	CHECK_EQ(st.budget_pages, 64);
	vmo_unref(o);
	vmo_pool_destroy(p);
	free(page);
}

TEST(no_budget_never_evicts)
{
	vmo_pool_t *p = pool_budget(0, 0);
	vmo_t *o;
	OK(vmo_create(p, 300 * PG, 0, &o));
	unsigned char *page = malloc(PG);
	memset(page, 0x5C, PG);
	for (size_t pg = 0; pg < 300; pg++)
		OK(vmo_write(o, pg * PG, page, PG));
	usleep(20000);
	vmo_pool_stats_t st = pstat(p);
	CHECK_EQ(st.resident_pages, 300);
	CHECK_EQ(st.evictions, 0);
	CHECK_EQ(st.reclaim_runs, 0);
	CHECK_EQ(st.over_budget_events, 0);
	vmo_unref(o);
	vmo_pool_destroy(p);
	free(page);
}

/* ================================================ data integrity */

enum kind { K_ANON, K_SHARED, K_PRIVATE, K_PAGER };

static void integrity2(enum kind k, uint64_t seed, bool two_spaces);

static void integrity(enum kind k, uint64_t seed)
{
	integrity2(k, seed, false);
}

static void integrity2(enum kind k, uint64_t seed, bool two_spaces)
{
	const size_t budget = 64, npg = 640, len = npg * PG;
	bool swap = k == K_ANON || k == K_PRIVATE;
	struct env e = env_budget(0, budget, swap ? 2 * npg : 0);
	unsigned char *initial = malloc(len);
	CHECK(initial != NULL);
	int fd = -1;
	struct upager u;
	vmo_t *o = NULL;
	switch (k) {
	case K_ANON:
		memset(initial, 0, len);
		OK(vmo_create(e.pool, len, 0, &o));
		break;
	case K_SHARED:
	case K_PRIVATE:
		pattern_fill(initial, len, seed, 0);
		fd = temp_file(len, seed);
		OK(vmo_create_file(e.pool, fd, 0, len,
				   k == K_SHARED ? VMO_FILE_SHARED
						 : VMO_FILE_PRIVATE,
				   &o));
		break;
	case K_PAGER:
		up_init(&u, len, seed);
		memcpy(initial, u.store, len);
		OK(vmo_create_pager(e.pool, len, &up_ops, &u, 0, &o));
		break;
	}
	struct model m;
	model_init(&m, e.sp, o, initial, true);
	vmo_space_t *sp2 = NULL;
	if (two_spaces) {
		/* every page mapped twice: eviction must zap and harvest
		 * both mappings */
		OK(vmo_space_create(e.pool, NULL, &sp2));
		void *a2 = NULL;
		OK(vmo_map(sp2, o, 0, len, PROT_READ | PROT_WRITE, 0, &a2));
		m.map2 = a2;
	}
	uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;

	model_check_all(&m); /* the initial content, read through eviction */
	model_write_all(&m, &s);
	model_check_all(&m);
	for (int i = 0; i < 8000; i++)
		model_op(&m, &s);
	model_check_all(&m);
	model_write_all(&m, &s);
	for (int i = 0; i < 4000; i++)
		model_op(&m, &s);
	model_check_all(&m);

	vmo_pool_stats_t ps = pool_settle(e.pool, budget);
	if (ps.resident_pages > budget)
		FAIL("resident %" PRIu64 " > budget %zu after settling",
		     ps.resident_pages, budget);
	CHECK(ps.evictions > 0);
	CHECK(ps.refaults > 0);
	CHECK(ps.pages_filled > npg);
	if (swap) {
		CHECK(ps.swap_outs > 0);
		CHECK(ps.swap_ins > 0);
		CHECK_EQ(ps.writebacks, 0);
	} else {
		CHECK(ps.writebacks > 0);
		CHECK_EQ(ps.swap_outs, 0);
		CHECK_EQ(ps.swapped_pages, 0);
	}
	CHECK_EQ(ps.writeback_errors, 0);

	OK(vmo_sync(o, 0, len));
	model_unmap(&m, e.sp);
	if (sp2) {
		OK(vmo_unmap(sp2, m.map2, len));
		vmo_space_destroy(sp2);
	}
	vmo_unref(o);
	ps = pstat(e.pool);
	CHECK_EQ(ps.objects, 0);
	CHECK_EQ(ps.resident_pages, 0);
	CHECK_EQ(ps.swapped_pages, 0);
	CHECK_EQ(ps.swap_slots_used, 0);
	CHECK_EQ(ps.writeback_errors, 0);

	if (k == K_SHARED || k == K_PRIVATE) {
		unsigned char *file = malloc(len);
		CHECK_EQ(pread(fd, file, len, 0), (ssize_t)len);
		if (k == K_SHARED)
			SAME(file, m.ref, len, 0, "shared file after unref");
		else
			SAME(file, initial, len, 0,
			     "private file (must be unchanged)");
		free(file);
		close(fd);
	} else if (k == K_PAGER) {
		up_check(&u, m.ref);
		CHECK(up_count(&u, &u.writes) > 0);
		up_free(&u);
	}
	model_free(&m);
	free(initial);
	env_free(&e);
}

TEST(integrity_anonymous_with_swap_ten_times_the_budget)
{
	integrity(K_ANON, 101);
}

TEST(integrity_file_shared_ten_times_the_budget)
{
	integrity(K_SHARED, 102);
}

TEST(integrity_file_private_with_swap_ten_times_the_budget)
{
	integrity(K_PRIVATE, 103);
}

TEST(integrity_user_pager_ten_times_the_budget)
{
	integrity(K_PAGER, 104);
}

TEST(integrity_anonymous_mapped_in_two_spaces)
{
	integrity2(K_ANON, 105, true);
}

TEST(integrity_file_shared_mapped_in_two_spaces)
{
	integrity2(K_SHARED, 106, true);
}

TEST(integrity_user_pager_mapped_in_two_spaces)
{
	integrity2(K_PAGER, 107, true);
}

/* ========================================================= swap slots */

TEST(clean_swapped_in_page_keeps_its_slot_and_dirtying_frees_it)
{
	const size_t n = 32;
	struct env e = env_budget(1, 64, 1024);
	vmo_t *x;
	OK(vmo_create(e.pool, n * PG, 0, &x));
	unsigned char *ref = malloc(n * PG), *got = malloc(n * PG);
	uint64_t s = 31;
	fill_rand(ref, n * PG, &s);
	OK(vmo_write(x, 0, ref, n * PG));
	void *a = NULL;
	OK(vmo_map(e.sp, x, 0, n * PG, PROT_READ | PROT_WRITE, 0, &a));
	unsigned char *map = a;

	vmo_stats_t xs = push_out(e.pool, x);
	CHECK_EQ(xs.resident_pages, 0);
	CHECK_EQ(xs.swapped_pages, n);
	vmo_pool_stats_t p0 = pstat(e.pool);
	CHECK_EQ(p0.swap_outs, n); /* the pressure pages are clean */
	CHECK_EQ(p0.swap_slots_used, n);
	CHECK_EQ(p0.swapped_pages, n);

	/* read back: half with vmo_read, half through the mapping */
	OK(vmo_read(x, 0, got, n / 2 * PG));
	SAME(got, ref, n / 2 * PG, 0, "vmo_read of swapped pages");
	SAME(map + n / 2 * PG, ref + n / 2 * PG, n / 2 * PG, n / 2 * PG,
	     "mapping read of swapped pages");
	vmo_pool_stats_t p1 = pstat(e.pool);
	CHECK_EQ(p1.swap_ins, p0.swap_ins + n);
	CHECK_EQ(p1.swapped_pages, 0);
	CHECK_EQ(p1.swap_slots_used, n); /* clean copies keep their slots */
	xs = ostat(x);
	CHECK_EQ(xs.resident_pages, n);
	CHECK_EQ(xs.swapped_pages, 0);

	/* out again: nothing is written, the slots still hold the pages */
	xs = push_out(e.pool, x);
	CHECK_EQ(xs.resident_pages, 0);
	CHECK_EQ(xs.swapped_pages, n);
	vmo_pool_stats_t p2 = pstat(e.pool);
	CHECK_EQ(p2.swap_outs, p0.swap_outs);
	CHECK_EQ(p2.swap_slots_used, n);
	CHECK(p2.evictions >= p1.evictions + n);

	/* back in, then dirty three pages: a whole-page and a partial
	 * vmo_write free their slots at once, a write through the mapping
	 * when it is harvested */
	OK(vmo_read(x, 0, got, n * PG));
	SAME(got, ref, n * PG, 0, "vmo_read after the second swap-out");
	CHECK_EQ(pstat(e.pool).swap_slots_used, n);
	fill_rand(ref + 3 * PG, PG, &s);
	OK(vmo_write(x, 3 * PG, ref + 3 * PG, PG));
	CHECK_EQ(pstat(e.pool).swap_slots_used, n - 1);
	fill_rand(ref + 5 * PG + 100, 200, &s);
	OK(vmo_write(x, 5 * PG + 100, ref + 5 * PG + 100, 200));
	CHECK_EQ(pstat(e.pool).swap_slots_used, n - 2);
	fill_rand(ref + 20 * PG + 7, 50, &s);
	memcpy(map + 20 * PG + 7, ref + 20 * PG + 7, 50);
	vmo_pool_stats_t p3 = pstat(e.pool);
	CHECK(p3.swap_slots_used <= n - 2);

	xs = push_out(e.pool, x);
	CHECK_EQ(xs.resident_pages, 0);
	CHECK_EQ(xs.swapped_pages, n);
	vmo_pool_stats_t p4 = pstat(e.pool);
	CHECK_EQ(p4.swap_outs, p0.swap_outs + 3); /* only the dirty ones */
	CHECK_EQ(p4.swap_slots_used, n);
	SAME(map, ref, n * PG, 0, "mapping read after the third swap-out");
	OK(vmo_read(x, 0, got, n * PG));
	SAME(got, ref, n * PG, 0, "vmo_read after the third swap-out");

	OK(vmo_unmap(e.sp, map, n * PG));
	vmo_unref(x);
	CHECK_EQ(pstat(e.pool).swap_slots_used, 0);
	env_free(&e);
	free(ref);
	free(got);
}

TEST(swap_full_keeps_dirty_pages_and_runs_over_budget)
{
	const size_t budget = 32, npg = 320, len = npg * PG;
	struct env e = env_budget(0, budget, 4);
	vmo_t *o;
	OK(vmo_create(e.pool, len, 0, &o));
	struct model m;
	model_init(&m, e.sp, o, NULL, true);
	uint64_t s = 41;
	model_write_all(&m, &s);
	vmo_pool_stats_t ps = WAIT_POOL(e.pool, swap_full_events, 0);
	ps = WAIT_POOL(e.pool, over_budget_events, 0);
	CHECK(ps.swap_full_events > 0);
	CHECK(ps.over_budget_events > 0);
	CHECK_EQ(ps.swap_slots, 4);
	CHECK_EQ(ps.swap_slots_used, 4);
	CHECK(ps.swapped_pages <= 4);
	CHECK(ps.resident_pages > budget);
	CHECK_EQ(ps.resident_pages + ps.swapped_pages, npg);
	/* nothing was lost */
	model_check_all(&m);
	for (int i = 0; i < 1000; i++)
		model_op(&m, &s);
	model_check_all(&m);
	ps = pstat(e.pool);
	CHECK(ps.resident_pages > budget);
	CHECK(ps.swap_slots_used <= 4);
	model_unmap(&m, e.sp);
	vmo_unref(o);
	ps = pstat(e.pool);
	CHECK_EQ(ps.resident_pages, 0);
	CHECK_EQ(ps.swap_slots_used, 0);
	model_free(&m);
	env_free(&e);
}

TEST(no_swap_keeps_dirty_anonymous_pages_and_drops_clean_ones)
{
	const size_t budget = 32, npg = 320, len = npg * PG;
	struct env e = env_budget(0, budget, 0);
	vmo_t *o;
	OK(vmo_create(e.pool, len, 0, &o));
	struct model m;
	model_init(&m, e.sp, o, NULL, true);
	uint64_t s = 42;
	model_write_all(&m, &s); /* every page dirty, half through a mapping */
	vmo_pool_stats_t ps = WAIT_POOL(e.pool, over_budget_events, 0);
	CHECK(ps.over_budget_events > 0);
	CHECK_EQ(ps.swap_slots, 0);
	CHECK_EQ(ps.swapped_pages, 0);
	CHECK_EQ(ps.resident_pages, npg);
	CHECK_EQ(ostat(o).resident_pages, npg);
	model_check_all(&m);

	/* clean pages (committed zeros) may still go */
	vmo_t *z;
	OK(vmo_create(e.pool, 200 * PG, 0, &z));
	OK(vmo_commit(z, 0, 200 * PG));
	vmo_stats_t zs = ostat(z);
	for (int i = 0; i < 10000 && zs.resident_pages; i++) {
		usleep(1000);
		zs = ostat(z);
	}
	CHECK_EQ(zs.resident_pages, 0);
	ps = pstat(e.pool);
	CHECK(ps.evictions >= 200);
	CHECK_EQ(ostat(o).resident_pages, npg);
	unsigned char *zero = calloc(1, 200 * PG), *got = malloc(200 * PG);
	OK(vmo_read(z, 0, got, 200 * PG));
	SAME(got, zero, 200 * PG, 0, "evicted clean anonymous pages");
	model_check_all(&m);
	vmo_unref(z);
	model_unmap(&m, e.sp);
	vmo_unref(o);
	CHECK_EQ(pstat(e.pool).resident_pages, 0);
	model_free(&m);
	env_free(&e);
	free(zero);
	free(got);
}

/* ============================================ write-back failures */

TEST(pager_write_failure_at_eviction_keeps_pages_and_sync_reports_eio)
{
	const size_t budget = 16, npg = 64, len = npg * PG;
	struct upager u;
	up_init(&u, len, 51);
	unsigned char *orig = malloc(len);
	memcpy(orig, u.store, len);
	up_set_err(&u, EIO);
	struct env e = env_budget(0, budget, 0);
	vmo_t *o;
	OK(vmo_create_pager(e.pool, len, &up_ops, &u, 0, &o));
	struct model m;
	model_init(&m, e.sp, o, orig, true);
	uint64_t s = 52;
	model_write_all(&m, &s);
	/* and partial writes on top, both ways */
	for (size_t pg = 0; pg < npg; pg += 5) {
		size_t off = pg * PG + 1000;
		fill_rand(m.ref + off, 300, &s);
		if (pg % 2)
			memcpy(m.map + off, m.ref + off, 300);
		else
			OK(vmo_write(o, off, m.ref + off, 300));
	}
	vmo_pool_stats_t ps = WAIT_POOL(e.pool, writeback_errors, 0);
	ps = WAIT_POOL(e.pool, over_budget_events, 0);
	CHECK(ps.writeback_errors > 0);
	CHECK_EQ(ps.writebacks, 0);
	CHECK_EQ(ps.resident_pages, npg); /* every page kept */
	CHECK(ps.over_budget_events > 0);
	CHECK(up_count(&u, &u.write_fails) > 0);
	model_check_all(&m);
	up_check(&u, orig); /* nothing reached the store */

	/* the pager still fails: sync's own writes fail */
	CHECK_ERR(vmo_sync(o, 0, len), -EIO);
	CHECK_EQ(ostat(o).dirty_pages, npg);
	model_check_all(&m);

	/* another failure at eviction after that sync, then the pager is
	 * repaired; once eviction wrote a page back successfully, no failing
	 * write-back is in flight any more */
	uint64_t we = pstat(e.pool).writeback_errors;
	ps = WAIT_POOL(e.pool, writeback_errors, we);
	CHECK(ps.writeback_errors > we);
	up_set_err(&u, 0);
	ps = WAIT_POOL(e.pool, writebacks, 0);
	CHECK(ps.writebacks > 0);
	/* sync's own writes succeed, but it reports the eviction failure */
	CHECK_ERR(vmo_sync(o, 0, len), -EIO);
	OK(vmo_sync(o, 0, len));
	CHECK_EQ(ostat(o).dirty_pages, 0);
	up_check(&u, m.ref);
	model_check_all(&m);
	ps = pool_settle(e.pool, budget);
	CHECK(ps.resident_pages <= budget);
	OK(vmo_sync(o, 0, len));
	model_unmap(&m, e.sp);
	vmo_unref(o);
	up_check(&u, m.ref);
	model_free(&m);
	env_free(&e);
	up_free(&u);
	free(orig);
}

/* ======================================================= tiny budgets */

static void tiny_round(uint64_t budget, enum kind k, uint64_t seed)
{
	const size_t npg = 40, len = npg * PG;
	struct env e = env_budget(1, budget, k == K_ANON ? 2 * npg : 0);
	struct upager u;
	unsigned char *initial = calloc(1, len);
	vmo_t *o;
	if (k == K_ANON) {
		OK(vmo_create(e.pool, len, 0, &o));
	} else {
		up_init(&u, len, seed);
		memcpy(initial, u.store, len);
		OK(vmo_create_pager(e.pool, len, &up_ops, &u, 0, &o));
	}
	/* with a one-page budget an access must stay inside a page (see
	 * tiny_budget_one_page_* below) */
	struct model m;
	model_init(&m, e.sp, o, initial, budget >= 2);
	uint64_t s = seed;

	/* sequential: through the mapping, then with vmo_read / vmo_write */
	for (size_t pg = 0; pg < npg; pg++)
		SAME(m.map + pg * PG, m.ref + pg * PG, PG, pg * PG,
		     "sequential read via mapping");
	for (size_t pg = 0; pg < npg; pg++) {
		fill_rand(m.ref + pg * PG, PG, &s);
		memcpy(m.map + pg * PG, m.ref + pg * PG, PG);
	}
	OK(vmo_read(o, 0, m.buf, 4 * PG));
	SAME(m.buf, m.ref, 4 * PG, 0, "vmo_read");
	for (size_t pg = 0; pg < npg; pg += 4) {
		fill_rand(m.ref + pg * PG, 4 * PG, &s);
		OK(vmo_write(o, pg * PG, m.ref + pg * PG, 4 * PG));
	}
	for (size_t pg = 0; pg < npg; pg++) {
		size_t off = pg * PG + 123;
		fill_rand(m.ref + off, 1000, &s);
		OK(vmo_write(o, off, m.ref + off, 1000));
	}
	model_check_all(&m);
	/* random */
	for (int i = 0; i < 600; i++)
		model_op(&m, &s);
	model_check_all(&m);

	vmo_pool_stats_t ps = pool_settle(e.pool, budget);
	if (ps.resident_pages > budget)
		FAIL("budget %" PRIu64 ": resident %" PRIu64 " after settling",
		     budget, ps.resident_pages);
	CHECK(ps.evictions > 0);
	CHECK_EQ(ps.writeback_errors, 0);
	OK(vmo_sync(o, 0, len));
	model_unmap(&m, e.sp);
	vmo_unref(o);
	CHECK_EQ(pstat(e.pool).resident_pages, 0);
	CHECK_EQ(pstat(e.pool).swap_slots_used, 0);
	if (k == K_PAGER) {
		up_check(&u, m.ref);
		up_free(&u);
	}
	model_free(&m);
	free(initial);
	env_free(&e);
}

TEST(tiny_budgets_of_4_5_8_pages_anonymous_with_swap)
{
	tiny_round(4, K_ANON, 61);
	tiny_round(5, K_ANON, 62);
	tiny_round(8, K_ANON, 63);
}

TEST(tiny_budgets_of_4_5_8_pages_user_pager)
{
	tiny_round(4, K_PAGER, 64);
	tiny_round(5, K_PAGER, 65);
	tiny_round(8, K_PAGER, 66);
}

TEST(budgets_below_the_minimum_are_refused)
{
	CHECK_EQ(VMO_MIN_BUDGET, 4 * PG);
	for (uint64_t b = 1; b < 4; b++) {
		vmo_pool_options_t po = popts(b * PG, NULL, 0, 0, 0);
		vmo_pool_t *p = SENTINEL_POOL;
		CHECK_ERR(vmo_pool_create(&po, &p), -EINVAL);
		CHECK(p == SENTINEL_POOL);
	}
	vmo_pool_options_t po = popts(VMO_MIN_BUDGET, NULL, 0, 0, 0);
	vmo_pool_t *p;
	OK(vmo_pool_create(&po, &p));
	CHECK_EQ(pstat(p).budget_pages, 4);
	vmo_pool_destroy(p);
}

/* A pool with a budget of `budget` pages. */
static vmo_pool_t *tiny_pool(uint64_t budget)
{
	vmo_pool_options_t po = popts(budget * PG, NULL, 0, 0, 0);
	vmo_pool_t *p = NULL;
	OK(vmo_pool_create(&po, &p));
	return p;
}

/* Run fn(arg) in a thread and wait up to `secs` seconds for it: false if
 * it has not returned by then (it is left running: the test fails and
 * its process exits).  For operations that take microseconds, to turn a
 * livelock into a failure rather than a timeout. */
struct watch {
	void (*fn)(void *);
	void *arg;
	int done;
};

static void *watch_main(void *p)
{
	struct watch *w = p;
	w->fn(w->arg);
	__atomic_store_n(&w->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static bool finishes(struct watch *w, int secs)
{
	pthread_t t;
	CHECK_EQ(pthread_create(&t, NULL, watch_main, w), 0);
	for (int i = 0; i < secs * 100; i++) {
		if (__atomic_load_n(&w->done, __ATOMIC_SEQ_CST))
			break;
		usleep(10000);
	}
	if (!__atomic_load_n(&w->done, __ATOMIC_SEQ_CST))
		return false;
	CHECK_EQ(pthread_join(t, NULL), 0);
	return true;
}

struct span_write {
	vmo_t *o;
	const unsigned char *src;
	int r;
};

/* Pages k + 1/2 .. k + 3/2 for k = 0..5: each write covers half of two
 * pages that are not resident (the previous write left page k resident;
 * with one page of budget, page k+1 is not).  Several, because the
 * livelock below is sometimes broken by chance after a second or so. */
#define SPAN_WRITES 6
static void do_span_write(void *p)
{
	struct span_write *w = p;
	for (size_t k = 0; k < SPAN_WRITES && !w->r; k++)
		w->r = vmo_write(w->o, k * PG + PG / 2, w->src + k * PG, PG);
}

/*
 * With the smallest budget, a vmo_write that covers two pages partially,
 * neither of them resident, returns: filling the second page must not
 * evict the first one forever (vmo_write writes an unaligned head page
 * on its own).
 */
TEST(minimum_budget_vmo_write_across_two_partial_pages)
{
	const size_t npg = 8, len = npg * PG;
	vmo_pool_t *p = tiny_pool(4);
	int fd = temp_file(len, 71);
	vmo_t *o;
	OK(vmo_create_file(p, fd, 0, len, VMO_FILE_SHARED, &o));
	unsigned char *ref = malloc(len), *src = malloc(SPAN_WRITES * PG);
	pattern_fill(ref, len, 71, 0);
	uint64_t s = 71;
	fill_rand(src, SPAN_WRITES * PG, &s);
	for (size_t k = 0; k < SPAN_WRITES; k++)
		memcpy(ref + k * PG + PG / 2, src + k * PG, PG);
	struct span_write w = {o, src, 0};
	struct watch wt = {do_span_write, &w, 0};
	if (!finishes(&wt, 5)) {
		vmo_pool_stats_t ps = pstat(p);
		FAIL("%d vmo_writes of [k + 0.5, k + 1.5) pages with a 1-page "
		     "budget have not returned after 5 s: %" PRIu64 " pages filled, %"
		     PRIu64 " evicted, %" PRIu64 " direct reclaims (livelock)",
		     SPAN_WRITES, ps.pages_filled, ps.evictions,
		     ps.direct_reclaims);
	}
	OK(w.r);
	/* each write needs its two partial pages filled once; a write that
	 * got out of the loop by chance has filled them thousands of times */
	vmo_stats_t os = ostat(o);
	if (os.pages_filled > 16 * SPAN_WRITES)
		FAIL("%d vmo_writes of two partial pages each filled %" PRIu64
		     " pages (fill/evict loop, left by chance)",
		     SPAN_WRITES, os.pages_filled);
	unsigned char *got = malloc(len);
	OK(vmo_read(o, 0, got, len));
	SAME(got, ref, len, 0, "vmo_read");
	OK(vmo_sync(o, 0, len));
	vmo_unref(o);
	CHECK_EQ(pread(fd, got, len, 0), (ssize_t)len);
	SAME(got, ref, len, 0, "file");
	close(fd);
	vmo_pool_destroy(p);
	free(ref);
	free(src);
	free(got);
}

struct span_load {
	const unsigned char *at;
	uint64_t v;
};

static void do_span_load(void *p)
{
#if defined(__x86_64__)
	struct span_load *l = p;
	uint64_t v;
	/* one 8-byte load, 4 bytes in each page */
	__asm__ volatile("movq (%1), %0" : "=r"(v) : "r"(l->at) : "memory");
	l->v = v;
#else
	(void)p;
#endif
}

/*
 * With the smallest budget, a single load that crosses a page boundary
 * of a mapping completes (the fault on the second page must not evict
 * the first forever).
 */
TEST(minimum_budget_load_across_two_pages_of_a_mapping)
{
#if defined(__x86_64__)
	const size_t npg = 8, len = npg * PG;
	vmo_pool_t *p = tiny_pool(4);
	vmo_space_t *sp;
	OK(vmo_space_create(p, NULL, &sp));
	int fd = temp_file(len, 72);
	vmo_t *o;
	OK(vmo_create_file(p, fd, 0, len, VMO_FILE_SHARED, &o));
	void *a = NULL;
	OK(vmo_map(sp, o, 0, len, PROT_READ, 0, &a));
	unsigned char *ref = malloc(len);
	pattern_fill(ref, len, 72, 0);
	struct span_load l = {(unsigned char *)a + 3 * PG - 4, 0};
	struct watch wt = {do_span_load, &l, 0};
	if (!finishes(&wt, 5)) {
		vmo_pool_stats_t ps = pstat(p);
		FAIL("an 8-byte load across pages 2|3 with a 1-page budget has "
		     "not completed after 5 s: %" PRIu64 " pages filled, %"
		     PRIu64 " evicted (livelock)",
		     ps.pages_filled, ps.evictions);
	}
	uint64_t want;
	memcpy(&want, ref + 3 * PG - 4, 8);
	CHECK_EQ(l.v, want);
	vmo_stats_t os = ostat(o);
	if (os.pages_filled > 64)
		FAIL("a load across two pages filled %" PRIu64
		     " pages (fill/evict loop, left by chance)",
		     os.pages_filled);
	OK(vmo_unmap(sp, a, len));
	vmo_unref(o);
	close(fd);
	vmo_space_destroy(sp);
	vmo_pool_destroy(p);
	free(ref);
#endif
}

struct span_move {
	const unsigned char *src;
	unsigned char *dst;
};

static void do_span_move(void *p)
{
#if defined(__x86_64__)
	struct span_move *m = p;
	const void *si = m->src;
	void *di = m->dst;
	/* one instruction that reads 8 bytes across two pages and writes 8
	 * bytes across two other pages: four pages at once */
	__asm__ volatile("movsq" : "+S"(si), "+D"(di) : : "memory");
#else
	(void)p;
#endif
}

/*
 * The same one size up: movsq between two mappings, both operands across
 * a page boundary, needs four pages at once, which the smallest budget
 * holds.
 */
TEST(minimum_budget_movsq_across_pages_of_two_mappings)
{
#if defined(__x86_64__)
	const size_t npg = 8, len = npg * PG;
	vmo_pool_t *p = tiny_pool(4);
	vmo_space_t *sp;
	OK(vmo_space_create(p, NULL, &sp));
	int fd = temp_file(len, 73);
	vmo_t *src, *dst;
	OK(vmo_create_file(p, fd, 0, len, VMO_FILE_SHARED, &src));
	OK(vmo_create(p, len, 0, &dst));
	void *a = NULL, *b = NULL;
	OK(vmo_map(sp, src, 0, len, PROT_READ, 0, &a));
	OK(vmo_map(sp, dst, 0, len, PROT_READ | PROT_WRITE, 0, &b));
	struct span_move mv = {(unsigned char *)a + 3 * PG - 4,
			       (unsigned char *)b + 5 * PG - 4};
	struct watch wt = {do_span_move, &mv, 0};
	if (!finishes(&wt, 5)) {
		vmo_pool_stats_t ps = pstat(p);
		FAIL("movsq across pages of two mappings with a 2-page budget "
		     "has not completed after 5 s: %" PRIu64
		     " pages filled, %" PRIu64 " evicted (livelock)",
		     ps.pages_filled, ps.evictions);
	}
	unsigned char *ref = malloc(len), got[8];
	pattern_fill(ref, len, 73, 0);
	OK(vmo_read(dst, 5 * PG - 4, got, 8));
	SAME(got, ref + 3 * PG - 4, 8, 5 * PG - 4, "moved bytes");
	if (ostat(src).pages_filled + ostat(dst).pages_filled > 64)
		FAIL("one movsq filled %" PRIu64 " pages (fill/evict loop, "
		     "left by chance)",
		     ostat(src).pages_filled + ostat(dst).pages_filled);
	OK(vmo_unmap(sp, a, len));
	OK(vmo_unmap(sp, b, len));
	vmo_unref(src);
	vmo_unref(dst);
	close(fd);
	vmo_space_destroy(sp);
	vmo_pool_destroy(p);
	free(ref);
#endif
}

/* ================================== the page that contains end of file */

/*
 * Bytes written beyond end of file in the last page of a VMO_FILE_SHARED
 * object exist only in memory (they are never written back, and the
 * object keeps showing them: test_file.c,
 * partial_last_page_writeback_never_extends_file), so eviction must keep
 * that page: "a page whose only copy is in memory is never dropped".
 */
TEST(file_shared_bytes_beyond_eof_survive_eviction)
{
	const size_t flen = 2 * PG + 100;
	struct env e = env_budget(1, 16, 0);
	int fd = temp_file(flen, 143);
	unsigned char *model = malloc(flen);
	pattern_fill(model, flen, 143, 0);
	vmo_t *o;
	OK(vmo_create_file(e.pool, fd, 0, 3 * PG, VMO_FILE_SHARED, &o));
	OK(vmo_write(o, 2 * PG + 50, "in", 2));
	memcpy(model + 2 * PG + 50, "in", 2);
	OK(vmo_write(o, 2 * PG + 200, "beyond", 6));
	void *a = NULL;
	OK(vmo_map(e.sp, o, 0, 3 * PG, PROT_READ | PROT_WRITE, 0, &a));
	((unsigned char *)a)[3 * PG - 1] = 0x77; /* last byte, beyond EOF */
	OK(vmo_unmap(e.sp, a, 3 * PG));
	vmo_stats_t os = push_out(e.pool, o);
	/* every page went but the one holding end of file: its tail exists
	 * only in memory */
	CHECK_EQ(os.resident_pages, 1);
	/* the object still shows what was written beyond EOF */
	char b[6];
	OK(vmo_read(o, 2 * PG + 200, b, 6));
	if (memcmp(b, "beyond", 6))
		FAIL("bytes written beyond EOF were lost by eviction: read "
		     "%02x %02x %02x..., expected \"beyond\"",
		     (unsigned char)b[0], (unsigned char)b[1],
		     (unsigned char)b[2]);
	unsigned char last;
	OK(vmo_read(o, 3 * PG - 1, &last, 1));
	CHECK_EQ(last, 0x77);
	OK(vmo_sync(o, 0, 3 * PG));
	vmo_unref(o);
	/* the file: written inside, never extended */
	struct stat sb;
	CHECK_EQ(fstat(fd, &sb), 0);
	CHECK_EQ(sb.st_size, (off_t)flen);
	unsigned char *f = malloc(flen);
	CHECK_EQ(pread(fd, f, flen, 0), (ssize_t)flen);
	SAME(f, model, flen, 0, "file");
	close(fd);
	env_free(&e);
	free(model);
	free(f);
}

/* ===================================================== VMO_MAP_LOCKED */

TEST(map_locked_flags_accepted_and_unknown_flags_rejected)
{
	struct env e = env_budget(1, 16, 64);
	vmo_t *o;
	OK(vmo_create(e.pool, 8 * PG, 0, &o));
	void *a = NULL;
	CHECK_ERR(vmo_map(e.sp, o, 0, 8 * PG, PROT_READ, 0x8, &a), -EINVAL);
	CHECK_ERR(vmo_map(e.sp, o, 0, 8 * PG, PROT_READ,
			  VMO_MAP_LOCKED | 0x100, &a),
		  -EINVAL);
	CHECK_ERR(vmo_map(e.sp, o, 0, 8 * PG, PROT_READ, 0x80000000u, &a),
		  -EINVAL);
	CHECK(a == NULL);
	OK(vmo_map(e.sp, o, 0, 8 * PG, PROT_READ, VMO_MAP_LOCKED, &a));
	CHECK_EQ(ostat(o).resident_pages, 0); /* not populated */
	OK(vmo_unmap(e.sp, a, 8 * PG));
	OK(vmo_map(e.sp, o, 0, 8 * PG, PROT_READ | PROT_WRITE,
		   VMO_MAP_LOCKED | VMO_MAP_POPULATE, &a));
	CHECK_EQ(ostat(o).resident_pages, 8);
	OK(vmo_unmap(e.sp, a, 8 * PG));
	/* locked in a pool without a budget: accepted, nothing to do */
	vmo_pool_t *p = pool_budget(0, 0);
	vmo_space_t *sp;
	OK(vmo_space_create(p, NULL, &sp));
	vmo_t *q;
	OK(vmo_create(p, 8 * PG, 0, &q));
	OK(vmo_map(sp, q, 0, 8 * PG, PROT_READ | PROT_WRITE, VMO_MAP_LOCKED,
		   &a));
	OK(vmo_unmap(sp, a, 8 * PG));
	vmo_unref(q);
	vmo_space_destroy(sp);
	vmo_pool_destroy(p);
	vmo_unref(o);
	env_free(&e);
}

TEST(map_locked_pages_are_never_evicted)
{
	const size_t budget = 64, lpg = 16, npg = 640;
	struct env e = env_budget(0, budget, 4 * npg);
	vmo_t *l, *d;
	OK(vmo_create(e.pool, lpg * PG, 0, &l));
	OK(vmo_create(e.pool, npg * PG, 0, &d));
	void *a = NULL;
	OK(vmo_map(e.sp, l, 0, lpg * PG, PROT_READ | PROT_WRITE,
		   VMO_MAP_LOCKED | VMO_MAP_POPULATE, &a));
	unsigned char *lmap = a;
	CHECK_EQ(ostat(l).resident_pages, lpg);
	unsigned char *lref = malloc(lpg * PG);
	uint64_t s = 81;
	fill_rand(lref, lpg * PG, &s);
	memcpy(lmap, lref, lpg * PG);
	/* a second, unlocked mapping of part of it does not unlock it */
	void *a2 = NULL;
	OK(vmo_map(e.sp, l, 0, 4 * PG, PROT_READ, 0, &a2));

	/* lots of other data, dirty and read back, through a mapping too */
	struct model m;
	model_init(&m, e.sp, d, NULL, true);
	for (int round = 0; round < 2; round++) {
		model_write_all(&m, &s);
		model_check_all(&m);
	}
	for (int i = 0; i < 1000; i++)
		model_op(&m, &s);
	vmo_pool_stats_t ps = pstat(e.pool);
	CHECK(ps.evictions > 2 * npg);
	vmo_stats_t ls = ostat(l);
	CHECK_EQ(ls.resident_pages, lpg);
	CHECK_EQ(ls.swapped_pages, 0);
	SAME(lmap, lref, lpg * PG, 0, "locked mapping");
	SAME(a2, lref, 4 * PG, 0, "second mapping of locked pages");
	unsigned char *got = malloc(lpg * PG);
	OK(vmo_read(l, 0, got, lpg * PG));
	SAME(got, lref, lpg * PG, 0, "vmo_read of locked pages");
	CHECK_EQ(ostat(l).resident_pages, lpg);

	/* unlocked, they may go like any other */
	OK(vmo_unmap(e.sp, lmap, lpg * PG));
	ls = ostat(l);
	for (int i = 0; i < 50 && ls.resident_pages == lpg; i++) {
		model_write_all(&m, &s);
		ls = ostat(l);
	}
	CHECK(ls.resident_pages < lpg);
	CHECK(ls.swapped_pages > 0);
	OK(vmo_read(l, 0, got, lpg * PG));
	SAME(got, lref, lpg * PG, 0, "vmo_read after unlocking");
	model_check_all(&m);
	OK(vmo_unmap(e.sp, a2, 4 * PG));
	model_unmap(&m, e.sp);
	vmo_unref(l);
	vmo_unref(d);
	CHECK_EQ(pstat(e.pool).swap_slots_used, 0);
	model_free(&m);
	env_free(&e);
	free(lref);
	free(got);
}

TEST(map_locked_beyond_the_budget_runs_over_budget)
{
	const size_t budget = 32, lpg = 48;
	struct env e = env_budget(0, budget, 256);
	vmo_t *l;
	OK(vmo_create(e.pool, lpg * PG, 0, &l));
	void *a = NULL;
	OK(vmo_map(e.sp, l, 0, lpg * PG, PROT_READ | PROT_WRITE,
		   VMO_MAP_LOCKED | VMO_MAP_POPULATE, &a));
	unsigned char *lref = malloc(lpg * PG);
	uint64_t s = 82;
	fill_rand(lref, lpg * PG, &s);
	memcpy(a, lref, lpg * PG);
	vmo_pool_stats_t ps = WAIT_POOL(e.pool, over_budget_events, 0);
	CHECK(ps.over_budget_events > 0);
	CHECK_EQ(ps.resident_pages, lpg);
	CHECK_EQ(ps.evictions, 0);
	SAME(a, lref, lpg * PG, 0, "locked mapping");
	OK(vmo_unmap(e.sp, a, lpg * PG));
	/* now evictable: the reclaimer brings the pool back */
	ps = pool_settle(e.pool, budget);
	CHECK(ps.resident_pages <= budget);
	unsigned char *got = malloc(lpg * PG);
	OK(vmo_read(l, 0, got, lpg * PG));
	SAME(got, lref, lpg * PG, 0, "vmo_read after unmapping");
	vmo_unref(l);
	env_free(&e);
	free(lref);
	free(got);
}

/* ================================================= VMO_ADV_DONTNEED */

/* Was page pg of o swapped?  Reads a byte of it and looks whether that
 * took a swap-in (it then is resident again). */
static bool was_swapped(vmo_pool_t *p, vmo_t *o, size_t pg)
{
	uint64_t before = pstat(p).swap_ins;
	unsigned char c;
	OK(vmo_read(o, pg * PG, &c, 1));
	return pstat(p).swap_ins != before;
}

TEST(advise_dontneed_range_is_evicted_before_referenced_data)
{
	/* budget 128 pages, watermarks high 126, low 124 (given: the test
	 * counts on them).  B is created first: the clock's hand starts
	 * there */
	char sw[32];
	int fd;
	vmo_pool_options_t po = popts(128 * PG, temp_swap(sw, &fd), 512 * PG,
				      124 * PG, 126 * PG);
	struct env e;
	OK(vmo_pool_create(&po, &e.pool));
	close(fd);
	vmo_space_options_t so = {.size = sizeof so, .handler_threads = 1};
	OK(vmo_space_create(e.pool, &so, &e.sp));
	vmo_t *b, *a, *c;
	OK(vmo_create(e.pool, 16 * PG, 0, &b));
	OK(vmo_create(e.pool, 48 * PG, 0, &a));
	OK(vmo_create(e.pool, 70 * PG, 0, &c));
	unsigned char *bref = malloc(16 * PG), *aref = malloc(48 * PG),
		      *got = malloc(48 * PG), *page = malloc(PG);
	uint64_t s = 91;
	fill_rand(bref, 16 * PG, &s);
	fill_rand(aref, 48 * PG, &s);
	OK(vmo_write(b, 0, bref, 16 * PG));
	void *bm = NULL, *am = NULL;
	OK(vmo_map(e.sp, b, 0, 16 * PG, PROT_READ, 0, &bm));
	OK(vmo_map(e.sp, a, 0, 48 * PG, PROT_READ | PROT_WRITE, 0, &am));
	memcpy(am, aref, 48 * PG);
	vmo_pool_stats_t ps = pstat(e.pool);
	CHECK_EQ(ps.resident_pages, 64);
	CHECK_EQ(ps.evictions, 0);

	/* all of B advised first, then A's pages 0..15, then 16..47: the
	 * last advice names the next victims */
	OK(vmo_advise(e.sp, bm, 16 * PG, VMO_ADV_DONTNEED));
	OK(vmo_advise(e.sp, am, 16 * PG, VMO_ADV_DONTNEED));
	OK(vmo_advise(e.sp, (char *)am + 16 * PG, 32 * PG, VMO_ADV_DONTNEED));
	/* push the pool over its high watermark by 8 pages, one at a time */
	for (size_t pg = 0; pg < 70; pg++) {
		fill_rand(page, PG, &s);
		OK(vmo_write(c, pg * PG, page, PG));
	}
	ps = pool_settle(e.pool, 126);
	CHECK(ps.resident_pages <= 126);
	CHECK(ps.evictions > 0);
	CHECK(ps.evictions <= 32);
	/* they were next: nothing needed a second chance */
	CHECK_EQ(ps.ref_clears, 0);
	vmo_stats_t as = ostat(a), bs = ostat(b), cs = ostat(c);
	CHECK_EQ(bs.resident_pages, 16);
	CHECK_EQ(cs.resident_pages, 70);
	CHECK_EQ(as.resident_pages + ps.evictions, 48);
	CHECK_EQ(as.swapped_pages, ps.evictions);
	/* the victims came from pages 16..47, in the hand's order */
	for (size_t pg = 0; pg < 16; pg++)
		if (was_swapped(e.pool, a, pg))
			FAIL("page %zu (advised earlier) went before the pages "
			     "advised last",
			     pg);
	CHECK(was_swapped(e.pool, a, 16));
	/* and nothing was lost */
	SAME(am, aref, 48 * PG, 0, "advised mapping");
	OK(vmo_read(b, 0, got, 16 * PG));
	SAME(got, bref, 16 * PG, 0, "vmo_read of B");
	OK(vmo_unmap(e.sp, am, 48 * PG));
	OK(vmo_unmap(e.sp, bm, 16 * PG));
	vmo_unref(a);
	vmo_unref(b);
	vmo_unref(c);
	env_free(&e);
	free(aref);
	free(bref);
	free(got);
	free(page);
}

/* ==================================== decommit, unref, read and write */

TEST(decommit_of_swapped_pages_frees_their_slots_and_reads_zeros)
{
	const size_t n = 32;
	struct env e = env_budget(1, 64, 256);
	vmo_t *x;
	OK(vmo_create(e.pool, n * PG, 0, &x));
	unsigned char *ref = malloc(n * PG), *got = malloc(n * PG);
	uint64_t s = 101;
	fill_rand(ref, n * PG, &s);
	OK(vmo_write(x, 0, ref, n * PG));
	vmo_stats_t xs = push_out(e.pool, x);
	CHECK_EQ(xs.swapped_pages, n);
	CHECK_EQ(pstat(e.pool).swap_slots_used, n);
	/* pages 0..7 back in (resident, keeping their slots) */
	OK(vmo_read(x, 0, got, 8 * PG));
	SAME(got, ref, 8 * PG, 0, "vmo_read");
	xs = ostat(x);
	CHECK_EQ(xs.resident_pages, 8);
	CHECK_EQ(xs.swapped_pages, n - 8);
	CHECK_EQ(pstat(e.pool).swap_slots_used, n);

	/* decommit 4..19: four resident pages with slots, twelve swapped */
	OK(vmo_decommit(x, 4 * PG, 16 * PG));
	memset(ref + 4 * PG, 0, 16 * PG);
	xs = ostat(x);
	CHECK_EQ(xs.resident_pages, 4);
	CHECK_EQ(xs.swapped_pages, n - 20);
	vmo_pool_stats_t ps = pstat(e.pool);
	CHECK_EQ(ps.swap_slots_used, n - 16);
	CHECK_EQ(ps.swapped_pages, n - 20);
	OK(vmo_read(x, 0, got, n * PG));
	SAME(got, ref, n * PG, 0, "vmo_read after decommit");

	/* all of it */
	OK(vmo_decommit(x, 0, n * PG));
	ps = pstat(e.pool);
	CHECK_EQ(ps.swap_slots_used, 0);
	CHECK_EQ(ps.swapped_pages, 0);
	CHECK_EQ(ps.resident_pages, 0);
	CHECK_EQ(ostat(x).swapped_pages, 0);
	memset(ref, 0, n * PG);
	OK(vmo_read(x, 0, got, n * PG));
	SAME(got, ref, n * PG, 0, "vmo_read after decommit of everything");
	void *a = NULL;
	OK(vmo_map(e.sp, x, 0, n * PG, PROT_READ, 0, &a));
	SAME(a, ref, n * PG, 0, "mapping after decommit");
	OK(vmo_unmap(e.sp, a, n * PG));
	vmo_unref(x);
	env_free(&e);
	free(ref);
	free(got);
}

TEST(decommit_of_swapped_private_pages_refetches_the_file)
{
	const size_t n = 32, len = n * PG;
	struct env e = env_budget(1, 64, 256);
	int fd = temp_file(len, 102);
	vmo_t *x;
	OK(vmo_create_file(e.pool, fd, 0, len, VMO_FILE_PRIVATE, &x));
	unsigned char *pat = malloc(len), *ref = malloc(len),
		      *got = malloc(len);
	pattern_fill(pat, len, 102, 0);
	uint64_t s = 103;
	fill_rand(ref, len, &s);
	OK(vmo_write(x, 0, ref, len));
	vmo_stats_t xs = push_out(e.pool, x);
	CHECK_EQ(xs.swapped_pages, n);
	OK(vmo_read(x, 0, got, len));
	SAME(got, ref, len, 0, "vmo_read of swapped private pages");
	xs = push_out(e.pool, x);
	CHECK_EQ(xs.swapped_pages, n);
	OK(vmo_decommit(x, 8 * PG, 8 * PG));
	memcpy(ref + 8 * PG, pat + 8 * PG, 8 * PG);
	CHECK_EQ(pstat(e.pool).swap_slots_used, n - 8);
	CHECK_EQ(ostat(x).swapped_pages, n - 8);
	OK(vmo_read(x, 0, got, len));
	SAME(got, ref, len, 0, "vmo_read after decommit");
	vmo_unref(x);
	CHECK_EQ(pstat(e.pool).swap_slots_used, 0);
	CHECK_EQ(pread(fd, got, len, 0), (ssize_t)len);
	SAME(got, pat, len, 0, "private file (must be unchanged)");
	close(fd);
	env_free(&e);
	free(pat);
	free(ref);
	free(got);
}

TEST(unref_with_swapped_pages_frees_slots_and_counts)
{
	const size_t n = 48;
	struct env e = env_budget(1, 32, 256);
	vmo_t *x, *y;
	OK(vmo_create(e.pool, n * PG, 0, &x));
	OK(vmo_create(e.pool, n * PG, 0, &y));
	unsigned char *ref = malloc(n * PG), *got = malloc(n * PG);
	uint64_t s = 111;
	fill_rand(ref, n * PG, &s);
	OK(vmo_write(x, 0, ref, n * PG));
	OK(vmo_write(y, 0, ref, n * PG));
	vmo_stats_t xs = push_out(e.pool, x);
	CHECK_EQ(xs.swapped_pages, n);
	/* some of x back in: resident pages holding slots, swapped ones */
	OK(vmo_read(x, 0, got, 8 * PG));
	SAME(got, ref, 8 * PG, 0, "vmo_read");
	void *a = NULL;
	OK(vmo_map(e.sp, x, 0, n * PG, PROT_READ | PROT_WRITE, 0, &a));
	((unsigned char *)a)[20 * PG] ^= 1; /* resident, dirty, no slot */
	vmo_pool_stats_t ps = pstat(e.pool);
	CHECK(ps.swap_slots_used > 0);
	CHECK(ps.swapped_pages > 0);
	OK(vmo_unmap(e.sp, a, n * PG));
	vmo_unref(x);
	ps = pstat(e.pool);
	CHECK_EQ(ps.objects, 1);
	vmo_unref(y);
	ps = pstat(e.pool);
	CHECK_EQ(ps.objects, 0);
	CHECK_EQ(ps.resident_pages, 0);
	CHECK_EQ(ps.swapped_pages, 0);
	CHECK_EQ(ps.dirty_pages, 0);
	CHECK_EQ(ps.swap_slots_used, 0);
	env_free(&e);
	free(ref);
	free(got);
}

TEST(read_and_write_of_swapped_pages)
{
	const size_t n = 16;
	struct env e = env_budget(1, 32, 256);
	vmo_t *x;
	OK(vmo_create(e.pool, n * PG, 0, &x));
	unsigned char *ref = malloc(n * PG), *got = malloc(n * PG);
	uint64_t s = 121;
	fill_rand(ref, n * PG, &s);
	OK(vmo_write(x, 0, ref, n * PG));
	vmo_stats_t xs = push_out(e.pool, x);
	CHECK_EQ(xs.swapped_pages, n);
	vmo_pool_stats_t p0 = pstat(e.pool);

	/* an unaligned read across pages 2..5 */
	size_t off = 2 * PG + 1234, len = 3 * PG + 100;
	OK(vmo_read(x, off, got, len));
	SAME(got, ref + off, len, off, "vmo_read of swapped pages");
	vmo_pool_stats_t p1 = pstat(e.pool);
	CHECK_EQ(p1.swap_ins, p0.swap_ins + 4);
	CHECK_EQ(ostat(x).swapped_pages, n - 4);
	CHECK_EQ(p1.swap_slots_used, n);

	/* a whole swapped page overwritten: no swap-in, its slot freed */
	fill_rand(ref + 8 * PG, PG, &s);
	OK(vmo_write(x, 8 * PG, ref + 8 * PG, PG));
	vmo_pool_stats_t p2 = pstat(e.pool);
	CHECK_EQ(p2.swap_ins, p1.swap_ins);
	CHECK_EQ(p2.swap_slots_used, n - 1);
	CHECK_EQ(ostat(x).swapped_pages, n - 5);

	/* part of a swapped page: swapped in first, then its slot freed */
	fill_rand(ref + 10 * PG + 4000, 90, &s);
	OK(vmo_write(x, 10 * PG + 4000, ref + 10 * PG + 4000, 90));
	vmo_pool_stats_t p3 = pstat(e.pool);
	CHECK_EQ(p3.swap_ins, p2.swap_ins + 1);
	CHECK_EQ(p3.swap_slots_used, n - 2);
	CHECK_EQ(ostat(x).swapped_pages, n - 6);

	/* across two swapped pages, partly each: both swapped in */
	fill_rand(ref + 12 * PG + 2048, PG, &s);
	OK(vmo_write(x, 12 * PG + 2048, ref + 12 * PG + 2048, PG));
	vmo_pool_stats_t p4 = pstat(e.pool);
	CHECK_EQ(p4.swap_ins, p3.swap_ins + 2);
	CHECK_EQ(p4.swap_slots_used, n - 4);

	OK(vmo_read(x, 0, got, n * PG));
	SAME(got, ref, n * PG, 0, "vmo_read after the writes");
	xs = push_out(e.pool, x);
	CHECK_EQ(xs.swapped_pages, n);
	CHECK_EQ(pstat(e.pool).swap_slots_used, n);
	OK(vmo_read(x, 0, got, n * PG));
	SAME(got, ref, n * PG, 0, "vmo_read after swapping out again");
	vmo_unref(x);
	env_free(&e);
	free(ref);
	free(got);
}

TEST_MAIN()
