/*
 * alloc_count — an LD_PRELOAD shim that counts the heap allocations of the
 * process it is loaded into, so a test can prove that the server allocates
 * nothing per message in its steady state.
 *
 * Every malloc-family call is counted and forwarded to glibc's own
 * __libc_* functions (dlsym would itself allocate while the shim starts).
 * On SIGUSR2 the count so far is written, in decimal, to the file named by
 * $SB_ALLOC_COUNT_FILE, with async-signal-safe calls only.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t align, size_t size);
/* Not declared by <stdlib.h> in C11 mode; the shim defines it all the same. */
void *memalign(size_t align, size_t size);

static atomic_ulong allocations;
static char count_file[512];

#define EXPORT __attribute__((visibility("default")))

EXPORT void *malloc(size_t size)
{
    atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
    return __libc_malloc(size);
}

EXPORT void *calloc(size_t n, size_t size)
{
    atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
    return __libc_calloc(n, size);
}

EXPORT void *realloc(void *p, size_t size)
{
    atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
    return __libc_realloc(p, size);
}

EXPORT void *memalign(size_t align, size_t size)
{
    atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
    return __libc_memalign(align, size);
}

EXPORT void *aligned_alloc(size_t align, size_t size)
{
    return memalign(align, size);
}

EXPORT int posix_memalign(void **out, size_t align, size_t size)
{
    void *p = memalign(align, size);
    if (!p)
        return 12; /* ENOMEM */
    *out = p;
    return 0;
}

static void on_usr2(int sig)
{
    (void)sig;
    char digits[32];
    unsigned long n = atomic_load(&allocations);
    int i = (int)sizeof(digits);
    digits[--i] = '\n';
    do {
        digits[--i] = (char)('0' + n % 10);
        n /= 10;
    } while (n && i > 0);
    int fd = open(count_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    ssize_t w = write(fd, digits + i, sizeof(digits) - (size_t)i);
    (void)w;
    close(fd);
}

__attribute__((constructor)) static void alloc_count_start(void)
{
    const char *f = getenv("SB_ALLOC_COUNT_FILE");
    if (!f || strlen(f) >= sizeof(count_file))
        return;
    memcpy(count_file, f, strlen(f) + 1);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr2;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR2, &sa, NULL);
}
