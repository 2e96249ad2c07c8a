#include "sim/report.h"

#include "common/json_string.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "billing/money.h"

namespace joule::sim {
namespace {

std::string Num(double v) {
  if (!std::isfinite(v)) return "null";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    return absl::StrFormat("%.0f", v);
  }
  return absl::StrFormat("%.6g", v);
}

std::string Str(const std::string& s) { return JsonQuote(s); }

// A minimal JSON object writer with two-space indentation.
class Json {
 public:
  void Open(const std::string& key = "") { Begin(key, "{"); }
  void OpenArray(const std::string& key) { Begin(key, "["); }
  void Close() { End("}"); }
  void CloseArray() { End("]"); }
  void Field(const std::string& key, const std::string& raw) {
    Sep();
    absl::StrAppend(&out_, Indent(), Str(key), ": ", raw);
  }
  void Item(const std::string& raw) {
    Sep();
    absl::StrAppend(&out_, Indent(), raw);
  }
  void Num(const std::string& key, double v) { Field(key, sim::Num(v)); }
  void Int(const std::string& key, int64_t v) { Field(key, absl::StrCat(v)); }
  void S(const std::string& key, const std::string& v) { Field(key, Str(v)); }
  std::string Take() { return std::move(out_) + "\n"; }

 private:
  std::string Indent() const { return std::string(2 * depth_, ' '); }
  void Sep() {
    if (need_comma_) out_ += ",";
    if (!out_.empty()) out_ += "\n";
    need_comma_ = true;
  }
  void Begin(const std::string& key, const char* bracket) {
    Sep();
    absl::StrAppend(&out_, Indent(), key.empty() ? "" : Str(key) + ": ",
                    bracket);
    ++depth_;
    need_comma_ = false;
  }
  void End(const char* bracket) {
    --depth_;
    absl::StrAppend(&out_, "\n", Indent(), bracket);
    need_comma_ = true;
  }
  std::string out_;
  int depth_ = 0;
  bool need_comma_ = false;
};

std::string Dollars(int64_t cents) {
  return absl::StrCat(billing::FormatCents(cents));
}

std::string Power(double w) {
  if (w >= kUnlimitedMw / 1000.0 * 0.5) return "unlimited";
  if (std::fabs(w) >= 1e6) return absl::StrFormat("%.2f MW", w / 1e6);
  if (std::fabs(w) >= 1e3) return absl::StrFormat("%.1f kW", w / 1e3);
  return absl::StrFormat("%.0f W", w);
}

// `text` cut in the middle ("a/very/lo…file.csv") to at most `max` chars,
// so that a title stays inside the frame.
std::string Fit(const std::string& text, size_t max) {
  if (text.size() <= max || max < 5) return text;
  const size_t keep = max - 1;
  return absl::StrCat(text.substr(0, keep / 2), "\u2026",
                      text.substr(text.size() - (keep - keep / 2)));
}

// "$15,390,000" from cents: whole dollars with thousands separators.
std::string Dollars(double cents) {
  const int64_t d = static_cast<int64_t>(std::llround(cents / 100));
  std::string digits = absl::StrCat(d < 0 ? -d : d), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return absl::StrCat(d < 0 ? "-$" : "$", out);
}

// An SVG text-safe copy of `s` (&, <, >).
std::string Esc(const std::string& s) {
  return absl::StrReplaceAll(s, {{"&", "&amp;"}, {"<", "&lt;"}, {">", "&gt;"}});
}

}  // namespace

