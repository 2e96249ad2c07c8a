// Issue 12 end to end with real processes: the Azure conversation trace
// crossing an output tier on a tenant rate card (previous month, finalized),
// a mid-month contract with reserved overage, a credit note and prepaid
// credits (this month); every total equals an independent calculation here.
#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "joule/v1/joule.pb.h"
#include "tests/e2e/fixtures.h"
#include "tests/e2e/harness.h"

namespace joule::e2e {
namespace {

// Half-even rounding of num/den (both > 0) to an integer.
int64_t RoundHalfEven(__int128 num, __int128 den) {
  __int128 q = num / den, r = num % den;
  if (2 * r > den || (2 * r == den && q % 2 == 1)) ++q;
  return static_cast<int64_t>(q);
}

struct Totals {
  int64_t events = 0, input = 0, output = 0;
};

// The conversation trace as an RFC 4180 usage CSV for `tenant`, re-timed to
// start one day into `month_start`: a UTF-8 BOM, CRLF line ends, columns in
// another order than usual and quoted keys.
Totals WriteTraceCsv(const std::string& out, const std::string& tenant,
                     absl::Time month_start) {
  std::ifstream in(SharedData() +
                   "/azure_llm2023_AzureLLMInferenceTrace_conv.csv");
  EXPECT_TRUE(in.good()) << "missing the conversation trace";
  std::string line;
  std::getline(in, line);  // TIMESTAMP,ContextTokens,GeneratedTokens
  std::ofstream o(out, std::ios::binary);
  o << "\xEF\xBB\xBF"
    << "idempotency_key,timestamp,tenant,model,"
    << "output_tokens,input_tokens,requests\r\n";
  Totals t;
  absl::Time first;
  int i = 0;
  while (std::getline(in, line)) {
    std::vector<std::string> cols = absl::StrSplit(line, ',');
    if (cols.size() != 3) continue;
    absl::Time at;
    std::string err;
    EXPECT_TRUE(
        absl::ParseTime("%Y-%m-%d %H:%M:%S", cols[0].substr(0, 19), &at, &err));
    if (i == 0) first = at;
    int64_t input = 0, output = 0;
    EXPECT_TRUE(absl::SimpleAtoi(cols[1], &input));
    EXPECT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(cols[2]), &output));
    const absl::Time when = month_start + absl::Hours(24) + (at - first);
    o << "\"conv," << i << "\","
      << absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", when, absl::UTCTimeZone())
      << "," << tenant << ",llama," << output << "," << input << ",1\r\n";
    ++i;
    t.events++;
    t.input += input;
    t.output += output;
  }
  return t;
}

std::string Config() {
  return ConfigBuilder()
      .Node("n1", "site")
      .Scheduler("stop_grace: \"1s\"")
      .Text();
}

class BillingEdgesE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    Cluster::Options o;
    o.config_text = Config();
    o.allow_unpriced = false;  // the production default
    c_ = std::make_unique<Cluster>(o);
    ASSERT_NO_FATAL_FAILURE(StartCluster(*c_, {"n1"}));
  }
  CtlResult Ctl(std::vector<std::string> args) { return c_->Ctl(args); }
  void Ok(std::vector<std::string> args) {
    CtlResult r = c_->Ctl(args);
    ASSERT_EQ(r.exit_code, 0) << absl::StrJoin(args, " ") << ": " << r.err;
  }
  v1::Job WaitDone(const std::string& id) {
    v1::Job j;
    EXPECT_TRUE(WaitFor([&] {
      c_->CtlJson({"job", "show", id}, &j);
      return j.state() == v1::JOB_STATE_SUCCEEDED;
    }));
    return j;
  }
  std::unique_ptr<Cluster> c_;
};

