// Ledger: statements (lines, reserved sweep, attempts), finalization and
// the backlog (split from ledger.cc; same class, same mutex).
#include <algorithm>
#include <array>
#include <tuple>
#include <utility>

#include "absl/container/node_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "billing/ledger.h"
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

// ------------------------------------------------------ statement lines ----

// What makes a statement line distinct. Ordered for presentation.
struct LineKey {
  int order = 0;
  std::string pricing_model;
  std::string item;
  std::string adjustment_for;
  std::string detail;
  int64_t unit_price_micros = 0;  // -1: no price in effect
  std::string rate_card;          // list, tenant, contract
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
              bool informational = false, std::string_view rate_card = "") {
    LineKey key{PricingOrder(pricing_model), std::string(pricing_model),
                std::string(item),           std::string(adjustment_for),
                std::string(detail),         unit_price_micros,
                std::string(rate_card)};
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

  // Rounds every line once and fills lines, subtotals and total. An
  // overflow names the tenant and the line.
  absl::Status Emit(v1::Statement* st) const {
    int64_t total = 0;
    for (const auto& [key, acc] : lines_) {
      if (acc.quantity == 0 && acc.amount.numerator() == 0) continue;
      auto overflow = [&](const absl::Status& s) {
        return absl::OutOfRangeError(Cat(
            "statement of tenant \"", st->tenant(), "\" for ", st->period(),
            ", line ", key.pricing_model, " / ", key.item, " / ", key.detail,
            key.adjustment_for.empty()
                ? std::string()
                : Cat(" (adjustment for ", key.adjustment_for, ")"),
            ": ", s.message()));
      };
      v1::StatementLine* line = st->add_lines();
      line->set_pricing_model(key.pricing_model);
      line->set_item(key.item);
      line->set_detail(key.detail);
      line->set_adjustment_for(key.adjustment_for);
      line->set_quantity(
          FormatRatio(acc.quantity, acc.quantity_den, acc.quantity_places));
      line->set_unit(acc.unit);
      line->set_informational(acc.informational);
      line->set_rate_card(key.rate_card);
      if (acc.informational) continue;
      if (key.unit_price_micros >= 0) {
        line->set_unit_price(FormatMicros(key.unit_price_micros));
      }
      absl::StatusOr<int64_t> cents = acc.amount.ToCents();
      if (!cents.ok()) return overflow(cents.status());
      line->set_amount_cents(*cents);
      int64_t& sub = (*st->mutable_subtotal_cents())[key.pricing_model];
      absl::StatusOr<int64_t> new_sub = CheckedAdd(sub, *cents);
      absl::StatusOr<int64_t> new_total = CheckedAdd(total, *cents);
      if (!new_sub.ok()) return overflow(new_sub.status());
      if (!new_total.ok()) return overflow(new_total.status());
      sub = *new_sub;
      total = *new_total;
    }
    st->set_total_cents(total);
    return absl::OkStatus();
  }

 private:
  std::map<LineKey, LineAcc> lines_;
};

}  // namespace

// ----------------------------------------------------------- statements ----

