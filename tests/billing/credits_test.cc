// Credit notes, tenant rate cards, prepaid credits and the finance export.
// Table-driven where there are several cases; every expected amount has its
// arithmetic in a comment.
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/billing/ledger_test_util.h"

namespace joule::billing {
namespace {

using ::testing::HasSubstr;

class CreditsTest : public LedgerTest {
 protected:
  void SetUp() override {
    LedgerTest::SetUp();
    SetPrice(GpuPrice("H100", v1::SERVICE_CLASS_ON_DEMAND, "2.00",
                      T("2025-01-01T00:00:00Z")));
  }
  // `gpus` on-demand H100 GPUs for one hour starting at `start`.
  void RunHour(const std::string& id, uint32_t gpus, const char* start,
               const std::string& tenant = "acme") {
    JobUsage u = Job(id, v1::SERVICE_CLASS_ON_DEMAND, gpus, T(start),
                     T(start) + absl::Hours(1));
    u.tenant = tenant;
    ASSERT_TRUE(ledger_.RecordJobUsage(u).ok());
  }
  std::string FinalizeJanuary() {
    clock_.Set(T("2026-02-01T00:00:00Z"));
    absl::StatusOr<v1::FinalizePeriodResponse> f =
        ledger_.FinalizePeriod("2026-01");
    EXPECT_TRUE(f.ok()) << f.status();
    return f.ok() && f->statements_size() > 0 ? f->statements(0).number() : "";
  }
  absl::StatusOr<v1::CreditNote> Credit(const std::string& number,
                                        const std::string& amount,
                                        const std::string& reason = "outage") {
    v1::IssueCreditNoteRequest req;
    req.set_tenant("acme");
    req.set_statement_number(number);
    req.set_amount(amount);
    req.set_reason(reason);
    return ledger_.IssueCreditNote(req);
  }
  absl::StatusOr<v1::CreditGrant> Grant(const std::string& amount,
                                        const std::string& expires = "") {
    v1::GrantCreditsRequest req;
    req.set_tenant("acme");
    req.set_amount(amount);
    req.set_expires_date(expires);
    return ledger_.GrantCredits(req);
  }
};

// ------------------------------------------------------- credit notes ----

TEST_F(CreditsTest, CreditNoteIsANegativeLineOnTheNextStatement) {
  // January: 2 GPUs x 1 h x $2.00 = $4.00.
  RunHour("j1", 2, "2026-01-10T00:00:00Z");
  const std::string js = FinalizeJanuary();
  ASSERT_EQ(js, "JS-2026-01-000001");
  absl::StatusOr<v1::CreditNote> cn = Credit(js, "1.50", "SLA breach");
  ASSERT_TRUE(cn.ok()) << cn.status();
  EXPECT_EQ(cn->number(), "CN-000001");
  EXPECT_EQ(cn->booked_period(), "2026-02");
  // February: 1 GPU x 1 h x $2.00 = $2.00 - $1.50 credit = $0.50.
  RunHour("f1", 1, "2026-02-10T00:00:00Z");
  v1::Statement feb = Statement("2026-02");
  const v1::StatementLine* l = FindLine(feb, "credit", "CN-000001", "2026-01");
  ASSERT_NE(l, nullptr);
  EXPECT_EQ(l->item(), "JS-2026-01-000001");
  EXPECT_EQ(l->adjustment_for(), "2026-01");
  EXPECT_EQ(l->amount_cents(), -150);
  EXPECT_EQ(feb.total_cents(), 50);
  // The finalized January never changes.
  EXPECT_EQ(Statement("2026-01").total_cents(), 400);
}

struct CreditCase {
  std::string name;
  std::vector<std::string> amounts;  // issued in order
  std::string refused;               // error part of the last, "" = ok
};
class CreditBoundTest : public CreditsTest,
                        public ::testing::WithParamInterface<CreditCase> {};

TEST_P(CreditBoundTest, BoundedByWhatWasBilled) {
  RunHour("j1", 2, "2026-01-10T00:00:00Z");  // billed $4.00
  const std::string js = FinalizeJanuary();
  const CreditCase& c = GetParam();
  for (size_t i = 0; i < c.amounts.size(); ++i) {
    absl::StatusOr<v1::CreditNote> r = Credit(js, c.amounts[i]);
    if (i + 1 < c.amounts.size() || c.refused.empty()) {
      ASSERT_TRUE(r.ok()) << c.amounts[i] << ": " << r.status();
    } else {
      ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(r.status().message(), HasSubstr(c.refused));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, CreditBoundTest,
    ::testing::Values(
        // $4.00 in one note: all that was billed.
        CreditCase{"All", {"4.00"}, ""},
        // $2.50 + $1.50 = $4.00 then $0.01 more: nothing left.
        CreditCase{"Exhausted", {"2.50", "1.50", "0.01"}, "left 0.00"},
        // $4.01 > $4.00.
        CreditCase{"TooMuch", {"4.01"}, "billed 4.00"},
        CreditCase{"SubCent", {"0.005"}, "more than 2 decimal places"},
        CreditCase{"Zero", {"0"}, "must be > 0"}),
    [](const auto& info) { return info.param.name; });

TEST_F(CreditsTest, CreditNoteNeedsAFinalizedStatementOfTheTenant) {
  RunHour("j1", 2, "2026-01-10T00:00:00Z");
  EXPECT_EQ(Credit("JS-2026-01-000001", "1.00").status().code(),
            absl::StatusCode::kNotFound);  // not finalized yet
  const std::string js = FinalizeJanuary();
  v1::IssueCreditNoteRequest req;
  req.set_tenant("globex");
  req.set_statement_number(js);
  req.set_amount("1.00");
  req.set_reason("x");
  EXPECT_EQ(ledger_.IssueCreditNote(req).status().code(),
            absl::StatusCode::kNotFound);  // another tenant's statement
  EXPECT_EQ(Credit(js, "1.00", "").status().code(),
            absl::StatusCode::kInvalidArgument);  // reason required
}

// --------------------------------------------------------- rate cards ----

struct CardCase {
  std::string name;
  std::string tenant;
  int64_t cents;
  std::string card;
  std::string unit_price;
};
class RateCardTest : public CreditsTest,
                     public ::testing::WithParamInterface<CardCase> {};

TEST_P(RateCardTest, TenantCardWinsOverListPrice) {
  // acme's card: H100 on-demand $1.50 (list $2.00); inference input $0.40
  // per 1M (list $0.50).
  v1::Price gpu = GpuPrice("H100", v1::SERVICE_CLASS_ON_DEMAND, "1.50",
                           T("2025-06-01T00:00:00Z"));
  gpu.set_tenant("acme");
  SetPrice(gpu);
  SetPrice(LlamaPrice(T("2025-01-01T00:00:00Z")));
  v1::Price inf = LlamaPrice(T("2025-06-01T00:00:00Z"));
  inf.set_tenant("acme");
  inf.mutable_inference()->mutable_input(0)->set_price("0.40");
  SetPrice(inf);
  const CardCase& c = GetParam();
  clock_.Set(T("2026-01-20T00:00:00Z"));
  RunHour("j-" + c.tenant, 2, "2026-01-10T00:00:00Z", c.tenant);
  ASSERT_TRUE(ledger_
                  .RecordUsage({Ev("e", T("2026-01-10T00:00:00Z"), 0,
                                   10'000'000, 0, c.tenant)},
                               "operator")
                  .ok());
  v1::Statement st = Statement("2026-01", c.tenant);
  const v1::StatementLine* g = FindLine(st, "on-demand", "on-demand");
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->rate_card(), c.card);
  const v1::StatementLine* in = FindLine(st, "inference", "input");
  ASSERT_NE(in, nullptr);
  EXPECT_EQ(in->rate_card(), c.card);
  EXPECT_EQ(in->unit_price(), c.unit_price);
  EXPECT_EQ(st.total_cents(), c.cents);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, RateCardTest,
    ::testing::Values(
        // 2 GPU-h x $1.50 = $3.00 + 10 M x $0.40 = $4.00 -> $7.00.
        CardCase{"Card", "acme", 700, "tenant", "0.40"},
        // 2 GPU-h x $2.00 = $4.00 + 10 M x $0.50 = $5.00 -> $9.00.
        CardCase{"List", "globex", 900, "list", "0.50"}),
    [](const auto& info) { return info.param.name; });

TEST_F(CreditsTest, RateCardIsVersionedAndNotBackdatedOverAcceptedEvents) {
  SetPrice(LlamaPrice(T("2025-01-01T00:00:00Z")));
  clock_.Set(T("2026-01-20T00:00:00Z"));
  ASSERT_TRUE(
      ledger_
          .RecordUsage({Ev("e", T("2026-01-10T00:00:00Z"), 0, 1'000'000, 0)},
                       "operator")
          .ok());
  v1::Price card = LlamaPrice(T("2026-01-01T00:00:00Z"));
  card.set_tenant("acme");
  absl::StatusOr<v1::Price> r = ledger_.SetPrice(card);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("rate card"));
  // From now on it is fine, and it is a new version.
  card.clear_effective_from();
  r = ledger_.SetPrice(card);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->tenant(), "acme");
  EXPECT_EQ(r->version(), 3u);  // H100 list, llama list, acme card
}

// ---------------------------------------------------- prepaid credits ----

TEST_F(CreditsTest, PrepaidCreditsAreDrawnBeforeTheAmountDue) {
  ASSERT_TRUE(Grant("5.00").ok());
  // January $4.00: $4.00 drawn, $0.00 due, $1.00 left.
  RunHour("j1", 2, "2026-01-10T00:00:00Z");
  v1::Statement jan = Statement("2026-01");
  EXPECT_EQ(jan.credits_applied_cents(), 400);
  EXPECT_EQ(jan.amount_due_cents(), 0);
  EXPECT_EQ(jan.credit_balance_cents(), 100);
  FinalizeJanuary();
  // February $6.00: the last $1.00 drawn, $5.00 due, $0.00 left.
  RunHour("f1", 3, "2026-02-10T00:00:00Z");
  v1::Statement feb = Statement("2026-02");
  EXPECT_EQ(feb.credits_applied_cents(), 100);
  EXPECT_EQ(feb.amount_due_cents(), 500);
  EXPECT_EQ(feb.credit_balance_cents(), 0);
  absl::StatusOr<v1::ListCreditsResponse> list = ledger_.ListCredits("acme");
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->grants_size(), 1);
  // The listed balance counts only finalized draws: $5.00 - $4.00 = $1.00
  // (February is still open).
  EXPECT_EQ(list->balance_cents(), 100);
}

