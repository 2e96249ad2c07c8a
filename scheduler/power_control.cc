#include "scheduler/power_control.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/units.h"

namespace joule::scheduler {
namespace {

struct JobState {
  const RunningJob* src = nullptr;
  int64_t limit_mw = 0;
  int64_t est_mw = 0;  // estimated draw per GPU
  int64_t gpus = 0;
  // (domain, GPUs of this job under it) for every domain it spans.
  std::vector<std::pair<int, int64_t>> under;
  int action = -1;  // index into the output
  bool preempted = false;
  bool near_over_cap = false;  // has a GPU under a domain over cap at start
};

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

class Controller {
 public:
  Controller(const ClusterSnapshot& snap, const PowerControlConfig& config)
      : snap_(snap), config_(config) {}

  std::vector<PowerAction> Run();

 private:
  std::string DomainWords(int d) const {
    const DomainSnapshot& dom = snap_.domains[d];
    return absl::StrCat(dom.level.empty() ? "domain" : dom.level, " ",
                        dom.name);
  }
  // Lowers every domain the job spans by `per_gpu` × its GPUs there.
  void Save(JobState& j, int64_t per_gpu) {
    for (const auto& [d, g] : j.under) measured_[d] -= g * per_gpu;
  }
  void Act(JobState& j, PowerAction::Kind kind, int64_t limit,
           std::string reason) {
    if (j.action < 0) {
      j.action = static_cast<int>(out_.size());
      out_.push_back(PowerAction{kind, j.src->id, limit, std::move(reason)});
    } else {
      out_[j.action] = PowerAction{kind, j.src->id, limit, std::move(reason)};
    }
  }
  void HandleOverCap(int d);
  void Restore();

