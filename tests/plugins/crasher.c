/*
 * crasher — a plugin that takes the process down, so that the crash report
 * (core/crash.c) can be tested: `crash` dereferences NULL (SIGSEGV), `abort`
 * calls abort() (SIGABRT), `recurse` overflows the stack (SIGSEGV, which
 * only a handler on an alternate stack can report), `jump` calls code that
 * is no longer mapped (what a pointer into an unloaded plugin does: the
 * unwinder cannot start from such a frame), `destructor` keeps client data
 * whose destructor dereferences NULL when the client leaves. The calls go
 * through a few functions that the compiler must keep, so the backtrace has
 * frames of the plugin's own.
 */
#include <stdlib.h>
#include <sys/mman.h>

#include <switchboard/plugin.h>

/* noinline + volatile: the fault must happen, and in a frame of its own.
 * no_sanitize: in the UBSan build the null check would end the process
 * before the fault, and the real fault is what this plugin is for. */
__attribute__((noinline, no_sanitize("undefined"))) static int
crasher_touch(volatile int *where)
{
    return *where;
}

static int on_crash(sb_plugin *p, sb_message *m, void *ud)
{
    int *volatile nowhere = NULL;
    return crasher_touch(nowhere);
}

/* Each frame keeps a live array, so the recursion cannot become a loop;
 * the volatile flag hides from the compiler that it never ends. */
static volatile int forever = 1;

__attribute__((noinline)) static int crasher_recurse(int depth)
{
    volatile char pad[1024];
    pad[0] = (char)depth;
    if (!forever)
        return pad[0];
    return crasher_recurse(depth + 1) + pad[0];
}

static int on_recurse(sb_plugin *p, sb_message *m, void *ud)
{
    return crasher_recurse(0);
}

static int on_abort(sb_plugin *p, sb_message *m, void *ud)
{
    abort();
}

/* A page that was mapped and is not any more: calling into it faults on the
 * instruction fetch, with the return address on the stack. */
__attribute__((noinline)) static int crasher_jump(void)
{
    void *page = mmap(NULL, 4096, PROT_READ | PROT_EXEC,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED)
        return SB_ERR_NOMEM;
    munmap(page, 4096);
    int (*volatile gone)(void) = (int (*)(void))page;
    return gone() + 1; /* + 1: a call, not a tail jump */
}

static int on_jump(sb_plugin *p, sb_message *m, void *ud)
{
    return crasher_jump();
}

__attribute__((noinline)) static void crasher_destroy(void *ptr)
{
    int *volatile nowhere = ptr ? NULL : ptr;
    (void)crasher_touch(nowhere);
}

static int on_destructor(sb_plugin *p, sb_message *m, void *ud)
{
    const sb_host *host = ud;
    static int kept = 1;
    int rc = host->client_data_set(p, host->message_client(m), &kept,
                                   crasher_destroy);
    return rc == SB_OK ? host->reply(m, "kept", NULL) : rc;
}

static int crasher_init(sb_plugin *p, const sb_host *host)
{
    if (host->subscribe(p, "crash", on_crash, NULL) != SB_OK ||
        host->subscribe(p, "abort", on_abort, NULL) != SB_OK ||
        host->subscribe(p, "recurse", on_recurse, NULL) != SB_OK ||
        host->subscribe(p, "jump", on_jump, NULL) != SB_OK ||
        host->subscribe(p, "destructor", on_destructor, (void *)host) != SB_OK)
        return host->plugin_error(p, "cannot subscribe");
    return SB_OK;
}

SB_PLUGIN_DEFINE("crasher", "1.0.0", crasher_init);
