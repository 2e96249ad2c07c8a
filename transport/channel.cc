#include "transport/channel.h"

#include <arpa/inet.h>

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace joule::transport {

absl::StatusOr<std::string> ReadFlagFile(const std::string& path,
                                         const std::string& flag) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": cannot read \"", path, "\""));
  }
  return ss.str();
}

namespace {

// "127.0.0.1:7070" -> "ipv4:127.0.0.1:7070", "[::1]:7070" ->
// "ipv6:[::1]:7070": an address literal needs no DNS resolver (gRPC's
// c-ares resolver and its work for a name that is already an address). A
// name, or anything else, is returned as it is.
std::string AddressTarget(const std::string& server) {
  const size_t colon = server.rfind(':');
  if (colon == std::string::npos || colon == 0) return server;
  std::string host = server.substr(0, colon);
  const std::string port = server.substr(colon + 1);
  if (port.empty() ||
      port.find_first_not_of("0123456789") != std::string::npos) {
    return server;
  }
  unsigned char buf[sizeof(struct in6_addr)];
  if (inet_pton(AF_INET, host.c_str(), buf) == 1) {
    return absl::StrCat("ipv4:", server);
  }
  if (host.size() > 2 && host.front() == '[' && host.back() == ']' &&
      inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), buf) == 1) {
    return absl::StrCat("ipv6:", server);
  }
  return server;
}

}  // namespace

absl::StatusOr<Client> Client::Open(const ClientOptions& o) {
  Client c;
  if (!o.session.empty()) {
    // The session holds the TLS channel and the token; this path builds
    // no TLS context and reads no file (docs/cli.md "Sessions").
    c.as_tenant_ = o.as_tenant;
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    c.channel_ =
        grpc::CreateCustomChannel(absl::StrCat("unix:", o.session),
                                  grpc::InsecureChannelCredentials(), args);
    return c;
  }
  std::string token = o.token;
  if (!o.token_file.empty()) {
    auto t = ReadFlagFile(o.token_file, "--token-file");
    if (!t.ok()) return t.status();
    token = std::string(absl::StripAsciiWhitespace(*t));
  }
  for (char ch : token) {
    if (static_cast<unsigned char>(ch) <= 0x20 || ch == 0x7f) {
      return absl::InvalidArgumentError(
          "--token: must not contain spaces or control characters");
    }
  }
  if (!token.empty()) c.bearer_ = absl::StrCat("Bearer ", token);
  c.as_tenant_ = o.as_tenant;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  // An address literal goes straight to the address (no resolver); the
  // authority, and so the name the server's certificate is checked
  // against, stays what was given.
  const std::string target = AddressTarget(o.server);
  if (target != o.server) args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, o.server);
  // No HTTP proxy lookup: jouled is reached directly.
  args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
  if (o.insecure) {
    c.channel_ = grpc::CreateCustomChannel(
        target, grpc::InsecureChannelCredentials(), args);
    return c;
  }
  grpc::SslCredentialsOptions ssl;
  if (!o.ca_file.empty()) {
    auto ca = ReadFlagFile(o.ca_file, "--ca");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *ca;
  }
  if (o.cert_file.empty() != o.key_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls-cert and --tls-key: give both or neither");
  }
  if (!o.cert_file.empty()) {
    auto cert = ReadFlagFile(o.cert_file, "--tls-cert");
    if (!cert.ok()) return cert.status();
    auto key = ReadFlagFile(o.key_file, "--tls-key");
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *cert;
    ssl.pem_private_key = *key;
  }
  c.channel_ =
      grpc::CreateCustomChannel(target, grpc::SslCredentials(ssl), args);
  return c;
}

void Client::Authorize(grpc::ClientContext* ctx) const {
  if (!bearer_.empty()) ctx->AddMetadata("authorization", bearer_);
  if (!as_tenant_.empty()) ctx->AddMetadata(kAsTenantKey, as_tenant_);
}

}  // namespace joule::transport
