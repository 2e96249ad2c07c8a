// joule-loadgen: load against a real jouled over gRPC, for bench/README.md.
//
//   joule-loadgen --server H:P submit --clients 32 --jobs 20000
//       durable SubmitJob calls from many clients: throughput, latency
//       percentiles.
//   joule-loadgen --server H:P agents --nodes 10000 --seconds 20
//       registers N simulated nodes (8 GPUs each) and streams reports over
//       gRPC as fast as the daemon takes them: reports/s.
//   joule-loadgen --server H:P fill --nodes 10000 --jobs 100000 --pid PID
//       registers nodes, submits jobs, then prints jouled's resident memory.
//
// Credentials: --ca FILE (TLS) or --insecure, and --token-file FILE with an
// operator token; each simulated node gets its own node-bound agent token.
//
// Prints one line of key=value results per run.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/cli_parse.h"
#include "common/proto_time.h"
#include "grpcpp/grpcpp.h"
#include "joule/v1/auth.grpc.pb.h"
#include "joule/v1/joule.grpc.pb.h"
#include "transport/channel.h"

namespace {

using namespace joule;

// How to reach jouled: set once in main().
struct Creds {
  bool insecure = false;
  std::string ca_pem;
  std::string operator_token;
};
Creds g_creds;

std::shared_ptr<grpc::Channel> NewChannel(const std::string& server, int id) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // own TCP connection
  args.SetInt("joule.loadgen.channel", id);
  if (g_creds.insecure) {
    return grpc::CreateCustomChannel(server, grpc::InsecureChannelCredentials(),
                                     args);
  }
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = g_creds.ca_pem;
  return grpc::CreateCustomChannel(server, grpc::SslCredentials(ssl), args);
}

void Auth(grpc::ClientContext* ctx, const std::string& token) {
  ctx->AddMetadata("authorization", "Bearer " + token);
}

// A node-bound agent token for `node` (empty on failure).
std::string NodeToken(v1::AuthService::Stub* auth, const std::string& node) {
  grpc::ClientContext ctx;
  Auth(&ctx, g_creds.operator_token);
  v1::CreateTokenRequest req;
  req.set_role(v1::ROLE_AGENT);
  req.set_node(node);
  req.set_name("loadgen");
  v1::CreateTokenResponse resp;
  grpc::Status s = auth->CreateToken(&ctx, req, &resp);
  if (!s.ok()) {
    fprintf(stderr, "token for %s: %s\n", node.c_str(),
            s.error_message().c_str());
  }
  return resp.secret();
}

v1::RegisterRequest NodeRequest(const std::string& name, int gpus) {
  v1::RegisterRequest r;
  r.set_node_name(name);
  r.set_address("127.0.0.1");
  r.set_gpu_backend("loadgen");
  for (int i = 0; i < gpus; ++i) {
    v1::GpuInfo* g = r.add_gpus();
    g->set_index(i);
    g->set_uuid(absl::StrCat("GPU-", name, "-", i));
    g->set_model("H100");
    g->set_memory_total_bytes(80ull << 30);
    g->set_min_power_limit_mw(200'000);
    g->set_max_power_limit_mw(700'000);
    g->set_default_power_limit_mw(700'000);
  }
  return r;
}

bool Register(v1::AgentService::Stub* stub, const std::string& name, int gpus,
              const std::string& token, std::string* session) {
  grpc::ClientContext ctx;
  Auth(&ctx, token);
  v1::RegisterResponse resp;
  grpc::Status s = stub->Register(&ctx, NodeRequest(name, gpus), &resp);
  if (!s.ok()) {
    fprintf(stderr, "register %s: %s\n", name.c_str(),
            s.error_message().c_str());
    return false;
  }
  *session = resp.session_id();
  return true;
}

void EnsureTenant(const std::string& server) {
  auto stub = v1::AdminService::NewStub(NewChannel(server, -1));
  grpc::ClientContext ctx;
  Auth(&ctx, g_creds.operator_token);
  v1::CreateTenantRequest req;
  req.mutable_tenant()->set_name("loadgen");
  v1::Tenant t;
  stub->CreateTenant(&ctx, req, &t);  // ALREADY_EXISTS is fine
}

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * v.size()))];
}

v1::SubmitJobRequest LoadgenJob() {
  v1::SubmitJobRequest req;
  v1::JobSpec* s = req.mutable_spec();
  s->set_tenant("loadgen");
  s->add_command("true");
  s->set_gpus_per_node(1);
  s->set_service_class(v1::SERVICE_CLASS_SPOT);
  return req;
}

