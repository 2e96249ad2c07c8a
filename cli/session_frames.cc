#include "cli/session_frames.h"

#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "grpcpp/generic/generic_stub.h"

namespace joule::cli {
namespace {

// The longest deadline a frame may ask for (more is taken as this): keeps
// now + timeout inside the clock's range.
constexpr int64_t kMaxTimeoutUs = int64_t{365} * 24 * 3600 * 1000 * 1000;

WireResponse Refusal(grpc::StatusCode code, std::string message) {
  return WireResponse{static_cast<int>(code), std::move(message), ""};
}

// Waits until the call's callback has written `done_fd`; cancels the
// upstream call when the caller on `fd` hangs up meanwhile (sets `gone`).
void WaitForCall(int fd, int done_fd, grpc::ClientContext* ctx, bool* gone) {
  while (true) {
    pollfd p[2] = {{done_fd, POLLIN, 0}, {fd, POLLRDHUP, 0}};
    const int n = poll(p, *gone ? 1 : 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;  // cannot poll: wait on the eventfd alone below
    }
    if (p[0].revents & POLLIN) break;
    if (!*gone && (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) {
      ctx->TryCancel();
      *gone = true;
    }
  }
  uint64_t v;
  while (read(done_fd, &v, sizeof(v)) < 0 && errno == EINTR) {
  }
}

}  // namespace

bool PeerMaySpeak(int fd) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
         (cred.uid == geteuid() || cred.uid == 0);
}

void FrameServer::Start() {
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

int AcceptPeer(int listen_fd, int flags) {
  while (true) {
    const int fd = accept4(listen_fd, nullptr, nullptr, flags);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        continue;
      }
      return -1;  // shut down (EINVAL) or closed
    }
    if (PeerMaySpeak(fd)) return fd;
    close(fd);
  }
}

void FrameServer::AcceptLoop() {
  int fd;
  while ((fd = AcceptPeer(listen_fd_, SOCK_CLOEXEC)) >= 0) {
    {
      absl::MutexLock l(&mu_);
      if (stopping_ ||
          conns_.size() >= static_cast<size_t>(kMaxFrameConnections)) {
        close(fd);
        continue;
      }
      conns_[fd] = false;
    }
    std::thread([this, fd] { Serve(fd); }).detach();
  }
}

void FrameServer::Serve(int fd) {
  const int done = eventfd(0, EFD_CLOEXEC);
  while (done >= 0) {
    auto body = ReadFrame(fd, kMaxFrameBody, absl::InfiniteFuture());
    WireResponse resp;
    bool keep = true;
    if (!body.ok()) {
      // The caller closed (or the connection failed): nothing to answer.
      if (absl::IsOutOfRange(body.status()) ||
          absl::IsUnavailable(body.status())) {
        break;
      }
      resp =
          Refusal(static_cast<grpc::StatusCode>(body.status().code()),
                  absl::StrCat("joulectl session: ", body.status().message()));
      keep = false;  // the stream of frames is lost
    } else if (auto req = DecodeRequest(*body); !req.ok()) {
      resp =
          Refusal(grpc::StatusCode::INVALID_ARGUMENT,
                  absl::StrCat("joulectl session: ", req.status().message()));
      keep = false;
    } else {
      {
        absl::MutexLock l(&mu_);
        conns_[fd] = true;
      }
      resp = Forward(*req, fd, done);
      absl::MutexLock l(&mu_);
      conns_[fd] = false;
      if (stopping_) keep = false;
    }
    auto frame = EncodeResponse(resp);
    if (!frame.ok()) {
      frame = EncodeResponse(
          Refusal(grpc::StatusCode::RESOURCE_EXHAUSTED,
                  absl::StrCat("joulectl session: the answer is larger than ",
                               kMaxFramePayload, " bytes")));
    }
    if (!WriteAll(fd, *frame).ok() || !keep) break;
  }
  if (done >= 0) close(done);
  Finished(fd);
}

WireResponse FrameServer::Forward(const WireRequest& r, int fd, int done_fd) {
  service_->Touch();
  if (absl::StartsWith(r.method, "/joule.cli.Session/")) {
    return Refusal(grpc::StatusCode::UNIMPLEMENTED,
                   absl::StrCat("joulectl session: ", r.method,
                                " is answered on the session's gRPC socket "
                                "only"));
  }
  if (ClientStreaming(r.method) || ServerStreaming(r.method)) {
    return Refusal(grpc::StatusCode::UNIMPLEMENTED,
                   absl::StrCat("joulectl session: ", r.method,
                                " streams; frames carry unary calls only "
                                "(streams go over the gRPC socket)"));
  }
  if (grpc::Status full = service_->CheckCapacity(); !full.ok()) {
    return Refusal(full.error_code(), full.error_message());
  }
  service_->CountCall();
  service_->AddInFlight(1);
  const auto deadline =
      std::chrono::system_clock::now() +
      std::chrono::microseconds(std::min(r.timeout_us, kMaxTimeoutUs));
  std::vector<std::pair<absl::string_view, absl::string_view>> pairs;
  for (const auto& [k, v] : r.metadata) pairs.emplace_back(k, v);
  grpc::Slice slice(r.payload);
  const grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  grpc::Status status;
  SessionUpstream* up = service_->upstream();
  size_t tries = 0;
  bool gone = false;
  while (true) {
    const SessionUpstream::Target t = up->ForCall();
    grpc::ClientContext ctx;
    PrepareUpstreamContext(&ctx, t, deadline, pairs);
    grpc::GenericStub stub(t.channel);
    response.Clear();
    absl::Notification ended;
    stub.UnaryCall(&ctx, r.method, grpc::StubOptions(), &request, &response,
                   [&status, &ended, done_fd](grpc::Status s) {
                     status = std::move(s);
                     ended.Notify();
                     const uint64_t one = 1;
                     (void)!write(done_fd, &one, sizeof(one));
                   });
    WaitForCall(fd, done_fd, &ctx, &gone);
    ended.WaitForNotification();
    if (gone || !up->Retry(t.server, status, &tries)) break;
  }
  // Out of the count before the answer goes out (as the gRPC socket's).
  service_->AddInFlight(-1);
  WireResponse out{static_cast<int>(status.error_code()),
                   status.error_message(), ""};
  std::vector<grpc::Slice> slices;
  if (status.ok() && response.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices) {
      out.payload.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  return out;
}

void FrameServer::Finished(int fd) {
  absl::MutexLock l(&mu_);
  conns_.erase(fd);
  close(fd);  // under the lock: Stop() never shuts down a reused number
}

void FrameServer::Stop() {
  {
    absl::MutexLock l(&mu_);
    if (stopped_) return;
    stopped_ = true;
    stopping_ = true;
  }
  shutdown(listen_fd_, SHUT_RDWR);
  if (acceptor_.joinable()) acceptor_.join();
  absl::MutexLock l(&mu_);
  for (const auto& [fd, busy] : conns_) {
    if (!busy) shutdown(fd, SHUT_RDWR);
  }
  auto none = [this]()
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return conns_.empty(); };
  mu_.AwaitWithTimeout(absl::Condition(&none), absl::Seconds(2));
  for (const auto& [fd, busy] : conns_) shutdown(fd, SHUT_RDWR);
  mu_.Await(absl::Condition(&none));
}

}  // namespace joule::cli