std::string ReportJson(const RunInfo& info,
                       const std::vector<SimResult>& results,
                       bool include_runtime) {
  Json j;
  j.Open();
  j.Open("run");
  j.S("cluster", info.cluster_source);
  j.Int("nodes", info.nodes);
  j.Int("gpus", info.gpus);
  j.Int("domains", info.domains);
  j.S("workload", info.workload_source);
  j.Int("rows_read", info.import.rows);
  j.Int("jobs", info.import.jobs);
  j.Open("rows_skipped");
  for (const auto& [reason, n] : info.import.skipped) j.Int(reason, n);
  j.Close();
  j.Int("seed", static_cast<int64_t>(info.seed));
  const SimOptions& o = info.options;
  j.Num("tick_s", o.tick_ms / 1000.0);
  j.Num("schedule_interval_s", o.schedule_interval_ms / 1000.0);
  j.Int("queue_window", o.queue_window);
  j.Num("default_load", o.default_load);
  j.Field("load_cdf", o.load_cdf != nullptr ? "true" : "false");
  j.Num("power_noise", o.power_noise);
  j.Num("throttle_alpha", o.throttle_alpha);
  j.Num("throttle_knee", o.throttle_knee);
  j.Num("max_runtime_factor", o.max_runtime_factor);
  j.Field("time_limits", o.time_limits ? "true" : "false");
  j.Field("throttleable", o.throttleable ? "true" : "false");
  j.Int("measured_percentile", o.measured_percentile);
  j.Int("measured_margin_pct", o.measured_margin_pct);
  j.Open("measured_plus");
  j.Field("commit",
          o.plus_commit.kind == scheduler::MeasuredCommitRule::kFloorClamp
              ? "\"floor-clamp\""
              : "\"percentile\"");
  j.Int("percentile", o.plus_commit.percentile);
  j.Int("margin_pct", o.plus_commit.margin_pct);
  j.Int("high_percentile", o.plus_commit.high_percentile);
  j.Field("class_floors", o.class_floors.enabled ? "true" : "false");
  j.Int("floor_reserved_permille", o.class_floors.reserved_permille);
  j.Int("floor_on_demand_permille", o.class_floors.on_demand_permille);
  j.Int("floor_spot_permille", o.class_floors.spot_permille);
  j.Int("floor_reserved_start_permille",
        o.class_floors.reserved_start_permille);
  j.Int("floor_on_demand_start_permille",
        o.class_floors.on_demand_start_permille);
  j.Int("floor_spot_start_permille", o.class_floors.spot_start_permille);
  j.Field("power_fit",
          absl::StrCat("\"", scheduler::PowerFitName(o.power_fit), "\""));
  j.Int("margin_min_permille", o.margin.min_permille);
  j.Int("margin_max_permille", o.margin.max_permille);
  j.Int("margin_initial_permille", o.margin.initial_permille);
  j.Int("margin_near_permille", o.margin.near_permille);
  j.Int("margin_up_permille", o.margin.up_permille);
  j.Int("margin_down_permille", o.margin.down_permille);
  j.Int("margin_quiet_intervals", o.margin.quiet_intervals);
  j.Field("margin_cut_hold", o.margin.hold_after_cap_cut ? "true" : "false");
  j.Num("min_raise_interval_s", o.min_raise_interval_ms / 1000.0);
  j.Close();
  j.Close();
  j.OpenArray("policies");
  for (const SimResult& r : results) {
    j.Open();
    j.S("policy", r.policy);
    j.Open("jobs");
    j.Int("total", r.jobs_total);
    j.Int("completed", r.jobs_completed);
    j.Int("killed_at_max_runtime", r.jobs_killed_max_runtime);
    j.Int("never_started", r.jobs_never_started);
    j.Int("infeasible", r.jobs_infeasible);
    j.Int("running_at_end", r.jobs_running_at_end);
    j.Int("attempts", r.attempts);
    j.Close();
    j.Num("gpu_hours_allocated", r.gpu_hours_allocated);
    j.Num("gpu_hours_completed_work", r.gpu_hours_completed_work);
    j.Num("gpu_hours_lost_to_preemption", r.gpu_hours_lost_to_preemption);
    j.Num("makespan_s", r.makespan_s);
    j.Open("queue_delay_s");
    j.Num("mean", r.queue_delay_mean_s);
    j.Num("p50", r.queue_delay_p50_s);
    j.Num("p95", r.queue_delay_p95_s);
    j.Num("p99", r.queue_delay_p99_s);
    j.Close();
    j.Open("queue_delay_censored_s");
    j.Num("mean", r.queue_delay_censored_mean_s);
    j.Num("p95", r.queue_delay_censored_p95_s);
    j.Int("waiting_at_end", r.jobs_waiting_at_end);
    j.Close();
    j.Num("slowdown_mean", r.slowdown_mean);
    j.Num("gpu_allocation_ratio", r.gpu_allocation_ratio);
    j.Num("energy_kwh", r.energy_kwh);
    j.Num("gpu_energy_kwh", r.gpu_energy_kwh);
    j.Open("power_control");
    j.Int("throttles", r.throttle_actions);
    j.Int("restores", r.restore_actions);
    j.Int("preemptions_power", r.preemptions_power);
    j.Int("preemptions_reserved", r.preemptions_reserved);
    j.Int("schedule_calls", r.schedule_calls);
    j.Int("control_calls", r.control_calls);
    j.Close();
    j.OpenArray("levels");
    for (const LevelStats& l : r.levels) {
      j.Open();
      j.S("level", l.level);
      j.Int("domains", l.domains);
      j.Num("mean_measured_w", l.mean_measured_w);
      j.Field("mean_cap_w", l.mean_cap_w >= kUnlimitedMw / 2000.0
                                ? "null"
                                : sim::Num(l.mean_cap_w));
      j.Num("max_measured_w", l.max_measured_w);
      j.Num("max_measured_over_cap", l.max_measured_over_cap);
      j.Num("seconds_over_cap", l.seconds_over_cap);
      j.Num("seconds_over_cap_beyond_two_ticks",
            l.seconds_over_cap_beyond_two_ticks);
      j.Num("watt_seconds_over_cap", l.watt_seconds_over_cap);
      j.Int("domains_ever_over_cap", l.domains_ever_over);
      j.Int("tick_breaches", l.tick_breaches);
      j.Open("used_share_of_cap");
      j.Num("mean", l.used_share_mean);
      j.Num("p50", l.used_share_p50);
      j.Num("p95", l.used_share_p95);
      j.Close();
      j.Open("stranded_w");
      j.Num("below_admission_margin", l.stranded_margin_w);
      j.Num("fragmentation", l.stranded_fragmentation_w);
      j.Num("not_throttleable_waiting", l.stranded_not_throttleable_w);
      j.Num("gpus_full", l.stranded_gpus_full_w);
      j.Num("no_demand", l.stranded_no_demand_w);
      j.Num("usable_next_round", l.stranded_usable_w);
      j.Close();
      j.Num("idle_floor_w", l.idle_floor_w);
      j.Close();
    }
    j.CloseArray();
    j.Open("revenue_cents");
    for (const auto& [model, cents] : r.revenue_cents) j.Int(model, cents);
    j.Int("total", r.revenue_total_cents);
    j.Close();
    j.Int("backlog_cents", r.backlog_cents);
    j.Int("usage_events_recorded", r.usage_events);
    j.OpenArray("billing_errors");
    for (const std::string& e : r.billing_errors) j.Item(Str(e));
    j.CloseArray();
    j.Num("simulated_s", r.sim_seconds);
    j.OpenArray("timeline");
    for (const TimelinePoint& p : r.timeline) {
      j.Item(absl::StrCat("[", Num(p.time_s), ", ", Num(p.site_measured_w),
                          ", ", Num(p.site_cap_w), ", ", Num(p.running_gpus),
                          ", ", Num(p.pending_jobs), "]"));
    }
    j.CloseArray();
    if (include_runtime) {
      j.Open("simulator");
      j.Num("wall_s", r.wall_s);
      j.Int("events", r.events);
      j.Num("events_per_s", r.events_per_s);
      j.Close();
    }
    j.Close();
  }
  j.CloseArray();
  if (include_runtime) j.Int("peak_rss_bytes", info.peak_rss_bytes);
  j.Close();
  return j.Take();
}

