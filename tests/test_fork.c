/*
 * test_fork.c — fork() as documented in vmo.h: libvmo mappings are not
 * inherited (touching them in the child raises SIGSEGV), every call on an
 * inherited handle returns -ECHILD and destroy calls do nothing, the child
 * can create and use new pools, and the parent is unaffected.
 */
#include "testlib.h"

/* Run fn(arg) in a child; return its wait status. */
static int in_child(void (*fn)(void *), void *arg)
{
	fflush(NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		alarm(20);
		fn(arg);
		_exit(0);
	}
	int st = 0;
	CHECK_EQ(waitpid(pid, &st, 0), pid);
	return st;
}

static void expect_exit0(int st)
{
	if (WIFSIGNALED(st))
		FAIL("child killed by signal %d", WTERMSIG(st));
	CHECK(WIFEXITED(st));
	if (WEXITSTATUS(st))
		FAIL("child failed (exit %d)", WEXITSTATUS(st));
}

/* The parent's setup: one pool, space, an anonymous and a pager object. */
struct world {
	vmo_pool_t *pool;
	vmo_space_t *sp;
	vmo_t *anon;
	vmo_t *file;
	int fd;
	unsigned char *map;  /* anon, 16 pages, RW */
	unsigned char *fmap; /* file, 8 pages, RW */
	unsigned char *addr; /* for touch tests */
};

static void world_init(struct world *w)
{
	memset(w, 0, sizeof *w);
	OK(vmo_pool_create(NULL, &w->pool));
	/* One handler thread, which has served a fault (below) before any
	 * fork(): no thread of the parent is then still starting up inside
	 * the ASan runtime, whose allocator locks are not fork-safe (a child
	 * would hang in its first malloc).  Release builds do not care. */
	vmo_space_options_t so;
	memset(&so, 0, sizeof so);
	so.size = sizeof so;
	so.handler_threads = 1;
	OK(vmo_space_create(w->pool, &so, &w->sp));
	OK(vmo_create(w->pool, 16 * PG, 0, &w->anon));
	void *a = NULL;
	OK(vmo_map(w->sp, w->anon, 0, 16 * PG, PROT_READ | PROT_WRITE, 0, &a));
	w->map = a;
	w->fd = temp_file(8 * PG, 91);
	OK(vmo_create_file(w->pool, w->fd, 0, 8 * PG, VMO_FILE_SHARED,
			   &w->file));
	OK(vmo_map(w->sp, w->file, 0, 8 * PG, PROT_READ | PROT_WRITE, 0, &a));
	w->fmap = a;
	/* some resident pages, some absent */
	for (int i = 0; i < 4; i++)
		w->map[i * PG] = (unsigned char)(0x10 + i);
	CHECK_EQ(w->fmap[0], pattern_byte(91, 0));
}

static void world_fini(struct world *w)
{
	/* unmap first: vmo_space_destroy with several mappings has its own
	 * test (test_pager.c, release_once_each_when_space_destroy_...) */
	OK(vmo_unmap(w->sp, w->map, 16 * PG));
	OK(vmo_unmap(w->sp, w->fmap, 8 * PG));
	vmo_space_destroy(w->sp);
	vmo_unref(w->anon);
	vmo_unref(w->file);
	vmo_pool_destroy(w->pool);
	close(w->fd);
}

/* ------------------------------------------------------- SIGSEGV */

/* The default action, not a sanitizer's handler, so that the child really
 * dies of the signal. */
static void default_segv(void)
{
	signal(SIGSEGV, SIG_DFL);
	signal(SIGBUS, SIG_DFL);
}

static void touch(void *arg)
{
	volatile unsigned char *p = arg;
	default_segv();
	unsigned char c = *p;
	(void)c;
	_exit(0); /* reached only if the page was readable */
}

static void touch_write(void *arg)
{
	volatile unsigned char *p = arg;
	default_segv();
	*p = 0xEE;
	_exit(0);
}

TEST(child_touching_resident_page_gets_sigsegv)
{
	struct world w;
	world_init(&w);
	int st = in_child(touch, w.map + 2 * PG); /* resident in the parent */
	CHECK(WIFSIGNALED(st));
	CHECK_EQ(WTERMSIG(st), SIGSEGV);
	st = in_child(touch_write, w.map + PG);
	CHECK(WIFSIGNALED(st));
	CHECK_EQ(WTERMSIG(st), SIGSEGV);
	CHECK_EQ(w.map[PG], 0x11); /* the parent's data is intact */
	world_fini(&w);
}

