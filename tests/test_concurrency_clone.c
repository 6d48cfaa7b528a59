/*
 * test_concurrency_clone.c — copy-on-write against a plain-memory
 * reference model.
 *
 * Random sequences of writes (vmo_write and through mappings), clones of
 * each kind, copies, scatters, gathers, decommits, syncs, unrefs, commits
 * and eviction (a small budget with swap, and DONTNEED advice) run over a
 * family of objects per thread -- anonymous, file-backed (shared and
 * private) and user-pager sources, and clones of clones -- while other
 * threads do the same in the same pool and space.  Every read, through
 * vmo_read or a mapping, is compared with the model.  At the end every
 * object is read in full, dropped, and the pool must be back where it
 * started: no hidden nodes, no resident or swapped pages, no slots.
 *
 * The model.  Every object has, per page, content and a state: its own
 * (written or copied into it), or derived (an at-least-on-write clone's
 * page shows its parent's view), and a flag: valid, dropped, or "maybe"
 * dropped -- a weak clone whose source decommitted a page whose content
 * did not change may or may not have dropped it (the library decides by
 * what the page held, not by its bytes); the first read settles it.
 */
#include "testlib.h"

#include <setjmp.h>
#include <stdbool.h>

#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif

enum { K_ANON, K_FSHARED, K_FPRIVATE, K_PAGER, K_SNAP, K_ALOW, K_WEAK,
       K_GATHER };
enum { V_OK = 0, V_DROPPED = 1, V_MAYBE = 2 };

#define MAXOBJ 12  /* live objects per family at most */
#define NOBJ 256   /* objects per family in all */
#define MAXPG 32

struct mobj {
	int kind;
	vmo_t *o;
	size_t np;
	unsigned char *cur;  /* content of own / fixed pages */
	unsigned char *base; /* snapshot and weak clones: content at creation */
	uint8_t *own;        /* ALOW / WEAK: page is the clone's own */
	uint8_t *st;         /* V_* of fixed (non-derived) pages */
	uint8_t *bst;        /* snapshot clones: st at creation */
	struct mobj *parent; /* ALOW / WEAK */
	size_t poff;
	bool alive;          /* the test still holds its reference */
	unsigned char *map;  /* its mapping, or NULL */
	int fd;              /* file objects */
	unsigned char *file; /* file objects: the file's model; pager: store */
	struct upager *up;
	size_t idx;          /* its number in the family (traces) */
};

struct fam {
	struct mobj obj[NOBJ]; /* every object ever made (dead ones too) */
	size_t n;
	vmo_pool_t *pool;
	vmo_space_t *sp;
	uint64_t rng;
	uint64_t ops[16];
};

/* ------------------------------------------------------------- SIGBUS */

/* volatile: the compiler must not move the stores around the access */
static __thread sigjmp_buf *volatile bus_jb;
static void on_bus(int sig)
{
	(void)sig;
	if (bus_jb)
		siglongjmp(*bus_jb, 1);
	abort();
}

/* Copy a page out of a mapping; 0, or -ENODATA if the access raised
 * SIGBUS. */
static int map_read(const unsigned char *src, unsigned char *dst)
{
	sigjmp_buf jb;
	if (sigsetjmp(jb, 1)) {
		bus_jb = NULL;
		return -ENODATA;
	}
	bus_jb = &jb;
	for (size_t i = 0; i < PG; i += 8) /* (not memcpy: one access at a
					      time, no library call) */
		*(volatile uint64_t *)(dst + i) =
			*(const volatile uint64_t *)(src + i);
	bus_jb = NULL;
	return 0;
}

/* CLONE_MODEL_TRACE=1 prints every operation (set before threads start) */
static int trace;
static __thread int tr_fam;
#define TR(...)                                                 \
	do {                                                    \
		if (trace) {                                    \
			char tb_[512];                          \
			snprintf(tb_, sizeof tb_, __VA_ARGS__); \
			fprintf(stderr, "F%d|%s", tr_fam, tb_); \
		}                                               \
	} while (0)

/* ------------------------------------------------------------- the model */

/* What x shows at page p: content in out and V_OK / V_DROPPED / V_MAYBE.
 * *who, *wpg: the object and page holding the flag (for settling). */
