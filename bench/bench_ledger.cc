// Billing ledger throughput on RocksDB: RecordUsage events/s (batches of
// 1,000 inference usage events, one synchronous WriteBatch each) and the
// time to compute one tenant's monthly statement after N events.
//
//   build-sim/bin/bench_ledger --benchmark_repetitions=5
//   JOULE_BENCH_EVENTS=10000000 build-sim/bin/bench_ledger
//       --benchmark_filter=Statement    (one command: the 10M-event row)
//
// The database lives in a fresh directory under $TMPDIR (default /tmp) and
// is removed at exit.

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "billing/ledger.h"
#include "common/clock.h"
#include "common/proto_time.h"
#include "storage/rocksdb_store.h"

namespace joule::billing {
namespace {

class AllTenants final : public TenantDirectory {
 public:
  bool Exists(std::string_view) const override { return true; }
};

// A ledger over a fresh RocksDB with three priced inference models.
struct Fixture {
  std::filesystem::path dir;
  std::unique_ptr<storage::RocksDbStore> store;
  FakeClock clock{absl::FromUnixSeconds(1767225600)};  // 2026-01-01
  AllTenants tenants;
  std::unique_ptr<Ledger> ledger;
  uint64_t next_key = 0;
  std::mt19937_64 rng{1};

  Fixture() {
    const char* tmp = std::getenv("TMPDIR");
    std::string templ =
        absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/joule-bench-XXXXXX");
    dir = mkdtemp(templ.data());
    storage::RocksDbStore::Options o;
    o.path = (dir / "db").string();
    store = *storage::RocksDbStore::Open(o);
    ledger = std::make_unique<Ledger>(store.get(), &clock, &tenants);
    for (const char* m : {"llama-70b", "llama-8b", "mixtral"}) {
      v1::Price p;
      p.mutable_inference()->set_model(m);
      auto* t = p.mutable_inference()->add_input();
      t->set_from_tokens(0);
      t->set_price("0.60");
      t = p.mutable_inference()->add_input();
      t->set_from_tokens(1'000'000'000);
      t->set_price("0.50");
      t = p.mutable_inference()->add_output();
      t->set_from_tokens(0);
      t->set_price("0.80");
      p.mutable_inference()->set_per_request("0.0001");
      *p.mutable_effective_from() = ToProtoTime(clock.Now());
      (void)ledger->SetPrice(p);
    }
    // Usage of January, recorded at the end of the month.
    clock.Set(absl::FromUnixSeconds(1767225600) + absl::Hours(24 * 30));
  }
  ~Fixture() {
    ledger.reset();
    if (store) (void)store->Close();
    store.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }

  // `n` new events of `tenants` tenants spread over January.
  std::vector<v1::UsageEvent> Batch(int n, int num_tenants) {
    static const char* kModels[] = {"llama-70b", "llama-8b", "mixtral"};
    std::vector<v1::UsageEvent> b(n);
    for (v1::UsageEvent& e : b) {
      *e.mutable_time() = ToProtoTime(absl::FromUnixSeconds(
          1767225600 + static_cast<int64_t>(rng() % (30 * 86400))));
      e.set_tenant(absl::StrCat("tenant-", rng() % num_tenants));
      e.set_model(kModels[rng() % 3]);
      e.set_requests(1);
      e.set_input_tokens(static_cast<int64_t>(100 + rng() % 4000));
      e.set_output_tokens(static_cast<int64_t>(10 + rng() % 1000));
      e.set_idempotency_key(absl::StrCat("k", next_key++));
    }
    return b;
  }
};

void BM_RecordUsageRocksDb(benchmark::State& state) {
  Fixture f;
  const int batch = static_cast<int>(state.range(0));
  std::vector<std::vector<v1::UsageEvent>> batches;
  for (int i = 0; i < 64; ++i) batches.push_back(f.Batch(batch, 100));
  size_t i = 0;
  int64_t events = 0;
  for (auto _ : state) {
    if (i == batches.size()) {
      state.PauseTiming();
      for (auto& b : batches) b = f.Batch(batch, 100);
      i = 0;
      state.ResumeTiming();
    }
    auto r = f.ledger->RecordUsage(batches[i++], "operator");
    if (!r.ok() || r->accepted() != static_cast<uint32_t>(batch)) {
      state.SkipWithError("RecordUsage failed");
      break;
    }
    events += batch;
  }
  state.counters["events/s"] = benchmark::Counter(static_cast<double>(events),
                                                  benchmark::Counter::kIsRate);
}
BENCHMARK(BM_RecordUsageRocksDb)
    ->Arg(1000)
    ->Arg(10000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// One tenant's statement after JOULE_BENCH_EVENTS (default 1,000,000)
// events of that tenant (ingested once, not timed).
void BM_StatementAfterEvents(benchmark::State& state) {
  static int64_t events = [] {
    const char* e = std::getenv("JOULE_BENCH_EVENTS");
    return e != nullptr ? std::atoll(e) : int64_t{1'000'000};
  }();
  static Fixture* f = [] {
    auto* fx = new Fixture;
    for (int64_t done = 0; done < events; done += 10'000) {
      auto r = fx->ledger->RecordUsage(fx->Batch(10'000, 1), "operator");
      if (!r.ok()) std::abort();
    }
    return fx;
  }();
  for (auto _ : state) {
    auto s = f->ledger->GetStatement("tenant-0", "2026-01");
    if (!s.ok()) {
      state.SkipWithError("GetStatement failed");
      break;
    }
    benchmark::DoNotOptimize(s);
  }
  state.counters["events"] = static_cast<double>(events);
}
BENCHMARK(BM_StatementAfterEvents)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The statements of all 100 tenants (one iteration: 100 GetStatement
// calls) after JOULE_BENCH_EVENTS (default 1,000,000) events spread over
// those tenants (ingested once, not timed).
void BM_Statement100Tenants(benchmark::State& state) {
  static Fixture* f = [] {
    const char* e = std::getenv("JOULE_BENCH_EVENTS");
    const int64_t events = e != nullptr ? std::atoll(e) : int64_t{1'000'000};
    auto* fx = new Fixture;
    for (int64_t done = 0; done < events; done += 10'000) {
      auto r = fx->ledger->RecordUsage(fx->Batch(10'000, 100), "operator");
      if (!r.ok()) std::abort();
    }
    return fx;
  }();
  for (auto _ : state) {
    for (int t = 0; t < 100; ++t) {
      auto s = f->ledger->GetStatement(absl::StrCat("tenant-", t), "2026-01");
      if (!s.ok()) {
        state.SkipWithError("GetStatement failed");
        return;
      }
      benchmark::DoNotOptimize(s);
    }
  }
  state.counters["statements/s"] =
      benchmark::Counter(100.0 * static_cast<double>(state.iterations()),
                         benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Statement100Tenants)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace joule::billing

BENCHMARK_MAIN();
