#pragma once

// Packed usage records (docs/ha.md#sizing): the idempotency records of one
// part of a RecordUsage batch are stored as a few values of table
// usage_packs instead of one key per event, so a store pays per part, not
// per event (etcd: one key of ~100 KB instead of 1,000 keys per 1,000
// events). The ledger finds a key by its in-memory UsageIndex, loaded from
// the store by Ledger::Load; the store holds the keys and records.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "joule/v1/billing_records.pb.h"

namespace joule::billing {

// A pack is closed at about this size: a Txn of several parts' packs
// stays under etcd's limits, and a Scan page of packs stays small.
inline constexpr size_t kMaxPackBytes = 256 << 10;

// usage_packs key: the newest event time (Unix seconds, 20 digits), `\0`,
// a sequence number (20 digits). Packs sort by their newest event, so
// compaction by age deletes from the front.
std::string PackKey(int64_t newest_s, uint64_t seq);
// False if `key` is not a pack key.
bool ParsePackKey(std::string_view key, int64_t* newest_s, uint64_t* seq);

// Builds a pack value: the wire format of v1::billing::UsagePack (keys[i]
// and records[i] interleaved, which protobuf parses as the two repeated
// fields), appended event by event without building the message.
// Not thread-safe.
class PackWriter {
 public:
  void Add(std::string_view usage_key, const v1::billing::UsageRecord& record);
  // Bytes and events so far; the newest event time (Unix seconds).
  size_t bytes() const { return buf_.size(); }
  size_t count() const { return count_; }
  int64_t newest_s() const { return newest_s_; }
  // The value; the writer is empty afterwards.
  std::string Take();

 private:
  std::string buf_;
  size_t count_ = 0;
  int64_t newest_s_ = 0;
};

// Calls `fn` with every usage key of a pack value, in order, without
// parsing the records. False if the value is malformed.
bool ForEachPackKey(std::string_view value,
                    const std::function<void(std::string_view)>& fn);

// A parsed pack with its keys indexed (duplicate confirmation).
class ParsedPack {
 public:
  // False if the value is malformed.
  bool Parse(std::string_view value);
  // The record of `usage_key`, or nullptr.
  const v1::billing::UsageRecord* Find(std::string_view usage_key) const;

 private:
  v1::billing::UsagePack pack_;
  absl::flat_hash_map<std::string_view, int> by_key_;
};

// Where the stored usage keys are, by a 64-bit hash of the key (memory
// only): kSingle, a record of its own in table usage (records from before
// packs, future-dated events), or the slot of a pack. A hash usually has
// one location; keys whose hashes collide keep all of theirs, so a lookup
// confirmed against the store is exact. Slots of deleted packs are reused.
// Not thread-safe (the ledger's mutex guards it).
class UsageIndex {
 public:
  static constexpr uint32_t kSingle = 0;
  struct Pack {
    int64_t newest_s = 0;
    uint64_t seq = 0;
    int64_t events = 0;
    bool live = false;
  };

  void Clear();
  // The locations of keys with this hash (usually none or one).
  absl::InlinedVector<uint32_t, 2> Find(uint64_t hash) const;
  void Add(uint64_t hash, uint32_t where);
  void Remove(uint64_t hash, uint32_t where);
  // A pack stored under PackKey(newest_s, seq); returns its slot (> 0).
  uint32_t AddPack(int64_t newest_s, uint64_t seq, int64_t events);
  void RemovePack(uint32_t slot);
  const Pack& pack(uint32_t slot) const { return packs_[slot - 1]; }
  // The sequence number of the next new pack (above every loaded one).
  uint64_t TakeSeq() { return next_seq_++; }
  // Slots of the live packs whose newest event is before `cutoff_s`.
  std::vector<uint32_t> PacksBefore(int64_t cutoff_s) const;
  size_t keys() const { return keys_; }
  size_t packs() const { return packs_.size() - free_.size(); }

 private:
  static constexpr uint32_t kMany = UINT32_MAX;
  absl::flat_hash_map<uint64_t, uint32_t> where_;
  absl::flat_hash_map<uint64_t, std::vector<uint32_t>> many_;
  std::vector<Pack> packs_;  // slot - 1
  std::vector<uint32_t> free_;
  uint64_t next_seq_ = 1;
  size_t keys_ = 0;
};

}  // namespace joule::billing
