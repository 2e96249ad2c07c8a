#include <stdlib.h>

#include <filesystem>
#include <map>

#include "gtest/gtest.h"
#include "storage/memory_store.h"
#include "storage/rocksdb_store.h"

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

// The same conformance checks run against every Store implementation.
class StoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "memory") {
      store_ = std::make_unique<MemoryStore>();
    } else {
      dir_ = TempDir();
      auto s = RocksDbStore::Open({.path = dir_});
      ASSERT_TRUE(s.ok()) << s.status();
      store_ = std::move(*s);
    }
  }
  void TearDown() override {
    store_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  std::string dir_;
  std::unique_ptr<Store> store_;
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

TEST_P(StoreTest, BatchIsAtomicAcrossTables) {
  WriteBatch b;
  b.Put(kUsage, "t/k1", "event");
  b.Put(kUsageAgg, "t/2026-11", "agg");
  b.Delete(kUsage, "missing");
  ASSERT_TRUE(store_->Write(b, {.sync = true}).ok());
  EXPECT_TRUE(store_->Get(kUsage, "t/k1")->has_value());
  EXPECT_TRUE(store_->Get(kUsageAgg, "t/2026-11")->has_value());
}

INSTANTIATE_TEST_SUITE_P(Stores, StoreTest,
                         ::testing::Values("memory", "rocksdb"));

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
