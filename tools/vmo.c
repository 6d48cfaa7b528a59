/*
 * vmo.c — the libvmo command-line tool.
 *
 *   vmo features         what this kernel and process give libvmo
 *   vmo cat FILE         write FILE to stdout through a libvmo mapping
 *   vmo checksum FILE    64-bit FNV-1a of FILE read through a libvmo mapping,
 *                        with the fault statistics of the run
 *   vmo help             this text
 *
 * cat and checksum map the file through a VMO_FILE_PRIVATE object (the file
 * is never written), read-only, with VMO_ADV_SEQUENTIAL.  The object covers
 * the file rounded up to whole pages; the bytes of the last page beyond the
 * end of file read as zeros and are not output.
 *
 * Exit status: 0 success, 1 error (a message on stderr), 2 usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmo.h"

#define EXIT_USAGE 2
#define CAT_CHUNK ((size_t)8 << 20)

static const char *prog = "vmo";

static const char usage_text[] =
	"usage: vmo COMMAND [ARGS]\n"
	"\n"
	"  features        show what libvmo can use here: userfaultfd mode,\n"
	"                  handler threads, write tracking, library version\n"
	"  cat FILE        write FILE to stdout, read through a libvmo mapping\n"
	"  checksum FILE   print the 64-bit FNV-1a of FILE, read through a\n"
	"                  libvmo mapping, and the page-fault statistics\n"
	"  help            show this text\n"
	"\n"
	"Exit status: 0 success, 1 error, 2 usage error.\n";

static int usage(void)
{
	fputs(usage_text, stderr);
	return EXIT_USAGE;
}

/* Report a failed libvmo call and return the error exit status. */
static int fail_vmo(const char *what, int err)
{
	fprintf(stderr, "%s: %s: %s\n", prog, what, vmo_strerror(err));
	return 1;
}

static int fail_errno(const char *what, const char *arg)
{
	fprintf(stderr, "%s: %s%s%s: %s\n", prog, what, arg ? " " : "",
		arg ? arg : "", strerror(errno));
	return 1;
}

/* A page of the mapping could not be filled (the file's pager failed, or
 * the file shrank under us): libvmo raises SIGBUS in the reader. */
static void on_sigbus(int sig)
{
	static const char msg[] =
		": I/O error: a page of the file could not be read (SIGBUS)\n";
	(void)sig;
	if (write(2, prog, strlen(prog)) < 0 || write(2, msg, sizeof msg - 1) < 0) {
		/* nothing more to do */
	}
	_exit(1);
}

/* --------------------------------------------------------- the mapping */

/* A file mapped read-only through a private file object. */
struct fmap {
	vmo_pool_t *pool;
	vmo_space_t *space;
	vmo_t *obj;
	const unsigned char *data;
	uint64_t size;     /* st_size: bytes to use */
	uint64_t maplen;   /* size rounded up to whole pages (0: empty) */
};

static void fmap_close(struct fmap *m)
{
	if (m->data)
		vmo_unmap(m->space, (void *)m->data, m->maplen);
	vmo_unref(m->obj);
	vmo_space_destroy(m->space);
	vmo_pool_destroy(m->pool);
	memset(m, 0, sizeof *m);
}

