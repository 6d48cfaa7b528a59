/*
 * test_teardown.c — destroying spaces, pools and objects in every order:
 * live mappings, handler threads, descriptors, NULL handles, last
 * references dropped by unmap or destroy.  Under the ASan variant
 * LeakSanitizer runs when each test's process exits, so these tests also
 * prove that teardown frees everything.
 */
#include "testlib.h"

#include <dirent.h>
#include <pthread.h>
#include <setjmp.h>

/* ------------------------------------------------------------- helpers */

static int count_dir(const char *path)
{
	DIR *d = opendir(path);
	CHECK(d != NULL);
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static int nthreads(void)
{
	return count_dir("/proc/self/task");
}

/*
 * The thread count once it has come down to want (at most ~2 s).
 * pthread_join returns when the kernel clears the thread's tid, which is
 * in the middle of its exit: the task stays listed, running, for a moment
 * after.  A thread that does not exit (not joined, blocked) keeps the
 * count up and fails the caller's check.
 */
static int nthreads_settled(int want)
{
	int n = nthreads();
	for (int i = 0; i < 2000 && n != want; i++) {
		usleep(1000);
		n = nthreads();
	}
	return n;
}

static int nfds(void)
{
	return count_dir("/proc/self/fd");
}

/* --- SIGSEGV probe (in this process: libvmo mappings are not inherited
 * by children, so a forked child would prove nothing). */

static __thread sigjmp_buf probe_jb;

static void probe_handler(int sig)
{
	(void)sig;
	siglongjmp(probe_jb, 1);
}

/* 0 if a read of p completes, 1 if it raises SIGSEGV. */
static int faults_on_read(const void *p)
{
	struct sigaction sa, old;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = probe_handler;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &old);
	volatile int r = 0;
	if (sigsetjmp(probe_jb, 1) == 0)
		(void)*(const volatile unsigned char *)p;
	else
		r = 1;
	sigaction(SIGSEGV, &old, NULL);
	return r;
}

/* A user pager over a malloc'ed store, counting its calls. */
struct store {
	unsigned char *data;
	size_t len;
	int writes, releases;
};

static int store_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	struct store *s = ctx;
	memcpy(buf, s->data + off, len);
	return 0;
}

static int store_write(void *ctx, uint64_t off, const void *buf, size_t len)
{
	struct store *s = ctx;
	memcpy(s->data + off, buf, len);
	s->writes++;
	return 0;
}

static void store_release(void *ctx)
{
	struct store *s = ctx;
	s->releases++;
}

/* ============================================ destroy with live mappings */

