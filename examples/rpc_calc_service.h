/* The echo and calculator services of examples/rpc_calc.proto, ready to host on an rpc_server.
 * Used by rpc_echo_server and rpc_demo.
 *
 * Say, Add and Divide reply at once. Sleep replies after delay_ms from the service's one timer
 * thread, which holds every pending Sleep in a bounded min-heap: a server admits up to 65,536
 * calls, and a thread per sleeping call would let clients start that many threads. */
#ifndef GAIO_EXAMPLES_RPC_CALC_SERVICE_H
#define GAIO_EXAMPLES_RPC_CALC_SERVICE_H

#include <stddef.h>

#include "rpc/rpc.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SLEEP_MAX_MS 60000       /* longest Sleep; a longer delay_ms is clamped to it */
#define SLEEP_MAX_PENDING 4096u  /* Sleep calls waiting at once; one more: RESOURCE_EXHAUSTED */
#define SLEEP_SWEEP_MS 50        /* while sleeps wait, how often the timer thread looks for
                                    cancelled ones (deadline passed, CANCEL, connection gone) */

typedef struct calc_service calc_service;

/* Create the services and start their timer thread (which blocks every signal, so signals go
 * to the program's own threads). max_pending limits the Sleep calls waiting at once: 1 up to
 * SLEEP_MAX_PENDING, 0 for SLEEP_MAX_PENDING. Stores the service in *out and returns 0, or
 * -EINVAL (max_pending too large), -ENOMEM, or the error of pthread_create. The caller frees it
 * with calc_service_destroy(). */
int calc_service_create(calc_service **out, unsigned max_pending);

/* Host demo.v1.Echo and demo.v1.Calculator on s (before rpc_server_start()). cs must outlive
 * the server. Returns 0 or the error of rpc_server_add_service(). */
int calc_service_add(calc_service *cs, rpc_server *s);

/* Sleep calls waiting now. Any thread. */
size_t calc_service_pending(calc_service *cs);

/* Stop sleeping: fail every pending Sleep with UNAVAILABLE "service stopping", join the timer
 * thread, and from now on fail each new Sleep the same way at once (Say, Add and Divide keep
 * working). For a server that should not wait for long sleeps while it drains. Idempotent; one
 * thread at a time, not from a handler. */
void calc_service_stop(calc_service *cs);

/* Stop (see above) and free the service. Call it after every server hosting it has been shut
 * down: rpc_server_shutdown() waits for the pending sleeps, which the timer thread completes
 * within SLEEP_SWEEP_MS once the server has marked them cancelled. NULL is a no-op. */
void calc_service_destroy(calc_service *cs);

#ifdef __cplusplus
}
#endif

#endif /* GAIO_EXAMPLES_RPC_CALC_SERVICE_H */