std::string ReportText(const RunInfo& info,
                       const std::vector<SimResult>& results) {
  std::string out;
  absl::StrAppend(&out, "cluster:  ", info.cluster_source, " (", info.nodes,
                  " nodes, ", info.gpus, " GPUs, ", info.domains,
                  " power domains)\n");
  absl::StrAppend(&out, "workload: ", info.workload_source, " (",
                  info.import.jobs, " jobs from ", info.import.rows, " rows");
  for (const auto& [reason, n] : info.import.skipped) {
    absl::StrAppend(&out, "; skipped ", n, " ", reason);
  }
  absl::StrAppend(&out, ")\n");
  for (const SimResult& r : results) {
    absl::StrAppend(&out, "\n== policy ", r.policy, " ==\n");
    absl::StrAppendFormat(
        &out,
        "jobs: %d completed, %d killed at max runtime, %d never started "
        "(%d infeasible), %d running at end; %d attempts\n",
        r.jobs_completed, r.jobs_killed_max_runtime, r.jobs_never_started,
        r.jobs_infeasible, r.jobs_running_at_end, r.attempts);
    absl::StrAppendFormat(
        &out,
        "GPU-hours: %.1f allocated, %.1f of completed work, %.1f lost to "
        "preemption\n",
        r.gpu_hours_allocated, r.gpu_hours_completed_work,
        r.gpu_hours_lost_to_preemption);
    absl::StrAppendFormat(
        &out,
        "makespan %.2f h; queueing delay mean %.0f s, p50 %.0f s, p95 %.0f "
        "s, p99 %.0f s; mean slowdown %.2f\n",
        r.makespan_s / 3600, r.queue_delay_mean_s, r.queue_delay_p50_s,
        r.queue_delay_p95_s, r.queue_delay_p99_s, r.slowdown_mean);
    absl::StrAppendFormat(
        &out,
        "queueing delay with the %d jobs waiting at the end counted to the "
        "end: mean %.0f s, p95 %.0f s\n",
        r.jobs_waiting_at_end, r.queue_delay_censored_mean_s,
        r.queue_delay_censored_p95_s);
    absl::StrAppendFormat(
        &out, "GPU allocation ratio %.3f; energy %.1f kWh (GPUs %.1f kWh)\n",
        r.gpu_allocation_ratio, r.energy_kwh, r.gpu_energy_kwh);
    absl::StrAppendFormat(
        &out,
        "power loop: %d throttles, %d restores, %d preemptions (power), %d "
        "preemptions (reserved); %d schedule calls, %d control calls\n",
        r.throttle_actions, r.restore_actions, r.preemptions_power,
        r.preemptions_reserved, r.schedule_calls, r.control_calls);
    absl::StrAppend(&out,
                    "  level   domains  mean meas.  mean cap   max meas.  "
                    "max/cap  s over cap   W·s over cap  ever over\n");
    for (const LevelStats& l : r.levels) {
      absl::StrAppendFormat(
          &out, "  %-7s %7d  %10s  %10s  %10s  %6.3f  %10.0f  %13.4g  %9d\n",
          l.level, l.domains, Power(l.mean_measured_w), Power(l.mean_cap_w),
          Power(l.max_measured_w), l.max_measured_over_cap, l.seconds_over_cap,
          l.watt_seconds_over_cap, l.domains_ever_over);
    }
    absl::StrAppend(
        &out,
        "  level   used/cap mean p50 p95  | stranded per domain: margin  "
        "fragm.  not-thr.  GPUs full  no demand  usable | idle floor  "
        "breaches  s over >2 ticks\n");
    for (const LevelStats& l : r.levels) {
      if (l.mean_cap_w >= kUnlimitedMw / 2000.0) continue;
      absl::StrAppendFormat(
          &out,
          "  %-7s %5.3f %5.3f %5.3f         | %21s %7s %9s %10s %10s %7s | "
          "%10s %9d  %.0f\n",
          l.level, l.used_share_mean, l.used_share_p50, l.used_share_p95,
          Power(l.stranded_margin_w), Power(l.stranded_fragmentation_w),
          Power(l.stranded_not_throttleable_w), Power(l.stranded_gpus_full_w),
          Power(l.stranded_no_demand_w), Power(l.stranded_usable_w),
          Power(l.idle_floor_w), l.tick_breaches,
          l.seconds_over_cap_beyond_two_ticks);
    }
    absl::StrAppend(&out, "revenue:");
    for (const auto& [model, cents] : r.revenue_cents) {
      absl::StrAppend(&out, " ", model, " $", Dollars(cents), ";");
    }
    absl::StrAppend(&out, " total $", Dollars(r.revenue_total_cents),
                    "; backlog at end $", Dollars(r.backlog_cents), "\n");
    if (!r.billing_errors.empty()) {
      absl::StrAppend(&out, "billing errors: ",
                      absl::StrJoin(r.billing_errors, " | "), "\n");
    }
    for (const std::string& e : r.infeasible_examples) {
      absl::StrAppend(&out, "infeasible: ", e, "\n");
    }
    absl::StrAppendFormat(
        &out,
        "simulator: %.1f simulated h in %.2f s wall, %d events, %.0f "
        "events/s\n",
        r.sim_seconds / 3600, r.wall_s, r.events, r.events_per_s);
  }
  absl::StrAppendFormat(&out, "\npeak RSS %.1f MiB\n",
                        info.peak_rss_bytes / 1048576.0);
  return out;
}

