/* crash — see crash.h. */
#include "crash.h"

sb_crash_context sb_crash_ctx;

void sb_crash_install(void)
{
}
