"""rpc_proto_library: protoc-c messages plus gaio-c's typed RPC helpers, as cc_libraries.

    load("@gaio_c//rpc:defs.bzl", "rpc_proto_library")
    rpc_proto_library(name = "kv_proto", srcs = ["kv.proto"])

For every foo.proto in srcs, one protoc run (Debian's protoc, found on PATH) generates:
  - foo.pb-c.h, foo.pb-c.c (protoc-c): the messages, and the services' ProtobufCService stubs;
  - foo.rpc.h, foo.rpc.c (protoc-gen-gaiorpc, rpc/protoc_gen_gaio_rpc.py, run with Debian's
    /usr/bin/python3 and python3-protobuf): with protoc-c's names (package kv.v1, service
    KeyValue, method Get -> kv__v1__key_value__get), per method a `const rpc_method
    ..._method` (its id computed at build time), a blocking `..._call()`, an async `..._submit()`
    into an rpc_cq and the completion's typed `..._reply()`; per service `..._serve(server,
    impl)`; and the file's embedded descriptor `const rpc_proto_file <path>__proto_file`
    (rpc/rpc.h). foo.rpc.h includes foo.pb-c.h and rpc/rpc.h.
Headers are included by their workspace path: `#include "<package>/foo.rpc.h"` (or
`"<package>/foo.pb-c.h"` for the messages alone).

Two targets:
  - `<name>`: everything above; depends on @gaio_c//rpc (the RPC runtime);
  - `<name>_pb`: the protoc-c messages only, without the RPC runtime. //rpc itself uses this
    one for rpc/health.proto (the runtime cannot depend on a library that depends on it); a
    `<name>` target links its `<name>_pb`, so the messages are never compiled twice.
Imports are resolved from the root of the repository that holds the .proto files, so
`import "rpc/health.proto";` works when the importing library lists the imported one in deps
(`@gaio_c//rpc:health_proto`); the embedded descriptor's deps then point to the imported
file's rpc_proto_file. The libraries depend on @protobuf_c//:protobuf_c, which the calling
workspace defines (see the README: Debian's libprotobuf-c-dev as a new_local_repository).
"""

load("@rules_cc//cc:defs.bzl", "cc_library")

def _with_suffix(label, suffix):
    """"//a/b:c" -> "//a/b:c<suffix>"; "//a/b" -> "//a/b:b<suffix>"; ":c" -> ":c<suffix>"."""
    if ":" in label:
        return label + suffix
    return label + ":" + label.split("/")[-1] + suffix

def rpc_proto_library(name, srcs, deps = [], visibility = None, testonly = None):
    """Generates C code for srcs (.proto files of one package) and wraps it in cc_libraries.

    Args:
      name: the cc_library with messages and typed helpers (also `<name>_pb`, the messages
        alone, and a filegroup `<name>_protos` of the .proto files).
      srcs: .proto files in this package.
      deps: other rpc_proto_library targets whose .proto files these import.
      visibility: as for any rule.
      testonly: as for any rule.
    """
    pkg = native.package_name()
    pb_srcs, pb_hdrs, rpc_srcs, rpc_hdrs = [], [], [], []
    for src in srcs:
        if not src.endswith(".proto"):
            fail("rpc_proto_library: %s is not a .proto file" % src)
        base = src[:-len(".proto")]
        pb_srcs.append(base + ".pb-c.c")
        pb_hdrs.append(base + ".pb-c.h")
        rpc_srcs.append(base + ".rpc.c")
        rpc_hdrs.append(base + ".rpc.h")

    native.filegroup(
        name = name + "_protos",
        srcs = srcs + [_with_suffix(d, "_protos") for d in deps],
        visibility = visibility,
        testonly = testonly,
    )

    # The repository root (where protoc's virtual paths start) is what precedes
    # "<package>/<file>" in the location of the first source; the output root is $(RULEDIR)
    # without the package. Both differ between the main repository and an external one
    # (external/<repo>/...), so they are computed in the command, not here. The plugin is a
    # label of this .bzl's repository (@gaio_c when used from another workspace).
    plugin = str(Label("//rpc:protoc_gen_gaio_rpc.py"))
    rel = (pkg + "/" if pkg else "") + srcs[0]
    cmd = " ".join([
        "SRC=$(location %s);" % srcs[0],
        "ROOT=$${SRC%%%s};" % rel,
        "ROOT=$${ROOT:-./};",
        "OUT=$(RULEDIR);",
        "OUT=$${OUT%%%s};" % ("/" + pkg if pkg else ""),
        "protoc --proto_path=$$ROOT --c_out=$$OUT",
        "--plugin=protoc-gen-gaiorpc=$(location %s) --gaiorpc_out=$$OUT" % plugin,
    ] + ["$(location %s)" % s for s in srcs])

    native.genrule(
        name = name + "_gen",
        srcs = srcs + [_with_suffix(d, "_protos") for d in deps],
        outs = pb_srcs + pb_hdrs + rpc_srcs + rpc_hdrs,
        tools = [plugin],
        cmd = cmd,
        message = "protoc-c and protoc-gen-gaiorpc " + " ".join(srcs),
        testonly = testonly,
    )

    cc_library(
        name = name + "_pb",
        srcs = pb_srcs,
        hdrs = pb_hdrs,
        deps = [_with_suffix(d, "_pb") for d in deps] + ["@protobuf_c//:protobuf_c"],
        visibility = visibility,
        testonly = testonly,
    )

    cc_library(
        name = name,
        srcs = rpc_srcs,
        hdrs = rpc_hdrs,
        deps = [":" + name + "_pb", Label("//rpc:rpc")] + deps,
        visibility = visibility,
        testonly = testonly,
    )
