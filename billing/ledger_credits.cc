// Ledger: credit notes, prepaid credits, the finance export and the
// priced-at-submit check (split from ledger.cc; same class, same mutex).
// See docs/billing.md ("Credit notes", "Prepaid credits", "Finance export").
#include <algorithm>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "billing/ledger.h"
#include "billing/strings.h"
#include "common/proto_time.h"
#include "common/status_macros.h"

namespace joule::billing {
namespace {

constexpr std::string_view kCreditNotePrefix = "billing/credit_note/";
constexpr std::string_view kGrantPrefix = "billing/credit_grant/";

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// A grant can be drawn by the statement of `q` when it was granted before
// q was finalized and has not expired at q's start.
bool Usable(const v1::CreditGrant& g, Period q) {
  if (!g.effective_period().empty() && q.ToString() < g.effective_period()) {
    return false;
  }
  if (g.expires_date().empty()) return true;
  absl::StatusOr<absl::Time> exp = ParseDate(g.expires_date(), "expires_date");
  return exp.ok() && q.Start() < *exp;
}

// Draws `amount` cents from the usable grants, earliest expiry first (never
// expiring last, then by id). Returns what was drawn (<= amount).
int64_t Draw(const std::vector<const v1::CreditGrant*>& grants,
             std::map<std::string, int64_t>* remaining, Period q,
             int64_t amount) {
  int64_t drawn = 0;
  for (const v1::CreditGrant* g : grants) {
    if (amount <= drawn) break;
    if (!Usable(*g, q)) continue;
    int64_t& left = (*remaining)[g->id()];
    const int64_t take = std::min(left, amount - drawn);
    left -= take;
    drawn += take;
  }
  return drawn;
}

}  // namespace

absl::Status Ledger::ApplyCreditRecordLocked(std::string_view key,
                                             std::string_view value) {
  if (StartsWith(key, kCreditNotePrefix)) {
    v1::CreditNote cn;
    if (!cn.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
      return absl::DataLossError(Cat("billing: bad credit note ", key));
    }
    credit_notes_[cn.number()] = std::move(cn);
  } else if (StartsWith(key, kGrantPrefix)) {
    v1::CreditGrant g;
    if (!g.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
      return absl::DataLossError(Cat("billing: bad credit grant ", key));
    }
    grants_[g.id()] = std::move(g);
  }
  return absl::OkStatus();
}

absl::Status Ledger::ApplyCreditsLocked(const std::string& tenant,
                                        Period period,
                                        v1::Statement* st) const {
  const std::string period_s = period.ToString();
  // Credit notes booked here: negative lines naming the original statement.
  int64_t total = st->total_cents();
  for (const auto& [number, cn] : credit_notes_) {
    if (cn.tenant() != tenant || cn.booked_period() != period_s) continue;
    v1::StatementLine* l = st->add_lines();
    l->set_pricing_model("credit");
    l->set_item(cn.statement_number());
    l->set_detail(Cat(cn.number(), ": ", cn.reason()));
    l->set_adjustment_for(cn.statement_period());
    l->set_quantity("1");
    l->set_unit("credit note");
    l->set_amount_cents(-cn.amount_cents());
    l->set_rate_card("credit note");
    int64_t& sub = (*st->mutable_subtotal_cents())["credit"];
    ASSIGN_OR_RETURN(sub, CheckedAdd(sub, -cn.amount_cents()));
    ASSIGN_OR_RETURN(total, CheckedAdd(total, -cn.amount_cents()));
  }
  st->set_total_cents(total);

  // Prepaid credits: replay the draws of the finalized statements before
  // this period, then draw this one.
  std::vector<const v1::CreditGrant*> grants;
  std::map<std::string, int64_t> remaining;
  for (const auto& [id, g] : grants_) {
    if (g.tenant() != tenant) continue;
    grants.push_back(&g);
    remaining[id] = g.amount_cents();
  }
  std::stable_sort(grants.begin(), grants.end(),
                   [](const v1::CreditGrant* a, const v1::CreditGrant* b) {
                     const bool an = a->expires_date().empty();
                     const bool bn = b->expires_date().empty();
                     if (an != bn) return bn;  // expiring ones first
                     return a->expires_date() < b->expires_date();
                   });
  std::vector<const StatementRef*> earlier;
  for (const auto& [number, ref] : statement_numbers_) {
    if (ref.tenant == tenant && ref.period < period) earlier.push_back(&ref);
  }
  std::sort(earlier.begin(), earlier.end(),
            [](const StatementRef* a, const StatementRef* b) {
              return a->period < b->period;
            });
  for (const StatementRef* ref : earlier) {
    Draw(grants, &remaining, ref->period, ref->credits_applied_cents);
  }
  const int64_t drawn =
      Draw(grants, &remaining, period, std::max<int64_t>(total, 0));
  st->set_credits_applied_cents(drawn);
  ASSIGN_OR_RETURN(int64_t due, CheckedAdd(total, -drawn));
  st->set_amount_due_cents(due);
  int64_t balance = 0;
  for (const v1::CreditGrant* g : grants) {
    if (!Usable(*g, period) && !g->expires_date().empty()) continue;
    ASSIGN_OR_RETURN(balance, CheckedAdd(balance, remaining[g->id()]));
  }
  st->set_credit_balance_cents(balance);
  return absl::OkStatus();
}

absl::StatusOr<v1::CreditNote> Ledger::IssueCreditNote(
    const v1::IssueCreditNoteRequest& req) {
  absl::MutexLock lock(&mu_);
  if (req.tenant().empty() || !tenants_->Exists(req.tenant())) {
    return absl::InvalidArgumentError(
        Cat("tenant: unknown tenant \"", req.tenant(), "\""));
  }
  auto ref = statement_numbers_.find(req.statement_number());
  if (ref == statement_numbers_.end() || ref->second.tenant != req.tenant()) {
    return absl::NotFoundError(
        Cat("statement_number: no finalized statement \"",
            req.statement_number(), "\" of tenant \"", req.tenant(), "\""));
  }
  ASSIGN_OR_RETURN(int64_t cents, ParseAmountCents(req.amount(), "amount"));
  if (req.reason().empty()) {
    return absl::InvalidArgumentError("reason: must not be empty");
  }
  // Bounded by what was billed: all notes of one statement <= its total.
  int64_t credited = 0;
  for (const auto& [number, cn] : credit_notes_) {
    if (cn.statement_number() == req.statement_number()) {
      ASSIGN_OR_RETURN(credited, CheckedAdd(credited, cn.amount_cents()));
    }
  }
  ASSIGN_OR_RETURN(int64_t left,
                   CheckedAdd(ref->second.total_cents, -credited));
  left = std::max<int64_t>(left, 0);
  if (cents > left) {
    return absl::InvalidArgumentError(Cat("amount: ", FormatCents(cents),
                                          " exceeds what can still be "
                                          "credited on ",
                                          req.statement_number(), " (billed ",
                                          FormatCents(ref->second.total_cents),
                                          ", credited ", FormatCents(credited),
                                          ", left ", FormatCents(left), ")"));
  }
  v1::CreditNote cn;
  cn.set_number(absl::StrFormat("CN-%06d", credit_notes_.size() + 1));
  cn.set_tenant(req.tenant());
  cn.set_statement_number(req.statement_number());
  cn.set_statement_period(ref->second.period.ToString());
  cn.set_amount_cents(cents);
  cn.set_reason(req.reason());
  cn.set_booked_period(
      BookingPeriodLocked(ref->second.period.Next()).ToString());
  *cn.mutable_created_time() = ToProtoTime(clock_->Now());
  RETURN_IF_ERROR(store_->Put(storage::kMeta,
                              Cat(kCreditNotePrefix, cn.number()),
                              cn.SerializeAsString(), {.sync = true}));
  credit_notes_[cn.number()] = cn;
  return cn;
}

absl::StatusOr<v1::CreditGrant> Ledger::GrantCredits(
    const v1::GrantCreditsRequest& req) {
  absl::MutexLock lock(&mu_);
  if (req.tenant().empty() || !tenants_->Exists(req.tenant())) {
    return absl::InvalidArgumentError(
        Cat("tenant: unknown tenant \"", req.tenant(), "\""));
  }
  ASSIGN_OR_RETURN(int64_t cents, ParseAmountCents(req.amount(), "amount"));
  const absl::Time now = clock_->Now();
  if (!req.expires_date().empty()) {
    ASSIGN_OR_RETURN(absl::Time exp,
                     ParseDate(req.expires_date(), "expires_date"));
    if (exp <= now) {
      return absl::InvalidArgumentError(Cat(
          "expires_date: \"", req.expires_date(), "\" is not in the future"));
    }
  }
  v1::CreditGrant g;
  g.set_id(absl::StrFormat("G-%06d", grants_.size() + 1));
  g.set_tenant(req.tenant());
  g.set_amount_cents(cents);
  g.set_expires_date(req.expires_date());
  *g.mutable_created_time() = ToProtoTime(now);
  // Drawn by statements not yet finalized when it was granted.
  if (!finalized_.empty()) {
    g.set_effective_period(finalized_.rbegin()->Next().ToString());
  }
  RETURN_IF_ERROR(store_->Put(storage::kMeta, Cat(kGrantPrefix, g.id()),
                              g.SerializeAsString(), {.sync = true}));
  grants_[g.id()] = g;
  return g;
}

absl::StatusOr<v1::ListCreditsResponse> Ledger::ListCredits(
    std::string_view tenant) const {
  absl::ReaderMutexLock lock(&mu_);
  v1::ListCreditsResponse resp;
  for (const auto& [id, g] : grants_) {
    if (tenant.empty() || g.tenant() == tenant) *resp.add_grants() = g;
  }
  for (const auto& [n, cn] : credit_notes_) {
    if (tenant.empty() || cn.tenant() == tenant) *resp.add_credit_notes() = cn;
  }
  if (!tenant.empty()) {
    // The balance the next open statement starts from (no draw of its own).
    const Period next = finalized_.empty() ? Period::Of(clock_->Now())
                                           : finalized_.rbegin()->Next();
    v1::Statement probe;
    probe.set_tenant(std::string(tenant));
    probe.set_total_cents(0);
    RETURN_IF_ERROR(ApplyCreditsLocked(std::string(tenant), next, &probe));
    resp.set_balance_cents(probe.credit_balance_cents());
  }
  return resp;
}

absl::StatusOr<v1::ExportPeriodResponse> Ledger::ExportPeriod(
    std::string_view period) const {
  ASSIGN_OR_RETURN(Period p, Period::Parse(period, "period"));
  const std::string period_s = p.ToString();
  absl::ReaderMutexLock lock(&mu_);
  v1::ExportPeriodResponse resp;
  resp.set_period(period_s);
  resp.set_finalized(finalized_.contains(p));
  std::vector<v1::Statement> statements;
  if (finalized_.contains(p)) {
    absl::Status parse = absl::OkStatus();
    RETURN_IF_ERROR(store_->Scan(
        storage::kStatements, Cat(period_s, std::string_view("\0", 1)),
        [&](std::string_view key, std::string_view value) {
          v1::Statement st;
          if (!st.ParseFromArray(value.data(),
                                 static_cast<int>(value.size()))) {
            parse = absl::DataLossError(Cat("billing: bad statement ", key));
            return false;
          }
          statements.push_back(std::move(st));
          return true;
        }));
    RETURN_IF_ERROR(parse);
  } else {
    for (const std::string& tenant : TenantsWithActivityLocked(p)) {
      ASSIGN_OR_RETURN(v1::Statement st, ComputeStatementLocked(tenant, p));
      statements.push_back(std::move(st));
    }
  }
  for (const v1::Statement& st : statements) {
    for (const v1::StatementLine& l : st.lines()) {
      if (l.informational()) continue;
      v1::ExportLine* e = resp.add_lines();
      e->set_tenant(st.tenant());
      e->set_statement_number(st.number());
      e->set_period(period_s);
      *e->mutable_line() = l;
    }
  }
  // ASC 606, ratable: a contract's revenue of the period is what its
  // cumulative recognition C(t) adds over the period.
  for (const auto& [id, c] : contracts_) {
    const int64_t start = p.StartUnixSeconds(), end = p.EndUnixSeconds();
    if (OverlapSeconds(c.terms.term, {start, end}) == 0) continue;
    ASSIGN_OR_RETURN(BacklogFigures at_end, ComputeBacklog(c.terms, end, end));
    ASSIGN_OR_RETURN(BacklogFigures at_start,
                     ComputeBacklog(c.terms, start, start));
    v1::RevenueRow* r = resp.add_revenue();
    r->set_contract_id(id);
    r->set_tenant(c.proto.tenant());
    r->set_gpu_model(c.proto.gpu_model());
    ASSIGN_OR_RETURN(
        int64_t recognized,
        CheckedAdd(at_end.recognized_cents, -at_start.recognized_cents));
    r->set_recognized_cents(recognized);
  }
  return resp;
}

absl::Status Ledger::CheckPriced(std::string_view tenant,
                                 std::string_view gpu_model,
                                 v1::ServiceClass cls, absl::Time t) const {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<std::string> models;
  if (gpu_model.empty()) {
    models = gpu_catalogue_;
  } else {
    models.push_back(std::string(gpu_model));
  }
  const int64_t s = absl::ToUnixSeconds(t);
  std::vector<std::string> unpriced;
  for (const std::string& m : models) {
    const bool priced = cls == v1::SERVICE_CLASS_RESERVED
                            ? OverageRateAtLocked(tenant, m, s).has_value()
                            : GpuRateAtLocked(tenant, m, cls, s).has_value();
    if (!priced) unpriced.push_back(m);
  }
  if (unpriced.empty()) return absl::OkStatus();
  const std::string_view cls_name =
      cls == v1::SERVICE_CLASS_RESERVED ? "reserved"
      : cls == v1::SERVICE_CLASS_SPOT   ? "spot"
                                        : "on-demand";
  return absl::FailedPreconditionError(Cat(
      "spec.service_class: no ", cls_name, " price in effect for GPU model ",
      absl::StrJoin(unpriced, ", "),
      cls == v1::SERVICE_CLASS_RESERVED
          ? " (reserved use beyond a contract is billed at its overage rate "
            "or the on-demand price; set one)"
          : " (set a price with `joulectl price set`)",
      "; or allow unpriced use in the config (billing { allow_unpriced: "
      "true })"));
}

}  // namespace joule::billing
