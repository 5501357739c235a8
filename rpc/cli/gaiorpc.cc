// gaiorpc: a command-line client for gaio-c RPC servers (a grpcurl for gaio-c). Lists and
// describes services through the server's reflection service (or --proto files), calls a
// method with a request written as JSON or protobuf text format, checks health and prints the
// admin service's stats. Usage: gaiorpc --help.
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <google/protobuf/compiler/importer.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/descriptor_database.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/json_util.h>

#include "rpc/admin.pb.h"
#include "rpc/cli/stats_text.h"
#include "rpc/health.pb.h"
#include "rpc/reflection.pb.h"
#include "rpc/rpc.h"

namespace gaiorpc {
namespace {

namespace pb = google::protobuf;

// Exit statuses besides 0 (OK) and 1..16 (the status code the server answered).
enum Exit {
  EXIT_USAGE = 64,        // bad command line
  EXIT_DATA = 65,         // a request that does not parse, an unknown method or symbol in
                          // --proto files, a --proto file that does not compile
  EXIT_NO_INPUT = 66,     // a -d @file or --proto file that cannot be read
  EXIT_BAD_ADDRESS = 68,  // an address the channel cannot use
  EXIT_NOT_SERVING = 69,  // health: the server answered NOT_SERVING
  EXIT_LOCAL = 70,        // the call could not be made (a negative errno from the library)
};

constexpr int kDefaultTimeoutMs = 10000;
constexpr size_t kMaxInputBytes = 64u << 20;  // a request read from a file or stdin

const char kUsage[] =
    "usage: gaiorpc [options] ADDR COMMAND [ARGS]\n"
    "\n"
    "ADDR is host:port or unix:/path. Commands:\n"
    "  list                      the services the server hosts\n"
    "  list SERVICE              its methods, as pkg.Service/Method\n"
    "  describe SYMBOL           a service, method or message (pkg.Service/Method also works)\n"
    "  call pkg.Service/Method [REQUEST]\n"
    "                            call a method; REQUEST is JSON (or text format with\n"
    "                            --format=text), @FILE, or - for stdin; none: an empty message\n"
    "  health [SERVICE]          gaio.health.v1.Health/Check: prints SERVING or NOT_SERVING\n"
    "  stats [--prometheus]      gaio.admin.v1.Admin/GetStats: a table, or the Prometheus\n"
    "                            text exposition format\n"
    "\n"
    "Options (anywhere on the line):\n"
    "  --timeout MS              deadline of each call and of connecting (default 10000)\n"
    "  -H, --header KEY:VALUE    a request header (metadata) for every call; repeatable\n"
    "                            (default none). KEY is lower-cased\n"
    "  -d, --data REQUEST        the request of `call` (default: the positional REQUEST)\n"
    "  --format json|text        request and reply format (default json)\n"
    "  --proto FILE              read services from this .proto file instead of the server's\n"
    "                            reflection service; repeatable (default none: reflection)\n"
    "  -I, --import-path DIR     where --proto files and their imports are found;\n"
    "                            repeatable (default .)\n"
    "  --prometheus              stats in the Prometheus text format (default: a table)\n"
    "  -v, --verbose             print the reply's trailers on stderr (default off)\n"
    "  -h, --help                this text\n"
    "\n"
    "Exit status: 0 OK; 1-16 the status code the server answered (5 NOT_FOUND, 12\n"
    "UNIMPLEMENTED, 14 UNAVAILABLE, ...); 64 bad command line; 65 a request that does not\n"
    "parse, or an unknown method in --proto files; 66 an input file that cannot be read;\n"
    "68 a bad address; 69 health answered NOT_SERVING; 70 the call could not be made.\n";

struct Options {
  int timeout_ms = kDefaultTimeoutMs;
  std::vector<std::pair<std::string, std::string>> headers;
  std::vector<std::string> protos, import_paths;
  std::string format = "json";
  std::string data;
  bool has_data = false;
  bool prometheus = false;
  bool verbose = false;
  std::vector<std::string> args;  // ADDR COMMAND ARGS...
};

// An error to report: a message for stderr and the exit status.
struct Failure {
  int exit;
  std::string message;
};

int Usage(const std::string &why) {
  fprintf(stderr, "gaiorpc: %s\n(gaiorpc --help for usage)\n", why.c_str());
  return EXIT_USAGE;
}

// Parse argv into o. Returns -1 to go on, or an exit status (help: 0, bad usage: 64).
int ParseArgs(int argc, char **argv, Options *o) {
  bool only_args = false;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (only_args || a.size() < 2 || a[0] != '-') {
      o->args.push_back(a);
      continue;
    }
    if (a == "--") {
      only_args = true;
      continue;
    }
    std::string name = a, value;
    bool inline_value = false;
    size_t eq = a.find('=');
    if (a.compare(0, 2, "--") == 0 && eq != std::string::npos) {
      name = a.substr(0, eq);
      value = a.substr(eq + 1);
      inline_value = true;
    }
    auto take = [&](std::string *out) {
      if (inline_value) {
        *out = value;
        return true;
      }
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    std::string v;
    if (name == "-h" || name == "--help") {
      fputs(kUsage, stdout);
      return 0;
    } else if (name == "--prometheus") {
      o->prometheus = true;
    } else if (name == "-v" || name == "--verbose") {
      o->verbose = true;
    } else if (!take(&v)) {
      return Usage(name == a ? "unknown option or missing value: " + a : "bad option: " + a);
    } else if (name == "--timeout") {
      char *end = nullptr;
      errno = 0;
      long ms = strtol(v.c_str(), &end, 10);
      if (v.empty() || *end || errno || ms <= 0 || ms > 86400000)
        return Usage("--timeout wants milliseconds, 1..86400000: " + v);
      o->timeout_ms = static_cast<int>(ms);
    } else if (name == "-H" || name == "--header") {
      size_t colon = v.find(':');
      if (colon == std::string::npos) return Usage("-H wants KEY:VALUE: " + v);
      std::string key = v.substr(0, colon), val = v.substr(colon + 1);
      for (char &c : key) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
      if (!val.empty() && val[0] == ' ') val.erase(0, 1);
      if (!rpc_metadata_key_ok(key.data(), key.size()))
        return Usage("bad header key (1-255 of a-z 0-9 . _ -): " + key);
      if (val.size() > RPC_METADATA_MAX_VALUE) return Usage("header value too long: " + key);
      o->headers.emplace_back(key, val);
    } else if (name == "-d" || name == "--data") {
      o->data = v;
      o->has_data = true;
    } else if (name == "--format") {
      if (v != "json" && v != "text") return Usage("--format is json or text: " + v);
      o->format = v;
    } else if (name == "--proto") {
      o->protos.push_back(v);
    } else if (name == "-I" || name == "--import-path") {
      o->import_paths.push_back(v);
    } else {
      return Usage("unknown option: " + name);
    }
  }
  if (o->args.size() < 2) return Usage("need ADDR and COMMAND");
  return -1;
}

// ---- Calls --------------------------------------------------------------------------------

class Client {
 public:
  explicit Client(const Options &o) : o_(o) {
    for (const auto &h : o.headers)
      md_.push_back({h.first.data(), h.first.size(), h.second.data(), h.second.size()});
    call_opts_.timeout_ms = o.timeout_ms;
    call_opts_.metadata = md_.empty() ? nullptr : md_.data();
    call_opts_.metadata_count = md_.size();
  }
  ~Client() { rpc_channel_destroy(ch_); }

