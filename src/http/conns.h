/* conns.h - the connection guard: no client can hold the server's
 * connections hostage.
 *
 * MHD gives each connection a thread and closes one that stays silent for
 * CONNECTION_TIMEOUT, but a client that trickles a byte now and then is never
 * silent. The guard keeps a record per connection with where it is in its
 * request and since when, and a reaper thread shuts down the socket of any
 * connection past its deadline:
 *   idle     (no request started)      CONNECTION_TIMEOUT in all
 *   headers  (request line received)   HEADER_TIMEOUT
 *   body     (headers done, body due)  BODY_TIMEOUT, plus 1 s per BODY_MIN_RATE bytes received
 *   busy     (answering)               none: a model may think; MHD's own timeout
 *                                      covers a client that stops reading
 * When the connection count nears MAX_CONNECTIONS, the longest-idle
 * keep-alive connections are closed first, then the oldest still sending
 * headers, so a new client always finds room. Shutting a socket down (not
 * closing it) makes its thread see end-of-file and clean up as usual; the
 * record is dropped before MHD closes the descriptor, under the same lock,
 * so the reaper never touches a reused one. */
#ifndef SMP_HTTP_CONNS_H
#define SMP_HTTP_CONNS_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

typedef struct conn_rec conn_rec;

typedef enum { CONN_IDLE, CONN_HEADERS, CONN_BODY, CONN_BUSY } conn_state;

int conns_start(const config *c);
void conns_stop(void);

/* A new connection on fd; NULL when memory ran out (it is then unguarded
 * and merely counted by MHD). Sheds others first when near the limit. */
conn_rec *conns_add(int fd);
void conns_remove(conn_rec *r);
void conns_set_state(conn_rec *r, conn_state s);
void conns_body_bytes(conn_rec *r, size_t n);


#endif