TEST(child_touching_absent_page_gets_sigsegv)
{
	struct world w;
	world_init(&w);
	int st = in_child(touch, w.map + 10 * PG); /* never touched */
	CHECK(WIFSIGNALED(st));
	CHECK_EQ(WTERMSIG(st), SIGSEGV);
	st = in_child(touch, w.fmap + 5 * PG); /* file-backed, absent */
	CHECK(WIFSIGNALED(st));
	CHECK_EQ(WTERMSIG(st), SIGSEGV);
	st = in_child(touch_write, w.fmap + 6 * PG);
	CHECK(WIFSIGNALED(st));
	CHECK_EQ(WTERMSIG(st), SIGSEGV);
	/* the parent can still fault those pages */
	CHECK_EQ(w.map[10 * PG], 0);
	CHECK_EQ(w.fmap[5 * PG], pattern_byte(91, 5 * PG));
	CHECK_EQ(w.fmap[6 * PG], pattern_byte(91, 6 * PG));
	world_fini(&w);
}

/* --------------------------------------------------------- -ECHILD */

static void child_echild(void *arg)
{
	struct world *w = arg;
	unsigned char b[16];
	memset(b, 0x5A, sizeof b);
	CHECK_ERR(vmo_read(w->anon, 0, b, 1), -ECHILD);
	CHECK_EQ(b[0], 0x5A);
	CHECK_ERR(vmo_read(w->file, 0, b, 16), -ECHILD);
	CHECK_ERR(vmo_write(w->anon, 0, b, 1), -ECHILD);
	CHECK_ERR(vmo_write(w->file, PG, b, 16), -ECHILD);
	CHECK_ERR(vmo_commit(w->anon, 0, PG), -ECHILD);
	CHECK_ERR(vmo_decommit(w->anon, 0, PG), -ECHILD);
	CHECK_ERR(vmo_decommit(w->file, 0, PG), -ECHILD);
	CHECK_ERR(vmo_sync(w->file, 0, 8 * PG), -ECHILD);
	vmo_stats_t os;
	memset(&os, 0, sizeof os);
	os.size = sizeof os;
	CHECK_ERR(vmo_stats(w->anon, &os), -ECHILD);
	vmo_pool_stats_t ps;
	memset(&ps, 0, sizeof ps);
	ps.size = sizeof ps;
	CHECK_ERR(vmo_pool_stats(w->pool, &ps), -ECHILD);
	vmo_space_stats_t ss;
	memset(&ss, 0, sizeof ss);
	ss.size = sizeof ss;
	CHECK_ERR(vmo_space_stats(w->sp, &ss), -ECHILD);
	void *a = NULL;
	CHECK_ERR(vmo_map(w->sp, w->anon, 0, PG, PROT_READ, 0, &a), -ECHILD);
	CHECK(a == NULL);
	CHECK_ERR(vmo_unmap(w->sp, w->map, PG), -ECHILD);
	CHECK_ERR(vmo_protect(w->sp, w->map, PG, PROT_READ), -ECHILD);
	CHECK_ERR(vmo_advise(w->sp, w->map, PG, VMO_ADV_WILLNEED), -ECHILD);
	vmo_t *o = NULL;
	CHECK_ERR(vmo_create(w->pool, PG, 0, &o), -ECHILD);
	CHECK_ERR(vmo_create_file(w->pool, w->fd, 0, PG, VMO_FILE_PRIVATE, &o),
		  -ECHILD);
	vmo_space_t *s2 = NULL;
	CHECK_ERR(vmo_space_create(w->pool, NULL, &s2), -ECHILD);
	CHECK(o == NULL);
	CHECK(s2 == NULL);
}

TEST(child_calls_on_inherited_handles_echild)
{
	struct world w;
	world_init(&w);
	expect_exit0(in_child(child_echild, &w));
	world_fini(&w);
}

static int rd_zero(void *ctx, uint64_t off, void *buf, size_t len)
{
	memset(buf, 0, len);
	return 0;
}

static void child_create_pager_echild(void *arg)
{
	struct world *w = arg;
	vmo_pager_ops_t ops = {rd_zero, NULL, NULL};
	vmo_t *o = NULL;
	CHECK_ERR(vmo_create_pager(w->pool, PG, &ops, NULL, 0, &o), -ECHILD);
	CHECK(o == NULL);
}

TEST(child_create_pager_on_inherited_pool_echild)
{
	struct world w;
	world_init(&w);
	expect_exit0(in_child(child_create_pager_echild, &w));
	world_fini(&w);
}

/* A new space of the child cannot map an inherited object, and an
 * inherited space cannot map the child's object. */