  int Connect(const std::string &addr) {
    rpc_channel_options co = {};
    co.connect_timeout_ms = o_.timeout_ms;
    co.default_timeout_ms = o_.timeout_ms;
    co.max_body = RPC_MAX_BODY_HARD;
    return rpc_channel_create(&ch_, addr.c_str(), &co);
  }

  // Call method with the packed request; the reply's bytes in *reply. Returns 0 or the exit
  // status with the failure in *f.
  int Call(const std::string &method, const std::string &req, std::string *reply, Failure *f) {
    uint8_t *out = nullptr;
    size_t len = 0;
    char msg[RPC_MAX_ERROR_MESSAGE + 1];
    rpc_metadata trailers;
    int st = rpc_channel_call_bytes(ch_, method.c_str(), req.data(), req.size(), &call_opts_,
                                    &out, &len, msg, sizeof msg, &trailers);
    if (o_.verbose) PrintTrailers(trailers);
    rpc_metadata_free(&trailers);
    if (st < 0) {
      *f = {EXIT_LOCAL, method + ": call not made: " + strerror(-st)};
      return f->exit;
    }
    if (st != RPC_STATUS_OK) {
      *f = {st, method + ": " + rpc_status_name(st) + (msg[0] ? std::string(": ") + msg : "")};
      return st;
    }
    reply->assign(reinterpret_cast<const char *>(out), len);
    free(out);
    return 0;
  }