/* Returns 0 or the exit status after printing why. */
static int fmap_open(struct fmap *m, const char *path)
{
	memset(m, 0, sizeof *m);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail_errno("cannot open", path);
	struct stat sb;
	if (fstat(fd, &sb) != 0) {
		int st = fail_errno("cannot stat", path);
		close(fd);
		return st;
	}
	if (!S_ISREG(sb.st_mode)) {
		fprintf(stderr, "%s: %s: not a regular file\n", prog, path);
		close(fd);
		return 1;
	}
	m->size = (uint64_t)sb.st_size;
	m->maplen = (m->size + VMO_PAGE_SIZE - 1) / VMO_PAGE_SIZE * VMO_PAGE_SIZE;

	int r = vmo_pool_create(NULL, &m->pool);
	if (!r)
		r = vmo_space_create(m->pool, NULL, &m->space);
	if (r) {
		close(fd);
		fmap_close(m);
		return fail_vmo(r == -ENOSYS || r == -EPERM || r == -ENOTSUP
					? "cannot create a space"
					: "cannot create a pool or space",
				r);
	}
	if (m->maplen == 0) { /* empty file: nothing to map */
		close(fd);
		return 0;
	}
	r = vmo_create_file(m->pool, fd, 0, m->maplen, VMO_FILE_PRIVATE,
			    &m->obj);
	close(fd); /* the object holds its own descriptor */
	if (r) {
		fprintf(stderr, "%s: %s: cannot create a file object: %s\n",
			prog, path, vmo_strerror(r));
		fmap_close(m);
		return 1;
	}
	void *a = NULL;
	r = vmo_map(m->space, m->obj, 0, m->maplen, PROT_READ, 0, &a);
	if (r) {
		fprintf(stderr, "%s: %s: cannot map: %s\n", prog, path,
			vmo_strerror(r));
		fmap_close(m);
		return 1;
	}
	m->data = a;
	/* One pass front to back: largest fault-around clusters at once. */
	r = vmo_advise(m->space, a, m->maplen, VMO_ADV_SEQUENTIAL);
	if (r) {
		fprintf(stderr, "%s: %s: vmo_advise: %s\n", prog, path,
			vmo_strerror(r));
		fmap_close(m);
		return 1;
	}
	return 0;
}

/* ------------------------------------------------------------ features */

/* Does vmo_sync write back only the pages written through a mapping?
 * Returns 1 (per page), 0 (coarser), or a negative error. */
static int probe_write_tracking(vmo_pool_t *pool, vmo_space_t *sp)
{
	const uint64_t len = 8 * VMO_PAGE_SIZE;
	int fd = memfd_create("vmo-probe", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)len) != 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	vmo_t *o = NULL;
	void *a = NULL;
	int r = vmo_create_file(pool, fd, 0, len, VMO_FILE_SHARED, &o);
	close(fd);
	if (!r)
		r = vmo_map(sp, o, 0, len, PROT_READ | PROT_WRITE,
			    VMO_MAP_POPULATE, &a);
	if (!r) {
		((volatile char *)a)[3 * VMO_PAGE_SIZE] = 1;
		r = vmo_sync(o, 0, len);
	}
	vmo_stats_t st = {.size = sizeof st};
	if (!r)
		r = vmo_stats(o, &st);
	if (a)
		vmo_unmap(sp, a, len);
	vmo_unref(o);
	if (r)
		return r;
	return st.pager_write_bytes == VMO_PAGE_SIZE;
}

static int cmd_features(void)
{
	vmo_pool_t *pool;
	vmo_space_t *sp;
	printf("libvmo %d.%d (VMO_VERSION_MAJOR %d, VMO_VERSION_MINOR %d)\n",
	       VMO_VERSION_MAJOR, VMO_VERSION_MINOR, VMO_VERSION_MAJOR,
	       VMO_VERSION_MINOR);
	printf("page size:           %u bytes\n", VMO_PAGE_SIZE);
	printf("largest object:      %" PRIu64 " TiB\n",
	       (uint64_t)VMO_MAX_SIZE >> 40);
	int r = vmo_pool_create(NULL, &pool);
	if (r)
		return fail_vmo("vmo_pool_create", r);
	r = vmo_space_create(pool, NULL, &sp);
	if (r) {
		printf("userfaultfd:         unusable: %s\n", vmo_strerror(r));
		vmo_pool_destroy(pool);
		return fail_vmo("cannot create a space", r);
	}
	vmo_space_stats_t st = {.size = sizeof st};
	r = vmo_space_stats(sp, &st);
	if (r) {
		vmo_space_destroy(sp);
		vmo_pool_destroy(pool);
		return fail_vmo("vmo_space_stats", r);
	}
	printf("userfaultfd:         usable (spaces can be created)\n");
	printf("kernel-mode faults:  %s\n",
	       st.kernel_faults == 0 ? "served (system calls may touch "
				       "absent mapped pages)"
				     : "NOT served");
	if (st.kernel_faults)
		printf("                     %s\n",
		       vmo_strerror(st.kernel_faults));
	printf("handler threads:     %u per space by default (online CPUs: "
	       "%ld)\n",
	       st.handler_threads, sysconf(_SC_NPROCESSORS_ONLN));
	int wt = probe_write_tracking(pool, sp);
	if (wt < 0)
		printf("write tracking:      probe failed: %s\n",
		       vmo_strerror(wt));
	else
		printf("write tracking:      %s\n",
		       wt ? "per page (vmo_sync writes back only pages "
			    "written through mappings)"
			  : "coarse (vmo_sync writes back every resident "
			    "page of objects mapped writable)");
	vmo_space_destroy(sp);
	vmo_pool_destroy(pool);
	return 0;
}