absl::StatusOr<v1::Statement> Ledger::ComputeStatementLocked(
    const std::string& tenant, Period period,
    const std::vector<Attempt>& running) const {
  const std::string period_s = period.ToString();
  Lines lines;
  auto adjustment = [&](Period origin) {
    return origin == period ? std::string() : origin.ToString();
  };
  auto card_name = [](bool tenant_card) {
    return tenant_card ? "tenant" : "list";
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
                          kSecondsPerHour, false, "contract");
    __int128 gpu_seconds = static_cast<__int128>(c.proto.gpus()) * seconds;
    l.quantity += gpu_seconds;
    RETURN_IF_ERROR(l.amount.AddProduct(gpu_seconds, c.terms.rate_micros));
  }

  // Job attempts: on-demand / spot, energy, and the reserved groups.
  std::vector<const Attempt*> all;
  auto tenant_it = attempts_by_tenant_.find(tenant);
  if (tenant_it != attempts_by_tenant_.end()) {
    for (const std::string& key : tenant_it->second) {
      all.push_back(&attempts_.at(key));
    }
  }
  for (const Attempt& a : running) {
    if (a.tenant == tenant) all.push_back(&a);
  }
  // Earliest start first (then job id, attempt): the order in which
  // reserved attempts take the committed GPUs, and of `attempts`.
  auto first_start = [](const Attempt* a) {
    return a->pieces.empty() ? 0 : a->pieces.front().interval.start;
  };
  std::sort(all.begin(), all.end(), [&](const Attempt* x, const Attempt* y) {
    // As the tuple (start, job id, attempt), without copying the ids.
    const int64_t sx = first_start(x), sy = first_start(y);
    if (sx != sy) return sx < sy;
    if (const int c = x->job_id.compare(y->job_id); c != 0) return c < 0;
    return x->attempt < y->attempt;
  });
  struct ReservedPiece {
    const Piece* piece;
    const Attempt* attempt;
  };
  // (model, origin) -> reserved pieces booked at or before this period.
  std::map<std::pair<std::string, Period>, std::vector<ReservedPiece>> groups;
  std::set<std::pair<std::string, Period>> groups_here;
  // How each attempt's GPU-seconds booked here were billed.
  std::map<const Attempt*, v1::AttemptBilling> billing;
  auto billing_of = [&](const Attempt& a) -> v1::AttemptBilling& {
    v1::AttemptBilling& b = billing[&a];
    if (b.job_id().empty()) {
      b.set_job_id(a.job_id);
      b.set_attempt(a.attempt);
      b.set_gpu_model(a.gpu_model);
      b.set_service_class(a.service_class);
      b.set_gpus(a.gpus);
      b.set_in_progress(a.in_progress);
      b.set_period(period_s);
    }
    return b;
  };
  for (const Attempt* ap : all) {
    const Attempt& a = *ap;
    const std::string progress = a.in_progress ? ", in progress, to now" : "";
    for (const Piece& p : a.pieces) {
      if (a.service_class == v1::SERVICE_CLASS_RESERVED &&
          p.booking <= period) {
        groups[{a.gpu_model, p.origin}].push_back({&p, &a});
        if (p.booking == period) groups_here.insert({a.gpu_model, p.origin});
      }
      if (p.booking != period) continue;
      const std::string adj = adjustment(p.origin);
      if (!a.in_progress) {
        LineAcc& energy =
            lines.At(kEnergy, a.gpu_model, adj, "energy drawn by jobs", -1,
                     "kWh", 3'600'000'000, 3, 1, /*informational=*/true);
        energy.quantity += p.energy_mj;
      }
      v1::AttemptBilling& b = billing_of(a);
      b.set_gpu_seconds(b.gpu_seconds() +
                        static_cast<int64_t>(a.gpus) * p.interval.seconds());
      if (a.service_class != v1::SERVICE_CLASS_ON_DEMAND &&
          a.service_class != v1::SERVICE_CLASS_SPOT) {
        continue;
      }
      // Split at price changes; each part at the price then in effect.
      std::vector<int64_t> changes =
          GpuRateChangesLocked(tenant, a.gpu_model, a.service_class);
      for (const Interval& part : SplitAt(p.interval, changes)) {
        std::optional<RateAt> rate =
            GpuRateAtLocked(tenant, a.gpu_model, a.service_class, part.start);
        std::string_view cls = ClassName(a.service_class);
        LineAcc& l = lines.At(
            cls, a.gpu_model, adj,
            Cat(cls, rate.has_value() ? "" : ", no price in effect", progress),
            rate.has_value() ? rate->rate_micros : -1, "GPU-hour",
            kSecondsPerHour, 6, kSecondsPerHour, false,
            rate.has_value() ? card_name(rate->tenant_card) : "");
        __int128 gpu_seconds = static_cast<__int128>(a.gpus) * part.seconds();
        l.quantity += gpu_seconds;
        RETURN_IF_ERROR(l.amount.AddProduct(
            gpu_seconds, rate.has_value() ? rate->rate_micros : 0));
        std::string how =
            rate.has_value()
                ? Cat(cls, " at ", FormatMicros(rate->rate_micros), "/GPU-h (",
                      card_name(rate->tenant_card), ")")
                : Cat(cls, ", no price in effect");
        if (b.how().find(how) == std::string::npos) {
          b.set_how(b.how().empty() ? how : Cat(b.how(), "; ", how));
        }
      }
    }
  }

  // Reserved overage: sweep over the attempts; what this period adds to the
  // origin month's overage (booked here) = overage(pieces booked <= this
  // period) - overage(pieces booked before it). Attempts still running add
  // an "in progress, to now" line on top.
  for (const auto& group_key : groups_here) {
    const auto& [model, origin] = group_key;
    const std::vector<ReservedPiece>& group = groups.at(group_key);
    std::vector<GpuInterval> commits;
    for (const auto& [id, c] : contracts_) {
      if (c.proto.tenant() == tenant && c.proto.gpu_model() == model) {
        commits.push_back({c.terms.term, c.proto.gpus()});
      }
    }
    std::vector<int64_t> breaks =
        GpuRateChangesLocked(tenant, model, v1::SERVICE_CLASS_ON_DEMAND);
    using RateKey = std::pair<int64_t, bool>;  // rate (-1: none), card
    auto overage = [&](bool include_here, bool include_running) {
      std::vector<GpuInterval> usage;
      for (const ReservedPiece& rp : group) {
        if (rp.attempt->in_progress && !include_running) continue;
        if (rp.piece->booking < period ||
            (include_here && rp.piece->booking == period)) {
          usage.push_back({rp.piece->interval, rp.attempt->gpus});
        }
      }
      std::map<RateKey, __int128> by_rate;
      for (const SweepSegment& seg : SweepReserved(usage, commits, breaks)) {
        if (seg.OverageGpus() == 0) continue;
        std::optional<RateAt> r =
            OverageRateAtLocked(tenant, model, seg.interval.start);
        RateKey k = r.has_value() ? RateKey{r->rate_micros, r->tenant_card}
                                  : RateKey{-1, false};
        by_rate[k] +=
            static_cast<__int128>(seg.OverageGpus()) * seg.interval.seconds();
      }
      return by_rate;
    };
    std::map<RateKey, __int128> settled = overage(true, false);
    std::map<RateKey, __int128> before = overage(false, false);
    std::map<RateKey, __int128> with_running = overage(true, true);
    auto add_lines = [&](const std::map<RateKey, __int128>& upper,
                         std::map<RateKey, __int128>& lower,
                         std::string_view suffix) -> absl::Status {
      for (const auto& [rk, gpu_seconds] : upper) {
        const auto& [rate, tenant_card] = rk;
        __int128 added = gpu_seconds - lower[rk];
        if (added == 0) continue;
        LineAcc& l = lines.At(
            kReservedOverage, model, adjustment(origin),
            Cat(rate >= 0 ? "beyond committed GPUs"
                          : "beyond committed GPUs, no price in effect",
                suffix),
            rate, "GPU-hour", kSecondsPerHour, 6, kSecondsPerHour, false,
            rate >= 0 ? card_name(tenant_card) : "");
        l.quantity += added;
        RETURN_IF_ERROR(l.amount.AddProduct(added, std::max<int64_t>(rate, 0)));
      }
      return absl::OkStatus();
    };
    RETURN_IF_ERROR(add_lines(settled, before, ""));
    RETURN_IF_ERROR(add_lines(with_running, settled, ", in progress, to now"));
    // Per attempt: which GPU-seconds the commitment covered (earliest start
    // first), over every piece of the origin month booked so far.
    std::vector<GpuInterval> usage;
    for (const ReservedPiece& rp : group) {
      usage.push_back({rp.piece->interval, rp.attempt->gpus});
    }
    std::vector<AttributedUsage> attributed = AttributeReserved(usage, commits);
    for (size_t i = 0; i < group.size(); ++i) {
      if (group[i].piece->booking != period) continue;
      v1::AttemptBilling& b = billing_of(*group[i].attempt);
      b.set_covered_gpu_seconds(b.covered_gpu_seconds() +
                                attributed[i].covered_gpu_seconds);
      b.set_overage_gpu_seconds(b.overage_gpu_seconds() +
                                attributed[i].overage_gpu_seconds);
    }
  }
  for (auto& [a, b] : billing) {
    if (a->service_class == v1::SERVICE_CLASS_RESERVED) {
      b.set_how(Cat(b.covered_gpu_seconds(),
                    " GPU-s covered by the reserved commitment, ",
                    b.overage_gpu_seconds(),
                    " GPU-s reserved-overage beyond it"));
    }
  }

  // Inference: from the aggregates booked into this period.
  auto agg_it = aggs_by_statement_.find(StatementIndexKey(tenant, period_s));
  if (agg_it != aggs_by_statement_.end()) {
    for (const std::string& key : agg_it->second) {
      const InferenceAggregate& agg = aggs_.at(key);
      const auto& [rates_key, index] =
          inference_by_version_.at(agg.price_version());
      const InferenceRate& rate = inference_rates_.at(rates_key)[index];
      const std::string_view card = rate.tenant.empty() ? "list" : "tenant";
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
          LineAcc& l =
              lines.At(kInference, agg.model(), adj, detail,
                       tiers[i].rate_micros, "1M tokens", kTokensPerPriceUnit,
                       6, kTokensPerPriceUnit, false, card);
          l.quantity += tokens[i];
          RETURN_IF_ERROR(l.amount.AddProduct(tokens[i], tiers[i].rate_micros));
        }
        return absl::OkStatus();
      };
      RETURN_IF_ERROR(tier_lines("input", rate.input, agg.input_tier_tokens()));
      RETURN_IF_ERROR(
          tier_lines("output", rate.output, agg.output_tier_tokens()));
      if (rate.per_request_micros.has_value() && agg.requests() > 0) {
        LineAcc& l =
            lines.At(kInference, agg.model(), adj, "requests",
                     *rate.per_request_micros, "request", 1, 0, 1, false, card);
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
  for (const Attempt* a : all) {
    auto it = billing.find(a);
    if (it != billing.end()) *st.add_attempts() = std::move(it->second);
  }
  RETURN_IF_ERROR(ApplyCreditsLocked(tenant, period, &st));
  *st.mutable_generated_time() = ToProtoTime(clock_->Now());
  return st;
}

void Ledger::SetRunningAttempts(RunningFn fn) { running_fn_ = std::move(fn); }

std::vector<Ledger::Attempt> Ledger::ToAttemptsLocked(
    const std::vector<JobUsage>& running) const {
  std::vector<Attempt> out;
  for (const JobUsage& u : running) {
    if (!ValidateJobUsage(u).ok()) continue;
    if (attempts_.contains(JobKey(u.job_id, u.attempt))) continue;  // ended
    Attempt a = AttemptFromRecord(BuildJobRecordLocked(u));
    a.in_progress = true;
    out.push_back(std::move(a));
  }
  return out;
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
  // Before the lock: the daemon's callback takes its own lock.
  std::vector<JobUsage> running;
  if (running_fn_) running = running_fn_();
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
                   ComputeStatementLocked(std::string(tenant), p,
                                          finalized_.contains(p)
                                              ? std::vector<Attempt>()
                                              : ToAttemptsLocked(running)));
  st.set_finalized(finalized_.contains(p));
  return st;
}