  // A call with generated C++ messages.
  int CallMessage(const std::string &method, const pb::Message &req, pb::Message *reply,
                  Failure *f) {
    std::string bytes;
    int rc = Call(method, req.SerializeAsString(), &bytes, f);
    if (rc == 0 && !reply->ParseFromString(bytes)) {
      *f = {RPC_STATUS_INTERNAL, method + ": the reply does not parse as " + reply->GetTypeName()};
      return f->exit;
    }
    return rc;
  }

 private:
  static void PrintTrailers(const rpc_metadata &md) {
    size_t pos = 0;
    rpc_md e;
    while (rpc_metadata_next(&md, &pos, &e))
      fprintf(stderr, "trailer %.*s: %.*s\n", static_cast<int>(e.key_len), e.key,
              static_cast<int>(e.value_len), static_cast<const char *>(e.value));
  }

  const Options &o_;
  rpc_channel *ch_ = nullptr;
  std::vector<rpc_md> md_;
  rpc_call_options call_opts_ = {};
};

// ---- Descriptors: the server's reflection service, or --proto files -------------------------

// protoc fills in json_name for every field of the descriptors it writes out; drop the ones
// that are the default (lowerCamelCase of the name), so that `describe` prints what the .proto
// file says.
std::string DefaultJsonName(const std::string &name) {
  std::string out;
  bool upper = false;
  for (char c : name) {
    if (c == '_') {
      upper = true;
      continue;
    }
    out += upper ? static_cast<char>(toupper(static_cast<unsigned char>(c))) : c;
    upper = false;
  }
  return out;
}

void DropDefaultJsonNames(pb::DescriptorProto *m) {
  for (auto &f : *m->mutable_field())
    if (f.json_name() == DefaultJsonName(f.name())) f.clear_json_name();
  for (auto &n : *m->mutable_nested_type()) DropDefaultJsonNames(&n);
}

// A descriptor database that asks the server's reflection service, file by file, and keeps
// what it got. The last failure is kept for the error message.
class ReflectionDatabase : public pb::DescriptorDatabase {
 public:
  explicit ReflectionDatabase(Client *c) : c_(c) {}

  bool FindFileByName(const std::string &name, pb::FileDescriptorProto *out) override {
    if (Copy(name, out)) return true;
    gaio::reflection::v1::FileRequest req;
    req.set_filename(name);
    return Fetch(req, out);
  }
  bool FindFileContainingSymbol(const std::string &symbol, pb::FileDescriptorProto *out) override {
    gaio::reflection::v1::FileRequest req;
    req.set_symbol(symbol);
    return Fetch(req, out);
  }
  bool FindFileContainingExtension(const std::string &, int, pb::FileDescriptorProto *) override {
    return false;
  }
  const Failure &failure() const { return failure_; }

 private:
  bool Copy(const std::string &name, pb::FileDescriptorProto *out) {
    auto it = files_.find(name);
    if (it == files_.end()) return false;
    *out = it->second;
    return true;
  }

  // The answer lists the file asked for last, after its imports.
  bool Fetch(const gaio::reflection::v1::FileRequest &req, pb::FileDescriptorProto *out) {
    gaio::reflection::v1::FileResponse resp;
    if (c_->CallMessage("gaio.reflection.v1.Reflection/FileContainingSymbol", req, &resp,
                        &failure_) != 0)
      return false;
    std::string last;
    for (const std::string &bytes : resp.file_descriptor_proto()) {
      pb::FileDescriptorProto fd;
      if (!fd.ParseFromString(bytes)) {
        failure_ = {RPC_STATUS_INTERNAL, "reflection: a descriptor does not parse"};
        return false;
      }
      for (auto &m : *fd.mutable_message_type()) DropDefaultJsonNames(&m);
      last = fd.name();
      files_.emplace(last, std::move(fd));
    }
    return !last.empty() && Copy(last, out);
  }

