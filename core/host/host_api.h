/*
 * host_api — the part of the host table that reaches clients: client info
 * and state, sending to ids, broadcasts, rooms, and the handshake being
 * decided.
 *
 * Every entry takes ids, looks them up in the server's client table, and
 * answers SB_ERR_NOT_FOUND for a stale one. With a [cluster], an id of
 * another node, room messages and broadcasts go through the broker
 * (cluster.h); without one, those paths are never taken. A message for many
 * clients is framed once into a scratch buffer and copied into each client's
 * queue.
 */
#ifndef SB_HOST_API_H
#define SB_HOST_API_H

#include <stdbool.h>

#include <switchboard/plugin.h>

#include "client.h"

struct lws;

/* What a plugin keeps for a client (host table: client_state/data). */
typedef struct sb_client_slot {
    json_t *state;
    void *data;
    sb_destroy_fn destroy;
} sb_client_slot;

/* Releases what the host keeps for a client in each plugin slot (after the
 * disconnect hooks). */
void sb_client_slots_release(sb_client *c);
/* Releases one plugin's slot in every client (before it unloads); with
 * keep_state the JSON state stays for the version that replaced it. */
void sb_api_release_plugin(const sb_plugin *p, bool keep_state);
/* Frees the reused buffers at shutdown. */
void sb_host_api_cleanup(void);

json_t *sb_api_client_info(sb_client_id client);
json_t *sb_api_client_identity(sb_client_id client);
int sb_api_client_close(sb_client_id client, int code, const char *reason);
int sb_api_client_state_set(sb_plugin *p, sb_client_id client, json_t *value);
json_t *sb_api_client_state_get(sb_plugin *p, sb_client_id client);
int sb_api_client_data_set(sb_plugin *p, sb_client_id client, void *ptr,
                           sb_destroy_fn destroy);
void *sb_api_client_data_get(sb_plugin *p, sb_client_id client);
int sb_api_send(sb_plugin *p, sb_client_id to, const char *event, json_t *data);
int sb_api_send_ack(sb_plugin *p, sb_client_id to, const char *event,
                    json_t *data, const char *id, size_t id_len);
int sb_api_send_exception(sb_plugin *p, sb_client_id to, const char *id,
                          size_t id_len, const char *message);
int sb_api_broadcast(sb_plugin *p, const char *event, json_t *data,
                     sb_client_id except);
int sb_api_room_join(sb_plugin *p, sb_client_id client, const char *room);
int sb_api_room_leave(sb_plugin *p, sb_client_id client, const char *room);
int sb_api_room_send(sb_plugin *p, const char *room, const char *event,
                     json_t *data, sb_client_id except);
int sb_api_room_has(sb_plugin *p, sb_client_id client, const char *room);
size_t sb_api_room_count(sb_plugin *p, const char *room);
json_t *sb_api_client_rooms(sb_plugin *p, sb_client_id client);
int sb_api_room_count_cluster(sb_plugin *p, const char *room, sb_presence_fn fn,
                              void *udata);
int sb_api_room_members(sb_plugin *p, const char *room, sb_presence_fn fn,
                        void *udata);
const char *sb_api_handshake_path(const sb_handshake *hs);
const char *sb_api_handshake_query(const sb_handshake *hs);
const char *sb_api_handshake_query_arg(sb_handshake *hs, const char *name);
const char *sb_api_handshake_header(sb_handshake *hs, const char *name);
const char *sb_api_handshake_remote(const sb_handshake *hs);
const char *sb_api_handshake_gateway(const sb_handshake *hs);
int sb_api_handshake_set_identity(sb_handshake *hs, json_t *identity);

/* 1.3: raw gateways (see plugin.h). */
int sb_api_send_frame(sb_plugin *p, sb_client_id to, const void *data,
                      size_t len, int binary);
int sb_api_broadcast_frame(sb_plugin *p, const void *data, size_t len,
                           int binary, sb_client_id except);
int sb_api_room_send_frame(sb_plugin *p, const char *room, const void *data,
                           size_t len, int binary, sb_client_id except);
const char *sb_api_client_subprotocol(sb_client_id client);

#endif
