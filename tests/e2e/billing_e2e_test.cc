// Issue 4: metering and rating end to end with real processes: a contract,
// on-demand jobs and inference usage from the Azure LLM trace; exactly-once
// ingestion across concurrent clients and daemon crashes.
#include <signal.h>

#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/proto_time.h"
#include "gtest/gtest.h"
#include "joule/v1/joule.pb.h"
#include "tests/e2e/harness.h"

namespace joule::e2e {
namespace {

struct UsageTotals {
  int64_t events = 0;
  int64_t input = 0;
  int64_t output = 0;
};

// Maps an Azure LLM inference trace (TIMESTAMP,ContextTokens,GeneratedTokens)
// to `usage import` CSV rows for `tenant`, re-timed so the hour of the trace
// ends 5 minutes ago (inside the current month as long as the test does not
// run in the first hour of a month; then it starts at the month's start).
// `copies` repeats the trace with distinct keys.
UsageTotals WriteUsageCsv(const std::string& trace, const std::string& out,
                          const std::string& tenant, int copies) {
  std::ifstream in(SharedData() + "/" + trace);
  EXPECT_TRUE(in.good()) << "missing " << trace;
  std::string line;
  std::getline(in, line);  // header
  std::vector<std::pair<absl::Time, std::pair<int64_t, int64_t>>> rows;
  while (std::getline(in, line)) {
    std::vector<std::string> cols = absl::StrSplit(line, ',');
    if (cols.size() != 3) continue;
    absl::Time t;
    std::string err;
    EXPECT_TRUE(
        absl::ParseTime("%Y-%m-%d %H:%M:%S", cols[0].substr(0, 19), &t, &err));
    int64_t input = 0, output = 0;
    EXPECT_TRUE(absl::SimpleAtoi(cols[1], &input));
    EXPECT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(cols[2]), &output));
    rows.push_back({t, {input, output}});
  }
  const absl::Time now = absl::Now();
  const absl::Time month_start = absl::FromCivil(
      absl::CivilMonth(absl::ToCivilSecond(now, absl::UTCTimeZone())),
      absl::UTCTimeZone());
  absl::Time base = now - absl::Minutes(65);
  if (base < month_start) base = month_start;
  std::ofstream o(out);
  o << "timestamp,tenant,model,requests,input_tokens,output_tokens,"
       "idempotency_key\n";
  UsageTotals totals;
  for (int c = 0; c < copies; ++c) {
    for (size_t i = 0; i < rows.size(); ++i) {
      const absl::Time t =
          std::min(now, base + (rows[i].first - rows[0].first));
      o << absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone()) << ","
        << tenant << ",llama,1," << rows[i].second.first << ","
        << rows[i].second.second << ",azure-" << c << "-" << i << "\n";
      totals.events++;
      totals.input += rows[i].second.first;
      totals.output += rows[i].second.second;
    }
  }
  return totals;
}

// Half-even rounding of num/den (both > 0) to an integer.
int64_t RoundHalfEven(__int128 num, __int128 den) {
  __int128 q = num / den, r = num % den;
  if (2 * r > den || (2 * r == den && q % 2 == 1)) ++q;
  return static_cast<int64_t>(q);
}

std::string MonthStart() {
  return absl::FormatTime("%Y-%m-01", absl::Now(), absl::UTCTimeZone());
}
std::string Period() {
  return absl::FormatTime("%Y-%m", absl::Now(), absl::UTCTimeZone());
}

