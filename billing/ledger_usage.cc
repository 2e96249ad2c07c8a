// Ledger: inference usage ingestion (RecordUsage), with its events'
// idempotency records packed (billing/usage_pack.h); loading and compacting
// them: ledger_usage_records.cc.

#include <algorithm>
#include <memory>
#include <tuple>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "billing/ledger.h"
#include "billing/ledger_internal.h"
#include "billing/strings.h"
#include "common/proto_time.h"
#include "common/status_macros.h"

namespace joule::billing {

namespace {

using v1::billing::InferenceAggregate;
using v1::billing::UsageRecord;

bool SamePayload(const v1::UsageEvent& a, const v1::UsageEvent& b) {
  return a.tenant() == b.tenant() && a.model() == b.model() &&
         a.requests() == b.requests() && a.input_tokens() == b.input_tokens() &&
         a.output_tokens() == b.output_tokens() &&
         a.time().seconds() == b.time().seconds() &&
         a.time().nanos() == b.time().nanos();
}

bool SamePayload(const UsageRecord& a, const v1::UsageEvent& b) {
  return a.tenant() == b.tenant() && a.model() == b.model() &&
         a.requests() == b.requests() && a.input_tokens() == b.input_tokens() &&
         a.output_tokens() == b.output_tokens() &&
         a.time().seconds() == b.time().seconds() &&
         a.time().nanos() == b.time().nanos();
}

absl::Status AlreadyUsed(size_t i, std::string_view key) {
  return absl::AlreadyExistsError(
      Cat("events[", i, "].idempotency_key: \"", key,
          "\" was already used by this tenant and source with a different "
          "payload; nothing of the batch was recorded"));
}

uint64_t KeyHash(std::string_view usage_key) {
  return absl::Hash<std::string_view>{}(usage_key);
}

// Estimated bytes of one op beyond its key and value (the store takes its
// own overhead off max_batch_bytes), and of an aggregate's value.
constexpr int64_t kOpBytes = 16;
int64_t AggBytes(const std::string& akey, size_t tiers) {
  return static_cast<int64_t>(2 * akey.size() + 64 + 11 * tiers);
}

// A pack closed within a part: its value and the hashes of its keys.
struct ClosedPack {
  std::string value;
  int64_t newest_s = 0;
  int64_t events = 0;
  std::vector<uint64_t> hashes;
};

}  // namespace

absl::StatusOr<v1::RecordUsageResponse> Ledger::RecordUsage(
    absl::Span<const v1::UsageEvent> events, std::string_view source) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  const absl::Time latest = now + kMaxFutureSkew;
  if (source.empty()) {
    return absl::InvalidArgumentError("source: must not be empty");
  }

