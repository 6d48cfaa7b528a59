/*
 * space.c — the region mapper: userfaultfds, a database of mappings and
 * the calls that change it (map, unmap, protect, advise).
 *
 * What it owns.  A space owns one userfaultfd per handler thread, the
 * threads that read them (fault.c), and a sorted array of non-overlapping
 * mappings.  A mapping is one linear MAP_SHARED view of an object's memfd:
 * object offset and address advance together, so a mapping costs a few
 * kernel VMAs whatever its length (vm.max_map_count is finite; one VMA per
 * page never is an option): it is registered in at most nthreads
 * contiguous parts, part i with the uffd of handler i (see
 * stripe_shift_for), so threads that divide a mapping between them each
 * meet their own handler.  Each mapping holds a reference on its object
 * and sits on the object's list of mappings, which vmo_sync walks to
 * harvest writes.
 *
 * Invariants.  Every mapping in the array is registered for MISSING|MINOR
 * faults (and WP when it tracks writes) and MADV_DONTFORK.
 * Its geometry (addr, len, off) changes only with space->lock held for
 * writing and the object's lock held, so either lock suffices to read it.
 * Splitting a mapping gives the new part a new id: a handler that looked
 * the old one up revalidates and finds it changed.
 *
 * Unmapping never leaves a window where the memfd is mapped but not
 * registered (a fault there would let the kernel allocate a zero page into
 * the object): the range is first replaced atomically by an inaccessible
 * anonymous mapping (mmap MAP_FIXED), then blocked faulters are woken (they
 * retry and get SIGSEGV, as on any unmapped address), then it is unmapped.
 * Writes logged in the page tables are harvested into the object first,
 * after the range was made read-only so that none can slip in between.
 *
 * Locks: space->lock (rwlock) guards the array; then obj->lock.
 */
#include "vmo_internal.h"
#include "sys/uapi.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_HANDLERS VMO__MAX_HANDLERS
#define DEFAULT_CLUSTER (2u << 20)
#define MAX_CLUSTER (64u << 20)

/* ------------------------------------------------------------ userfaultfd */

static int uffd_open(bool user_only, int *kernel_faults)
{
	int fd;
	*kernel_faults = 0;
	if (!user_only) {
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
		if (fd >= 0)
			return fd;
		if (errno == ENOSYS)
			return -ENOSYS;
		/* /dev/userfaultfd grants full uffds by file permission */
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
		if (dev >= 0) {
			fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC);
			close(dev);
			if (fd >= 0)
				return fd;
		}
	}
	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY);
	if (fd < 0)
		return errno == ENOSYS ? -ENOSYS : -EPERM;
	*kernel_faults = VMO_EUSERMODE;
	return fd;
}

/* The features this kernel offers (UFFDIO_API may be called once per fd,
 * so ask a throwaway one). */
static uint64_t uffd_probe(bool user_only)
{
	int kf;
	int fd = uffd_open(user_only, &kf);
	if (fd < 0)
		return 0;
	struct uffdio_api api = {.api = UFFD_API, .features = 0};
	uint64_t f = ioctl(fd, UFFDIO_API, &api) == 0 ? api.features : 0;
	close(fd);
	return f;
}

/* Open n userfaultfds with features `want`; returns the features granted
 * in *got. */
static int uffd_open_set(vmo_space_t *s, bool user_only, unsigned n,
			 uint64_t want, uint64_t *got)
{
	for (unsigned i = 0; i < n; i++) {
		int fd = uffd_open(user_only, &s->kernel_faults);
		if (fd < 0)
			return fd;
		s->uffd[s->nuffd++] = fd;
		struct uffdio_api api = {.api = UFFD_API, .features = want};
		if (ioctl(fd, UFFDIO_API, &api) != 0)
			return -errno;
		*got = api.features;
	}
	return 0;
}

/*
 * Open the space's two sets of n userfaultfds (vmo_internal.h, "Two sets").
 * The sync set asks for EVENT_REMAP: converting a mapping from the async
 * set moves a freshly registered view over it with mremap, and only with
 * that feature does the registration travel with the moved view (clone.c).
 */
static int uffd_setup(vmo_space_t *s, bool user_only, unsigned n)
{
	uint64_t avail = uffd_probe(user_only);
	const uint64_t need = UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MINOR_SHMEM;
	if ((avail & need) != need)
		return avail ? -ENOTSUP : -ENOSYS;
	uint64_t want = need;
	const uint64_t wp_shmem =
		UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_PAGEFAULT_FLAG_WP;
	const uint64_t wp = wp_shmem | UFFD_FEATURE_WP_ASYNC;
	bool wp_async = (avail & wp) == wp && vmo__sys_pagemap_fd() >= 0;
	if (wp_async)
		want |= wp;
	if (avail & UFFD_FEATURE_POISON)
		want |= UFFD_FEATURE_POISON;
	uint64_t swant = need | (avail & UFFD_FEATURE_POISON);
	bool sync_wp = (avail & (wp_shmem | UFFD_FEATURE_EVENT_REMAP)) ==
		       (wp_shmem | UFFD_FEATURE_EVENT_REMAP);
	if (sync_wp)
		swant |= wp_shmem | UFFD_FEATURE_EVENT_REMAP;

	s->nper = n;
	int r = uffd_open_set(s, user_only, n, want, &s->features);
	if (!r)
		r = uffd_open_set(s, user_only, n, swant, &s->sfeatures);
	if (r)
		return r;
	s->wp_async = wp_async;
	s->sync_wp = sync_wp;
	s->poison = (s->features & UFFD_FEATURE_POISON) != 0;
	return 0;
}

