#include "cli/watch_commands.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <optional>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "cli/csv.h"
#include "cli/format.h"
#include "cli/output.h"
#include "cli/session.h"
#include "common/proto_names.h"
#include "common/proto_time.h"
#include "google/protobuf/util/json_util.h"

namespace joule::cli {
namespace {

void Out(const std::string& s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

// joulectl's exit code for a failed call, with its one line on stderr.
int CallFailed(const WatchConnection& c, const grpc::Status& s) {
  const bool unreachable =
      s.error_code() == grpc::StatusCode::UNAVAILABLE ||
      (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
       absl::StrContains(s.error_message(), "connect"));
  if (unreachable) {
    std::string why = s.error_message();
    if (absl::StrContains(absl::AsciiStrToLower(why), "connection refused")) {
      why = "connection refused";
    }
    if (!c.session.empty()) {
      std::fprintf(stderr, "joulectl: %s\n",
                   SessionUnreachable(c.session, s.error_message()).c_str());
      return 3;
    }
    std::fprintf(stderr, "joulectl: cannot reach jouled at %s: %s\n",
                 c.server.c_str(), why.c_str());
    return 3;
  }
  std::fprintf(stderr, "joulectl: %s\n", s.error_message().c_str());
  return 1;
}

int OutcomeCode(v1::JobState s) {
  switch (s) {
    case v1::JOB_STATE_SUCCEEDED:
      return 0;
    case v1::JOB_STATE_CANCELLED:
      return kWaitJobCancelled;
    default:
      return kWaitJobFailed;
  }
}

std::string CompactJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  o.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  return out;
}

std::string TimeText(const google::protobuf::Timestamp& t) {
  if (!IsSet(t)) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", FromProtoTime(t),
                          absl::UTCTimeZone());
}

// One streamed event in the current format: a line, a JSON line, a YAML
// document or a CSV record (header first).
std::string EventRecord(const v1::Event& e, bool first) {
  switch (CurrentOutputFormat()) {
    case OutputFormat::kJson:
      return CompactJson(e) + "\n";
    case OutputFormat::kYaml:
      return "---\n" + ToYaml(e);
    case OutputFormat::kCsv:
      return absl::StrCat(first ? "time,kind,subject,message\n" : "",
                          TimeText(e.time()), ",", CsvField(e.kind()), ",",
                          CsvField(e.subject()), ",", CsvField(e.message()),
                          "\n");
    default:
      return absl::StrCat(TimeText(e.time()), "  ", e.kind(), "  ", e.subject(),
                          "  ", e.message(), "\n");
  }
}

}  // namespace

bool JobEnded(v1::JobState s) {
  return s == v1::JOB_STATE_SUCCEEDED || s == v1::JOB_STATE_FAILED ||
         s == v1::JOB_STATE_CANCELLED;
}

