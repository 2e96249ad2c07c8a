// One retention pass over 1M finished jobs (docs/ha.md#sizing):
// ClusterManager::CompactFinishedJobs on a MemoryStore holding
// JOULE_BENCH_JOBS (default 1,000,000) finished jobs, loaded by the manager.
//   - KeepAll: nothing is old enough; one pass looks at kRetentionPassJobs
//     jobs (100,000), 1,000 per hold of the manager's lock.
//   - DeleteOnePass: every job is old and settled; one pass deletes the
//     100,000 jobs it looks at (writes of 1,000 deletes).
//
//   build/bin/bench_retention
//   JOULE_BENCH_JOBS=200000 build/bin/bench_retention

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "common/clock.h"
#include "common/proto_time.h"
#include "config/cluster_config.h"
#include "daemon/cluster_manager.h"
#include "storage/memory_store.h"

namespace joule::daemon {
namespace {

int64_t Jobs() {
  const char* n = std::getenv("JOULE_BENCH_JOBS");
  return n != nullptr ? std::atoll(n) : 1'000'000;
}

// A manager over `Jobs()` completed jobs that ended on 2026-01-01.
struct Fixture {
  storage::MemoryStore store;
  FakeClock clock{absl::FromUnixSeconds(1767225600)};
  std::unique_ptr<ClusterManager> manager;

  Fixture() {
    const absl::Time ended = absl::FromUnixSeconds(1767225600);
    storage::WriteBatch batch;
    for (int64_t i = 0; i < Jobs(); ++i) {
      v1::Job j;
      j.set_id(absl::StrFormat("job-%07d", i));
      j.set_state(v1::JOB_STATE_SUCCEEDED);
      j.mutable_spec()->set_tenant("acme");
      v1::JobTransition* h = j.add_history();
      *h->mutable_time() = ToProtoTime(ended);
      h->set_state(v1::JOB_STATE_SUCCEEDED);
      batch.Put(storage::kJobs, j.id(), j.SerializeAsString());
      if (batch.size() == 10'000) {
        (void)store.Write(batch, {});
        batch.Clear();
      }
    }
    (void)store.Write(batch, {});
    ClusterManagerOptions o;
    o.config = config::DefaultClusterConfig();
    o.store = &store;
    o.clock = &clock;
    manager = std::make_unique<ClusterManager>(std::move(o));
    if (!manager->Load().ok()) std::abort();
  }
};

void BM_RetentionPassKeepAll(benchmark::State& state) {
  static Fixture* f = new Fixture();
  for (auto _ : state) {
    // Jobs ended on 2026-01-01; a cutoff before that keeps every one.
    auto n = f->manager->CompactFinishedJobs(
        absl::FromUnixSeconds(1767225600) - absl::Hours(1),
        [](const std::string&, uint32_t) { return true; });
    if (!n.ok() || *n != 0) state.SkipWithError("pass failed");
  }
  state.counters["jobs_looked_at"] =
      static_cast<double>(ClusterManager::kRetentionPassJobs);
}
BENCHMARK(BM_RetentionPassKeepAll)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(5);

void BM_RetentionPassDeleteOnePass(benchmark::State& state) {
  static Fixture* f = new Fixture();
  int64_t deleted = 0;
  for (auto _ : state) {
    auto n = f->manager->CompactFinishedJobs(
        absl::FromUnixSeconds(1767225600) + absl::Hours(1),
        [](const std::string&, uint32_t) { return true; });
    if (!n.ok()) state.SkipWithError("pass failed");
    deleted += n.ok() ? *n : 0;
  }
  state.counters["deleted_per_pass"] =
      static_cast<double>(deleted) / static_cast<double>(state.iterations());
}
BENCHMARK(BM_RetentionPassDeleteOnePass)
    ->Unit(benchmark::kMillisecond)
    ->Iterations(3);

}  // namespace
}  // namespace joule::daemon

BENCHMARK_MAIN();
