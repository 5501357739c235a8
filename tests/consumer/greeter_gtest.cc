// A googletest of the user project: the Greeter service on a server, called through a channel.
#include "gtest/gtest.h"
#include "greeter.pb-c.h"
#include "rpc/rpc.h"

namespace {

void greet_hello(Consumer__V1__Greeter_Service *, const Consumer__V1__HelloRequest *in,
           Consumer__V1__HelloReply_Closure closure, void *data) {
  std::string text = std::string("hello, ") + in->name;
  Consumer__V1__HelloReply out = CONSUMER__V1__HELLO_REPLY__INIT;
  out.greeting = const_cast<char *>(text.c_str());
  closure(&out, data);
}

TEST(Greeter, SaysHello) {
  Consumer__V1__Greeter_Service greeter = CONSUMER__V1__GREETER__INIT(greet_);
  rpc_server *s = nullptr;
  ASSERT_EQ(0, rpc_server_create(&s, nullptr));
  ASSERT_EQ(0, rpc_server_add_service(s, &greeter.base));
  ASSERT_EQ(0, rpc_server_listen(s, "127.0.0.1:0"));
  ASSERT_EQ(0, rpc_server_start(s));
  rpc_channel *ch = nullptr;
  std::string target = "127.0.0.1:" + std::to_string(rpc_server_port(s));
  ASSERT_EQ(0, rpc_channel_create(&ch, target.c_str(), nullptr));
  rpc_method m;
  ASSERT_EQ(0, rpc_method_find(&m, &consumer__v1__greeter__descriptor, "Hello"));
  Consumer__V1__HelloRequest req = CONSUMER__V1__HELLO_REQUEST__INIT;
  req.name = const_cast<char *>("gtest");
  ProtobufCMessage *reply = nullptr;
  ASSERT_EQ(RPC_STATUS_OK, rpc_channel_call(ch, &m, &req.base, 5000, &reply, nullptr, 0));
  EXPECT_STREQ("hello, gtest", reinterpret_cast<Consumer__V1__HelloReply *>(reply)->greeting);
  protobuf_c_message_free_unpacked(reply, nullptr);
  rpc_channel_destroy(ch);
  rpc_server_destroy(s);
}

}  // namespace