static int uffd_register(int fd, uintptr_t addr, uint64_t len, uint64_t mode)
{
	struct uffdio_register r = {.range = {addr, len}, .mode = mode};
	if (ioctl(fd, UFFDIO_REGISTER, &r) != 0)
		return -errno;
	return 0;
}

/*
 * Stripes: a mapping is cut into (about) as many contiguous parts as there
 * are handlers, each part served by its own handler, and no part is
 * smaller than 16 MiB.  Why contiguous parts and not fine stripes: what
 * makes two handlers faster than one is that a faulting thread keeps
 * meeting the same handler, which the scheduler then keeps on its CPU
 * (a same-CPU wake-up costs ~10 us, a cross-CPU one ~15 us here).  Threads
 * that split a mapping into contiguous parts -- the usual way to divide
 * work -- get that; fine stripes scattered every thread over every
 * handler and measured no faster than one handler.  Each part is a VMA.
 */
static unsigned stripe_shift_for(const vmo_space_t *s, uint64_t len)
{
	if (s->nper == 1)
		return 47;
	/* the smallest power of two >= 16 MiB that makes <= nper parts */
	unsigned shift = 24;
	while (shift < 47 && ((len + (1ull << shift) - 1) >> shift) > s->nper)
		shift++;
	return shift;
}

/* Register [a, a+len) stripe by stripe with the uffd of each stripe in
 * uffd set `set`. */
static int register_stripes(vmo_space_t *s, int set, uintptr_t a,
			    uint64_t len, unsigned shift, uint64_t mode)
{
	uintptr_t p = a, end = a + len;
	while (p < end) {
		uintptr_t se;
		int fd = vmo__uffd_of(s, set, a, shift, p, &se);
		se = MIN(se, end);
		int r = uffd_register(fd, p, se - p, mode);
		if (r)
			return r;
		p = se;
	}
	return 0;
}

/*
 * All live spaces of the process, so that VMO_MAP_FIXED can refuse to land
 * on another space's mapping (that would leave the other space's database
 * describing a view it no longer has).  Lock order: spaces_lock before any
 * space->lock; only VMO_MAP_FIXED holds two space locks, and only under
 * spaces_lock.
 */
static pthread_mutex_t spaces_lock = PTHREAD_MUTEX_INITIALIZER;
static vmo_space_t *spaces;

static bool overlaps_locked(vmo_space_t *s, uintptr_t a, uint64_t len);

/* In a fork child: the parent's spaces are unusable there, and the lock
 * may have been held by a thread that does not exist in the child. */
void vmo__space_atfork_child(void)
{
	pthread_mutex_init(&spaces_lock, NULL);
	spaces = NULL;
}

/* Does [a, a+len) overlap a mapping of a space other than self?
 * spaces_lock held. */
static bool overlaps_other_space(vmo_space_t *self, uintptr_t a, uint64_t len)
{
	for (vmo_space_t *o = spaces; o; o = o->next_space) {
		if (o == self)
			continue;
		pthread_rwlock_rdlock(&o->lock);
		bool hit = overlaps_locked(o, a, len);
		pthread_rwlock_unlock(&o->lock);
		if (hit)
			return true;
	}
	return false;
}

/* Wake threads blocked on faults in [a, a+len), whichever queue. */
static void uffd_wake(vmo_space_t *s, uintptr_t a, uint64_t len)
{
	struct uffdio_range r = {.start = a, .len = len};
	for (unsigned i = 0; i < s->nuffd; i++)
		ioctl(s->uffd[i], UFFDIO_WAKE, &r);
}

static int unmap_locked_range(vmo_space_t *s, uintptr_t a, size_t len,
			      bool keep_reservation);

/* Populate with this thread's own counters, merged into s->extra after. */
static int populate_merge(vmo_space_t *s, uintptr_t a, uint64_t len)
{
	struct vmo__hstats st;
	memset(&st, 0, sizeof st);
	void *buf = malloc(VMO__FILL_SUB * PS);
	if (!buf)
		return -ENOMEM;
	int r = vmo__populate(s, a, len, &st, buf);
	free(buf);
	pthread_mutex_lock(&s->extra_lock);
	uint64_t *d = (uint64_t *)&s->extra;
	const uint64_t *x = (const uint64_t *)&st;
	for (size_t i = 0; i < sizeof st / sizeof *x; i++)
		d[i] += x[i];
	pthread_mutex_unlock(&s->extra_lock);
	return r;
}

/* --------------------------------------------------------- create/destroy */