TEST(space_destroy_with_live_mappings_returns_and_objects_free_on_unref)
{
	vmo_pool_t *pool;
	vmo_space_t *sp;
	OK(vmo_pool_create(NULL, &pool));
	OK(vmo_space_create(pool, NULL, &sp));
	size_t len = 32 * PG;
	int fd = temp_file(len, 8);
	struct store st = {calloc(1, len), len, 0, 0};
	vmo_pager_ops_t ops = {store_read, store_write, store_release};
	vmo_t *an, *fi, *pg;
	OK(vmo_create(pool, len, 0, &an));
	OK(vmo_create_file(pool, fd, 0, len, VMO_FILE_SHARED, &fi));
	OK(vmo_create_pager(pool, len, &ops, &st, 0, &pg));
	void *a = NULL, *b = NULL, *c = NULL, *d = NULL;
	OK(vmo_map(sp, an, 0, len, PROT_READ | PROT_WRITE, 0, &a));
	OK(vmo_map(sp, fi, 0, len, PROT_READ | PROT_WRITE, 0, &b));
	OK(vmo_map(sp, pg, 0, len, PROT_READ | PROT_WRITE, 0, &c));
	OK(vmo_map(sp, an, 8 * PG, 8 * PG, PROT_READ, 0, &d));
	unsigned char *pa = a, *pb = b, *pc = c, *pd = d;
	for (size_t i = 0; i < 32; i++) {
		pa[i * PG] = (unsigned char)(i + 1);
		pb[i * PG + 1] = (unsigned char)(i + 2);
		pc[i * PG + 2] = (unsigned char)(i + 3);
	}
	CHECK_EQ(pd[PG], 10);
	CHECK_EQ(sstat(sp).mappings, 4);
	CHECK_EQ(pstat(pool).objects, 3);

	vmo_space_destroy(sp); /* four mappings still live */

	/* the mappings are gone ... */
	CHECK_EQ(faults_on_read(pa), 1);
	CHECK_EQ(faults_on_read(pb + 5 * PG), 1);
	CHECK_EQ(faults_on_read(pc + 31 * PG), 1);
	CHECK_EQ(faults_on_read(pd), 1);
	CHECK_EQ(ostat(an).mappings, 0);
	CHECK_EQ(ostat(fi).mappings, 0);
	CHECK_EQ(ostat(pg).mappings, 0);
	/* ... the objects and what was written through them are not */
	CHECK_EQ(pstat(pool).objects, 3);
	for (size_t i = 0; i < 32; i++) {
		unsigned char x;
		OK(vmo_read(an, i * PG, &x, 1));
		CHECK_EQ(x, i + 1);
		OK(vmo_read(fi, i * PG + 1, &x, 1));
		CHECK_EQ(x, i + 2);
		OK(vmo_read(pg, i * PG + 2, &x, 1));
		CHECK_EQ(x, i + 3);
	}
	vmo_unref(an);
	vmo_unref(fi);
	vmo_unref(pg);
	CHECK_EQ(pstat(pool).objects, 0);
	CHECK_EQ(pstat(pool).resident_pages, 0);
	CHECK_EQ(pstat(pool).writeback_errors, 0);
	/* the write-back objects wrote back at their last reference */
	for (size_t i = 0; i < 32; i++) {
		unsigned char x;
		CHECK_EQ(pread(fd, &x, 1, (off_t)(i * PG + 1)), 1);
		CHECK_EQ(x, i + 2);
		CHECK_EQ(st.data[i * PG + 2], i + 3);
	}
	CHECK_EQ(st.releases, 1);
	vmo_pool_destroy(pool);
	free(st.data);
	close(fd);
}

TEST(space_destroy_drops_the_last_reference_of_mapped_objects)
{
	vmo_pool_t *pool;
	vmo_space_t *sp;
	OK(vmo_pool_create(NULL, &pool));
	OK(vmo_space_create(pool, NULL, &sp));
	size_t len = 16 * PG;
	struct store st = {calloc(1, len), len, 0, 0};
	vmo_pager_ops_t ops = {store_read, store_write, store_release};
	vmo_t *an, *pg;
	OK(vmo_create(pool, len, 0, &an));
	OK(vmo_create_pager(pool, len, &ops, &st, 0, &pg));
	void *a = NULL, *c = NULL;
	OK(vmo_map(sp, an, 0, len, PROT_READ | PROT_WRITE, 0, &a));
	OK(vmo_map(sp, pg, 0, len, PROT_READ | PROT_WRITE, 0, &c));
	vmo_unref(an); /* only the mappings hold them now */
	vmo_unref(pg);
	((unsigned char *)a)[3] = 1;
	((unsigned char *)c)[5 * PG] = 0x77;
	CHECK_EQ(pstat(pool).objects, 2);
	vmo_space_destroy(sp);
	CHECK_EQ(pstat(pool).objects, 0);
	CHECK_EQ(st.releases, 1);
	CHECK_EQ(st.data[5 * PG], 0x77); /* written back before release */
	vmo_pool_destroy(pool);
	free(st.data);
}