static int view(struct mobj *x, size_t p, unsigned char *out,
		struct mobj **who, size_t *wpg)
{
	if ((x->kind == K_ALOW) && !x->own[p])
		return view(x->parent, p + x->poff, out, who, wpg);
	if (who) {
		*who = x;
		*wpg = p;
	}
	memcpy(out, x->cur + p * PG, PG);
	return x->st[p];
}

/* x's view of page p changes (definite: surely; else maybe): weak
 * descendants that show it through drop it. */
static void changed(struct fam *f, struct mobj *x, size_t p, bool definite)
{
	for (size_t i = 0; i < f->n; i++) {
		struct mobj *y = &f->obj[i];
		if (y->parent != x || (y->kind != K_ALOW && y->kind != K_WEAK) ||
		    p < y->poff || p >= y->poff + y->np)
			continue;
		size_t yp = p - y->poff;
		if (y->own[yp])
			continue;
		if (y->kind == K_WEAK) {
			if (y->st[yp] == V_DROPPED)
				continue;
			if (definite) {
				TR("  drop #%zu p %zu (from #%zu p %zu)\n", y->idx, yp, x->idx, p);
				y->st[yp] = V_DROPPED;
			}
			else if (y->st[yp] == V_OK)
				y->st[yp] = V_MAYBE;
		}
		changed(f, y, yp, definite);
	}
}

/* Settle a maybe-dropped page of x by reading it (vmo_read). */
static void settle(struct mobj *x, size_t p)
{
	unsigned char *b = malloc(PG), *e = malloc(PG);
	struct mobj *who;
	size_t wpg;
	int v = view(x, p, e, &who, &wpg);
	if (v == V_MAYBE) {
		int r = vmo_read(x->o, p * PG, b, PG);
		if (r == -ENODATA) {
			TR("  settle #%zu p %zu: dropped (who #%zu p %zu)\n", x->idx, p, who->idx, wpg);
			who->st[wpg] = V_DROPPED;
		} else {
			if (r)
				FAIL("settle: vmo_read %d", r);
			if (memcmp(b, e, PG))
				FAIL("settle: page %zu neither dropped nor "
				     "its old content",
				     p);
			who->st[wpg] = V_OK;
		}
	}
	free(b);
	free(e);
}

/* Make x's own page p hold what it shows (before a partial write). */
static void own_page(struct mobj *x, size_t p)
{
	if (x->kind == K_ALOW && !x->own[p]) {
		view(x->parent, p + x->poff, x->cur + p * PG, NULL, NULL);
		x->st[p] = V_OK;
	}
	if (x->kind == K_ALOW || x->kind == K_WEAK)
		x->own[p] = 1;
}

/* ----------------------------------------------------------- utilities */

static uint64_t rn(struct fam *f, uint64_t n)
{
	return rnd(&f->rng) % n;
}

static void rand_bytes(struct fam *f, unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = rnd(&f->rng);
		memcpy(b + i, &v, MIN(8, n - i));
	}
}

static struct mobj *pick(struct fam *f, bool writable)
{
	struct mobj *c[NOBJ];
	size_t n = 0;
	for (size_t i = 0; i < f->n; i++)
		if (f->obj[i].alive)
			c[n++] = &f->obj[i];
	(void)writable;
	return n ? c[rn(f, n)] : NULL;
}

static size_t nalive(struct fam *f)
{
	size_t n = 0;
	for (size_t i = 0; i < f->n; i++)
		n += f->obj[i].alive;
	return n;
}

static struct mobj *new_mobj(struct fam *f, int kind, size_t np)
{
	CHECK(f->n < NOBJ);
	struct mobj *m = &f->obj[f->n++];
	memset(m, 0, sizeof *m);
	m->kind = kind;
	m->np = np;
	m->cur = calloc(np, PG);
	m->base = calloc(np, PG);
	m->own = calloc(np, 1);
	m->st = calloc(np, 1);
	m->bst = calloc(np, 1);
	m->alive = true;
	m->fd = -1;
	m->idx = (size_t)(m - f->obj);
	return m;
}

/* Compare what x shows at page p with the model (vmo_read, or the
 * mapping when `mapped`). */
