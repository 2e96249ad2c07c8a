#include "transport/channel.h"

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

absl::StatusOr<Client> Client::Open(const ClientOptions& o) {
  Client c;
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
  if (o.insecure) {
    c.channel_ = grpc::CreateCustomChannel(
        o.server, grpc::InsecureChannelCredentials(), args);
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
      grpc::CreateCustomChannel(o.server, grpc::SslCredentials(ssl), args);
  return c;
}

void Client::Authorize(grpc::ClientContext* ctx) const {
  if (!bearer_.empty()) ctx->AddMetadata("authorization", bearer_);
  if (!as_tenant_.empty()) ctx->AddMetadata("x-joule-as-tenant", as_tenant_);
}

}  // namespace joule::transport
