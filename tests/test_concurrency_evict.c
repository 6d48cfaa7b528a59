/*
 * test_concurrency_evict.c — self-paging under concurrency: several
 * threads reading and writing objects ten times the pool's budget
 * (anonymous with swap, VMO_FILE_SHARED, user pager) through mappings and
 * vmo_read / vmo_write; faults racing the eviction of the very pages they
 * touch under a budget of a few pages; vmo_sync and vmo_decommit racing
 * eviction; objects created, mapped and destroyed while the reclaimer
 * works on the pool.  Everything is checked against reference copies at
 * the end.  Also built and run under ThreadSanitizer (make tsan), with
 * fewer iterations.
 *
 * Sharing rules, so that the reference copies are exact and the test code
 * itself is race-free: pages are owned by threads in blocks of BLK pages
 * (block b belongs to thread b % nthreads) and only the owner writes them;
 * through a mapping it writes with atomic 8-byte stores.  Other threads
 * read pages they do not own only with atomic 8-byte loads or with
 * vmo_read, and check only what cannot be torn: every 8-byte word of page
 * p carries p's tag in its top 24 bits, and any mix of two versions of a
 * word of p still does.
 */
#include "testlib.h"

#include <pthread.h>
#include <stdbool.h>

#if defined(__SANITIZE_THREAD__)
#define SCALE 2
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SCALE 2
#endif
#endif
#ifndef SCALE
#if defined(__SANITIZE_ADDRESS__)
#define SCALE 4
#else
#define SCALE 8
#endif
#endif

#define NT 4      /* worker threads */
#define BLK 4     /* pages per ownership block */
#define WPP (PG / 8) /* words per page */

/* ------------------------------------------------------------- helpers */


#define TAG_SHIFT 40
static inline uint64_t tag_of(size_t pg)
{
	return ((uint64_t)pg + 1) & 0xFFFFFF;
}

static inline uint64_t mkword(size_t pg, uint64_t v)
{
	return (tag_of(pg) << TAG_SHIFT) | (v & ((1ull << TAG_SHIFT) - 1));
}

/* Fill n bytes at object offset off (any alignment) with tagged words. */
static void fill_tagged(unsigned char *dst, size_t off, size_t n, uint64_t *s)
{
	size_t pos = off, end = off + n;
	while (pos < end) {
		size_t wstart = pos & ~(size_t)7;
		uint64_t w = mkword(wstart / PG, rnd(s));
		unsigned char b[8];
		memcpy(b, &w, 8);
		for (size_t i = pos - wstart; i < 8 && pos < end; i++, pos++)
			dst[pos - off] = b[i];
	}
}

/* Check that every word of page pg in buf (one page) carries pg's tag. */
static void check_tags(const unsigned char *buf, size_t pg, const char *what)
{
	for (size_t i = 0; i < WPP; i++) {
		uint64_t w;
		memcpy(&w, buf + i * 8, 8);
		if ((w >> TAG_SHIFT) != tag_of(pg))
			FAIL("%s: page %zu word %zu is %016" PRIx64
			     ", not tagged %06" PRIx64,
			     what, pg, i, w, tag_of(pg));
	}
}

typedef void *(*thread_fn)(void *);

static void run_threads(size_t n, thread_fn fn, void *args, size_t argsz)
{
	pthread_t th[16];
	CHECK(n <= 16);
	for (size_t i = 0; i < n; i++)
		CHECK_EQ(pthread_create(&th[i], NULL, fn,
					(char *)args + i * argsz),
			 0);
	for (size_t i = 0; i < n; i++)
		CHECK_EQ(pthread_join(th[i], NULL), 0);
}

/* ------------------------------------------------------ a user pager */


/* ------------------------------------------ objects of every kind */

enum kind { K_ANON, K_SHARED, K_PAGER };

/* An object of `kind` whose initial content is `init` (len bytes); a
 * mapping of all of it is made by the caller. */
struct subject {
	enum kind kind;
	vmo_t *o;
	size_t len;
	int fd;          /* K_SHARED */
	struct upager u; /* K_PAGER */
};

static void subject_new(struct subject *sj, vmo_pool_t *p, enum kind k,
			const unsigned char *init, size_t len)
{
	memset(sj, 0, sizeof *sj);
	sj->kind = k;
	sj->len = len;
	sj->fd = -1;
	switch (k) {
	case K_ANON:
		OK(vmo_create(p, len, 0, &sj->o));
		OK(vmo_write(sj->o, 0, init, len));
		break;
	case K_SHARED: {
		char path[] = "/tmp/vmoevcXXXXXX";
		sj->fd = mkstemp(path);
		CHECK(sj->fd >= 0);
		unlink(path);
		CHECK_EQ(pwrite(sj->fd, init, len, 0), (ssize_t)len);
		OK(vmo_create_file(p, sj->fd, 0, len, VMO_FILE_SHARED, &sj->o));
		break;
	}
	case K_PAGER:
		up_init(&sj->u, len, 0);
		memcpy(sj->u.store, init, len);
		OK(vmo_create_pager(p, len, &up_ops, &sj->u, 0, &sj->o));
		break;
	}
}

