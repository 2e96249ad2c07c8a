#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"

namespace joule::transport {

// How a client reaches jouled. TLS unless `insecure`: the server is
// verified against `ca_file` (empty: the system's roots); `cert_file` and
// `key_file` are a client certificate (agents). `token` is the bearer
// token sent on every call ("jt_..."), read from `token_file` when that is
// set instead.
struct ClientOptions {
  std::string server = "127.0.0.1:7070";
  bool insecure = false;
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  std::string token;
  std::string token_file;
  std::string as_tenant;  // operators: act as this tenant (audited)
  // A joulectl session's Unix socket (cli/session.h): when set, the channel
  // is plaintext to unix:PATH and no file is read and no token sent (the
  // session adds its own); every other field but as_tenant is ignored.
  std::string session;
};

// The metadata key of --as-tenant (daemon/gate.h reads it).
inline constexpr char kAsTenantKey[] = "x-joule-as-tenant";

// A channel and the metadata for its calls. Immutable after Open();
// thread-safe.
class Client {
 public:
  // Reads the files; INVALID_ARGUMENT naming the flag for an unreadable one
  // or a malformed token.
  static absl::StatusOr<Client> Open(const ClientOptions& options);

  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  // Adds the token and --as-tenant metadata to a call.
  void Authorize(grpc::ClientContext* ctx) const;

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::string bearer_;  // "Bearer jt_..." or empty
  std::string as_tenant_;
};

// The contents of `path`, or INVALID_ARGUMENT naming `flag`.
absl::StatusOr<std::string> ReadFlagFile(const std::string& path,
                                         const std::string& flag);

}  // namespace joule::transport