int vmo_space_create(vmo_pool_t *pool, const vmo_space_options_t *opts,
		     vmo_space_t **out)
{
	if (!pool || !out)
		return -EINVAL;
	if (vmo__stale(pool->gen))
		return -ECHILD;
	vmo_space_options_t o = {.size = sizeof o};
	if (opts) {
		if (opts->size < offsetof(vmo_space_options_t, flags) +
					 sizeof opts->flags)
			return -EINVAL;
		memcpy(&o, opts, MIN(opts->size, sizeof o));
		for (size_t i = sizeof o; i < opts->size; i++)
			if (((const unsigned char *)opts)[i])
				return -EINVAL;
	}
	if (o.flags & ~VMO_SPACE_USER_MODE_ONLY)
		return -EINVAL;
	if (o.handler_threads > MAX_HANDLERS)
		return -EINVAL;
	if (o.max_cluster == 0)
		o.max_cluster = DEFAULT_CLUSTER;
	if (o.max_cluster < PS || o.max_cluster > MAX_CLUSTER ||
	    (o.max_cluster & (o.max_cluster - 1)))
		return -EINVAL;
	unsigned nper = o.handler_threads;
	if (!nper) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		nper = n < 1 ? 1 : (unsigned)MIN(n, (long)MAX_HANDLERS);
	}
	unsigned nthreads = 2 * nper; /* one per queue of both sets */

	vmo_space_t *s = calloc(1, sizeof *s);
	if (!s)
		return -ENOMEM;
	s->pool = pool;
	s->gen = pool->gen;
	s->max_cluster_pages = o.max_cluster / PS;
	/* Writers first: faults hold the lock only briefly and never
	 * recursively, and unmap must not starve under a fault storm. */
	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra,
				      PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&s->lock, &ra);
	pthread_rwlockattr_destroy(&ra);
	pthread_mutex_init(&s->conv_lock, NULL);
	pthread_mutex_init(&s->extra_lock, NULL);
	pthread_mutex_init(&s->drain_lock, NULL);
	pthread_cond_init(&s->drain_cv, NULL);
	pthread_mutex_init(&s->ra_lock, NULL);
	pthread_cond_init(&s->ra_cv, NULL);
	int r = uffd_setup(s, o.flags & VMO_SPACE_USER_MODE_ONLY, nper);
	if (r)
		goto fail;
	s->doorbell = mmap(NULL, nthreads * PS, PROT_READ,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s->doorbell == MAP_FAILED) {
		s->doorbell = NULL;
		r = -ENOMEM;
		goto fail;
	}
	madvise(s->doorbell, nthreads * PS, MADV_DONTFORK);
	s->handlers = calloc(nthreads, sizeof *s->handlers);
	if (!s->handlers) {
		r = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < nthreads && !r; i++) {
		s->handlers[i].uffd = s->uffd[i];
		s->handlers[i].set = i < nper ? VMO__SET_ASYNC : VMO__SET_SYNC;
		s->handlers[i].bell = (char *)s->doorbell + i * PS;
		r = uffd_register(s->uffd[i], (uintptr_t)s->handlers[i].bell,
				  PS, UFFDIO_REGISTER_MODE_MISSING);
	}
	if (r)
		goto fail;
	s->nthreads = nthreads;
	r = vmo__handlers_start(s);
	if (r)
		goto fail;
	vmo__readahead_start(s);
	vmo__pool_get(pool);
	pthread_mutex_lock(&spaces_lock);
	s->next_space = spaces;
	if (spaces)
		spaces->prev_space = s;
	spaces = s;
	pthread_mutex_unlock(&spaces_lock);
	*out = s;
	return 0;
fail:
	if (s->handlers) {
		for (unsigned i = 0; i < nthreads; i++)
			free(s->handlers[i].buf);
		free(s->handlers);
	}
	if (s->doorbell)
		munmap(s->doorbell, nthreads * PS);
	for (unsigned i = 0; i < s->nuffd; i++)
		close(s->uffd[i]);
	pthread_rwlock_destroy(&s->lock);
	pthread_mutex_destroy(&s->conv_lock);
	pthread_mutex_destroy(&s->extra_lock);
	pthread_mutex_destroy(&s->drain_lock);
	pthread_cond_destroy(&s->drain_cv);
	pthread_mutex_destroy(&s->ra_lock);
	pthread_cond_destroy(&s->ra_cv);
	free(s);
	return r;
}

/* --------------------------------------------------------- mapping array */