/* Sync, drop the object and check the backing store against ref. */
static void subject_finish(struct subject *sj, const unsigned char *ref)
{
	OK(vmo_sync(sj->o, 0, sj->len));
	vmo_unref(sj->o);
	if (sj->kind == K_SHARED) {
		unsigned char *f = malloc(sj->len);
		CHECK_EQ(pread(sj->fd, f, sj->len, 0), (ssize_t)sj->len);
		SAME(f, ref, sj->len, 0, "file after unref");
		free(f);
		close(sj->fd);
	} else if (sj->kind == K_PAGER) {
		pthread_mutex_lock(&sj->u.lock);
		SAME(sj->u.store, ref, sj->len, 0, "pager store after unref");
		CHECK(sj->u.writes > 0);
		pthread_mutex_unlock(&sj->u.lock);
		up_free(&sj->u);
	}
}

/* Check the whole object against ref, through the mapping and vmo_read
 * (no other thread running). */
static void check_object(vmo_t *o, const unsigned char *map,
			 const unsigned char *ref, size_t len)
{
	for (size_t off = 0; off < len; off += PG)
		SAME(map + off, ref + off, PG, off, "final read via mapping");
	unsigned char *all = malloc(len);
	CHECK(all != NULL);
	OK(vmo_read(o, 0, all, len));
	SAME(all, ref, len, 0, "final vmo_read");
	free(all);
}

/* ============================== owners writing, everybody reading */

struct shared {
	vmo_t *o;
	unsigned char *map;
	unsigned char *map2; /* a mapping in a second space, or NULL */
	unsigned char *ref; /* each owner writes only its own pages' bytes */
	size_t npg;
	int nthreads;       /* owners */
	int iters;
	bool map_writes;    /* owners may write through the mapping */
	int skip_owner;     /* pages of this owner are not checked by others
			       (-1: none) */
	int stop;           /* (atomic) helpers stop when set */
	pthread_barrier_t *bar;
};

struct worker {
	struct shared *sh;
	int id;
	uint64_t seed;
};

static inline int owner_of(const struct shared *sh, size_t pg)
{
	return (int)((pg / BLK) % (size_t)sh->nthreads);
}

/* A random page of thread id. */
static size_t own_page(const struct shared *sh, int id, uint64_t *s)
{
	size_t nblk = sh->npg / BLK / (size_t)sh->nthreads;
	size_t b = (size_t)id + (size_t)sh->nthreads * (size_t)(rnd(s) % nblk);
	return b * BLK + (size_t)(rnd(s) % BLK);
}

/* Read another thread's page pg and check its tags. */
static void peek_other(struct shared *sh, const unsigned char *map,
		       size_t pg, bool via_map, unsigned char *buf)
{
	if (via_map) {
		const uint64_t *w = (const uint64_t *)(map + pg * PG);
		for (size_t i = 0; i < WPP; i++) {
			uint64_t v = __atomic_load_n(&w[i], __ATOMIC_RELAXED);
			memcpy(buf + i * 8, &v, 8);
		}
		check_tags(buf, pg, "other's page via mapping");
	} else {
		OK(vmo_read(sh->o, pg * PG, buf, PG));
		check_tags(buf, pg, "other's page via vmo_read");
	}
}

