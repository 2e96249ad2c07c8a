#include "billing/usage_pack.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "google/protobuf/io/coded_stream.h"

namespace joule::billing {
namespace {

// Wire tags of UsagePack: field 1 (keys) and 2 (records), length-delimited.
constexpr uint8_t kKeysTag = (1 << 3) | 2;
constexpr uint8_t kRecordsTag = (2 << 3) | 2;

void AppendVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

std::string Digits20(uint64_t v) {
  std::string s(20, '0');
  for (int i = 19; i >= 0 && v > 0; --i, v /= 10) s[i] = '0' + v % 10;
  return s;
}

}  // namespace

std::string PackKey(int64_t newest_s, uint64_t seq) {
  std::string key =
      Digits20(static_cast<uint64_t>(std::max<int64_t>(0, newest_s)));
  key.push_back('\0');
  key += Digits20(seq);
  return key;
}

bool ParsePackKey(std::string_view key, int64_t* newest_s, uint64_t* seq) {
  if (key.size() != 41 || key[20] != '\0') return false;
  uint64_t t = 0;
  if (!absl::SimpleAtoi(absl::string_view(key.data(), 20), &t) ||
      !absl::SimpleAtoi(absl::string_view(key.data() + 21, 20), seq) ||
      t > static_cast<uint64_t>(INT64_MAX)) {
    return false;
  }
  *newest_s = static_cast<int64_t>(t);
  return true;
}

void PackWriter::Add(std::string_view usage_key,
                     const v1::billing::UsageRecord& record) {
  buf_.push_back(static_cast<char>(kKeysTag));
  AppendVarint(&buf_, usage_key.size());
  buf_.append(usage_key);
  const size_t n = record.ByteSizeLong();
  buf_.push_back(static_cast<char>(kRecordsTag));
  AppendVarint(&buf_, n);
  const size_t at = buf_.size();
  buf_.resize(at + n);
  record.SerializeWithCachedSizesToArray(
      reinterpret_cast<uint8_t*>(buf_.data() + at));
  const int64_t t = record.time().seconds();
  newest_s_ = count_ == 0 ? t : std::max(newest_s_, t);
  ++count_;
}

std::string PackWriter::Take() {
  std::string out = std::move(buf_);
  buf_.clear();
  count_ = 0;
  newest_s_ = 0;
  return out;
}

bool ForEachPackKey(std::string_view value,
                    const std::function<void(std::string_view)>& fn) {
  google::protobuf::io::CodedInputStream in(
      reinterpret_cast<const uint8_t*>(value.data()),
      static_cast<int>(value.size()));
  while (true) {
    const uint32_t tag = in.ReadTag();
    if (tag == 0) return in.CurrentPosition() == static_cast<int>(value.size());
    uint32_t len = 0;
    if ((tag & 7) != 2 || !in.ReadVarint32(&len)) return false;
    const int at = in.CurrentPosition();
    if (len > value.size() - static_cast<size_t>(at)) return false;
    if (tag == kKeysTag) fn(value.substr(static_cast<size_t>(at), len));
    if (!in.Skip(static_cast<int>(len))) return false;
  }
}

bool ParsedPack::Parse(std::string_view value) {
  by_key_.clear();
  if (!pack_.ParseFromArray(value.data(), static_cast<int>(value.size())) ||
      pack_.keys_size() != pack_.records_size()) {
    return false;
  }
  by_key_.reserve(static_cast<size_t>(pack_.keys_size()));
  for (int i = 0; i < pack_.keys_size(); ++i) {
    by_key_.try_emplace(pack_.keys(i), i);
  }
  return true;
}

const v1::billing::UsageRecord* ParsedPack::Find(
    std::string_view usage_key) const {
  auto it = by_key_.find(usage_key);
  return it == by_key_.end() ? nullptr : &pack_.records(it->second);
}

void UsageIndex::Clear() {
  where_.clear();
  many_.clear();
  packs_.clear();
  free_.clear();
  next_seq_ = 1;
  keys_ = 0;
}

absl::InlinedVector<uint32_t, 2> UsageIndex::Find(uint64_t hash) const {
  absl::InlinedVector<uint32_t, 2> out;
  auto it = where_.find(hash);
  if (it == where_.end()) return out;
  if (it->second != kMany) {
    out.push_back(it->second);
  } else {
    const std::vector<uint32_t>& all = many_.at(hash);
    out.assign(all.begin(), all.end());
  }
  return out;
}

void UsageIndex::Add(uint64_t hash, uint32_t where) {
  ++keys_;
  auto [it, inserted] = where_.try_emplace(hash, where);
  if (inserted) return;
  if (it->second != kMany) {
    many_[hash] = {it->second};
    it->second = kMany;
  }
  many_[hash].push_back(where);
}

void UsageIndex::Remove(uint64_t hash, uint32_t where) {
  auto it = where_.find(hash);
  if (it == where_.end()) return;
  if (it->second != kMany) {
    if (it->second == where) {
      where_.erase(it);
      --keys_;
    }
    return;
  }
  std::vector<uint32_t>& all = many_[hash];
  auto pos = std::find(all.begin(), all.end(), where);
  if (pos == all.end()) return;
  all.erase(pos);
  --keys_;
  if (all.size() == 1) {
    it->second = all[0];
    many_.erase(hash);
  }
}

uint32_t UsageIndex::AddPack(int64_t newest_s, uint64_t seq, int64_t events) {
  next_seq_ = std::max(next_seq_, seq + 1);
  const Pack p{newest_s, seq, events, true};
  if (!free_.empty()) {
    const uint32_t slot = free_.back();
    free_.pop_back();
    packs_[slot - 1] = p;
    return slot;
  }
  packs_.push_back(p);
  return static_cast<uint32_t>(packs_.size());
}

void UsageIndex::RemovePack(uint32_t slot) {
  if (slot == kSingle || slot > packs_.size() || !packs_[slot - 1].live) {
    return;
  }
  packs_[slot - 1] = Pack{};
  free_.push_back(slot);
}

std::vector<uint32_t> UsageIndex::PacksBefore(int64_t cutoff_s) const {
  std::vector<uint32_t> out;
  for (size_t i = 0; i < packs_.size(); ++i) {
    if (packs_[i].live && packs_[i].newest_s < cutoff_s) {
      out.push_back(static_cast<uint32_t>(i + 1));
    }
  }
  return out;
}

}  // namespace joule::billing