TEST(space_destroy_leaves_other_spaces_mappings_of_the_object_working)
{
	vmo_pool_t *pool;
	vmo_space_t *s1, *s2;
	OK(vmo_pool_create(NULL, &pool));
	OK(vmo_space_create(pool, NULL, &s1));
	OK(vmo_space_create(pool, NULL, &s2));
	vmo_t *o;
	OK(vmo_create(pool, 16 * PG, 0, &o));
	void *a = NULL, *b = NULL;
	OK(vmo_map(s1, o, 0, 16 * PG, PROT_READ | PROT_WRITE, 0, &a));
	OK(vmo_map(s2, o, 0, 16 * PG, PROT_READ | PROT_WRITE, 0, &b));
	unsigned char *pa = a, *pb = b;
	pa[0] = 0x11;
	vmo_space_destroy(s1);
	CHECK_EQ(pb[0], 0x11);
	for (size_t i = 1; i < 16; i++) /* new faults in s2 still served */
		pb[i * PG] = (unsigned char)i;
	for (size_t i = 1; i < 16; i++) {
		unsigned char x;
		OK(vmo_read(o, i * PG, &x, 1));
		CHECK_EQ(x, i);
	}
	CHECK_EQ(ostat(o).mappings, 1);
	vmo_unref(o);
	CHECK_EQ(pstat(pool).objects, 1); /* s2's mapping holds it */
	OK(vmo_unmap(s2, b, 16 * PG));
	CHECK_EQ(pstat(pool).objects, 0);
	vmo_space_destroy(s2);
	vmo_pool_destroy(pool);
}

/* ================================================ threads and descriptors */

TEST(space_destroy_joins_the_handler_threads)
{
	vmo_pool_t *pool;
	OK(vmo_pool_create(NULL, &pool));
	int before = nthreads();
	unsigned counts[] = {1, 4, 0};
	for (size_t i = 0; i < 3; i++) {
		vmo_space_options_t so = {.size = sizeof so,
					  .handler_threads = counts[i]};
		vmo_space_t *sp;
		OK(vmo_space_create(pool, &so, &sp));
		int during = nthreads();
		CHECK(during >= before + (int)sstat(sp).handler_threads);
		vmo_t *o;
		OK(vmo_create(pool, 8 * PG, 0, &o));
		void *a = NULL;
		OK(vmo_map(sp, o, 0, 8 * PG, PROT_READ | PROT_WRITE, 0, &a));
		((char *)a)[0] = 1; /* the handlers have worked */
		vmo_space_destroy(sp);
		CHECK_EQ(nthreads_settled(before), before);
		vmo_unref(o);
	}
	vmo_pool_destroy(pool);
}

TEST(space_create_destroy_50_times_leaks_no_fds_or_threads)
{
	vmo_pool_t *pool;
	OK(vmo_pool_create(NULL, &pool));
	int threads = nthreads(); /* no space made yet: all of them live */
	/* warm-up: process-wide, once-only state (e.g. a /proc/self/pagemap
	 * descriptor kept for the life of the process) is created here */
	vmo_space_t *sp;
	OK(vmo_space_create(pool, NULL, &sp));
	vmo_space_destroy(sp);
	int fds = nfds();
	for (int i = 0; i < 50; i++) {
		OK(vmo_space_create(pool, NULL, &sp));
		vmo_t *an, *fi;
		int fd = temp_file(8 * PG, (uint64_t)i);
		OK(vmo_create(pool, 8 * PG, 0, &an));
		OK(vmo_create_file(pool, fd, 0, 8 * PG, VMO_FILE_SHARED, &fi));
		close(fd);
		void *a = NULL, *b = NULL;
		OK(vmo_map(sp, an, 0, 8 * PG, PROT_READ | PROT_WRITE, 0, &a));
		OK(vmo_map(sp, fi, 0, 8 * PG, PROT_READ | PROT_WRITE,
			   i % 2 ? VMO_MAP_POPULATE : 0, &b));
		((unsigned char *)a)[i] = 1;
		((unsigned char *)b)[PG + (size_t)i] = 2;
		if (i % 3 == 0)
			OK(vmo_unmap(sp, a, 8 * PG)); /* some unmapped, some not */
		vmo_space_destroy(sp);
		vmo_unref(an);
		vmo_unref(fi);
	}
	CHECK_EQ(nfds(), fds);
	CHECK_EQ(nthreads_settled(threads), threads);
	CHECK_EQ(pstat(pool).objects, 0);
	vmo_pool_destroy(pool);
}

