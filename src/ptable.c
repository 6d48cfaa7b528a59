/*
 * ptable.c — the per-object page table: a sparse radix tree of state words.
 *
 * What it owns: one 16-bit word of state per page of an object (see
 * vmo_internal.h for the encoding), stored in leaves of 512 pages (2 MiB of
 * object) under interior nodes of 512 slots.  The height is fixed at
 * creation from the object size, so a 1 GiB object has one interior level
 * and a 256 TiB object four; lookups are a handful of dependent loads.
 *
 * Invariants: a leaf exists iff at least one of its words is non-zero (a
 * leaf whose last word returns to 0 is freed, and so is an interior node
 * that loses its last child); hence an object whose pages are all ABSENT
 * costs one pointer, and a 1 TiB object with three touched pages costs
 * three leaves plus their interior path: kilobytes, not gigabytes.
 *
 * Locking: none inside; the owning object's lock (o) guards every call.
 */
#include "vmo_internal.h"

#include <stdlib.h>
#include <string.h>

struct pt_leaf {
	uint32_t nused;
	uint32_t *slot;    /* swap slots of the leaf's pages, allocated on
			      first use (most leaves never see swap) */
	struct vmo__pref *ref; /* copy-on-write references, likewise */
	uint16_t st[PT_LEAF_PAGES];
};

struct pt_node {
	uint32_t nused;
	void *slot[PT_NODE_SLOTS];
};

/* Pages covered by one slot of a node at `level` (level 1: leaves). */
static inline unsigned slot_shift(unsigned level)
{
	return PT_LEAF_SHIFT + PT_NODE_SHIFT * (level - 1);
}

void vmo__pt_init(struct vmo__ptable *pt, uint64_t npages)
{
	memset(pt, 0, sizeof *pt);
	unsigned h = 0;
	uint64_t cover = PT_LEAF_PAGES;
	while (cover < npages) {
		cover <<= PT_NODE_SHIFT;
		h++;
	}
	pt->height = h;
}

static void free_rec(void *p, unsigned level)
{
	if (!p)
		return;
	if (level > 0) {
		struct pt_node *n = p;
		for (unsigned i = 0; i < PT_NODE_SLOTS; i++)
			free_rec(n->slot[i], level - 1);
	} else {
		free(((struct pt_leaf *)p)->slot);
		free(((struct pt_leaf *)p)->ref);
	}
	free(p);
}

void vmo__pt_destroy(struct vmo__ptable *pt)
{
	free_rec(pt->root, pt->height);
	pt->root = NULL;
}

static struct pt_leaf *leaf_of(const struct vmo__ptable *pt, uint64_t pg)
{
	void *p = pt->root;
	for (unsigned l = pt->height; l > 0 && p; l--)
		p = ((struct pt_node *)p)
			    ->slot[(pg >> slot_shift(l)) & (PT_NODE_SLOTS - 1)];
	return p;
}

uint16_t vmo__pt_get(const struct vmo__ptable *pt, uint64_t pg)
{
	struct pt_leaf *lf = leaf_of(pt, pg);
	return lf ? lf->st[pg & (PT_LEAF_PAGES - 1)] : 0;
}

uint32_t vmo__pt_slot(const struct vmo__ptable *pt, uint64_t pg)
{
	struct pt_leaf *lf = leaf_of(pt, pg);
	return lf && lf->slot ? lf->slot[pg & (PT_LEAF_PAGES - 1)] : 0;
}

int vmo__pt_set_slot(struct vmo__ptable *pt, uint64_t pg, uint32_t slot)
{
	struct pt_leaf *lf = leaf_of(pt, pg);
	if (!lf)
		return -EINVAL; /* the caller sets the state word first */
	if (!lf->slot) {
		lf->slot = calloc(PT_LEAF_PAGES, sizeof *lf->slot);
		if (!lf->slot)
			return -ENOMEM;
	}
	lf->slot[pg & (PT_LEAF_PAGES - 1)] = slot;
	return 0;
}

