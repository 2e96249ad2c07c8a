#include "daemon/event_feed.h"

#include <vector>

#include "common/proto_time.h"

namespace joule::daemon {

void FeedQueue::Push(v1::WatchEventsResponse m) {
  {
    absl::MutexLock lock(&mu_);
    if (overflowed_) return;
    if (queue_.size() >= limit_) {
      overflowed_ = true;
    } else {
      queue_.push_back(std::move(m));
    }
  }
  if (wake_) wake_();
}

void FeedQueue::Close() {
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }
  if (wake_) wake_();
}

bool FeedQueue::Pop(v1::WatchEventsResponse* m, bool* overflowed,
                    bool* closed) {
  absl::MutexLock lock(&mu_);
  *overflowed = overflowed_;
  *closed = closed_;
  if (overflowed_ || closed_ || queue_.empty()) return false;
  *m = std::move(queue_.front());
  queue_.pop_front();
  return true;
}

std::shared_ptr<FeedQueue> EventFeed::Subscribe(FeedFilter filter,
                                                std::function<void()> wake) {
  auto q = std::make_shared<FeedQueue>(std::move(filter), queue_limit_,
                                       std::move(wake));
  bool closed = false;
  {
    absl::MutexLock lock(&mu_);
    closed = closed_;
    if (!closed) queues_.insert(q);
  }
  if (closed) q->Close();
  return q;
}

void EventFeed::CloseAll() {
  std::vector<std::shared_ptr<FeedQueue>> all;
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    all.assign(queues_.begin(), queues_.end());
  }
  for (const auto& q : all) q->Close();
}

bool EventFeed::closed() const {
  absl::MutexLock lock(&mu_);
  return closed_;
}

void EventFeed::Unsubscribe(const std::shared_ptr<FeedQueue>& q) {
  absl::MutexLock lock(&mu_);
  queues_.erase(q);
}

size_t EventFeed::subscribers() const {
  absl::MutexLock lock(&mu_);
  return queues_.size();
}

bool EventFeed::PassesEvent(const FeedFilter& f, const v1::Event& e,
                            const std::string& job_tenant) {
  if (f.no_events) return false;
  if (!f.kind.empty() && e.kind() != f.kind) return false;
  if (!f.job_id.empty() && e.subject() != f.job_id) return false;
  if (!f.tenant_scope.empty() && job_tenant != f.tenant_scope) return false;
  return true;
}

bool EventFeed::PassesJob(const FeedFilter& f, const v1::JobStateChange& c) {
  if (!f.jobs && f.job_id.empty()) return false;
  if (!f.job_id.empty() && c.job_id() != f.job_id) return false;
  if (!f.tenant_scope.empty() && c.tenant() != f.tenant_scope) return false;
  return true;
}

void EventFeed::PublishEvent(const v1::Event& e,
                             const std::string& job_tenant) {
  std::vector<std::shared_ptr<FeedQueue>> to;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& q : queues_) {
      if (PassesEvent(q->filter(), e, job_tenant)) to.push_back(q);
    }
  }
  if (to.empty()) return;
  v1::WatchEventsResponse m;
  *m.mutable_event() = e;
  for (const auto& q : to) q->Push(m);
}

void EventFeed::PublishJobState(const v1::Job& job) {
  v1::JobStateChange c;
  c.set_job_id(job.id());
  c.set_tenant(job.spec().tenant());
  c.set_attempt(job.attempt());
  c.set_exit_code(job.exit_code());
  if (job.history_size() > 0) {
    const v1::JobTransition& t = job.history(job.history_size() - 1);
    c.set_state(t.state());
    c.set_reason(t.reason());
    *c.mutable_time() = t.time();
  } else {
    c.set_state(job.state());
    c.set_reason(job.reason());
  }
  std::vector<std::shared_ptr<FeedQueue>> to;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& q : queues_) {
      if (PassesJob(q->filter(), c)) to.push_back(q);
    }
  }
  if (to.empty()) return;
  v1::WatchEventsResponse m;
  *m.mutable_job() = std::move(c);
  for (const auto& q : to) q->Push(m);
}

void EventFeed::PublishPowerRound(absl::Time now) {
  std::vector<std::shared_ptr<FeedQueue>> to;
  {
    absl::MutexLock lock(&mu_);
    if (now - last_power_tick_ < kPowerTickEvery) return;
    for (const auto& q : queues_) {
      if (q->filter().power) to.push_back(q);
    }
    if (to.empty()) return;  // the next subscriber gets the next round's
    last_power_tick_ = now;
  }
  v1::WatchEventsResponse m;
  *m.mutable_power_round()->mutable_time() = ToProtoTime(now);
  for (const auto& q : to) q->Push(m);
}

}  // namespace joule::daemon