/* Index of the first mapping whose end is above addr.  (s) held. */
static size_t first_above(vmo_space_t *s, uintptr_t addr)
{
	size_t lo = 0, hi = s->nmaps;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		struct vmo__mapping *m = s->maps[mid];
		if (m->addr + m->len <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool overlaps_locked(vmo_space_t *s, uintptr_t a, uint64_t len)
{
	size_t i = first_above(s, a);
	return i < s->nmaps && s->maps[i]->addr < a + len;
}

struct vmo__mapping *vmo__space_lookup(vmo_space_t *s, uintptr_t addr)
{
	size_t i = first_above(s, addr);
	if (i < s->nmaps && s->maps[i]->addr <= addr)
		return s->maps[i];
	return NULL;
}

static int array_insert(vmo_space_t *s, size_t i, struct vmo__mapping *m)
{
	if (s->nmaps == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 16;
		void *p = realloc(s->maps, nc * sizeof *s->maps);
		if (!p)
			return -ENOMEM;
		s->maps = p;
		s->cap = nc;
	}
	memmove(&s->maps[i + 1], &s->maps[i], (s->nmaps - i) * sizeof *s->maps);
	s->maps[i] = m;
	s->nmaps++;
	return 0;
}

static void array_remove(vmo_space_t *s, size_t i)
{
	memmove(&s->maps[i], &s->maps[i + 1],
		(s->nmaps - i - 1) * sizeof *s->maps);
	s->nmaps--;
}

/* Is [a, a+len) entirely covered by mappings?  (s) held. */
static bool covered(vmo_space_t *s, uintptr_t a, uint64_t len)
{
	uintptr_t end = a + len;
	size_t i = first_above(s, a);
	while (a < end) {
		if (i >= s->nmaps || s->maps[i]->addr > a)
			return false;
		a = s->maps[i]->addr + s->maps[i]->len;
		i++;
	}
	return true;
}

/*
 * Split the mapping that contains x strictly inside into [addr, x) and
 * [x, end).  (s) held for writing.  The tail is a new mapping with a new
 * id, its own object reference and a place on the object's list.
 */
static int split_at(vmo_space_t *s, uintptr_t x)
{
	size_t i = first_above(s, x);
	if (i >= s->nmaps)
		return 0;
	struct vmo__mapping *m = s->maps[i];
	if (m->addr >= x || m->addr + m->len <= x)
		return 0;
	struct vmo__mapping *t = malloc(sizeof *t);
	if (!t)
		return -ENOMEM;
	if (s->nmaps == s->cap) {
		int r = array_insert(s, s->nmaps, t); /* grow first */
		if (r) {
			free(t);
			return r;
		}
		s->nmaps--;
	}
	vmo_t *o = m->obj;
	pthread_mutex_lock(&o->lock);
	/* field by field: m->busy and the predictor change under our feet
	 * (pins belong to m; handlers revalidate by id and find t new) */
	memset(t, 0, sizeof *t);
	t->space = m->space;
	t->obj = m->obj;
	t->prot = m->prot;
	t->set = m->set;
	t->track_wp = m->track_wp;
	t->sync_wp = m->sync_wp;
	t->locked = m->locked;
	t->reg_base = m->reg_base;
	t->stripe_shift = m->stripe_shift;
	t->advice = __atomic_load_n(&m->advice, __ATOMIC_RELAXED);
	t->id = ++s->next_id;
	t->addr = x;
	t->off = m->off + (x - m->addr);
	t->len = m->addr + m->len - x;
	m->len = x - m->addr;
	/* link t after m on the object's list */
	t->obj_prev = m;
	t->obj_next = m->obj_next;
	if (m->obj_next)
		m->obj_next->obj_prev = t;
	m->obj_next = t;
	o->nmaps++;
	if (t->locked)
		o->nlocked++;
	pthread_mutex_unlock(&o->lock);
	vmo_ref(o);
	array_insert(s, i + 1, t); /* cannot fail: capacity reserved */
	return 0;
}

/* ------------------------------------------------------------------ map */

/*
 * Which uffd set serves a new mapping of o, and how it is registered.
 * Objects that track dirty pages use the async set (WP_ASYNC logs their
 * writes at the cost of a trap) until they have copy-on-write relations;
 * everything else uses the sync set, registered for write-protect when it
 * can be written: pages are installed writable unless something needs to
 * see the first write (vmo__obj_wp_needed), so an object that is never
 * cloned pays nothing for it, and its first clone only has to protect the
 * entries already there (clone.c).
 */
int vmo__map_set(const vmo_space_t *s, const vmo_t *o)
{
	if (o->track && s->wp_async && !__atomic_load_n(&o->fam, __ATOMIC_ACQUIRE))
		return VMO__SET_ASYNC;
	return VMO__SET_SYNC;
}

uint64_t vmo__map_mode(const vmo_space_t *s, const vmo_t *o, int set)
{
	uint64_t mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR;
	if (set == VMO__SET_ASYNC ? o->track : (s->sync_wp && o->writable))
		mode |= UFFDIO_REGISTER_MODE_WP;
	return mode;
}

static bool stale_pair(vmo_space_t *s, vmo_t *o)
{
	return vmo__stale(s->gen) || (o && vmo__obj_stale(o));
}

int vmo_map(vmo_space_t *s, vmo_t *o, uint64_t offset, size_t len, int prot,
	    unsigned flags, void **addr)
{
	if (!s || !o || !addr)
		return -EINVAL;
	if (stale_pair(s, o))
		return -ECHILD;
	if (flags & ~(VMO_MAP_FIXED | VMO_MAP_POPULATE | VMO_MAP_LOCKED |
		      VMO_MAP_FORCE_WRITE))
		return -EINVAL;
	if (prot & ~(PROT_READ | PROT_WRITE))
		return -EINVAL;
	if ((flags & VMO_MAP_FORCE_WRITE) && !(prot & PROT_WRITE))
		return -EINVAL;
	if (offset % PS || len % PS || len == 0)
		return -EINVAL;
	if (offset > o->size || len > o->size - offset)
		return -ERANGE;
	if ((prot & PROT_WRITE) && !o->writable)
		return -EACCES;
	uintptr_t want = 0;
	if (flags & VMO_MAP_FIXED) {
		want = (uintptr_t)*addr;
		if (!want || want % PS || want + len < want)
			return -EINVAL;
	}
	struct vmo__mapping *m = calloc(1, sizeof *m);
	if (!m)
		return -ENOMEM;

	if (want)
		pthread_mutex_lock(&spaces_lock);
	void *a = NULL;
	bool convert = false;
	uint64_t mid = 0;
	pthread_rwlock_wrlock(&s->lock);
	int r = 0;
	if (want && (overlaps_locked(s, want, len) ||
		     overlaps_other_space(s, want, len))) {
		r = -EEXIST;
		goto out;
	}
	/* reserve room in the array before touching the address space */
	if (s->nmaps == s->cap) {
		r = array_insert(s, s->nmaps, m);
		if (r)
			goto out;
		s->nmaps--;
	}
	/* Map inaccessible first and open it up only once registered: a
	 * touch of an unregistered view would make the kernel allocate a
	 * zero page into the object. */
	a = mmap((void *)want, len, PROT_NONE,
		 MAP_SHARED | MAP_NORESERVE | (want ? MAP_FIXED : 0),
		 o->memfd, (off_t)offset);
	if (a == MAP_FAILED) {
		r = errno == ENOMEM ? -ENOMEM : -errno;
		goto out;
	}
	/* Not inherited by fork(): see the fork section of vmo.h. */
	madvise(a, len, MADV_DONTFORK);
	int set = vmo__map_set(s, o);
	uint64_t mode = vmo__map_mode(s, o, set);
	unsigned shift = stripe_shift_for(s, len);
	r = register_stripes(s, set, (uintptr_t)a, len, shift, mode);
	if (!r && prot != PROT_NONE && mprotect(a, len, prot) != 0)
		r = -errno;
	if (r) {
		if (want) /* the caller's range stays reserved */
			mmap(a, len, PROT_NONE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED |
				     MAP_NORESERVE,
			     -1, 0);
		else
			munmap(a, len);
		goto out;
	}
	m->space = s;
	m->obj = o;
	m->id = ++s->next_id;
	m->addr = (uintptr_t)a;
	m->len = len;
	m->off = offset;
	m->prot = prot;
	m->set = set;
	m->track_wp = set == VMO__SET_ASYNC && (mode & UFFDIO_REGISTER_MODE_WP);
	m->sync_wp = set == VMO__SET_SYNC && (mode & UFFDIO_REGISTER_MODE_WP);
	m->locked = (flags & VMO_MAP_LOCKED) != 0;
	m->reg_base = (uintptr_t)a;
	m->stripe_shift = shift;
	m->advice = VMO_ADV_NORMAL;
	vmo_ref(o);
	vmo__obj_add_mapping(o, m);
	array_insert(s, first_above(s, (uintptr_t)a), m);
	/* o joined a copy-on-write family since we chose the async set:
	 * move the mapping before anyone can use it (clone.c waits for
	 * that before anything depends on o) */
	convert = set == VMO__SET_ASYNC &&
		  __atomic_load_n(&o->fam, __ATOMIC_ACQUIRE);
	mid = m->id;
out:
	pthread_rwlock_unlock(&s->lock);
	if (want)
		pthread_mutex_unlock(&spaces_lock);
	if (r) {
		free(m);
		return r;
	}
	if (convert && (r = vmo__space_convert(s, (uintptr_t)a, mid)) != 0) {
		unmap_locked_range(s, (uintptr_t)a, len,
				   (flags & VMO_MAP_FIXED) != 0);
		return r;
	}
	bool force = (flags & VMO_MAP_FORCE_WRITE) != 0;
	if (force)
		r = vmo__cow_prepare_write(o, offset / PS, (offset + len) / PS);
	if (!r && (flags & (VMO_MAP_POPULATE | VMO_MAP_FORCE_WRITE)))
		r = populate_merge(s, (uintptr_t)a, len);
	if (r) {
		unmap_locked_range(s, (uintptr_t)a, len,
				   (flags & VMO_MAP_FIXED) != 0);
		return r == -ENOENT ? -EIO : r;
	}
	*addr = a;
	return 0;
}

/* ---------------------------------------------------------- conversion */

/*
 * Move an async-set mapping to the sync set, so that its writes can be
 * seen before they happen (its object joined a copy-on-write family,
 * clone.c).  A view of the same memfd range is made elsewhere, registered
 * with the sync set (as one part, so that one mremap moves it), and moved
 * over the old one with mremap: the registration travels with it
 * (UFFD_FEATURE_EVENT_REMAP), so there is no moment when the range is
 * mapped and not registered -- a fault then would let the kernel put a
 * zero page into the object.  The old view's page-table entries go with
 * it; the new view has the resident pages installed (write-protected)
 * before the move (populate_view), so the mapping keeps running without
 * faulting them in again.  Writes logged only in the old entries are lost
 * with them, so every resident page of the range is counted dirty, before
 * and after the move.  The space lock is not held across the mremap (it waits for a
 * handler to read the event); conv_lock keeps the mapping in place.
 */
/*
 * Map the resident pages of o's bytes [off, off+len) into the fresh view v
 * of a conversion (registered whole in the sync set, mode `mode`),
 * write-protected when the mode allows: v replaces the old view with
 * mremap, and the old view's page-table entries go with it, so without
 * this every page would cost the mapping's users a fault after their
 * object's first clone.  Best effort (a page not installed just faults).
 * One page-table leaf at a time under obj->lock, so that no evictor takes
 * a page between the look and the install (as in resolve_run); a page
 * punched later is zapped from v by the kernel like from any view.
 */
static void populate_view(vmo_space_t *s, vmo_t *o, uintptr_t v,
			  uint64_t off, uint64_t len, uint64_t mode)
{
	int fd = vmo__uffd_of(s, VMO__SET_SYNC, v, 47, v, NULL);
	uint64_t first = off / PS, pg = first, end = (off + len) / PS;
	__u64 cmode = UFFDIO_CONTINUE_MODE_DONTWAKE |
		      ((mode & UFFDIO_REGISTER_MODE_WP) ? UFFDIO_CONTINUE_MODE_WP
							: 0);
	while (pg < end) {
		uint64_t lend = MIN(end, (pg | (PT_LEAF_PAGES - 1)) + 1);
		pthread_mutex_lock(&o->lock);
		uint64_t p = vmo__pt_next_used(&o->pt, pg, lend);
		while (p < lend) {
			if (!vmo__pg_mappable(vmo__pt_get(&o->pt, p))) {
				p = vmo__pt_next_used(&o->pt, p + 1, lend);
				continue;
			}
			uint64_t q = p + 1;
			while (q < lend &&
			       vmo__pg_mappable(vmo__pt_get(&o->pt, q)))
				q++;
			struct uffdio_continue c = {
				.range = {v + (p - first) * PS, (q - p) * PS},
				.mode = cmode,
			};
			(void)ioctl(fd, UFFDIO_CONTINUE, &c);
			p = vmo__pt_next_used(&o->pt, q, lend);
		}
		pthread_mutex_unlock(&o->lock);
		pg = lend;
	}
}

int vmo__space_convert(vmo_space_t *s, uintptr_t addr, uint64_t id)
{
	pthread_mutex_lock(&s->conv_lock);
	pthread_rwlock_rdlock(&s->lock);
	struct vmo__mapping *m = vmo__space_lookup(s, addr);
	bool todo = m && m->id == id && m->set == VMO__SET_ASYNC;
	uintptr_t a = todo ? m->addr : 0;
	uint64_t len = todo ? m->len : 0, off = todo ? m->off : 0;
	int prot = todo ? m->prot : 0;
	vmo_t *o = todo ? m->obj : NULL;
	pthread_rwlock_unlock(&s->lock);
	if (!todo) {
		pthread_mutex_unlock(&s->conv_lock);
		return 0;
	}
	int r = 0;
	uint64_t mode = vmo__map_mode(s, o, VMO__SET_SYNC);
	void *v = mmap(NULL, len, PROT_NONE, MAP_SHARED | MAP_NORESERVE,
		       o->memfd, (off_t)off);
	if (v == MAP_FAILED) {
		pthread_mutex_unlock(&s->conv_lock);
		return -ENOMEM;
	}
	madvise(v, len, MADV_DONTFORK);
	r = register_stripes(s, VMO__SET_SYNC, (uintptr_t)v, len, 47, mode);
	if (!r && prot != PROT_NONE && mprotect(v, len, prot) != 0)
		r = -errno;
	if (!r && prot != PROT_NONE)
		populate_view(s, o, (uintptr_t)v, off, len, mode);
	uint64_t pg = off / PS, end = (off + len) / PS;
	if (!r && o->track)
		vmo__obj_mark_dirty(o, pg, end);
	if (!r && mremap(v, len, len, MREMAP_MAYMOVE | MREMAP_FIXED,
			 (void *)a) == MAP_FAILED)
		r = -ENOMEM;
	if (r) {
		munmap(v, len);
		pthread_mutex_unlock(&s->conv_lock);
		return -ENOMEM;
	}
	pthread_rwlock_wrlock(&s->lock);
	pthread_mutex_lock(&o->lock);
	m->set = VMO__SET_SYNC;
	m->track_wp = false;
	m->sync_wp = (mode & UFFDIO_REGISTER_MODE_WP) != 0;
	m->reg_base = a;
	m->stripe_shift = 47;
	m->id = ++s->next_id; /* handlers that looked it up look again */
	pthread_mutex_unlock(&o->lock);
	pthread_rwlock_unlock(&s->lock);
	/* threads that faulted on the old view wait on its queues */
	uffd_wake(s, a, len);
	if (o->track)
		vmo__obj_mark_dirty(o, pg, end);
	pthread_mutex_unlock(&s->conv_lock);
	return 0;
}

/* ---------------------------------------------------------------- unmap */

/*
 * Remove the mappings inside [a, a+len) (whole mappings: split first) and
 * unmap the range.  (s) held for writing.  The removed structs are handed
 * to *gone (capacity: s->nmaps on entry): the caller releases them with
 * release_removed() after dropping space->lock, because handlers may still
 * be using them (they need the lock to notice the removal), and because a
 * last object reference writes back through the pager, which must run
 * with no library lock held.
 */
static void remove_range(vmo_space_t *s, uintptr_t a, uint64_t len,
			 bool keep_reservation, struct vmo__mapping **gone,
			 size_t *ngone)
{
	uintptr_t end = a + len;
	/* Stop writers first so the harvest below is complete. */
	for (size_t i = first_above(s, a);
	     i < s->nmaps && s->maps[i]->addr < end; i++) {
		struct vmo__mapping *m = s->maps[i];
		if (m->track_wp && (m->prot & PROT_WRITE))
			mprotect((void *)m->addr, m->len, PROT_READ);
	}
	size_t i = first_above(s, a);
	while (i < s->nmaps && s->maps[i]->addr < end) {
		struct vmo__mapping *m = s->maps[i];
		vmo__obj_del_mapping(m->obj, m);
		array_remove(s, i);
		__atomic_store_n(&m->dead, 1, __ATOMIC_SEQ_CST);
		gone[(*ngone)++] = m;
	}
	/* Atomically replace the views so the memfd is never mapped
	 * unregistered, wake blocked faulters into SIGSEGV, unmap. */
	void *p = mmap((void *)a, len, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE,
		       -1, 0);
	uffd_wake(s, a, len);
	if (p == MAP_FAILED || !keep_reservation)
		munmap((void *)a, len);
}

/* Wait until no handler uses the removed mappings, free them and drop
 * their object references.  No lock held. */
static void release_removed(vmo_space_t *s, struct vmo__mapping **gone,
			    size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct vmo__mapping *m = gone[i];
		/* target_put signals when it drops the last pin of a dead
		 * mapping, except when the removal raced its read of `dead`:
		 * re-check every millisecond for that case */
		pthread_mutex_lock(&s->drain_lock);
		while (__atomic_load_n(&m->busy, __ATOMIC_SEQ_CST)) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&s->drain_cv, &s->drain_lock,
					       &ts);
		}
		pthread_mutex_unlock(&s->drain_lock);
		vmo_t *o = m->obj;
		free(m);
		vmo_unref(o);
	}
}