static void worker_step(struct shared *sh, int id, uint64_t *s,
			unsigned char *buf)
{
	unsigned char *map = sh->map2 && rnd(s) % 2 ? sh->map2 : sh->map;
	size_t pg = own_page(sh, id, s);
	size_t blk0 = pg / BLK * BLK;
	switch (rnd(s) % 6) {
	case 0:
		if (sh->map_writes) {
			/* a run of words of an own page, atomically */
			size_t i0 = (size_t)(rnd(s) % WPP);
			size_t n = 1 + (size_t)(rnd(s) % (WPP - i0));
			uint64_t *w = (uint64_t *)(map + pg * PG);
			for (size_t i = i0; i < i0 + n; i++) {
				uint64_t v = mkword(pg, rnd(s));
				memcpy(sh->ref + pg * PG + i * 8, &v, 8);
				__atomic_store_n(&w[i], v, __ATOMIC_RELAXED);
			}
			break;
		}
		/* fall through */
	case 1: {
		/* any byte range inside an own block, possibly across pages */
		size_t off = pg * PG + (size_t)(rnd(s) % PG);
		size_t max = (blk0 + BLK) * PG - off;
		size_t n = 1 + (size_t)(rnd(s) % (max < 2 * PG ? max : 2 * PG));
		fill_tagged(buf, off, n, s);
		memcpy(sh->ref + off, buf, n);
		OK(vmo_write(sh->o, off, buf, n));
		break;
	}
	case 2: {
		size_t off = pg * PG + (size_t)(rnd(s) % PG);
		size_t n = 1 + (size_t)(rnd(s) % ((pg + 1) * PG - off));
		SAME(map + off, sh->ref + off, n, off, "own page via mapping");
		break;
	}
	case 3: {
		size_t off = blk0 * PG + (size_t)(rnd(s) % (BLK * PG));
		size_t n = 1 + (size_t)(rnd(s) % ((blk0 + BLK) * PG - off));
		OK(vmo_read(sh->o, off, buf, n));
		SAME(buf, sh->ref + off, n, off, "own range via vmo_read");
		break;
	}
	default: {
		size_t other = (size_t)(rnd(s) % sh->npg);
		int ow = owner_of(sh, other);
		if (ow == id || ow == sh->skip_owner)
			break;
		peek_other(sh, map, other, rnd(s) % 2, buf);
		break;
	}
	}
}

static void *worker_main(void *a_)
{
	struct worker *a = a_;
	struct shared *sh = a->sh;
	unsigned char *buf = malloc(BLK * PG); /* worker_step's largest */
	uint64_t s = a->seed;
	pthread_barrier_wait(sh->bar);
	for (int i = 0; i < sh->iters; i++)
		worker_step(sh, a->id, &s, buf);
	free(buf);
	return NULL;
}

/* Initial content: tagged words everywhere. */
static unsigned char *tagged_image(size_t len, uint64_t seed)
{
	unsigned char *b = malloc(len);
	CHECK(b != NULL);
	uint64_t s = seed;
	fill_tagged(b, 0, len, &s);
	return b;
}

static void owners_round(enum kind k, uint64_t seed, bool two_spaces)
{
	const size_t budget = 64, npg = 640, len = npg * PG;
	struct env e = env_budget(0, budget, k == K_ANON ? 2 * npg : 0);
	unsigned char *ref = tagged_image(len, seed);
	struct subject sj;
	subject_new(&sj, e.pool, k, ref, len);
	void *a = NULL;
	OK(vmo_map(e.sp, sj.o, 0, len, PROT_READ | PROT_WRITE, 0, &a));
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, NT);
	struct shared sh = {sj.o, a, NULL, ref, npg, NT, 1500 * SCALE, true, -1, 0,
			    &bar};
	vmo_space_t *sp2 = NULL;
	if (two_spaces) {
		OK(vmo_space_create(e.pool, NULL, &sp2));
		void *a2 = NULL;
		OK(vmo_map(sp2, sj.o, 0, len, PROT_READ | PROT_WRITE, 0, &a2));
		sh.map2 = a2;
	}
	struct worker w[NT];
	for (int i = 0; i < NT; i++)
		w[i] = (struct worker){&sh, i, seed * 77 + (uint64_t)i + 1};
	run_threads(NT, worker_main, w, sizeof *w);
	pthread_barrier_destroy(&bar);

	check_object(sj.o, a, ref, len);
	vmo_pool_stats_t ps = pstat(e.pool);
	CHECK(ps.evictions > 0);
	CHECK(ps.refaults > 0);
	if (k == K_ANON) {
		CHECK(ps.swap_outs > 0);
		CHECK(ps.swap_ins > 0);
	} else {
		CHECK(ps.writebacks > 0);
	}
	CHECK_EQ(ps.writeback_errors, 0);
	OK(vmo_unmap(e.sp, a, len));
	if (sp2) {
		check_object(sj.o, sh.map2, ref, len);
		OK(vmo_unmap(sp2, sh.map2, len));
		vmo_space_destroy(sp2);
	}
	subject_finish(&sj, ref);
	ps = pstat(e.pool);
	CHECK_EQ(ps.resident_pages, 0);
	CHECK_EQ(ps.swapped_pages, 0);
	CHECK_EQ(ps.swap_slots_used, 0);
	free(ref);
	env_free(&e);
}

TEST(owners_and_readers_anonymous_with_swap_ten_times_the_budget)
{
	owners_round(K_ANON, 1, false);
}

TEST(owners_and_readers_file_shared_ten_times_the_budget)
{
	owners_round(K_SHARED, 2, false);
}

TEST(owners_and_readers_user_pager_ten_times_the_budget)
{
	owners_round(K_PAGER, 3, false);
}

