#include "cli/session_proxy.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "google/protobuf/descriptor.h"
#include "grpcpp/generic/generic_stub.h"

namespace joule::cli {

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  auto t = transport::ReadFlagFile(path, "--token-file");
  if (!t.ok()) return t.status();
  return std::string(absl::StripAsciiWhitespace(*t));
}

namespace {

absl::Status CheckToken(const std::string& token) {
  for (char ch : token) {
    if (static_cast<unsigned char>(ch) <= 0x20 || ch == 0x7f) {
      return absl::InvalidArgumentError(
          "--token: must not contain spaces or control characters");
    }
  }
  return absl::OkStatus();
}

std::string Bearer(const std::string& token) {
  return token.empty() ? "" : absl::StrCat("Bearer ", token);
}

// Metadata a proxy must not copy from the caller: HTTP/2 and gRPC's own,
// and the caller's credentials (the session sends its own).
bool Forwardable(absl::string_view key) {
  return !absl::StartsWith(key, ":") && !absl::StartsWith(key, "grpc-") &&
         key != "authorization" && key != "user-agent" && key != "te" &&
         key != "content-type" && key != "host";
}

const google::protobuf::MethodDescriptor* FindMethod(
    const std::string& method) {
  if (method.size() < 2 || method[0] != '/') return nullptr;
  const std::string name = absl::StrReplaceAll(method.substr(1), {{"/", "."}});
  return google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(
      name);
}

class ForwardedCall;

// One try of a forwarded call upstream: writes the caller's one request,
// reads the responses and hands each to the caller. Owned by its
// ForwardedCall; its last callback is OnDone.
class Attempt
    : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  explicit Attempt(ForwardedCall* call) : call_(call) {}
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& s) override;

  grpc::ClientContext ctx;
  std::string server;
  grpc::ByteBuffer response;

 private:
  ForwardedCall* const call_;
};

// A call from a joulectl on the socket, forwarded to jouled, retried on
// the next endpoint (as joulectl itself does) while nothing has been sent
// back to the caller. Two references keep it: the caller's side (released
// in OnDone, after Finish) and the upstream side (released when the last
// attempt has ended, or at once when no attempt starts); the last one
// deletes it, so an attempt is never destroyed while gRPC still runs its
// callbacks, and Finish runs once (FinishCall).
class ForwardedCall : public grpc::ServerGenericBidiReactor {
 public:
  ForwardedCall(SessionService* service,
                grpc::GenericCallbackServerContext* ctx)
      : service_(service), ctx_(ctx) {
    service_->AddInFlight(1);
    StartRead(&request_);
  }
  void OnReadDone(bool ok) override {
    if (!ok) {
      FinishCall(grpc::Status(grpc::StatusCode::CANCELLED,
                              "joulectl session: the call had no request"));
      Unref();  // no attempt: the upstream side is done
      return;
    }
    absl::MutexLock l(&mu_);
    StartAttemptLocked();
  }

  // From the attempt: one response to pass on.
  void Response(Attempt* a) {
    absl::MutexLock l(&mu_);
    ++forwarded_;
    writing_ = true;
    StartWrite(&a->response);
  }

  void OnWriteDone(bool ok) override {
    grpc::Status finish;
    {
      absl::MutexLock l(&mu_);
      writing_ = false;
      if (!ok) {  // the caller went away
        attempt_->ctx.TryCancel();
      } else if (!attempt_done_) {
        attempt_->StartRead(&attempt_->response);
      }
      if (!attempt_done_) return;
      finish = status_;
    }
    FinishCall(finish);  // the upstream side has ended: OnDone may delete
  }

  // From the attempt's OnDone: retry, or finish (once no write is out).
  void AttemptDone(const grpc::Status& s) {
    bool finish = false;
    {
      absl::MutexLock l(&mu_);
      SessionUpstream* up = service_->upstream();
      if (forwarded_ == 0 && !cancelled_ &&
          up->Retry(attempt_->server, s, &tries_)) {
        old_ = std::move(attempt_);  // its OnDone is on the stack
        StartAttemptLocked();
        return;
      }
      attempt_done_ = true;
      status_ = s;
      if (!writing_) finish = true;  // else OnWriteDone finishes
    }
    if (finish) FinishCall(s);
    Unref();  // the upstream side is done: may delete this, nothing after
  }

  void OnCancel() override {
    absl::MutexLock l(&mu_);
    cancelled_ = true;
    if (attempt_ != nullptr && !attempt_done_) attempt_->ctx.TryCancel();
  }

  void OnDone() override { Unref(); }

 private:
  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  // Finishes the caller's call, once. The call leaves the in-flight count
  // before its status goes out, so a caller's next call never meets its
  // previous one still counted (the upstream call has ended by then;
  // OnDone may come later).
  void FinishCall(const grpc::Status& s) {
    {
      absl::MutexLock l(&mu_);
      if (finished_) {
        std::fprintf(stderr,
                     "joulectl session: %s: a second finish of one call, "
                     "ignored\n",
                     ctx_->method().c_str());
        return;
      }
      finished_ = true;
    }
    service_->AddInFlight(-1);
    Finish(s);
  }