int vmo_unmap(vmo_space_t *s, void *addr, size_t len)
{
	if (!s)
		return -EINVAL;
	if (vmo__stale(s->gen))
		return -ECHILD;
	uintptr_t a = (uintptr_t)addr;
	if (a % PS || len % PS || len == 0 || a + len < a)
		return -EINVAL;
	return unmap_locked_range(s, a, len, false);
}

/* vmo_unmap's work; keep_reservation leaves an inaccessible anonymous
 * mapping in place of the range (a failed VMO_MAP_FIXED must not give
 * back the caller's address range). */
static int unmap_locked_range(vmo_space_t *s, uintptr_t a, size_t len,
			      bool keep_reservation)
{
	pthread_mutex_lock(&s->conv_lock);
	pthread_rwlock_wrlock(&s->lock);
	int r = 0;
	struct vmo__mapping **gone = NULL;
	size_t ngone = 0;
	if (!covered(s, a, len))
		r = -ENOENT;
	if (!r)
		r = split_at(s, a);
	if (!r)
		r = split_at(s, a + len);
	if (!r && !(gone = malloc(s->nmaps * sizeof *gone)))
		r = -ENOMEM;
	if (!r)
		remove_range(s, a, len, keep_reservation, gone, &ngone);
	pthread_rwlock_unlock(&s->lock);
	pthread_mutex_unlock(&s->conv_lock);
	release_removed(s, gone, ngone);
	free(gone);
	return r;
}

