/*
 * netaddr — small facts about socket addresses that more than one layer
 * needs (HTTP: is the client on this machine; ICE: may a check go there).
 *
 * Threading: pure functions. Ownership: nothing is allocated.
 */
#ifndef CHATD_NETADDR_H
#define CHATD_NETADDR_H

#include <sys/socket.h>

/* True for 127.0.0.0/8, ::1 and an IPv4-mapped 127/8 address; false for
 * anything else, other families included. */
int netaddr_is_loopback(const struct sockaddr *sa);

/* 1 when no socket holds IPv4 `port` of type SOCK_DGRAM or SOCK_STREAM,
 * tried with a bind that does not share (SO_REUSEPORT would let a second
 * chatd share the first one's port and take part of its traffic); 0 when
 * one does (or the probe fails). Call before binding the shared sockets. */
int netaddr_port_free(int socktype, unsigned port);

#endif
