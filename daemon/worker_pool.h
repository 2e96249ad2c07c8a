#pragma once

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace joule::daemon {

// A fixed set of threads that run posted tasks in order of posting. The
// gRPC callback API must not block in its reactions; handlers that wait on
// the disk (synced RocksDB writes) or on an agent (logs) post their work
// here and finish their reactor from a pool thread. Many writers waiting at
// once is also what lets RocksDB group their WAL syncs. Thread-safe.
class WorkerPool {
 public:
  explicit WorkerPool(int threads);
  ~WorkerPool();  // runs what is queued, then joins
  void Post(std::function<void()> task);

 private:
  void Run();
  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace joule::daemon