class BillingE2E : public ::testing::Test {
 protected:
  void SetUp() override { c_ = std::make_unique<Cluster>(); }
  void StartWithPrices(Cluster& c) {
    c.StartDaemon();
    ASSERT_EQ(c.Ctl({"tenant", "create", "acme"}).exit_code, 0);
    // Prices from the month's start: $2.49 per H100-hour on demand; llama
    // $0.60 per 1M input tokens, $0.80 per 1M output tokens (the first
    // 1,000,000,000), $0.0001 per request.
    for (std::vector<std::string> args :
         {std::vector<std::string>{"price", "set", "gpu-hour", "--gpu-model",
                                   "H100", "--class", "on-demand", "--price",
                                   "2.49", "--from", MonthStart()},
          std::vector<std::string>{"price", "set", "inference", "--model",
                                   "llama", "--input", "0.60", "--output",
                                   "0:0.80,1000000000:0.60", "--per-request",
                                   "0.0001", "--from", MonthStart()}}) {
      CtlResult r = c.Ctl(args);
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
  }
  v1::Statement Statement(Cluster& c) {
    v1::Statement s;
    c.CtlJson(
        {"billing", "statement", "--tenant", "acme", "--period", Period()}, &s);
    return s;
  }
  std::unique_ptr<Cluster> c_;
};

TEST_F(BillingE2E, StatementEqualsIndependentCalculation) {
  if (absl::ToCivilHour(absl::Now(), absl::UTCTimeZone()).hour() == 0 &&
      absl::ToCivilDay(absl::Now(), absl::UTCTimeZone()).day() == 1) {
    GTEST_SKIP() << "the trace hour would straddle the month boundary";
  }
  StartWithPrices(*c_);
  c_->StartAgent("n1");
  ASSERT_TRUE(WaitFor([&] {
    v1::ListNodesResponse r;
    c_->CtlJson({"node", "list"}, &r);
    return r.nodes_size() == 1 && r.nodes(0).state() == v1::NODE_STATE_READY;
  }));
  // Contract: 2 H100 for the whole month at $1.50 per GPU-hour.
  const absl::Time now = absl::Now();
  const absl::CivilMonth month(absl::ToCivilSecond(now, absl::UTCTimeZone()));
  const std::string end =
      absl::FormatCivilTime(absl::CivilDay(month + 1));  // YYYY-MM-DD
  CtlResult k = c_->Ctl({"contract", "create", "--tenant", "acme",
                         "--gpu-model", "H100", "--gpus", "2", "--start",
                         MonthStart(), "--end", end, "--rate", "1.50"});
  ASSERT_EQ(k.exit_code, 0) << k.err;

  // Jobs: three on-demand (1, 2 and 3 GPUs) and a reserved 2-GPU job that
  // the contract covers.
  std::vector<std::string> ids;
  for (const char* gpus : {"1", "2", "3"}) {
    CtlResult r = c_->Ctl({"job", "submit", "--tenant", "acme", "--gpus", gpus,
                           "--gpu-model", "H100", "--", "sleep", "1.5"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ids.push_back(std::string(absl::StripAsciiWhitespace(r.out)));
  }
  CtlResult reserved =
      c_->Ctl({"job", "submit", "--tenant", "acme", "--class", "reserved",
               "--gpus", "2", "--gpu-model", "H100", "--", "sleep", "1"});
  ASSERT_EQ(reserved.exit_code, 0) << reserved.err;

  const std::string csv = c_->dir() + "/usage.csv";
  const UsageTotals totals = WriteUsageCsv(
      "azure_llm2023_AzureLLMInferenceTrace_code.csv", csv, "acme", 1);
  ASSERT_EQ(totals.events, 8819);
  CtlResult imp = c_->Ctl({"usage", "import", csv});
  ASSERT_EQ(imp.exit_code, 0) << imp.err;
  EXPECT_EQ(imp.out, "new 8819, duplicate 0, rejected 0\n");

  // Independent calculation of the on-demand GPU-seconds from the jobs'
  // agent-reported start and end (billed per whole second of the UTC clock).
  int64_t gpu_seconds = 0;
  for (const std::string& id : ids) {
    ASSERT_TRUE(WaitFor([&] {
      v1::Job j;
      c_->CtlJson({"job", "show", id}, &j);
      return j.state() == v1::JOB_STATE_SUCCEEDED;
    }));
    v1::Job j;
    c_->CtlJson({"job", "show", id}, &j);
    ASSERT_EQ(j.attempts_size(), 1);
    const auto& a = j.attempts(0);
    EXPECT_EQ(a.billed_class(), v1::SERVICE_CLASS_ON_DEMAND);
    gpu_seconds += (a.end_time().seconds() - a.start_time().seconds()) *
                   a.allocations(0).gpu_indices_size();
  }
  ASSERT_GT(gpu_seconds, 0);
  const std::string rid(absl::StripAsciiWhitespace(reserved.out));
  ASSERT_TRUE(WaitFor([&] {
    v1::Job j;
    c_->CtlJson({"job", "show", rid}, &j);
    return j.state() == v1::JOB_STATE_SUCCEEDED;
  }));

  const int64_t hours_in_month =
      (absl::CivilDay(month + 1) - absl::CivilDay(month)) * 24;
  // Each line is rounded once, half-even, to cents (1 cent = 10,000 µ$).
  // reserved: 2 GPUs × hours × $1.50
  const int64_t reserved_cents = 2 * hours_in_month * 150;
  // on-demand: GPU-s × 2,490,000 µ$/GPU-h / 3600 s/h → cents
  const int64_t on_demand_cents =
      RoundHalfEven(__int128(gpu_seconds) * 2'490'000, __int128(3600) * 10'000);
  // inference: tokens × µ$ per 1M tokens / 1M → cents
  const int64_t input_cents = RoundHalfEven(__int128(totals.input) * 600'000,
                                            __int128(1'000'000) * 10'000);
  const int64_t output_cents = RoundHalfEven(__int128(totals.output) * 800'000,
                                             __int128(1'000'000) * 10'000);
  // requests: 8819 × $0.0001 = $0.8819 → $0.88
  const int64_t request_cents = RoundHalfEven(totals.events * 100, 10'000);
  EXPECT_EQ(request_cents, 88);
  const int64_t expected = reserved_cents + on_demand_cents + input_cents +
                           output_cents + request_cents;

  const v1::Statement s = Statement(*c_);
  EXPECT_EQ(s.total_cents(), expected) << s.DebugString();
  int64_t sum = 0, energy_lines = 0;
  for (const auto& l : s.lines()) {
    if (l.informational()) {
      energy_lines++;
      continue;
    }
    sum += l.amount_cents();
    if (l.pricing_model() == "on-demand") {
      EXPECT_EQ(l.amount_cents(), on_demand_cents) << l.DebugString();
    }
    if (l.pricing_model() == "reserved") {
      EXPECT_EQ(l.amount_cents(), reserved_cents) << l.DebugString();
    }
    EXPECT_NE(l.pricing_model(), "reserved-overage");
  }
  EXPECT_EQ(sum, s.total_cents());
  EXPECT_EQ(energy_lines, 1);  // the kWh the jobs drew, informational
  EXPECT_EQ(s.subtotal_cents().at("inference"),
            input_cents + output_cents + request_cents);

  // A tenant reads its own statement only.
  CtlResult other = c_->Ctl({"--as-tenant", "globex", "billing", "statement",
                             "--tenant", "acme", "--period", Period()});
  EXPECT_EQ(other.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(other.err, "only its own")) << other.err;
}

TEST_F(BillingE2E, IdempotentAcrossConcurrentClientsAndCrashes) {
  StartWithPrices(*c_);
  const std::string csv = c_->dir() + "/usage.csv";
  const UsageTotals totals = WriteUsageCsv(
      "azure_llm2023_AzureLLMInferenceTrace_code.csv", csv, "acme", 1);
  // The same file from two clients at once: every event counted once.
  std::vector<std::string> common = c_->CtlCommand();
  common.insert(common.end(),
                {"-o", "json", "usage", "import", csv, "--batch", "500"});
  Process p1(common, c_->dir() + "/imp1.log");
  Process p2(common, c_->dir() + "/imp2.log");
  ASSERT_EQ(p1.Wait(), 0) << p1.Log();
  ASSERT_EQ(p2.Wait(), 0) << p2.Log();
  auto news = [](const std::string& log) {
    int64_t n = -1;
    const size_t p = log.find("\"new\": ");
    if (p != std::string::npos) {
      absl::SimpleAtoi(log.substr(p + 7, log.find(',', p) - p - 7), &n);
    }
    return n;
  };
  EXPECT_EQ(news(p1.Log()) + news(p2.Log()), totals.events)
      << p1.Log() << p2.Log();
  const v1::Statement once = Statement(*c_);
  ASSERT_GT(once.total_cents(), 0);

  // After SIGKILL and restart, the same batch again: duplicates only.
  c_->KillDaemon(SIGKILL);
  c_->StartDaemon();
  CtlResult again = c_->Ctl({"usage", "import", csv});
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(again.out,
            absl::StrCat("new 0, duplicate ", totals.events, ", rejected 0\n"));
  const v1::Statement after = Statement(*c_);
  EXPECT_EQ(after.total_cents(), once.total_cents());
  EXPECT_EQ(after.lines_size(), once.lines_size());

  // Same key, other payload: refused, nothing changed.
  CtlResult conflict = c_->Ctl({"usage", "record", "--tenant", "acme",
                                "--model", "llama", "--input-tokens", "1",
                                "--output-tokens", "1", "--key", "azure-0-0"});
  EXPECT_EQ(conflict.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(conflict.err, "azure-0-0")) << conflict.err;
  EXPECT_EQ(Statement(*c_).total_cents(), once.total_cents());
  // A bad event rejects its batch with the index and reason.
  CtlResult bad = c_->Ctl({"usage", "record", "--tenant", "acme", "--model",
                           "unknown-model", "--input-tokens", "5",
                           "--output-tokens", "1", "--key", "neg"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(bad.err, "events[0].model")) << bad.err;
  // Signed counts never reach the daemon (issue 12: "+7" was accepted).
  for (const char* count : {"-5", "+7"}) {
    CtlResult sign =
        c_->Ctl({"usage", "record", "--tenant", "acme", "--model", "llama",
                 "--input-tokens", count, "--output-tokens", "1", "--key", "s"});
    EXPECT_EQ(sign.exit_code, 2) << count;
    EXPECT_TRUE(absl::StrContains(sign.err, "--input-tokens")) << sign.err;
  }
}

TEST_F(BillingE2E, CrashDuringImportThenRerunEqualsCleanRun) {
  // ~97k events (the conversation trace five times over) in small batches,
  // so that the import is still running when jouled is killed.
  StartWithPrices(*c_);
  const std::string csv = c_->dir() + "/usage.csv";
  const UsageTotals totals = WriteUsageCsv(
      "azure_llm2023_AzureLLMInferenceTrace_conv.csv", csv, "acme", 5);
  std::vector<std::string> import_argv = c_->CtlCommand();
  import_argv.insert(import_argv.end(),
                     {"usage", "import", csv, "--batch", "200"});
  Process import(import_argv, c_->dir() + "/import.log");
  absl::SleepFor(absl::Milliseconds(400));
  c_->KillDaemon(SIGKILL);
  const int import_exit = import.Wait();
  c_->StartDaemon();
  if (import_exit != 0) {
    EXPECT_TRUE(absl::StrContains(import.Log(), "cannot reach jouled"))
        << import.Log();
  } else {
    ADD_FAILURE() << "the import finished before the crash; make it longer";
  }
  const v1::Statement partial = Statement(*c_);
  CtlResult rerun = c_->Ctl({"usage", "import", csv, "--batch", "2000"});
  ASSERT_EQ(rerun.exit_code, 0) << rerun.err;
  const v1::Statement crashed = Statement(*c_);
  EXPECT_LT(partial.total_cents(), crashed.total_cents());

  // A clean run on a fresh daemon: the same statement, line by line.
  Cluster clean;
  StartWithPrices(clean);
  CtlResult once = clean.Ctl({"usage", "import", csv, "--batch", "2000"});
  ASSERT_EQ(once.exit_code, 0) << once.err;
  EXPECT_EQ(once.out,
            absl::StrCat("new ", totals.events, ", duplicate 0, rejected 0\n"));
  const v1::Statement expected = Statement(clean);
  EXPECT_EQ(crashed.total_cents(), expected.total_cents());
  ASSERT_EQ(crashed.lines_size(), expected.lines_size());
  for (int i = 0; i < crashed.lines_size(); ++i) {
    EXPECT_EQ(crashed.lines(i).quantity(), expected.lines(i).quantity());
    EXPECT_EQ(crashed.lines(i).amount_cents(),
              expected.lines(i).amount_cents());
  }
}

}  // namespace
}  // namespace joule::e2e
