"""rpc_proto_library: protoc-c generated messages and services as a cc_library.

    load("@gaio_c//rpc:defs.bzl", "rpc_proto_library")
    rpc_proto_library(name = "kv_proto", srcs = ["kv.proto"])

For every foo.proto in srcs, `protoc --c_out` (Debian's protoc with the protoc-c plugin, found on
PATH) generates foo.pb-c.c and foo.pb-c.h. The header is included by its workspace path:
`#include "<package>/foo.pb-c.h"`. Imports are resolved from the root of the repository that
holds the .proto files, so `import "rpc/health.proto";` works when the importing library lists
the imported one in deps. The library depends on @protobuf_c//:protobuf_c, which the calling
workspace defines (see the README: Debian's libprotobuf-c-dev as a new_local_repository).
"""

load("@rules_cc//cc:defs.bzl", "cc_library")

def _strip(path, suffix):
    return path[:-len(suffix)] if path.endswith(suffix) else path

def rpc_proto_library(name, srcs, deps = [], visibility = None, testonly = None):
    """Generates C code for srcs (.proto files of one package) and wraps it in a cc_library.

    Args:
      name: the cc_library's name (also a filegroup `<name>_protos` of the .proto files).
      srcs: .proto files in this package.
      deps: other rpc_proto_library targets whose .proto files these import.
      visibility: as for any rule.
      testonly: as for any rule.
    """
    pkg = native.package_name()
    c_srcs = []
    c_hdrs = []
    for src in srcs:
        if not src.endswith(".proto"):
            fail("rpc_proto_library: %s is not a .proto file" % src)
        base = src[:-len(".proto")]
        c_srcs.append(base + ".pb-c.c")
        c_hdrs.append(base + ".pb-c.h")

    native.filegroup(
        name = name + "_protos",
        srcs = srcs + [d + "_protos" for d in deps],
        visibility = visibility,
        testonly = testonly,
    )

    # The repository root (where protoc's virtual paths start) is what precedes
    # "<package>/<file>" in the location of the first source; the output root is $(RULEDIR)
    # without the package. Both differ between the main repository and an external one
    # (external/<repo>/...), so they are computed in the command, not here.
    rel = (pkg + "/" if pkg else "") + srcs[0]
    cmd = " ".join([
        "SRC=$(location %s);" % srcs[0],
        "ROOT=$${SRC%%%s};" % rel,
        "ROOT=$${ROOT:-./};",
        "OUT=$(RULEDIR);",
        "OUT=$${OUT%%%s};" % ("/" + pkg if pkg else ""),
        "protoc --proto_path=$$ROOT --c_out=$$OUT",
    ] + ["$(location %s)" % s for s in srcs])

    native.genrule(
        name = name + "_gen",
        srcs = srcs + [d + "_protos" for d in deps],
        outs = c_srcs + c_hdrs,
        cmd = cmd,
        message = "protoc-c " + " ".join(srcs),
        testonly = testonly,
    )

    cc_library(
        name = name,
        srcs = c_srcs,
        hdrs = c_hdrs,
        deps = deps + ["@protobuf_c//:protobuf_c"],
        visibility = visibility,
        testonly = testonly,
    )
