#include "daemon/ha_daemon.h"

#include <signal.h>

#include <atomic>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "billing/ledger.h"
#include "common/systemd_notify.h"
#include "daemon/retention.h"
#include "grpcpp/generic/async_generic_service.h"
#include "storage/revision_compactor.h"

namespace joule::daemon {

// Answers every method with UNAVAILABLE naming the leader.
class HaDaemon::StandbyService : public grpc::CallbackGenericService {
 public:
  StandbyService(std::string self, storage::LeaderElection* election)
      : self_(std::move(self)), election_(election) {}

  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext* ctx) override {
    const std::string leader = election_->leader();
    std::string msg;
    if (leader.empty() || leader == self_) {
      msg = absl::StrCat("jouled at ", self_,
                         " is a standby and no leader is elected yet; "
                         "retry in a few seconds");
    } else {
      msg = absl::StrCat("jouled at ", self_,
                         " is a standby; the leader is at ", leader);
      ctx->AddTrailingMetadata(kLeaderMetadata, leader);
    }
    class Reject : public grpc::ServerGenericBidiReactor {
     public:
      explicit Reject(grpc::Status s) { Finish(std::move(s)); }
      void OnDone() override { delete this; }
    };
    return new Reject(grpc::Status(grpc::StatusCode::UNAVAILABLE, msg));
  }

 private:
  const std::string self_;
  storage::LeaderElection* const election_;
};

absl::StatusOr<std::unique_ptr<HaDaemon>> HaDaemon::Start(DaemonOptions options,
                                                          HaOptions ha) {
  if (absl::Status s = CheckTransport(options); !s.ok()) return s;
  if (ha.advertise.empty()) {
    return absl::InvalidArgumentError(
        "--advertise: required with --store etcd (the HOST:PORT clients "
        "and agents reach this jouled at)");
  }
  if (ha.prefix.empty() || ha.prefix[0] != '/' || ha.prefix.back() == '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("--etcd-prefix: \"", ha.prefix,
                     "\" must start with / and not end with / (e.g. /joule)"));
  }
  if (ha.lease_ttl < absl::Seconds(2)) {
    return absl::InvalidArgumentError(
        "--leader-lease-ttl: must be at least 2s (etcd's minimum lease)");
  }
  auto d = std::unique_ptr<HaDaemon>(new HaDaemon());
  d->options_ = options;
  d->ha_ = ha;
  auto client = storage::EtcdClient::Create(ha.etcd);
  if (!client.ok()) return client.status();
  d->client_ = std::move(*client);
  storage::EtcdStore::Options so;
  so.prefix = ha.prefix;
  so.max_txn_ops = ha.max_txn_ops;
  so.max_request_bytes = ha.max_request_bytes;
  d->store_ = std::make_unique<storage::EtcdStore>(d->client_.get(), so);
  HaDaemon* self = d.get();
  d->store_->set_on_deposed(
      [self](const absl::Status& why) { self->OnLost(why); });
  storage::LeaderElection::Options eo;
  eo.key = ha.prefix + "/leader";
  eo.value = ha.advertise;
  eo.ttl = ha.lease_ttl;
  eo.on_lost = [self](const absl::Status& why) { self->OnLost(why); };
  d->election_ =
      std::make_unique<storage::LeaderElection>(d->client_.get(), eo);
  // Bind now so that a wrong --listen fails the start.
  if (absl::Status s = d->StartStandby(); !s.ok()) return s;
  fprintf(stderr, "jouled: standby on %s (advertised %s), etcd %s\n",
          options.listen.c_str(), ha.advertise.c_str(),
          d->client_->current_endpoint().c_str());
  d->runner_ = std::thread([self] { self->Run(); });
  return d;
}

HaDaemon::~HaDaemon() {
  Shutdown();
  if (runner_.joinable()) runner_.join();  // Run() returns after Shutdown()
  StopStandby();  // when Start() failed before the runner started
}

bool HaDaemon::leading() const {
  absl::MutexLock lock(&mu_);
  return leading_;
}

absl::Status HaDaemon::StartStandby() {
  // A generic service registers with one server only: one per standby.
  standby_service_ =
      std::make_unique<StandbyService>(ha_.advertise, election_.get());
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options_.listen, ServerCredentials(options_), &port);
  builder.RegisterCallbackGenericService(standby_service_.get());
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  standby_ = builder.BuildAndStart();
  if (standby_ == nullptr || port == 0) {
    standby_.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options_.listen));
  }
  return absl::OkStatus();
}

void HaDaemon::StopStandby() {
  if (standby_ == nullptr) return;
  standby_->Shutdown(std::chrono::system_clock::now());
  standby_->Wait();
  standby_.reset();
}