TEST(failed_space_create_leaks_no_fds_or_threads)
{
	vmo_pool_t *pool;
	OK(vmo_pool_create(NULL, &pool));
	int threads = nthreads();
	vmo_space_t *sp;
	OK(vmo_space_create(pool, NULL, &sp));
	vmo_space_destroy(sp);
	int fds = nfds();
	threads = nthreads_settled(threads);
	for (int i = 0; i < 10; i++) {
		vmo_space_options_t so = {.size = sizeof so,
					  .max_cluster = 3 * PG};
		CHECK_ERR(vmo_space_create(pool, &so, &sp), -EINVAL);
	}
	CHECK_EQ(nfds(), fds);
	CHECK_EQ(nthreads(), threads); /* nothing was started */
	vmo_pool_destroy(pool);
}

TEST(objects_and_mappings_close_their_descriptors)
{
	vmo_pool_t *pool;
	vmo_space_t *sp;
	OK(vmo_pool_create(NULL, &pool));
	OK(vmo_space_create(pool, NULL, &sp));
	int fd = temp_file(4 * PG, 1);
	int fds = nfds();
	for (int i = 0; i < 20; i++) {
		vmo_t *o;
		OK(vmo_create_file(pool, fd, 0, 4 * PG, VMO_FILE_PRIVATE, &o));
		void *a = NULL;
		OK(vmo_map(sp, o, 0, 4 * PG, PROT_READ, 0, &a));
		vmo_unref(o);
		CHECK_EQ(((unsigned char *)a)[7], pattern_byte(1, 7));
		OK(vmo_unmap(sp, a, 4 * PG));
	}
	CHECK_EQ(nfds(), fds);
	close(fd);
	vmo_space_destroy(sp);
	vmo_pool_destroy(pool);
}

/* ======================================================== NULL handles */

TEST(destroying_null_handles_does_nothing)
{
	vmo_space_destroy(NULL);
	vmo_unref(NULL);
	vmo_ref(NULL);
	vmo_pool_destroy(NULL);
	CHECK_EQ(vmo_size(NULL), 0);
	/* and a live pool is not disturbed by them */
	vmo_pool_t *pool;
	OK(vmo_pool_create(NULL, &pool));
	vmo_t *o;
	OK(vmo_create(pool, PG, 0, &o));
	vmo_unref(NULL);
	vmo_space_destroy(NULL);
	vmo_pool_destroy(NULL);
	CHECK_EQ(pstat(pool).objects, 1);
	vmo_unref(o);
	CHECK_EQ(pstat(pool).objects, 0);
	vmo_pool_destroy(pool);
}

/* ========================================= pool destroyed before others */

TEST(pool_destroyed_before_its_objects_keeps_them_working)
{
	vmo_pool_t *pool;
	OK(vmo_pool_create(NULL, &pool));
	size_t len = 8 * PG;
	int fd = temp_file(len, 4);
	vmo_t *an, *fi;
	OK(vmo_create(pool, len, 0, &an));
	OK(vmo_create_file(pool, fd, 0, len, VMO_FILE_SHARED, &fi));
	vmo_pool_destroy(pool); /* objects still hold it */
	unsigned char b[16];
	memset(b, 0x42, sizeof b);
	OK(vmo_write(an, 3 * PG, b, sizeof b));
	OK(vmo_write(fi, 5 * PG, b, sizeof b));
	unsigned char got[16];
	OK(vmo_read(an, 3 * PG, got, sizeof got));
	CHECK_MEM(got, b, sizeof b);
	OK(vmo_read(fi, 0, got, sizeof got));
	for (size_t i = 0; i < sizeof got; i++)
		CHECK_EQ(got[i], pattern_byte(4, i));
	OK(vmo_commit(an, 0, len));
	OK(vmo_decommit(an, 0, PG));
	OK(vmo_sync(fi, 0, len));
	CHECK_EQ(ostat(an).resident_pages, 7);
	/* a second reference, then both dropped */
	vmo_ref(an);
	vmo_unref(an);
	CHECK_EQ(vmo_size(an), len);
	vmo_unref(an);
	vmo_unref(fi);
	unsigned char x;
	CHECK_EQ(pread(fd, &x, 1, 5 * PG), 1);
	CHECK_EQ(x, 0x42);
	close(fd);
}

