/*
 * bench_clone.c — copy-on-write figures (issue 4), each against a fork()
 * or plain-read baseline measured in the same run, interleaved by round.
 *
 *   snapshot-1g          time of vmo_clone(SNAPSHOT) of a fully resident,
 *                        mapped 1 GiB anonymous object in use -- 1 % of
 *                        its pages (random) written through its mapping
 *                        since the previous clone -- vs fork() of a
 *                        process holding 1 GiB of touched memory.  Target
 *                        <= 0.1.  Also reported: the first clone of the
 *                        object (every resident page is write-protected
 *                        once), 0.1 % and 10 % written, and clones taken
 *                        while a thread keeps writing (1 % of the pages
 *                        per 10 ms).
 *   snapshot-write       cost per page of the first write to each page
 *                        after a snapshot (one 8-byte store per page, in
 *                        address order) vs the first write per page in a
 *                        parent after fork() while the child lives.
 *                        Target <= 3.  The same in random page order is
 *                        reported too (snapshot-write-random).
 *   snapshot-read        cost per page of vmo_read of a 1 GiB snapshot in
 *                        1 MiB calls while a thread writes 1 % of the
 *                        source's pages per 10 ms, vs vmo_read of the
 *                        source itself with nobody writing.
 *
 * Every page's first word carries (page, generation): the benchmark
 * checks that snapshots show the generation they were taken at.
 *
 * Environment: BENCH_ONLY=snapshot-1g,snapshot-write,snapshot-read,
 * BENCH_ROUNDS=n, BENCH_CLONE_MIB (object size, default 1024).
 */
#include "benchlib.h"

#include <pthread.h>
#include <sys/wait.h>

#include "vmo.h"

#define PG ((uint64_t)BENCH_PAGE)

static uint64_t obj_bytes;
static uint64_t npages;

/* ---------------------------------------------------------- the object */

struct src {
	vmo_pool_t *pool;
	vmo_space_t *sp;
	vmo_t *o;
	volatile uint64_t *map; /* word view of the mapping */
	uint64_t gen;
};

static inline uint64_t word_of(uint64_t pg, uint64_t gen)
{
	return (pg << 20) | gen;
}

static void src_new(struct src *s)
{
	bench_ok(vmo_pool_create(NULL, &s->pool));
	bench_ok(vmo_space_create(s->pool, NULL, &s->sp));
	bench_ok(vmo_create(s->pool, obj_bytes, 0, &s->o));
	void *a = NULL;
	bench_ok(vmo_map(s->sp, s->o, 0, obj_bytes, PROT_READ | PROT_WRITE, 0,
			 &a));
	s->map = a;
	s->gen = 1;
	for (uint64_t p = 0; p < npages; p++)
		s->map[p * (PG / 8)] = word_of(p, s->gen);
}

static void src_free(struct src *s)
{
	vmo_space_destroy(s->sp);
	vmo_unref(s->o);
	vmo_pool_destroy(s->pool);
}

/* Write n random pages of the mapping with generation gen. */
static void write_random(struct src *s, uint64_t n, uint64_t *rng,
			 uint64_t gen)
{
	for (uint64_t i = 0; i < n; i++) {
		uint64_t p = bench_rand64(rng) % npages;
		s->map[p * (PG / 8)] = word_of(p, gen);
	}
}

/* Check a sample of snapshot c's pages: each shows its own page and a
 * generation <= maxgen -- and, with `exact` (nothing written since the
 * clone), exactly the word the source's mapping holds now. */
static void check_snapshot_(vmo_t *c, const struct src *s, uint64_t maxgen,
			    bool exact)
{
	uint64_t w;
	for (uint64_t p = 0; p < npages; p += 4099) {
		bench_ok(vmo_read(c, p * PG, &w, sizeof w));
		uint64_t want = s ? s->map[p * (PG / 8)] : 0;
		if ((w >> 20) != p || (w & 0xfffff) > maxgen ||
		    (exact && w != want))
			bench_die("snapshot page %" PRIu64 " shows %#" PRIx64
				  " (generation <= %" PRIu64 "%s expected)",
				  p, w, maxgen, exact ? ", the source's" : "");
	}
}
#define check_snapshot(c, maxgen) check_snapshot_((c), NULL, (maxgen), false)