  // 1. Validate every event; any invalid event rejects the whole batch
  // before anything is written.
  std::vector<const InferenceRate*> rates(events.size());
  absl::flat_hash_map<std::string_view, bool> tenant_exists;
  for (size_t i = 0; i < events.size(); ++i) {
    const v1::UsageEvent& e = events[i];
    auto bad = [i](std::string_view field, std::string_view rule) {
      return absl::InvalidArgumentError(
          Cat("events[", i, "].", field, ": ", rule));
    };
    if (e.idempotency_key().empty()) {
      return bad("idempotency_key", "must not be empty");
    }
    if (e.tenant().empty()) return bad("tenant", "must not be empty");
    auto [t_it, t_new] = tenant_exists.try_emplace(e.tenant(), false);
    if (t_new) t_it->second = tenants_->Exists(e.tenant());
    if (!t_it->second) {
      return bad("tenant", Cat("unknown tenant \"", e.tenant(), "\""));
    }
    if (e.model().empty()) return bad("model", "must not be empty");
    if (!inference_models_.contains(e.model())) {
      return bad("model", Cat("unknown model \"", e.model(),
                              "\" (no inference price was ever set for it)"));
    }
    if (e.requests() < 0) return bad("requests", "must be >= 0");
    if (e.input_tokens() < 0) return bad("input_tokens", "must be >= 0");
    if (e.output_tokens() < 0) return bad("output_tokens", "must be >= 0");
    // Per-event bounds (docs/billing.md, "Bounds").
    if (e.requests() > kMaxEventQuantity) {
      return bad("requests", "must be <= 1000000000000 per event");
    }
    if (e.input_tokens() > kMaxEventQuantity) {
      return bad("input_tokens", "must be <= 1000000000000 per event");
    }
    if (e.output_tokens() > kMaxEventQuantity) {
      return bad("output_tokens", "must be <= 1000000000000 per event");
    }
    if (!e.has_time() || IsUnset(e.time())) return bad("time", "required");
    if (e.time().nanos() < 0 || e.time().nanos() > 999'999'999 ||
        e.time().seconds() < 0) {
      return bad("time", "not a valid timestamp");
    }
    absl::Time t = FromProtoTime(e.time());
    if (t > latest) {
      return bad("time", "more than 5 minutes in the future");
    }
    if (usage_dedup_window_ != absl::InfiniteDuration() &&
        t < now - usage_dedup_window_) {
      return bad("time", Cat("older than the usage dedup window (",
                             absl::FormatDuration(usage_dedup_window_),
                             "): its idempotency record may be deleted"));
    }
    rates[i] = InferenceRateAtLocked(e.tenant(), e.model(), t);
    if (rates[i] == nullptr) {
      return bad("time", Cat("no price for model \"", e.model(),
                             "\" was in effect at that time"));
    }
  }

  // 2. Idempotency, rating and aggregation into scratch state, cut into
  // parts that fit one store write; memory changes only after a part is
  // durable. The scratch aggregates and counters are cumulative over the
  // call, so each part writes the aggregates as they stand after its last
  // event.
  v1::RecordUsageResponse resp;
  // (tenant, key) -> first index in this call; views into `events`.
  absl::flat_hash_map<std::pair<absl::string_view, absl::string_view>, size_t>
      in_batch;
  in_batch.reserve(events.size());
  absl::node_hash_map<std::string, InferenceAggregate> touched;
  absl::node_hash_map<std::string, uint64_t> counts;

  // The aggregate and monthly counters each event moves, per (tenant, model,
  // origin month, price version); the views point into `events`.
  struct Slot {
    const std::string* akey = nullptr;
    InferenceAggregate* agg = nullptr;
    uint64_t* in = nullptr;
    uint64_t* out = nullptr;
    uint64_t* req = nullptr;
    MaxRates max;  // highest rates of the list price and the tenant's card
    size_t tiers = 0;
    int part = -1;  // the last part that writes this aggregate
  };
  using SlotKey =
      std::tuple<absl::string_view, absl::string_view, int, uint64_t>;
  // Nodes: a part keeps pointers to its slots.
  absl::node_hash_map<SlotKey, Slot> slots;

  auto counter = [&](const std::string& key) -> uint64_t* {
    auto [it, inserted] = counts.try_emplace(key, 0);
    if (inserted) {
      auto m = monthly_tokens_.find(key);
      if (m != monthly_tokens_.end()) it->second = m->second;
    }
    return &it->second;
  };