TEST(pool_destroyed_before_its_space_keeps_the_space_working)
{
	vmo_pool_t *pool;
	vmo_space_t *sp;
	OK(vmo_pool_create(NULL, &pool));
	OK(vmo_space_create(pool, NULL, &sp));
	vmo_t *o;
	OK(vmo_create(pool, 16 * PG, 0, &o));
	vmo_pool_destroy(pool);
	void *a = NULL;
	OK(vmo_map(sp, o, 0, 16 * PG, PROT_READ | PROT_WRITE, 0, &a));
	unsigned char *p = a;
	for (size_t i = 0; i < 16; i++)
		p[i * PG] = (unsigned char)(i + 1);
	unsigned char x;
	OK(vmo_read(o, 9 * PG, &x, 1));
	CHECK_EQ(x, 10);
	CHECK_EQ(sstat(sp).mappings, 1);
	vmo_unref(o); /* the mapping holds it */
	CHECK_EQ(p[9 * PG], 10);
	vmo_space_destroy(sp); /* drops the object, then the pool */
}

TEST(pool_destroyed_with_a_mapped_object_then_space_destroyed_first)
{
	vmo_pool_t *pool;
	vmo_space_t *sp;
	OK(vmo_pool_create(NULL, &pool));
	OK(vmo_space_create(pool, NULL, &sp));
	vmo_t *o;
	OK(vmo_create(pool, 4 * PG, 0, &o));
	void *a = NULL;
	OK(vmo_map(sp, o, 0, 4 * PG, PROT_READ | PROT_WRITE, 0, &a));
	((char *)a)[0] = 9;
	vmo_pool_destroy(pool);
	vmo_space_destroy(sp);
	char x;
	OK(vmo_read(o, 0, &x, 1)); /* the object outlives both */
	CHECK_EQ(x, 9);
	vmo_unref(o);
}

/* ===================================== destroy while a fault is pending */

struct gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int entered, open;
};

static int gated_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	struct gate *g = ctx;
	memset(buf, 0x6B, len);
	pthread_mutex_lock(&g->mu);
	g->entered = 1;
	pthread_cond_broadcast(&g->cv);
	while (!g->open)
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
	return 0;
}

struct fault_thread {
	const unsigned char *addr;
	int segv;
	unsigned char val;
};

/* Read *addr: 1 if it raised SIGSEGV, else 0 and the byte in f->val. */
static void *fault_main(void *arg)
{
	struct fault_thread *f = arg;
	struct sigaction sa, old;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = probe_handler;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &old);
	if (sigsetjmp(probe_jb, 1) == 0) {
		f->val = *(const volatile unsigned char *)f->addr;
		f->segv = 0;
	} else {
		f->segv = 1;
	}
	sigaction(SIGSEGV, &old, NULL);
	return NULL;
}

struct destroyer {
	vmo_space_t *sp;
	pid_t tid; /* atomic */
	int done;  /* atomic */
};