/* -------------------------------------------------------- fork baseline */

struct forked {
	volatile uint64_t *mem;
	uint64_t bytes;
};

static void forked_new(struct forked *f, uint64_t bytes)
{
	f->bytes = bytes;
	void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		bench_die("mmap");
	f->mem = m;
	for (uint64_t p = 0; p < bytes / PG; p++)
		f->mem[p * (PG / 8)] = p;
}

/* ---------------------------------------------------------- snapshot-1g */

struct writer {
	struct src *s;
	volatile int stop;
	uint64_t pages;   /* written */
	uint64_t gen;
	pthread_t th;
};

/* 1 % of the pages every 10 ms, until stopped. */
static void *writer_main(void *a)
{
	struct writer *w = a;
	uint64_t rng = 0x9e3779b97f4a7c15ull;
	uint64_t per = npages / 100;
	while (!w->stop) {
		uint64_t t0 = bench_now_ns();
		write_random(w->s, per, &rng, w->gen);
		w->pages += per;
		uint64_t dt = bench_now_ns() - t0;
		if (dt < 10 * 1000 * 1000)
			usleep((useconds_t)((10 * 1000 * 1000 - dt) / 1000));
	}
	return NULL;
}

/* vmo_clone(SNAPSHOT) of all of s, in ms; the clone is checked (outside
 * the clock) and released.  `exact`: nothing writes meanwhile. */
static double timed_clone(struct src *s, uint64_t maxgen, bool exact)
{
	vmo_t *c;
	uint64_t t = bench_now_ns();
	bench_ok(vmo_clone(s->o, 0, obj_bytes, VMO_CLONE_SNAPSHOT, &c));
	double ms = (double)(bench_now_ns() - t) / 1e6;
	check_snapshot_(c, s, maxgen, exact);
	vmo_unref(c);
	return ms;
}

static void section_snapshot_1g(void)
{
	int rounds = bench_rounds(9);
	struct src s;
	src_new(&s);
	struct forked f;
	forked_new(&f, obj_bytes);
	uint64_t rng = 77;
	double first[1], fk1[1], v1[64], v01[64], v10[64], vb[64];
	double fk[64], fk01[64], fk10[64], fkb[64];

	/* the first clone of a mapped, written object, then clones with
	 * 1 %, 0.1 % and 10 % of the pages written since the previous one,
	 * then while a thread keeps writing: each beside fork() runs of its
	 * own rounds (the writer running for the last) */
	fk1[0] = bench_fork_ms();
	first[0] = timed_clone(&s, 1, true);
	for (int r = 0; r < rounds; r++) {
		/* this process holds f; libvmo's own mappings are
		 * MADV_DONTFORK, so fork does not copy them */
		fk[r] = bench_fork_ms();
		write_random(&s, npages / 100, &rng, 2 + (uint64_t)r);
		v1[r] = timed_clone(&s, 2 + (uint64_t)r, true);
	}
	for (int r = 0; r < rounds; r++) {
		fk01[r] = bench_fork_ms();
		write_random(&s, npages / 1000, &rng, 50 + (uint64_t)r);
		v01[r] = timed_clone(&s, 50 + (uint64_t)r, true);
	}
	for (int r = 0; r < rounds; r++) {
		fk10[r] = bench_fork_ms();
		write_random(&s, npages / 10, &rng, 100 + (uint64_t)r);
		v10[r] = timed_clone(&s, 100 + (uint64_t)r, true);
	}
	struct writer w = {.s = &s, .gen = 500};
	pthread_create(&w.th, NULL, writer_main, &w);
	for (int r = 0; r < rounds; r++) {
		usleep(50 * 1000);
		fkb[r] = bench_fork_ms();
		vb[r] = timed_clone(&s, 500, false);
	}
	w.stop = 1;
	pthread_join(w.th, NULL);

	bench_runs("snapshot-1g", v1, rounds, "ms");
	bench_runs("fork-1g", fk, rounds, "ms");
	bench_runs("snapshot-1g-0.1pct", v01, rounds, "ms");
	bench_runs("fork-1g (0.1pct rounds)", fk01, rounds, "ms");
	bench_runs("snapshot-1g-10pct", v10, rounds, "ms");
	bench_runs("fork-1g (10pct rounds)", fk10, rounds, "ms");
	bench_runs("snapshot-1g-while-writing", vb, rounds, "ms");
	bench_runs("fork-1g (while writing)", fkb, rounds, "ms");
	bench_note("writer wrote %" PRIu64 " pages while snapshots were taken",
		   w.pages);
	bench_print_vs("snapshot-1g", bench_median(v1, rounds), "ms", "fork-1g",
		       bench_median(fk, rounds));
	bench_print_vs("snapshot-1g-first", first[0], "ms", "fork-1g", fk1[0]);
	bench_print_vs("snapshot-1g-0.1pct", bench_median(v01, rounds), "ms",
		       "fork-1g", bench_median(fk01, rounds));
	bench_print_vs("snapshot-1g-10pct", bench_median(v10, rounds), "ms",
		       "fork-1g", bench_median(fk10, rounds));
	bench_print_vs("snapshot-1g-while-writing", bench_median(vb, rounds),
		       "ms", "fork-1g-while-writing", bench_median(fkb, rounds));
	munmap((void *)f.mem, f.bytes);
	src_free(&s);
}

