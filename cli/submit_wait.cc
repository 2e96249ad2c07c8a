#include "cli/submit_wait.h"

#include "absl/container/flat_hash_set.h"
#include "joule/v1/joule.grpc.pb.h"

namespace joule::cli {
namespace {

// The ids in `jobs` that have not ended.
absl::flat_hash_set<std::string> Open(const std::vector<v1::Job>& jobs) {
  absl::flat_hash_set<std::string> open;
  for (const v1::Job& j : jobs) {
    if (!JobEnded(j.state())) open.insert(j.id());
  }
  return open;
}

}  // namespace

std::optional<std::vector<v1::Job>> WaitOnStream(
    const WatchConnection& c, const std::string& job_id,
    const std::function<std::vector<v1::Job>()>& read) {
  auto stub = v1::AdminService::NewStub(c.channel);
  grpc::ClientContext ctx;
  c.authorize(&ctx);
  v1::WatchEventsRequest req;
  req.set_job_id(job_id);
  req.set_jobs(true);
  req.set_no_events(true);  // only state changes
  auto stream = stub->WatchEvents(&ctx, req);
  v1::WatchEventsResponse m;
  // Nothing is missed after `subscribed`; what ended before it, the first
  // read shows.
  if (!stream->Read(&m) || !m.subscribed()) {
    ctx.TryCancel();
    (void)stream->Finish();
    return std::nullopt;
  }
  std::vector<v1::Job> jobs = read();
  absl::flat_hash_set<std::string> open = Open(jobs);
  while (!open.empty()) {
    if (!stream->Read(&m)) break;
    if (!m.has_job() || !JobEnded(m.job().state())) continue;
    if (open.erase(m.job().job_id()) == 0 || !open.empty()) continue;
    jobs = read();  // every job seen ending: their final records
    open = Open(jobs);
  }
  ctx.TryCancel();
  (void)stream->Finish();
  if (!open.empty()) return std::nullopt;
  return jobs;
}

}  // namespace joule::cli