void HaDaemon::OnLost(const absl::Status& why) {
  absl::MutexLock lock(&mu_);
  if (!leading_ || lost_) return;
  fprintf(stderr, "jouled: stepping down: %s\n",
          std::string(why.message()).c_str());
  lost_ = true;
}

void HaDaemon::Run() {
  auto stopping = [this] {
    absl::MutexLock lock(&mu_);
    return shutdown_;
  };
  while (!stopping()) {
    if (standby_ == nullptr) {
      if (absl::Status s = StartStandby(); !s.ok()) {
        // The port of the Daemon we just stopped may still be in use.
        absl::MutexLock lock(&mu_);
        mu_.AwaitWithTimeout(absl::Condition(&shutdown_),
                             absl::Milliseconds(100));
        continue;
      }
      fprintf(stderr, "jouled: standby on %s (advertised %s)\n",
              options_.listen.c_str(), ha_.advertise.c_str());
    }
    auto rev = election_->Campaign();
    if (!rev.ok()) break;  // cancelled: shutting down
    store_->SetFence(ha_.prefix + "/leader", *rev);
    {
      absl::MutexLock lock(&mu_);
      leading_ = true;
      lost_ = false;
    }
    const absl::Time won = absl::Now();
    StopStandby();
    DaemonOptions o = options_;
    o.store = store_.get();
    auto daemon = Daemon::Start(o);
    if (!daemon.ok()) {
      fprintf(stderr, "jouled: won the election but cannot start: %s\n",
              std::string(daemon.status().message()).c_str());
      election_->Resign();
      absl::MutexLock lock(&mu_);
      leading_ = false;
      mu_.AwaitWithTimeout(absl::Condition(&shutdown_), absl::Seconds(1));
      continue;
    }
    daemon_ = std::move(*daemon);
    fprintf(stderr,
            "jouled: leader (fence revision %lld), serving on %s, state in "
            "etcd under %s loaded in %s\n",
            static_cast<long long>(*rev), ha_.advertise.c_str(),
            ha_.prefix.c_str(),
            absl::FormatDuration(absl::Now() - won).c_str());
    absl::Time next_usage_compaction = absl::Now();
    storage::RevisionCompactor revisions(client_.get());
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return shutdown_ || lost_;
        };
        if (mu_.AwaitWithTimeout(absl::Condition(&done), absl::Minutes(10))) {
          break;
        }
      }
      // Usage records past the dedup window: hourly.
      if (absl::Now() >= next_usage_compaction) {
        next_usage_compaction = absl::Now() + absl::Hours(1);
        auto n = daemon_->ledger()->CompactUsageRecords();
        if (n.ok()) CountDeleted(daemon_->metrics(), "usage_records", *n);
        if (n.ok() && *n > 0) {
          fprintf(stderr,
                  "jouled: deleted %lld usage records past the dedup window\n",
                  static_cast<long long>(*n));
        }
      }
      // etcd's old revisions: compacted to the revision of 10 minutes ago.
      if (auto rev = revisions.Step(); rev.ok() && *rev > 0) {
        fprintf(stderr, "jouled: etcd compacted to revision %lld\n",
                static_cast<long long>(*rev));
      }
    }
    // Stop serving before giving the lease up: no call is answered from
    // memory once another jouled may lead.
    daemon_->Shutdown();
    daemon_.reset();
    election_->Resign();
    absl::MutexLock lock(&mu_);
    leading_ = false;
    lost_ = false;
  }
  StopStandby();
  absl::MutexLock lock(&mu_);
  stopped_ = true;
}

void HaDaemon::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_) return;
    shutdown_ = true;
  }
  if (election_ != nullptr) election_->Cancel();
}

void HaDaemon::Wait() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(&stopped_));
}

int RunHaDaemon(DaemonOptions options, HaOptions ha,
                const sigset_t& stop_signals) {
  auto d = HaDaemon::Start(options, ha);
  if (!d.ok()) {
    fprintf(stderr, "jouled: %s\n", std::string(d.status().message()).c_str());
    return d.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  // Ready as a member (leader or standby). A standby has no loop of its
  // own: while this process waits, a thread pings the watchdog (the
  // leader's loop rounds ping it too, see Daemon::Start).
  systemd::NotifyReady("HA member on " + options.listen);
  std::atomic<bool> done{false};
  std::thread watchdog([&] {
    while (!done.load()) {
      systemd::NotifyWatchdog();
      absl::SleepFor(absl::Milliseconds(500));
    }
  });
  std::thread signals([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    fprintf(stderr, "jouled: signal %d, shutting down\n", sig);
    systemd::NotifyStopping();
    (*d)->Shutdown();
  });
  (*d)->Wait();
  signals.join();
  done = true;
  watchdog.join();
  d->reset();
  fprintf(stderr, "jouled: stopped\n");
  return 0;
}

}  // namespace joule::daemon
