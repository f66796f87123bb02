/*
 * rooms — named sets of clients, shared by every plugin.
 *
 * Owns the rooms and the membership links in both directions (room →
 * members for sending, client → rooms for leaving them all at disconnect
 * and for listing), so joins, leaves and a client's departure cost O(its
 * rooms), never a scan of every room. Knows clients only through the
 * membership fields of sb_client; never sends anything itself.
 */
#ifndef SB_ROOMS_H
#define SB_ROOMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "table.h"

struct sb_client;
struct sb_room_links;

/* One member of a room: the client's list of rooms, and where in it this
 * room is. The client itself is links->owner. */
typedef struct sb_room_member {
    struct sb_room_links *links;
    size_t link; /* index of this room in links->v */
} sb_room_member;

typedef struct sb_room {
    char *name;
    uint32_t hash;
    sb_room_member *members;
    size_t count, cap;
} sb_room;

/* One entry of a client's room list. */
typedef struct sb_room_link {
    sb_room *room;
    size_t member; /* index of the client in room->members */
} sb_room_link;

/* The rooms one client is in; lives in the client, empty is all zeroes
 * but for the owner. */
typedef struct sb_room_links {
    struct sb_client *owner;
    sb_room_link *v;
    uint32_t n, cap;
} sb_room_links;

typedef struct sb_rooms {
    sb_table t; /* name -> sb_room (table.h) */
    /* Told of every join (after it; room->count includes the client) and
     * every leave (after it; room->count == 0 means the room is freed
     * right after the call), when not NULL: the cluster keeps its
     * subscriptions and presence by it. Never called by sb_rooms_free(). */
    void (*changed)(void *ctx, const sb_room *room, struct sb_client *c,
                    bool joined);
    void *changed_ctx;
} sb_rooms;

sb_room *sb_rooms_find(const sb_rooms *r, const char *name);
/* 0 (also when already a member), or -1 when out of memory. */
int sb_rooms_join(sb_rooms *r, sb_room_links *c, const char *name);
/* 0, or -1 when the client was not in the room. */
int sb_rooms_leave(sb_rooms *r, sb_room_links *c, const char *name);
/* Leaves every room (at disconnect) and frees the client's list. */
void sb_rooms_leave_all(sb_rooms *r, sb_room_links *c);
void sb_rooms_free(sb_rooms *r);

#endif
