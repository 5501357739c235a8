/* first.v1.Greeter: Hello answers "hello, <name>". */
#include <stdio.h>

#include "examples/first/greeter.h"

static void greeter_hello(First__V1__Greeter_Service *svc, const First__V1__HelloRequest *in,
                          First__V1__HelloReply_Closure closure, void *data) {
  char text[128];
  snprintf(text, sizeof text, "hello, %s", in->name);
  First__V1__HelloReply out = FIRST__V1__HELLO_REPLY__INIT;
  out.greeting = text;
  closure(&out, data); /* the reply is packed here: it may live on the stack */
}

First__V1__Greeter_Service greeter = FIRST__V1__GREETER__INIT(greeter_);