TEST(owners_and_readers_anonymous_mapped_in_two_spaces)
{
	owners_round(K_ANON, 4, true);
}

TEST(owners_and_readers_user_pager_mapped_in_two_spaces)
{
	owners_round(K_PAGER, 5, true);
}

/* ========================== faults racing eviction of the same page */

/*
 * Hammer threads store to (and load back) the words of a small "hot"
 * object through a mapping as fast as they can; a streamer moves through
 * a big object, so that the pool (a budget of a few pages) evicts all the
 * time, and every few pages advises the hot range VMO_ADV_DONTNEED, which
 * makes the hot pages the next victims while the hammers keep writing
 * them.  No store may be lost.
 */
#define HOT_PAGES 2
#define HAMMERS 3

struct hot {
	vmo_t *o;            /* the hot object */
	uint64_t *map;
	uint64_t *map2;      /* the hot object in a second space, or NULL */
	vmo_space_t *sp;
	vmo_t *so;           /* the streamer's object */
	unsigned char *smap;
	unsigned char *sref; /* the streamer's reference copy */
	size_t snpg;
	int passes;
	int stop;            /* (atomic) */
	pthread_barrier_t *bar;
};

struct hammer {
	struct hot *h;
	int id;
	uint64_t seed;
	uint64_t mine[HOT_PAGES * WPP]; /* last value of own words */
	uint64_t stores;
};

/* Word i of the hot pages belongs to hammer i % HAMMERS; its values are
 * (owner + 1) << 56 | sequence. */
static void *hammer_main(void *a_)
{
	struct hammer *a = a_;
	struct hot *h = a->h;
	/* with a second space, odd hammers use it: the advice that makes
	 * the hot pages the next victims zaps only the first space's
	 * entries, so eviction must find and zap the others itself */
	uint64_t *w = h->map2 && a->id % 2 ? h->map2 : h->map;
	uint64_t s = a->seed, seq = 0;
	const size_t nw = HOT_PAGES * WPP;
	uint64_t burst = 0;
	pthread_barrier_wait(h->bar);
	while (!__atomic_load_n(&h->stop, __ATOMIC_ACQUIRE) || seq < 2000) {
		if (!burst--) {
			/* stores come in bursts; in between, only loads, so
			 * that the hot pages are also evicted clean (read back
			 * by a load, not yet written) and the next store
			 * races their eviction */
			burst = rnd(&s) % 64;
			for (uint64_t k = rnd(&s) % 4096; k; k--)
				(void)__atomic_load_n(&w[rnd(&s) % nw],
						      __ATOMIC_RELAXED);
		}
		size_t i = (size_t)(rnd(&s) % (nw / HAMMERS)) * HAMMERS +
			   (size_t)a->id;
		uint64_t v = ((uint64_t)(a->id + 1) << 56) | ++seq;
		__atomic_store_n(&w[i], v, __ATOMIC_RELAXED);
		a->mine[i] = v;
		uint64_t got = __atomic_load_n(&w[i], __ATOMIC_RELAXED);
		if (got != v)
			FAIL("hammer %d: word %zu reads %016" PRIx64
			     " right after storing %016" PRIx64,
			     a->id, i, got, v);
		if (seq % 128 == 0) {
			for (size_t j = 0; j < nw; j++) {
				uint64_t x =
					__atomic_load_n(&w[j], __ATOMIC_RELAXED);
				if (j % HAMMERS == (size_t)a->id) {
					if (x != a->mine[j])
						FAIL("hammer %d: own word %zu "
						     "is %016" PRIx64
						     ", last stored %016" PRIx64,
						     a->id, j, x, a->mine[j]);
				} else if (x && (x >> 56) != j % HAMMERS + 1) {
					FAIL("hammer %d: word %zu of hammer "
					     "%zu holds %016" PRIx64,
					     a->id, j, j % HAMMERS, x);
				}
			}
		}
	}
	a->stores = seq;
	return NULL;
}

static void stream_page(struct hot *h, size_t pg, int pass, uint64_t *s,
			unsigned char *buf)
{
	unsigned char *r = h->sref + pg * PG;
	switch ((pg + (size_t)pass) % 4) {
	case 0:
		fill_tagged(r, pg * PG, PG, s);
		OK(vmo_write(h->so, pg * PG, r, PG));
		break;
	case 1: {
		size_t off = (size_t)(rnd(s) % PG);
		fill_tagged(r + off, pg * PG + off, PG - off, s);
		memcpy(h->smap + pg * PG + off, r + off, PG - off);
		break;
	}
	case 2:
		OK(vmo_read(h->so, pg * PG, buf, PG));
		SAME(buf, r, PG, pg * PG, "streamer vmo_read");
		break;
	default:
		SAME(h->smap + pg * PG, r, PG, pg * PG,
		     "streamer read via mapping");
		break;
	}
	if (pg % 4 == 0)
		OK(vmo_advise(h->sp, h->map, HOT_PAGES * PG, VMO_ADV_DONTNEED));
}