static void check_page(struct mobj *x, size_t p, bool mapped, int line)
{
	unsigned char *b = malloc(PG), *e = malloc(PG);
	struct mobj *who;
	size_t wpg;
	int v = view(x, p, e, &who, &wpg);
	int r;
	if (mapped && x->map && v != V_MAYBE)
		r = map_read(x->map + p * PG, b);
	else
		r = vmo_read(x->o, p * PG, b, PG);
	if (v == V_MAYBE)
		v = who->st[wpg] = r == -ENODATA ? V_DROPPED : V_OK;
	if (v == V_DROPPED) {
		if (r != -ENODATA) {
			FAIL("line %d: #%zu kind %d page %zu: read %d, expected "
			     "dropped",
			     line, x->idx, x->kind, p, r);
		}
	} else {
		if (r)
			FAIL("line %d: kind %d page %zu: read %d (%s)", line,
			     x->kind, p, r, vmo_strerror(r));
		if (memcmp(b, e, PG)) {
			size_t i = 0;
			while (b[i] == e[i])
				i++;
			struct mobj *q = x;
			size_t qp = p;
			while (q->parent) {
				qp += q->poff;
				q = q->parent;
			}
			FAIL("line %d: #%zu kind %d page %zu%s byte %zu: 0x%02x, "
			     "expected 0x%02x (root kind %d page %zu: now "
			     "0x%02x, file 0x%02x)",
			     line, x->idx, x->kind, p, mapped ? " (mapped)" : "", i,
			     b[i], e[i], q->kind, qp, q->cur[qp * PG + i],
			     q->file ? q->file[qp * PG + i] : 0);
		}
	}
	free(b);
	free(e);
}

/* ----------------------------------------------------------- operations */

static void op_create(struct fam *f)
{
	int kinds[] = {K_ANON, K_ANON, K_FSHARED, K_FPRIVATE, K_PAGER};
	int kind = kinds[rn(f, 5)];
	size_t np = 8 + rn(f, MAXPG - 8);
	struct mobj *m = new_mobj(f, kind, np);
	if (kind == K_ANON) {
		OK(vmo_create(f->pool, np * PG, 0, &m->o));
	} else if (kind == K_PAGER) {
		m->up = malloc(sizeof *m->up);
		up_init(m->up, np * PG, rnd(&f->rng));
		memcpy(m->cur, m->up->store, np * PG);
		OK(vmo_create_pager(f->pool, np * PG, &up_ops, m->up, 0, &m->o));
	} else {
		uint64_t seed = rnd(&f->rng);
		m->fd = temp_file(np * PG, seed);
		m->file = malloc(np * PG);
		pattern_fill(m->file, np * PG, seed, 0);
		memcpy(m->cur, m->file, np * PG);
		OK(vmo_create_file(f->pool, m->fd, 0, np * PG,
				   kind == K_FSHARED ? VMO_FILE_SHARED
						     : VMO_FILE_PRIVATE,
				   &m->o));
	}
	TR("create #%zu kind %d np %zu\n", (size_t)(m - f->obj), kind, np);
}

static void op_clone(struct fam *f)
{
	struct mobj *x = pick(f, false);
	if (!x)
		return;
	size_t off = rn(f, x->np), len = 1 + rn(f, x->np - off);
	int kinds[] = {K_SNAP, K_ALOW, K_WEAK};
	unsigned flags[] = {VMO_CLONE_SNAPSHOT, VMO_CLONE_AT_LEAST_ON_WRITE,
			    VMO_CLONE_WEAK};
	int k = (int)rn(f, 3);
	for (size_t p = off; p < off + len; p++)
		settle(x, p);
	struct mobj *c = new_mobj(f, kinds[k], len); /* (obj[] never moves) */
	TR("clone #%zu of #%zu [%zu,+%zu) kind %d\n", (size_t)(c - f->obj),
	   (size_t)(x - f->obj), off, len, kinds[k]);
	OK(vmo_clone(x->o, off * PG, len * PG, flags[k], &c->o));
	c->parent = x;
	c->poff = off;
	for (size_t p = 0; p < len; p++) {
		c->st[p] = (uint8_t)view(x, off + p, c->cur + p * PG, NULL, NULL);
		c->bst[p] = c->st[p];
		memcpy(c->base + p * PG, c->cur + p * PG, PG);
	}
	f->ops[1]++;
}