  // Stored records read to confirm a hash hit, per pack slot.
  absl::flat_hash_map<uint32_t, std::unique_ptr<ParsedPack>> read_packs;
  // The stored record of `ukey`, if any (exact: the store is the truth).
  auto stored_record = [&](const std::string& ukey, uint64_t h,
                           UsageRecord* out) -> absl::StatusOr<bool> {
    for (uint32_t where : usage_index_.Find(h)) {
      if (where == UsageIndex::kSingle) {
        ASSIGN_OR_RETURN(std::optional<std::string> v,
                         store_->Get(storage::kUsage, ukey));
        if (!v.has_value()) continue;
        if (!out->ParseFromString(*v)) return DataLoss(storage::kUsage, ukey);
        return true;
      }
      std::unique_ptr<ParsedPack>& p = read_packs[where];
      if (p == nullptr) {
        const UsageIndex::Pack& ref = usage_index_.pack(where);
        const std::string pkey = PackKey(ref.newest_s, ref.seq);
        ASSIGN_OR_RETURN(std::optional<std::string> v,
                         store_->Get(storage::kUsagePacks, pkey));
        p = std::make_unique<ParsedPack>();
        if (v.has_value() && !p->Parse(*v)) {
          return DataLoss(storage::kUsagePacks, pkey);
        }
      }
      if (const UsageRecord* r = p->Find(ukey); r != nullptr) {
        *out = *r;
        return true;
      }
    }
    return false;
  };

  // The part being built.
  const int64_t max_ops = store_->max_batch_ops();
  const int64_t max_bytes = store_->max_batch_bytes();
  int part_no = 0;
  size_t part_first = 0;    // its first event
  int64_t part_events = 0;  // new events in it
  int64_t part_ops = 0, part_bytes = 0;
  PackWriter pack;
  std::vector<uint64_t> pack_hashes;
  std::vector<ClosedPack> closed;
  std::vector<std::pair<std::string, std::string>> singles;  // future-dated
  std::vector<uint64_t> single_hashes;
  std::vector<std::pair<std::string, int64_t>> future_keys;
  std::vector<const Slot*> part_slots;
  // Future-dated events are remembered (durably) until their time passed:
  // the first part drops the markers of those whose time has passed.
  const int64_t now_s = absl::ToUnixSeconds(now);
  std::vector<std::string> settled;
  for (const auto& [key, t] : future_events_) {
    if (max_ops > 0 && static_cast<int64_t>(settled.size()) >= max_ops / 2) {
      break;  // the rest at the next call
    }
    if (t < now_s - 1) {
      settled.push_back(key);
      part_ops += 1;
      part_bytes +=
          static_cast<int64_t>(kFuturePrefix.size() + key.size()) + kOpBytes;
    }
  }
  auto close_pack = [&] {
    if (pack.count() == 0) return;
    ClosedPack c;
    c.newest_s = pack.newest_s();
    c.events = static_cast<int64_t>(pack.count());
    c.value = pack.Take();
    c.hashes = std::move(pack_hashes);
    pack_hashes.clear();
    closed.push_back(std::move(c));
  };
  // 3. One durable write per part: its records, packed, and the aggregates
  // they move; then memory.
  auto commit_part = [&](bool last) -> absl::Status {
    close_pack();
    // Keys in order: RocksDB inserts a sorted run into its memtable faster.
    std::sort(part_slots.begin(), part_slots.end(),
              [](const Slot* a, const Slot* b) { return *a->akey < *b->akey; });
    storage::WriteBatch batch;
    std::vector<uint64_t> seqs;
    for (ClosedPack& c : closed) {
      seqs.push_back(usage_index_.TakeSeq());
      batch.PutMoved(storage::kUsagePacks, PackKey(c.newest_s, seqs.back()),
                     std::move(c.value));
    }
    for (auto& [key, value] : singles) {
      batch.PutMoved(storage::kUsage, std::string(key), std::move(value));
    }
    for (const Slot* s : part_slots) {
      batch.Put(storage::kUsageAgg, *s->akey, s->agg->SerializeAsString());
    }
    for (const std::string& key : settled) {
      batch.Delete(storage::kMeta, Cat(kFuturePrefix, key));
    }
    for (const auto& [key, t] : future_keys) {
      batch.Put(storage::kMeta, Cat(kFuturePrefix, key), absl::StrCat(t));
    }
    RETURN_IF_ERROR(store_->Write(batch, {.sync = true}));
    for (size_t k = 0; k < closed.size(); ++k) {
      const uint32_t slot =
          usage_index_.AddPack(closed[k].newest_s, seqs[k], closed[k].events);
      for (uint64_t h : closed[k].hashes) usage_index_.Add(h, slot);
    }
    for (uint64_t h : single_hashes) usage_index_.Add(h, UsageIndex::kSingle);
    for (const Slot* s : part_slots) {
      // The scratch aggregate is not needed after the last part.
      if (last) {
        ApplyAggregateLocked(*s->akey, std::move(*s->agg));
      } else {
        ApplyAggregateLocked(*s->akey, *s->agg);
      }
    }
    for (const auto& [key, n] : counts) monthly_tokens_[key] = n;
    for (const std::string& key : settled) future_events_.erase(key);
    for (auto& [key, t] : future_keys) future_events_[key] = t;
    closed.clear();
    singles.clear();
    single_hashes.clear();
    future_keys.clear();
    part_slots.clear();
    settled.clear();
    part_ops = part_bytes = part_events = 0;
    ++part_no;
    return absl::OkStatus();
  };
  // An error after some parts were written says so.
  auto after_parts = [&](absl::Status s) {
    if (part_first == 0 || !absl::StartsWith(s.message(), "events[")) {
      return s;
    }
    return absl::Status(s.code(),
                        Cat(s.message(), " (events[0..", part_first - 1,
                            "] were recorded; re-sending them counts them as "
                            "duplicates)"));
  };