/* The streamer: its passes, then (bounded) more until the hot pages were
 * evicted and refetched a few times, so the race was really run. */
static void *streamer_main(void *a_)
{
	struct hammer *a = a_;
	struct hot *h = a->h;
	uint64_t s = a->seed;
	unsigned char *buf = malloc(PG);
	pthread_barrier_wait(h->bar);
	int pass = 0;
	for (; pass < h->passes; pass++)
		for (size_t pg = 0; pg < h->snpg; pg++)
			stream_page(h, pg, pass, &s, buf);
	for (int extra = 0; extra < 50 * h->passes &&
			    ostat(h->o).pages_filled < 10 * HOT_PAGES;
	     extra++, pass++)
		for (size_t pg = 0; pg < h->snpg; pg++)
			stream_page(h, pg, pass, &s, buf);
	__atomic_store_n(&h->stop, 1, __ATOMIC_RELEASE);
	free(buf);
	return NULL;
}

static void *hot_main(void *a_)
{
	struct hammer *a = a_;
	return a->id < HAMMERS ? hammer_main(a) : streamer_main(a);
}

static void hot_round(enum kind k, uint64_t budget, uint64_t seed,
		      bool two_spaces)
{
	const size_t snpg = 128, slen = snpg * PG, hlen = HOT_PAGES * PG;
	struct env e = env_budget(0, budget,
				  k == K_ANON ? 2 * (snpg + HOT_PAGES) : 0);
	/* the hot object starts as zeros, the streamer's tagged */
	unsigned char *hot = calloc(1, hlen);
	unsigned char *sref = tagged_image(slen, seed);
	struct subject hj, sj;
	subject_new(&hj, e.pool, k, hot, hlen);
	subject_new(&sj, e.pool, k, sref, slen);
	void *hm = NULL, *sm = NULL;
	OK(vmo_map(e.sp, hj.o, 0, hlen, PROT_READ | PROT_WRITE, 0, &hm));
	OK(vmo_map(e.sp, sj.o, 0, slen, PROT_READ | PROT_WRITE, 0, &sm));
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, HAMMERS + 1);
	struct hot h = {hj.o, hm, NULL, e.sp, sj.o, sm, sref, snpg, 3 * SCALE,
			0, &bar};
	vmo_space_t *sp2 = NULL;
	if (two_spaces) {
		OK(vmo_space_create(e.pool, NULL, &sp2));
		void *a2 = NULL;
		OK(vmo_map(sp2, hj.o, 0, hlen, PROT_READ | PROT_WRITE, 0, &a2));
		h.map2 = a2;
	}
	struct hammer *hs = calloc(HAMMERS + 1, sizeof *hs);
	for (int i = 0; i <= HAMMERS; i++) {
		hs[i].h = &h;
		hs[i].id = i;
		hs[i].seed = seed * 31 + (uint64_t)i + 1;
	}
	run_threads(HAMMERS + 1, hot_main, hs, sizeof *hs);
	pthread_barrier_destroy(&bar);

	/* the expected hot pages: each word's last value */
	for (size_t i = 0; i < HOT_PAGES * WPP; i++)
		memcpy(hot + i * 8, &hs[i % HAMMERS].mine[i], 8);
	check_object(hj.o, hm, hot, hlen);
	if (sp2) {
		check_object(hj.o, (unsigned char *)h.map2, hot, hlen);
		OK(vmo_unmap(sp2, h.map2, hlen));
		vmo_space_destroy(sp2);
	}
	check_object(sj.o, sm, sref, slen);
	/* the hot pages were evicted and refetched while being written */
	vmo_stats_t hst = ostat(hj.o);
	if (hst.pages_filled <= HOT_PAGES)
		FAIL("the hot pages were never refetched (%" PRIu64
		     " fills): the race was not exercised",
		     hst.pages_filled);
	vmo_pool_stats_t ps = pstat(e.pool);
	CHECK(ps.evictions > 0);
	CHECK(ps.refaults > 0);
	CHECK_EQ(ps.writeback_errors, 0);
	OK(vmo_unmap(e.sp, hm, hlen));
	OK(vmo_unmap(e.sp, sm, slen));
	subject_finish(&hj, hot);
	subject_finish(&sj, sref);
	ps = pstat(e.pool);
	CHECK_EQ(ps.resident_pages, 0);
	CHECK_EQ(ps.swap_slots_used, 0);
	free(hs);
	free(hot);
	free(sref);
	env_free(&e);
}

