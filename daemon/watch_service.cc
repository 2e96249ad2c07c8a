// AdminService.WatchEvents: one server-streaming reactor per subscriber,
// fed by the EventFeed (daemon/event_feed.h); and the PreviewPowerCap
// adapter.
#include <memory>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "daemon/event_feed.h"
#include "daemon/services.h"
#include "daemon/status_convert.h"

namespace joule::daemon {
namespace {

class WatchStream;

// Lets the feed's wake callback reach the stream only while it is alive:
// OnDone clears `stream` under `mu` before the stream is deleted.
struct Waker {
  absl::Mutex mu;
  WatchStream* stream ABSL_GUARDED_BY(mu) = nullptr;
};

// Writes the `subscribed` message, then whatever the queue holds, one write
// at a time. Ends with RESOURCE_EXHAUSTED when the queue overflowed, or
// CANCELLED when the client goes away or the server shuts down. Deletes
// itself in OnDone, after unsubscribing.
class WatchStream final
    : public grpc::ServerWriteReactor<v1::WatchEventsResponse> {
 public:
  WatchStream(std::shared_ptr<EventFeed> feed, FeedFilter filter)
      : feed_(std::move(feed)), waker_(std::make_shared<Waker>()) {
    {
      absl::MutexLock lock(&waker_->mu);
      waker_->stream = this;
    }
    queue_ = feed_->Subscribe(std::move(filter), [w = waker_] {
      absl::MutexLock lock(&w->mu);
      if (w->stream != nullptr) w->stream->Wake();
    });
    absl::MutexLock lock(&mu_);
    current_.set_subscribed(true);
    writing_ = true;
    StartWrite(&current_);
  }

  // Starts the next write if none is in flight.
  void Wake() {
    absl::MutexLock lock(&mu_);
    NextLocked();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "stream closed"));
      return;
    }
    NextLocked();
  }

  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }

  void OnDone() override {
    {
      absl::MutexLock lock(&waker_->mu);
      waker_->stream = nullptr;
    }
    feed_->Unsubscribe(queue_);
    delete this;
  }

 private:
  void NextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finished_) {
      if (!writing_ && pending_finish_) FinishLocked(*pending_finish_);
      return;
    }
    if (pending_finish_) {
      FinishLocked(*pending_finish_);
      return;
    }
    bool overflowed = false, closed = false;
    if (queue_->Pop(&current_, &overflowed, &closed)) {
      writing_ = true;
      StartWrite(&current_);
    } else if (closed) {
      FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                "jouled is shutting down"));
    } else if (overflowed) {
      FinishLocked(grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          "WatchEvents: the subscriber fell more than 1024 messages behind; "
          "resubscribe and re-read with ListEvents/GetJob"));
    }
  }

  // Finishes once; waits for a write in flight.
  void FinishLocked(const grpc::Status& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    if (writing_) {
      if (!pending_finish_) pending_finish_ = std::make_unique<grpc::Status>(s);
      return;
    }
    finished_ = true;
    Finish(s);
  }

  const std::shared_ptr<EventFeed> feed_;
  const std::shared_ptr<Waker> waker_;
  std::shared_ptr<FeedQueue> queue_;
  absl::Mutex mu_;
  v1::WatchEventsResponse current_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::unique_ptr<grpc::Status> pending_finish_ ABSL_GUARDED_BY(mu_);
};

// A stream refused before it starts.
class RejectedWatch final
    : public grpc::ServerWriteReactor<v1::WatchEventsResponse> {
 public:
  explicit RejectedWatch(const absl::Status& s) { Finish(ToGrpcStatus(s)); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerWriteReactor<v1::WatchEventsResponse>*
AdminServiceImpl::WatchEvents(grpc::CallbackServerContext* ctx,
                              const v1::WatchEventsRequest* req) {
  auto caller = gate_->Admit(ctx, "/joule.v1.AdminService/WatchEvents");
  if (!caller.ok()) return new RejectedWatch(caller.status());
  if (feed_ == nullptr) {
    return new RejectedWatch(
        absl::UnimplementedError("WatchEvents: no event feed"));
  }
  if (req->kind().size() > 64) {
    return new RejectedWatch(
        absl::InvalidArgumentError("kind: must be at most 64 characters"));
  }
  if (req->job_id().size() > 128) {
    return new RejectedWatch(
        absl::InvalidArgumentError("job_id: must be at most 128 characters"));
  }
  FeedFilter f;
  f.tenant_scope = caller->TenantScope();
  f.kind = req->kind();
  f.jobs = req->jobs();
  f.job_id = req->job_id();
  f.no_events = req->no_events();
  f.power = req->power();
  return new WatchStream(feed_, std::move(f));
}

grpc::ServerUnaryReactor* AdminServiceImpl::PreviewPowerCap(
    grpc::CallbackServerContext* ctx, const v1::SetPowerCapRequest* req,
    v1::PowerCapPreview* resp) {
  return gate_->Now(ctx, "/joule.v1.AdminService/PreviewPowerCap",
                    [this, req, resp](const Caller&) -> absl::Status {
                      auto p = manager_->PreviewPowerCap(*req);
                      if (!p.ok()) return p.status();
                      *resp = std::move(*p);
                      return absl::OkStatus();
                    });
}

}  // namespace joule::daemon