/* One page of x, settled: its view for a copy source (V_OK or dropped). */
static int src_view(struct mobj *x, size_t p, unsigned char *out)
{
	settle(x, p);
	return view(x, p, out, NULL, NULL);
}

static void apply_copy(struct fam *f, struct mobj *d, size_t dp,
		       const unsigned char *data)
{
	changed(f, d, dp, true);
	memcpy(d->cur + dp * PG, data, PG);
	d->st[dp] = V_OK;
	if (d->kind == K_ALOW || d->kind == K_WEAK)
		d->own[dp] = 1;
}

static void op_copy(struct fam *f)
{
	struct mobj *s = pick(f, false), *d = pick(f, true);
	if (!s || !d)
		return;
	unsigned flags = rn(f, 3) == 0 ? VMO_COPY_EAGER : 0;
	int how = (int)rn(f, 4);
	size_t n = 1 + rn(f, MIN(s->np, d->np) / 2 + 1);
	n = MIN(n, MIN(s->np, d->np));
	uint64_t sp[MAXPG], dp[MAXPG];
	size_t so = rn(f, s->np - n + 1), dof = rn(f, d->np - n + 1);
	for (size_t i = 0; i < n; i++) {
		sp[i] = how == 2 ? rn(f, s->np) : so + i;
		dp[i] = dof + i;
	}
	if (how == 1) { /* scatter: distinct random destination pages */
		size_t k = 0;
		while (k < n) {
			uint64_t c = rn(f, d->np);
			bool dup = false;
			for (size_t j = 0; j < k; j++)
				dup |= dp[j] == c;
			if (!dup)
				dp[k++] = c;
		}
	}
	if (how == 3 && f->n >= NOBJ - 2)
		how = 0;
	if (how == 3) {
		/* gather into a new object */
		unsigned char *buf = malloc(n * PG);
		bool dropped = false;
		uint64_t gp[MAXPG] = {0};
		for (size_t i = 0; i < n; i++)
			gp[i] = rn(f, s->np);
		for (size_t i = 0; i < n; i++)
			dropped |= src_view(s, gp[i], buf + i * PG) == V_DROPPED;
		vmo_t *g = NULL;
		TR("gather from #%zu n %zu flags %u:", (size_t)(s - f->obj), n,
		   flags);
		for (size_t i = 0; i < n; i++)
			TR(" %lu", (unsigned long)gp[i]);
		TR("\n");
		int r = vmo_gather(s->o, gp, n, flags, &g);
		if (dropped) {
			CHECK_EQ(r, -ENODATA);
			free(buf);
			return;
		}
		OK(r);
		struct mobj *m = new_mobj(f, K_GATHER, n);
		TR("  gathered as #%zu\n", m->idx);
		m->o = g;
		memcpy(m->cur, buf, n * PG);
		free(buf);
		f->ops[4]++;
		return;
	}
	bool same = s == d;
	if (same) {
		for (size_t i = 0; i < n; i++)
			for (size_t j = 0; j < n; j++)
				if (sp[i] == dp[j])
					return; /* overlapping: refused, tested elsewhere */
	}
	unsigned char *buf = malloc(n * PG);
	bool dropped = false;
	for (size_t i = 0; i < n; i++)
		dropped |= src_view(s, sp[i], buf + i * PG) == V_DROPPED;
	int r;
	TR("copy how %d #%zu -> #%zu n %zu flags %u so %zu dof %zu:", how,
	   (size_t)(s - f->obj), (size_t)(d - f->obj), n, flags, so, dof);
	for (size_t i = 0; i < n; i++)
		TR(" %lu>%lu", (unsigned long)(how == 2 ? sp[i] : so + i),
		   (unsigned long)dp[i]);
	TR("\n");
	if (how == 0)
		r = vmo_copy(s->o, so * PG, d->o, dof * PG, n * PG, flags);
	else if (how == 1)
		r = vmo_copy_scatter(s->o, so * PG, d->o, dp, n, flags);
	else
		r = vmo_copy_gather(s->o, sp, n, d->o, dof * PG, flags);
	if (dropped) {
		CHECK_EQ(r, -ENODATA);
		free(buf);
		return;
	}
	OK(r);
	for (size_t i = 0; i < n; i++)
		apply_copy(f, d, dp[i], buf + i * PG);
	free(buf);
	f->ops[2]++;
}