TEST(faults_race_eviction_of_the_same_pages_anonymous_budget_4)
{
	hot_round(K_ANON, 4, 11, false);
}

TEST(faults_race_eviction_of_the_same_pages_anonymous_budget_5)
{
	hot_round(K_ANON, 5, 12, false);
}

TEST(faults_race_eviction_of_the_same_pages_user_pager_budget_4)
{
	hot_round(K_PAGER, 4, 13, false);
}

TEST(faults_race_eviction_of_the_same_pages_file_shared_budget_4)
{
	hot_round(K_SHARED, 4, 14, false);
}

TEST(faults_race_eviction_of_the_same_pages_two_spaces_anonymous)
{
	hot_round(K_ANON, 4, 15, true);
}

TEST(faults_race_eviction_of_the_same_pages_two_spaces_user_pager)
{
	hot_round(K_PAGER, 4, 16, true);
}

/* ==================== vmo_sync and vmo_decommit racing eviction */

/*
 * Owners work on a write-back object while one more thread keeps calling
 * vmo_sync (or vmo_decommit) on random ranges, and eviction runs under
 * both.  Decommit writes dirty pages back before dropping them, so no data
 * may be lost whatever range it hits; owners then write with vmo_write
 * only (a write through a mapping racing a decommit of its page may
 * legitimately be discarded) and read through the mapping and vmo_read.
 */
struct racer {
	struct shared *sh;
	uint64_t seed;
	int (*op)(vmo_t *, uint64_t, uint64_t);
	size_t max_pages;   /* ranges of 1..max_pages pages */
	bool whole;         /* one call in eight covers the whole object */
	int done;
};

static void *racer_main(void *a_)
{
	struct racer *a = a_;
	struct shared *sh = a->sh;
	uint64_t s = a->seed;
	pthread_barrier_wait(sh->bar);
	while (!__atomic_load_n(&sh->stop, __ATOMIC_ACQUIRE)) {
		size_t pg = (size_t)(rnd(&s) % sh->npg);
		size_t n = 1 + (size_t)(rnd(&s) % a->max_pages);
		if (pg + n > sh->npg)
			n = sh->npg - pg;
		if (a->whole && rnd(&s) % 8 == 0) {
			pg = 0;
			n = sh->npg;
		}
		OK(a->op(sh->o, pg * PG, n * PG));
		a->done++;
	}
	return NULL;
}

struct mixed {
	struct worker w;
	struct racer r;
	int role; /* 0 worker, 1 racer */
};

static void *mixed_main(void *a_)
{
	struct mixed *a = a_;
	if (a->role)
		return racer_main(&a->r);
	return worker_main(&a->w);
}

static void race_round(enum kind k, uint64_t seed, bool decommit)
{
	const size_t budget = 64, npg = 640, len = npg * PG;
	const int nw = NT - 1;
	struct env e = env_budget(0, budget, 0);
	unsigned char *ref = tagged_image(len, seed);
	struct subject sj;
	subject_new(&sj, e.pool, k, ref, len);
	void *a = NULL;
	OK(vmo_map(e.sp, sj.o, 0, len, PROT_READ | PROT_WRITE, 0, &a));
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, NT);
	struct shared sh = {sj.o, a, NULL, ref, npg, nw, 1500 * SCALE,
			    !decommit, -1, 0, &bar};
	struct mixed m[NT];
	memset(m, 0, sizeof m);
	for (int i = 0; i < nw; i++)
		m[i].w = (struct worker){&sh, i, seed * 91 + (uint64_t)i + 1};
	m[nw].role = 1;
	m[nw].r = decommit ? (struct racer){&sh, seed * 17, vmo_decommit, 16,
					    false, 0}
			   : (struct racer){&sh, seed * 13, vmo_sync, 64, true,
					    0};
	pthread_t th[NT];
	for (int i = 0; i < NT; i++)
		CHECK_EQ(pthread_create(&th[i], NULL, mixed_main, &m[i]), 0);
	for (int i = 0; i < nw; i++)
		CHECK_EQ(pthread_join(th[i], NULL), 0);
	__atomic_store_n(&sh.stop, 1, __ATOMIC_RELEASE);
	CHECK_EQ(pthread_join(th[nw], NULL), 0);
	pthread_barrier_destroy(&bar);
	CHECK(m[nw].r.done > 0);

	check_object(sj.o, a, ref, len);
	vmo_pool_stats_t ps = pstat(e.pool);
	CHECK(ps.evictions > 0);
	if (!decommit)
		CHECK(ps.writebacks > 0);
	CHECK_EQ(ps.writeback_errors, 0);
	OK(vmo_unmap(e.sp, a, len));
	subject_finish(&sj, ref);
	free(ref);
	env_free(&e);
}

