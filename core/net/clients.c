/*
 * clients — the client table on the core's one hash table (table.h), keyed
 * by the mixed id.
 */
#include "clients.h"

/* Every item begins with its id (clients.h). */
static bool id_eq(const void *item, const void *key)
{
    return *(const uint64_t *)item == *(const uint64_t *)key;
}

int sb_clients_add(sb_client_table *t, struct sb_client *c)
{
    return sb_table_add(&t->t, sb_table_mix64(*(const uint64_t *)c), c);
}

struct sb_client *sb_clients_find(const sb_client_table *t, uint64_t id)
{
    if (!id)
        return NULL;
    return sb_table_find(&t->t, sb_table_mix64(id), id_eq, &id);
}

void sb_clients_remove(sb_client_table *t, uint64_t id)
{
    sb_table_remove(&t->t, sb_table_mix64(id), id_eq, &id);
}

void sb_clients_free(sb_client_table *t)
{
    sb_table_free(&t->t);
}
