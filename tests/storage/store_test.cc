#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "storage/etcd_store.h"
#include "storage/memory_store.h"
#include "storage/rocksdb_store.h"
#include "tests/storage/test_stores.h"

namespace joule::storage {
namespace {

std::string TempDir() {
  std::string tmpl =
      std::filesystem::temp_directory_path() / "joule-store-XXXXXX";
  return mkdtemp(tmpl.data());
}

std::map<std::string, std::string> ScanAll(Store& s, std::string_view table,
                                           std::string_view prefix = "") {
  std::map<std::string, std::string> out;
  EXPECT_TRUE(s.Scan(table, prefix, [&](auto k, auto v) {
                 out.emplace(k, v);
                 return true;
               }).ok());
  return out;
}

// The same conformance checks run against every Store implementation
// (Mesos style): memory, RocksDB and etcd (one real etcd member on loopback,
// shared by the suite; each test uses its own key prefix). The etcd cases
// skip, saying so, only when no etcd binary is installed.
class StoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    EtcdStore::Options o;
    o.prefix = "/test";
    o.scan_page = 3;  // small pages: scans cross page boundaries
    o.max_txn_ops = 10240;
    o.max_request_bytes = 10 << 20;
    auto s = joule::testing::OpenTestStore(GetParam(), o);
    if (absl::IsUnavailable(s.status())) GTEST_SKIP() << s.status().message();
    ASSERT_TRUE(s.ok()) << s.status();
    opened_ = std::move(*s);
    store_ = opened_.get();
  }
  joule::testing::TestStore opened_;
  Store* store_ = nullptr;
};

TEST_P(StoreTest, PutGetDeletePerTable) {
  ASSERT_TRUE(store_->Put(kNodes, "n1", "a").ok());
  ASSERT_TRUE(store_->Put(kJobs, "n1", "b").ok());  // same key, other table
  EXPECT_EQ(**store_->Get(kNodes, "n1"), "a");
  EXPECT_EQ(**store_->Get(kJobs, "n1"), "b");
  EXPECT_FALSE(store_->Get(kNodes, "n2")->has_value());
  ASSERT_TRUE(store_->Delete(kNodes, "n1").ok());
  EXPECT_FALSE(store_->Get(kNodes, "n1")->has_value());
  EXPECT_EQ(**store_->Get(kJobs, "n1"), "b");
}

TEST_P(StoreTest, ScanIsOrderedAndPrefixed) {
  WriteBatch b;
  b.Put(kEvents, "b/2", "2");
  b.Put(kEvents, "a/1", "1");
  b.Put(kEvents, "b/1", "1");
  b.Put(kEvents, "c", "3");
  ASSERT_TRUE(store_->Write(b, {}).ok());
  auto all = ScanAll(*store_, kEvents, "b/");
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all.begin()->first, "b/1");
  std::vector<std::string> keys;
  ASSERT_TRUE(store_
                  ->Scan(kEvents, "",
                         [&](auto k, auto) {
                           keys.emplace_back(k);
                           return keys.size() < 2;  // stops early
                         })
                  .ok());
  EXPECT_EQ(keys, (std::vector<std::string>{"a/1", "b/1"}));
}

// Several ops on one key in a batch: the last one wins, as applying them
// in order would (EtcdStore collapses them: etcd refuses duplicate keys in
// one Txn). PutMoved is Put without the copies.
TEST_P(StoreTest, LastOpOnAKeyWinsAndPutMovedPuts) {
  ASSERT_TRUE(store_->Put(kJobs, "gone", "x").ok());
  WriteBatch b;
  b.Put(kJobs, "a", "1");
  b.Delete(kJobs, "gone");
  b.Put(kJobs, "a", "2");
  b.Put(kJobs, "gone", "back");
  b.Delete(kJobs, "gone");
  b.PutMoved(kJobs, std::string("m"), std::string("moved"));
  b.Put(kNodes, "a", "other table");
  ASSERT_TRUE(store_->Write(b, {}).ok());
  EXPECT_EQ(**store_->Get(kJobs, "a"), "2");
  EXPECT_FALSE(store_->Get(kJobs, "gone")->has_value());
  EXPECT_EQ(**store_->Get(kJobs, "m"), "moved");
  EXPECT_EQ(**store_->Get(kNodes, "a"), "other table");
}

TEST_P(StoreTest, BatchIsAtomicAcrossTables) {
  WriteBatch b;
  b.Put(kUsage, "t/k1", "event");
  b.Put(kUsageAgg, "t/2026-11", "agg");
  b.Delete(kUsage, "missing");
  ASSERT_TRUE(store_->Write(b, {.sync = true}).ok());
  EXPECT_TRUE(store_->Get(kUsage, "t/k1")->has_value());
  EXPECT_TRUE(store_->Get(kUsageAgg, "t/2026-11")->has_value());
}

TEST_P(StoreTest, LastOpOnAKeyWinsInABatch) {
  WriteBatch b;
  b.Put(kJobs, "j1", "first");
  b.Put(kJobs, "j1", "second");
  b.Put(kJobs, "j2", "x");
  b.Delete(kJobs, "j2");  // put then delete: absent
  b.Delete(kJobs, "j3");
  b.Put(kJobs, "j3", "back");  // delete then put: present
  ASSERT_TRUE(store_->Write(b, {}).ok());
  EXPECT_EQ(**store_->Get(kJobs, "j1"), "second");
  EXPECT_FALSE(store_->Get(kJobs, "j2")->has_value());
  EXPECT_EQ(**store_->Get(kJobs, "j3"), "back");
}

