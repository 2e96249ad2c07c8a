#include "storage/etcd_store.h"

#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace joule::storage {

std::string PrefixEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    unsigned char& c = reinterpret_cast<unsigned char&>(end.back());
    if (c < 0xff) {
      ++c;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

EtcdStore::EtcdStore(EtcdClient* client, Options options)
    : client_(client), options_(std::move(options)) {}

std::string EtcdStore::EtcdKey(std::string_view table,
                               std::string_view key) const {
  std::string out = options_.prefix;
  out.append("/").append(table).append("/").append(key);
  return out;
}

void EtcdStore::SetFence(std::string leader_key, int64_t create_revision) {
  absl::MutexLock lock(&mu_);
  fence_key_ = std::move(leader_key);
  fence_revision_ = create_revision;
  deposed_ = false;
  deposed_why_ = absl::OkStatus();
}

void EtcdStore::ClearFence() {
  absl::MutexLock lock(&mu_);
  fence_key_.clear();
  fence_revision_ = 0;
  deposed_ = false;
  deposed_why_ = absl::OkStatus();
}

bool EtcdStore::deposed() const {
  absl::MutexLock lock(&mu_);
  return deposed_;
}

void EtcdStore::set_on_deposed(std::function<void(const absl::Status&)> fn) {
  absl::MutexLock lock(&mu_);
  on_deposed_ = std::move(fn);
}

void EtcdStore::Depose(const absl::Status& why) {
  std::function<void(const absl::Status&)> fn;
  {
    absl::MutexLock lock(&mu_);
    if (deposed_) return;
    deposed_ = true;
    deposed_why_ = why;
    fn = on_deposed_;
  }
  if (fn) fn(why);
}

int64_t EtcdStore::txns_sent() const {
  absl::MutexLock lock(&queue_mu_);
  return txns_;
}

int64_t EtcdStore::batches_committed() const {
  absl::MutexLock lock(&queue_mu_);
  return batches_;
}

int64_t EtcdStore::queued() const {
  absl::MutexLock lock(&queue_mu_);
  return static_cast<int64_t>(queue_.size());
}

absl::Status EtcdStore::Write(const WriteBatch& batch,
                              const WriteOptions& options) {
  // etcd commits every Txn to a quorum's WAL with fsync: `sync` is always
  // honoured.
  {
    absl::MutexLock lock(&mu_);
    if (deposed_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "this jouled is no longer the leader: ", deposed_why_.message()));
    }
  }
  if (batch.empty()) return absl::OkStatus();
  // The last op on each key wins; keep ops in the order of their last
  // occurrence.
  Writer w;
  {
    // From the back: an op is kept if no later op has its key. The set
    // holds views of `keys`, which stay put until the second pass.
    std::vector<std::string> keys(batch.size());
    std::vector<bool> keep(batch.size());
    absl::flat_hash_set<std::string_view> seen;
    seen.reserve(batch.size());
    size_t kept = 0;
    for (size_t i = batch.size(); i-- > 0;) {
      const WriteBatch::Op& op = batch.ops()[i];
      keys[i] = EtcdKey(op.table, op.key);
      keep[i] = seen.insert(keys[i]).second;
      kept += keep[i] ? 1 : 0;
    }
    seen.clear();
    w.ops.reserve(kept);
    for (size_t i = 0; i < batch.size(); ++i) {
      if (!keep[i]) continue;
      const WriteBatch::Op& op = batch.ops()[i];
      etcdserverpb::RequestOp& r = w.ops.emplace_back();
      if (op.value.has_value()) {
        r.mutable_request_put()->set_key(std::move(keys[i]));
        r.mutable_request_put()->set_value(*op.value);
      } else {
        r.mutable_request_delete_range()->set_key(std::move(keys[i]));
      }
      // The field tag and length of the op inside the TxnRequest.
      w.bytes += static_cast<int64_t>(r.ByteSizeLong()) + 6;
    }
  }
  const int64_t ops = static_cast<int64_t>(w.ops.size());
  // etcd measures the raft entry (the Txn plus a small header).
  const int64_t bytes = w.bytes + 1024;
  if (ops > options_.max_txn_ops || bytes > options_.max_request_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("store batch of ", ops, " keys and ~", bytes,
                     " bytes is over etcd's limits (max_txn_ops ",
                     options_.max_txn_ops, ", max_request_bytes ",
                     options_.max_request_bytes, "); nothing was written"));
  }

  absl::MutexLock lock(&queue_mu_);
  queue_.push_back(&w);
  if (committing_) {
    queue_mu_.Await(absl::Condition(
        +[](Writer* x) { return x->done || x->lead; }, &w));
    if (w.done) return w.status;
  } else {
    committing_ = true;
  }
  // This writer leads: it is the front of the queue. Take the queued
  // writers that fit one Txn, in order.
  std::vector<Writer*> group;
  int64_t group_ops = 0, group_bytes = 1024;
  for (Writer* x : queue_) {
    if (!group.empty() &&
        (group_ops + static_cast<int64_t>(x->ops.size()) >
             options_.max_txn_ops ||
         group_bytes + x->bytes > options_.max_request_bytes)) {
      break;
    }
    group.push_back(x);
    group_ops += static_cast<int64_t>(x->ops.size());
    group_bytes += x->bytes;
  }
  queue_mu_.Unlock();
  const absl::Status s = CommitGroup(group);
  queue_mu_.Lock();
  ++txns_;
  batches_ += static_cast<int64_t>(group.size());
  for (Writer* x : group) {
    x->status = s;
    x->done = true;
    queue_.pop_front();
  }
  if (queue_.empty()) {
    committing_ = false;
  } else {
    queue_.front()->lead = true;
  }
  return s;
}