int JobWait(const WatchConnection& c, const std::string& id,
            absl::Duration timeout) {
  const bool limited = timeout > absl::ZeroDuration();
  const absl::Time deadline =
      limited ? absl::Now() + timeout : absl::InfiniteFuture();
  auto stub = v1::AdminService::NewStub(c.channel);
  auto jobs = v1::JobService::NewStub(c.channel);
  auto get = [&](v1::Job* j) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     absl::ToChronoMilliseconds(c.call_timeout));
    c.authorize(&ctx);
    v1::GetJobRequest req;
    req.set_id(id);
    return jobs->GetJob(&ctx, req, j);
  };
  auto report = [&](const v1::Job& j) {
    if (!PrintStructured(j, /*csv_too=*/true)) {
      Out(absl::StrCat(j.id(), " ", JobStateName(j.state()), ": ", j.reason(),
                       " (exit code ", j.exit_code(), ")\n"));
    }
    return OutcomeCode(j.state());
  };
  int resubscribes = 0;
  while (true) {
    grpc::ClientContext ctx;
    if (limited) ctx.set_deadline(absl::ToChronoTime(deadline));
    c.authorize(&ctx);
    v1::WatchEventsRequest req;
    req.set_job_id(id);
    req.set_jobs(true);
    req.set_no_events(true);  // only the job's state changes
    auto stream = stub->WatchEvents(&ctx, req);
    v1::WatchEventsResponse m;
    bool subscribed = false;
    // Set once the answer is known: the job's end, or a failed GetJob.
    std::optional<int> code;
    while (!code && stream->Read(&m)) {
      const bool ended = m.has_job() && JobEnded(m.job().state());
      if (m.subscribed()) subscribed = true;
      // After `subscribed`, everything is streamed: the job may have ended
      // before, so read it once; and once more after its end.
      if (!m.subscribed() && !ended) continue;
      v1::Job j;
      grpc::Status s = get(&j);
      if (!s.ok()) {
        code = CallFailed(c, s);
      } else if (JobEnded(j.state())) {
        code = report(j);
      }
    }
    if (code) {
      ctx.TryCancel();
      (void)stream->Finish();
      return *code;
    }
    grpc::Status s = stream->Finish();
    if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED && limited &&
        absl::Now() >= deadline) {
      v1::Job j;
      const bool known = get(&j).ok();
      std::fprintf(
          stderr, "joulectl: job %s: not ended after %s%s\n", id.c_str(),
          absl::FormatDuration(timeout).c_str(),
          known ? absl::StrCat(" (", JobStateName(j.state()), ")").c_str()
                : "");
      return kWaitTimedOut;
    }
    // The stream was ended under us (jouled restarting, a failover, this
    // subscriber fell behind): subscribe again, a few times.
    const bool retry =
        subscribed && (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
                       s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
    if (!retry || ++resubscribes > 20) return CallFailed(c, s);
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

int FollowEvents(const WatchConnection& c, const std::string& kind) {
  std::fflush(stdout);  // the list printed before, then the stream
  auto stub = v1::AdminService::NewStub(c.channel);
  grpc::ClientContext ctx;
  c.authorize(&ctx);
  v1::WatchEventsRequest req;
  req.set_kind(kind);
  auto stream = stub->WatchEvents(&ctx, req);
  v1::WatchEventsResponse m;
  bool first = true;
  while (stream->Read(&m)) {
    if (!m.has_event()) continue;
    Out(EventRecord(m.event(), first));
    first = false;
  }
  return CallFailed(c, stream->Finish());
}

int WatchLoop(const WatchConnection& c, const std::function<void()>& render,
              absl::Duration min_gap, WatchTriggers triggers) {
  const bool tty = isatty(STDOUT_FILENO) == 1 &&
                   (CurrentOutputFormat() == OutputFormat::kTable ||
                    CurrentOutputFormat() == OutputFormat::kWide);
  auto show = [&] {
    if (tty) Out("\033[H\033[2J");  // home, clear
    render();
    if (tty) {
      Out(absl::StrCat("\n(redrawn on changes pushed by jouled, at most every ",
                       absl::FormatDuration(min_gap), "; Ctrl-C to stop)\n"));
    }
    std::fflush(stdout);
  };
  auto stub = v1::AdminService::NewStub(c.channel);
  grpc::ClientContext ctx;
  c.authorize(&ctx);
  v1::WatchEventsRequest req;
  req.set_jobs(triggers.jobs);
  req.set_no_events(!triggers.events);
  req.set_power(triggers.power);
  auto stream = stub->WatchEvents(&ctx, req);
  // The reader marks the table dirty on each message; this thread redraws,
  // at most once per min_gap, so a burst costs one redraw.
  struct State {
    absl::Mutex mu;
    bool dirty ABSL_GUARDED_BY(mu) = false;
    bool done ABSL_GUARDED_BY(mu) = false;
  } st;
  std::thread reader([&] {
    v1::WatchEventsResponse m;
    while (stream->Read(&m)) {
      if (!m.subscribed() && !m.has_job() && !m.has_event() &&
          !m.has_power_round()) {
        continue;
      }
      absl::MutexLock lock(&st.mu);
      st.dirty = true;
    }
    absl::MutexLock lock(&st.mu);
    st.done = true;
  });
  try {
    absl::Time last = absl::InfinitePast();
    while (true) {
      {
        absl::MutexLock lock(&st.mu);
        st.mu.Await(absl::Condition(
            +[](State* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) {
              return s->dirty || s->done;
            },
            &st));
        if (st.done) break;
        st.dirty = false;
      }
      const absl::Duration since = absl::Now() - last;
      if (since < min_gap) absl::SleepFor(min_gap - since);
      {  // what came during the pause is drawn now
        absl::MutexLock lock(&st.mu);
        st.dirty = false;
      }
      last = absl::Now();
      show();
    }
  } catch (...) {  // render() failed (joulectl exits): end the stream first
    ctx.TryCancel();
    reader.join();
    throw;
  }
  reader.join();
  return CallFailed(c, stream->Finish());
}

}  // namespace joule::cli
