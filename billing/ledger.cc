#include "billing/ledger.h"

#include <algorithm>
#include <tuple>
#include <utility>

#include "absl/container/node_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
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

constexpr std::string_view kSep("\0", 1);
constexpr std::string_view kFinalizedPrefix = "billing/finalized/";
constexpr absl::Duration kMaxFutureSkew = absl::Minutes(5);

// Pricing models, in statement order.
constexpr std::string_view kReserved = "reserved";
constexpr std::string_view kReservedOverage = "reserved-overage";
constexpr std::string_view kOnDemand = "on-demand";
constexpr std::string_view kSpot = "spot";
constexpr std::string_view kInference = "inference";
constexpr std::string_view kEnergy = "energy";

int PricingOrder(std::string_view pm) {
  constexpr std::string_view kOrder[] = {kReserved, kReservedOverage, kOnDemand,
                                         kSpot,     kInference,       kEnergy};
  for (int i = 0; i < 6; ++i) {
    if (kOrder[i] == pm) return i;
  }
  return 6;
}

std::string_view ClassName(v1::ServiceClass c) {
  switch (c) {
    case v1::SERVICE_CLASS_RESERVED:
      return kReserved;
    case v1::SERVICE_CLASS_ON_DEMAND:
      return kOnDemand;
    case v1::SERVICE_CLASS_SPOT:
      return kSpot;
    default:
      return "unspecified";
  }
}

bool IsUnset(const google::protobuf::Timestamp& ts) {
  return ts.seconds() == 0 && ts.nanos() == 0;
}

std::string GpuKey(std::string_view model, v1::ServiceClass cls) {
  return Cat(model, kSep, static_cast<int>(cls));
}
std::string VersionKey(uint64_t v) {
  std::string s(20, '0');  // zero-padded: keys sort by version
  for (int i = 19; i >= 0 && v > 0; --i, v /= 10) s[i] = '0' + v % 10;
  return s;
}
std::string UsageKey(std::string_view tenant, std::string_view key) {
  return Cat(tenant, kSep, key);
}
std::string AggKey(std::string_view tenant, std::string_view booking,
                   std::string_view origin, std::string_view model,
                   uint64_t version) {
  return Cat("i", kSep, tenant, kSep, booking, kSep, origin, kSep, model, kSep,
             VersionKey(version));
}
std::string StatementIndexKey(std::string_view tenant,
                              std::string_view period) {
  return Cat(tenant, kSep, period);
}
std::string MonthlyKey(std::string_view tenant, std::string_view model,
                       std::string_view origin, std::string_view direction) {
  return Cat(tenant, kSep, model, kSep, origin, kSep, direction);
}
std::string JobKey(std::string_view job_id, uint32_t attempt) {
  return Cat(job_id, kSep, absl::StrFormat("%010d", attempt));
}
std::string StoredStatementKey(std::string_view period,
                               std::string_view tenant) {
  return Cat(period, kSep, tenant);
}

absl::Status DataLoss(std::string_view table, std::string_view key) {
  return absl::DataLossError(
      Cat("billing: cannot parse record in table ", table, " key ",
          absl::CHexEscape(absl::string_view(key.data(), key.size()))));
}

// Parses price tiers of one direction.
absl::StatusOr<std::vector<Tier>> ParseTiers(
    const google::protobuf::RepeatedPtrField<v1::PriceTier>& tiers,
    std::string_view field) {
  std::vector<Tier> out;
  for (int i = 0; i < tiers.size(); ++i) {
    ASSIGN_OR_RETURN(
        Money m, ParseDecimal(tiers[i].price(), Cat(field, "[", i, "].price")));
    out.push_back({tiers[i].from_tokens(), m.micros()});
  }
  RETURN_IF_ERROR(ValidateTiers(out, field));
  return out;
}

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
  return absl::AlreadyExistsError(Cat(
      "events[", i, "].idempotency_key: \"", key,
      "\" was already used by this tenant with a different payload; nothing "
      "of the batch was recorded"));
}

// ------------------------------------------------------ statement lines ----

// What makes a statement line distinct. Ordered for presentation.
struct LineKey {
  int order = 0;
  std::string pricing_model;
  std::string item;
  std::string adjustment_for;
  std::string detail;
  int64_t unit_price_micros = 0;  // -1: no price in effect
  friend auto operator<=>(const LineKey&, const LineKey&) = default;
};

// One line's exact quantity and amount until the single rounding.
struct LineAcc {
  std::string unit;
  __int128 quantity = 0;  // in 1/quantity_den units
  int64_t quantity_den = 1;
  int quantity_places = 0;
  ExactAmount amount;
  bool informational = false;
};