  void StartAttemptLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    SessionUpstream::Target t = service_->upstream()->ForCall();
    attempt_ = std::make_unique<Attempt>(this);
    Attempt* a = attempt_.get();
    a->server = t.server;
    std::vector<std::pair<absl::string_view, absl::string_view>> pairs;
    for (const auto& [k, v] : ctx_->client_metadata()) {
      pairs.emplace_back(absl::string_view(k.data(), k.size()),
                         absl::string_view(v.data(), v.size()));
    }
    PrepareUpstreamContext(&a->ctx, t, ctx_->deadline(), pairs);
    grpc::GenericStub stub(t.channel);
    stub.PrepareBidiStreamingCall(&a->ctx, ctx_->method(), grpc::StubOptions(),
                                  a);
    a->StartWriteLast(&request_, grpc::WriteOptions());
    a->StartRead(&a->response);
    a->StartCall();
  }

  SessionService* const service_;
  grpc::GenericCallbackServerContext* const ctx_;
  grpc::ByteBuffer request_;  // kept for a retry
  absl::Mutex mu_;
  std::unique_ptr<Attempt> attempt_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Attempt> old_ ABSL_GUARDED_BY(mu_);
  size_t tries_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t forwarded_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool attempt_done_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
  std::atomic<int> refs_{2};  // the caller's side and the upstream side
};

void Attempt::OnReadDone(bool ok) {
  if (ok) call_->Response(this);
  // !ok: the stream ended; OnDone brings the status.
}

void Attempt::OnDone(const grpc::Status& s) { call_->AttemptDone(s); }

// Answers a local method (Stop, Status), refuses one it cannot forward,
// or refuses any call with `refuse` when that is not OK.
class LocalCall : public grpc::ServerGenericBidiReactor {
 public:
  LocalCall(SessionService* service, const std::string& method,
            grpc::Status refuse = grpc::Status::OK)
      : service_(service) {
    if (!refuse.ok()) {
      Finish(refuse);
    } else if (method == kSessionStatusMethod) {
      grpc::Slice line(service_->StatusLine());
      reply_ = grpc::ByteBuffer(&line, 1);
      StartWriteAndFinish(&reply_, grpc::WriteOptions(), grpc::Status::OK);
    } else if (method == kSessionStopMethod) {
      // Before the answer is written: when `session stop` returns, the
      // socket is gone (the server's shutdown still lets this answer out).
      service_->Stop();
      grpc::Slice line(service_->StatusLine());
      reply_ = grpc::ByteBuffer(&line, 1);
      StartWriteAndFinish(&reply_, grpc::WriteOptions(), grpc::Status::OK);
    } else {
      Finish(grpc::Status(
          grpc::StatusCode::UNIMPLEMENTED,
          absl::StrCat("joulectl session: ", method,
                       " is client-streaming and not forwarded; call jouled "
                       "directly")));
    }
  }
  void OnDone() override { delete this; }

 private:
  SessionService* const service_;
  grpc::ByteBuffer reply_;
};

}  // namespace

bool ClientStreaming(const std::string& method) {
  const google::protobuf::MethodDescriptor* m = FindMethod(method);
  return m != nullptr && m->client_streaming();
}

bool ServerStreaming(const std::string& method) {
  const google::protobuf::MethodDescriptor* m = FindMethod(method);
  return m != nullptr && m->server_streaming();
}

void PrepareUpstreamContext(
    grpc::ClientContext* ctx, const SessionUpstream::Target& target,
    std::chrono::system_clock::time_point deadline,
    const std::vector<std::pair<absl::string_view, absl::string_view>>& pairs) {
  ctx->set_deadline(deadline);
  for (const auto& [key, value] : pairs) {
    if (Forwardable(key)) {
      ctx->AddMetadata(std::string(key), std::string(value));
    }
  }
  if (!target.bearer.empty()) ctx->AddMetadata("authorization", target.bearer);
}

SessionUpstream::SessionUpstream(std::vector<std::string> endpoints,
                                 transport::ClientOptions options)
    : options_([&] {
        transport::ClientOptions o = options;
        o.token.clear();
        o.token_file.clear();
        o.as_tenant.clear();
        return o;
      }()),
      token_file_(options.token_file),
      follower_(std::move(endpoints)) {}

absl::StatusOr<std::unique_ptr<SessionUpstream>> SessionUpstream::Open(
    const std::string& servers, transport::ClientOptions options) {
  auto list = ParseEndpoints(servers, "--server");
  if (!list.ok()) return list.status();
  std::string token = options.token;
  if (!options.token_file.empty()) {
    auto t = ReadTokenFile(options.token_file);
    if (!t.ok()) return t.status();
    token = *t;
  }
  if (absl::Status s = CheckToken(token); !s.ok()) return s;
  std::unique_ptr<SessionUpstream> up(
      new SessionUpstream(*std::move(list), std::move(options)));
  absl::MutexLock l(&up->mu_);
  up->bearer_ = Bearer(token);
  up->RefreshToken();  // records the file's mtime
  if (absl::Status s = up->Connect(up->follower_.Current()); !s.ok()) return s;
  return up;
}

