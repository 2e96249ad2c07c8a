#pragma once

// The session's framed protocol (cli/session.h): how a joulectl makes a
// unary call through its session without gRPC in its own process. One
// Unix stream connection carries calls one after another, each a request
// frame answered by one response frame; the session forwards the request
// bytes to jouled over its gRPC channel without parsing them. docs/cli.md
// "Sessions", docs/security.md "The session socket".
//
// A frame: the 4 bytes "JSF1", a u32 body length (big-endian, at most the
// limit below for its direction), then the body. Integers big-endian;
// strings a length (u16 or u32 as noted) then the bytes.
//   request body:  u16 method, u64 timeout_us, u16 pair count, each pair
//                  (u16 key, u32 value), u32 payload
//   response body: u32 code (0..16, grpc::StatusCode), u32 message,
//                  u32 payload
// Nothing may follow the last field. Pure functions but the I/O ones at
// the end, which work on a blocking fd.

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace google::protobuf {
class Descriptor;
}  // namespace google::protobuf

namespace joule::cli {

inline constexpr char kFrameMagic[] = "JSF1";
inline constexpr size_t kFrameHeaderBytes = 8;
// A payload as large as the session's gRPC socket and joulectl's channel
// take (64 MiB), plus room for the other fields.
inline constexpr uint32_t kMaxFramePayload = 64u << 20;
inline constexpr uint32_t kMaxFrameBody = kMaxFramePayload + (64u << 10);
inline constexpr size_t kMaxFrameMethod = 256;
inline constexpr size_t kMaxFramePairs = 16;
inline constexpr size_t kMaxFrameKey = 256;
inline constexpr size_t kMaxFrameValue = 4096;
inline constexpr size_t kMaxFrameMessage = 16u << 10;

// The sibling socket a session serves frames on: PATH.frames.
std::string FramesPath(const std::string& session_socket);

struct WireRequest {
  std::string method;      // "/pkg.Service/Method"
  int64_t timeout_us = 0;  // >= 0; the session's deadline is now + this
  std::vector<std::pair<std::string, std::string>> metadata;
  std::string payload;  // the serialized request message
};

struct WireResponse {
  int code = 0;  // grpc::StatusCode
  std::string message;
  std::string payload;  // the serialized response (OK only)
};

// Whole frames (header and body). The fields must be within the limits
// above (checked: INVALID_ARGUMENT naming the field and the limit).
absl::StatusOr<std::string> EncodeRequest(const WireRequest& r);
// A message longer than kMaxFrameMessage is cut to it.
absl::StatusOr<std::string> EncodeResponse(WireResponse r);

// A frame's body length from its kFrameHeaderBytes header:
// INVALID_ARGUMENT for a bad magic, RESOURCE_EXHAUSTED above `max_body`.
absl::StatusOr<uint32_t> FrameBodyLength(absl::string_view header,
                                         uint32_t max_body);
// A body, fields checked against the limits: INVALID_ARGUMENT naming what
// is wrong.
absl::StatusOr<WireRequest> DecodeRequest(absl::string_view body);
absl::StatusOr<WireResponse> DecodeResponse(absl::string_view body);

// The full name of the one method of `service` ("joule.v1.JobService")
// taking `in` and returning `out`, as "/joule.v1.JobService/SubmitJob";
// NOT_FOUND when there is none or it streams, FAILED_PRECONDITION when
// more than one method has that pair (then types cannot name a method).
// Run at build time (cli/unary_methods_gen.cc), not in joulectl: building
// descriptors costs ~1 ms of CPU.
absl::StatusOr<std::string> UnaryMethodName(
    const std::string& service, const google::protobuf::Descriptor* in,
    const google::protobuf::Descriptor* out);

// Reads one frame's body from `fd` (blocking) until `deadline`.
// OUT_OF_RANGE: the peer closed before a frame began (a clean end);
// UNAVAILABLE: closed or failed mid-frame; DEADLINE_EXCEEDED; or
// FrameBodyLength's errors.
absl::StatusOr<std::string> ReadFrame(int fd, uint32_t max_body,
                                      absl::Time deadline);
// Writes all of `bytes` (no SIGPIPE): UNAVAILABLE when the peer is gone.
absl::Status WriteAll(int fd, absl::string_view bytes);

// Connects a Unix stream socket to `path`: the fd (close-on-exec), or -1
// with errno set (ENAMETOOLONG for a path that does not fit an address).
int ConnectUnix(const std::string& path);

// joulectl's side: one connection to a session's frames socket, calls
// made one at a time. Owns the fd. Not thread-safe.
class FrameClient {
 public:
  // nullptr when `path` cannot be connected to (no such socket: a session
  // of an older joulectl, or none; the caller then uses gRPC).
  static std::unique_ptr<FrameClient> Connect(const std::string& path);
  ~FrameClient();
  FrameClient(const FrameClient&) = delete;
  FrameClient& operator=(const FrameClient&) = delete;
  // The session's answer; a transport failure is UNAVAILABLE (or
  // DEADLINE_EXCEEDED at `deadline`) with one line, and the connection is
  // not used again.
  WireResponse Call(const WireRequest& r, absl::Time deadline);

 private:
  explicit FrameClient(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace joule::cli
