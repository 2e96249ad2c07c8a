#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/proto_time.h"
#include "daemon/event_log.h"
#include "gtest/gtest.h"
#include "joule/v1/joule.pb.h"
#include "storage/memory_store.h"

namespace joule::daemon {
namespace {

TEST(CompactEventsTest, DeletesOnlyOlderThanCutoffInBatches) {
  storage::MemoryStore store;
  absl::Mutex mu;
  FakeClock clock(absl::FromUnixSeconds(1'700'000'000));
  EventLog log(&mu, &store, &clock, nullptr);
  const absl::Time t0 = absl::FromUnixSeconds(1'700'000'000);
  // Events 1..10 one day apart.
  for (int i = 1; i <= 10; ++i) {
    v1::Event e;
    e.set_seq(i);
    *e.mutable_time() = ToProtoTime(t0 + absl::Hours(24) * i);
    ASSERT_TRUE(store
                    .Put(storage::kEvents, absl::StrFormat("%016x", i),
                         e.SerializeAsString())
                    .ok());
  }
  const int64_t writes_before = store.write_count();
  // Cutoff between day 7 and day 8: events 1..7 go, in batches of 3
  // (3 + 3 + 1 = 3 writes).
  auto n = log.Compact(t0 + absl::Hours(24) * 7 + absl::Hours(1), 3);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 7);
  EXPECT_EQ(store.write_count() - writes_before, 3);
  int left = 0;
  ASSERT_TRUE(store
                  .Scan(storage::kEvents, "",
                        [&](auto, auto) {
                          ++left;
                          return true;
                        })
                  .ok());
  EXPECT_EQ(left, 3);
  EXPECT_TRUE(
      store.Get(storage::kEvents, absl::StrFormat("%016x", 8))->has_value());
  // Nothing older left: a second run deletes nothing.
  EXPECT_EQ(*log.Compact(t0 + absl::Hours(24) * 7, 3), 0);
}

}  // namespace
}  // namespace joule::daemon
