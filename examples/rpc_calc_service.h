/* The echo and calculator services of examples/rpc_calc.proto, ready to host on an rpc_server.
 * Used by rpc_echo_server and rpc_demo. */
#ifndef GAIO_EXAMPLES_RPC_CALC_SERVICE_H
#define GAIO_EXAMPLES_RPC_CALC_SERVICE_H

#include "rpc/rpc.h"

/* Host demo.v1.Echo and demo.v1.Calculator on s (before rpc_server_start()). The services are
 * static: nothing to free. Returns 0 or the error of rpc_server_add_service(). */
int calc_services_add(rpc_server *s);

#endif /* GAIO_EXAMPLES_RPC_CALC_SERVICE_H */
