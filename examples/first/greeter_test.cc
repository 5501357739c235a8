// The Greeter in one process: a server on a free port, and a typed call to it.
#include <string>

#include <gtest/gtest.h>

#include "examples/first/greeter.h"

TEST(Greeter, SaysHello) {
  rpc_server *s;
  ASSERT_EQ(rpc_server_create(&s, nullptr), 0);
  ASSERT_EQ(first__v1__greeter__serve(s, &greeter), 0);
  ASSERT_EQ(rpc_server_listen(s, "127.0.0.1:0"), 0);
  ASSERT_EQ(rpc_server_start(s), 0);
  rpc_channel *ch;
  std::string target = "127.0.0.1:" + std::to_string(rpc_server_port(s));
  ASSERT_EQ(rpc_channel_create(&ch, target.c_str(), nullptr), 0);

  First__V1__HelloRequest req = FIRST__V1__HELLO_REQUEST__INIT;
  req.name = const_cast<char *>("test");
  First__V1__HelloReply *reply;
  ASSERT_EQ(first__v1__greeter__hello_call(ch, &req, &reply, nullptr, nullptr, 0), RPC_STATUS_OK);
  EXPECT_STREQ(reply->greeting, "hello, test");
  first__v1__hello_reply__free_unpacked(reply, nullptr);
  rpc_channel_destroy(ch);
  rpc_server_destroy(s);
}
