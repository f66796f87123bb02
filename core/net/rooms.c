/*
 * rooms — rooms by name in the core's table (table.h); each room an array
 * of members, each client an array of links back. Removal swaps the last
 * element into the hole and fixes the one back-link that moved, so every
 * operation is O(1) beyond finding the room.
 */
#include "rooms.h"

#include <stdlib.h>
#include <string.h>

#include "hash.h"

static bool name_eq(const void *item, const void *key)
{
    return strcmp(((const sb_room *)item)->name, key) == 0;
}

sb_room *sb_rooms_find(const sb_rooms *r, const char *name)
{
    return sb_table_find(&r->t, sb_hash_bytes(name, strlen(name)), name_eq,
                         name);
}

/* Removes an empty room from the table and frees it. */
static void delete_room(sb_rooms *r, sb_room *room)
{
    sb_table_remove(&r->t, room->hash, name_eq, room->name);
    free(room->members);
    free(room->name);
    free(room);
}

static int reserve(void **arr, size_t *cap, size_t count, size_t size)
{
    if (count < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 4;
    void *p = realloc(*arr, ncap * size);
    if (!p)
        return -1;
    *arr = p;
    *cap = ncap;
    return 0;
}

int sb_rooms_join(sb_rooms *r, sb_room_links *c, const char *name)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->v[i].room->name, name) == 0)
            return 0;
    uint32_t h = sb_hash_bytes(name, strlen(name));
    sb_room *room = sb_table_find(&r->t, h, name_eq, name);
    if (!room) {
        room = calloc(1, sizeof(*room));
        if (!room || !(room->name = strdup(name)) ||
            sb_table_add(&r->t, h, room) < 0) {
            if (room)
                free(room->name);
            free(room);
            return -1;
        }
        room->hash = h;
    }
    size_t ccap = c->cap;
    if (reserve((void **)&room->members, &room->cap, room->count,
                sizeof(*room->members)) < 0 ||
        reserve((void **)&c->v, &ccap, c->n, sizeof(*c->v)) < 0) {
        if (room->count == 0)
            delete_room(r, room);
        return -1;
    }
    c->cap = (uint32_t)ccap;
    room->members[room->count] = (sb_room_member){c, c->n};
    c->v[c->n] = (sb_room_link){room, room->count};
    room->count++;
    c->n++;
    if (r->changed)
        r->changed(r->changed_ctx, room, c->owner, true);
    return 0;
}

/* Drops link `i` of client c: from the room, then from c's own list. */
static void unlink_at(sb_rooms *r, sb_room_links *c, size_t i)
{
    sb_room_link link = c->v[i];
    sb_room *room = link.room;
    size_t last = room->count - 1;
    if (link.member != last) {
        sb_room_member moved = room->members[last];
        room->members[link.member] = moved;
        moved.links->v[moved.link].member = link.member;
    }
    room->count--;
    size_t clast = c->n - 1;
    if (i != clast) {
        sb_room_link moved = c->v[clast];
        c->v[i] = moved;
        moved.room->members[moved.member].link = i;
    }
    c->n--;
    if (r->changed)
        r->changed(r->changed_ctx, room, c->owner, false);
    if (room->count == 0)
        delete_room(r, room);
}

int sb_rooms_leave(sb_rooms *r, sb_room_links *c, const char *name)
{
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->v[i].room->name, name) == 0) {
            unlink_at(r, c, i);
            return 0;
        }
    }
    return -1;
}

void sb_rooms_leave_all(sb_rooms *r, sb_room_links *c)
{
    while (c->n)
        unlink_at(r, c, c->n - 1);
    free(c->v);
    c->v = NULL;
    c->cap = 0;
}

void sb_rooms_free(sb_rooms *r)
{
    size_t pos = 0;
    for (sb_room *room; (room = sb_table_next(&r->t, &pos));) {
        free(room->members);
        free(room->name);
        free(room);
    }
    sb_table_free(&r->t);
}
