// daemon/event_feed.h: the filters (the same tenant rule as ListEvents) and
// the bounded per-subscriber queue.
#include "daemon/event_feed.h"

#include "gtest/gtest.h"

namespace joule::daemon {
namespace {

v1::Event Ev(const std::string& kind, const std::string& subject) {
  v1::Event e;
  e.set_kind(kind);
  e.set_subject(subject);
  return e;
}

TEST(EventFeedTest, EventFilter) {
  struct Case {
    FeedFilter f;
    const char* kind;
    const char* subject;
    const char* job_tenant;
    bool want;
  } cases[] = {
      {{}, "cap", "row-1", "", true},  // operator: all
      {{.kind = "cap"}, "throttle", "job-1", "acme", false},
      {{.tenant_scope = "acme"}, "job", "job-1", "acme", true},
      {{.tenant_scope = "acme"}, "job", "job-2", "globex", false},
      {{.tenant_scope = "acme"}, "cap", "row-1", "", false},  // not a job
      {{.job_id = "job-1"}, "job", "job-1", "acme", true},
      {{.job_id = "job-1"}, "job", "job-2", "acme", false},
      {{.jobs = false, .no_events = true}, "job", "job-1", "acme", false},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(EventFeed::PassesEvent(c.f, Ev(c.kind, c.subject), c.job_tenant),
              c.want)
        << c.kind << " " << c.subject;
  }
}

TEST(EventFeedTest, JobFilter) {
  v1::JobStateChange c;
  c.set_job_id("job-1");
  c.set_tenant("acme");
  EXPECT_FALSE(EventFeed::PassesJob({}, c));  // jobs not asked for
  EXPECT_TRUE(EventFeed::PassesJob({.jobs = true}, c));
  EXPECT_TRUE(EventFeed::PassesJob({.job_id = "job-1"}, c));
  EXPECT_FALSE(EventFeed::PassesJob({.jobs = true, .job_id = "job-2"}, c));
  EXPECT_TRUE(EventFeed::PassesJob({.tenant_scope = "acme", .jobs = true}, c));
  EXPECT_FALSE(
      EventFeed::PassesJob({.tenant_scope = "globex", .jobs = true}, c));
}

TEST(EventFeedTest, FansOutAndOverflowsPerSubscriber) {
  EventFeed feed(/*queue_limit=*/2);
  int wakes_a = 0, wakes_b = 0;
  auto a = feed.Subscribe({}, [&] { ++wakes_a; });
  auto b = feed.Subscribe({.kind = "cap"}, [&] { ++wakes_b; });
  EXPECT_EQ(feed.subscribers(), 2u);
  feed.PublishEvent(Ev("cap", "row-1"), "");
  feed.PublishEvent(Ev("job", "job-1"), "acme");
  feed.PublishEvent(Ev("job", "job-2"), "acme");  // a: third, over 2
  EXPECT_EQ(wakes_a, 3);
  EXPECT_EQ(wakes_b, 1);
  v1::WatchEventsResponse m;
  bool overflowed = false, closed = false;
  ASSERT_FALSE(a->Pop(&m, &overflowed, &closed));
  EXPECT_TRUE(overflowed);  // the stream is to end: it missed one
  ASSERT_TRUE(b->Pop(&m, &overflowed, &closed));
  EXPECT_EQ(m.event().subject(), "row-1");
  EXPECT_FALSE(b->Pop(&m, &overflowed, &closed));
  EXPECT_FALSE(overflowed);

  // A job's latest transition, with its tenant.
  auto j = feed.Subscribe({.jobs = true}, [] {});
  v1::Job job;
  job.set_id("job-9");
  job.mutable_spec()->set_tenant("acme");
  job.set_exit_code(3);
  job.add_history()->set_state(v1::JOB_STATE_RUNNING);
  job.add_history()->set_state(v1::JOB_STATE_FAILED);
  feed.PublishJobState(job);
  ASSERT_TRUE(j->Pop(&m, &overflowed, &closed));
  EXPECT_EQ(m.job().state(), v1::JOB_STATE_FAILED);
  EXPECT_EQ(m.job().exit_code(), 3);
  EXPECT_EQ(m.job().tenant(), "acme");

  feed.Unsubscribe(a);
  EXPECT_EQ(feed.subscribers(), 2u);
  feed.CloseAll();
  EXPECT_FALSE(b->Pop(&m, &overflowed, &closed));
  EXPECT_TRUE(closed);
  auto late = feed.Subscribe({}, [] {});
  EXPECT_FALSE(late->Pop(&m, &overflowed, &closed));
  EXPECT_TRUE(closed);
}

}  // namespace
}  // namespace joule::daemon

namespace joule::daemon {
namespace {

// Power-round ticks go only to subscribers that ask for them (whatever
// their tenant scope: a tick carries only its time), at most one per
// kPowerTickEvery (1 s) however often rounds run.
TEST(EventFeedTest, PowerRoundTicksAreOptInAndRateLimited) {
  EventFeed feed;
  auto power = feed.Subscribe({.tenant_scope = "acme", .power = true}, [] {});
  auto other = feed.Subscribe({.jobs = true}, [] {});
  const absl::Time t0 = absl::FromUnixSeconds(1'000'000);
  // Rounds every 250 ms over 2.5 s: t0, t0+1s, t0+2s tick (3 of 11).
  for (int i = 0; i <= 10; ++i) {
    feed.PublishPowerRound(t0 + i * absl::Milliseconds(250));
  }
  auto drain = [](FeedQueue& q) {
    std::vector<v1::WatchEventsResponse> out;
    v1::WatchEventsResponse m;
    bool overflowed = false, closed = false;
    while (q.Pop(&m, &overflowed, &closed)) out.push_back(m);
    return out;
  };
  const auto got = drain(*power);
  ASSERT_EQ(got.size(), 3u);
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(got[i].has_power_round());
    EXPECT_EQ(got[i].power_round().time().seconds(),
              1'000'000 + static_cast<int64_t>(i));
  }
  EXPECT_TRUE(drain(*other).empty());
  EXPECT_FALSE(EventFeed::PassesEvent({.no_events = true, .power = true},
                                      v1::Event(), ""));
}

}  // namespace
}  // namespace joule::daemon
