#include "daemon/daemon.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/systemd_notify.h"
#include "daemon/auth_service.h"
#include "daemon/billing_service.h"
#include "daemon/config_reload.h"
#include "daemon/dashboard.h"
#include "daemon/gate.h"
#include "daemon/ops_events.h"
#include "daemon/retention.h"
#include "daemon/services.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"

namespace joule::daemon {

struct Daemon::Parts {
  // Runs the handlers that block (synced writes, agents); see WorkerPool.
  std::unique_ptr<WorkerPool> pool;
  std::unique_ptr<Gate> gate;
  std::unique_ptr<BillingParts> billing;
  std::unique_ptr<AuthServiceImpl> auth;
  std::unique_ptr<MetricsServer> metrics_server;
  std::unique_ptr<AgentServiceImpl> agent;
  std::unique_ptr<JobServiceImpl> jobs;
  std::unique_ptr<AdminServiceImpl> admin;
  std::unique_ptr<OpsEvents> ops;  // operator log of the manager's events
  std::unique_ptr<Dashboard> dashboard;  // on the metrics address
  std::unique_ptr<ConfigReloader> reloader;
  std::shared_ptr<EventFeed> feed;  // WatchEvents subscribers
  std::unique_ptr<Retention> retention;  // deletes old jobs and events
};

namespace {

// True for 127.0.0.0/8, [::1] and localhost, with a port.
bool IsLoopback(const std::string& listen) {
  return absl::StartsWith(listen, "127.") ||
         absl::StartsWith(listen, "[::1]:") ||
         absl::StartsWith(listen, "localhost:");
}

absl::Status WriteSecretFile(const std::string& path,
                             const std::string& text) {
  const int fd =
      open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600);
  if (fd < 0 || fchmod(fd, 0600) != 0) {
    if (fd >= 0) close(fd);
    return absl::UnavailableError(
        absl::StrCat("cannot create ", path, ": ", strerror(errno)));
  }
  const std::string line = text + "\n";
  const bool ok = write(fd, line.data(), line.size()) ==
                      static_cast<ssize_t>(line.size()) &&
                  fsync(fd) == 0;
  close(fd);
  if (!ok) return absl::UnavailableError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

// grpc.health.v1 statuses: "" (the whole server) and each service name.
void SetServingStatus(grpc::Server* server, bool serving) {
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  if (health == nullptr) return;
  for (const char* name : {"", "joule.v1.AgentService", "joule.v1.JobService",
                           "joule.v1.AdminService", "joule.v1.BillingService",
                           "joule.v1.AuthService"}) {
    health->SetServingStatus(name, serving);
  }
}

}  // namespace

std::shared_ptr<grpc::ServerCredentials> ServerCredentials(
    const DaemonOptions& options) {
  if (!options.tls.has_value()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions ssl(
      GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  ssl.pem_root_certs = options.tls->ca_pem;
  ssl.pem_key_cert_pairs.push_back({options.tls->key_pem, options.tls->cert_pem});
  return grpc::SslServerCredentials(ssl);
}


absl::Status CheckTransport(const DaemonOptions& options) {
  if (options.tls.has_value() == options.insecure) {
    return absl::InvalidArgumentError(
        "TLS: give --tls-cert, --tls-key and --tls-ca, or --insecure (plaintext, "
        "loopback only)");
  }
  if (options.insecure && !IsLoopback(options.listen)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--insecure: refused on ", options.listen,
        ", which is not a loopback address (127.0.0.0/8, [::1], localhost)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(DaemonOptions options) {
  if (absl::Status s = CheckTransport(options); !s.ok()) return s;
  auto d = std::unique_ptr<Daemon>(new Daemon());
  if (options.store != nullptr) {
    d->store_ptr_ = options.store;
  } else {
    storage::RocksDbStore::Options so;
    so.path = options.data_dir;
    auto store = storage::RocksDbStore::Open(so);
    if (!store.ok()) return store.status();
    d->store_ = std::move(*store);
    d->store_ptr_ = d->store_.get();
  }
  d->metrics_ = std::make_unique<metrics::Registry>();
  d->metrics_->AddCollector([](metrics::Exposition* e) {
    e->Family("joule_build_info", "gauge", "jouled's version (value 1).");
    e->Sample("joule_build_info", {{"version", JOULE_VERSION}}, 1);
  });
  d->timed_store_ =
      std::make_unique<TimedStore>(d->store_ptr_, d->metrics_.get());
  d->audited_store_ =
      std::make_unique<auth::AuditingStore>(d->timed_store_.get());
  d->parts_ = std::make_unique<Parts>();
  d->audit_ =
      std::make_unique<auth::AuditLog>(d->timed_store_.get(), options.clock);
  d->tokens_ = std::make_unique<auth::TokenBook>(auth::TokenBookOptions{
      .store = d->audited_store_.get(), .clock = options.clock});
  if (absl::Status s = d->tokens_->Load(); !s.ok()) return s;
  std::error_code ec;
  std::filesystem::create_directories(options.data_dir, ec);
  auto bootstrap = d->tokens_->Bootstrap();
  if (!bootstrap.ok()) return bootstrap.status();
  if (bootstrap->has_value()) {
    const std::string path = options.data_dir + "/operator.token";
    if (absl::Status s = WriteSecretFile(path, **bootstrap); !s.ok()) {
      // Nobody can hold this token: revoke it, so that the next start
      // bootstraps again.
      std::string id, secret;
      if (auth::SplitBearer(**bootstrap, &id, &secret)) {
        d->tokens_->Revoke(id).IgnoreError();
      }
      return s;
    }
    fprintf(stderr,
            "jouled: empty store: wrote an operator token to %s (mode 0600); "
            "use it with joulectl --token-file, create named tokens, then "
            "revoke it\n",
            path.c_str());
  }

  ClusterManagerOptions mo;
  mo.config = options.config;
  mo.store = d->audited_store_.get();
  metrics::Registry* reg = d->metrics_.get();
  mo.on_event = [reg](const std::string& kind) {
    reg->GetCounter("joule_events_total",
                    "Events recorded, by kind (throttle, restore, preempt, "
                    "cap, node, job, ...).",
                    {{"kind", kind}})
        ->Inc();
  };
  mo.on_round = [reg](const char* round, absl::Duration took) {
    systemd::NotifyWatchdog();  // the loop turns: jouled is alive
    reg->GetHistogram("joule_loop_round_seconds",
                      "Duration of scheduling and power-control rounds.",
                      {{"round", round}})
        ->Observe(absl::ToDoubleSeconds(took));
  };
  d->parts_->ops = std::make_unique<OpsEvents>(reg);
  OpsEvents* ops = d->parts_->ops.get();
  d->parts_->feed = std::make_shared<EventFeed>();
  EventFeed* feed = d->parts_->feed.get();
  mo.on_event_recorded = [ops, feed](const v1::Event& e, const std::string& t) {
    ops->OnEvent(e);
    feed->PublishEvent(e, t);
  };
  mo.on_transition = [ops, feed](const v1::Job& j, v1::JobState s) {
    ops->OnTransition(j, s);
    feed->PublishJobState(j);
  };
  // Power rounds tick WatchEvents subscribers with `power` (rate-limited).
  mo.on_round = [metrics = std::move(mo.on_round), feed](const char* round,
                                                         absl::Duration took) {
    metrics(round, took);
    if (absl::string_view(round) == "power") {
      feed->PublishPowerRound(absl::Now());
    }
  };
  mo.clock = options.clock;
  mo.heartbeat_timeout = options.heartbeat_timeout;
  mo.report_interval = options.report_interval;
  // Billing needs the tenant directory (the manager); the manager needs
  // billing's attempt sink and contracts. BillingParts breaks the cycle with
  // a late-bound directory.
  d->parts_->pool = std::make_unique<WorkerPool>(32);
  d->parts_->gate =
      std::make_unique<Gate>(d->tokens_.get(), d->audit_.get(),
                             d->parts_->pool.get(), d->metrics_.get());
  d->parts_->billing = std::make_unique<BillingParts>(
      d->audited_store_.get(), options.clock, d->parts_->gate.get());
  mo.attempts = d->parts_->billing->attempt_sink();
  mo.contracted_gpus = d->parts_->billing->contracted_gpus_fn();
  d->parts_->billing->Configure(options.config, &mo);
  d->manager_ = std::make_unique<ClusterManager>(std::move(mo));
  d->parts_->billing->set_tenants(d->manager_.get());
  d->parts_->billing->ledger()->set_usage_dedup_window(
      options.usage_dedup_window);
  if (absl::Status s = d->manager_->Load(); !s.ok()) return s;
  if (absl::Status s = d->parts_->billing->Load(); !s.ok()) return s;

  Gate* gate = d->parts_->gate.get();
  d->parts_->agent = std::make_unique<AgentServiceImpl>(d->manager_.get(), gate);
  d->parts_->jobs = std::make_unique<JobServiceImpl>(d->manager_.get(), gate);
  d->parts_->admin = std::make_unique<AdminServiceImpl>(d->manager_.get(), gate);
  d->parts_->reloader = std::make_unique<ConfigReloader>(
      options.config_path, options.config, d->manager_.get());
  ConfigReloader* reloader = d->parts_->reloader.get();
  d->parts_->admin->set_reload([reloader] { return reloader->Reload(); });
  d->parts_->admin->set_feed(d->parts_->feed);
  ClusterManager* manager = d->manager_.get();
  d->parts_->auth = std::make_unique<AuthServiceImpl>(
      d->tokens_.get(), gate,
      [manager](absl::string_view t) { return manager->TenantExists(t); });

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, ServerCredentials(options),
                           &d->port_);
  builder.RegisterService(d->parts_->agent.get());
  builder.RegisterService(d->parts_->jobs.get());
  builder.RegisterService(d->parts_->admin.get());
  builder.RegisterService(d->parts_->billing->service());
  builder.RegisterService(d->parts_->auth.get());
  builder.SetMaxReceiveMessageSize(64 << 20);
  // gRPC lets several servers share a port by default (SO_REUSEPORT); a
  // second jouled on the same address must fail instead of splitting calls.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  d->server_ = builder.BuildAndStart();
  if (d->server_ == nullptr || d->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.listen));
  }
  SetServingStatus(d->server_.get(), true);
  if (!options.metrics_listen.empty()) {
    ClusterManager* m = d->manager_.get();
    d->metrics_->AddCollector(
        [m](metrics::Exposition* e) { CollectClusterMetrics(m, e); });
    d->parts_->dashboard = std::make_unique<Dashboard>(m, options.clock);
    Dashboard* dash = d->parts_->dashboard.get();
    auto ms = MetricsServer::Start(
        options.metrics_listen, d->metrics_.get(),
        [dash](httplib::Server* s) { dash->AddRoutes(s); });
    if (!ms.ok()) return ms.status();
    d->parts_->metrics_server = std::move(*ms);
  }
  d->parts_->ops->Start(d->manager_.get());
  if (d->parts_->dashboard) d->parts_->dashboard->Start();
  d->manager_->Start();
  d->parts_->retention = std::make_unique<Retention>(
      d->manager_.get(), d->parts_->billing->ledger(), options.clock,
      RetentionOptions{.finished_jobs = options.config.finished_job_retention,
                       .events = options.config.event_retention,
                       .registry = d->metrics_.get()});
  d->parts_->retention->Start();
  return d;
}

Daemon::~Daemon() { Shutdown(); }

billing::Ledger* Daemon::ledger() { return parts_->billing->ledger(); }

absl::StatusOr<v1::ReloadConfigResponse> Daemon::ReloadConfig() {
  return parts_->reloader->Reload();
}

void Daemon::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  if (parts_ && parts_->metrics_server) parts_->metrics_server->Stop();
  if (parts_ && parts_->dashboard) parts_->dashboard->Stop();
  if (server_) SetServingStatus(server_.get(), false);
  if (parts_ && parts_->feed) parts_->feed->CloseAll();
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::seconds(2));
  }
  // Calls still queued finish before the manager stops.
  if (parts_) parts_->pool.reset();
  if (parts_ && parts_->retention) parts_->retention->Stop();
  if (manager_) manager_->Stop();
  if (parts_ && parts_->ops) parts_->ops->Stop();
  if (store_) store_->Close().IgnoreError();
}

int Daemon::metrics_port() const {
  return parts_ && parts_->metrics_server ? parts_->metrics_server->port() : 0;
}

void Daemon::Wait() {
  if (server_) server_->Wait();
}

}  // namespace joule::daemon