static void op_write(struct fam *f)
{
	struct mobj *x = pick(f, true);
	if (!x)
		return;
	bool via_map = x->map && rn(f, 2);
	size_t p = rn(f, x->np);
	bool whole = rn(f, 3) != 0;
	size_t n = whole ? 1 + rn(f, MIN((size_t)8, x->np - p)) : 1;
	size_t boff = whole ? 0 : rn(f, PG - 1), blen = whole ? PG : 1 + rn(f, PG - boff);
	if (via_map) {
		/* a mapping access to a dropped page raises SIGBUS: skip */
		for (size_t i = 0; i < n; i++) {
			settle(x, p + i);
			unsigned char t[PG];
			if (view(x, p + i, t, NULL, NULL) != V_OK)
				return;
		}
	}
	if (!whole) {
		settle(x, p);
		unsigned char t[PG];
		if (view(x, p, t, NULL, NULL) == V_DROPPED) {
			unsigned char b[8] = {1};
			CHECK_ERR(vmo_write(x->o, p * PG + boff, b, 1), -ENODATA);
			return;
		}
	}
	unsigned char *data = malloc(n * PG);
	rand_bytes(f, data, n * PG);
	TR("write #%zu p %zu n %zu %s %s boff %zu blen %zu\n",
	   (size_t)(x - f->obj), p, n, via_map ? "map" : "call",
	   whole ? "whole" : "part", boff, blen);
	for (size_t i = 0; i < n; i++) {
		changed(f, x, p + i, true);
		own_page(x, p + i);
		if (whole)
			memcpy(x->cur + (p + i) * PG, data + i * PG, PG);
		else
			memcpy(x->cur + p * PG + boff, data, blen);
		x->st[p + i] = V_OK;
	}
	if (via_map) {
		for (size_t i = 0; i < n; i++) {
			if (whole)
				memcpy(x->map + (p + i) * PG, data + i * PG, PG);
			else
				memcpy(x->map + p * PG + boff, data, blen);
		}
	} else if (whole) {
		OK(vmo_write(x->o, p * PG, data, n * PG));
	} else {
		OK(vmo_write(x->o, p * PG + boff, data, blen));
	}
	free(data);
	f->ops[0]++;
}

static void op_decommit(struct fam *f)
{
	struct mobj *x = pick(f, true);
	if (!x)
		return;
	size_t p = rn(f, x->np), n = 1 + rn(f, MIN((size_t)6, x->np - p));
	unsigned char *old = malloc(PG);
	for (size_t i = p; i < p + n; i++) {
		settle(x, i);
		int v0 = view(x, i, old, NULL, NULL);
		switch (x->kind) {
		case K_ANON:
		case K_GATHER:
			memset(x->cur + i * PG, 0, PG);
			x->st[i] = V_OK;
			break;
		case K_SNAP:
			memcpy(x->cur + i * PG, x->base + i * PG, PG);
			x->st[i] = x->bst[i];
			break;
		case K_ALOW:
			x->own[i] = 0;
			break;
		case K_WEAK:
			if (x->own[i]) {
				x->own[i] = 0;
				x->st[i] = V_DROPPED;
			}
			break;
		case K_FPRIVATE:
			memcpy(x->cur + i * PG, x->file + i * PG, PG);
			break;
		default: /* shared file, pager: written back, same view */
			break;
		}
		unsigned char *now = malloc(PG);
		int v1 = view(x, i, now, NULL, NULL);
		bool diff = v0 != v1 || memcmp(old, now, PG);
		changed(f, x, i, diff);
		free(now);
	}
	free(old);
	TR("decommit #%zu p %zu n %zu\n", (size_t)(x - f->obj), p, n);
	OK(vmo_decommit(x->o, p * PG, n * PG));
	f->ops[3]++;
}

static void op_read(struct fam *f)
{
	struct mobj *x = pick(f, false);
	if (!x)
		return;
	size_t p = rn(f, x->np), n = 1 + rn(f, MIN((size_t)8, x->np - p));
	bool mapped = x->map && rn(f, 2);
	TR("read #%zu p %zu n %zu%s\n", (size_t)(x - f->obj), p, n,
	   mapped ? " map" : "");
	for (size_t i = p; i < p + n; i++)
		check_page(x, i, mapped, __LINE__);
	f->ops[5]++;
}

