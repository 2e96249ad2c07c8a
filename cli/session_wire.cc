#include "cli/session_wire.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"

namespace joule::cli {
namespace {

void PutU16(std::string* out, uint16_t v) {
  out->push_back(static_cast<char>(v >> 8));
  out->push_back(static_cast<char>(v));
}
void PutU32(std::string* out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>(v >> shift));
  }
}
void PutU64(std::string* out, uint64_t v) {
  PutU32(out, static_cast<uint32_t>(v >> 32));
  PutU32(out, static_cast<uint32_t>(v));
}

// Reads the fields of a body in order; the first failure sticks and names
// the field.
class Reader {
 public:
  explicit Reader(absl::string_view body) : rest_(body) {}
  uint64_t Int(const char* field, int bytes) {
    if (!status_.ok()) return 0;
    if (rest_.size() < static_cast<size_t>(bytes)) {
      Fail(absl::StrCat("the frame ends inside ", field));
      return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) {
      v = v << 8 | static_cast<unsigned char>(rest_[i]);
    }
    rest_.remove_prefix(bytes);
    return v;
  }
  std::string Bytes(const char* field, int length_bytes, size_t max) {
    const uint64_t n = Int(field, length_bytes);
    if (!status_.ok()) return "";
    if (n > max) {
      Fail(absl::StrCat(field, " of ", n, " bytes; the most is ", max));
      return "";
    }
    if (rest_.size() < n) {
      Fail(absl::StrCat("the frame ends inside ", field));
      return "";
    }
    std::string s(rest_.substr(0, n));
    rest_.remove_prefix(n);
    return s;
  }
  absl::Status Done() {
    if (status_.ok() && !rest_.empty()) {
      Fail(absl::StrCat(rest_.size(), " bytes after the last field"));
    }
    return status_;
  }

 private:
  void Fail(const std::string& why) {
    status_ = absl::InvalidArgumentError(absl::StrCat("frame: ", why));
  }
  absl::string_view rest_;
  absl::Status status_;
};

absl::Status TooLong(const char* field, size_t n, size_t max) {
  return absl::InvalidArgumentError(
      absl::StrCat("frame: ", field, " of ", n, " bytes; the most is ", max));
}

std::string Frame(const std::string& body) {
  std::string f(kFrameMagic, 4);
  PutU32(&f, static_cast<uint32_t>(body.size()));
  return f + body;
}

}  // namespace

std::string FramesPath(const std::string& session_socket) {
  return absl::StrCat(session_socket, ".frames");
}

absl::StatusOr<std::string> EncodeRequest(const WireRequest& r) {
  if (r.method.size() > kMaxFrameMethod) {
    return TooLong("method", r.method.size(), kMaxFrameMethod);
  }
  if (r.timeout_us < 0) {
    return absl::InvalidArgumentError("frame: timeout_us must be >= 0");
  }
  if (r.metadata.size() > kMaxFramePairs) {
    return TooLong("metadata (pairs)", r.metadata.size(), kMaxFramePairs);
  }
  if (r.payload.size() > kMaxFramePayload) {
    return TooLong("payload", r.payload.size(), kMaxFramePayload);
  }
  std::string body;
  PutU16(&body, r.method.size());
  body += r.method;
  PutU64(&body, r.timeout_us);
  PutU16(&body, r.metadata.size());
  for (const auto& [k, v] : r.metadata) {
    if (k.size() > kMaxFrameKey) return TooLong("key", k.size(), kMaxFrameKey);
    if (v.size() > kMaxFrameValue) {
      return TooLong("value", v.size(), kMaxFrameValue);
    }
    PutU16(&body, k.size());
    body += k;
    PutU32(&body, v.size());
    body += v;
  }
  PutU32(&body, r.payload.size());
  body += r.payload;
  return Frame(body);
}

absl::StatusOr<std::string> EncodeResponse(WireResponse r) {
  if (r.code < 0 || r.code > 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("frame: code ", r.code, " is not 0..16"));
  }
  if (r.payload.size() > kMaxFramePayload) {
    return TooLong("payload", r.payload.size(), kMaxFramePayload);
  }
  if (r.message.size() > kMaxFrameMessage) r.message.resize(kMaxFrameMessage);
  std::string body;
  PutU32(&body, r.code);
  PutU32(&body, r.message.size());
  body += r.message;
  PutU32(&body, r.payload.size());
  body += r.payload;
  return Frame(body);
}

absl::StatusOr<uint32_t> FrameBodyLength(absl::string_view header,
                                         uint32_t max_body) {
  if (header.size() != kFrameHeaderBytes ||
      header.substr(0, 4) != absl::string_view(kFrameMagic, 4)) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a joulectl session frame (it begins \"",
                     absl::CHexEscape(header.substr(0, 4)), "\", not \"",
                     kFrameMagic, "\")"));
  }
  uint32_t n = 0;
  for (size_t i = 4; i < 8; ++i) n = n << 8 | static_cast<uint8_t>(header[i]);
  if (n > max_body) {
    return absl::ResourceExhaustedError(
        absl::StrCat("frame: a body of ", n, " bytes; the most is ", max_body));
  }
  return n;
}