static void child_mixed_map_echild(void *arg)
{
	struct world *w = arg;
	vmo_pool_t *p;
	vmo_space_t *sp;
	vmo_t *o;
	OK(vmo_pool_create(NULL, &p));
	OK(vmo_space_create(p, NULL, &sp));
	OK(vmo_create(p, 4 * PG, 0, &o));
	void *a = NULL;
	CHECK_ERR(vmo_map(sp, w->anon, 0, PG, PROT_READ, 0, &a), -ECHILD);
	CHECK_ERR(vmo_map(w->sp, o, 0, PG, PROT_READ, 0, &a), -ECHILD);
	CHECK(a == NULL);
	vmo_space_stats_t ss;
	memset(&ss, 0, sizeof ss);
	ss.size = sizeof ss;
	OK(vmo_space_stats(sp, &ss));
	CHECK_EQ(ss.mappings, 0);
	vmo_space_destroy(sp);
	vmo_unref(o);
	vmo_pool_destroy(p);
}

TEST(child_cannot_mix_inherited_and_new_handles)
{
	struct world w;
	world_init(&w);
	expect_exit0(in_child(child_mixed_map_echild, &w));
	world_fini(&w);
}

/* ------------------------------------------------ destroy calls */

static void child_destroys(void *arg)
{
	struct world *w = arg;
	/* all of these must do nothing in the child */
	vmo_ref(w->anon);
	vmo_unref(w->anon);
	vmo_unref(w->anon);
	vmo_unref(w->file); /* would be the last ref: no write-back here */
	vmo_unref(w->file);
	vmo_space_destroy(w->sp);
	vmo_pool_destroy(w->pool);
}

TEST(child_destroy_calls_do_nothing)
{
	struct world w;
	world_init(&w);
	/* a dirty page the parent has not synced */
	OK(vmo_write(w.file, 3 * PG, "parent", 6));
	expect_exit0(in_child(child_destroys, &w));
	/* the child wrote nothing back to the file */
	unsigned char b[6];
	CHECK_EQ(pread(w.fd, b, 6, 3 * PG), 6);
	for (int i = 0; i < 6; i++)
		CHECK_EQ(b[i], pattern_byte(91, 3 * PG + (uint64_t)i));
	/* and the parent's handles all still work */
	CHECK_EQ(ostat(w.file).dirty_pages, 1);
	CHECK_EQ(ostat(w.anon).mappings, 1);
	CHECK_EQ(sstat(w.sp).mappings, 2);
	OK(vmo_sync(w.file, 0, 8 * PG));
	CHECK_EQ(pread(w.fd, b, 6, 3 * PG), 6);
	CHECK_MEM(b, "parent", 6);
	CHECK_EQ(w.map[3 * PG], 0x13);
	CHECK_EQ(w.map[12 * PG], 0);
	world_fini(&w);
}

/* ------------------------------------------ new pools in the child */

static int rd_pattern(void *ctx, uint64_t off, void *buf, size_t len)
{
	pattern_fill(buf, len, 93, off);
	return 0;
}

static void child_new_world(void *arg)
{
	vmo_pool_t *p;
	vmo_space_t *sp;
	vmo_t *o, *q;
	OK(vmo_pool_create(NULL, &p));
	OK(vmo_space_create(p, NULL, &sp));
	OK(vmo_create(p, 32 * PG, 0, &o));
	void *a = NULL;
	OK(vmo_map(sp, o, 0, 32 * PG, PROT_READ | PROT_WRITE, 0, &a));
	unsigned char *m = a;
	for (int i = 0; i < 32; i++)
		m[i * PG + 1] = (unsigned char)(i + 1);
	unsigned char b;
	for (int i = 0; i < 32; i++) {
		OK(vmo_read(o, (uint64_t)i * PG + 1, &b, 1));
		CHECK_EQ(b, i + 1);
	}
	OK(vmo_write(o, 31 * PG, "c", 1));
	CHECK_EQ(m[31 * PG], 'c');
	vmo_pager_ops_t ops = {rd_pattern, NULL, NULL};
	OK(vmo_create_pager(p, 8 * PG, &ops, NULL, 0, &q));
	OK(vmo_map(sp, q, 0, 8 * PG, PROT_READ, 0, &a));
	for (size_t i = 0; i < 8 * PG; i += 511)
		CHECK_EQ(((unsigned char *)a)[i], pattern_byte(93, i));
	vmo_space_stats_t ss;
	memset(&ss, 0, sizeof ss);
	ss.size = sizeof ss;
	OK(vmo_space_stats(sp, &ss));
	CHECK_EQ(ss.mappings, 2);
	CHECK(ss.faults_missing >= 1);
	vmo_pool_stats_t ps;
	memset(&ps, 0, sizeof ps);
	ps.size = sizeof ps;
	OK(vmo_pool_stats(p, &ps));
	CHECK_EQ(ps.objects, 2);
	OK(vmo_unmap(sp, m, 32 * PG));
	vmo_space_destroy(sp); /* with one mapping left */
	vmo_unref(o);
	vmo_unref(q);
	vmo_pool_destroy(p);
}

