#include "tests/storage/test_stores.h"

#include <stdlib.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "storage/memory_store.h"
#include "storage/rocksdb_store.h"
#include "tests/storage/etcd_fixture.h"

namespace joule::testing {
namespace {

// The binary's one etcd member and client, destroyed at exit (client
// first, then the member, which is killed by pid).
struct SharedEtcd {
  std::unique_ptr<EtcdCluster> cluster;
  std::unique_ptr<storage::EtcdClient> client;
  ~SharedEtcd() {
    client.reset();
    cluster.reset();
  }
};

SharedEtcd& Shared() {
  static SharedEtcd shared;
  return shared;
}

absl::StatusOr<storage::EtcdClient*> SharedEtcdClient() {
  SharedEtcd& shared = Shared();
  if (shared.client == nullptr) {
    if (shared.cluster == nullptr) {
      shared.cluster = std::make_unique<EtcdCluster>(EtcdCluster::Options{});
      absl::Status s = shared.cluster->Start();
      if (!s.ok()) {
        shared.cluster.reset();
        return s;
      }
    }
    auto c = storage::EtcdClient::Create(
        {.endpoints = shared.cluster->EndpointList()});
    if (!c.ok()) return c.status();
    shared.client = std::move(*c);
  }
  return shared.client.get();
}

}  // namespace

TestStore::~TestStore() {
  store_.reset();
  etcd_client_.reset();
  if (!dir_.empty()) std::filesystem::remove_all(dir_);
}

absl::Status TestStore::Close() {
  absl::Status s;
  if (kind_ == "rocksdb" && store_ != nullptr) {
    s = static_cast<storage::RocksDbStore*>(store_.get())->Close();
    store_.reset();
  } else if (kind_ == "etcd") {
    store_.reset();
    etcd_client_.reset();
  }
  return s;
}

absl::Status TestStore::Reopen() {
  if (kind_ == "memory") return absl::OkStatus();
  if (absl::Status s = Close(); !s.ok()) return s;
  if (kind_ == "rocksdb") {
    auto s = storage::RocksDbStore::Open({.path = dir_});
    if (!s.ok()) return s.status();
    store_ = std::move(*s);
    return absl::OkStatus();
  }
  if (Shared().cluster == nullptr) {
    return absl::FailedPreconditionError("no shared etcd member");
  }
  auto c = storage::EtcdClient::Create(
      {.endpoints = Shared().cluster->EndpointList()});
  if (!c.ok()) return c.status();
  etcd_client_ = std::move(*c);
  store_ = std::make_unique<storage::EtcdStore>(etcd_client_.get(), etcd_);
  return absl::OkStatus();
}

absl::StatusOr<TestStore> OpenTestStore(
    std::string_view kind, const storage::EtcdStore::Options& etcd) {
  TestStore t;
  t.kind_ = kind;
  if (kind == "memory") {
    t.store_ = std::make_unique<storage::MemoryStore>();
  } else if (kind == "rocksdb") {
    std::string tmpl =
        std::filesystem::temp_directory_path() / "joule-store-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) {
      return absl::InternalError("mkdtemp failed");
    }
    t.dir_ = tmpl;
    auto s = storage::RocksDbStore::Open({.path = t.dir_});
    if (!s.ok()) return s.status();
    t.store_ = std::move(*s);
  } else if (kind == "etcd") {
    if (EtcdBinary().empty()) {
      return absl::UnavailableError(
          "etcd is not installed (Debian: apt-get install etcd-server, or "
          "set JOULE_ETCD_BIN): etcd cases skipped");
    }
    auto client = SharedEtcdClient();
    if (!client.ok()) return client.status();
    static int n = 0;
    storage::EtcdStore::Options o = etcd;
    o.prefix = absl::StrCat(etcd.prefix, "-", ++n);
    t.etcd_ = o;
    t.store_ = std::make_unique<storage::EtcdStore>(*client, o);
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "store kind: want memory, rocksdb or etcd, got ", std::string(kind)));
  }
  return t;
}

}  // namespace joule::testing
