#pragma once

// The fan-out behind AdminService.WatchEvents: ClusterManager publishes
// every event and job state change (with its lock held, so Publish never
// blocks), and each subscriber (one per open stream) gets the messages its
// filter lets through in a bounded queue of its own.

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "joule/v1/joule.pb.h"

namespace joule::daemon {

// What one subscriber wants: the request's filter plus the caller's tenant
// scope ("" = every tenant), applied exactly as ListEvents applies it: a
// scoped subscriber sees only events whose subject is one of its jobs, and
// state changes of its own jobs.
struct FeedFilter {
  std::string tenant_scope;
  std::string kind;
  bool jobs = false;
  std::string job_id;
  bool no_events = false;
  bool power = false;  // power_round ticks (no tenant data: any scope)
};

// One subscriber's queue. Owned jointly (shared_ptr) by the feed and the
// stream; thread-safe. Invariants: at most `limit` messages are queued; once
// overflowed, nothing more is queued and the stream is to be ended.
class FeedQueue {
 public:
  FeedQueue(FeedFilter filter, size_t limit, std::function<void()> wake)
      : filter_(std::move(filter)), limit_(limit), wake_(std::move(wake)) {}

  const FeedFilter& filter() const { return filter_; }
  // Queues `m` and wakes the stream, or marks the queue overflowed.
  void Push(v1::WatchEventsResponse m);
  // Ends the stream (jouled is shutting down) and wakes it.
  void Close();
  // The oldest queued message, if any; else `overflowed` or `closed` tell
  // whether the stream is to end.
  bool Pop(v1::WatchEventsResponse* m, bool* overflowed, bool* closed);

 private:
  const FeedFilter filter_;
  const size_t limit_;
  const std::function<void()> wake_;
  absl::Mutex mu_;
  std::deque<v1::WatchEventsResponse> queue_ ABSL_GUARDED_BY(mu_);
  bool overflowed_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

// The set of subscribers. Thread-safe; Publish* take only the feed's own
// lock and each queue's, never block on a stream.
class EventFeed {
 public:
  static constexpr size_t kQueueLimit = 1024;

  explicit EventFeed(size_t queue_limit = kQueueLimit)
      : queue_limit_(queue_limit) {}

  // A new subscriber; `wake` is called (from a publisher's thread, without
  // the feed's lock) when a message was queued or the queue overflowed.
  std::shared_ptr<FeedQueue> Subscribe(FeedFilter filter,
                                       std::function<void()> wake);
  void Unsubscribe(const std::shared_ptr<FeedQueue>& q);

  // `job_tenant`: the tenant of the job the event is about, "" if none.
  void PublishEvent(const v1::Event& e, const std::string& job_tenant);
  // The job's latest transition (its last history entry).
  void PublishJobState(const v1::Job& job);
  // A power-control round ran at `now`: a power_round tick to subscribers
  // with `power`, at most one per kPowerTickEvery (later rounds within it
  // are dropped), so ticks stay bounded however often rounds run.
  static constexpr absl::Duration kPowerTickEvery = absl::Seconds(1);
  void PublishPowerRound(absl::Time now);

  // Whether `filter` lets the message through (pure; tested).
  static bool PassesEvent(const FeedFilter& f, const v1::Event& e,
                          const std::string& job_tenant);
  static bool PassesJob(const FeedFilter& f, const v1::JobStateChange& c);

  // Ends every open stream (UNAVAILABLE) and refuses new ones.
  void CloseAll();
  bool closed() const;
  size_t subscribers() const;

 private:
  const size_t queue_limit_;
  mutable absl::Mutex mu_;
  absl::flat_hash_set<std::shared_ptr<FeedQueue>> queues_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_power_tick_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace joule::daemon