std::string ReportSvg(const RunInfo& info,
                      const std::vector<SimResult>& results) {
  static constexpr const char* kColors[] = {"#d62728", "#1f77b4", "#2ca02c",
                                            "#9467bd", "#ff7f0e"};
  const double W = 900, H = 660 + 40 + 24.0 * results.size() + 40, left = 80,
               right = 20, top = 40;
  const double ph = 260;  // panel height
  std::string s = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" "
      "height=\"%.0f\" font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
      W, H);
  // The title fits the frame: about 8 px a character at 14 px bold.
  const std::string title =
      absl::StrFormat(" (%d nodes, %d GPUs)", info.nodes, info.gpus);
  absl::StrAppendFormat(
      &s,
      "<text x=\"10\" y=\"20\" font-size=\"14\" font-weight=\"bold\">"
      "joule-sim: %s%s</text>\n",
      Esc(Fit(info.workload_source,
              static_cast<size_t>((W - 20) / 8) - 11 - title.size())),
      title);
  // Panel 1: site power over time.
  double tmin = 1e300, tmax = 0, pmax = 1;
  for (const SimResult& r : results) {
    for (const TimelinePoint& p : r.timeline) {
      tmin = std::min(tmin, p.time_s);
      tmax = std::max(tmax, p.time_s);
      pmax = std::max(
          {pmax, p.site_measured_w, p.site_cap_w < 1e14 ? p.site_cap_w : 0.0});
    }
  }
  pmax *= 1.1;
  if (tmin > tmax) tmin = 0;
  if (tmax <= tmin) tmax = tmin + 1;
  const double pw = W - left - right;
  auto X = [&](double t) { return left + pw * (t - tmin) / (tmax - tmin); };
  auto Y = [&](double p) { return top + ph - ph * p / pmax; };
  absl::StrAppendFormat(&s,
                        "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" "
                        "height=\"%.0f\" fill=\"none\" stroke=\"#999\"/>\n",
                        left, top, pw, ph);
  for (int i = 0; i <= 4; ++i) {
    const double p = pmax * i / 4;
    absl::StrAppendFormat(
        &s, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
        left - 4, Y(p) + 4, Power(p));
    const double t = tmin + (tmax - tmin) * i / 4;
    absl::StrAppendFormat(
        &s,
        "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%.2f h</text>\n",
        X(t), top + ph + 16, t / 3600);
  }
  absl::StrAppendFormat(&s,
                        "<text x=\"%.0f\" y=\"%.0f\">site power (mean per "
                        "tick bucket) and site cap</text>\n",
                        left + 6, top + 14);
  for (size_t k = 0; k < results.size(); ++k) {
    const SimResult& r = results[k];
    std::string pts, cap;
    for (const TimelinePoint& p : r.timeline) {
      absl::StrAppendFormat(&pts, "%.1f,%.1f ", X(p.time_s),
                            Y(p.site_measured_w));
      if (p.site_cap_w < 1e14) {
        absl::StrAppendFormat(&cap, "%.1f,%.1f ", X(p.time_s), Y(p.site_cap_w));
      }
    }
    absl::StrAppendFormat(&s,
                          "<polyline fill=\"none\" stroke=\"%s\" "
                          "stroke-width=\"1.2\" points=\"%s\"/>\n",
                          kColors[k % 5], pts);
    if (k == 0 && !cap.empty()) {
      absl::StrAppendFormat(&s,
                            "<polyline fill=\"none\" stroke=\"black\" "
                            "stroke-dasharray=\"6,3\" points=\"%s\"/>\n",
                            cap);
    }
    // The legend: one row under the time axis, clear of the curves.
    absl::StrAppendFormat(
        &s, "<text x=\"%.0f\" y=\"%.0f\" fill=\"%s\">%s</text>\n",
        left + 130.0 * k, top + ph + 34, kColors[k % 5], r.policy);
  }
  absl::StrAppendFormat(&s, "<text x=\"%.0f\" y=\"%.0f\">- - site cap</text>\n",
                        left + 130.0 * results.size(), top + ph + 34);
  // Panel 2: metrics relative to the largest value.
  struct Metric {
    const char* name;
    double (*get)(const SimResult&);
  };
  const Metric metrics[] = {
      {"GPU-h completed",
       [](const SimResult& r) { return r.gpu_hours_completed_work; }},
      {"alloc. ratio",
       [](const SimResult& r) { return r.gpu_allocation_ratio; }},
      {"mean queue delay",
       [](const SimResult& r) { return r.queue_delay_mean_s; }},
      {"p95 queue delay",
       [](const SimResult& r) { return r.queue_delay_p95_s; }},
      {"mean delay, waiting counted",
       [](const SimResult& r) { return r.queue_delay_censored_mean_s; }},
      {"site W·s over cap",
       [](const SimResult& r) {
         return r.levels.empty() ? 0.0 : r.levels[0].watt_seconds_over_cap;
       }},
      {"rack s over cap",
       [](const SimResult& r) {
         for (const LevelStats& l : r.levels) {
           if (l.level == "rack") return l.seconds_over_cap;
         }
         return 0.0;
       }},
      {"throttles",
       [](const SimResult& r) {
         return static_cast<double>(r.throttle_actions);
       }},
      {"preemptions",
       [](const SimResult& r) {
         return static_cast<double>(r.preemptions_power +
                                    r.preemptions_reserved);
       }},
      {"revenue (USD)",
       [](const SimResult& r) {
         return static_cast<double>(r.revenue_total_cents);
       }},
  };
  const double top2 = top + ph + 60, ph2 = 220;
  absl::StrAppendFormat(&s,
                        "<text x=\"%.0f\" y=\"%.0f\">each metric relative to "
                        "the largest policy value (value printed)</text>\n",
                        left, top2 - 8);
  const size_t nm = std::size(metrics);
  const double gw = pw / nm;
  const double bw =
      std::min(24.0, (gw - 10) / std::max<size_t>(1, results.size()));
  for (size_t m = 0; m < nm; ++m) {
    double mx = 0;
    for (const SimResult& r : results) mx = std::max(mx, metrics[m].get(r));
    for (size_t k = 0; k < results.size(); ++k) {
      const double v = metrics[m].get(results[k]);
      const double h = mx > 0 ? ph2 * v / mx : 0;
      const double x = left + gw * m + 5 + bw * k;
      absl::StrAppendFormat(&s,
                            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
                            "height=\"%.1f\" fill=\"%s\"/>\n",
                            x, top2 + ph2 - h, bw - 2, h, kColors[k % 5]);
      absl::StrAppendFormat(
          &s,
          "<text x=\"%.1f\" y=\"%.1f\" font-size=\"9\" transform=\"rotate(-90 "
          "%.1f %.1f)\">%s</text>\n",
          x + bw / 2 + 3, top2 + ph2 - h - 3, x + bw / 2 + 3,
          top2 + ph2 - h - 3,
          // Money in dollars, not "1.539e+07" cents.
          m + 1 == nm ? Dollars(v) : absl::StrFormat("%.4g", v));
    }
    // Two lines per name (split at the middle space) so that neighbours
    // never overlap: a group is about 89 px, 16 characters at 10 px.
    const std::string name = metrics[m].name;
    size_t cut = std::string::npos;
    for (size_t i = 0; i < name.size(); ++i) {
      if (name[i] == ' ' &&
          (cut == std::string::npos ||
           std::abs(static_cast<int>(i) - static_cast<int>(name.size() / 2)) <
               std::abs(static_cast<int>(cut) -
                        static_cast<int>(name.size() / 2)))) {
        cut = i;
      }
    }
    const std::string line1 = name.size() > 12 && cut != std::string::npos
                                  ? name.substr(0, cut)
                                  : name;
    const std::string line2 =
        line1.size() < name.size() ? name.substr(cut + 1) : std::string();
    absl::StrAppendFormat(&s,
                          "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\" "
                          "font-size=\"10\">%s<tspan x=\"%.1f\" "
                          "dy=\"12\">%s</tspan></text>\n",
                          left + gw * m + gw / 2, top2 + ph2 + 14, Esc(line1),
                          left + gw * m + gw / 2, Esc(line2));
  }
  absl::StrAppendFormat(&s,
                        "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" "
                        "stroke=\"#999\"/>\n",
                        left, top2 + ph2, W - right, top2 + ph2);
  // Panel 3: where the watts go at the deepest capped level, as shares of
  // its mean cap (stacked bars, one per policy).
  const LevelStats* deepest = nullptr;
  for (const SimResult& r : results) {
    for (const LevelStats& l : r.levels) {
      if (l.mean_cap_w > 0 && l.mean_cap_w < kUnlimitedMw / 2000.0) {
        deepest = &l;
      }
    }
    break;
  }
  if (deepest != nullptr) {
    const std::string level = deepest->level;
    const double top3 = top2 + ph2 + 50;
    absl::StrAppendFormat(
        &s,
        "<text x=\"%.0f\" y=\"%.0f\">where the watts go per %s, share of "
        "its cap (time mean)</text>\n",
        left, top3 - 8, level);
    struct Part {
      const char* name;
      const char* color;
    };
    static constexpr Part kParts[] = {
        {"used by jobs", "#4c78a8"},     {"idle floor", "#9ecae9"},
        {"margin", "#f58518"},           {"fragmentation", "#e45756"},
        {"not throttleable", "#b279a2"}, {"GPUs full", "#bab0ac"},
        {"no demand", "#eeeeee"},        {"usable / held", "#54a24b"}};
    for (size_t k = 0; k < results.size(); ++k) {
      const LevelStats* l = nullptr;
      for (const LevelStats& x : results[k].levels) {
        if (x.level == level) l = &x;
      }
      if (l == nullptr || l->mean_cap_w <= 0) continue;
      const double cap = l->mean_cap_w;
      const double v[] = {l->mean_measured_w - l->idle_floor_w,
                          l->idle_floor_w,
                          l->stranded_margin_w,
                          l->stranded_fragmentation_w,
                          l->stranded_not_throttleable_w,
                          l->stranded_gpus_full_w,
                          l->stranded_no_demand_w,
                          l->stranded_usable_w};
      const double y = top3 + 24.0 * k;
      double x = left + 110;
      const double bar = pw - 110;
      absl::StrAppendFormat(
          &s, "<text x=\"%.0f\" y=\"%.0f\" fill=\"%s\">%s</text>\n", left,
          y + 14, kColors[k % 5], results[k].policy);
      for (size_t i = 0; i < std::size(kParts); ++i) {
        const double w = std::max(0.0, bar * v[i] / cap);
        absl::StrAppendFormat(&s,
                              "<rect x=\"%.1f\" y=\"%.0f\" width=\"%.1f\" "
                              "height=\"18\" fill=\"%s\"><title>%s %.1f%%"
                              "</title></rect>\n",
                              x, y, w, kParts[i].color, kParts[i].name,
                              100 * v[i] / cap);
        x += w;
      }
    }
    const double ly = top3 + 24.0 * results.size() + 14;
    for (size_t i = 0; i < std::size(kParts); ++i) {
      const double lx = left + (pw / 4) * (i % 4);
      const double yy = ly + 16 * (i / 4);
      absl::StrAppendFormat(
          &s,
          "<rect x=\"%.0f\" y=\"%.0f\" width=\"10\" height=\"10\" "
          "fill=\"%s\" stroke=\"#999\"/><text x=\"%.0f\" y=\"%.0f\" "
          "font-size=\"10\">%s</text>\n",
          lx, yy - 9, kParts[i].color, lx + 14, yy, kParts[i].name);
    }
  }
  s += "</svg>\n";
  return s;
}

}  // namespace joule::sim