TEST(child_can_create_and_use_new_pool)
{
	struct world w;
	world_init(&w);
	expect_exit0(in_child(child_new_world, &w));
	world_fini(&w);
}

/* ------------------------------------------------ parent unaffected */

static void child_busy(void *arg)
{
	struct world *w = arg;
	/* try to disturb the parent: calls on inherited handles, a new
	 * world of its own, then exit with everything still open */
	unsigned char b = 0xFF;
	CHECK_ERR(vmo_write(w->anon, 5 * PG, &b, 1), -ECHILD);
	CHECK_ERR(vmo_decommit(w->anon, 0, 16 * PG), -ECHILD);
	child_new_world(NULL);
	vmo_pool_t *p;
	vmo_space_t *sp;
	vmo_t *o;
	OK(vmo_pool_create(NULL, &p));
	OK(vmo_space_create(p, NULL, &sp));
	OK(vmo_create(p, 4 * PG, 0, &o));
	void *a = NULL;
	OK(vmo_map(sp, o, 0, 4 * PG, PROT_READ | PROT_WRITE, 0, &a));
	((unsigned char *)a)[0] = 1;
	_exit(0); /* without cleaning up */
}

TEST(parent_unaffected_after_child_exits)
{
	struct world w;
	world_init(&w);
	vmo_space_stats_t before = sstat(w.sp);
	expect_exit0(in_child(child_busy, &w));
	/* old data */
	for (int i = 0; i < 4; i++)
		CHECK_EQ(w.map[i * PG], 0x10 + i);
	CHECK_EQ(w.map[5 * PG], 0);
	unsigned char b;
	OK(vmo_read(w.anon, 2 * PG, &b, 1));
	CHECK_EQ(b, 0x12);
	/* new faults are served by the parent's handler threads */
	for (int i = 4; i < 16; i++) {
		CHECK_EQ(w.map[i * PG + 9], 0);
		w.map[i * PG + 9] = (unsigned char)(0x40 + i);
	}
	for (int i = 4; i < 16; i++) {
		OK(vmo_read(w.anon, (uint64_t)i * PG + 9, &b, 1));
		CHECK_EQ(b, 0x40 + i);
	}
	for (size_t i = PG; i < 8 * PG; i += 1021)
		CHECK_EQ(w.fmap[i], pattern_byte(91, i));
	vmo_space_stats_t after = sstat(w.sp);
	CHECK(after.faults_missing > before.faults_missing);
	CHECK_EQ(after.handler_threads, before.handler_threads);
	CHECK_EQ(after.mappings, 2);
	/* and a new mapping in the old space works too */
	vmo_t *o;
	OK(vmo_create(w.pool, 4 * PG, 0, &o));
	void *a = NULL;
	OK(vmo_map(w.sp, o, 0, 4 * PG, PROT_READ | PROT_WRITE, 0, &a));
	((unsigned char *)a)[3 * PG] = 0x77;
	OK(vmo_read(o, 3 * PG, &b, 1));
	CHECK_EQ(b, 0x77);
	OK(vmo_unmap(w.sp, a, 4 * PG));
	vmo_unref(o);
	world_fini(&w);
}

TEST(parent_faults_during_child_lifetime)
{
	struct world w;
	world_init(&w);
	int pfd[2];
	CHECK_EQ(pipe(pfd), 0);
	fflush(NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		/* wait until the parent is done, then exit */
		close(pfd[1]);
		char c;
		alarm(20);
		if (read(pfd[0], &c, 1) < 0)
			_exit(2);
		_exit(0);
	}
	close(pfd[0]);
	/* the child is alive: the parent faults new pages */
	for (int i = 4; i < 16; i++) {
		CHECK_EQ(w.map[i * PG], 0);
		w.map[i * PG] = (unsigned char)i;
	}
	CHECK_EQ(w.fmap[7 * PG + 1], pattern_byte(91, 7 * PG + 1));
	close(pfd[1]);
	int st;
	CHECK_EQ(waitpid(pid, &st, 0), pid);
	expect_exit0(st);
	for (int i = 4; i < 16; i++)
		CHECK_EQ(w.map[i * PG], i);
	world_fini(&w);
}

TEST_MAIN()