TEST_F(BillingEdgesE2E, CardTierOverageCreditNoteAndCreditsEqualIndependent) {
  const absl::TimeZone utc = absl::UTCTimeZone();
  const absl::Time now = absl::Now();
  const absl::CivilMonth this_month(absl::ToCivilSecond(now, utc));
  const absl::CivilMonth last_month = this_month - 1;
  const absl::Time last_start = absl::FromCivil(last_month, utc);
  const std::string last = absl::FormatCivilTime(last_month);
  const std::string current = absl::FormatCivilTime(this_month);

  // List prices from last month's start; acme's rate card for llama.
  const std::string from = absl::FormatTime("%Y-%m-%d", last_start, utc);
  Ok({"price", "set", "gpu-hour", "--gpu-model", "H100", "--class", "on-demand",
      "--price", "36", "--from", from});
  Ok({"price", "set", "inference", "--model", "llama", "--input", "0.60",
      "--output", "0:0.80,1000000:0.60", "--per-request", "0.0001", "--from",
      from});
  Ok({"price", "set", "inference", "--model", "llama", "--tenant", "acme",
      "--input", "0.50", "--output", "0:0.70,1000000:0.50", "--per-request",
      "0.0001", "--from", from});
  // Model names are checked against the config's catalogue.
  CtlResult typo = Ctl({"price", "set", "gpu-hour", "--gpu-model", "h100",
                        "--class", "spot", "--price", "1"});
  EXPECT_EQ(typo.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(typo.err, "knows H100")) << typo.err;
  // No spot price: a spot job is refused at submit.
  CtlResult spot = Ctl({"job", "submit", "--tenant", "acme", "--class", "spot",
                        "--gpus", "1", "--gpu-model", "H100", "--", "true"});
  EXPECT_EQ(spot.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(spot.err, "no spot price")) << spot.err;

  // Last month: the conversation trace (RFC 4180 CSV with BOM and CRLF).
  const std::string csv = c_->dir() + "/conv.csv";
  const Totals t = WriteTraceCsv(csv, "acme", last_start);
  ASSERT_EQ(t.events, 19366);
  ASSERT_GT(t.output, 1'000'000);  // crosses the output tier
  CtlResult imp = Ctl({"usage", "import", csv});
  ASSERT_EQ(imp.exit_code, 0) << imp.err;
  EXPECT_EQ(imp.out, "new 19366, duplicate 0, rejected 0\n");
  // Independent: acme's card, each line rounded once half-even to cents.
  // input: tokens x 500,000 µ$/1M; output tier 1: first 1,000,000 x
  // 700,000 µ$/1M, tier 2: the rest x 500,000; requests 19366 x 100 µ$ =
  // $1.9366 -> $1.94.
  const __int128 kDen = __int128(1'000'000) * 10'000;  // per 1M, to cents
  const int64_t in_c = RoundHalfEven(__int128(t.input) * 500'000, kDen);
  const int64_t out1_c = RoundHalfEven(__int128(1'000'000) * 700'000, kDen);
  const int64_t out2_c =
      RoundHalfEven(__int128(t.output - 1'000'000) * 500'000, kDen);
  const int64_t req_c = RoundHalfEven(19366 * 100, 10'000);
  EXPECT_EQ(req_c, 194);
  const int64_t last_total = in_c + out1_c + out2_c + req_c;
  v1::FinalizePeriodResponse fin;
  c_->CtlJson({"billing", "finalize", "--period", last}, &fin);
  ASSERT_EQ(fin.statements_size(), 1);
  const v1::Statement& ls = fin.statements(0);
  EXPECT_EQ(ls.total_cents(), last_total) << ls.DebugString();
  const std::string number = "JS-" + last + "-000001";
  EXPECT_EQ(ls.number(), number);
  for (const auto& l : ls.lines()) {
    if (l.pricing_model() == "inference") EXPECT_EQ(l.rate_card(), "tenant");
  }

  // This month: a contract from today, 2 H100 at $1.00/h, overage $180/h.
  const absl::CivilDay today(absl::ToCivilDay(now, utc));
  const absl::CivilDay month_end(this_month + 1);
  Ok({"contract", "create", "--tenant", "acme", "--gpu-model", "H100", "--gpus",
      "2", "--start", absl::FormatCivilTime(today), "--end",
      absl::FormatCivilTime(month_end), "--rate", "1.00", "--overage-rate",
      "180"});
  // A reserved 4-GPU job: 2 GPUs covered, 2 billed as reserved overage.
  CtlResult r1 =
      Ctl({"job", "submit", "--tenant", "acme", "--class", "reserved", "--gpus",
           "4", "--gpu-model", "H100", "--", "sleep", "2"});
  ASSERT_EQ(r1.exit_code, 0) << r1.err;
  const std::string id1(absl::StripAsciiWhitespace(r1.out));
  const v1::Job j1 = WaitDone(id1);
  ASSERT_EQ(j1.attempts_size(), 1);
  EXPECT_EQ(j1.attempts(0).billed_class(), v1::SERVICE_CLASS_RESERVED);
  const int64_t secs1 = j1.attempts(0).end_time().seconds() -
                        j1.attempts(0).start_time().seconds();
  ASSERT_GT(secs1, 0);
  // A reserved job without a model: covered by the contract it lands on.
  CtlResult r2 = Ctl({"job", "submit", "--tenant", "acme", "--class",
                      "reserved", "--gpus", "2", "--", "sleep", "1"});
  ASSERT_EQ(r2.exit_code, 0) << r2.err;
  const std::string id2(absl::StripAsciiWhitespace(r2.out));
  const v1::Job j2 = WaitDone(id2);
  const int64_t secs2 = j2.attempts(0).end_time().seconds() -
                        j2.attempts(0).start_time().seconds();

  // A credit note against last month's statement, and prepaid credits.
  CtlResult cn = Ctl({"billing", "credit", "--tenant", "acme", "--statement",
                      number, "--amount", "1.00", "--reason", "SLA breach"});
  ASSERT_EQ(cn.exit_code, 0) << cn.err;
  EXPECT_TRUE(absl::StrContains(cn.out, "CN-000001")) << cn.out;
  CtlResult over = Ctl({"billing", "credit", "--tenant", "acme", "--statement",
                        number, "--amount", "100000", "--reason", "too much"});
  EXPECT_EQ(over.exit_code, 1);
  Ok({"billing", "grant", "--tenant", "acme", "--amount", "5.00"});

  // Independent: take-or-pay 2 GPUs x hours(today .. month end) x $1.00;
  // overage 2 GPUs x secs1 x 180,000,000 µ$/h / 3600; credit -$1.00.
  const int64_t hours = (month_end - today) * 24;
  const int64_t reserved_c = 2 * hours * 100;
  const int64_t overage_c =
      RoundHalfEven(__int128(2 * secs1) * 180'000'000, __int128(3600) * 10'000);
  const int64_t total = reserved_c + overage_c - 100;
  const int64_t applied = std::min<int64_t>(total, 500);
  v1::Statement s;
  c_->CtlJson({"billing", "statement", "--tenant", "acme", "--period", current},
              &s);
  EXPECT_EQ(s.total_cents(), total) << s.DebugString();
  EXPECT_EQ(s.subtotal_cents().at("reserved"), reserved_c);
  EXPECT_EQ(s.subtotal_cents().at("reserved-overage"), overage_c);
  EXPECT_EQ(s.subtotal_cents().at("credit"), -100);
  EXPECT_EQ(s.credits_applied_cents(), applied);
  EXPECT_EQ(s.amount_due_cents(), total - applied);
  EXPECT_EQ(s.credit_balance_cents(), 500 - applied);
  bool credit_line = false;
  for (const auto& l : s.lines()) {
    if (l.pricing_model() == "credit") {
      credit_line = true;
      EXPECT_EQ(l.item(), number);
    }
    EXPECT_NE(l.pricing_model(), "on-demand") << l.DebugString();
  }
  EXPECT_TRUE(credit_line);
  // How each attempt was billed: job 1 half covered, job 2 all covered.
  int seen = 0;
  for (const auto& a : s.attempts()) {
    if (a.job_id() == id1) {
      ++seen;
      EXPECT_EQ(a.covered_gpu_seconds(), 2 * secs1);
      EXPECT_EQ(a.overage_gpu_seconds(), 2 * secs1);
    } else if (a.job_id() == id2) {
      ++seen;
      EXPECT_EQ(a.covered_gpu_seconds(), 2 * secs2);
      EXPECT_EQ(a.overage_gpu_seconds(), 0);
    }
  }
  EXPECT_EQ(seen, 2);
  CtlResult show = Ctl({"job", "show", id1});
  EXPECT_TRUE(absl::StrContains(show.out, "reserved-overage")) << show.out;

  // Finance export: last month's lines with the statement number; this
  // month's ratable revenue of the contract equals its take-or-pay.
  CtlResult ex = Ctl({"-o", "csv", "billing", "export", "--period", last});
  ASSERT_EQ(ex.exit_code, 0) << ex.err;
  EXPECT_TRUE(absl::StrContains(ex.out, "line," + last + ",acme," + number))
      << ex.out;
  v1::ExportPeriodResponse now_ex;
  c_->CtlJson({"billing", "export", "--period", current}, &now_ex);
  ASSERT_EQ(now_ex.revenue_size(), 1);
  EXPECT_EQ(now_ex.revenue(0).recognized_cents(), reserved_c);
}

}  // namespace
}  // namespace joule::e2e