TEST(sync_races_eviction_file_shared)
{
	race_round(K_SHARED, 21, false);
}

TEST(sync_races_eviction_user_pager)
{
	race_round(K_PAGER, 22, false);
}

TEST(decommit_races_eviction_file_shared)
{
	race_round(K_SHARED, 31, true);
}

TEST(decommit_races_eviction_user_pager)
{
	race_round(K_PAGER, 32, true);
}

/*
 * Anonymous object with swap: decommitted pages read zeros, so the
 * decommitter decommits only its own blocks (writing them, letting them
 * be evicted to swap, dropping them, checking they read zeros), while the
 * other owners work on theirs; nobody checks the decommitter's pages.
 */
struct anon_dc {
	struct worker w;
	int role;
};

static void *anon_dc_main(void *a_)
{
	struct anon_dc *a = a_;
	struct shared *sh = a->w.sh;
	if (!a->role)
		return worker_main(&a->w);
	uint64_t s = a->w.seed;
	int id = a->w.id;
	unsigned char *buf = malloc(BLK * PG);
	unsigned char *zero = calloc(1, BLK * PG);
	pthread_barrier_wait(sh->bar);
	for (int i = 0; i < sh->iters / 4; i++) {
		size_t blk0 = own_page(sh, id, &s) / BLK * BLK;
		unsigned char *r = sh->ref + blk0 * PG;
		switch (rnd(&s) % 4) {
		case 0:
			fill_tagged(r, blk0 * PG, BLK * PG, &s);
			OK(vmo_write(sh->o, blk0 * PG, r, BLK * PG));
			break;
		case 1: {
			uint64_t *w = (uint64_t *)(sh->map + blk0 * PG);
			fill_tagged(r, blk0 * PG, BLK * PG, &s);
			for (size_t j = 0; j < BLK * WPP; j++) {
				uint64_t v;
				memcpy(&v, r + j * 8, 8);
				__atomic_store_n(&w[j], v, __ATOMIC_RELAXED);
			}
			break;
		}
		case 2: {
			/* part of the block, or all of it */
			size_t p0 = (size_t)(rnd(&s) % BLK);
			size_t n = 1 + (size_t)(rnd(&s) % (BLK - p0));
			OK(vmo_decommit(sh->o, (blk0 + p0) * PG, n * PG));
			memset(r + p0 * PG, 0, n * PG);
			OK(vmo_read(sh->o, (blk0 + p0) * PG, buf, n * PG));
			SAME(buf, zero, n * PG, (blk0 + p0) * PG,
			     "decommitted pages");
			break;
		}
		default:
			OK(vmo_read(sh->o, blk0 * PG, buf, BLK * PG));
			SAME(buf, r, BLK * PG, blk0 * PG,
			     "decommitter's block via vmo_read");
			SAME(sh->map + blk0 * PG, r, BLK * PG, blk0 * PG,
			     "decommitter's block via mapping");
			break;
		}
	}
	free(buf);
	free(zero);
	return NULL;
}

TEST(decommit_races_eviction_anonymous_with_swap)
{
	const size_t budget = 64, npg = 640, len = npg * PG;
	struct env e = env_budget(0, budget, 2 * npg);
	unsigned char *ref = tagged_image(len, 41);
	struct subject sj;
	subject_new(&sj, e.pool, K_ANON, ref, len);
	void *a = NULL;
	OK(vmo_map(e.sp, sj.o, 0, len, PROT_READ | PROT_WRITE, 0, &a));
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, NT);
	/* thread NT-1 is the decommitter; the others skip its pages */
	struct shared sh = {sj.o, a, NULL, ref, npg, NT, 1500 * SCALE, true, NT - 1,
			    0, &bar};
	struct anon_dc m[NT];
	for (int i = 0; i < NT; i++) {
		m[i].w = (struct worker){&sh, i, 4100 + (uint64_t)i};
		m[i].role = i == NT - 1;
	}
	run_threads(NT, anon_dc_main, m, sizeof *m);
	pthread_barrier_destroy(&bar);

	check_object(sj.o, a, ref, len);
	vmo_pool_stats_t ps = pstat(e.pool);
	CHECK(ps.evictions > 0);
	CHECK(ps.swap_outs > 0);
	OK(vmo_unmap(e.sp, a, len));
	vmo_unref(sj.o);
	ps = pstat(e.pool);
	CHECK_EQ(ps.resident_pages, 0);
	CHECK_EQ(ps.swapped_pages, 0);
	CHECK_EQ(ps.swap_slots_used, 0);
	free(ref);
	env_free(&e);
}

/* ========================== objects coming and going during eviction */