  Client *c_;
  std::map<std::string, pb::FileDescriptorProto> files_;
  Failure failure_ = {EXIT_DATA, ""};
};

class ImportErrors : public pb::compiler::MultiFileErrorCollector {
 public:
  void AddError(const std::string &file, int line, int column, const std::string &msg) override {
    text += file + ":" + std::to_string(line + 1) + ":" + std::to_string(column + 1) + ": " + msg +
            "\n";
  }
  std::string text;
};

// Where names are looked up: --proto files, or reflection; the services built into this
// program (health, admin, reflection) are always known.
class Descriptors {
 public:
  explicit Descriptors(Client *c)
      : refl_(c), builtin_(*pb::DescriptorPool::generated_pool()), merged_(&builtin_, &refl_) {}

  // Load --proto files. Returns 0 or an exit status with *f set.
  int LoadProtos(const Options &o, Failure *f) {
    if (o.protos.empty()) {
      pool_ = std::make_unique<pb::DescriptorPool>(&merged_);
      return 0;
    }
    std::vector<std::string> paths = o.import_paths;
    if (paths.empty()) paths.push_back(".");
    for (const auto &p : paths) tree_.MapPath("", p);
    tree_.MapPath("", "/usr/include");  // google/protobuf/*.proto (libprotobuf-dev)
    importer_ = std::make_unique<pb::compiler::Importer>(&tree_, &errors_);
    for (const auto &p : o.protos) {
      std::string virt, shadow;
      if (access(p.c_str(), R_OK) != 0) {
        *f = {EXIT_NO_INPUT, p + ": " + strerror(errno)};
        return f->exit;
      }
      if (tree_.DiskFileToVirtualFile(p, &virt, &shadow) != pb::compiler::DiskSourceTree::SUCCESS) {
        *f = {EXIT_DATA, p + ": not under an import path (-I)"};
        return f->exit;
      }
      const pb::FileDescriptor *fd = importer_->Import(virt);
      if (!fd) {
        *f = {EXIT_DATA, "--proto " + p + " does not compile:\n" + errors_.text};
        return f->exit;
      }
      files_.push_back(fd);
    }
    return 0;
  }

  bool reflection() const { return !importer_; }
  const std::vector<const pb::FileDescriptor *> &files() const { return files_; }

  // Each Find* looks in the main pool, then in the built-in services. On a miss, *f says why.
  template <typename T>
  const T *Find(const T *(pb::DescriptorPool::*find)(const std::string &) const,
                const std::string &name, Failure *f) {
    const pb::DescriptorPool *main = importer_ ? importer_->pool() : pool_.get();
    const T *d = (main->*find)(name);
    if (!d) d = (pb::DescriptorPool::generated_pool()->*find)(name);
    if (!d) {
      if (reflection() && !refl_.failure().message.empty()) *f = refl_.failure();
      else *f = {EXIT_DATA, "unknown symbol: " + name};
    }
    return d;
  }