static void *destroy_main(void *arg)
{
	struct destroyer *d = arg;
	__atomic_store_n(&d->tid, gettid(), __ATOMIC_RELEASE);
	vmo_space_destroy(d->sp);
	__atomic_store_n(&d->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* Wait (bounded, ~2 s) until thread tid sleeps or *done is set. */
static void wait_sleeping_or_done(pid_t tid, const int *done)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
	for (int i = 0; i < 2000 && !__atomic_load_n(done, __ATOMIC_ACQUIRE);
	     i++) {
		char buf[512];
		int fd = open(path, O_RDONLY);
		if (fd < 0)
			return;
		ssize_t n = read(fd, buf, sizeof buf - 1);
		close(fd);
		buf[n > 0 ? n : 0] = 0;
		const char *rp = strrchr(buf, ')');
		if (rp && rp[1] == ' ' && rp[2] == 'S')
			return;
		usleep(1000);
	}
}

/*
 * A thread is blocked in a fault whose page the pager is still filling
 * when another thread destroys the space.  Destroy must finish once the
 * pager returns (no deadlock), the blocked thread ends either with the
 * right byte (its fault completed first) or with SIGSEGV (the mapping went
 * away first), and the fill is kept in the object.
 */
TEST(space_destroy_while_a_fault_waits_on_the_pager)
{
	vmo_pool_t *pool;
	vmo_space_t *sp;
	OK(vmo_pool_create(NULL, &pool));
	OK(vmo_space_create(pool, NULL, &sp));
	struct gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0,
			 0};
	vmo_pager_ops_t ops = {.read = gated_read};
	vmo_t *o;
	OK(vmo_create_pager(pool, 8 * PG, &ops, &g, 0, &o));
	void *a = NULL;
	OK(vmo_map(sp, o, 0, 8 * PG, PROT_READ, 0, &a));
	struct fault_thread f = {a, -1, 0};
	struct destroyer d = {sp, 0, 0};
	pthread_t ft, dt;
	CHECK_EQ(pthread_create(&ft, NULL, fault_main, &f), 0);
	pthread_mutex_lock(&g.mu);
	while (!g.entered)
		pthread_cond_wait(&g.cv, &g.mu);
	pthread_mutex_unlock(&g.mu);
	/* the handler is inside the pager; destroy the space meanwhile */
	CHECK_EQ(pthread_create(&dt, NULL, destroy_main, &d), 0);
	while (!__atomic_load_n(&d.tid, __ATOMIC_ACQUIRE))
		usleep(100);
	wait_sleeping_or_done(d.tid, &d.done);
	pthread_mutex_lock(&g.mu);
	g.open = 1;
	pthread_cond_broadcast(&g.cv);
	pthread_mutex_unlock(&g.mu);
	CHECK_EQ(pthread_join(dt, NULL), 0);
	CHECK_EQ(pthread_join(ft, NULL), 0);
	CHECK(f.segv == 0 || f.segv == 1);
	if (!f.segv)
		CHECK_EQ(f.val, 0x6B);
	CHECK_EQ(faults_on_read(a), 1); /* gone now in any case */
	/* the fill that was under way is not lost */
	unsigned char x = 0;
	OK(vmo_read(o, 0, &x, 1));
	CHECK_EQ(x, 0x6B);
	CHECK_EQ(ostat(o).mappings, 0);
	CHECK_EQ(ostat(o).pager_reads, 1); /* and not repeated */
	vmo_unref(o);
	CHECK_EQ(pstat(pool).objects, 0);
	vmo_pool_destroy(pool);
}

/* ================ last reference dropped by unmap: callbacks, no locks */

/*
 * vmo.h: "Pager callbacks run in library or caller threads with no library
 * lock held".  When vmo_unmap drops an object's last reference, the final
 * write-back and release run inside that call; meanwhile faults on other
 * mappings of the same space must still be served.  The callbacks start a
 * thread that touches an absent page of another mapping of the space and
 * wait for it (at most 5 s: only a deadlock takes that long).
 */
struct lock_probe {
	unsigned char *other; /* an absent page of another mapping */
	int write_calls, release_calls;
	int write_served, release_served; /* 1 yes, 0 no, -1 not tried */
	pthread_t late[2];
	int nlate;
	unsigned char *store;
};

static void *touch_main(void *arg)
{
	(void)*(volatile unsigned char *)arg;
	return NULL;
}