/* -------------------------------------------------------- snapshot-write */

/* One store to every page of mem (8-byte words), in the order of idx
 * (NULL: address order); ns per page. */
static double write_each(volatile uint64_t *mem, const uint32_t *idx,
			 uint64_t gen)
{
	uint64_t t = bench_now_ns();
	for (uint64_t i = 0; i < npages; i++) {
		uint64_t p = idx ? idx[i] : i;
		mem[p * (PG / 8)] = word_of(p, gen);
	}
	return (double)(bench_now_ns() - t) / (double)npages;
}

/* After fork(): the parent writes each page once while the child is
 * alive (blocked on a pipe), so every write copies. */
static double fork_write(struct forked *f, const uint32_t *idx)
{
	int pfd[2];
	if (pipe(pfd))
		bench_die("pipe");
	pid_t pid = fork();
	if (pid == 0) {
		char c;
		close(pfd[1]);
		while (read(pfd[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	if (pid < 0)
		bench_die("fork");
	close(pfd[0]);
	double ns = write_each(f->mem, idx, 7);
	close(pfd[1]);
	waitpid(pid, NULL, 0);
	return ns;
}

static void section_snapshot_write(void)
{
	int rounds = bench_rounds(3);
	struct src s;
	src_new(&s);
	struct forked f;
	forked_new(&f, obj_bytes);
	uint32_t *idx = malloc(npages * sizeof *idx);
	for (uint64_t i = 0; i < npages; i++)
		idx[i] = (uint32_t)i;
	bench_shuffle(idx, npages, 12345);
	double v[64], b[64], vr[64], br[64];
	vmo_pool_stats_t p0, p1;
	p0.size = p1.size = sizeof p0;
	for (int r = 0; r < rounds * 2; r++) {
		bool rnd = r >= rounds;
		int k = rnd ? r - rounds : r;
		(rnd ? br : b)[k] = fork_write(&f, rnd ? idx : NULL);
		vmo_t *c;
		uint64_t g = s.gen;
		bench_ok(vmo_clone(s.o, 0, obj_bytes, VMO_CLONE_SNAPSHOT, &c));
		bench_ok(vmo_pool_stats(s.pool, &p0));
		s.gen++;
		(rnd ? vr : v)[k] = write_each(s.map, rnd ? idx : NULL, s.gen);
		bench_ok(vmo_pool_stats(s.pool, &p1));
		check_snapshot(c, g);
		if (p1.cow_preserved - p0.cow_preserved != npages)
			bench_die("preserved %" PRIu64 " pages, not %" PRIu64,
				  p1.cow_preserved - p0.cow_preserved, npages);
		vmo_unref(c);
	}
	bench_runs("snapshot-write", v, rounds, "ns/page");
	bench_runs("fork-parent-write", b, rounds, "ns/page");
	bench_runs("snapshot-write-random", vr, rounds, "ns/page");
	bench_runs("fork-parent-write-random", br, rounds, "ns/page");
	bench_print_vs("snapshot-write", bench_median(v, rounds), "ns/page",
		       "fork-parent-write", bench_median(b, rounds));
	bench_print_vs("snapshot-write-random", bench_median(vr, rounds),
		       "ns/page", "fork-parent-write-random",
		       bench_median(br, rounds));
	free(idx);
	munmap((void *)f.mem, f.bytes);
	src_free(&s);
}

/* --------------------------------------------------------- snapshot-read */

/* vmo_read all of o in 1 MiB calls; ns per page.  Checks page words. */
static double read_all(vmo_t *o, uint64_t *buf, uint64_t maxgen)
{
	uint64_t chunk = BENCH_MIB;
	uint64_t t = bench_now_ns();
	for (uint64_t off = 0; off < obj_bytes; off += chunk) {
		bench_ok(vmo_read(o, off, buf, chunk));
		for (uint64_t i = 0; i < chunk / PG; i += 61) {
			uint64_t w = buf[i * (PG / 8)], p = off / PG + i;
			if ((w >> 20) != p || (w & 0xfffff) > maxgen)
				bench_die("read page %" PRIu64 ": %#" PRIx64, p, w);
		}
	}
	return (double)(bench_now_ns() - t) / (double)npages;
}

static void section_snapshot_read(void)
{
	int rounds = bench_rounds(5);
	struct src s;
	src_new(&s);
	uint64_t *buf = malloc(BENCH_MIB);
	double v[64], b[64], q[64];
	uint64_t written = 0, preserved = 0;
	for (int r = 0; r < rounds; r++) {
		b[r] = read_all(s.o, buf, UINT64_MAX >> 44);
		vmo_t *c;
		bench_ok(vmo_clone(s.o, 0, obj_bytes, VMO_CLONE_SNAPSHOT, &c));
		uint64_t g = s.gen;
		q[r] = read_all(c, buf, g); /* nobody writing */
		vmo_pool_stats_t p0 = {.size = sizeof p0}, p1 = {.size = sizeof p1};
		bench_ok(vmo_pool_stats(s.pool, &p0));
		struct writer w = {.s = &s, .gen = ++s.gen};
		pthread_create(&w.th, NULL, writer_main, &w);
		v[r] = read_all(c, buf, g);
		w.stop = 1;
		pthread_join(w.th, NULL);
		bench_ok(vmo_pool_stats(s.pool, &p1));
		written += w.pages;
		preserved += p1.cow_preserved - p0.cow_preserved;
		vmo_unref(c);
	}
	bench_runs("snapshot-read", v, rounds, "ns/page");
	bench_runs("snapshot-read-quiet", q, rounds, "ns/page");
	bench_runs("source-read", b, rounds, "ns/page");
	bench_note("while reading, the writer stored to %" PRIu64
		   " pages; %" PRIu64 " pre-images were kept",
		   written, preserved);
	bench_print_vs("snapshot-read", bench_median(v, rounds), "ns/page",
		       "source-read", bench_median(b, rounds));
	bench_print_vs("snapshot-read-quiet", bench_median(q, rounds),
		       "ns/page", "source-read", bench_median(b, rounds));
	free(buf);
	src_free(&s);
}

int main(void)
{
	obj_bytes = (uint64_t)bench_env_long("BENCH_CLONE_MIB", 1024) * BENCH_MIB;
	npages = obj_bytes / PG;
	bench_cpustat_t c0 = bench_cpustat();
	if (bench_want("snapshot-1g"))
		section_snapshot_1g();
	if (bench_want("snapshot-write"))
		section_snapshot_write();
	if (bench_want("snapshot-read"))
		section_snapshot_read();
	char noise[128];
	bench_noise(c0, bench_cpustat(), noise, sizeof noise);
	bench_note("noise over the run: %s", noise);
	return 0;
}
