/*
 * rooms — a hash table of rooms; each room an array of members, each client
 * an array of links back. Removal swaps the last element into the hole and
 * fixes the one back-link that moved, so every operation is O(1) beyond
 * finding the room.
 */
#include "rooms.h"

#include <stdlib.h>
#include <string.h>

#include "hash.h"

#include "client.h"

static size_t find_slot(const sb_rooms *r, const char *name, uint32_t h)
{
    size_t i = h & (r->cap - 1);
    while (r->slots[i] &&
           (r->slots[i]->hash != h || strcmp(r->slots[i]->name, name) != 0))
        i = (i + 1) & (r->cap - 1);
    return i;
}

sb_room *sb_rooms_find(const sb_rooms *r, const char *name)
{
    if (!r->cap)
        return NULL;
    return r->slots[find_slot(r, name, sb_hash_bytes(name, strlen(name)))];
}

static int grow(sb_rooms *r)
{
    size_t cap = r->cap ? r->cap * 2 : 16;
    sb_room **slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -1;
    for (size_t i = 0; i < r->cap; i++) {
        sb_room *room = r->slots[i];
        if (!room)
            continue;
        size_t j = room->hash & (cap - 1);
        while (slots[j])
            j = (j + 1) & (cap - 1);
        slots[j] = room;
    }
    free(r->slots);
    r->slots = slots;
    r->cap = cap;
    return 0;
}

/* Removes an empty room from the table (backward-shift deletion). */
static void delete_room(sb_rooms *r, sb_room *room)
{
    size_t mask = r->cap - 1;
    size_t i = find_slot(r, room->name, room->hash);
    r->slots[i] = NULL;
    r->count--;
    for (size_t j = (i + 1) & mask; r->slots[j]; j = (j + 1) & mask) {
        size_t home = r->slots[j]->hash & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            r->slots[i] = r->slots[j];
            r->slots[j] = NULL;
            i = j;
        }
    }
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

int sb_rooms_join(sb_rooms *r, sb_client *c, const char *name)
{
    for (size_t i = 0; i < c->nrooms; i++)
        if (strcmp(c->rooms[i].room->name, name) == 0)
            return 0;
    if ((r->count + 1) * 2 > r->cap && grow(r) < 0)
        return -1;
    uint32_t h = sb_hash_bytes(name, strlen(name));
    size_t slot = find_slot(r, name, h);
    sb_room *room = r->slots[slot];
    if (!room) {
        room = calloc(1, sizeof(*room));
        if (!room || !(room->name = strdup(name))) {
            free(room);
            return -1;
        }
        room->hash = h;
        r->slots[slot] = room;
        r->count++;
    }
    size_t ccap = c->rooms_cap;
    if (reserve((void **)&room->members, &room->cap, room->count,
                sizeof(*room->members)) < 0 ||
        reserve((void **)&c->rooms, &ccap, c->nrooms, sizeof(*c->rooms)) < 0) {
        if (room->count == 0)
            delete_room(r, room);
        return -1;
    }
    c->rooms_cap = (uint32_t)ccap;
    room->members[room->count] = (sb_room_member){c, c->nrooms};
    c->rooms[c->nrooms] = (sb_room_link){room, room->count};
    room->count++;
    c->nrooms++;
    return 0;
}

/* Drops link `i` of client c: from the room, then from c's own list. */
static void unlink_at(sb_rooms *r, sb_client *c, size_t i)
{
    sb_room_link link = c->rooms[i];
    sb_room *room = link.room;
    size_t last = room->count - 1;
    if (link.member != last) {
        sb_room_member moved = room->members[last];
        room->members[link.member] = moved;
        moved.client->rooms[moved.link].member = link.member;
    }
    room->count--;
    size_t clast = c->nrooms - 1;
    if (i != clast) {
        sb_room_link moved = c->rooms[clast];
        c->rooms[i] = moved;
        moved.room->members[moved.member].link = i;
    }
    c->nrooms--;
    if (room->count == 0)
        delete_room(r, room);
}

int sb_rooms_leave(sb_rooms *r, sb_client *c, const char *name)
{
    for (size_t i = 0; i < c->nrooms; i++) {
        if (strcmp(c->rooms[i].room->name, name) == 0) {
            unlink_at(r, c, i);
            return 0;
        }
    }
    return -1;
}

void sb_rooms_leave_all(sb_rooms *r, sb_client *c)
{
    while (c->nrooms)
        unlink_at(r, c, c->nrooms - 1);
    free(c->rooms);
    c->rooms = NULL;
    c->rooms_cap = 0;
}

void sb_rooms_free(sb_rooms *r)
{
    for (size_t i = 0; i < r->cap; i++) {
        if (r->slots[i]) {
            free(r->slots[i]->members);
            free(r->slots[i]->name);
            free(r->slots[i]);
        }
    }
    free(r->slots);
    r->slots = NULL;
    r->cap = r->count = 0;
}