static int served_meanwhile(struct lock_probe *lp, unsigned char *addr)
{
	pthread_t th;
	CHECK_EQ(pthread_create(&th, NULL, touch_main, addr), 0);
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 5;
	if (pthread_timedjoin_np(th, NULL, &dl) == 0)
		return 1;
	lp->late[lp->nlate++] = th; /* joined after the unmap */
	return 0;
}

static int lp_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	struct lock_probe *lp = ctx;
	memcpy(buf, lp->store + off, len);
	return 0;
}

static int lp_write(void *ctx, uint64_t off, const void *buf, size_t len)
{
	struct lock_probe *lp = ctx;
	memcpy(lp->store + off, buf, len);
	if (lp->write_calls++ == 0)
		lp->write_served = served_meanwhile(lp, lp->other);
	return 0;
}

static void lp_release(void *ctx)
{
	struct lock_probe *lp = ctx;
	lp->release_calls++;
	lp->release_served = served_meanwhile(lp, lp->other + PG);
}

TEST(last_unref_by_unmap_runs_pager_callbacks_without_the_space_lock)
{
	vmo_pool_t *pool;
	vmo_space_t *sp;
	OK(vmo_pool_create(NULL, &pool));
	OK(vmo_space_create(pool, NULL, &sp));
	struct lock_probe lp;
	memset(&lp, 0, sizeof lp);
	lp.write_served = lp.release_served = -1;
	lp.store = calloc(1, 8 * PG);
	vmo_pager_ops_t ops = {lp_read, lp_write, lp_release};
	vmo_t *po, *an;
	OK(vmo_create_pager(pool, 8 * PG, &ops, &lp, 0, &po));
	OK(vmo_create(pool, 8 * PG, 0, &an));
	void *a = NULL, *b = NULL;
	OK(vmo_map(sp, po, 0, 8 * PG, PROT_READ | PROT_WRITE, 0, &a));
	OK(vmo_map(sp, an, 0, 8 * PG, PROT_READ, 0, &b));
	OK(vmo_advise(sp, b, 8 * PG, VMO_ADV_RANDOM));
	lp.other = b;
	((unsigned char *)a)[2 * PG] = 0x5C; /* dirty: write-back at the end */
	vmo_unref(po);                        /* the mapping holds the last */
	OK(vmo_unmap(sp, a, 8 * PG));         /* write-back + release here */
	for (int i = 0; i < lp.nlate; i++)
		CHECK_EQ(pthread_join(lp.late[i], NULL), 0);
	CHECK_EQ(lp.release_calls, 1);
	CHECK(lp.write_calls >= 1);
	CHECK_EQ(lp.store[2 * PG], 0x5C);
	if (lp.write_served != 1 || lp.release_served != 1)
		FAIL("a fault on another mapping of the space was not served "
		     "while the pager's %s callback ran inside vmo_unmap "
		     "(write: %d, release: %d): a library lock is held across "
		     "the callback",
		     lp.write_served != 1 ? "write" : "release",
		     lp.write_served, lp.release_served);
	OK(vmo_unmap(sp, b, 8 * PG));
	vmo_unref(an);
	vmo_space_destroy(sp);
	vmo_pool_destroy(pool);
	free(lp.store);
}

/*
 * The caller dropped its reference; the mapping holds the last one.  When
 * vmo_unmap returns, that reference is gone, so the object has written its
 * dirty pages back and its pager's release has run ("On the last
 * vmo_unref a write-back object writes its dirty pages back, then the
 * pager's release runs").  A write just before the unmap is written back.
 * Repeated, because it races the handler that served the write's fault.
 */
struct wb_store {
	unsigned char data[4 * 4096];
	int releases; /* atomic */
};

static int wb_read(void *ctx, uint64_t off, void *buf, size_t len)
{
	struct wb_store *w = ctx;
	memcpy(buf, w->data + off, len);
	return 0;
}

static int wb_write(void *ctx, uint64_t off, const void *buf, size_t len)
{
	struct wb_store *w = ctx;
	memcpy(w->data + off, buf, len);
	return 0;
}

