#include "daemon/daemon.h"

#include "absl/strings/str_cat.h"
#include "daemon/billing_service.h"
#include "daemon/services.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"

namespace joule::daemon {

struct Daemon::Parts {
  // Runs the handlers that block (synced writes, agents); see WorkerPool.
  std::unique_ptr<WorkerPool> pool;
  std::unique_ptr<BillingParts> billing;
  std::unique_ptr<AgentServiceImpl> agent;
  std::unique_ptr<JobServiceImpl> jobs;
  std::unique_ptr<AdminServiceImpl> admin;
};

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(DaemonOptions options) {
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
  d->parts_ = std::make_unique<Parts>();

  ClusterManagerOptions mo;
  mo.config = options.config;
  mo.store = d->store_ptr_;
  mo.clock = options.clock;
  mo.heartbeat_timeout = options.heartbeat_timeout;
  mo.report_interval = options.report_interval;
  // Billing needs the tenant directory (the manager); the manager needs
  // billing's attempt sink and contracts. BillingParts breaks the cycle with
  // a late-bound directory.
  d->parts_->pool = std::make_unique<WorkerPool>(32);
  d->parts_->billing = std::make_unique<BillingParts>(
      d->store_ptr_, options.clock, d->parts_->pool.get());
  mo.attempts = d->parts_->billing->attempt_sink();
  mo.contracted_gpus = d->parts_->billing->contracted_gpus_fn();
  d->manager_ = std::make_unique<ClusterManager>(std::move(mo));
  d->parts_->billing->set_tenants(d->manager_.get());
  d->parts_->billing->ledger()->set_usage_dedup_window(
      options.usage_dedup_window);
  if (absl::Status s = d->manager_->Load(); !s.ok()) return s;
  if (absl::Status s = d->parts_->billing->Load(); !s.ok()) return s;

  WorkerPool* pool = d->parts_->pool.get();
  d->parts_->agent =
      std::make_unique<AgentServiceImpl>(d->manager_.get(), pool);
  d->parts_->jobs = std::make_unique<JobServiceImpl>(d->manager_.get(), pool);
  d->parts_->admin =
      std::make_unique<AdminServiceImpl>(d->manager_.get(), pool);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, grpc::InsecureServerCredentials(),
                           &d->port_);
  builder.RegisterService(d->parts_->agent.get());
  builder.RegisterService(d->parts_->jobs.get());
  builder.RegisterService(d->parts_->admin.get());
  builder.RegisterService(d->parts_->billing->service());
  builder.SetMaxReceiveMessageSize(64 << 20);
  // gRPC lets several servers share a port by default (SO_REUSEPORT); a
  // second jouled on the same address must fail instead of splitting calls.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  d->server_ = builder.BuildAndStart();
  if (d->server_ == nullptr || d->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.listen));
  }
  d->manager_->Start();
  return d;
}

Daemon::~Daemon() { Shutdown(); }

billing::Ledger* Daemon::ledger() { return parts_->billing->ledger(); }

void Daemon::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::seconds(2));
  }
  // Calls still queued finish before the manager stops.
  if (parts_) parts_->pool.reset();
  if (manager_) manager_->Stop();
  if (store_) store_->Close().IgnoreError();
}

void Daemon::Wait() {
  if (server_) server_->Wait();
}

}  // namespace joule::daemon
