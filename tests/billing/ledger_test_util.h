#pragma once

// Shared fixtures of the ledger tests: a fake tenant directory, a store that
// counts reads, one that limits and fails writes as etcd would, price / event /
// job builders and the LedgerTest fixture.

#include <algorithm>
#include <atomic>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "billing/ledger.h"
#include "billing/usage_pack.h"
#include "common/clock.h"
#include "gtest/gtest.h"
#include "storage/memory_store.h"

namespace joule::billing {

inline absl::Time T(const char* rfc3339) {
  absl::Time t;
  std::string err;
  EXPECT_TRUE(absl::ParseTime(absl::RFC3339_full, rfc3339, &t, &err)) << err;
  return t;
}

inline google::protobuf::Timestamp Ts(absl::Time t) {
  google::protobuf::Timestamp ts;
  ts.set_seconds(absl::ToUnixSeconds(t));
  return ts;
}

class FakeTenants : public TenantDirectory {
 public:
  bool Exists(std::string_view t) const override {
    return t == "acme" || t == "globex";
  }
};

// Counts store reads, to prove statements read aggregates only.
class CountingStore : public storage::Store {
 public:
  absl::Status Write(const storage::WriteBatch& b,
                     const storage::WriteOptions& o) override {
    ++writes;
    return inner.Write(b, o);
  }
  absl::StatusOr<std::optional<std::string>> Get(std::string_view t,
                                                 std::string_view k) override {
    ++reads;
    return inner.Get(t, k);
  }
  absl::Status Scan(std::string_view t, std::string_view p,
                    const std::function<bool(std::string_view,
                                             std::string_view)>& fn) override {
    ++reads;
    return inner.Scan(t, p, fn);
  }
  storage::MemoryStore inner;
  std::atomic<int> reads{0};
  std::atomic<int> writes{0};
};

// A store over `base` that takes at most `max_ops` ops (0: no limit of its
// own) and `max_bytes` bytes of keys and values (0: none) per write,
// refusing bigger batches as EtcdStore does (RESOURCE_EXHAUSTED, nothing
// written), and fails write number `fail_write` (UNAVAILABLE, nothing
// written: a crash). Counts the usage records, single or packed, that each
// successful write carried. Not thread-safe.
class PartsStore : public storage::ForwardingStore {
 public:
  PartsStore(storage::Store* base, int64_t max_ops, int64_t max_bytes)
      : ForwardingStore(base), max_ops_(max_ops), max_bytes_(max_bytes) {}
  absl::Status Write(const storage::WriteBatch& b,
                     const storage::WriteOptions& o) override {
    if (max_ops_ > 0 && static_cast<int64_t>(b.size()) > max_ops_) {
      return absl::ResourceExhaustedError("too many ops");
    }
    int64_t bytes = 0, records = 0;
    for (const auto& op : b.ops()) {
      bytes += static_cast<int64_t>(op.key.size() +
                                    (op.value ? op.value->size() : 0));
      if (op.table == storage::kUsage && op.value) ++records;
      if (op.table == storage::kUsagePacks && op.value) {
        EXPECT_TRUE(ForEachPackKey(*op.value, [&](auto) { ++records; }));
      }
    }
    if (max_bytes_ > 0 && bytes > max_bytes_) {
      return absl::ResourceExhaustedError("too many bytes");
    }
    if (++writes == fail_write) return absl::UnavailableError("crash");
    absl::Status s = base()->Write(b, o);
    if (s.ok() && records > 0) records_per_write.push_back(records);
    return s;
  }
  int64_t max_batch_ops() const override {
    return Min(base()->max_batch_ops(), max_ops_);
  }
  int64_t max_batch_bytes() const override {
    return Min(base()->max_batch_bytes(), max_bytes_);
  }

  int writes = 0;
  int fail_write = -1;
  std::vector<int64_t> records_per_write;  // successful writes with usage