class Lines {
 public:
  LineAcc& At(std::string_view pricing_model, std::string_view item,
              std::string_view adjustment_for, std::string_view detail,
              int64_t unit_price_micros, std::string_view unit,
              int64_t quantity_den, int quantity_places, int64_t amount_den,
              bool informational = false) {
    LineKey key{PricingOrder(pricing_model), std::string(pricing_model),
                std::string(item),           std::string(adjustment_for),
                std::string(detail),         unit_price_micros};
    auto [it, inserted] = lines_.try_emplace(std::move(key));
    if (inserted) {
      it->second.unit = std::string(unit);
      it->second.quantity_den = quantity_den;
      it->second.quantity_places = quantity_places;
      it->second.amount = ExactAmount(amount_den);
      it->second.informational = informational;
    }
    return it->second;
  }

  // Rounds every line once and fills lines, subtotals and total.
  absl::Status Emit(v1::Statement* st) const {
    int64_t total = 0;
    for (const auto& [key, acc] : lines_) {
      if (acc.quantity == 0 && acc.amount.numerator() == 0) continue;
      v1::StatementLine* line = st->add_lines();
      line->set_pricing_model(key.pricing_model);
      line->set_item(key.item);
      line->set_detail(key.detail);
      line->set_adjustment_for(key.adjustment_for);
      line->set_quantity(
          FormatRatio(acc.quantity, acc.quantity_den, acc.quantity_places));
      line->set_unit(acc.unit);
      line->set_informational(acc.informational);
      if (acc.informational) continue;
      if (key.unit_price_micros >= 0) {
        line->set_unit_price(FormatMicros(key.unit_price_micros));
      }
      ASSIGN_OR_RETURN(int64_t cents, acc.amount.ToCents());
      line->set_amount_cents(cents);
      int64_t& sub = (*st->mutable_subtotal_cents())[key.pricing_model];
      if (__builtin_add_overflow(sub, cents, &sub) ||
          __builtin_add_overflow(total, cents, &total)) {
        return absl::OutOfRangeError("statement total overflows int64 cents");
      }
    }
    st->set_total_cents(total);
    return absl::OkStatus();
  }

 private:
  std::map<LineKey, LineAcc> lines_;
};

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
    const std::string& model, absl::Time t) const {
  auto it = inference_rates_.find(model);
  if (it == inference_rates_.end()) return nullptr;
  const std::vector<InferenceRate>& v = it->second;
  for (auto r = v.rbegin(); r != v.rend(); ++r) {
    if (r->from <= t) return &*r;
  }
  return nullptr;
}

std::optional<int64_t> Ledger::GpuRateAtLocked(std::string_view model,
                                               v1::ServiceClass cls,
                                               int64_t t) const {
  auto it = gpu_rates_.find(GpuKey(model, cls));
  if (it == gpu_rates_.end()) return std::nullopt;
  for (auto r = it->second.rbegin(); r != it->second.rend(); ++r) {
    if (r->from <= t) return r->rate_micros;
  }
  return std::nullopt;
}

std::vector<int64_t> Ledger::GpuRateChangesLocked(std::string_view model,
                                                  v1::ServiceClass cls) const {
  std::vector<int64_t> out;
  auto it = gpu_rates_.find(GpuKey(model, cls));
  if (it == gpu_rates_.end()) return out;
  for (const GpuRate& r : it->second) out.push_back(r.from);
  return out;
}

std::optional<int64_t> Ledger::OverageRateAtLocked(std::string_view tenant,
                                                   std::string_view model,
                                                   int64_t t) const {
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
    return best->overage_micros;
  }
  return GpuRateAtLocked(model, v1::SERVICE_CLASS_ON_DEMAND, t);
}

// -------------------------------------------------------------- prices ----