/* -------------------------------------------------------------- protect */

int vmo_protect(vmo_space_t *s, void *addr, size_t len, int prot)
{
	if (!s)
		return -EINVAL;
	if (vmo__stale(s->gen))
		return -ECHILD;
	uintptr_t a = (uintptr_t)addr;
	if (a % PS || len % PS || len == 0 || a + len < a)
		return -EINVAL;
	if (prot & ~(PROT_READ | PROT_WRITE))
		return -EINVAL;
	pthread_mutex_lock(&s->conv_lock);
	pthread_rwlock_wrlock(&s->lock);
	int r = 0;
	uintptr_t end = a + len;
	if (!covered(s, a, len)) {
		r = -ENOENT;
		goto out;
	}
	if (prot & PROT_WRITE)
		for (size_t i = first_above(s, a);
		     i < s->nmaps && s->maps[i]->addr < end; i++)
			if (!s->maps[i]->obj->writable) {
				r = -EACCES;
				goto out;
			}
	if (mprotect(addr, len, prot) != 0) {
		r = -errno;
		goto out;
	}
	if ((r = split_at(s, a)) || (r = split_at(s, end)))
		goto out; /* protection applied; bookkeeping stays coarser */
	for (size_t i = first_above(s, a);
	     i < s->nmaps && s->maps[i]->addr < end; i++) {
		struct vmo__mapping *m = s->maps[i];
		pthread_mutex_lock(&m->obj->lock);
		m->prot = prot;
		if ((prot & PROT_WRITE) && m->obj->track && !m->track_wp &&
		    !m->sync_wp)
			m->obj->wmapped = true;
		pthread_mutex_unlock(&m->obj->lock);
	}
out:
	pthread_rwlock_unlock(&s->lock);
	pthread_mutex_unlock(&s->conv_lock);
	return r;
}