 private:
  // The tighter of two limits, 0 meaning none.
  static int64_t Min(int64_t a, int64_t b) {
    return a > 0 && b > 0 ? std::min(a, b) : std::max(a, b);
  }
  const int64_t max_ops_;
  const int64_t max_bytes_;
};

inline v1::Price GpuPrice(const std::string& model, v1::ServiceClass cls,
                          const std::string& price, absl::Time from) {
  v1::Price p;
  p.mutable_gpu_hour()->set_gpu_model(model);
  p.mutable_gpu_hour()->set_service_class(cls);
  p.mutable_gpu_hour()->set_price(price);
  *p.mutable_effective_from() = Ts(from);
  return p;
}

// llama-70b: input $0.50/1M; output first 1,000,000,000 tokens of the month
// at $0.80/1M, the rest at $0.60/1M; $0.0001 per request.
inline v1::Price LlamaPrice(absl::Time from) {
  v1::Price p;
  v1::InferencePrice* ip = p.mutable_inference();
  ip->set_model("llama-70b");
  auto* in = ip->add_input();
  in->set_from_tokens(0);
  in->set_price("0.50");
  auto* o1 = ip->add_output();
  o1->set_from_tokens(0);
  o1->set_price("0.80");
  auto* o2 = ip->add_output();
  o2->set_from_tokens(1'000'000'000);
  o2->set_price("0.60");
  ip->set_per_request("0.0001");
  *p.mutable_effective_from() = Ts(from);
  return p;
}

inline v1::UsageEvent Ev(const std::string& key, absl::Time t, int64_t requests,
                         int64_t in, int64_t out,
                         const std::string& tenant = "acme",
                         const std::string& model = "llama-70b") {
  v1::UsageEvent e;
  *e.mutable_time() = Ts(t);
  e.set_tenant(tenant);
  e.set_model(model);
  e.set_requests(requests);
  e.set_input_tokens(in);
  e.set_output_tokens(out);
  e.set_idempotency_key(key);
  return e;
}

inline JobUsage Job(const std::string& id, v1::ServiceClass cls, uint32_t gpus,
                    absl::Time start, absl::Time end, uint32_t attempt = 1,
                    const std::string& model = "H100", uint64_t energy_mj = 0) {
  return JobUsage{"acme", id, attempt, model, cls, gpus, start, end, energy_mj};
}

inline const v1::StatementLine* FindLine(const v1::Statement& st,
                                         std::string_view pricing_model,
                                         std::string_view detail_part,
                                         std::string_view adjustment_for = "",
                                         std::string_view unit_price = "") {
  for (const v1::StatementLine& l : st.lines()) {
    if (l.pricing_model() == pricing_model &&
        l.detail().find(detail_part) != std::string::npos &&
        l.adjustment_for() == adjustment_for &&
        (unit_price.empty() || l.unit_price() == unit_price)) {
      return &l;
    }
  }
  return nullptr;
}

// Sum of the rounded non-informational lines.
inline int64_t SumLines(const v1::Statement& st) {
  int64_t s = 0;
  for (const v1::StatementLine& l : st.lines()) {
    if (!l.informational()) s += l.amount_cents();
  }
  return s;
}

class LedgerTest : public ::testing::Test {
 protected:
  LedgerTest() : clock_(T("2026-01-01T00:00:00Z")) {}
  void SetUp() override { ASSERT_TRUE(ledger_.Load().ok()); }

  v1::Statement Statement(const std::string& period,
                          const std::string& tenant = "acme") {
    absl::StatusOr<v1::Statement> st = ledger_.GetStatement(tenant, period);
    EXPECT_TRUE(st.ok()) << st.status();
    return st.ok() ? *st : v1::Statement();
  }
  void SetPrice(const v1::Price& p) {
    absl::StatusOr<v1::Price> r = ledger_.SetPrice(p);
    ASSERT_TRUE(r.ok()) << r.status();
  }

  CountingStore store_;
  FakeClock clock_;
  FakeTenants tenants_;
  Ledger ledger_{&store_, &clock_, &tenants_};
};

}  // namespace joule::billing