 private:
  ReflectionDatabase refl_;
  pb::DescriptorPoolDatabase builtin_;
  pb::MergedDescriptorDatabase merged_;
  std::unique_ptr<pb::DescriptorPool> pool_;
  pb::compiler::DiskSourceTree tree_;
  ImportErrors errors_;
  std::unique_ptr<pb::compiler::Importer> importer_;
  std::vector<const pb::FileDescriptor *> files_;
};

// "pkg.Service/Method" -> "pkg.Service.Method".
std::string Dotted(std::string name) {
  std::replace(name.begin(), name.end(), '/', '.');
  return name;
}

// ---- Subcommands --------------------------------------------------------------------------

int List(Client *c, Descriptors *d, const Options &o, Failure *f) {
  if (o.args.size() > 3) return Usage("list takes at most one SERVICE");
  if (o.args.size() == 3) {
    const pb::ServiceDescriptor *s = d->Find(&pb::DescriptorPool::FindServiceByName, o.args[2], f);
    if (!s) return f->exit;
    for (int i = 0; i < s->method_count(); i++)
      printf("%s/%s\n", s->full_name().c_str(), s->method(i)->name().c_str());
    return 0;
  }
  std::set<std::string> names;
  if (d->reflection()) {
    gaio::reflection::v1::ListServicesRequest req;
    gaio::reflection::v1::ListServicesResponse resp;
    int rc = c->CallMessage("gaio.reflection.v1.Reflection/ListServices", req, &resp, f);
    if (rc == RPC_STATUS_UNIMPLEMENTED)
      f->message += "\n(the server has no reflection service: give --proto FILE)";
    if (rc) return rc;
    names.insert(resp.services().begin(), resp.services().end());
  } else {
    for (const auto *file : d->files())
      for (int i = 0; i < file->service_count(); i++) names.insert(file->service(i)->full_name());
  }
  for (const auto &n : names) printf("%s\n", n.c_str());
  return 0;
}

int Describe(Descriptors *d, const Options &o, Failure *f) {
  if (o.args.size() != 3) return Usage("describe takes one SYMBOL");
  std::string sym = Dotted(o.args[2]);
  Failure miss;
  if (auto *s = d->Find(&pb::DescriptorPool::FindServiceByName, sym, &miss)) {
    printf("%s is a service:\n%s", sym.c_str(), s->DebugString().c_str());
  } else if (auto *m = d->Find(&pb::DescriptorPool::FindMethodByName, sym, &miss)) {
    printf("%s is a method:\n%s", sym.c_str(), m->DebugString().c_str());
  } else if (auto *t = d->Find(&pb::DescriptorPool::FindMessageTypeByName, sym, &miss)) {
    printf("%s is a message:\n%s", sym.c_str(), t->DebugString().c_str());
  } else if (auto *e = d->Find(&pb::DescriptorPool::FindEnumTypeByName, sym, &miss)) {
    printf("%s is an enum:\n%s", sym.c_str(), e->DebugString().c_str());
  } else {
    *f = miss;
    return f->exit;
  }
  return 0;
}

// The request text of `call`: -d, else the positional argument; @FILE or - reads it.
int RequestText(const Options &o, std::string *text, Failure *f) {
  if (o.has_data && o.args.size() > 3) return Usage("give the request with -d or as an argument");
  if (o.args.size() > 4) return Usage("call takes pkg.Service/Method and one REQUEST");
  std::string src = o.has_data ? o.data : o.args.size() == 4 ? o.args[3] : "";
  if (src != "-" && (src.empty() || src[0] != '@')) {
    *text = src;
    return 0;
  }
  std::string path = src == "-" ? "/dev/stdin" : src.substr(1);
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *f = {EXIT_NO_INPUT, path + ": " + strerror(errno)};
    return f->exit;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  *text = ss.str();
  if (text->size() > kMaxInputBytes) {
    *f = {EXIT_DATA, path + ": over " + std::to_string(kMaxInputBytes) + " bytes"};
    return f->exit;
  }
  return 0;
}

class TextErrors : public pb::io::ErrorCollector {
 public:
  void AddError(int line, pb::io::ColumnNumber column, const std::string &msg) override {
    text += std::to_string(line + 1) + ":" + std::to_string(column + 1) + ": " + msg + "\n";
  }
  std::string text;
};

int Parse(const std::string &format, const std::string &text, pb::Message *m, Failure *f) {
  if (format == "text") {
    TextErrors errors;
    pb::TextFormat::Parser p;
    p.RecordErrorsTo(&errors);
    if (!p.ParseFromString(text, m)) {
      *f = {EXIT_DATA,
            "the request is not " + m->GetTypeName() + " in text format:\n" + errors.text};
      return f->exit;
    }
    return 0;
  }
  auto st = pb::util::JsonStringToMessage(text.empty() ? "{}" : text, m);
  if (!st.ok()) {
    *f = {EXIT_DATA, "the request is not " + m->GetTypeName() + " in JSON: " + st.ToString()};
    return f->exit;
  }
  return 0;
}

int Print(const std::string &format, const pb::Message &m, Failure *f) {
  std::string out;
  if (format == "text") {
    pb::TextFormat::PrintToString(m, &out);
  } else {
    pb::util::JsonPrintOptions po;
    po.add_whitespace = true;
    auto st = pb::util::MessageToJsonString(m, &out, po);
    if (!st.ok()) {
      *f = {EXIT_DATA, "the reply does not print as JSON: " + st.ToString()};
      return f->exit;
    }
  }
  fputs(out.c_str(), stdout);
  return 0;
}

int Call(Client *c, Descriptors *d, const Options &o, Failure *f) {
  if (o.args.size() < 3) return Usage("call takes pkg.Service/Method");
  const std::string &method = o.args[2];
  size_t slash = method.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == method.size())
    return Usage("the method is pkg.Service/Method: " + method);
  std::string text;
  int rc = RequestText(o, &text, f);
  if (rc) return rc;
  const pb::MethodDescriptor *md =
      d->Find(&pb::DescriptorPool::FindMethodByName, Dotted(method), f);
  if (!md) return f->exit;
  pb::DynamicMessageFactory factory;
  std::unique_ptr<pb::Message> req(factory.GetPrototype(md->input_type())->New());
  std::unique_ptr<pb::Message> reply(factory.GetPrototype(md->output_type())->New());
  if ((rc = Parse(o.format, text, req.get(), f))) return rc;
  std::string bytes;
  if ((rc = c->Call(method, req->SerializeAsString(), &bytes, f))) return rc;
  if (!reply->ParseFromString(bytes)) {
    *f = {RPC_STATUS_INTERNAL, "the reply does not parse as " + reply->GetTypeName()};
    return f->exit;
  }
  return Print(o.format, *reply, f);
}

int Health(Client *c, const Options &o, Failure *f) {
  if (o.args.size() > 3) return Usage("health takes at most one SERVICE");
  gaio::health::v1::HealthCheckRequest req;
  if (o.args.size() == 3) req.set_service(o.args[2]);
  gaio::health::v1::HealthCheckResponse resp;
  int rc = c->CallMessage("gaio.health.v1.Health/Check", req, &resp, f);
  if (rc) return rc;
  printf("%s\n", gaio::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status()).c_str());
  return resp.status() == gaio::health::v1::HealthCheckResponse::SERVING ? 0 : EXIT_NOT_SERVING;
}

