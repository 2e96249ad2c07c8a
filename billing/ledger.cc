#include "billing/ledger.h"

#include <algorithm>
#include <array>
#include <tuple>
#include <utility>

#include "absl/container/node_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "billing/ledger_internal.h"
#include "billing/strings.h"
#include "common/proto_time.h"
#include "common/status_macros.h"

namespace joule::billing {

namespace {

using v1::billing::FinalizedPeriod;
using v1::billing::InferenceAggregate;
using v1::billing::JobUsagePiece;
using v1::billing::JobUsageRecord;
using v1::billing::UsageRecord;

// Parses price tiers of one direction.
absl::StatusOr<std::vector<Tier>> ParseTiers(
    const google::protobuf::RepeatedPtrField<v1::PriceTier>& tiers,
    std::string_view field, bool new_price = false) {
  std::vector<Tier> out;
  for (int i = 0; i < tiers.size(); ++i) {
    const std::string f = Cat(field, "[", i, "].price");
    ASSIGN_OR_RETURN(Money m, new_price ? ParsePrice(tiers[i].price(), f)
                                        : ParseDecimal(tiers[i].price(), f));
    out.push_back({tiers[i].from_tokens(), m.micros()});
  }
  RETURN_IF_ERROR(ValidateTiers(out, field));
  return out;
}

int64_t MaxTierRate(const std::vector<Tier>& tiers) {
  int64_t m = 0;
  for (const Tier& t : tiers) m = std::max(m, t.rate_micros);
  return m;
}

}  // namespace

// ================================================================ Ledger ===

Ledger::Ledger(storage::Store* store, const Clock* clock,
               const TenantDirectory* tenants)
    : store_(store), clock_(clock), tenants_(tenants) {}

absl::Status Ledger::ValidateJobUsage(const JobUsage& u) {
  auto bad = [](std::string_view what) {
    return absl::InvalidArgumentError(Cat("job usage: ", what));
  };
  if (u.tenant.empty()) return bad("tenant: must not be empty");
  if (u.job_id.empty()) return bad("job_id: must not be empty");
  if (u.gpu_model.empty()) return bad("gpu_model: must not be empty");
  if (u.service_class != v1::SERVICE_CLASS_RESERVED &&
      u.service_class != v1::SERVICE_CLASS_ON_DEMAND &&
      u.service_class != v1::SERVICE_CLASS_SPOT) {
    return bad("service_class: must be reserved, on-demand or spot");
  }
  if (u.end < u.start) return bad("end: must not be before start");
  return absl::OkStatus();
}

// ------------------------------------------------------------- helpers ----

Period Ledger::BookingPeriodLocked(Period origin) const {
  Period p = origin;
  while (finalized_.contains(p)) p = p.Next();
  return p;
}

const Ledger::InferenceRate* Ledger::InferenceRateAtLocked(
    std::string_view tenant, const std::string& model, absl::Time t) const {
  auto at = [&](std::string_view card) -> const InferenceRate* {
    auto it = inference_rates_.find(InfKey(card, model));
    if (it == inference_rates_.end()) return nullptr;
    for (auto r = it->second.rbegin(); r != it->second.rend(); ++r) {
      if (r->from <= t) return &*r;
    }
    return nullptr;
  };
  // The tenant's card wins once one of its versions is in effect.
  if (!tenant.empty()) {
    if (const InferenceRate* r = at(tenant)) return r;
  }
  return at("");
}

std::optional<Ledger::RateAt> Ledger::GpuRateAtLocked(std::string_view tenant,
                                                      std::string_view model,
                                                      v1::ServiceClass cls,
                                                      int64_t t) const {
  for (std::string_view card : {tenant, std::string_view()}) {
    auto it = gpu_rates_.find(GpuKey(card, model, cls));
    if (it != gpu_rates_.end()) {
      for (auto r = it->second.rbegin(); r != it->second.rend(); ++r) {
        if (r->from <= t) return RateAt{r->rate_micros, !card.empty()};
      }
    }
    if (card.empty()) break;
  }
  return std::nullopt;
}

std::vector<int64_t> Ledger::GpuRateChangesLocked(std::string_view tenant,
                                                  std::string_view model,
                                                  v1::ServiceClass cls) const {
  std::vector<int64_t> out;
  for (std::string_view card : {tenant, std::string_view()}) {
    auto it = gpu_rates_.find(GpuKey(card, model, cls));
    if (it != gpu_rates_.end()) {
      for (const GpuRate& r : it->second) out.push_back(r.from);
    }
    if (card.empty()) break;
  }
  return out;
}

std::optional<Ledger::RateAt> Ledger::OverageRateAtLocked(
    std::string_view tenant, std::string_view model, int64_t t) const {
  // The active contract that started last (ties: the higher id) decides.
  const ContractState* best = nullptr;
  for (const auto& [id, c] : contracts_) {
    if (c.proto.tenant() != tenant || c.proto.gpu_model() != model) continue;
    if (t < c.terms.term.start || t >= c.terms.term.end) continue;
    if (best == nullptr || c.terms.term.start >= best->terms.term.start) {
      best = &c;
    }
  }
  if (best != nullptr && best->overage_micros.has_value()) {
    return RateAt{*best->overage_micros, false};
  }
  return GpuRateAtLocked(tenant, model, v1::SERVICE_CLASS_ON_DEMAND, t);
}

// -------------------------------------------------------------- prices ----

absl::Status Ledger::ApplyPriceLocked(const v1::Price& p) {
  prices_[p.version()] = p;
  last_price_version_ = std::max(last_price_version_, p.version());
  absl::Time from = FromProtoTime(p.effective_from());
  if (p.has_gpu_hour()) {
    ASSIGN_OR_RETURN(
        Money m, ParseDecimal(p.gpu_hour().price(), "price.gpu_hour.price"));
    auto& v = gpu_rates_[GpuKey(p.tenant(), p.gpu_hour().gpu_model(),
                                p.gpu_hour().service_class())];
    v.push_back({absl::ToUnixSeconds(from), p.version(), m.micros()});
    std::sort(v.begin(), v.end(), [](const GpuRate& a, const GpuRate& b) {
      return std::tie(a.from, a.version) < std::tie(b.from, b.version);
    });
  } else if (p.has_inference()) {
    const v1::InferencePrice& ip = p.inference();
    InferenceRate r;
    r.tenant = p.tenant();
    r.from = from;
    r.version = p.version();
    ASSIGN_OR_RETURN(r.input, ParseTiers(ip.input(), "price.inference.input"));
    ASSIGN_OR_RETURN(r.output,
                     ParseTiers(ip.output(), "price.inference.output"));
    if (!ip.per_request().empty()) {
      ASSIGN_OR_RETURN(Money m, ParseDecimal(ip.per_request(),
                                             "price.inference.per_request"));
      r.per_request_micros = m.micros();
    }
    const std::string key = InfKey(p.tenant(), ip.model());
    MaxRates& mx = max_rates_[key];
    mx.input = std::max(mx.input, MaxTierRate(r.input));
    mx.output = std::max(mx.output, MaxTierRate(r.output));
    mx.request = std::max(mx.request, r.per_request_micros.value_or(0));
    inference_models_.insert(ip.model());
    auto& v = inference_rates_[key];
    v.push_back(std::move(r));
    std::sort(
        v.begin(), v.end(), [](const InferenceRate& a, const InferenceRate& b) {
          return std::tie(a.from, a.version) < std::tie(b.from, b.version);
        });
    for (size_t i = 0; i < v.size(); ++i) {
      inference_by_version_[v[i].version] = {key, i};
    }
  }
  return absl::OkStatus();
}

absl::Status Ledger::CheckGpuModelLocked(std::string_view model,
                                         std::string_view field) const {
  if (gpu_catalogue_.empty() ||
      std::find(gpu_catalogue_.begin(), gpu_catalogue_.end(), model) !=
          gpu_catalogue_.end()) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(Cat(field, ": unknown GPU model \"", model,
                                        "\"; the cluster knows ",
                                        absl::StrJoin(gpu_catalogue_, ", ")));
}

void Ledger::SetGpuCatalogue(std::vector<std::string> models) {
  absl::MutexLock lock(&mu_);
  gpu_catalogue_ = std::move(models);
}

absl::Status Ledger::CheckLineBoundsLocked(std::string_view card_tenant,
                                           std::string_view model,
                                           const MaxRates& candidate) const {
  // Per (tenant, month) of this model: tokens in, out and requests.
  std::map<std::pair<std::string, std::string>, std::array<uint64_t, 3>> use;
  for (const auto& [key, n] : monthly_tokens_) {
    std::vector<std::string> parts =
        absl::StrSplit(absl::string_view(key), absl::string_view("\0", 1));
    if (parts.size() != 4 || parts[1] != model) continue;
    if (!card_tenant.empty() && parts[0] != card_tenant) continue;
    const int dir = parts[3] == "in" ? 0 : parts[3] == "out" ? 1 : 2;
    use[{parts[0], parts[2]}][dir] = n;
  }
  for (const auto& [tm, n] : use) {
    MaxRates m = candidate;
    for (std::string_view card :
         {std::string_view(), std::string_view(tm.first)}) {
      auto it = max_rates_.find(InfKey(card, model));
      if (it == max_rates_.end()) continue;
      m.input = std::max(m.input, it->second.input);
      m.output = std::max(m.output, it->second.output);
      m.request = std::max(m.request, it->second.request);
    }
    if (InferenceBound(n[0], n[1], n[2], m.input, m.output, m.request) >
        kMaxLineMicros) {
      return absl::InvalidArgumentError(
          Cat("price: at this price the usage of tenant \"", tm.first,
              "\" for model \"", model, "\" in ", tm.second,
              " would exceed the largest statement line ($10^12)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Price> Ledger::SetPrice(const v1::Price& price) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  v1::Price p = price;
  bool has_history = false;
  if (!p.tenant().empty() && !tenants_->Exists(p.tenant())) {
    return absl::InvalidArgumentError(
        Cat("price.tenant: unknown tenant \"", p.tenant(), "\""));
  }
  MaxRates new_max;
  std::string item;
  switch (p.kind_case()) {
    case v1::Price::kGpuHour: {
      const v1::GpuHourPrice& g = p.gpu_hour();
      if (g.gpu_model().empty()) {
        return absl::InvalidArgumentError(
            "price.gpu_hour.gpu_model: must not be empty");
      }
      RETURN_IF_ERROR(
          CheckGpuModelLocked(g.gpu_model(), "price.gpu_hour.gpu_model"));
      if (g.service_class() != v1::SERVICE_CLASS_ON_DEMAND &&
          g.service_class() != v1::SERVICE_CLASS_SPOT) {
        return absl::InvalidArgumentError(
            "price.gpu_hour.service_class: must be on-demand or spot "
            "(reserved rates come from contracts)");
      }
      RETURN_IF_ERROR(ParsePrice(g.price(), "price.gpu_hour.price").status());
      has_history = gpu_rates_.contains(
          GpuKey(p.tenant(), g.gpu_model(), g.service_class()));
      break;
    }
    case v1::Price::kInference: {
      const v1::InferencePrice& ip = p.inference();
      if (ip.model().empty()) {
        return absl::InvalidArgumentError(
            "price.inference.model: must not be empty");
      }
      ASSIGN_OR_RETURN(std::vector<Tier> in,
                       ParseTiers(ip.input(), "price.inference.input", true));
      ASSIGN_OR_RETURN(std::vector<Tier> out,
                       ParseTiers(ip.output(), "price.inference.output", true));
      new_max.input = MaxTierRate(in);
      new_max.output = MaxTierRate(out);
      if (!ip.per_request().empty()) {
        ASSIGN_OR_RETURN(Money m, ParsePrice(ip.per_request(),
                                             "price.inference.per_request"));
        new_max.request = m.micros();
      }
      has_history = inference_rates_.contains(InfKey(p.tenant(), ip.model()));
      RETURN_IF_ERROR(CheckLineBoundsLocked(p.tenant(), ip.model(), new_max));
      break;
    }
    default:
      return absl::InvalidArgumentError(
          "price: set exactly one of gpu_hour or inference");
  }
  if (!p.has_effective_from() || IsUnset(p.effective_from())) {
    *p.mutable_effective_from() = ToProtoTime(now);
  } else {
    if (p.effective_from().nanos() < 0 ||
        p.effective_from().nanos() > 999'999'999) {
      return absl::InvalidArgumentError(
          "price.effective_from: not a valid timestamp");
    }
    const absl::Time from = FromProtoTime(p.effective_from());
    if (has_history && from < now) {
      return absl::InvalidArgumentError(
          "price.effective_from: must not be in the past; a price change is "
          "never retroactive (only the first price of an item may be "
          "backdated)");
    }
    // A backdated first price re-rates only open periods (GPU lines are
    // rated when a statement is computed); never a finalized one.
    if (from < now && !finalized_.empty() &&
        from < finalized_.rbegin()->End()) {
      return absl::InvalidArgumentError(
          Cat("price.effective_from: would take effect inside finalized "
              "period ",
              finalized_.rbegin()->ToString(),
              "; a first price may be backdated only into open periods"));
    }
    // A first rate card of a served model may not be backdated before the
    // tenant's accepted events of that model (they were rated already).
    if (from < now && p.has_inference() && !p.tenant().empty()) {
      for (Period m = Period::Of(from); m <= Period::Of(now); m = m.Next()) {
        for (std::string_view dir : {"in", "out", "req"}) {
          auto it = monthly_tokens_.find(
              MonthlyKey(p.tenant(), p.inference().model(), m.ToString(), dir));
          if (it != monthly_tokens_.end() && it->second > 0) {
            return absl::InvalidArgumentError(Cat(
                "price.effective_from: tenant \"", p.tenant(),
                "\" already has usage of \"", p.inference().model(), "\" in ",
                m.ToString(),
                "; a rate card may not take effect before accepted events"));
          }
        }
      }
    }
  }
  p.set_version(last_price_version_ + 1);
  storage::WriteBatch batch;
  batch.Put(storage::kPrices, VersionKey(p.version()), p.SerializeAsString());
  // Future-dated events this version now rates are re-rated in the same
  // batch (tentatively applied, rolled back if the write fails).
  const auto saved_prices = prices_;
  const auto saved_rates = inference_rates_;
  const auto saved_by_version = inference_by_version_;
  const auto saved_max = max_rates_;
  const uint64_t saved_last = last_price_version_;
  RETURN_IF_ERROR(ApplyPriceLocked(p));
  absl::StatusOr<std::vector<std::pair<std::string, InferenceAggregate>>>
      rerated = p.has_inference()
                    ? RerateFutureEventsLocked(p, &batch)
                    : std::vector<std::pair<std::string, InferenceAggregate>>();
  absl::Status written =
      rerated.ok() ? store_->Write(batch, {.sync = true}) : rerated.status();
  if (!written.ok()) {
    prices_ = saved_prices;
    inference_rates_ = saved_rates;
    inference_by_version_ = saved_by_version;
    max_rates_ = saved_max;
    last_price_version_ = saved_last;
    if (p.has_gpu_hour()) {
      auto& v = gpu_rates_[GpuKey(p.tenant(), p.gpu_hour().gpu_model(),
                                  p.gpu_hour().service_class())];
      v.erase(std::remove_if(
                  v.begin(), v.end(),
                  [&](const GpuRate& r) { return r.version == p.version(); }),
              v.end());
    }
    return written;
  }
  for (auto& [key, agg] : *rerated) ApplyAggregateLocked(key, std::move(agg));
  return p;
}

std::vector<v1::Price> Ledger::ListPrices(bool include_history) const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<v1::Price> out;
  if (include_history) {
    for (const auto& [v, p] : prices_) out.push_back(p);
    return out;
  }
  const absl::Time now = clock_->Now();
  std::vector<uint64_t> versions;
  for (const auto& [key, rates] : gpu_rates_) {
    for (size_t i = 0; i < rates.size(); ++i) {
      bool current = rates[i].from <= absl::ToUnixSeconds(now) &&
                     (i + 1 == rates.size() ||
                      rates[i + 1].from > absl::ToUnixSeconds(now));
      if (current || rates[i].from > absl::ToUnixSeconds(now)) {
        versions.push_back(rates[i].version);
      }
    }
  }
  for (const auto& [model, rates] : inference_rates_) {
    for (size_t i = 0; i < rates.size(); ++i) {
      bool current = rates[i].from <= now &&
                     (i + 1 == rates.size() || rates[i + 1].from > now);
      if (current || rates[i].from > now) versions.push_back(rates[i].version);
    }
  }
  std::sort(versions.begin(), versions.end());
  for (uint64_t v : versions) out.push_back(prices_.at(v));
  return out;
}

// ----------------------------------------------------------- contracts ----

absl::Status Ledger::ApplyContractLocked(const v1::Contract& c) {
  ContractState s;
  s.proto = c;
  ASSIGN_OR_RETURN(absl::Time start,
                   ParseDate(c.start_date(), "contract.start_date"));
  ASSIGN_OR_RETURN(absl::Time end,
                   ParseDate(c.end_date(), "contract.end_date"));
  ASSIGN_OR_RETURN(Money rate, ParseDecimal(c.rate(), "contract.rate"));
  s.terms = {c.gpus(),
             {absl::ToUnixSeconds(start), absl::ToUnixSeconds(end)},
             rate.micros()};
  if (!c.overage_rate().empty()) {
    ASSIGN_OR_RETURN(Money o,
                     ParseDecimal(c.overage_rate(), "contract.overage_rate"));
    s.overage_micros = o.micros();
  }
  // The value as the ledger rounds it, once, for every client to print.
  ASSIGN_OR_RETURN(int64_t value_cents,
                   RoundHalfEven(c.value_micros(), kMicrosPerCent));
  s.proto.set_value_cents(value_cents);
  uint64_t seq = 0;
  if (c.id().size() > 2 && absl::SimpleAtoi(c.id().substr(2), &seq)) {
    last_contract_seq_ = std::max(last_contract_seq_, seq);
  }
  contracts_[c.id()] = std::move(s);
  return absl::OkStatus();
}

absl::StatusOr<v1::Contract> Ledger::CreateContract(const v1::Contract& c) {
  absl::MutexLock lock(&mu_);
  if (c.tenant().empty()) {
    return absl::InvalidArgumentError("contract.tenant: must not be empty");
  }
  if (!tenants_->Exists(c.tenant())) {
    return absl::InvalidArgumentError(
        Cat("contract.tenant: unknown tenant \"", c.tenant(), "\""));
  }
  if (c.gpu_model().empty()) {
    return absl::InvalidArgumentError("contract.gpu_model: must not be empty");
  }
  RETURN_IF_ERROR(CheckGpuModelLocked(c.gpu_model(), "contract.gpu_model"));
  if (c.gpus() == 0) {
    return absl::InvalidArgumentError("contract.gpus: must be > 0");
  }
  ASSIGN_OR_RETURN(absl::Time start,
                   ParseDate(c.start_date(), "contract.start_date"));
  ASSIGN_OR_RETURN(absl::Time end,
                   ParseDate(c.end_date(), "contract.end_date"));
  if (end <= start) {
    return absl::InvalidArgumentError(
        "contract.end_date: must be after start_date");
  }
  ASSIGN_OR_RETURN(Money rate, ParsePrice(c.rate(), "contract.rate"));
  if (!c.overage_rate().empty()) {
    RETURN_IF_ERROR(
        ParsePrice(c.overage_rate(), "contract.overage_rate").status());
  }
  for (Period p = Period::Of(start); p.Start() < end; p = p.Next()) {
    if (finalized_.contains(p)) {
      return absl::FailedPreconditionError(
          Cat("contract: the term covers period ", p.ToString(),
              " which is already finalized"));
    }
  }
  ContractTerms terms{c.gpus(),
                      {absl::ToUnixSeconds(start), absl::ToUnixSeconds(end)},
                      rate.micros()};
  absl::StatusOr<int64_t> value = ContractValueMicros(terms);
  if (!value.ok()) {
    return absl::InvalidArgumentError(
        "contract: value gpus x hours(term) x rate overflows int64 "
        "micro-dollars");
  }
  v1::Contract out = c;
  out.set_id(absl::StrFormat("C-%06d", last_contract_seq_ + 1));
  out.set_value_micros(*value);
  *out.mutable_created_time() = ToProtoTime(clock_->Now());
  RETURN_IF_ERROR(store_->Put(storage::kContracts, out.id(),
                              out.SerializeAsString(), {.sync = true}));
  RETURN_IF_ERROR(ApplyContractLocked(out));
  return contracts_.at(out.id()).proto;
}

std::vector<v1::Contract> Ledger::ListContracts(std::string_view tenant) const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<v1::Contract> out;
  for (const auto& [id, c] : contracts_) {
    if (tenant.empty() || c.proto.tenant() == tenant) out.push_back(c.proto);
  }
  return out;
}

absl::flat_hash_map<std::string, absl::flat_hash_map<std::string, uint32_t>>
Ledger::ContractedGpus(absl::Time t) const {
  absl::ReaderMutexLock lock(&mu_);
  absl::flat_hash_map<std::string, absl::flat_hash_map<std::string, uint32_t>>
      out;
  int64_t s = absl::ToUnixSeconds(t);
  for (const auto& [id, c] : contracts_) {
    if (s >= c.terms.term.start && s < c.terms.term.end) {
      out[c.proto.tenant()][c.proto.gpu_model()] += c.proto.gpus();
    }
  }
  return out;
}

// ------------------------------------------------------ inference usage ----

void Ledger::ApplyAggregateLocked(const std::string& key,
                                  InferenceAggregate agg) {
  auto [it, inserted] = aggs_.try_emplace(key);
  if (inserted) {
    aggs_by_statement_[StatementIndexKey(agg.tenant(), agg.booking_period())]
        .push_back(key);
  }
  it->second = std::move(agg);
}

absl::StatusOr<std::vector<std::pair<std::string, InferenceAggregate>>>
Ledger::RerateFutureEventsLocked(const v1::Price& p,
                                 storage::WriteBatch* batch) {
  const int64_t now = absl::ToUnixSeconds(clock_->Now());
  const int64_t from = p.effective_from().seconds();
  absl::node_hash_map<std::string, InferenceAggregate> touched;
  auto agg_for = [&](const std::string& key) -> InferenceAggregate* {
    auto [it, inserted] = touched.try_emplace(key);
    if (inserted) {
      auto existing = aggs_.find(key);
      if (existing != aggs_.end()) it->second = existing->second;
    }
    return &it->second;
  };
  for (auto it = future_events_.begin(); it != future_events_.end();) {
    if (it->second < now - 1) {
      batch->Delete(storage::kMeta, Cat(kFuturePrefix, it->first));
      it = future_events_.erase(it);  // its time has passed: settled
      continue;
    }
    const std::string& ukey = it->first;
    const int64_t t = it->second;
    ++it;
    if (t < from) continue;
    ASSIGN_OR_RETURN(std::optional<std::string> stored,
                     store_->Get(storage::kUsage, ukey));
    UsageRecord rec;
    if (!stored.has_value()) continue;
    if (!rec.ParseFromString(*stored)) return DataLoss(storage::kUsage, ukey);
    if (rec.model() != p.inference().model() || rec.source().empty() ||
        (!p.tenant().empty() && rec.tenant() != p.tenant())) {
      continue;
    }
    const InferenceRate* to = InferenceRateAtLocked(rec.tenant(), rec.model(),
                                                    FromProtoTime(rec.time()));
    if (to == nullptr || to->version == rec.price_version()) continue;
    const auto& [old_key, old_index] =
        inference_by_version_.at(rec.price_version());
    const InferenceRate& was = inference_rates_.at(old_key)[old_index];
    // Move the event from the old version's aggregate to the new one's,
    // on the same place of the month's tiers.
    struct Move {
      const std::vector<Tier>* tiers;
      uint64_t prior;
      int64_t tokens;
      google::protobuf::RepeatedField<int64_t>* (InferenceAggregate::*cells)();
    };
    auto shift = [&](InferenceAggregate* a, const InferenceRate& r,
                     int64_t sign) -> absl::Status {
      Move moves[2] = {{&r.input, rec.input_prior(), rec.input_tokens(),
                        &InferenceAggregate::mutable_input_tier_tokens},
                       {&r.output, rec.output_prior(), rec.output_tokens(),
                        &InferenceAggregate::mutable_output_tier_tokens}};
      for (Move& m : moves) {
        auto* cells = (a->*m.cells)();
        if (cells->size() < static_cast<int>(m.tiers->size())) {
          cells->Resize(static_cast<int>(m.tiers->size()), 0);
        }
        if (m.tiers->empty() || m.tokens == 0) continue;
        ASSIGN_OR_RETURN(
            std::vector<TierSlice> slices,
            ApplyTiers(*m.tiers, m.prior, static_cast<uint64_t>(m.tokens)));
        for (const TierSlice& sl : slices) {
          (*cells)[static_cast<int>(sl.tier)] +=
              sign * static_cast<int64_t>(sl.tokens);
        }
      }
      a->set_input_tokens(a->input_tokens() + sign * rec.input_tokens());
      a->set_output_tokens(a->output_tokens() + sign * rec.output_tokens());
      a->set_requests(a->requests() + sign * rec.requests());
      a->set_events(a->events() + sign);
      return absl::OkStatus();
    };
    InferenceAggregate* old_agg =
        agg_for(AggKey(rec.tenant(), rec.booking_period(), rec.origin_period(),
                       rec.model(), rec.price_version()));
    RETURN_IF_ERROR(shift(old_agg, was, -1));
    InferenceAggregate* new_agg =
        agg_for(AggKey(rec.tenant(), rec.booking_period(), rec.origin_period(),
                       rec.model(), to->version));
    if (new_agg->tenant().empty()) {
      new_agg->set_tenant(rec.tenant());
      new_agg->set_booking_period(rec.booking_period());
      new_agg->set_origin_period(rec.origin_period());
      new_agg->set_model(rec.model());
      new_agg->set_price_version(to->version);
    }
    RETURN_IF_ERROR(shift(new_agg, *to, +1));
    rec.set_price_version(to->version);
    batch->Put(storage::kUsage, ukey, rec.SerializeAsString());
  }
  std::vector<std::pair<std::string, InferenceAggregate>> out;
  for (auto& [key, agg] : touched) {
    batch->Put(storage::kUsageAgg, key, agg.SerializeAsString());
    out.emplace_back(key, std::move(agg));
  }
  return out;
}

bool Ledger::AttemptSettled(std::string_view job_id, uint32_t attempt) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = attempts_.find(JobKey(job_id, attempt));
  if (it == attempts_.end() || it->second.in_progress) return false;
  for (const Piece& p : it->second.pieces) {
    if (!finalized_.contains(p.booking)) return false;
  }
  return true;
}

// ------------------------------------------------------------ job usage ----

JobUsageRecord Ledger::BuildJobRecordLocked(const JobUsage& u) const {
  JobUsageRecord r;
  r.set_tenant(u.tenant);
  r.set_job_id(u.job_id);
  r.set_attempt(u.attempt);
  r.set_gpu_model(u.gpu_model);
  r.set_service_class(u.service_class);
  r.set_gpus(u.gpus);
  *r.mutable_start() = ToProtoTime(u.start);
  *r.mutable_end() = ToProtoTime(u.end);
  r.set_energy_mj(u.energy_mj);
  // Billed per second: whole Unix seconds, split at month boundaries.
  Interval whole{absl::ToUnixSeconds(u.start), absl::ToUnixSeconds(u.end)};
  std::vector<MonthPiece> pieces = SplitByMonth(whole);
  if (pieces.empty()) {
    pieces.push_back(
        {Period::OfUnixSeconds(whole.start), {whole.start, whole.start}});
  }
  const int64_t total = whole.seconds();
  uint64_t assigned = 0;
  for (size_t i = 0; i < pieces.size(); ++i) {
    JobUsagePiece* p = r.add_pieces();
    p->set_origin_period(pieces[i].period.ToString());
    p->set_booking_period(BookingPeriodLocked(pieces[i].period).ToString());
    p->set_start_unix_s(pieces[i].interval.start);
    p->set_end_unix_s(pieces[i].interval.end);
    // Energy in proportion to the seconds; the last piece takes the rest.
    uint64_t share = i + 1 == pieces.size() || total == 0
                         ? u.energy_mj - assigned
                         : static_cast<uint64_t>(
                               static_cast<unsigned __int128>(u.energy_mj) *
                               pieces[i].interval.seconds() / total);
    assigned += share;
    p->set_energy_mj(share);
  }
  return r;
}

Ledger::Attempt Ledger::AttemptFromRecord(const JobUsageRecord& r) {
  Attempt a;
  a.job_id = r.job_id();
  a.attempt = r.attempt();
  a.tenant = r.tenant();
  a.gpu_model = r.gpu_model();
  a.service_class = r.service_class();
  a.gpus = r.gpus();
  for (const JobUsagePiece& p : r.pieces()) {
    absl::StatusOr<Period> origin = Period::Parse(p.origin_period());
    absl::StatusOr<Period> booking = Period::Parse(p.booking_period());
    if (!origin.ok() || !booking.ok()) continue;  // checked by the caller
    a.pieces.push_back(
        {*origin, *booking, {p.start_unix_s(), p.end_unix_s()}, p.energy_mj()});
  }
  return a;
}

absl::Status Ledger::ApplyJobRecordLocked(const JobUsageRecord& r) {
  for (const JobUsagePiece& p : r.pieces()) {
    RETURN_IF_ERROR(Period::Parse(p.origin_period()).status());
    RETURN_IF_ERROR(Period::Parse(p.booking_period()).status());
  }
  std::string key = JobKey(r.job_id(), r.attempt());
  auto [it, inserted] = attempts_.try_emplace(key);
  if (inserted) attempts_by_tenant_[r.tenant()].push_back(key);
  it->second = AttemptFromRecord(r);
  return absl::OkStatus();
}

void Ledger::AddJobUsage(const JobUsage& u, storage::WriteBatch* batch) const {
  if (!ValidateJobUsage(u).ok()) return;
  absl::ReaderMutexLock lock(&mu_);
  std::string key = JobKey(u.job_id, u.attempt);
  if (attempts_.contains(key)) return;  // recorded before: first one wins
  batch->Put(storage::kJobUsage, key,
             BuildJobRecordLocked(u).SerializeAsString());
}

void Ledger::ApplyJobUsage(const JobUsage& u) {
  if (!ValidateJobUsage(u).ok()) return;
  absl::MutexLock lock(&mu_);
  std::string key = JobKey(u.job_id, u.attempt);
  if (attempts_.contains(key)) return;
  JobUsageRecord r;
  bool rewrite = false;
  absl::StatusOr<std::optional<std::string>> stored =
      store_->Get(storage::kJobUsage, key);
  if (!stored.ok() || !stored->has_value() || !r.ParseFromString(**stored)) {
    r = BuildJobRecordLocked(u);  // not committed: record it now
    rewrite = true;
  }
  // A period finalized between AddJobUsage and now: re-book into the first
  // open period, so the finalized statement stays as it is.
  for (JobUsagePiece& p : *r.mutable_pieces()) {
    absl::StatusOr<Period> booking = Period::Parse(p.booking_period());
    if (booking.ok() && finalized_.contains(*booking)) {
      p.set_booking_period(BookingPeriodLocked(*booking).ToString());
      rewrite = true;
    }
  }
  if (rewrite) {
    // Best effort: memory follows even if this write fails (the daemon's
    // batch already holds the usage; see docs/billing.md).
    store_->Put(storage::kJobUsage, key, r.SerializeAsString(), {.sync = true})
        .IgnoreError();
  }
  ApplyJobRecordLocked(r).IgnoreError();
}

absl::Status Ledger::RecordJobUsage(const JobUsage& u) {
  RETURN_IF_ERROR(ValidateJobUsage(u));
  storage::WriteBatch batch;
  AddJobUsage(u, &batch);
  if (!batch.empty()) {
    RETURN_IF_ERROR(store_->Write(batch, {.sync = true}));
  }
  ApplyJobUsage(u);
  return absl::OkStatus();
}

// ----------------------------------------------------------------- load ----

absl::Status Ledger::Load() {
  absl::MutexLock lock(&mu_);
  prices_.clear();
  last_price_version_ = 0;
  gpu_rates_.clear();
  inference_rates_.clear();
  inference_by_version_.clear();
  contracts_.clear();
  last_contract_seq_ = 0;
  finalized_.clear();
  aggs_.clear();
  aggs_by_statement_.clear();
  monthly_tokens_.clear();
  attempts_.clear();
  attempts_by_tenant_.clear();
  inference_models_.clear();
  max_rates_.clear();
  future_events_.clear();
  credit_notes_.clear();
  grants_.clear();
  statement_numbers_.clear();

  absl::Status failed = absl::OkStatus();
  auto scan =
      [&](std::string_view table, std::string_view prefix,
          const std::function<absl::Status(std::string_view, std::string_view)>&
              fn) {
        RETURN_IF_ERROR(store_->Scan(
            table, prefix, [&](std::string_view key, std::string_view value) {
              failed = fn(key, value);
              return failed.ok();
            }));
        return failed;
      };
  RETURN_IF_ERROR(scan(storage::kPrices, "", [&](auto key, auto value) {
    v1::Price p;
    if (!p.ParseFromArray(value.data(), static_cast<int>(value.size())))
      return DataLoss(storage::kPrices, key);
    return ApplyPriceLocked(p);
  }));
  RETURN_IF_ERROR(scan(storage::kContracts, "", [&](auto key, auto value) {
    v1::Contract c;
    if (!c.ParseFromArray(value.data(), static_cast<int>(value.size())))
      return DataLoss(storage::kContracts, key);
    return ApplyContractLocked(c);
  }));
  RETURN_IF_ERROR(
      scan(storage::kMeta, kFinalizedPrefix, [&](auto key, auto value) {
        FinalizedPeriod fp;
        if (!fp.ParseFromArray(value.data(), static_cast<int>(value.size())))
          return DataLoss(storage::kMeta, key);
        ASSIGN_OR_RETURN(Period p, Period::Parse(fp.period()));
        finalized_.insert(p);
        return absl::OkStatus();
      }));
  RETURN_IF_ERROR(LoadUsageLocked());
  RETURN_IF_ERROR(scan(storage::kStatements, "", [&](auto key, auto value) {
    v1::Statement st;
    if (!st.ParseFromArray(value.data(), static_cast<int>(value.size())))
      return DataLoss(storage::kStatements, key);
    ASSIGN_OR_RETURN(Period p, Period::Parse(st.period()));
    statement_numbers_[st.number()] = {st.tenant(), p, st.total_cents(),
                                       st.credits_applied_cents()};
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(
      scan(storage::kMeta, kFuturePrefix, [&](auto key, auto value) {
        int64_t t = 0;
        if (!absl::SimpleAtoi(absl::string_view(value.data(), value.size()),
                              &t)) {
          return DataLoss(storage::kMeta, key);
        }
        future_events_[std::string(key.substr(kFuturePrefix.size()))] = t;
        return absl::OkStatus();
      }));
  RETURN_IF_ERROR(
      scan(storage::kMeta, "billing/credit", [&](auto key, auto value) {
        return ApplyCreditRecordLocked(key, value);
      }));
  RETURN_IF_ERROR(scan(storage::kUsageAgg, "", [&](auto key, auto value) {
    InferenceAggregate a;
    if (!a.ParseFromArray(value.data(), static_cast<int>(value.size())))
      return DataLoss(storage::kUsageAgg, key);
    monthly_tokens_[MonthlyKey(a.tenant(), a.model(), a.origin_period(),
                               "in")] +=
        static_cast<uint64_t>(a.input_tokens());
    monthly_tokens_[MonthlyKey(a.tenant(), a.model(), a.origin_period(),
                               "out")] +=
        static_cast<uint64_t>(a.output_tokens());
    monthly_tokens_[MonthlyKey(a.tenant(), a.model(), a.origin_period(),
                               "req")] += static_cast<uint64_t>(a.requests());
    ApplyAggregateLocked(std::string(key), std::move(a));
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(scan(storage::kJobUsage, "", [&](auto key, auto value) {
    JobUsageRecord r;
    if (!r.ParseFromArray(value.data(), static_cast<int>(value.size())))
      return DataLoss(storage::kJobUsage, key);
    return ApplyJobRecordLocked(r);
  }));
  return absl::OkStatus();
}

}  // namespace joule::billing