  const ClusterSnapshot& snap_;
  const PowerControlConfig& config_;
  std::vector<int> parent_;
  std::vector<int64_t> measured_;
  std::vector<JobState> jobs_;
  std::vector<std::vector<std::pair<int, int64_t>>> domain_jobs_;  // (job, g)
  std::vector<PowerAction> out_;
};

std::vector<PowerAction> Controller::Run() {
  const int num_domains = static_cast<int>(snap_.domains.size());
  const int num_nodes = static_cast<int>(snap_.nodes.size());
  parent_.resize(num_domains);
  std::vector<int> depth(num_domains);
  measured_.resize(num_domains);
  for (int d = 0; d < num_domains; ++d) {
    const int p = snap_.domains[d].parent;
    parent_[d] = (p >= 0 && p < d) ? p : -1;
    depth[d] = parent_[d] < 0 ? 0 : depth[parent_[d]] + 1;
    measured_[d] = snap_.domains[d].measured_mw;
  }
  domain_jobs_.resize(num_domains);
  for (const RunningJob& r : snap_.running) {
    JobState j;
    j.src = &r;
    j.limit_mw = r.limit_mw;
    j.est_mw =
        std::max<int64_t>(0, std::min(r.measured_per_gpu_mw, r.limit_mw));
    // (domain, GPUs) per share and domain on its path, then summed per
    // domain in domain order.
    for (const JobShare& s : r.shares) {
      if (s.node < 0 || s.node >= num_nodes) continue;
      const int leaf = snap_.nodes[s.node].domain;
      if (leaf < 0 || leaf >= num_domains) continue;
      j.gpus += s.gpus.size();
      for (int d = leaf; d >= 0; d = parent_[d]) {
        j.under.push_back({d, static_cast<int64_t>(s.gpus.size())});
      }
    }
    std::sort(j.under.begin(), j.under.end());
    size_t kept = 0;
    for (size_t i = 0; i < j.under.size(); ++i) {
      if (kept > 0 && j.under[kept - 1].first == j.under[i].first) {
        j.under[kept - 1].second += j.under[i].second;
      } else {
        j.under[kept++] = j.under[i];
      }
    }
    j.under.resize(kept);
    for (const auto& [d, g] : j.under) {
      if (snap_.domains[d].measured_mw > snap_.domains[d].cap_mw) {
        j.near_over_cap = true;
      }
      domain_jobs_[d].push_back({static_cast<int>(jobs_.size()), g});
    }
    jobs_.push_back(std::move(j));
  }
  std::vector<int> order;
  for (int d = 0; d < num_domains; ++d) {
    if (measured_[d] > snap_.domains[d].cap_mw) order.push_back(d);
  }
  std::sort(order.begin(), order.end(), [&depth](int a, int b) {
    return std::make_pair(-depth[a], a) < std::make_pair(-depth[b], b);
  });
  for (int d : order) HandleOverCap(d);
  Restore();
  return std::move(out_);
}

void Controller::HandleOverCap(int d) {
  const int64_t cap = snap_.domains[d].cap_mw;
  if (measured_[d] <= cap) return;
  const std::string reason =
      absl::StrCat(DomainWords(d), " measured ", FormatPower(measured_[d]),
                   " > cap ", FormatPower(cap));
  // Least important first: spot, on-demand, reserved; lowest priority; most
  // recently started; id.
  std::vector<std::pair<int, int64_t>> cands = domain_jobs_[d];
  std::sort(cands.begin(), cands.end(), [this](const auto& x, const auto& y) {
    const RunningJob& a = *jobs_[x.first].src;
    const RunningJob& b = *jobs_[y.first].src;
    if (a.cls != b.cls) return a.cls > b.cls;
    if (a.priority != b.priority) return a.priority < b.priority;
    if (a.start_time != b.start_time) return a.start_time > b.start_time;
    return a.id < b.id;
  });
  // Class by class, least important first: throttle the class to its
  // floors, then preempt it, before the next class is touched. So a job is
  // never throttled while a job of a lower class in the domain still runs
  // above its floor.
  for (const ServiceClass cls : {ServiceClass::kSpot, ServiceClass::kOnDemand,
                                 ServiceClass::kReserved}) {
    for (const auto& [ji, g] : cands) {
      const int64_t excess = measured_[d] - cap;
      if (excess <= 0) return;
      JobState& j = jobs_[ji];
      if (j.src->cls != cls) continue;
      const int64_t floor = std::max<int64_t>(0, j.src->min_mw);
      if (j.preempted || g <= 0 || j.limit_mw <= floor || j.est_mw <= floor) {
        continue;
      }
      const int64_t new_limit = std::max(floor, j.est_mw - CeilDiv(excess, g));
      if (new_limit >= j.limit_mw) continue;
      Save(j, j.est_mw - new_limit);
      j.est_mw = new_limit;
      j.limit_mw = new_limit;
      Act(j, PowerAction::kThrottle, new_limit, reason);
    }
    for (const auto& [ji, g] : cands) {
      if (measured_[d] <= cap) return;
      JobState& j = jobs_[ji];
      if (j.src->cls != cls) continue;
      // During its stop grace a victim runs at its GPUs' minimum limit
      // (stop_floor_per_gpu_mw), then idles: the cap must hold meanwhile.
      const int64_t stays = std::clamp<int64_t>(
          std::max(j.src->idle_per_gpu_mw, j.src->stop_floor_per_gpu_mw), 0,
          j.est_mw);
      // A job drawing no more than that would save nothing by going.
      if (j.preempted || g <= 0 || j.est_mw <= stays) continue;
      Save(j, j.est_mw - stays);
      j.est_mw = stays;
      j.preempted = true;
      Act(j, PowerAction::kPreempt, 0,
          cls == ServiceClass::kReserved
              ? absl::StrCat(reason,
                             "; last resort: no spot or on-demand job left "
                             "to throttle or preempt")
              : absl::StrCat(reason, "; throttling to minimum was not enough"));
    }
  }
}

void Controller::Restore() {
  std::vector<int> cands;
  for (int i = 0; i < static_cast<int>(jobs_.size()); ++i) {
    const JobState& j = jobs_[i];
    if (j.action < 0 && !j.near_over_cap &&
        j.src->limit_mw < j.src->requested_mw && !j.under.empty()) {
      cands.push_back(i);
    }
  }
  // Most important first: reserved, on-demand, spot; highest priority;
  // earliest started; id.
  std::sort(cands.begin(), cands.end(), [this](int x, int y) {
    const RunningJob& a = *jobs_[x].src;
    const RunningJob& b = *jobs_[y].src;
    if (a.cls != b.cls) return a.cls < b.cls;
    if (a.priority != b.priority) return a.priority > b.priority;
    if (a.start_time != b.start_time) return a.start_time < b.start_time;
    return a.id < b.id;
  });
  for (int i : cands) {
    JobState& j = jobs_[i];
    if (j.src->limit_changed_at != absl::InfinitePast() &&
        snap_.now - j.src->limit_changed_at < config_.min_raise_interval) {
      continue;  // hysteresis
    }
    const int64_t want = j.src->requested_mw - j.src->limit_mw;
    int64_t per_gpu = want;
    for (const auto& [d, g] : j.under) {
      const int64_t cap = snap_.domains[d].cap_mw;
      const int64_t margin = cap * config_.restore_margin_permille / 1000;
      const int64_t room = cap - margin - measured_[d];
      if (g <= 0) continue;
      if (room < g * per_gpu) per_gpu = room < 0 ? 0 : room / g;
      if (!config_.partial_raise && per_gpu < want) break;
    }
    if (per_gpu <= 0) continue;
    if (per_gpu < want &&
        (!config_.partial_raise ||
         per_gpu < j.src->requested_mw * config_.min_raise_permille / 1000)) {
      continue;
    }
    const int64_t new_limit = j.src->limit_mw + per_gpu;
    Save(j, -per_gpu);
    Act(j, PowerAction::kRestore, new_limit,
        absl::StrFormat("%s to %s per GPU: +%s keeps every domain at "
                        "least %.1f%% under cap",
                        per_gpu < want ? "raise" : "restore",
                        FormatPower(new_limit), FormatPower(per_gpu * j.gpus),
                        config_.restore_margin_permille / 10.0));
  }
}

}  // namespace

std::vector<PowerAction> ControlPower(const ClusterSnapshot& snapshot,
                                      const PowerControlConfig& config) {
  Controller controller(snapshot, config);
  return controller.Run();
}

}  // namespace joule::scheduler