// One client of the callback mode: its own connection and one call in
// flight; the call's completion (on a gRPC thread) records its latency and
// starts the next, until `next` passes `jobs`.
class CallbackClient {
 public:
  CallbackClient(const std::string& server, int id, int jobs,
                 std::vector<double>* lat, std::atomic<int>* next,
                 std::atomic<int>* errors, absl::BlockingCounter* done)
      : stub_(v1::JobService::NewStub(NewChannel(server, id))),
        jobs_(jobs),
        lat_(lat),
        next_(next),
        errors_(errors),
        done_(done),
        req_(LoadgenJob()) {}

  void Next() {
    if (next_->fetch_add(1) >= jobs_) {
      done_->DecrementCount();
      return;
    }
    ctx_ = std::make_unique<grpc::ClientContext>();
    Auth(ctx_.get(), g_creds.operator_token);
    resp_.Clear();
    t0_ = absl::Now();
    stub_->async()->SubmitJob(
        ctx_.get(), &req_, &resp_, [this](grpc::Status st) {
          lat_->push_back(absl::ToDoubleMilliseconds(absl::Now() - t0_));
          if (!st.ok()) (*errors_)++;
          Next();
        });
  }

 private:
  std::unique_ptr<v1::JobService::Stub> stub_;
  const int jobs_;
  std::vector<double>* const lat_;
  std::atomic<int>* const next_;
  std::atomic<int>* const errors_;
  absl::BlockingCounter* const done_;
  const v1::SubmitJobRequest req_;
  std::unique_ptr<grpc::ClientContext> ctx_;
  v1::SubmitJobResponse resp_;
  absl::Time t0_;
};

// `clients` calls in flight on `clients` connections, driven by gRPC's own
// few threads instead of one blocking thread per client.
void CallbackSubmit(const std::string& server, int clients, int jobs,
                    std::vector<std::vector<double>>* lat,
                    std::atomic<int>* next, std::atomic<int>* errors) {
  absl::BlockingCounter done(clients);
  std::vector<std::unique_ptr<CallbackClient>> all;
  for (int c = 0; c < clients; ++c) {
    all.push_back(std::make_unique<CallbackClient>(server, c, jobs, &(*lat)[c],
                                                   next, errors, &done));
  }
  for (auto& c : all) c->Next();
  done.Wait();
}

int Submit(const std::string& server, int clients, int jobs,
           bool client_threads) {
  EnsureTenant(server);
  {
    auto ch = NewChannel(server, -2);
    auto agent = v1::AgentService::NewStub(ch);
    auto auth = v1::AuthService::NewStub(ch);
    std::string session;
    if (!Register(agent.get(), "loadgen-submit-node", 8,
                  NodeToken(auth.get(), "loadgen-submit-node"), &session)) {
      return 1;
    }
  }
  std::vector<std::vector<double>> lat(clients);
  std::atomic<int> next{0}, errors{0};
  const absl::Time start = absl::Now();
  std::vector<std::thread> threads;
  if (!client_threads) {
    CallbackSubmit(server, clients, jobs, &lat, &next, &errors);
  }
  for (int c = 0; client_threads && c < clients; ++c) {
    threads.emplace_back([&, c] {
      auto stub = v1::JobService::NewStub(NewChannel(server, c));
      while (next.fetch_add(1) < jobs) {
        const v1::SubmitJobRequest req = LoadgenJob();
        grpc::ClientContext ctx;
        Auth(&ctx, g_creds.operator_token);
        v1::SubmitJobResponse resp;
        const absl::Time t0 = absl::Now();
        grpc::Status st = stub->SubmitJob(&ctx, req, &resp);
        lat[c].push_back(absl::ToDoubleMilliseconds(absl::Now() - t0));
        if (!st.ok()) errors++;
      }
    });
  }
  for (auto& t : threads) t.join();
  const double secs = absl::ToDoubleSeconds(absl::Now() - start);
  std::vector<double> all;
  for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  printf(
      "mode=submit clients=%d jobs=%d errors=%d seconds=%.2f rate=%.0f/s "
      "p50_ms=%.2f p99_ms=%.2f max_ms=%.2f client=%s\n",
      clients, jobs, errors.load(), secs, jobs / secs, Percentile(all, 50),
      Percentile(all, 99), Percentile(all, 100),
      client_threads ? "threads" : "callback");
  return errors.load() == 0 ? 0 : 1;
}

struct Stream {
  std::unique_ptr<grpc::ClientContext> ctx;
  std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::DaemonMessage>>
      rw;
  v1::AgentMessage report;
};

