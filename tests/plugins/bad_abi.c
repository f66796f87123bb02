/*
 * bad_abi — plugins whose descriptor the host must refuse. One source, built
 * several times with a different BAD_* definition each (see CMakeLists.txt).
 */
#include <switchboard/plugin.h>

#ifndef BAD_NONE
static int bad_init(sb_plugin *p, const sb_host *host)
{
    return SB_OK;
}
#endif

#if defined(BAD_MAJOR)
SB_PLUGIN_EXPORT const sb_plugin_desc sb_plugin_descriptor = {
    SB_PLUGIN_MAGIC, SB_ABI_MAJOR + 1, 0,       sizeof(sb_plugin_desc),
    "bad-major",     "1.0.0",          bad_init};
#elif defined(BAD_MINOR)
SB_PLUGIN_EXPORT const sb_plugin_desc sb_plugin_descriptor = {
    SB_PLUGIN_MAGIC, SB_ABI_MAJOR, SB_ABI_MINOR + 1, sizeof(sb_plugin_desc),
    "newer-minor",   "1.0.0",      bad_init};
#elif defined(BAD_MAGIC)
SB_PLUGIN_EXPORT const sb_plugin_desc sb_plugin_descriptor = {
    0xdeadbeefu, SB_ABI_MAJOR, SB_ABI_MINOR, sizeof(sb_plugin_desc),
    "bad-magic", "1.0.0",      bad_init};
#elif defined(BAD_SIZE)
SB_PLUGIN_EXPORT const sb_plugin_desc sb_plugin_descriptor = {
    SB_PLUGIN_MAGIC, SB_ABI_MAJOR, SB_ABI_MINOR, 8, "small", "1.0.0", bad_init};
#elif defined(BAD_NONE)
/* Exports something, but not the descriptor. */
SB_PLUGIN_EXPORT int not_a_descriptor = 42;
#else
#error "define one of BAD_MAJOR, BAD_MINOR, BAD_MAGIC, BAD_SIZE, BAD_NONE"
#endif