absl::Status Ledger::ApplyPriceLocked(const v1::Price& p) {
  prices_[p.version()] = p;
  last_price_version_ = std::max(last_price_version_, p.version());
  absl::Time from = FromProtoTime(p.effective_from());
  if (p.has_gpu_hour()) {
    ASSIGN_OR_RETURN(
        Money m, ParseDecimal(p.gpu_hour().price(), "price.gpu_hour.price"));
    auto& v = gpu_rates_[GpuKey(p.gpu_hour().gpu_model(),
                                p.gpu_hour().service_class())];
    v.push_back({absl::ToUnixSeconds(from), p.version(), m.micros()});
    std::sort(v.begin(), v.end(), [](const GpuRate& a, const GpuRate& b) {
      return std::tie(a.from, a.version) < std::tie(b.from, b.version);
    });
  } else if (p.has_inference()) {
    const v1::InferencePrice& ip = p.inference();
    InferenceRate r;
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
    auto& v = inference_rates_[ip.model()];
    v.push_back(std::move(r));
    std::sort(
        v.begin(), v.end(), [](const InferenceRate& a, const InferenceRate& b) {
          return std::tie(a.from, a.version) < std::tie(b.from, b.version);
        });
    for (size_t i = 0; i < v.size(); ++i) {
      inference_by_version_[v[i].version] = {ip.model(), i};
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Price> Ledger::SetPrice(const v1::Price& price) {
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  v1::Price p = price;
  bool has_history = false;
  switch (p.kind_case()) {
    case v1::Price::kGpuHour: {
      const v1::GpuHourPrice& g = p.gpu_hour();
      if (g.gpu_model().empty()) {
        return absl::InvalidArgumentError(
            "price.gpu_hour.gpu_model: must not be empty");
      }
      if (g.service_class() != v1::SERVICE_CLASS_ON_DEMAND &&
          g.service_class() != v1::SERVICE_CLASS_SPOT) {
        return absl::InvalidArgumentError(
            "price.gpu_hour.service_class: must be on-demand or spot "
            "(reserved rates come from contracts)");
      }
      RETURN_IF_ERROR(ParseDecimal(g.price(), "price.gpu_hour.price").status());
      has_history =
          gpu_rates_.contains(GpuKey(g.gpu_model(), g.service_class()));
      break;
    }
    case v1::Price::kInference: {
      const v1::InferencePrice& ip = p.inference();
      if (ip.model().empty()) {
        return absl::InvalidArgumentError(
            "price.inference.model: must not be empty");
      }
      RETURN_IF_ERROR(ParseTiers(ip.input(), "price.inference.input").status());
      RETURN_IF_ERROR(
          ParseTiers(ip.output(), "price.inference.output").status());
      if (!ip.per_request().empty()) {
        RETURN_IF_ERROR(
            ParseDecimal(ip.per_request(), "price.inference.per_request")
                .status());
      }
      has_history = inference_rates_.contains(ip.model());
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
    if (has_history && FromProtoTime(p.effective_from()) < now) {
      return absl::InvalidArgumentError(
          "price.effective_from: must not be in the past; a price change is "
          "never retroactive (only the first price of an item may be "
          "backdated)");
    }
  }
  p.set_version(last_price_version_ + 1);
  RETURN_IF_ERROR(store_->Put(storage::kPrices, VersionKey(p.version()),
                              p.SerializeAsString(), {.sync = true}));
  RETURN_IF_ERROR(ApplyPriceLocked(p));
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
  ASSIGN_OR_RETURN(Money rate, ParseDecimal(c.rate(), "contract.rate"));
  if (!c.overage_rate().empty()) {
    RETURN_IF_ERROR(
        ParseDecimal(c.overage_rate(), "contract.overage_rate").status());
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
  return out;
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

absl::StatusOr<v1::RecordUsageResponse> Ledger::RecordUsageInParts(
    absl::Span<const v1::UsageEvent> events, size_t part) {
  v1::RecordUsageResponse total;
  for (size_t from = 0; from < events.size(); from += part) {
    auto r = RecordUsage(events.subspan(from, part));
    if (!r.ok()) {
      // "events[3].tenant: ..." of the part -> index in the whole batch.
      absl::string_view m = r.status().message();
      size_t i = 0, end = 0;
      if (absl::StartsWith(m, "events[") &&
          (end = m.find(']')) != absl::string_view::npos &&
          absl::SimpleAtoi(m.substr(7, end - 7), &i)) {
        return absl::Status(
            r.status().code(),
            Cat("events[", from + i, m.substr(end),
                from > 0 ? Cat(" (events[0..", from - 1,
                               "] were recorded; re-sending them counts "
                               "them as duplicates)")
                         : std::string()));
      }
      return r.status();
    }
    total.set_accepted(total.accepted() + r->accepted());
    total.set_duplicates(total.duplicates() + r->duplicates());
  }
  return total;
}

absl::StatusOr<v1::RecordUsageResponse> Ledger::RecordUsage(
    absl::Span<const v1::UsageEvent> events) {
  // Each event adds at most 2 ops (its record, one aggregate).
  if (const int64_t max_ops = store_->max_batch_ops();
      max_ops > 0 && events.size() > static_cast<size_t>(max_ops / 2)) {
    return RecordUsageInParts(events,
                              std::max<size_t>(1, static_cast<size_t>(max_ops / 2)));
  }
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  const absl::Time latest = now + kMaxFutureSkew;

  // 1. Validate every event; any invalid event rejects the whole batch.
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
    if (!inference_rates_.contains(e.model())) {
      return bad("model", Cat("unknown model \"", e.model(),
                              "\" (no inference price was ever set for it)"));
    }
    if (e.requests() < 0) return bad("requests", "must be >= 0");
    if (e.input_tokens() < 0) return bad("input_tokens", "must be >= 0");
    if (e.output_tokens() < 0) return bad("output_tokens", "must be >= 0");
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
    rates[i] = InferenceRateAtLocked(e.model(), t);
    if (rates[i] == nullptr) {
      return bad("time", Cat("no price for model \"", e.model(),
                             "\" was in effect at that time"));
    }
  }

  // 2. Idempotency, rating and aggregation into scratch state; memory changes
  // only after the batch is durable.
  v1::RecordUsageResponse resp;
  storage::WriteBatch batch;
  // (tenant, key) -> first index in this batch; views into `events`.
  absl::flat_hash_map<std::pair<absl::string_view, absl::string_view>, size_t>
      in_batch;
  absl::node_hash_map<std::string, InferenceAggregate> touched;
  absl::node_hash_map<std::string, uint64_t> counts;
  std::vector<uint64_t> new_hashes;
  std::vector<std::pair<std::string, std::string>> usage_puts;
  usage_puts.reserve(events.size());
  in_batch.reserve(events.size());
  new_hashes.reserve(events.size());

  // The aggregate and monthly counters each event moves, per (tenant, model,
  // origin month, price version); the views point into `events`.
  struct Slot {
    InferenceAggregate* agg = nullptr;
    uint64_t* in = nullptr;
    uint64_t* out = nullptr;
  };
  using SlotKey =
      std::tuple<absl::string_view, absl::string_view, int, uint64_t>;
  absl::flat_hash_map<SlotKey, Slot> slots;

  auto counter = [&](const std::string& key) -> uint64_t* {
    auto [it, inserted] = counts.try_emplace(key, 0);
    if (inserted) {
      auto m = monthly_tokens_.find(key);
      if (m != monthly_tokens_.end()) it->second = m->second;
    }
    return &it->second;
  };

  UsageRecord rec;
  for (size_t i = 0; i < events.size(); ++i) {
    const v1::UsageEvent& e = events[i];
    auto [b_it, b_new] = in_batch.try_emplace(
        std::make_pair(absl::string_view(e.tenant()),
                       absl::string_view(e.idempotency_key())),
        i);
    if (!b_new) {
      if (!SamePayload(events[b_it->second], e)) {
        return AlreadyUsed(i, e.idempotency_key());
      }
      resp.set_duplicates(resp.duplicates() + 1);
      continue;
    }
    std::string ukey = UsageKey(e.tenant(), e.idempotency_key());
    uint64_t h = absl::Hash<std::string_view>{}(ukey);
    if (usage_key_hashes_.contains(h)) {
      ASSIGN_OR_RETURN(std::optional<std::string> stored,
                       store_->Get(storage::kUsage, ukey));
      if (stored.has_value()) {
        UsageRecord old;
        if (!old.ParseFromString(*stored)) {
          return DataLoss(storage::kUsage, ukey);
        }
        if (!SamePayload(old, e)) return AlreadyUsed(i, e.idempotency_key());
        resp.set_duplicates(resp.duplicates() + 1);
        continue;
      }
    }

    // A new event: rate it with the price in effect at its time.
    const InferenceRate* rate = rates[i];
    absl::Time t = FromProtoTime(e.time());
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
      auto [a_it, a_new] = touched.try_emplace(akey);
      if (a_new) {
        auto existing = aggs_.find(akey);
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
      cur.agg = &a_it->second;
      cur.in = counter(MonthlyKey(e.tenant(), e.model(), origin_s, "in"));
      cur.out = counter(MonthlyKey(e.tenant(), e.model(), origin_s, "out"));
    }
    InferenceAggregate& agg = *cur.agg;
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
        if (!slices.ok()) return overflow(d.field);
        for (const TierSlice& s : *slices) {
          int64_t& cell = (*d.per_tier)[static_cast<int>(s.tier)];
          if (__builtin_add_overflow(cell, static_cast<int64_t>(s.tokens),
                                     &cell)) {
            return overflow(d.field);
          }
        }
      }
      int64_t total;
      if (__builtin_add_overflow((agg.*d.total)(), d.tokens, &total) ||
          __builtin_add_overflow(*d.count, tokens, d.count)) {
        return overflow(d.field);
      }
      (agg.*d.set_total)(total);
    }
    int64_t requests;
    if (__builtin_add_overflow(agg.requests(), e.requests(), &requests)) {
      return overflow("requests");
    }
    agg.set_requests(requests);
    agg.set_events(agg.events() + 1);

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
    usage_puts.emplace_back(std::move(ukey), rec.SerializeAsString());
    new_hashes.push_back(h);
    resp.set_accepted(resp.accepted() + 1);
  }
  if (resp.accepted() == 0) return resp;
  // Keys in order: RocksDB inserts a sorted run into its memtable much faster.
  std::sort(usage_puts.begin(), usage_puts.end());
  for (const auto& [key, value] : usage_puts) {
    batch.Put(storage::kUsage, key, value);
  }
  for (const auto& [key, agg] : touched) {
    batch.Put(storage::kUsageAgg, key, agg.SerializeAsString());
  }
  // 3. One durable write: keys, events and the aggregates they move.
  RETURN_IF_ERROR(store_->Write(batch, {.sync = true}));
  for (auto& [key, agg] : touched) ApplyAggregateLocked(key, std::move(agg));
  for (const auto& [key, n] : counts) monthly_tokens_[key] = n;
  usage_key_hashes_.insert(new_hashes.begin(), new_hashes.end());
  return resp;
}

void Ledger::set_usage_dedup_window(absl::Duration window) {
  absl::MutexLock lock(&mu_);
  usage_dedup_window_ = window;
}

absl::StatusOr<int64_t> Ledger::CompactUsageRecords() {
  absl::Time cutoff;
  {
    absl::MutexLock lock(&mu_);
    if (usage_dedup_window_ == absl::InfiniteDuration()) return 0;
    cutoff = clock_->Now() - usage_dedup_window_;
  }
  // Events older than the cutoff are refused, so no writer touches these
  // records while they are collected and deleted.
  std::vector<std::string> old;
  UsageRecord rec;
  RETURN_IF_ERROR(store_->Scan(storage::kUsage, "", [&](auto key, auto value) {
    if (rec.ParseFromString(std::string(value)) &&
        FromProtoTime(rec.time()) < cutoff) {
      old.emplace_back(key);
    }
    return true;
  }));
  const int64_t limit = store_->max_batch_ops();
  const size_t per = limit > 0 ? static_cast<size_t>(limit) : 1000;
  int64_t deleted = 0;
  for (size_t i = 0; i < old.size(); i += per) {
    storage::WriteBatch batch;
    for (size_t j = i; j < old.size() && j < i + per; ++j) {
      batch.Delete(storage::kUsage, old[j]);
    }
    RETURN_IF_ERROR(store_->Write(batch, {.sync = true}));
    deleted += static_cast<int64_t>(batch.size());
  }
  // The in-memory key hashes stay: a stale hash only costs a store lookup.
  return deleted;
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

absl::Status Ledger::ApplyJobRecordLocked(const JobUsageRecord& r) {
  Attempt a;
  a.tenant = r.tenant();
  a.gpu_model = r.gpu_model();
  a.service_class = r.service_class();
  a.gpus = r.gpus();
  for (const JobUsagePiece& p : r.pieces()) {
    ASSIGN_OR_RETURN(Period origin, Period::Parse(p.origin_period()));
    ASSIGN_OR_RETURN(Period booking, Period::Parse(p.booking_period()));
    a.pieces.push_back(
        {origin, booking, {p.start_unix_s(), p.end_unix_s()}, p.energy_mj()});
  }
  std::string key = JobKey(r.job_id(), r.attempt());
  auto [it, inserted] = attempts_.try_emplace(key);
  if (inserted) attempts_by_tenant_[r.tenant()].push_back(key);
  it->second = std::move(a);
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

// ----------------------------------------------------------- statements ----

absl::StatusOr<v1::Statement> Ledger::ComputeStatementLocked(
    const std::string& tenant, Period period) const {
  const std::string period_s = period.ToString();
  Lines lines;
  auto adjustment = [&](Period origin) {
    return origin == period ? std::string() : origin.ToString();
  };

  // Reserved take-or-pay: G x hours of the term inside the period x r.
  const Interval window{period.StartUnixSeconds(), period.EndUnixSeconds()};
  for (const auto& [id, c] : contracts_) {
    if (c.proto.tenant() != tenant) continue;
    int64_t seconds = OverlapSeconds(c.terms.term, window);
    if (seconds == 0) continue;
    LineAcc& l = lines.At(kReserved, c.proto.gpu_model(), "",
                          Cat(id, ", ", c.proto.gpus(), " GPUs committed"),
                          c.terms.rate_micros, "GPU-hour", kSecondsPerHour, 6,
                          kSecondsPerHour);
    __int128 gpu_seconds = static_cast<__int128>(c.proto.gpus()) * seconds;
    l.quantity += gpu_seconds;
    RETURN_IF_ERROR(l.amount.AddProduct(gpu_seconds, c.terms.rate_micros));
  }

  // Job attempts: on-demand / spot, energy, and the reserved groups.
  struct ReservedPiece {
    const Piece* piece;
    uint32_t gpus;
  };
  // (model, origin) -> reserved pieces booked at or before this period.
  std::map<std::pair<std::string, Period>, std::vector<ReservedPiece>> groups;
  std::set<std::pair<std::string, Period>> groups_here;
  auto tenant_it = attempts_by_tenant_.find(tenant);
  if (tenant_it != attempts_by_tenant_.end()) {
    for (const std::string& key : tenant_it->second) {
      const Attempt& a = attempts_.at(key);
      for (const Piece& p : a.pieces) {
        if (a.service_class == v1::SERVICE_CLASS_RESERVED &&
            p.booking <= period) {
          groups[{a.gpu_model, p.origin}].push_back({&p, a.gpus});
          if (p.booking == period) groups_here.insert({a.gpu_model, p.origin});
        }
        if (p.booking != period) continue;
        const std::string adj = adjustment(p.origin);
        LineAcc& energy =
            lines.At(kEnergy, a.gpu_model, adj, "energy drawn by jobs", -1,
                     "kWh", 3'600'000'000, 3, 1, /*informational=*/true);
        energy.quantity += p.energy_mj;
        if (a.service_class != v1::SERVICE_CLASS_ON_DEMAND &&
            a.service_class != v1::SERVICE_CLASS_SPOT) {
          continue;
        }
        // Split at price changes; each part at the price then in effect.
        std::vector<int64_t> changes =
            GpuRateChangesLocked(a.gpu_model, a.service_class);
        for (const Interval& part : SplitAt(p.interval, changes)) {
          std::optional<int64_t> rate =
              GpuRateAtLocked(a.gpu_model, a.service_class, part.start);
          std::string_view cls = ClassName(a.service_class);
          LineAcc& l =
              lines.At(cls, a.gpu_model, adj,
                       rate.has_value() ? std::string(cls)
                                        : Cat(cls, ", no price in effect"),
                       rate.value_or(-1), "GPU-hour", kSecondsPerHour, 6,
                       kSecondsPerHour);
          __int128 gpu_seconds = static_cast<__int128>(a.gpus) * part.seconds();
          l.quantity += gpu_seconds;
          RETURN_IF_ERROR(l.amount.AddProduct(gpu_seconds, rate.value_or(0)));
        }
      }
    }
  }

  // Reserved overage: sweep over the attempts; what this period adds to the
  // origin month's overage (booked here) = overage(pieces booked <= this
  // period) - overage(pieces booked before it).
  for (const auto& group_key : groups_here) {
    const auto& [model, origin] = group_key;
    const std::vector<ReservedPiece>& all = groups.at(group_key);
    std::vector<GpuInterval> commits;
    for (const auto& [id, c] : contracts_) {
      if (c.proto.tenant() == tenant && c.proto.gpu_model() == model) {
        commits.push_back({c.terms.term, c.proto.gpus()});
      }
    }
    std::vector<int64_t> breaks =
        GpuRateChangesLocked(model, v1::SERVICE_CLASS_ON_DEMAND);
    // rate (-1 = none in effect) -> overage GPU-seconds.
    auto overage = [&](bool include_here) {
      std::vector<GpuInterval> usage;
      for (const ReservedPiece& rp : all) {
        if (rp.piece->booking < period ||
            (include_here && rp.piece->booking == period)) {
          usage.push_back({rp.piece->interval, rp.gpus});
        }
      }
      std::map<int64_t, __int128> by_rate;
      for (const SweepSegment& s : SweepReserved(usage, commits, breaks)) {
        if (s.OverageGpus() == 0) continue;
        int64_t rate =
            OverageRateAtLocked(tenant, model, s.interval.start).value_or(-1);
        by_rate[rate] +=
            static_cast<__int128>(s.OverageGpus()) * s.interval.seconds();
      }
      return by_rate;
    };
    std::map<int64_t, __int128> with = overage(true);
    std::map<int64_t, __int128> before = overage(false);
    for (const auto& [rate, gpu_seconds] : with) {
      __int128 added = gpu_seconds - before[rate];
      if (added == 0) continue;
      LineAcc& l =
          lines.At(kReservedOverage, model, adjustment(origin),
                   rate >= 0 ? "beyond committed GPUs"
                             : "beyond committed GPUs, no price in effect",
                   rate, "GPU-hour", kSecondsPerHour, 6, kSecondsPerHour);
      l.quantity += added;
      RETURN_IF_ERROR(l.amount.AddProduct(added, std::max<int64_t>(rate, 0)));
    }
  }

  // Inference: from the aggregates booked into this period.
  auto agg_it = aggs_by_statement_.find(StatementIndexKey(tenant, period_s));
  if (agg_it != aggs_by_statement_.end()) {
    for (const std::string& key : agg_it->second) {
      const InferenceAggregate& agg = aggs_.at(key);
      const auto& [model, index] =
          inference_by_version_.at(agg.price_version());
      const InferenceRate& rate = inference_rates_.at(model)[index];
      std::string adj =
          agg.origin_period() == period_s ? std::string() : agg.origin_period();
      auto tier_lines =
          [&](std::string_view direction, const std::vector<Tier>& tiers,
              const google::protobuf::RepeatedField<int64_t>& tokens)
          -> absl::Status {
        for (int i = 0; i < tokens.size() && i < static_cast<int>(tiers.size());
             ++i) {
          if (tokens[i] == 0) continue;
          std::string detail = tiers.size() == 1
                                   ? std::string(direction)
                                   : Cat(direction, ", tier ", i + 1, " (from ",
                                         tiers[i].from_tokens, " tokens)");
          LineAcc& l = lines.At(kInference, agg.model(), adj, detail,
                                tiers[i].rate_micros, "1M tokens",
                                kTokensPerPriceUnit, 6, kTokensPerPriceUnit);
          l.quantity += tokens[i];
          RETURN_IF_ERROR(l.amount.AddProduct(tokens[i], tiers[i].rate_micros));
        }
        return absl::OkStatus();
      };
      RETURN_IF_ERROR(tier_lines("input", rate.input, agg.input_tier_tokens()));
      RETURN_IF_ERROR(
          tier_lines("output", rate.output, agg.output_tier_tokens()));
      if (rate.per_request_micros.has_value() && agg.requests() > 0) {
        LineAcc& l = lines.At(kInference, agg.model(), adj, "requests",
                              *rate.per_request_micros, "request", 1, 0, 1);
        l.quantity += agg.requests();
        RETURN_IF_ERROR(
            l.amount.AddProduct(agg.requests(), *rate.per_request_micros));
      }
    }
  }

  v1::Statement st;
  st.set_tenant(tenant);
  st.set_period(period_s);
  RETURN_IF_ERROR(lines.Emit(&st));
  *st.mutable_generated_time() = ToProtoTime(clock_->Now());
  return st;
}

absl::StatusOr<v1::Statement> Ledger::GetStatement(
    std::string_view tenant, std::string_view period) const {
  ASSIGN_OR_RETURN(Period p, Period::Parse(period, "period"));
  if (tenant.empty()) {
    return absl::InvalidArgumentError("tenant: must not be empty");
  }
  if (!tenants_->Exists(tenant)) {
    return absl::NotFoundError(Cat("tenant: unknown tenant \"", tenant, "\""));
  }
  absl::ReaderMutexLock lock(&mu_);
  if (finalized_.contains(p)) {
    ASSIGN_OR_RETURN(
        std::optional<std::string> stored,
        store_->Get(storage::kStatements, StoredStatementKey(period, tenant)));
    if (stored.has_value()) {
      v1::Statement st;
      if (!st.ParseFromString(*stored)) {
        return DataLoss(storage::kStatements,
                        StoredStatementKey(period, tenant));
      }
      return st;
    }
  }
  ASSIGN_OR_RETURN(v1::Statement st,
                   ComputeStatementLocked(std::string(tenant), p));
  st.set_finalized(finalized_.contains(p));
  return st;
}

std::set<std::string> Ledger::TenantsWithActivityLocked(Period period) const {
  std::set<std::string> out;
  const std::string period_s = period.ToString();
  for (const auto& [key, aggs] : aggs_by_statement_) {
    if (aggs.empty()) continue;
    const InferenceAggregate& a = aggs_.at(aggs.front());
    if (a.booking_period() == period_s) out.insert(a.tenant());
  }
  for (const auto& [tenant, keys] : attempts_by_tenant_) {
    for (const std::string& key : keys) {
      const Attempt& a = attempts_.at(key);
      if (std::any_of(a.pieces.begin(), a.pieces.end(),
                      [&](const Piece& p) { return p.booking == period; })) {
        out.insert(tenant);
        break;
      }
    }
  }
  const Interval window{period.StartUnixSeconds(), period.EndUnixSeconds()};
  for (const auto& [id, c] : contracts_) {
    if (OverlapSeconds(c.terms.term, window) > 0) out.insert(c.proto.tenant());
  }
  return out;
}

absl::StatusOr<v1::FinalizePeriodResponse> Ledger::FinalizePeriod(
    std::string_view period) {
  ASSIGN_OR_RETURN(Period p, Period::Parse(period, "period"));
  const std::string period_s = p.ToString();
  absl::MutexLock lock(&mu_);
  v1::FinalizePeriodResponse resp;
  if (finalized_.contains(p)) {
    absl::Status parse = absl::OkStatus();
    RETURN_IF_ERROR(
        store_->Scan(storage::kStatements, Cat(period_s, kSep),
                     [&](std::string_view key, std::string_view value) {
                       if (!resp.add_statements()->ParseFromArray(
                               value.data(), static_cast<int>(value.size()))) {
                         parse = DataLoss(storage::kStatements, key);
                         return false;
                       }
                       return true;
                     }));
    RETURN_IF_ERROR(parse);
    return resp;
  }
  const absl::Time now = clock_->Now();
  if (now < p.End()) {
    return absl::FailedPreconditionError(
        Cat("period: ", period_s, " has not ended yet (it ends ",
            absl::FormatTime(absl::RFC3339_full, p.End(), absl::UTCTimeZone()),
            ")"));
  }
  storage::WriteBatch batch;
  int n = 0;
  for (const std::string& tenant : TenantsWithActivityLocked(p)) {
    ASSIGN_OR_RETURN(v1::Statement st, ComputeStatementLocked(tenant, p));
    st.set_finalized(true);
    st.set_number(absl::StrFormat("JS-%s-%06d", period_s, ++n));
    *st.mutable_generated_time() = ToProtoTime(now);
    batch.Put(storage::kStatements, StoredStatementKey(period_s, tenant),
              st.SerializeAsString());
    *resp.add_statements() = std::move(st);
  }
  FinalizedPeriod fp;
  fp.set_period(period_s);
  *fp.mutable_finalized_time() = ToProtoTime(now);
  fp.set_statements(n);
  batch.Put(storage::kMeta, Cat(kFinalizedPrefix, period_s),
            fp.SerializeAsString());
  RETURN_IF_ERROR(store_->Write(batch, {.sync = true}));
  finalized_.insert(p);
  return resp;
}

// -------------------------------------------------------------- backlog ----

absl::StatusOr<v1::GetBacklogResponse> Ledger::Backlog(absl::Time as_of) const {
  absl::ReaderMutexLock lock(&mu_);
  v1::GetBacklogResponse resp;
  *resp.mutable_as_of() = ToProtoTime(as_of);
  const int64_t as_of_s = absl::ToUnixSeconds(as_of);
  const int64_t horizon_s = absl::ToUnixSeconds(AddMonths(as_of, 12));
  v1::BacklogRow total;
  auto add = [](int64_t* sum, int64_t v) -> absl::Status {
    if (__builtin_add_overflow(*sum, v, sum)) {
      return absl::OutOfRangeError("backlog total overflows int64 cents");
    }
    return absl::OkStatus();
  };
  int64_t t_value = 0, t_rec = 0, t_backlog = 0, t_next = 0, t_after = 0;
  uint64_t t_gpus = 0;
  for (const auto& [id, c] : contracts_) {
    ASSIGN_OR_RETURN(BacklogFigures f,
                     ComputeBacklog(c.terms, as_of_s, horizon_s));
    v1::BacklogRow* row = resp.add_rows();
    row->set_contract_id(id);
    row->set_tenant(c.proto.tenant());
    row->set_gpu_model(c.proto.gpu_model());
    row->set_gpus(c.proto.gpus());
    row->set_start_date(c.proto.start_date());
    row->set_end_date(c.proto.end_date());
    row->set_rate(c.proto.rate());
    row->set_value_cents(f.value_cents);
    row->set_recognized_cents(f.recognized_cents);
    row->set_backlog_cents(f.backlog_cents);
    row->set_next_12_months_cents(f.next_12_months_cents);
    row->set_after_12_months_cents(f.after_12_months_cents);
    t_gpus += c.proto.gpus();
    RETURN_IF_ERROR(add(&t_value, f.value_cents));
    RETURN_IF_ERROR(add(&t_rec, f.recognized_cents));
    RETURN_IF_ERROR(add(&t_backlog, f.backlog_cents));
    RETURN_IF_ERROR(add(&t_next, f.next_12_months_cents));
    RETURN_IF_ERROR(add(&t_after, f.after_12_months_cents));
  }
  total.set_gpus(static_cast<uint32_t>(std::min<uint64_t>(t_gpus, UINT32_MAX)));
  total.set_value_cents(t_value);
  total.set_recognized_cents(t_rec);
  total.set_backlog_cents(t_backlog);
  total.set_next_12_months_cents(t_next);
  total.set_after_12_months_cents(t_after);
  *resp.mutable_total() = std::move(total);
  return resp;
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
  usage_key_hashes_.clear();
  aggs_.clear();
  aggs_by_statement_.clear();
  monthly_tokens_.clear();
  attempts_.clear();
  attempts_by_tenant_.clear();

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
  RETURN_IF_ERROR(scan(storage::kUsage, "", [&](auto key, auto) {
    usage_key_hashes_.insert(absl::Hash<std::string_view>{}(key));
    return absl::OkStatus();
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