/* --------------------------------------------------------------- advise */

int vmo_advise(vmo_space_t *s, void *addr, size_t len, int advice)
{
	if (!s)
		return -EINVAL;
	if (vmo__stale(s->gen))
		return -ECHILD;
	uintptr_t a = (uintptr_t)addr;
	if (a % PS || len % PS || len == 0 || a + len < a)
		return -EINVAL;
	if (advice < VMO_ADV_NORMAL || advice > VMO_ADV_DONTNEED)
		return -EINVAL;
	uintptr_t end = a + len;
	int r = 0;
	if (advice == VMO_ADV_WILLNEED) {
		pthread_rwlock_rdlock(&s->lock);
		bool ok = covered(s, a, len);
		pthread_rwlock_unlock(&s->lock);
		if (!ok)
			return -ENOENT;
		return populate_merge(s, a, len);
	}
	pthread_mutex_lock(&s->conv_lock);
	pthread_rwlock_wrlock(&s->lock);
	if (!covered(s, a, len)) {
		r = -ENOENT;
		goto out;
	}
	if (advice != VMO_ADV_DONTNEED &&
	    ((r = split_at(s, a)) || (r = split_at(s, end))))
		goto out;
	for (size_t i = first_above(s, a);
	     i < s->nmaps && s->maps[i]->addr < end; i++) {
		struct vmo__mapping *m = s->maps[i];
		if (advice != VMO_ADV_DONTNEED) {
			__atomic_store_n(&m->advice, advice, __ATOMIC_RELAXED);
			continue;
		}
		uintptr_t ms = MAX(a, m->addr), me = MIN(end, m->addr + m->len);
		vmo_t *o = m->obj;
		pthread_mutex_lock(&o->lock);
		/* The kernel keeps the marker of an unwritten page and
		 * leaves a written one's entry empty, which the next scan
		 * reports as written: no write is lost by the zap. */
		madvise((void *)ms, me - ms, MADV_DONTNEED);
		pthread_mutex_unlock(&o->lock);
		/* with a budget: these pages are evicted first */
		vmo__pool_cold(o, (m->off + (ms - m->addr)) / PS,
			       (m->off + (me - m->addr)) / PS);
	}
out:
	pthread_rwlock_unlock(&s->lock);
	pthread_mutex_unlock(&s->conv_lock);
	return r;
}

