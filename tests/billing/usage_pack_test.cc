// Packed usage records and the in-memory index (billing/usage_pack.h).
#include "billing/usage_pack.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace joule::billing {
namespace {

TEST(UsagePackTest, KeySortsByNewestEventAndRoundTrips) {
  const std::string a = PackKey(1'767'225'600, 7);
  const std::string b = PackKey(1'767'225'601, 1);
  EXPECT_LT(a, b);  // an older newest event sorts first, whatever the seq
  int64_t t = 0;
  uint64_t seq = 0;
  ASSERT_TRUE(ParsePackKey(a, &t, &seq));
  EXPECT_EQ(t, 1'767'225'600);
  EXPECT_EQ(seq, 7u);
  EXPECT_FALSE(ParsePackKey("not a pack key", &t, &seq));
}

TEST(UsagePackTest, WriterOutputParsesAsTheMessageAndKeysReadAlone) {
  PackWriter w;
  std::vector<std::string> keys = {std::string("acme\0op\0k1", 10),
                                   std::string("acme\0op\0k2", 10)};
  for (int i = 0; i < 2; ++i) {
    v1::billing::UsageRecord r;
    r.set_tenant("acme");
    r.set_requests(i + 1);
    r.mutable_time()->set_seconds(100 + 50 * (1 - i));  // 150, then 100
    w.Add(keys[static_cast<size_t>(i)], r);
  }
  EXPECT_EQ(w.count(), 2u);
  EXPECT_EQ(w.newest_s(), 150);
  const std::string value = w.Take();
  EXPECT_EQ(w.count(), 0u);
  v1::billing::UsagePack msg;
  ASSERT_TRUE(msg.ParseFromString(value));
  ASSERT_EQ(msg.keys_size(), 2);
  EXPECT_EQ(msg.keys(1), keys[1]);
  EXPECT_EQ(msg.records(1).requests(), 2);
  std::vector<std::string> seen;
  ASSERT_TRUE(
      ForEachPackKey(value, [&](std::string_view k) { seen.emplace_back(k); }));
  EXPECT_EQ(seen, keys);
  ParsedPack p;
  ASSERT_TRUE(p.Parse(value));
  ASSERT_NE(p.Find(keys[0]), nullptr);
  EXPECT_EQ(p.Find(keys[0])->requests(), 1);
  EXPECT_EQ(p.Find("acme"), nullptr);
  // A truncated value is malformed, not a shorter pack.
  EXPECT_FALSE(ForEachPackKey(value.substr(0, value.size() - 3),
                              [](std::string_view) {}));
}

TEST(UsageIndexTest, CollidingHashesKeepEveryLocation) {
  UsageIndex idx;
  const uint32_t p1 = idx.AddPack(100, 1, 2);
  const uint32_t p2 = idx.AddPack(200, 2, 1);
  idx.Add(42, p1);
  idx.Add(42, p2);  // another key with the same hash
  idx.Add(42, UsageIndex::kSingle);
  idx.Add(7, p1);
  auto where = idx.Find(42);
  EXPECT_EQ(std::vector<uint32_t>(where.begin(), where.end()),
            std::vector<uint32_t>({p1, p2, UsageIndex::kSingle}));
  EXPECT_EQ(idx.keys(), 4u);
  idx.Remove(42, p1);
  idx.Remove(42, UsageIndex::kSingle);
  where = idx.Find(42);
  EXPECT_EQ(std::vector<uint32_t>(where.begin(), where.end()),
            std::vector<uint32_t>({p2}));
  idx.Remove(42, p1);  // not there: nothing
  EXPECT_EQ(idx.Find(42).size(), 1u);
  EXPECT_EQ(idx.keys(), 2u);
}

TEST(UsageIndexTest, PacksBeforeACutoffAndSlotReuse) {
  UsageIndex idx;
  const uint32_t a = idx.AddPack(100, 5, 1);
  const uint32_t b = idx.AddPack(300, 9, 1);
  EXPECT_EQ(idx.PacksBefore(100), std::vector<uint32_t>{});
  EXPECT_EQ(idx.PacksBefore(101), std::vector<uint32_t>{a});
  EXPECT_EQ(idx.TakeSeq(), 10u);  // above every pack loaded
  idx.RemovePack(a);
  EXPECT_EQ(idx.packs(), 1u);
  EXPECT_EQ(idx.PacksBefore(1000), std::vector<uint32_t>{b});
  EXPECT_EQ(idx.AddPack(400, 11, 1), a);  // the freed slot
  EXPECT_EQ(idx.pack(a).seq, 11u);
}

}  // namespace
}  // namespace joule::billing