static void op_map(struct fam *f)
{
	struct mobj *x = pick(f, false);
	if (!x)
		return;
	TR("%smap #%zu\n", x->map ? "un" : "", (size_t)(x - f->obj));
	if (x->map) {
		OK(vmo_unmap(f->sp, x->map, x->np * PG));
		x->map = NULL;
		return;
	}
	void *a = NULL;
	OK(vmo_map(f->sp, x->o, 0, x->np * PG, PROT_READ | PROT_WRITE, 0, &a));
	x->map = a;
}

static void op_unref(struct fam *f)
{
	if (nalive(f) < 4)
		return;
	struct mobj *x = pick(f, false);
	if (x->map) {
		OK(vmo_unmap(f->sp, x->map, x->np * PG));
		x->map = NULL;
	}
	TR("unref #%zu\n", (size_t)(x - f->obj));
	vmo_unref(x->o);
	x->alive = false;
	f->ops[6]++;
}

static void check_file(struct mobj *x)
{
	if (x->kind == K_FSHARED) {
		unsigned char *b = malloc(x->np * PG);
		CHECK_EQ(pread(x->fd, b, x->np * PG, 0), (ssize_t)(x->np * PG));
		SAME(b, x->cur, x->np * PG, 0, "file after vmo_sync");
		free(b);
	} else if (x->kind == K_PAGER) {
		pthread_mutex_lock(&x->up->lock);
		SAME(x->up->store, x->cur, x->np * PG, 0, "pager store after sync");
		pthread_mutex_unlock(&x->up->lock);
	} else if (x->kind == K_FPRIVATE) {
		unsigned char *b = malloc(x->np * PG);
		CHECK_EQ(pread(x->fd, b, x->np * PG, 0), (ssize_t)(x->np * PG));
		SAME(b, x->file, x->np * PG, 0, "private file untouched");
		free(b);
	}
}

static void op_sync(struct fam *f)
{
	struct mobj *x = pick(f, false);
	if (!x)
		return;
	TR("sync #%zu\n", (size_t)(x - f->obj));
	OK(vmo_sync(x->o, 0, x->np * PG));
	check_file(x);
	f->ops[7]++;
}

static void op_misc(struct fam *f)
{
	struct mobj *x = pick(f, false);
	if (!x)
		return;
	size_t p = rn(f, x->np), n = 1 + rn(f, MIN((size_t)8, x->np - p));
	TR("misc #%zu p %zu n %zu\n", (size_t)(x - f->obj), p, n);
	if (x->map && rn(f, 2)) {
		/* make the range the next victims */
		OK(vmo_advise(f->sp, x->map + p * PG, n * PG, VMO_ADV_DONTNEED));
	} else {
		bool drop = false;
		for (size_t i = p; i < p + n; i++) {
			settle(x, i);
			unsigned char t[PG];
			drop |= view(x, i, t, NULL, NULL) == V_DROPPED;
		}
		int r = vmo_commit(x->o, p * PG, n * PG);
		if (drop)
			CHECK_EQ(r, -ENODATA);
		else
			OK(r);
	}
}

