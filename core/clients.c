/*
 * clients — the client table on the core's one hash table (table.h), keyed
 * by the mixed id.
 */
#include "clients.h"

#include "client.h"

static bool id_eq(const void *item, const void *key)
{
    return ((const sb_client *)item)->id == *(const uint64_t *)key;
}

int sb_clients_add(sb_client_table *t, sb_client *c)
{
    return sb_table_add(&t->t, sb_table_mix64(c->id), c);
}

sb_client *sb_clients_find(const sb_client_table *t, uint64_t id)
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
