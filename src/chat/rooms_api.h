/*
 * rooms_api — the HTTP routes of rooms people can run (version 2,
 * docs/PROTOCOL.md section 10): GET/POST /api/rooms, PATCH/DELETE
 * /api/rooms/NAME, POST /api/rooms/NAME/kick and /announce, POST
 * /api/announce; and the pin check of POST /api/rtc.
 *
 * Threading: HTTP threads only (a secret or pin check blocks for tens of
 * milliseconds, at most two at once: auth/secret.h). The routes' table is
 * chat_http_app (routes.c); app is the chat_service.
 */
#ifndef CHATD_CHAT_ROOMS_API_H
#define CHATD_CHAT_ROOMS_API_H

#include "chat/service.h"
#include "http/server.h"

/* http_app.rooms and http_app.announce. */
void chat_http_rooms(void *app, const char *method, const char *room, const char *action,
                     const http_request *req, http_reply *r);
void chat_http_announce(void *app, const http_request *req, http_reply *r);

/* POST /api/rtc into `room`: 1 when the room takes no pin or `pin` (the
 * X-Room-Pin header, may be NULL) is its pin; else 0 after answering 403
 * (or 503 when too many checks run at once). */
int chat_room_pin_check(chat_service *svc, const char *room, const char *pin, http_reply *r);

#endif