static void fam_run(struct fam *f, unsigned nops)
{
	for (int i = 0; i < 3; i++)
		op_create(f);
	for (unsigned i = 0; i < nops; i++) {
		unsigned c = (unsigned)rn(f, 100);
		bool room = f->n < NOBJ - 2;
		if (nalive(f) >= MAXOBJ || !room)
			c = room ? 86 : 20 + c % 70; /* unref, or no new ones */
		if (room && (nalive(f) < 3 || c < 4))
			op_create(f);
		else if (c < 16 && room)
			op_clone(f);
		else if (c < 26)
			op_copy(f);
		else if (c < 50)
			op_write(f);
		else if (c < 58)
			op_decommit(f);
		else if (c < 80)
			op_read(f);
		else if (c < 86)
			op_map(f);
		else if (c < 90)
			op_unref(f);
		else if (c < 94)
			op_sync(f);
		else
			op_misc(f);
		if (getenv("CLONE_MODEL_PARANOID"))
			for (size_t j = 0; j < f->n; j++)
				if (f->obj[j].alive)
					for (size_t q = 0; q < f->obj[j].np; q++)
						check_page(&f->obj[j], q, false,
							   __LINE__);
	}
	/* everything, once more, in full; then all of it goes */
	for (size_t i = 0; i < f->n; i++) {
		struct mobj *x = &f->obj[i];
		if (!x->alive)
			continue;
		for (size_t p = 0; p < x->np; p++)
			check_page(x, p, false, __LINE__);
		if (x->map)
			for (size_t p = 0; p < x->np; p++)
				check_page(x, p, true, __LINE__);
		OK(vmo_sync(x->o, 0, x->np * PG));
		check_file(x);
	}
	for (size_t i = 0; i < f->n; i++) {
		struct mobj *x = &f->obj[i];
		if (x->alive) {
			if (x->map)
				OK(vmo_unmap(f->sp, x->map, x->np * PG));
			vmo_unref(x->o);
		}
	}
	for (size_t i = 0; i < f->n; i++) {
		struct mobj *x = &f->obj[i];
		if (x->fd >= 0)
			close(x->fd);
		if (x->up) {
			up_free(x->up);
			free(x->up);
		}
		free(x->cur);
		free(x->base);
		free(x->own);
		free(x->st);
		free(x->file);
		free(x->bst);
	}
}

struct targ {
	struct fam f;
	unsigned nops;
	int id;
};

static void *fam_thread(void *a)
{
	struct targ *t = a;
	tr_fam = t->id;
	fam_run(&t->f, t->nops);
	return NULL;
}

static unsigned env_ops(unsigned dflt)
{
	const char *e = getenv("CLONE_MODEL_OPS");
	return e ? (unsigned)atoi(e) : dflt;
}

/* Runs nthreads families in one pool (budget pages, with swap) and one
 * space, then checks that everything went back. */
static void model_run(unsigned nthreads, uint64_t budget, uint64_t seed,
		      unsigned nops)
{
	trace = getenv("CLONE_MODEL_TRACE") != NULL;
	const char *es = getenv("CLONE_MODEL_SEED");
	if (es)
		seed = strtoull(es, NULL, 0);
	struct env e = env_budget(2, budget, budget ? 4096 : 0);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_bus;
	sigaction(SIGBUS, &sa, NULL);
	struct targ *t = calloc(nthreads, sizeof *t);
	pthread_t th[8];
	for (unsigned i = 0; i < nthreads; i++) {
		t[i].f.pool = e.pool;
		t[i].f.sp = e.sp;
		t[i].f.rng = seed * 7919 + i + 1;
		t[i].nops = nops;
		t[i].id = (int)i;
		pthread_create(&th[i], NULL, fam_thread, &t[i]);
	}
	uint64_t ops[16] = {0};
	for (unsigned i = 0; i < nthreads; i++) {
		pthread_join(th[i], NULL);
		for (int k = 0; k < 16; k++)
			ops[k] += t[i].f.ops[k];
	}
	/* enough of each kind happened for the run to mean something */
	CHECK(ops[0] > nops / 10);
	CHECK(ops[1] > nops / 40);
	CHECK(ops[2] > nops / 40);
	vmo_pool_stats_t ps = pstat(e.pool);
	CHECK_EQ(ps.objects, 0);
	CHECK_EQ(ps.hidden_nodes, 0);
	CHECK_EQ(ps.hidden_pages, 0);
	CHECK_EQ(ps.resident_pages, 0);
	CHECK_EQ(ps.swapped_pages, 0);
	CHECK_EQ(ps.swap_slots_used, 0);
	CHECK_EQ(ps.dirty_pages, 0);
	if (budget)
		CHECK(ps.evictions > 0);
	free(t);
	env_free(&e);
}

TEST(model_one_family_no_budget)
{
	model_run(1, 0, 1, env_ops(3000));
}

TEST(model_one_family_small_budget_with_swap)
{
	model_run(1, 40, 2, env_ops(3000));
}

TEST(model_three_families_small_budget_with_swap)
{
	model_run(3, 96, 3, env_ops(2000));
}

TEST(model_three_families_no_budget)
{
	model_run(3, 0, 4, env_ops(2000));
}

TEST_MAIN()