TEST_P(StoreTest, ScanCrossesPagesInKeyOrder) {
  // 40 keys written in reverse; 3-key pages on etcd = 14 Range calls.
  WriteBatch b;
  for (int i = 39; i >= 0; --i) {
    b.Put(kEvents, absl::StrFormat("%016x", i), absl::StrCat(i));
  }
  b.Put(kEvents, "zz", "outside");
  b.Put(kTenants, "0000", "other table");
  ASSERT_TRUE(store_->Write(b, {}).ok());
  std::vector<std::string> keys;
  ASSERT_TRUE(store_
                  ->Scan(kEvents, "0000",
                         [&](auto k, auto v) {
                           keys.emplace_back(k);
                           return true;
                         })
                  .ok());
  ASSERT_EQ(keys.size(), 40u);
  EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
  EXPECT_EQ(keys.front(), "0000000000000000");
  EXPECT_EQ(keys.back(), "0000000000000027");  // 39 = 0x27
}

TEST_P(StoreTest, BinaryKeysNulAndHighBytes) {
  // usage keys are "tenant \0 key"; 0xff must sort last and end a prefix.
  const std::string a("t\0a", 3), b("t\0b", 3), hi("t\xff\xff", 3),
      other("u", 1);
  WriteBatch w;
  w.Put(kUsage, hi, "3");
  w.Put(kUsage, b, "2");
  w.Put(kUsage, a, "1");
  w.Put(kUsage, other, "4");
  ASSERT_TRUE(store_->Write(w, {}).ok());
  auto all = ScanAll(*store_, kUsage, "t");
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all.begin()->first, a);
  EXPECT_EQ(all.rbegin()->first, hi);
  auto hi_only = ScanAll(*store_, kUsage, std::string("t\xff", 2));
  ASSERT_EQ(hi_only.size(), 1u);
  EXPECT_EQ(**store_->Get(kUsage, a), "1");
}

TEST_P(StoreTest, LargeValuesRoundTrip) {
  std::string big(1 << 20, 'x');  // 1 MiB
  for (size_t i = 0; i < big.size(); i += 4096) big[i] = char('a' + i % 26);
  const std::string key("2026-11\0acme", 12);
  ASSERT_TRUE(store_->Put(kStatements, key, big).ok());
  EXPECT_EQ(**store_->Get(kStatements, key), big);
  auto all = ScanAll(*store_, kStatements);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all.begin()->second.size(), big.size());
}

TEST_P(StoreTest, DeletesAreGoneFromScansAndGets) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(store_->Put(kNodes, absl::StrCat("n", i), "v").ok());
  }
  WriteBatch b;
  b.Delete(kNodes, "n1");
  b.Delete(kNodes, "n3");
  ASSERT_TRUE(store_->Write(b, {}).ok());
  auto all = ScanAll(*store_, kNodes, "n");
  EXPECT_EQ(all.size(), 3u);
  EXPECT_FALSE(all.contains("n1"));
  EXPECT_FALSE(store_->Get(kNodes, "n3")->has_value());
}

TEST_P(StoreTest, ScanCallbackMayWriteAndSeesASnapshot) {
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(store_->Put(kJobs, absl::StrCat("job-", i), "pending").ok());
  }
  int seen = 0;
  ASSERT_TRUE(store_
                  ->Scan(kJobs, "job-",
                         [&](auto k, auto v) {
                           ++seen;
                           // Writes from inside the scan do not deadlock.
                           EXPECT_TRUE(
                               store_->Put(kJobs, std::string(k), "done").ok());
                           return true;
                         })
                  .ok());
  EXPECT_EQ(seen, 6);
  EXPECT_EQ(**store_->Get(kJobs, "job-5"), "done");
}

TEST_P(StoreTest, ManyOpsInOneBatchAreAtomic) {
  // 2,000 ops: over etcd's default 128, under this suite's 10,240.
  WriteBatch b;
  for (int i = 0; i < 1000; ++i) {
    b.Put(kUsage,
          absl::StrCat("t", std::string(1, '\0'), absl::StrFormat("k%05d", i)),
          "rec");
    b.Put(kUsageAgg, absl::StrFormat("a%05d", i), "agg");
  }
  ASSERT_TRUE(store_->Write(b, {}).ok());
  EXPECT_EQ(ScanAll(*store_, kUsage).size(), 1000u);
  EXPECT_EQ(ScanAll(*store_, kUsageAgg).size(), 1000u);
}

INSTANTIATE_TEST_SUITE_P(Stores, StoreTest,
                         ::testing::Values("memory", "rocksdb", "etcd"));

TEST(RocksDbStoreTest, ReopenKeepsDataAndUnknownFamilies) {
  const std::string dir = TempDir();
  {
    RocksDbStore::Options o{.path = dir};
    o.tables.push_back("future_table");  // a table a newer build added
    auto s = RocksDbStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_TRUE((*s)->Put(kNodes, "n1", "v1").ok());
    ASSERT_TRUE((*s)->Put("future_table", "k", "kept").ok());
    ASSERT_TRUE((*s)->Close().ok());
    EXPECT_FALSE((*s)->Put(kNodes, "n2", "x").ok());  // closed
  }
  {
    auto s = RocksDbStore::Open({.path = dir});  // default tables only
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(**(*s)->Get(kNodes, "n1"), "v1");
    EXPECT_EQ(**(*s)->Get("future_table", "k"), "kept");
    EXPECT_EQ((*s)->Get("no_such_table", "k").status().code(),
              absl::StatusCode::kNotFound);
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace joule::storage