static void wb_release(void *ctx)
{
	struct wb_store *w = ctx;
	__atomic_fetch_add(&w->releases, 1, __ATOMIC_RELEASE);
}

TEST(last_unmap_after_unref_writes_back_before_it_returns)
{
	vmo_pool_t *pool;
	vmo_space_t *sp;
	OK(vmo_pool_create(NULL, &pool));
	OK(vmo_space_create(pool, NULL, &sp));
	static struct wb_store w;
	vmo_pager_ops_t ops = {wb_read, wb_write, wb_release};
	int rounds = 300, late = 0, unwritten = 0;
	for (int i = 0; i < rounds; i++) {
		vmo_t *o;
		OK(vmo_create_pager(pool, 4 * PG, &ops, &w, 0, &o));
		void *a = NULL;
		OK(vmo_map(sp, o, 0, 4 * PG, PROT_READ | PROT_WRITE, 0, &a));
		vmo_unref(o);
		unsigned char v = (unsigned char)(i % 255 + 1);
		((volatile unsigned char *)a)[2 * PG + 7] = v;
		OK(vmo_unmap(sp, a, 4 * PG)); /* drops the last reference */
		int rel = __atomic_load_n(&w.releases, __ATOMIC_ACQUIRE);
		late += rel != i + 1;
		unwritten += __atomic_load_n(&w.data[2 * PG + 7],
					     __ATOMIC_RELAXED) != v;
		/* let a late release happen before the next round */
		for (int k = 0; k < 5000 && __atomic_load_n(&w.releases,
							    __ATOMIC_ACQUIRE) !=
						    i + 1;
		     k++)
			usleep(1000);
		CHECK_EQ(__atomic_load_n(&w.releases, __ATOMIC_ACQUIRE), i + 1);
	}
	if (late || unwritten)
		FAIL("in %d of %d rounds the object outlived vmo_unmap of its "
		     "last mapping (release ran later, in another thread); in "
		     "%d the write just before the unmap was not yet written "
		     "back when vmo_unmap returned",
		     late, rounds, unwritten);
	CHECK_EQ(pstat(pool).objects, 0);
	vmo_space_destroy(sp);
	vmo_pool_destroy(pool);
}

/* ============================================================== fork */

TEST(destroy_calls_in_a_forked_child_do_nothing)
{
	vmo_pool_t *pool;
	vmo_space_t *sp;
	OK(vmo_pool_create(NULL, &pool));
	OK(vmo_space_create(pool, NULL, &sp));
	vmo_t *o;
	OK(vmo_create(pool, 4 * PG, 0, &o));
	void *a = NULL;
	OK(vmo_map(sp, o, 0, 4 * PG, PROT_READ | PROT_WRITE, 0, &a));
	((unsigned char *)a)[0] = 0x21;
	fflush(NULL);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		vmo_space_destroy(sp);
		vmo_unref(o);
		vmo_pool_destroy(pool);
		void *b = NULL;
		int r = vmo_map(sp, o, 0, PG, PROT_READ, 0, &b);
		_exit(r == -ECHILD ? 0 : 3);
	}
	int st = 0;
	CHECK_EQ(waitpid(pid, &st, 0), pid);
	CHECK(WIFEXITED(st));
	CHECK_EQ(WEXITSTATUS(st), 0);
	/* the parent's handles are untouched */
	unsigned char *p = a;
	CHECK_EQ(p[0], 0x21);
	p[3 * PG] = 0x22;
	unsigned char x;
	OK(vmo_read(o, 3 * PG, &x, 1));
	CHECK_EQ(x, 0x22);
	CHECK_EQ(pstat(pool).objects, 1);
	CHECK_EQ(sstat(sp).mappings, 1);
	vmo_space_destroy(sp);
	vmo_unref(o);
	CHECK_EQ(pstat(pool).objects, 0);
	vmo_pool_destroy(pool);
}

TEST_MAIN()