int Agents(const std::string& server, int nodes, double seconds, int threads_n,
           int channels) {
  std::vector<std::shared_ptr<grpc::Channel>> chans;
  std::vector<std::unique_ptr<v1::AgentService::Stub>> stubs;
  for (int i = 0; i < channels; ++i) {
    chans.push_back(NewChannel(server, 1000 + i));
    stubs.push_back(v1::AgentService::NewStub(chans.back()));
  }
  std::vector<Stream> streams(nodes);
  // Node-bound agent tokens first (not counted as registration time).
  std::vector<std::string> tokens(nodes);
  std::atomic<int> next{0}, failed{0};
  {
    std::vector<std::thread> ts;
    for (int t = 0; t < threads_n; ++t) {
      ts.emplace_back([&, t] {
        auto auth = v1::AuthService::NewStub(chans[t % channels]);
        for (int i; (i = next.fetch_add(1)) < nodes;) {
          tokens[i] = NodeToken(auth.get(), absl::StrCat("lg-", i));
          if (tokens[i].empty()) failed++;
        }
      });
    }
    for (auto& t : ts) t.join();
  }
  if (failed > 0) return 1;
  next = 0;
  const absl::Time reg_start = absl::Now();
  {
    std::vector<std::thread> ts;
    for (int t = 0; t < threads_n; ++t) {
      ts.emplace_back([&] {
        for (int i; (i = next.fetch_add(1)) < nodes;) {
          auto* stub = stubs[i % channels].get();
          const std::string name = absl::StrCat("lg-", i);
          std::string session;
          if (!Register(stub, name, 8, tokens[i], &session)) {
            failed++;
            continue;
          }
          Stream& s = streams[i];
          s.ctx = std::make_unique<grpc::ClientContext>();
          Auth(s.ctx.get(), tokens[i]);
          s.rw = stub->Connect(s.ctx.get());
          v1::AgentMessage hello;
          hello.mutable_hello()->set_node_name(name);
          hello.mutable_hello()->set_session_id(session);
          s.rw->Write(hello);
          v1::NodeReport* r = s.report.mutable_report();
          r->set_node_name(name);
          for (int g = 0; g < 8; ++g) {
            v1::GpuStatus* gs = r->add_gpus();
            gs->set_index(g);
            gs->set_model("H100");
            gs->set_power_mw(300'000 + g);
            gs->set_power_limit_mw(700'000);
            gs->set_healthy(true);
            gs->set_utilization_pct(40);
            gs->set_temperature_c(50);
          }
        }
      });
    }
    for (auto& t : ts) t.join();
  }
  if (failed > 0) return 1;
  const double reg_secs = absl::ToDoubleSeconds(absl::Now() - reg_start);
  std::atomic<int64_t> sent{0};
  std::atomic<bool> stop{false};
  const absl::Time start = absl::Now();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads_n; ++t) {
    ts.emplace_back([&, t] {
      uint64_t energy = 0;
      while (!stop) {
        for (int i = t; i < nodes && !stop; i += threads_n) {
          Stream& s = streams[i];
          *s.report.mutable_report()->mutable_time() = ToProtoTime(absl::Now());
          for (auto& g : *s.report.mutable_report()->mutable_gpus()) {
            g.set_energy_mj(++energy);
          }
          if (s.rw->Write(s.report)) sent++;
        }
      }
    });
  }
  absl::SleepFor(absl::Seconds(seconds));
  stop = true;
  for (auto& t : ts) t.join();
  // A write returns once the message is on its way; the daemon may still be
  // reading. Close every stream and wait for the daemon to finish it, which
  // it does only after it has handled every report sent on it.
  int finished_ok = 0;
  for (auto& s : streams) {
    s.rw->WritesDone();
    v1::DaemonMessage ignored;
    while (s.rw->Read(&ignored)) {
    }
    finished_ok += s.rw->Finish().ok();
  }
  const double secs = absl::ToDoubleSeconds(absl::Now() - start);
  printf(
      "mode=agents nodes=%d register_seconds=%.1f reports=%lld "
      "streams_finished_ok=%d seconds=%.1f rate=%.0f/s (handled by jouled)\n",
      nodes, reg_secs, static_cast<long long>(sent.load()), finished_ok, secs,
      sent.load() / secs);
  return finished_ok == nodes ? 0 : 1;
}

long RssKb(int pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

int Fill(const std::string& server, int nodes, int jobs, int pid) {
  EnsureTenant(server);
  auto ch = NewChannel(server, -3);
  auto agent = v1::AgentService::NewStub(ch);
  auto auth = v1::AuthService::NewStub(ch);
  const absl::Time t0 = absl::Now();
  for (int i = 0; i < nodes; ++i) {
    std::string session;
    const std::string name = absl::StrCat("fill-", i);
    if (!Register(agent.get(), name, 8, NodeToken(auth.get(), name),
                  &session)) {
      return 1;
    }
  }
  const double reg = absl::ToDoubleSeconds(absl::Now() - t0);
  const long after_nodes = RssKb(pid);
  std::atomic<int> next{0}, errors{0};
  std::vector<std::thread> ts;
  for (int c = 0; c < 16; ++c) {
    ts.emplace_back([&, c] {
      auto stub = v1::JobService::NewStub(NewChannel(server, 2000 + c));
      for (int i; (i = next.fetch_add(1)) < jobs;) {
        v1::SubmitJobRequest req;
        v1::JobSpec* s = req.mutable_spec();
        s->set_tenant("loadgen");
        s->set_name(absl::StrCat("fill-", i));
        s->add_command("/usr/bin/train");
        s->add_command("--config=/data/run.yaml");
        s->set_gpus_per_node(1 + i % 8);
        s->set_gpu_model("H100");
        s->set_service_class(i % 3 == 0 ? v1::SERVICE_CLASS_SPOT
                                        : v1::SERVICE_CLASS_ON_DEMAND);
        grpc::ClientContext ctx;
        Auth(&ctx, g_creds.operator_token);
        v1::SubmitJobResponse resp;
        if (!stub->SubmitJob(&ctx, req, &resp).ok()) errors++;
      }
    });
  }
  for (auto& t : ts) t.join();
  absl::SleepFor(absl::Seconds(3));  // let a scheduling round settle
  printf(
      "mode=fill nodes=%d gpus=%d jobs=%d errors=%d register_seconds=%.1f "
      "rss_after_nodes_mib=%.0f rss_mib=%.0f\n",
      nodes, nodes * 8, jobs, errors.load(), reg, after_nodes / 1024.0,
      RssKb(pid) / 1024.0);
  return errors.load() == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"joule-loadgen: gRPC load against a real jouled"};
  app.require_subcommand(1);
  std::string server = "127.0.0.1:7070";
  app.add_option("--server", server);
  std::string ca_file, token_file;
  app.add_option("--ca", ca_file, "CA of jouled's certificate (TLS)");
  app.add_flag("--insecure", g_creds.insecure, "plaintext (jouled --insecure)");
  app.add_option("--token-file", token_file, "an operator token")->required();
  int clients = 32, jobs = 20000, nodes = 10000, threads_n = 4, channels = 50,
      pid = 0;
  double seconds = 20;
  auto* submit = app.add_subcommand("submit", "SubmitJob throughput/latency");
  submit->add_option("--clients", clients);
  submit->add_option("--jobs", jobs);
  bool client_threads = false;
  submit->add_flag("--client-threads", client_threads,
                   "one blocking thread per client (the loadgen before "
                   "callback mode; costs the loadgen more CPU)");
  auto* agents = app.add_subcommand("agents", "report ingestion rate");
  agents->add_option("--nodes", nodes);
  agents->add_option("--seconds", seconds);
  agents->add_option("--threads", threads_n);
  agents->add_option("--channels", channels);
  auto* fill = app.add_subcommand("fill", "jouled memory with many nodes/jobs");
  fill->add_option("--nodes", nodes);
  fill->add_option("--jobs", jobs);
  fill->add_option("--pid", pid, "jouled's pid")->required();
  joule::AddVersionFlag(app, "joule-loadgen");
  JOULE_CLI_PARSE(app, "joule-loadgen", argc, argv);
  if (g_creds.insecure == !ca_file.empty()) {
    fprintf(stderr, "joule-loadgen: give --ca or --insecure\n");
    return 2;
  }
  if (!ca_file.empty()) {
    auto ca = joule::transport::ReadFlagFile(ca_file, "--ca");
    if (!ca.ok()) {
      fprintf(stderr, "joule-loadgen: %s\n",
              std::string(ca.status().message()).c_str());
      return 2;
    }
    g_creds.ca_pem = *ca;
  }
  auto token = joule::transport::ReadFlagFile(token_file, "--token-file");
  if (!token.ok()) {
    fprintf(stderr, "joule-loadgen: %s\n",
            std::string(token.status().message()).c_str());
    return 2;
  }
  g_creds.operator_token = std::string(absl::StripAsciiWhitespace(*token));
  if (submit->parsed()) return Submit(server, clients, jobs, client_threads);
  if (agents->parsed())
    return Agents(server, nodes, seconds, threads_n, channels);
  return Fill(server, nodes, jobs, pid);
}
