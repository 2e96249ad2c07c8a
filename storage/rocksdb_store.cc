#include "storage/rocksdb_store.h"

#include <sys/statvfs.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "rocksdb/options.h"
#include "rocksdb/slice.h"
#include "rocksdb/table.h"
#include "rocksdb/write_batch.h"

namespace joule::storage {
namespace {

absl::Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat("rocksdb ", std::string(what), ": ", s.ToString()));
}

rocksdb::ColumnFamilyOptions TableOptions() {
  rocksdb::ColumnFamilyOptions cf;
  rocksdb::BlockBasedTableOptions t;
  t.block_cache = nullptr;  // default 8 MiB cache
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(t));
  cf.write_buffer_size = 16 << 20;
  return cf;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RocksDbStore>> RocksDbStore::Open(
    const Options& options) {
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = 2;
  db_options.keep_log_file_num = 3;
  // Concurrent synced writes form one write group with one WAL sync (group
  // commit). Its leader also inserts the group into the memtable, so each
  // waiting writer is woken once, when its write is done, instead of once to
  // insert its own batch and again when the group is; and writers block at
  // once rather than spin and yield first, which on a few busy cores only
  // takes CPU from the leader they wait for.
  db_options.allow_concurrent_memtable_write = false;
  db_options.enable_write_thread_adaptive_yield = false;

  std::vector<std::string> existing;
  rocksdb::Status s =
      rocksdb::DB::ListColumnFamilies(db_options, options.path, &existing);
  if (!s.ok()) existing.clear();  // a new database
  std::vector<std::string> names = existing;
  if (std::find(names.begin(), names.end(),
                rocksdb::kDefaultColumnFamilyName) == names.end()) {
    names.push_back(rocksdb::kDefaultColumnFamilyName);
  }
  for (const std::string& t : options.tables) {
    if (std::find(names.begin(), names.end(), t) == names.end()) {
      names.push_back(t);
    }
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& n : names) {
    descriptors.emplace_back(n, TableOptions());
  }
  auto store = std::unique_ptr<RocksDbStore>(new RocksDbStore());
  rocksdb::DB* db = nullptr;
  s = rocksdb::DB::Open(db_options, options.path, descriptors, &store->handles_,
                        &db);
  if (!s.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "cannot open RocksDB at ", options.path, ": ", s.ToString()));
  }
  store->db_.reset(db);
  store->path_ = options.path;
  store->min_free_bytes_ = options.min_free_bytes;
  for (size_t i = 0; i < names.size(); ++i) {
    store->by_name_[names[i]] = store->handles_[i];
  }
  return store;
}

RocksDbStore::~RocksDbStore() { Close().IgnoreError(); }

absl::Status RocksDbStore::Close() {
  if (!db_) return absl::OkStatus();
  rocksdb::FlushOptions flush;
  db_->Flush(flush, handles_).PermitUncheckedError();
  for (auto* h : handles_)
    db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  handles_.clear();
  by_name_.clear();
  rocksdb::Status s = db_->Close();
  db_.reset();
  return FromRocks(s, "close");
}

absl::StatusOr<rocksdb::ColumnFamilyHandle*> RocksDbStore::Handle(
    std::string_view table) {
  if (!db_) return absl::FailedPreconditionError("store is closed");
  auto it = by_name_.find(std::string(table));
  if (it == by_name_.end()) {
    return absl::NotFoundError(absl::StrCat("no table ", std::string(table)));
  }
  return it->second;
}

absl::Status RocksDbStore::Write(const WriteBatch& batch,
                                 const WriteOptions& options) {
  rocksdb::WriteBatch wb;
  for (const WriteBatch::Op& op : batch.ops()) {
    auto h = Handle(op.table);
    if (!h.ok()) return h.status();
    rocksdb::Status s = op.value.has_value() ? wb.Put(*h, op.key, *op.value)
                                             : wb.Delete(*h, op.key);
    if (!s.ok()) return FromRocks(s, "batch");
  }
  rocksdb::WriteOptions wo;
  wo.sync = options.sync;
  {
    // Not held over the write: concurrent writers share one WAL sync.
    absl::MutexLock lock(&fail_mu_);
    RETURN_IF_ERROR(WritableLocked());
  }
  struct statvfs fs;
  if (min_free_bytes_ > 0 && ::statvfs(path_.c_str(), &fs) == 0) {
    const uint64_t free_bytes =
        static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
    if (free_bytes <
        std::max<uint64_t>(min_free_bytes_, 2 * wb.GetDataSize())) {
      return absl::UnavailableError("storage: no space left on device");
    }
  }
  const rocksdb::Status s = db_->Write(wo, &wb);
  if (s.ok()) return absl::OkStatus();
  absl::MutexLock lock(&fail_mu_);
  if (s.IsIOError() || s.IsNoSpace() || s.IsIOFenced() ||
      s.subcode() == rocksdb::Status::kNoSpace) {
    const bool no_space =
        s.IsNoSpace() || s.ToString().find("No space") != std::string::npos;
    failed_ = absl::UnavailableError(
        no_space ? "storage: no space left on device"
                 : absl::StrCat("storage: write failed: ", s.ToString()));
    next_resume_ = absl::Now() + absl::Milliseconds(200);
    return failed_;
  }
  return FromRocks(s, "write");
}

absl::Status RocksDbStore::WritableLocked() {
  if (failed_.ok()) return absl::OkStatus();
  if (absl::Now() < next_resume_) return failed_;
  next_resume_ = absl::Now() + absl::Milliseconds(200);
  if (!db_->Resume().ok()) return failed_;
  failed_ = absl::OkStatus();
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> RocksDbStore::Get(
    std::string_view table, std::string_view key) {
  auto h = Handle(table);
  if (!h.ok()) return h.status();
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), *h,
                               rocksdb::Slice(key.data(), key.size()), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return FromRocks(s, "get");
  return std::optional<std::string>(std::move(value));
}

absl::Status RocksDbStore::Scan(
    std::string_view table, std::string_view prefix,
    const std::function<bool(std::string_view, std::string_view)>& fn) {
  auto h = Handle(table);
  if (!h.ok()) return h.status();
  std::unique_ptr<rocksdb::Iterator> it(
      db_->NewIterator(rocksdb::ReadOptions(), *h));
  rocksdb::Slice p(prefix.data(), prefix.size());
  for (it->Seek(p); it->Valid() && it->key().starts_with(p); it->Next()) {
    if (!fn(std::string_view(it->key().data(), it->key().size()),
            std::string_view(it->value().data(), it->value().size()))) {
      break;
    }
  }
  return FromRocks(it->status(), "scan");
}

}  // namespace joule::storage
