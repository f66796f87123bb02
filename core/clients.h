/*
 * clients — the table from client id to connection.
 *
 * Plugins keep ids, never pointers; every host call that takes an id looks
 * it up here, so a stale id finds nothing instead of freed memory. Ids only
 * grow and are never reused. Owns only its slot array: the clients live in
 * libwebsockets' per-session memory.
 */
#ifndef SB_CLIENTS_H
#define SB_CLIENTS_H

#include <stddef.h>
#include <stdint.h>

struct sb_client;

typedef struct sb_client_table {
    struct sb_client **slots; /* open addressing on the id, NULL = empty */
    size_t cap;               /* a power of two */
    size_t count;
} sb_client_table;

/* 0, or -1 when out of memory. */
int sb_clients_add(sb_client_table *t, struct sb_client *c);
struct sb_client *sb_clients_find(const sb_client_table *t, uint64_t id);
void sb_clients_remove(sb_client_table *t, uint64_t id);
void sb_clients_free(sb_client_table *t);

#endif
