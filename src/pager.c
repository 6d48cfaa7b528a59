/*
 * pager.c — the pagers: what fills an object's absent pages and what takes
 * its dirty pages back.
 *
 *   zero   anonymous objects: absent pages are zeros.  The fault path maps
 *          them with UFFDIO_ZEROPAGE and the explicit path allocates them
 *          with fallocate(), so the zero pager is rarely asked for bytes.
 *   file   pread()s the file; VMO_FILE_SHARED pwrite()s dirty pages back,
 *          never past the end of file seen at creation (file_valid).
 *   user   the vmo_pager_ops_t callbacks.
 *
 * Contract: callers hold no lock and own the pages (FILLING for reads,
 * WRITEBACK for writes), so a pager may block for as long as it likes
 * without stalling anything but the threads that need those pages.  Any
 * pager failure becomes -EIO here: callers turn it into -EIO for explicit
 * calls and SIGBUS for faults.  Statistics are atomics on the object.
 */
#include "vmo_internal.h"

#include <string.h>

int vmo__pager_read(vmo_t *obj, uint64_t pg, uint64_t k, void *buf)
{
	uint64_t off = pg * PS, len = k * PS;
	int r = 0;

	switch (obj->kind) {
	case VMO_KIND_ANON:
		memset(buf, 0, len);
		return 0;
	case VMO_KIND_FILE: {
		size_t got = 0;
		uint64_t want = off < obj->file_valid
					? MIN(len, obj->file_valid - off)
					: 0;
		if (want)
			r = vmo__sys_pread_full(obj->file_fd, buf, want,
						obj->file_off + off, &got);
		if (got < len)
			memset((char *)buf + got, 0, len - got);
		break;
	}
	case VMO_KIND_PAGER:
		r = obj->ops.read(obj->ctx, off, buf, len);
		break;
	case VMO_KIND_CLONE:
	case VMO_KIND_NODE:
		/* filled from what they share (clone.c), never from here */
		return -EIO;
	}
	ATOMIC_INC(&obj->st_preads);
	if (r) {
		ATOMIC_INC(&obj->st_perrors);
		return -EIO;
	}
	ATOMIC_ADD(&obj->st_pread_bytes, len);
	return 0;
}

/* Write back pages [pg, pg+k) whose content is in buf.  0 or -EIO. */
int vmo__pager_write(vmo_t *obj, uint64_t pg, uint64_t k, const void *buf)
{
	uint64_t off = pg * PS, len = k * PS;
	int r = 0;

	switch (obj->kind) {
	case VMO_KIND_ANON:
		return 0;
	case VMO_KIND_FILE:
		if (off >= obj->file_valid)
			return 0; /* beyond end of file: never written */
		len = MIN(len, obj->file_valid - off);
		r = vmo__sys_pwrite_full(obj->file_fd, buf, len,
					 obj->file_off + off);
		break;
	case VMO_KIND_PAGER:
		r = obj->ops.write(obj->ctx, off, buf, len);
		break;
	case VMO_KIND_CLONE:
	case VMO_KIND_NODE:
		return -EIO; /* they never write back */
	}
	ATOMIC_INC(&obj->st_pwrites);
	if (r) {
		ATOMIC_INC(&obj->st_perrors);
		return -EIO;
	}
	ATOMIC_ADD(&obj->st_pwrite_bytes, len);
	return 0;
}