absl::StatusOr<v1::GetJobBillingResponse> Ledger::JobBilling(
    std::string_view job_id, std::string_view caller_tenant) const {
  if (job_id.empty()) {
    return absl::InvalidArgumentError("job_id: must not be empty");
  }
  std::vector<JobUsage> running;
  if (running_fn_) running = running_fn_();
  absl::ReaderMutexLock lock(&mu_);
  std::vector<Attempt> live = ToAttemptsLocked(running);
  // The periods this job's attempts are booked into, per tenant.
  std::set<std::pair<std::string, Period>> statements;
  for (const auto& [key, a] : attempts_) {
    if (a.job_id != job_id) continue;
    for (const Piece& p : a.pieces) statements.insert({a.tenant, p.booking});
  }
  for (const Attempt& a : live) {
    if (a.job_id != job_id) continue;
    for (const Piece& p : a.pieces) statements.insert({a.tenant, p.booking});
  }
  v1::GetJobBillingResponse resp;
  for (const auto& [tenant, period] : statements) {
    if (!caller_tenant.empty() && tenant != caller_tenant) continue;
    v1::Statement st;
    std::optional<std::string> stored;
    if (finalized_.contains(period)) {
      ASSIGN_OR_RETURN(
          stored, store_->Get(storage::kStatements,
                              StoredStatementKey(period.ToString(), tenant)));
    }
    if (stored.has_value()) {
      if (!st.ParseFromString(*stored)) {
        return DataLoss(storage::kStatements,
                        StoredStatementKey(period.ToString(), tenant));
      }
    } else {
      ASSIGN_OR_RETURN(
          st, ComputeStatementLocked(
                  tenant, period,
                  finalized_.contains(period) ? std::vector<Attempt>() : live));
    }
    for (const v1::AttemptBilling& b : st.attempts()) {
      if (b.job_id() == job_id) *resp.add_attempts() = b;
    }
  }
  if (resp.attempts().empty() && !caller_tenant.empty()) {
    return absl::NotFoundError(
        Cat("job_id: no billed attempt of job \"", job_id, "\""));
  }
  return resp;
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
  for (const auto& [number, cn] : credit_notes_) {
    if (cn.booked_period() == period_s) out.insert(cn.tenant());
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
  // In order: every earlier period with activity must be finalized first.
  std::optional<Period> earliest;
  auto consider = [&](Period q) {
    if (!earliest.has_value() || q < *earliest) earliest = q;
  };
  for (const auto& [key, agg] : aggs_) {
    absl::StatusOr<Period> q = Period::Parse(agg.booking_period());
    if (q.ok()) consider(*q);
  }
  for (const auto& [key, a] : attempts_) {
    for (const Piece& piece : a.pieces) consider(piece.booking);
  }
  for (const auto& [id, c] : contracts_) {
    consider(Period::OfUnixSeconds(c.terms.term.start));
  }
  for (Period q = earliest.value_or(p); q < p; q = q.Next()) {
    if (finalized_.contains(q) || TenantsWithActivityLocked(q).empty()) {
      continue;
    }
    return absl::FailedPreconditionError(
        Cat("period: ", q.ToString(),
            " has activity and is not finalized; finalize periods in order (",
            q.ToString(), " before ", period_s, ")"));
  }
  storage::WriteBatch batch;
  int n = 0;
  for (const std::string& tenant : TenantsWithActivityLocked(p)) {
    ASSIGN_OR_RETURN(v1::Statement st, ComputeStatementLocked(tenant, p));
    for (const v1::StatementLine& l : st.lines()) {
      if (!l.informational() &&
          l.detail().find("no price in effect") != std::string::npos) {
        return absl::FailedPreconditionError(
            Cat("period: ", period_s, " cannot be finalized: tenant \"", tenant,
                "\" has an unpriced line ", l.pricing_model(), " / ", l.item(),
                " / ", l.detail(),
                " (set a price for it: a first price may be backdated into an "
                "open period)"));
      }
    }
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
  for (const v1::Statement& st : resp.statements()) {
    statement_numbers_[st.number()] = {st.tenant(), p, st.total_cents(),
                                       st.credits_applied_cents()};
  }
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
    absl::StatusOr<int64_t> r = CheckedAdd(*sum, v);
    if (!r.ok()) {
      return absl::OutOfRangeError("backlog total overflows int64 cents");
    }
    *sum = *r;
    return absl::OkStatus();
  };
  int64_t t_value = 0, t_rec = 0, t_backlog = 0, t_next = 0, t_after = 0;
  std::map<std::string, v1::BacklogRow> by_model;
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
    v1::BacklogRow& m = by_model[c.proto.gpu_model()];
    m.set_gpu_model(c.proto.gpu_model());
    m.set_gpus(m.gpus() + c.proto.gpus());
    int64_t mv = m.value_cents(), mr = m.recognized_cents(),
            mb = m.backlog_cents(), mn = m.next_12_months_cents(),
            ma = m.after_12_months_cents();
    RETURN_IF_ERROR(add(&mv, f.value_cents));
    RETURN_IF_ERROR(add(&mr, f.recognized_cents));
    RETURN_IF_ERROR(add(&mb, f.backlog_cents));
    RETURN_IF_ERROR(add(&mn, f.next_12_months_cents));
    RETURN_IF_ERROR(add(&ma, f.after_12_months_cents));
    m.set_value_cents(mv);
    m.set_recognized_cents(mr);
    m.set_backlog_cents(mb);
    m.set_next_12_months_cents(mn);
    m.set_after_12_months_cents(ma);
    RETURN_IF_ERROR(add(&t_value, f.value_cents));
    RETURN_IF_ERROR(add(&t_rec, f.recognized_cents));
    RETURN_IF_ERROR(add(&t_backlog, f.backlog_cents));
    RETURN_IF_ERROR(add(&t_next, f.next_12_months_cents));
    RETURN_IF_ERROR(add(&t_after, f.after_12_months_cents));
  }
  // GPUs of different models are not added: the total is in dollars only.
  for (auto& [model, row] : by_model) *resp.add_model_totals() = row;
  total.set_value_cents(t_value);
  total.set_recognized_cents(t_rec);
  total.set_backlog_cents(t_backlog);
  total.set_next_12_months_cents(t_next);
  total.set_after_12_months_cents(t_after);
  *resp.mutable_total() = std::move(total);
  return resp;
}

}  // namespace joule::billing
