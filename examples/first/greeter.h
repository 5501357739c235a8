/* The Greeter's implementation, hosted by server.c and greeter_test.cc. */
#ifndef FIRST_GREETER_H
#define FIRST_GREETER_H

#include "examples/first/greeter.rpc.h" /* generated: messages, typed calls, _serve() */

extern First__V1__Greeter_Service greeter;

#endif