struct churn {
	vmo_pool_t *pool;
	vmo_space_t *sp;
	int id;
	int rounds;
	uint64_t seed;
	/* pressure threads: one big object each */
	vmo_t *big;
	unsigned char *bigref;
	size_t bigpg;
	pthread_barrier_t *bar;
	int *stop;
};

static void *churn_main(void *a_)
{
	struct churn *a = a_;
	uint64_t s = a->seed;
	unsigned char *buf = malloc(64 * PG), *ref = malloc(64 * PG);
	pthread_barrier_wait(a->bar);
	if (a->big) {
		/* pressure: stream through a private big object */
		while (!__atomic_load_n(a->stop, __ATOMIC_ACQUIRE)) {
			size_t pg = (size_t)(rnd(&s) % (a->bigpg - 4));
			unsigned char *r = a->bigref + pg * PG;
			if (rnd(&s) % 2) {
				fill_tagged(r, pg * PG, 4 * PG, &s);
				OK(vmo_write(a->big, pg * PG, r, 4 * PG));
			} else {
				OK(vmo_read(a->big, pg * PG, buf, 4 * PG));
				SAME(buf, r, 4 * PG, pg * PG, "pressure object");
			}
		}
	} else {
		for (int i = 0; i < a->rounds; i++) {
			size_t n = 8 + (size_t)(rnd(&s) % 56);
			vmo_t *o;
			OK(vmo_create(a->pool, n * PG, 0, &o));
			fill_tagged(ref, 0, n * PG, &s);
			OK(vmo_write(o, 0, ref, n * PG));
			void *m = NULL;
			bool mapped = rnd(&s) % 2;
			if (mapped) {
				OK(vmo_map(a->sp, o, 0, n * PG,
					   PROT_READ | PROT_WRITE, 0, &m));
				/* rewrite half through the mapping */
				fill_tagged(ref, 0, n / 2 * PG, &s);
				memcpy(m, ref, n / 2 * PG);
				SAME(m, ref, n * PG, 0, "churned mapping");
			}
			OK(vmo_read(o, 0, buf, n * PG));
			SAME(buf, ref, n * PG, 0, "churned object");
			if (mapped && rnd(&s) % 2) {
				OK(vmo_unmap(a->sp, m, n * PG));
				OK(vmo_read(o, 0, buf, n * PG));
				SAME(buf, ref, n * PG, 0,
				     "churned object after unmap");
				mapped = false;
			}
			/* drop the last reference, sometimes while mapped
			 * (the mapping holds one) */
			vmo_unref(o);
			if (mapped)
				OK(vmo_unmap(a->sp, m, n * PG));
		}
	}
	free(buf);
	free(ref);
	return NULL;
}

TEST(objects_created_mapped_and_destroyed_during_eviction)
{
	const size_t budget = 64, bigpg = 320;
	struct env e = env_budget(0, budget, 2048);
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, NT);
	int stop = 0;
	struct churn c[NT];
	memset(c, 0, sizeof c);
	for (int i = 0; i < NT; i++) {
		c[i] = (struct churn){e.pool, e.sp, i, 60 * SCALE,
				      5000 + (uint64_t)i, NULL, NULL, 0, &bar,
				      &stop};
		if (i >= NT / 2) {
			c[i].bigpg = bigpg;
			c[i].bigref = tagged_image(bigpg * PG, 50 + (uint64_t)i);
			OK(vmo_create(e.pool, bigpg * PG, 0, &c[i].big));
			OK(vmo_write(c[i].big, 0, c[i].bigref, bigpg * PG));
		}
	}
	pthread_t th[NT];
	for (int i = 0; i < NT; i++)
		CHECK_EQ(pthread_create(&th[i], NULL, churn_main, &c[i]), 0);
	for (int i = 0; i < NT / 2; i++)
		CHECK_EQ(pthread_join(th[i], NULL), 0);
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	for (int i = NT / 2; i < NT; i++)
		CHECK_EQ(pthread_join(th[i], NULL), 0);
	pthread_barrier_destroy(&bar);

	vmo_pool_stats_t ps = pstat(e.pool);
	CHECK(ps.evictions > 0);
	CHECK_EQ(ps.objects, NT - NT / 2);
	unsigned char *all = malloc(bigpg * PG);
	for (int i = NT / 2; i < NT; i++) {
		OK(vmo_read(c[i].big, 0, all, bigpg * PG));
		SAME(all, c[i].bigref, bigpg * PG, 0, "pressure object");
		vmo_unref(c[i].big);
		free(c[i].bigref);
	}
	free(all);
	ps = pstat(e.pool);
	CHECK_EQ(ps.objects, 0);
	CHECK_EQ(ps.resident_pages, 0);
	CHECK_EQ(ps.swapped_pages, 0);
	CHECK_EQ(ps.swap_slots_used, 0);
	env_free(&e);
}

TEST_MAIN()
