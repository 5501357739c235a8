"""One RPC test suite run twice: on the automatic backend (io_uring where it starts) and on epoll."""

load("@rules_cc//cc:defs.bzl", "cc_test")
load("//gaio:copts.bzl", "GAIO_TEST_COPTS")

def rpc_suite(name, srcs, deps, data = []):
    """cc_test targets `name` (automatic backend) and `name_epoll` (GAIO_BACKEND=epoll)."""
    for suffix, env in [("", {}), ("_epoll", {"GAIO_BACKEND": "epoll"})]:
        cc_test(
            name = name + suffix,
            size = "medium",
            srcs = srcs,
            copts = GAIO_TEST_COPTS,
            env = env,
            data = data,
            deps = deps + ["@gtest//:gtest", "@gtest//:gtest_main"],
        )