absl::Status SessionUpstream::Connect(const std::string& server) {
  transport::ClientOptions o = options_;
  o.server = server;
  auto c = transport::Client::Open(o);
  if (!c.ok()) return c.status();
  channel_ = c->channel();
  server_ = server;
  return absl::OkStatus();
}

absl::StatusOr<std::string> RereadTokenFile(const std::string& path,
                                            int64_t* mtime_ns, int64_t* size) {
  // Non-blocking: a FIFO or device put in the file's place must not stall
  // every call (they wait on the upstream's lock meanwhile).
  const int fd =
      open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--token-file: cannot read \"", path, "\""));
  }
  struct stat st;
  std::string data;
  bool whole = false;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
      st.st_size <= kMaxTokenFileBytes) {
    data.resize(st.st_size + 1);  // one more: a file that grew is seen
    size_t got = 0;
    ssize_t n;
    while (got < data.size() &&
           ((n = read(fd, data.data() + got, data.size() - got)) > 0 ||
            (n < 0 && errno == EINTR))) {
      if (n > 0) got += n;
    }
    whole = got == static_cast<size_t>(st.st_size);
    data.resize(got);
  }
  close(fd);
  if (!whole) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--token-file: \"", path,
        "\" is not a non-empty regular file of the size it had when opened"));
  }
  std::string token(absl::StripAsciiWhitespace(data));
  if (token.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--token-file: \"", path, "\" holds no token"));
  }
  if (absl::Status s = CheckToken(token); !s.ok()) return s;
  *mtime_ns = st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
  *size = st.st_size;
  return token;
}

void SessionUpstream::RefreshToken() {
  if (token_file_.empty()) return;
  struct stat st;
  if (stat(token_file_.c_str(), &st) != 0) return;  // keeps the last token
  const int64_t mtime = st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec;
  if (mtime == token_mtime_ns_ && st.st_size == token_size_) return;
  // The time and size recorded are those of what was read (fstat of the
  // open file), so a file rewritten meanwhile is read again next call.
  int64_t read_mtime = 0, read_size = 0;
  auto t = RereadTokenFile(token_file_, &read_mtime, &read_size);
  if (!t.ok()) return;  // keeps the last token; tried again next call
  bearer_ = Bearer(*t);
  token_mtime_ns_ = read_mtime;
  token_size_ = read_size;
}

SessionUpstream::Target SessionUpstream::ForCall() {
  absl::MutexLock l(&mu_);
  RefreshToken();
  const std::string want = follower_.Current();
  if (want != server_) {
    // Options were checked at Open; a failure here keeps the old channel.
    (void)Connect(want);
  }
  return Target{channel_, bearer_, server_};
}

bool SessionUpstream::Retry(const std::string& server, const grpc::Status& s,
                            size_t* tries) {
  return !s.ok() && ++*tries <= 2 * endpoints() &&
         OnFailure(server, s.error_code(), s.error_message());
}

bool SessionUpstream::OnFailure(const std::string& server, int code,
                                const std::string& message) {
  if (follower_.size() < 2) return false;
  if (server != follower_.Current()) {
    // Another call already moved on; retry there if this was a failover
    // kind (UNAVAILABLE, DEADLINE_EXCEEDED).
    return code == 14 || code == 4;
  }
  return follower_.OnFailure(code, message);
}

SessionService::SessionService(SessionUpstream* upstream,
                               std::string status_line,
                               std::function<void()> on_stop, int max_calls)
    : upstream_(upstream),
      status_line_(std::move(status_line)),
      on_stop_(std::move(on_stop)),
      max_calls_(max_calls) {}

grpc::ServerGenericBidiReactor* SessionService::CreateReactor(
    grpc::GenericCallbackServerContext* ctx) {
  const std::string& method = ctx->method();
  Touch();
  if (absl::StartsWith(method, "/joule.cli.Session/") ||
      ClientStreaming(method)) {
    return new LocalCall(this, method);
  }
  if (grpc::Status full = CheckCapacity(); !full.ok()) {
    return new LocalCall(this, method, full);
  }
  CountCall();
  return new ForwardedCall(this, ctx);
}

grpc::Status SessionService::CheckCapacity() const {
  if (max_calls_ > 0 &&
      in_flight_.load(std::memory_order_relaxed) >= max_calls_) {
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        absl::StrCat("joulectl session: ", max_calls_,
                                     " calls in flight, the most it forwards "
                                     "at once (session start --max-calls); "
                                     "retry when one has ended"));
  }
  return grpc::Status::OK;
}

void SessionService::Stop() {
  if (!stopped_.exchange(true)) on_stop_();
}

std::string SessionService::StatusLine() const {
  return absl::StrCat(
      status_line_, ", jouled at ", upstream_->Current(), ", up ",
      absl::FormatDuration(
          absl::Trunc(absl::Now() - started_, absl::Seconds(1))),
      ", ", calls_.load(std::memory_order_relaxed), " calls forwarded, ",
      in_flight_.load(std::memory_order_relaxed), " in flight");
}

}  // namespace joule::cli