TEST_F(CreditsTest, ExpiredCreditsAreNotDrawn) {
  // $10.00 expiring 2026-02-01 and $3.00 that never expires.
  ASSERT_TRUE(Grant("10.00", "2026-02-01").ok());
  ASSERT_TRUE(Grant("3.00").ok());
  // January $4.00: drawn from the expiring grant first.
  RunHour("j1", 2, "2026-01-10T00:00:00Z");
  EXPECT_EQ(Statement("2026-01").credits_applied_cents(), 400);
  FinalizeJanuary();
  // February $4.00: the expiring grant is gone; $3.00 drawn, $1.00 due.
  RunHour("f1", 2, "2026-02-10T00:00:00Z");
  v1::Statement feb = Statement("2026-02");
  EXPECT_EQ(feb.credits_applied_cents(), 300);
  EXPECT_EQ(feb.amount_due_cents(), 100);
  EXPECT_EQ(Grant("1.00", "2026-01-15").status().code(),
            absl::StatusCode::kInvalidArgument);  // already past
}

// ------------------------------------------------------ finance export ----

TEST_F(CreditsTest, ExportHasEveryLineAndRatableRevenue) {
  v1::Contract c;
  c.set_tenant("globex");
  c.set_gpu_model("H100");
  c.set_gpus(2);
  c.set_start_date("2026-01-16");
  c.set_end_date("2026-03-16");
  c.set_rate("1.00");
  ASSERT_TRUE(ledger_.CreateContract(c).ok());
  RunHour("j1", 2, "2026-01-10T00:00:00Z");
  FinalizeJanuary();
  absl::StatusOr<v1::ExportPeriodResponse> e = ledger_.ExportPeriod("2026-01");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_TRUE(e->finalized());
  // acme: on-demand $4.00 (JS-...-000001); globex: take-or-pay 2 GPUs x
  // 16 days x 24 h = 768 GPU-h x $1.00 = $768.00 (JS-...-000002).
  ASSERT_EQ(e->lines_size(), 2);
  EXPECT_EQ(e->lines(0).tenant(), "acme");
  EXPECT_EQ(e->lines(0).statement_number(), "JS-2026-01-000001");
  EXPECT_EQ(e->lines(0).line().amount_cents(), 400);
  EXPECT_EQ(e->lines(1).statement_number(), "JS-2026-01-000002");
  EXPECT_EQ(e->lines(1).line().amount_cents(), 76'800);
  // ASC 606 ratable: January recognises 768 GPU-h x $1.00 = $768.00;
  // February 2 x 28 x 24 = 1344 GPU-h = $1,344.00.
  ASSERT_EQ(e->revenue_size(), 1);
  EXPECT_EQ(e->revenue(0).recognized_cents(), 76'800);
  absl::StatusOr<v1::ExportPeriodResponse> feb =
      ledger_.ExportPeriod("2026-02");
  ASSERT_TRUE(feb.ok());
  EXPECT_FALSE(feb->finalized());
  EXPECT_EQ(feb->revenue(0).recognized_cents(), 134'400);
}

TEST(CreditsReloadTest, CreditsAndNotesSurviveARestart) {
  storage::MemoryStore store;
  FakeClock clock(T("2026-01-01T00:00:00Z"));
  FakeTenants tenants;
  v1::Statement before;
  {
    Ledger ledger(&store, &clock, &tenants);
    ASSERT_TRUE(ledger.Load().ok());
    ASSERT_TRUE(ledger
                    .SetPrice(GpuPrice("H100", v1::SERVICE_CLASS_ON_DEMAND,
                                       "2.00", T("2025-01-01T00:00:00Z")))
                    .ok());
    v1::GrantCreditsRequest g;
    g.set_tenant("acme");
    g.set_amount("5.00");
    ASSERT_TRUE(ledger.GrantCredits(g).ok());
    ASSERT_TRUE(ledger
                    .RecordJobUsage(Job("j", v1::SERVICE_CLASS_ON_DEMAND, 2,
                                        T("2026-01-10T00:00:00Z"),
                                        T("2026-01-10T01:00:00Z")))
                    .ok());
    clock.Set(T("2026-02-01T00:00:00Z"));
    ASSERT_TRUE(ledger.FinalizePeriod("2026-01").ok());
    v1::IssueCreditNoteRequest cn;
    cn.set_tenant("acme");
    cn.set_statement_number("JS-2026-01-000001");
    cn.set_amount("1.00");
    cn.set_reason("outage");
    ASSERT_TRUE(ledger.IssueCreditNote(cn).ok());
    before = *ledger.GetStatement("acme", "2026-02");
  }
  Ledger ledger(&store, &clock, &tenants);
  ASSERT_TRUE(ledger.Load().ok());
  v1::Statement after = *ledger.GetStatement("acme", "2026-02");
  // February: -$1.00 credit; $1.00 of the $5.00 grant is left after
  // January drew $4.00; nothing to draw on a negative total.
  EXPECT_EQ(after.total_cents(), -100);
  EXPECT_EQ(after.credit_balance_cents(), 100);
  EXPECT_EQ(after.total_cents(), before.total_cents());
  EXPECT_EQ(after.credit_balance_cents(), before.credit_balance_cents());
}

}  // namespace
}  // namespace joule::billing
