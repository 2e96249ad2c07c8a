// joule-sim: replays a GPU workload against a simulated cluster under the
// real Joule placement policy, power loop and billing ledger, in simulated
// time. See docs/evaluation.md.

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/cli_parse.h"
#include "common/units.h"
#include "config/cluster_config.h"
#include "scheduler/power_options.h"
#include "sim/cluster.h"
#include "sim/pricing.h"
#include "sim/report.h"
#include "sim/simulator.h"
#include "sim/workload.h"

namespace joule::sim {
namespace {

int Fail(const absl::Status& s) {
  std::cerr << "joule-sim: " << s.message() << "\n";
  return 1;
}

absl::Status WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat(path, ": cannot write"));
  return absl::OkStatus();
}

// "reserved=1,on-demand=0.8,spot=0" (shares of the limit; 0 = the GPU
// minimum) or "off"; empty keeps the defaults (scheduler::ParseClassFloors).
absl::Status ParseClassFloors(const std::string& spec,
                              scheduler::ClassFloors* out) {
  absl::StatusOr<scheduler::ClassFloors> f =
      scheduler::ParseClassFloors(spec, *out);
  if (!f.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--class-floors: ", f.status().message()));
  }
  *out = *f;
  return absl::OkStatus();
}

// "min=10,max=100,initial=30,near=10,up=20,down=5,quiet=6,cut-hold=1"
// (permille of the cap; quiet in report intervals; cut-hold 0 or 1:
// AdaptiveMarginConfig::hold_after_cap_cut); empty keeps the defaults.
absl::Status ParseAdaptiveMargin(const std::string& spec,
                                 scheduler::AdaptiveMarginConfig* out) {
  for (absl::string_view kv : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> p =
        absl::StrSplit(kv, absl::MaxSplits('=', 1));
    int64_t v = -1;
    if (!absl::SimpleAtoi(p.second, &v) || v < 0 || v > 1000) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--adaptive-margin: \"", kv, "\": must be an integer in [0, 1000]"));
    }
    if (p.first == "min") {
      out->min_permille = v;
    } else if (p.first == "max") {
      out->max_permille = v;
    } else if (p.first == "initial") {
      out->initial_permille = v;
    } else if (p.first == "near") {
      out->near_permille = v;
    } else if (p.first == "up") {
      out->up_permille = v;
    } else if (p.first == "down") {
      out->down_permille = v;
    } else if (p.first == "cut-hold") {
      out->hold_after_cap_cut = v != 0;
    } else if (p.first == "quiet") {
      out->quiet_intervals = static_cast<int32_t>(std::max<int64_t>(1, v));
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "--adaptive-margin: \"", p.first,
          "\" is not min, max, initial, near, up, down, quiet or cut-hold"));
    }
  }
  if (out->max_permille < out->min_permille) {
    return absl::InvalidArgumentError("--adaptive-margin: max must be >= min");
  }
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  CLI::App app{
      "joule-sim: replay a GPU workload against a simulated cluster with the "
      "real Joule scheduler, power loop and billing ledger (simulated "
      "time)."};
  // Cluster.
  std::string config_path, synthetic_cluster, node_list;
  uint32_t gpus_per_node = 8;
  std::string gpu_model = "H100";
  RackLayout layout;
  std::string base_power;
  std::string cap_fraction;
  auto* cluster_group = app.add_option_group("cluster", "one of");
  cluster_group
      ->add_option("--config", config_path,
                   "the daemon's cluster config (protobuf text); its nodes "
                   "get --gpus-per-node GPUs of --gpu-model")
      ->check(CLI::ExistingFile);
  cluster_group->add_option(
      "--synthetic-cluster", synthetic_cluster,
      "nodes=10000,gpus-per-node=8,gpu-model=H100,nodes-per-rack=8,"
      "racks-per-row=16,rows-per-hall=10[,base-power=1kW]");
  cluster_group
      ->add_option("--node-list", node_list,
                   "Alibaba GPU-2023 node list (openb_node_list_*.csv)")
      ->check(CLI::ExistingFile);
  cluster_group->require_option(1);
  app.add_option("--gpus-per-node", gpus_per_node, "with --config")
      ->capture_default_str();
  app.add_option("--gpu-model", gpu_model, "with --config")
      ->capture_default_str();
  app.add_option("--nodes-per-rack", layout.nodes_per_rack, "with --node-list")
      ->capture_default_str();
  app.add_option("--racks-per-row", layout.racks_per_row, "with --node-list")
      ->capture_default_str();
  app.add_option("--rows-per-hall", layout.rows_per_hall, "with --node-list")
      ->capture_default_str();
  app.add_option("--node-base-power", base_power,
                 "base power per node with --node-list (default 400W)");
  app.add_option("--cap-fraction", cap_fraction,
                 "cap per level = base power below + fraction x GPU TDP "
                 "below, e.g. rack=0.8,row=0.75,site=0.7 (levels not named "
                 "keep their cap; synthetic / node-list levels are "
                 "unlimited)");
  // Workload.
  std::string workload_path, trace_format = "canonical";
  int64_t synthetic_jobs = 0;
  double utilization = 0.9;
  uint32_t tenants = 100;
  std::string write_workload;
  double arrival_speedup = 1;
  app.add_option("--arrival-speedup", arrival_speedup,
                 "divide every submit time by this factor (> 0)")
      ->capture_default_str();
  app.add_option("--workload", workload_path, "job trace file")
      ->check(CLI::ExistingFile);
  app.add_option("--trace-format", trace_format,
                 "canonical | alibaba-openb | sacct")
      ->check(CLI::IsMember({"canonical", "alibaba-openb", "sacct"}))
      ->capture_default_str();
  app.add_option("--synthetic-jobs", synthetic_jobs,
                 "generate N synthetic jobs instead of --workload");
  app.add_option("--utilization", utilization,
                 "offered load of the synthetic jobs (fraction of GPUs)")
      ->capture_default_str();
  app.add_option("--tenants", tenants, "tenants of the synthetic jobs")
      ->capture_default_str();
  app.add_option("--write-workload", write_workload,
                 "write the workload as canonical CSV and continue");
  std::string usage_path, pricing_path, cap_events_path;
  app.add_option("--usage", usage_path,
                 "inference usage CSV (joulectl usage import format)")
      ->check(CLI::ExistingFile);
  app.add_option("--pricing", pricing_path,
                 "prices, contracts and tenant weights (see "
                 "docs/evaluation.md)")
      ->check(CLI::ExistingFile);
  app.add_option("--cap-events", cap_events_path,
                 "demand-response cap changes: time_s,domain,new_cap")
      ->check(CLI::ExistingFile);
  std::string load_cdf_path, load_cdf_tdp = "400W", load_cdf_idle = "50W";
  app.add_option("--load-cdf", load_cdf_path,
                 "per-GPU power CDF (gpu_power_w,cdf_percent) to sample job "
                 "loads from, e.g. acme_gpu_power_cdf_seren.csv")
      ->check(CLI::ExistingFile);
  app.add_option("--load-cdf-tdp", load_cdf_tdp,
                 "TDP of the GPUs the CDF was measured on")
      ->capture_default_str();
  app.add_option("--load-cdf-idle", load_cdf_idle,
                 "idle power of the GPUs the CDF was measured on")
      ->capture_default_str();
  // Policy and model.
  SimOptions opts;
  std::string policy = "allocated", policies;
  std::string tick = "10s", max_sim_time, start = "2026-01-01T00:00:00Z";
  bool no_backfill = false, no_preemption = false, no_progress = false,
       quiet = false;
  app.add_option("--policy", policy,
                 "oblivious | allocated | measured | measured-plus")
      ->check(CLI::IsMember(
          {"oblivious", "allocated", "measured", "measured-plus"}))
      ->capture_default_str();
  app.add_option("--policies", policies,
                 "all, or a comma list: run each on the same workload");
  app.add_option("--seed", opts.seed, "random seed (loads, power noise)")
      ->capture_default_str();
  app.add_option("--tick", tick, "telemetry and power-loop period")
      ->capture_default_str();
  std::string schedule_interval;
  app.add_option("--schedule-interval", schedule_interval,
                 "scheduler period (default: every tick)");
  app.add_option("--queue-window", opts.queue_window,
                 "pending jobs given to the scheduler per tick")
      ->capture_default_str();
  app.add_option("--default-load", opts.default_load,
                 "load of jobs without one (0..1)")
      ->capture_default_str();
  app.add_option("--power-noise", opts.power_noise,
                 "relative per-tick noise of a job's load")
      ->capture_default_str();
  app.add_option("--throttle-alpha", opts.throttle_alpha,
                 "throughput = (limit/want)^alpha above the knee")
      ->capture_default_str();
  app.add_option("--throttle-knee", opts.throttle_knee,
                 "below knee × want, throughput falls linearly")
      ->capture_default_str();
  app.add_option("--max-runtime-factor", opts.max_runtime_factor,
                 "> 0: jobs declare (and are killed at) factor × duration")
      ->capture_default_str();
  bool no_time_limits = false;
  app.add_flag("--no-time-limits", no_time_limits,
               "jobs without --max-runtime-factor get no limit (default: "
               "their class's default_max_runtime, as jouled)");
  app.add_option("--measured-percentile", opts.measured_percentile)
      ->capture_default_str();
  app.add_option("--measured-margin-pct", opts.measured_margin_pct)
      ->capture_default_str();
  app.add_option("--plus-percentile", opts.plus_commit.percentile,
                 "measured-plus: per-job commitment percentile")
      ->capture_default_str();
  app.add_option("--plus-margin-pct", opts.plus_commit.margin_pct,
                 "measured-plus: per-job commitment margin")
      ->capture_default_str();
  app.add_option("--plus-high-percentile", opts.plus_commit.high_percentile,
                 "measured-plus with --plus-commit floor-clamp: the "
                 "percentile for the draw below the job's floor")
      ->capture_default_str();
  std::string plus_commit(
      scheduler::PlusCommitName(scheduler::DefaultPlusCommit().kind));
  app.add_option("--plus-commit", plus_commit,
                 "measured-plus: percentile (p alone) or floor-clamp "
                 "(clamp(floor, p, p-high), scheduler/measured_window.h)")
      ->capture_default_str();
  std::string class_floors, adaptive_margin, min_raise_interval = "30s";
  std::string power_fit = "leaf";
  app.add_option("--power-fit", power_fit,
                 "measured-plus: placement among best-fit nodes: leaf "
                 "(least rack headroom left), every-level (watt best fit at "
                 "every level), balanced (free power in step with free "
                 "GPUs)")
      ->capture_default_str();
  app.add_option("--class-floors", class_floors,
                 "measured-plus: default floor per class as a share of the "
                 "limit over idle, 0 = the GPU minimum, e.g. "
                 "reserved=1,on-demand=0.8,spot=0 (the default); \"off\" "
                 "= jobs without min_power_w are not throttleable; "
                 "on-demand-start=0.6 (also reserved-start, spot-start): "
                 "throttle-to-fit may start such a job down to that share, "
                 "and its start limit is then its floor");
  app.add_option("--adaptive-margin", adaptive_margin,
                 "measured-plus: admission reserve per domain in permille "
                 "of its cap, min=10,max=100,initial=30,near=10,up=20,"
                 "down=5,quiet=6,cut-hold=1 (the default; cut-hold=0: a "
                 "near-breach after a cap cut raises the reserve even "
                 "within the domain's commitments)");
  app.add_option("--min-raise-interval", min_raise_interval,
                 "measured-plus: a job's limit is raised only this long "
                 "after its last change")
      ->capture_default_str();
  app.add_flag("--throttleable", opts.throttleable,
               "jobs without min_power_w accept their GPU's minimum limit");
  app.add_flag("--no-backfill", no_backfill);
  app.add_flag("--no-preemption", no_preemption);
  app.add_option("--start", start, "simulated start time (RFC 3339)")
      ->capture_default_str();
  app.add_option("--max-sim-time", max_sim_time,
                 "stop after this much simulated time (e.g. 48h)");
  std::string timeline_range;
  app.add_option("--timeline-range", timeline_range,
                 "FROM,TO simulated time the timeline (JSON, SVG) covers, "
                 "e.g. 2h,6h (default: the whole run)");
  std::string report_path, svg_path;
  app.add_option("--report", report_path, "write the JSON report here");
  app.add_option("--svg", svg_path, "write a comparison chart (SVG) here");
  app.add_flag("--no-progress", no_progress, "no progress lines on stderr");
  app.add_flag("--quiet", quiet, "no summary on stdout");
  joule::AddVersionFlag(app, "joule-sim");
  JOULE_CLI_PARSE(app, "joule-sim", argc, argv);

  // ---- cluster
  RunInfo info;
  SimCluster cluster;
  if (!base_power.empty()) {
    auto p = ParsePowerMw(base_power, "--node-base-power");
    if (!p.ok()) return Fail(p.status());
    layout.base_power_mw = *p;
  }
  if (!config_path.empty()) {
    auto cfg = config::LoadClusterConfig(config_path);
    if (!cfg.ok()) return Fail(cfg.status());
    auto c = ClusterFromConfig(*cfg, gpus_per_node, gpu_model);
    if (!c.ok()) return Fail(c.status());
    cluster = *std::move(c);
    info.cluster_source = absl::StrCat("config ", config_path);
  } else if (!synthetic_cluster.empty()) {
    auto c = SyntheticCluster(synthetic_cluster);
    if (!c.ok()) return Fail(c.status());
    cluster = *std::move(c);
    info.cluster_source = absl::StrCat("synthetic ", synthetic_cluster);
  } else {
    auto c = ClusterFromAlibabaNodeList(node_list, layout);
    if (!c.ok()) return Fail(c.status());
    cluster = *std::move(c);
    info.cluster_source =
        absl::StrCat("node list ", node_list, " (", layout.nodes_per_rack,
                     " nodes/rack, ", layout.racks_per_row, " racks/row, ",
                     layout.rows_per_hall, " rows/hall)");
  }
  if (!cap_fraction.empty()) {
    if (absl::Status s = ApplyCapFractions(cap_fraction, &cluster); !s.ok()) {
      return Fail(s);
    }
    absl::StrAppend(&info.cluster_source, ", caps ", cap_fraction);
  }
  info.nodes = static_cast<int64_t>(cluster.nodes.size());
  info.gpus = cluster.TotalGpus();
  info.domains = static_cast<int64_t>(cluster.domains.size());

  // ---- workload
  Workload workload;
  if (synthetic_jobs > 0) {
    workload = SyntheticWorkload(
        synthetic_jobs, cluster.TotalGpus(),
        cluster.nodes.empty() ? 8 : cluster.nodes[0].gpus, utilization,
        std::max<uint32_t>(1, tenants), opts.seed);
    info.workload_source =
        absl::StrCat("synthetic ", synthetic_jobs, " jobs, utilization ",
                     utilization, ", seed ", opts.seed);
  } else if (!workload_path.empty()) {
    auto text = ReadFile(workload_path);
    if (!text.ok()) return Fail(text.status());
    absl::StatusOr<Workload> w;
    if (trace_format == "canonical") {
      w = ParseCanonicalCsv(*text, workload_path);
    } else if (trace_format == "alibaba-openb") {
      w = ParseAlibabaOpenb(*text, workload_path);
    } else {
      w = ParseSacct(*text, workload_path);
    }
    if (!w.ok()) return Fail(w.status());
    workload = *std::move(w);
    info.workload_source = absl::StrCat(trace_format, " ", workload_path);
  } else {
    return Fail(absl::InvalidArgumentError(
        "a workload is needed: --workload FILE or --synthetic-jobs N"));
  }
  if (arrival_speedup <= 0) {
    return Fail(absl::InvalidArgumentError("--arrival-speedup: must be > 0"));
  }
  if (arrival_speedup != 1) {
    workload.SpeedUpArrivals(arrival_speedup);
    absl::StrAppend(&info.workload_source, ", arrivals sped up ",
                    arrival_speedup, "x");
  }
  info.import = workload.stats;
  if (!write_workload.empty()) {
    if (absl::Status s = WriteFile(write_workload, ToCanonicalCsv(workload));
        !s.ok()) {
      return Fail(s);
    }
  }
  std::vector<CapEvent> cap_events;
  if (!cap_events_path.empty()) {
    auto text = ReadFile(cap_events_path);
    if (!text.ok()) return Fail(text.status());
    auto e = ParseCapEvents(*text, cap_events_path, cluster);
    if (!e.ok()) return Fail(e.status());
    cap_events = *std::move(e);
  }
  std::vector<v1::UsageEvent> usage;
  if (!usage_path.empty()) {
    auto text = ReadFile(usage_path);
    if (!text.ok()) return Fail(text.status());
    auto u = ParseUsageEvents(*text, usage_path);
    if (!u.ok()) return Fail(u.status());
    usage = *std::move(u);
  }
  std::optional<PricingFile> pricing;
  if (!pricing_path.empty()) {
    auto text = ReadFile(pricing_path);
    if (!text.ok()) return Fail(text.status());
    auto p = ParsePricingFile(*text, pricing_path);
    if (!p.ok()) return Fail(p.status());
    pricing = *std::move(p);
  }
  std::optional<LoadCdf> load_cdf;
  if (!load_cdf_path.empty()) {
    auto text = ReadFile(load_cdf_path);
    if (!text.ok()) return Fail(text.status());
    auto tdp = ParsePowerMw(load_cdf_tdp, "--load-cdf-tdp");
    if (!tdp.ok()) return Fail(tdp.status());
    auto idle = ParsePowerMw(load_cdf_idle, "--load-cdf-idle");
    if (!idle.ok()) return Fail(idle.status());
    auto cdf = LoadCdf::Parse(*text, load_cdf_path, *tdp, *idle);
    if (!cdf.ok()) return Fail(cdf.status());
    load_cdf = *std::move(cdf);
    opts.load_cdf = &*load_cdf;
  }

  // ---- options
  absl::Duration d;
  if (!absl::ParseDuration(tick, &d) || d <= absl::ZeroDuration()) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--tick: \"", tick, "\" is not a positive duration")));
  }
  opts.tick_ms = absl::ToInt64Milliseconds(d);
  if (!schedule_interval.empty()) {
    if (!absl::ParseDuration(schedule_interval, &d) ||
        d < absl::ZeroDuration()) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("--schedule-interval: \"", schedule_interval,
                       "\" is not a duration")));
    }
    opts.schedule_interval_ms = absl::ToInt64Milliseconds(d);
  }
  if (!timeline_range.empty()) {
    std::pair<std::string, std::string> r =
        absl::StrSplit(timeline_range, absl::MaxSplits(',', 1));
    absl::Duration from, to;
    if (!absl::ParseDuration(r.first, &from) ||
        !absl::ParseDuration(r.second, &to) || to <= from) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("--timeline-range: \"", timeline_range,
                       "\" is not FROM,TO durations with FROM < TO")));
    }
    opts.timeline_from_ms = absl::ToInt64Milliseconds(from);
    opts.timeline_to_ms = absl::ToInt64Milliseconds(to);
  }
  if (!max_sim_time.empty()) {
    if (!absl::ParseDuration(max_sim_time, &d) || d <= absl::ZeroDuration()) {
      return Fail(absl::InvalidArgumentError(absl::StrCat(
          "--max-sim-time: \"", max_sim_time, "\" is not a duration")));
    }
    opts.max_sim_ms = absl::ToInt64Milliseconds(d);
  }
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, start, &opts.start, &err)) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--start: \"", start, "\" is not RFC 3339")));
  }
  if (absl::Status s = ParseClassFloors(class_floors, &opts.class_floors);
      !s.ok()) {
    return Fail(s);
  }
  // The names and rules the daemon's scheduler.plus_commit takes; the
  // percentile flags above then adjust the rule's fields.
  if (auto rule = scheduler::ParsePlusCommit(plus_commit)) {
    opts.plus_commit.kind = rule->kind;
  } else {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--plus-commit: \"", plus_commit, "\" is not one of: ",
                     scheduler::kPlusCommitNames)));
  }
  if (auto fit = scheduler::ParsePowerFit(power_fit)) {
    opts.power_fit = *fit;
  } else {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--power-fit: \"", power_fit,
                     "\" is not one of: leaf, every-level, balanced")));
  }
  if (absl::Status s = ParseAdaptiveMargin(adaptive_margin, &opts.margin);
      !s.ok()) {
    return Fail(s);
  }
  if (!absl::ParseDuration(min_raise_interval, &d) ||
      d < absl::ZeroDuration()) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--min-raise-interval: \"", min_raise_interval,
                     "\" is not a duration >= 0")));
  }
  opts.min_raise_interval_ms = absl::ToInt64Milliseconds(d);
  opts.backfill = !no_backfill;
  opts.time_limits = !no_time_limits;
  opts.allow_preemption = !no_preemption;
  opts.progress = !no_progress;
  if (opts.queue_window == 0) opts.queue_window = 1;
  std::vector<PolicyKind> kinds;
  const std::string list = policies.empty() ? policy : policies;
  for (absl::string_view p : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    if (p == "all") {
      kinds = {PolicyKind::kOblivious, PolicyKind::kAllocated,
               PolicyKind::kMeasured, PolicyKind::kMeasuredPlus};
    } else if (p == "oblivious") {
      kinds.push_back(PolicyKind::kOblivious);
    } else if (p == "allocated") {
      kinds.push_back(PolicyKind::kAllocated);
    } else if (p == "measured") {
      kinds.push_back(PolicyKind::kMeasured);
    } else if (p == "measured-plus") {
      kinds.push_back(PolicyKind::kMeasuredPlus);
    } else {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("--policies: \"", p,
                       "\" is not all, oblivious, allocated, measured or "
                       "measured-plus")));
    }
  }
  info.seed = opts.seed;
  info.options = opts;

  SimInputs in;
  in.cluster = &cluster;
  in.workload = &workload;
  in.cap_events = &cap_events;
  in.usage = &usage;
  in.pricing = pricing ? &*pricing : nullptr;
  std::vector<SimResult> results;
  for (PolicyKind k : kinds) {
    SimOptions o = opts;
    o.policy = k;
    auto r = Simulate(in, o);
    if (!r.ok()) return Fail(r.status());
    results.push_back(*std::move(r));
  }
  info.peak_rss_bytes = PeakRssBytes();
  if (!quiet) std::cout << ReportText(info, results);
  if (!report_path.empty()) {
    if (absl::Status s =
            WriteFile(report_path, ReportJson(info, results, true));
        !s.ok()) {
      return Fail(s);
    }
  }
  if (!svg_path.empty()) {
    if (absl::Status s = WriteFile(svg_path, ReportSvg(info, results));
        !s.ok()) {
      return Fail(s);
    }
  }
  return 0;
}

}  // namespace
}  // namespace joule::sim

int main(int argc, char** argv) { return joule::sim::Main(argc, argv); }