/* ----------------------------------------------------------------- cat */

static int write_all(int fd, const unsigned char *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int cmd_cat(const char *path)
{
	struct fmap m;
	int st = fmap_open(&m, path);
	if (st)
		return st;
	vmo_space_stats_t ss = {.size = sizeof ss};
	int r = vmo_space_stats(m.space, &ss);
	if (r) {
		fmap_close(&m);
		return fail_vmo("vmo_space_stats", r);
	}
	/*
	 * write(2) reads the mapping in the kernel.  Where kernel-mode faults
	 * are served, libvmo fills absent pages for it; otherwise the kernel
	 * would fail with EFAULT, so touch each page of a chunk first.
	 */
	bool touch = ss.kernel_faults != 0;
	for (uint64_t off = 0; off < m.size; off += CAT_CHUNK) {
		size_t n = (size_t)(m.size - off < CAT_CHUNK ? m.size - off
							     : CAT_CHUNK);
		if (touch) {
			volatile unsigned char sink = 0;
			for (size_t i = 0; i < n; i += VMO_PAGE_SIZE)
				sink ^= m.data[off + i];
			(void)sink;
		}
		if (write_all(STDOUT_FILENO, m.data + off, n) != 0) {
			int e = errno;
			fmap_close(&m);
			errno = e;
			return fail_errno("write error on standard output",
					  NULL);
		}
	}
	fmap_close(&m);
	return 0;
}

/* ------------------------------------------------------------ checksum */

#define FNV64_OFFSET 0xcbf29ce484222325ull
#define FNV64_PRIME 0x100000001b3ull

static int cmd_checksum(const char *path)
{
	struct fmap m;
	int st = fmap_open(&m, path);
	if (st)
		return st;
	uint64_t h = FNV64_OFFSET;
	for (uint64_t i = 0; i < m.size; i++) {
		h ^= m.data[i];
		h *= FNV64_PRIME;
	}
	vmo_space_stats_t ss = {.size = sizeof ss};
	int r = vmo_space_stats(m.space, &ss);
	if (r) {
		fmap_close(&m);
		return fail_vmo("vmo_space_stats", r);
	}
	printf("%016" PRIx64 "  %s\n", h, path);
	printf("  %" PRIu64 " bytes, %" PRIu64 " pages mapped\n", m.size,
	       m.maplen / VMO_PAGE_SIZE);
	printf("  faults: %" PRIu64 " missing, %" PRIu64 " minor, %" PRIu64
	       " spurious; %" PRIu64 " clusters\n",
	       ss.faults_missing, ss.faults_minor, ss.faults_spurious,
	       ss.clusters);
	printf("  pages filled %" PRIu64 ", mapped %" PRIu64 "; pager calls %"
	       PRIu64 ", %" PRIu64 " bytes; errors %" PRIu64 "\n",
	       ss.pages_filled, ss.pages_mapped, ss.pager_calls,
	       ss.pager_bytes, ss.errors);
	fmap_close(&m);
	if (fflush(stdout) != 0 || ferror(stdout))
		return fail_errno("write error on standard output", NULL);
	return 0;
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_sigbus;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);

	if (argc < 2)
		return usage();
	const char *cmd = argv[1];
	if (!strcmp(cmd, "help") || !strcmp(cmd, "-h") ||
	    !strcmp(cmd, "--help")) {
		if (argc != 2)
			return usage();
		fputs(usage_text, stdout);
		return 0;
	}
	if (!strcmp(cmd, "features")) {
		if (argc != 2)
			return usage();
		return cmd_features();
	}
	if (!strcmp(cmd, "cat")) {
		if (argc != 3)
			return usage();
		return cmd_cat(argv[2]);
	}
	if (!strcmp(cmd, "checksum")) {
		if (argc != 3)
			return usage();
		return cmd_checksum(argv[2]);
	}
	fprintf(stderr, "%s: unknown command '%s'\n", prog, cmd);
	return usage();
}
