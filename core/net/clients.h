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

#include "table.h"

struct sb_client;

/* Keyed by the client's id (table.h). A client begins with its id, a
 * uint64_t (the connections layer asserts it), which is all this reads. */
typedef struct sb_client_table {
    sb_table t;
} sb_client_table;

/* 0, or -1 when out of memory. */
int sb_clients_add(sb_client_table *t, struct sb_client *c);
struct sb_client *sb_clients_find(const sb_client_table *t, uint64_t id);
void sb_clients_remove(sb_client_table *t, uint64_t id);
void sb_clients_free(sb_client_table *t);

#endif