/* ---------------------------------------------------------------- stats */

static void add_stats(vmo_space_stats_t *d, const struct vmo__hstats *h)
{
	d->faults_missing += ATOMIC_LOAD(&h->missing);
	d->faults_minor += ATOMIC_LOAD(&h->minor);
	d->faults_wp += ATOMIC_LOAD(&h->wp);
	d->faults_write += ATOMIC_LOAD(&h->write);
	d->faults_spurious += ATOMIC_LOAD(&h->spurious);
	d->pages_filled += ATOMIC_LOAD(&h->filled);
	d->pages_mapped += ATOMIC_LOAD(&h->mapped);
	d->clusters += ATOMIC_LOAD(&h->clusters);
	d->pager_calls += ATOMIC_LOAD(&h->pager_calls);
	d->pager_bytes += ATOMIC_LOAD(&h->pager_bytes);
	d->errors += ATOMIC_LOAD(&h->errors);
	d->sigbus += ATOMIC_LOAD(&h->sigbus);
	d->waits += ATOMIC_LOAD(&h->waits);
	d->pages_readahead += ATOMIC_LOAD(&h->readahead);
	for (unsigned i = 0; i < VMO_LAT_BUCKETS; i++)
		d->latency_ns_log2[i] += ATOMIC_LOAD(&h->lat[i]);
}

int vmo_space_stats(vmo_space_t *s, vmo_space_stats_t *st)
{
	if (!s || !st || st->size < 8)
		return -EINVAL;
	if (vmo__stale(s->gen))
		return -ECHILD;
	vmo_space_stats_t d;
	memset(&d, 0, sizeof d);
	d.size = (uint32_t)MIN((size_t)st->size, sizeof d);
	d.version = VMO_SPACE_STATS_VERSION;
	d.handler_threads = s->nper;
	d.kernel_faults = s->kernel_faults;
	pthread_rwlock_rdlock(&s->lock);
	d.mappings = s->nmaps;
	pthread_rwlock_unlock(&s->lock);
	for (unsigned i = 0; i < s->nthreads; i++)
		add_stats(&d, &s->handlers[i].st);
	pthread_mutex_lock(&s->extra_lock);
	add_stats(&d, &s->extra);
	pthread_mutex_unlock(&s->extra_lock);
	add_stats(&d, &s->ra_st);
	memcpy(st, &d, d.size);
	return 0;
}

/* -------------------------------------------------------------- destroy */

void vmo_space_destroy(vmo_space_t *s)
{
	if (!s || vmo__stale(s->gen))
		return;
	pthread_mutex_lock(&s->conv_lock);
	pthread_rwlock_wrlock(&s->lock);
	while (s->nmaps) {
		struct vmo__mapping *m = s->maps[0], *gone[1];
		size_t ngone = 0;
		remove_range(s, m->addr, m->len, false, gone, &ngone);
		pthread_rwlock_unlock(&s->lock);
		release_removed(s, gone, ngone);
		pthread_rwlock_wrlock(&s->lock);
	}
	pthread_rwlock_unlock(&s->lock);
	pthread_mutex_unlock(&s->conv_lock);
	pthread_mutex_lock(&spaces_lock);
	if (s->prev_space)
		s->prev_space->next_space = s->next_space;
	else
		spaces = s->next_space;
	if (s->next_space)
		s->next_space->prev_space = s->prev_space;
	pthread_mutex_unlock(&spaces_lock);
	vmo__readahead_stop(s);
	vmo__handlers_stop(s);
	for (unsigned i = 0; i < s->nthreads; i++)
		free(s->handlers[i].buf);
	free(s->handlers);
	free(s->maps);
	munmap(s->doorbell, s->nuffd * PS);
	for (unsigned i = 0; i < s->nuffd; i++)
		close(s->uffd[i]);
	pthread_rwlock_destroy(&s->lock);
	pthread_mutex_destroy(&s->conv_lock);
	pthread_mutex_destroy(&s->extra_lock);
	pthread_mutex_destroy(&s->drain_lock);
	pthread_cond_destroy(&s->drain_cv);
	pthread_mutex_destroy(&s->ra_lock);
	pthread_cond_destroy(&s->ra_cv);
	vmo_pool_t *pool = s->pool;
	free(s);
	vmo__pool_put(pool);
}