absl::Status EtcdStore::CommitGroup(const std::vector<Writer*>& group) {
  etcdserverpb::TxnRequest req;
  bool fenced = false;
  {
    absl::MutexLock lock(&mu_);
    if (deposed_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "this jouled is no longer the leader: ", deposed_why_.message()));
    }
    if (!fence_key_.empty()) {
      fenced = true;
      etcdserverpb::Compare* c = req.add_compare();
      c->set_result(etcdserverpb::Compare::EQUAL);
      c->set_target(etcdserverpb::Compare::CREATE);
      c->set_key(fence_key_);
      c->set_create_revision(fence_revision_);
    }
  }
  if (group.size() == 1) {
    for (etcdserverpb::RequestOp& op : group[0]->ops) {
      *req.add_success() = std::move(op);
    }
  } else {
    // Across batches too, the last op on a key wins (etcd refuses a key
    // twice in one Txn).
    absl::flat_hash_map<std::string_view, std::pair<size_t, size_t>> last;
    auto key_of = [](const etcdserverpb::RequestOp& op) -> std::string_view {
      return op.has_request_put() ? op.request_put().key()
                                  : op.request_delete_range().key();
    };
    for (size_t g = 0; g < group.size(); ++g) {
      for (size_t i = 0; i < group[g]->ops.size(); ++i) {
        last[key_of(group[g]->ops[i])] = {g, i};
      }
    }
    for (size_t g = 0; g < group.size(); ++g) {
      for (size_t i = 0; i < group[g]->ops.size(); ++i) {
        auto it = last.find(key_of(group[g]->ops[i]));
        if (it->second != std::make_pair(g, i)) continue;
        *req.add_success() = std::move(group[g]->ops[i]);
        // The moved-from key is empty now; later lookups of it are by
        // other ops' keys only (each key's last op is moved exactly once).
        last.erase(it);
      }
    }
  }
  auto resp = client_->Txn(req);
  if (!resp.ok()) {
    // The batches may or may not be in etcd; a leader's memory may no
    // longer match it, so it must step down and reload. Without a fence
    // (tools, tests) there is no memory to protect.
    if (IsOutcomeUnknown(resp.status()) && fenced) Depose(resp.status());
    return resp.status();
  }
  if (!resp->succeeded()) {
    absl::Status s = absl::FailedPreconditionError(
        "this jouled is no longer the leader: the leader key changed "
        "(deposed); nothing was written");
    Depose(s);
    return s;
  }
  return absl::OkStatus();
}

int64_t EtcdStore::max_batch_bytes() const {
  // Per op: the key prefix `<prefix>/<table>/` (tables are at most 16
  // bytes) and the RequestOp/PutRequest framing (at most 18 bytes).
  const int64_t per_op = static_cast<int64_t>(options_.prefix.size()) + 36;
  return std::max<int64_t>(
      1, options_.max_request_bytes - 1024 - per_op * options_.max_txn_ops);
}

absl::StatusOr<std::optional<std::string>> EtcdStore::Get(
    std::string_view table, std::string_view key) {
  etcdserverpb::RangeRequest req;
  req.set_key(EtcdKey(table, key));
  auto resp = client_->Range(req);
  if (!resp.ok()) return resp.status();
  if (resp->kvs_size() == 0) return std::optional<std::string>();
  return std::optional<std::string>(resp->kvs(0).value());
}

absl::Status EtcdStore::Scan(
    std::string_view table, std::string_view prefix,
    const std::function<bool(std::string_view, std::string_view)>& fn) {
  const std::string table_prefix = EtcdKey(table, "");
  const std::string full = table_prefix + std::string(prefix);
  etcdserverpb::RangeRequest req;
  req.set_key(full);
  req.set_range_end(PrefixEnd(full));
  // A small first page (one Range answers most prefix lookups, and a table
  // of large values is not read 2,048 values at a time), then pages sized
  // to scan_page_bytes from the values seen so far.
  req.set_limit(std::min<int64_t>(options_.scan_page, 16));
  int64_t revision = 0, seen = 0, seen_bytes = 0;
  while (true) {
    req.set_revision(revision);
    auto resp = client_->Range(req);
    if (!resp.ok()) return resp.status();
    if (revision == 0) revision = resp->header().revision();
    for (const mvccpb::KeyValue& kv : resp->kvs()) {
      std::string_view k = kv.key();
      k.remove_prefix(table_prefix.size());
      seen_bytes += static_cast<int64_t>(kv.key().size() + kv.value().size());
      ++seen;
      if (!fn(k, kv.value())) return absl::OkStatus();
    }
    if (!resp->more() || resp->kvs_size() == 0) return absl::OkStatus();
    req.set_limit(std::clamp<int64_t>(
        options_.scan_page_bytes / std::max<int64_t>(1, seen_bytes / seen), 1,
        options_.scan_page));
    // Continue right after the last key returned.
    req.set_key(resp->kvs(resp->kvs_size() - 1).key() + std::string(1, '\0'));
  }
}

}  // namespace joule::storage