struct vmo__pref vmo__pt_ref(const struct vmo__ptable *pt, uint64_t pg)
{
	struct pt_leaf *lf = leaf_of(pt, pg);
	if (lf && lf->ref)
		return lf->ref[pg & (PT_LEAF_PAGES - 1)];
	return (struct vmo__pref){NULL, 0};
}

int vmo__pt_set_ref(struct vmo__ptable *pt, uint64_t pg, struct vmo__pref ref)
{
	struct pt_leaf *lf = leaf_of(pt, pg);
	if (!lf)
		return -EINVAL;
	if (!lf->ref) {
		lf->ref = calloc(PT_LEAF_PAGES, sizeof *lf->ref);
		if (!lf->ref)
			return -ENOMEM;
	}
	lf->ref[pg & (PT_LEAF_PAGES - 1)] = ref;
	return 0;
}

int vmo__pt_set(struct vmo__ptable *pt, uint64_t pg, uint16_t v)
{
	/* path[l] = address of the pointer to the level-l entity */
	void **path[8];
	void **pp = &pt->root;
	for (unsigned l = pt->height; l > 0; l--) {
		path[l] = pp;
		if (!*pp) {
			if (!v)
				return 0;
			struct pt_node *n = calloc(1, sizeof *n);
			if (!n)
				return -ENOMEM;
			*pp = n;
			if (l < pt->height)
				((struct pt_node *)*path[l + 1])->nused++;
		}
		pp = &((struct pt_node *)*pp)
			      ->slot[(pg >> slot_shift(l)) & (PT_NODE_SLOTS - 1)];
	}
	path[0] = pp;
	if (!*pp) {
		if (!v)
			return 0;
		struct pt_leaf *lf = calloc(1, sizeof *lf);
		if (!lf)
			return -ENOMEM;
		*pp = lf;
		if (pt->height > 0)
			((struct pt_node *)*path[1])->nused++;
	}
	struct pt_leaf *lf = *pp;
	uint16_t *b = &lf->st[pg & (PT_LEAF_PAGES - 1)];
	if (!*b && v)
		lf->nused++;
	else if (*b && !v)
		lf->nused--;
	*b = v;
	if (v || lf->nused)
		return 0;
	/* free the empty leaf and any interior node it leaves empty */
	free(lf->slot);
	free(lf->ref);
	free(lf);
	*path[0] = NULL;
	for (unsigned l = 1; l <= pt->height; l++) {
		struct pt_node *n = *path[l];
		if (--n->nused)
			break;
		free(n);
		*path[l] = NULL;
	}
	return 0;
}

static uint64_t next_rec(const void *p, unsigned level, uint64_t base,
			 uint64_t pg, uint64_t end)
{
	if (level == 0) {
		const struct pt_leaf *lf = p;
		uint64_t lim = MIN(end - base, (uint64_t)PT_LEAF_PAGES);
		for (uint64_t i = pg - base; i < lim; i++)
			if (lf->st[i])
				return base + i;
		return UINT64_MAX;
	}
	const struct pt_node *n = p;
	unsigned sh = slot_shift(level);
	uint64_t span = 1ull << sh;
	for (uint64_t i = (pg - base) >> sh; i < PT_NODE_SLOTS; i++) {
		uint64_t cb = base + i * span;
		if (cb >= end)
			break;
		if (!n->slot[i])
			continue;
		uint64_t r = next_rec(n->slot[i], level - 1, cb, MAX(pg, cb),
				      end);
		if (r != UINT64_MAX)
			return r;
	}
	return UINT64_MAX;
}

unsigned vmo__pt_count_leaf(const struct vmo__ptable *pt, uint64_t pg,
			    uint16_t mask)
{
	struct pt_leaf *lf = leaf_of(pt, pg);
	unsigned n = 0;
	if (!lf)
		return 0;
	for (unsigned i = 0; i < PT_LEAF_PAGES; i++)
		n += (lf->st[i] & mask) != 0;
	return n;
}

uint64_t vmo__pt_next_used(const struct vmo__ptable *pt, uint64_t pg,
			   uint64_t end)
{
	if (pg >= end || !pt->root)
		return end;
	uint64_t r = next_rec(pt->root, pt->height, 0, pg, end);
	return r == UINT64_MAX ? end : r;
}