int Stats(Client *c, const Options &o, Failure *f) {
  if (o.args.size() > 2) return Usage("stats takes no argument (--prometheus is an option)");
  gaio::admin::v1::StatsRequest req;
  gaio::admin::v1::ServerStats resp;
  int rc = c->CallMessage("gaio.admin.v1.Admin/GetStats", req, &resp, f);
  if (rc == RPC_STATUS_UNIMPLEMENTED)
    f->message += "\n(the server has no admin service: rpc_server_enable_admin())";
  if (rc) return rc;
  fputs((o.prometheus ? StatsPrometheus(resp) : StatsTable(resp)).c_str(), stdout);
  return 0;
}

int Run(const Options &o) {
  const std::string &cmd = o.args[1];
  static const std::set<std::string> commands = {"list", "describe", "call", "health", "stats"};
  if (!commands.count(cmd)) return Usage("unknown command: " + cmd);
  Client c(o);
  Failure f = {0, ""};
  int rc = c.Connect(o.args[0]);
  if (rc < 0) {
    fprintf(stderr, "gaiorpc: %s: bad address (%s)\n", o.args[0].c_str(), strerror(-rc));
    return EXIT_BAD_ADDRESS;
  }
  Descriptors d(&c);
  if (cmd == "list" || cmd == "describe" || cmd == "call") rc = d.LoadProtos(o, &f);
  if (rc == 0) {
    if (cmd == "list") rc = List(&c, &d, o, &f);
    else if (cmd == "describe") rc = Describe(&d, o, &f);
    else if (cmd == "call") rc = Call(&c, &d, o, &f);
    else if (cmd == "health") rc = Health(&c, o, &f);
    else rc = Stats(&c, o, &f);
  }
  if (rc != 0 && !f.message.empty()) fprintf(stderr, "gaiorpc: %s\n", f.message.c_str());
  fflush(stdout);
  return rc;
}

}  // namespace
}  // namespace gaiorpc

int main(int argc, char **argv) {
  gaiorpc::Options o;
  int rc = gaiorpc::ParseArgs(argc, argv, &o);
  if (rc >= 0) return rc;
  return gaiorpc::Run(o);
}