  UsageRecord rec;
  UsageRecord old;
  std::string ukey;  // reused: one allocation for the call
  for (size_t i = 0; i < events.size(); ++i) {
    const v1::UsageEvent& e = events[i];
    auto [b_it, b_new] = in_batch.try_emplace(
        std::make_pair(absl::string_view(e.tenant()),
                       absl::string_view(e.idempotency_key())),
        i);
    if (!b_new) {
      if (!SamePayload(events[b_it->second], e)) {
        return after_parts(AlreadyUsed(i, e.idempotency_key()));
      }
      resp.set_duplicates(resp.duplicates() + 1);
      continue;
    }
    ukey.clear();
    ukey.append(e.tenant())
        .append(kSep)
        .append(source)
        .append(kSep)
        .append(e.idempotency_key());  // UsageKey(tenant, source, key)
    const uint64_t h = KeyHash(ukey);
    absl::StatusOr<bool> seen = stored_record(ukey, h, &old);
    if (!seen.ok()) return seen.status();
    if (*seen) {
      if (!SamePayload(old, e)) {
        return after_parts(AlreadyUsed(i, e.idempotency_key()));
      }
      resp.set_duplicates(resp.duplicates() + 1);
      continue;
    }

    // A new event: rate it with the price in effect at its time.
    const InferenceRate* rate = rates[i];
    const absl::Time t = FromProtoTime(e.time());
    const bool future = t > now;
    Period origin = Period::Of(t);
    SlotKey slot_key{absl::string_view(e.tenant()),
                     absl::string_view(e.model()),
                     origin.year() * 12 + origin.month() - 1, rate->version};
    auto [slot_it, slot_new] = slots.try_emplace(slot_key);
    Slot& cur = slot_it->second;
    if (slot_new) {
      Period booking = BookingPeriodLocked(origin);
      std::string origin_s = origin.ToString();
      std::string booking_s = booking.ToString();
      std::string akey =
          AggKey(e.tenant(), booking_s, origin_s, e.model(), rate->version);
      auto [a_it, a_new] = touched.try_emplace(std::move(akey));
      if (a_new) {
        auto existing = aggs_.find(a_it->first);
        if (existing != aggs_.end()) {
          a_it->second = existing->second;
        } else {
          InferenceAggregate& a = a_it->second;
          a.set_tenant(e.tenant());
          a.set_booking_period(booking_s);
          a.set_origin_period(origin_s);
          a.set_model(e.model());
          a.set_price_version(rate->version);
          a.mutable_input_tier_tokens()->Resize(
              static_cast<int>(rate->input.size()), 0);
          a.mutable_output_tier_tokens()->Resize(
              static_cast<int>(rate->output.size()), 0);
        }
      }
      cur.akey = &a_it->first;
      cur.agg = &a_it->second;
      cur.tiers = rate->input.size() + rate->output.size();
      cur.in = counter(MonthlyKey(e.tenant(), e.model(), origin_s, "in"));
      cur.out = counter(MonthlyKey(e.tenant(), e.model(), origin_s, "out"));
      cur.req = counter(MonthlyKey(e.tenant(), e.model(), origin_s, "req"));
      for (std::string_view card :
           {std::string_view(), std::string_view(e.tenant())}) {
        auto m = max_rates_.find(InfKey(card, e.model()));
        if (m == max_rates_.end()) continue;
        cur.max.input = std::max(cur.max.input, m->second.input);
        cur.max.output = std::max(cur.max.output, m->second.output);
        cur.max.request = std::max(cur.max.request, m->second.request);
      }
    }
    InferenceAggregate& agg = *cur.agg;

    // Its record, with its place on the month's tiers before it.
    rec.Clear();
    rec.set_tenant(e.tenant());
    rec.set_model(e.model());
    rec.set_requests(e.requests());
    rec.set_input_tokens(e.input_tokens());
    rec.set_output_tokens(e.output_tokens());
    *rec.mutable_time() = e.time();
    rec.set_origin_period(agg.origin_period());
    rec.set_booking_period(agg.booking_period());
    rec.set_price_version(rate->version);
    rec.mutable_source()->assign(source.data(), source.size());
    rec.set_input_prior(*cur.in);
    rec.set_output_prior(*cur.out);

    // Does it fit the part? Else the part is written first (the scratch
    // state holds exactly the part's events so far).
    const int64_t rec_bytes = static_cast<int64_t>(rec.ByteSizeLong());
    const int64_t entry = static_cast<int64_t>(ukey.size()) + rec_bytes + 8;
    auto cost = [&](int64_t* ops, int64_t* bytes) {
      *ops = 0;
      *bytes = 0;
      if (cur.part != part_no) {
        *ops += 1;
        *bytes += AggBytes(*cur.akey, cur.tiers) + kOpBytes;
      }
      if (future) {
        *ops += 2;
        *bytes += 2 * static_cast<int64_t>(ukey.size()) + rec_bytes +
                  static_cast<int64_t>(kFuturePrefix.size()) + 20 +
                  2 * kOpBytes;
      } else {
        if (pack.count() == 0 ||
            pack.bytes() + static_cast<size_t>(entry) > kMaxPackBytes) {
          *ops += 1;
          *bytes += 41 + kOpBytes;
        }
        *bytes += entry;
      }
    };
    int64_t add_ops = 0, add_bytes = 0;
    cost(&add_ops, &add_bytes);
    if (part_events > 0 &&
        ((max_ops > 0 && part_ops + add_ops > max_ops) ||
         (max_bytes > 0 && part_bytes + add_bytes > max_bytes))) {
      RETURN_IF_ERROR(commit_part(/*last=*/false));
      part_first = i;
      cost(&add_ops, &add_bytes);
    }

    auto overflow = [i](std::string_view field) {
      return absl::InvalidArgumentError(Cat(
          "events[", i, "].", field, ": the monthly total overflows int64"));
    };
    // Graduated tiers on the tenant's monthly count for model + direction.
    struct Dir {
      const std::vector<Tier>* tiers;
      int64_t tokens;
      uint64_t* count;
      google::protobuf::RepeatedField<int64_t>* per_tier;
      int64_t (InferenceAggregate::*total)() const;
      void (InferenceAggregate::*set_total)(int64_t);
      std::string_view field;
    };
    Dir dirs[2] = {
        {&rate->input, e.input_tokens(), cur.in,
         agg.mutable_input_tier_tokens(), &InferenceAggregate::input_tokens,
         &InferenceAggregate::set_input_tokens, "input_tokens"},
        {&rate->output, e.output_tokens(), cur.out,
         agg.mutable_output_tier_tokens(), &InferenceAggregate::output_tokens,
         &InferenceAggregate::set_output_tokens, "output_tokens"}};
    for (Dir& d : dirs) {
      uint64_t tokens = static_cast<uint64_t>(d.tokens);
      if (!d.tiers->empty()) {
        absl::StatusOr<std::vector<TierSlice>> slices =
            ApplyTiers(*d.tiers, *d.count, tokens);
        if (!slices.ok()) return after_parts(overflow(d.field));
        for (const TierSlice& s : *slices) {
          int64_t& cell = (*d.per_tier)[static_cast<int>(s.tier)];
          if (__builtin_add_overflow(cell, static_cast<int64_t>(s.tokens),
                                     &cell)) {
            return after_parts(overflow(d.field));
          }
        }
      }
      int64_t total;
      if (__builtin_add_overflow((agg.*d.total)(), d.tokens, &total) ||
          __builtin_add_overflow(*d.count, tokens, d.count)) {
        return after_parts(overflow(d.field));
      }
      (agg.*d.set_total)(total);
    }
    int64_t requests;
    if (__builtin_add_overflow(agg.requests(), e.requests(), &requests)) {
      return after_parts(overflow("requests"));
    }
    agg.set_requests(requests);
    agg.set_events(agg.events() + 1);
    if (__builtin_add_overflow(*cur.req, static_cast<uint64_t>(e.requests()),
                               cur.req)) {
      return after_parts(overflow("requests"));
    }
    // No statement line may overflow at any price version of the item: the
    // month's usage of this (tenant, model) at the highest rates stays
    // within kMaxLineMicros.
    if (InferenceBound(*cur.in, *cur.out, *cur.req, cur.max.input,
                       cur.max.output, cur.max.request) > kMaxLineMicros) {
      // Name the field of this event that adds the most.
      const __int128 by_req = static_cast<__int128>(e.requests()) *
                              cur.max.request * kTokensPerPriceUnit;
      const __int128 by_in =
          static_cast<__int128>(e.input_tokens()) * cur.max.input;
      const __int128 by_out =
          static_cast<__int128>(e.output_tokens()) * cur.max.output;
      std::string_view field = by_req >= by_in && by_req >= by_out ? "requests"
                               : by_out >= by_in ? "output_tokens"
                                                 : "input_tokens";
      return after_parts(absl::InvalidArgumentError(
          Cat("events[", i, "].", field, ": the ", agg.origin_period(),
              " usage of tenant \"", e.tenant(), "\" for model \"", e.model(),
              "\" would exceed the largest statement line ($10^12) at the "
              "highest price version of the model; nothing of the batch was "
              "recorded")));
    }

    // Into the part.
    if (cur.part != part_no) {
      cur.part = part_no;
      part_slots.push_back(&cur);
    }
    if (future) {
      future_keys.emplace_back(ukey, absl::ToUnixSeconds(t));
      singles.emplace_back(ukey, rec.SerializeAsString());
      single_hashes.push_back(h);
    } else {
      if (pack.count() > 0 &&
          pack.bytes() + static_cast<size_t>(entry) > kMaxPackBytes) {
        close_pack();
      }
      pack.Add(ukey, rec);
      pack_hashes.push_back(h);
    }
    part_ops += add_ops;
    part_bytes += add_bytes;
    ++part_events;
    resp.set_accepted(resp.accepted() + 1);
  }
  if (part_events > 0) {
    absl::Status s = commit_part(/*last=*/true);
    if (!s.ok()) return s;
  }
  return resp;
}

void Ledger::set_usage_dedup_window(absl::Duration window) {
  absl::MutexLock lock(&mu_);
  usage_dedup_window_ = window;
}

}  // namespace joule::billing