absl::StatusOr<WireRequest> DecodeRequest(absl::string_view body) {
  Reader in(body);
  WireRequest r;
  r.method = in.Bytes("method", 2, kMaxFrameMethod);
  const uint64_t timeout = in.Int("timeout_us", 8);
  const uint64_t pairs = in.Int("metadata count", 2);
  if (pairs > kMaxFramePairs) {
    return TooLong("metadata (pairs)", pairs, kMaxFramePairs);
  }
  for (uint64_t i = 0; i < pairs; ++i) {
    std::string k = in.Bytes("key", 2, kMaxFrameKey);
    std::string v = in.Bytes("value", 4, kMaxFrameValue);
    r.metadata.emplace_back(std::move(k), std::move(v));
  }
  r.payload = in.Bytes("payload", 4, kMaxFramePayload);
  if (absl::Status s = in.Done(); !s.ok()) return s;
  if (timeout > static_cast<uint64_t>(INT64_MAX)) {
    return absl::InvalidArgumentError("frame: timeout_us is above 2^63-1");
  }
  r.timeout_us = static_cast<int64_t>(timeout);
  if (r.method.size() < 4 || r.method[0] != '/' ||
      r.method.find('/', 1) == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("frame: method \"", absl::CHexEscape(r.method),
                     "\" is not /package.Service/Method"));
  }
  return r;
}

absl::StatusOr<WireResponse> DecodeResponse(absl::string_view body) {
  Reader in(body);
  WireResponse r;
  const uint64_t code = in.Int("code", 4);
  r.message = in.Bytes("message", 4, kMaxFrameMessage);
  r.payload = in.Bytes("payload", 4, kMaxFramePayload);
  if (absl::Status s = in.Done(); !s.ok()) return s;
  if (code > 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("frame: code ", code, " is not 0..16"));
  }
  r.code = static_cast<int>(code);
  return r;
}

absl::StatusOr<std::string> UnaryMethodName(
    const std::string& service, const google::protobuf::Descriptor* in,
    const google::protobuf::Descriptor* out) {
  const google::protobuf::ServiceDescriptor* s =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
          service);
  const google::protobuf::MethodDescriptor* found = nullptr;
  for (int i = 0; s != nullptr && i < s->method_count(); ++i) {
    const google::protobuf::MethodDescriptor* m = s->method(i);
    if (m->input_type() != in || m->output_type() != out) continue;
    if (found != nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          service, ": ", found->name(), " and ", m->name(), " both take ",
          in->full_name(), " and return ", out->full_name()));
    }
    found = m;
  }
  if (found == nullptr || found->client_streaming() ||
      found->server_streaming()) {
    return absl::NotFoundError(
        absl::StrCat(service, " has no unary method from ", in->full_name(),
                     " to ", out->full_name()));
  }
  return absl::StrCat("/", service, "/", found->name());
}

absl::StatusOr<std::string> ReadFrame(int fd, uint32_t max_body,
                                      absl::Time deadline) {
  std::string buf(kFrameHeaderBytes, '\0');
  size_t got = 0;
  size_t want = kFrameHeaderBytes;
  bool header = true;
  while (true) {
    while (got < want) {
      if (deadline != absl::InfiniteFuture()) {
        const absl::Duration left = deadline - absl::Now();
        pollfd p{fd, POLLIN, 0};
        const int ms = left <= absl::ZeroDuration()
                           ? 0
                           : static_cast<int>(absl::ToInt64Milliseconds(
                                 left + absl::Milliseconds(1)));
        const int n = poll(&p, 1, ms);
        if (n < 0 && errno == EINTR) continue;
        if (n == 0) return absl::DeadlineExceededError("Deadline Exceeded");
      }
      const ssize_t n = read(fd, buf.data() + got, want - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        return absl::UnavailableError(
            absl::StrCat("reading a frame: ", std::strerror(errno)));
      }
      if (n == 0) {
        if (header && got == 0) return absl::OutOfRangeError("closed");
        return absl::UnavailableError("the connection closed mid-frame");
      }
      got += n;
    }
    if (!header) return buf;
    auto len = FrameBodyLength(buf, max_body);
    if (!len.ok()) return len.status();
    header = false;
    buf.assign(*len, '\0');
    got = 0;
    want = *len;
    if (want == 0) return buf;
  }
}

absl::Status WriteAll(int fd, absl::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::UnavailableError(
          absl::StrCat("writing a frame: ", std::strerror(errno)));
    }
    bytes.remove_prefix(n);
  }
  return absl::OkStatus();
}

int ConnectUnix(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) {
    errno = ENAMETOOLONG;
    return -1;
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

std::unique_ptr<FrameClient> FrameClient::Connect(const std::string& path) {
  const int fd = ConnectUnix(path);
  if (fd < 0) return nullptr;
  return std::unique_ptr<FrameClient>(new FrameClient(fd));
}

FrameClient::~FrameClient() {
  if (fd_ >= 0) close(fd_);
}

WireResponse FrameClient::Call(const WireRequest& r, absl::Time deadline) {
  auto fail = [&](int code, std::string message) {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
    return WireResponse{code, std::move(message), ""};
  };
  if (fd_ < 0) return fail(14, "the session's connection was closed");
  auto frame = EncodeRequest(r);
  if (!frame.ok()) return fail(3, std::string(frame.status().message()));
  if (absl::Status s = WriteAll(fd_, *frame); !s.ok()) {
    return fail(14, std::string(s.message()));
  }
  auto body = ReadFrame(fd_, kMaxFrameBody, deadline);
  if (!body.ok()) {
    if (absl::IsDeadlineExceeded(body.status())) {
      return fail(4, std::string(body.status().message()));
    }
    return fail(14, absl::IsOutOfRange(body.status())
                        ? "the session closed the connection"
                        : std::string(body.status().message()));
  }
  auto resp = DecodeResponse(*body);
  if (!resp.ok()) return fail(13, std::string(resp.status().message()));
  return *std::move(resp);
}

}  // namespace joule::cli
