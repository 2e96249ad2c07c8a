#include "metrics/http_server.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "httplib.h"

namespace joule::metrics {
namespace {

bool IsLoopback(const std::string& host) {
  return absl::StartsWith(host, "127.") || host == "localhost" ||
         host == "::1" || host == "[::1]";
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& listen, Registry* registry,
    std::function<void(httplib::Server*)> extra_routes,
    const std::string& flag) {
  const size_t colon = listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(listen.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": \"", listen, "\" is not HOST:PORT"));
  }
  const std::string host = listen.substr(0, colon);
  if (!IsLoopback(host)) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, ": ", listen,
        " is not a loopback address; the metrics endpoint has no TLS or "
        "token check yet (scrape it through a local agent or proxy)"));
  }
  auto m = std::unique_ptr<MetricsServer>(new MetricsServer());
  m->server_ = std::make_unique<httplib::Server>();
  m->server_->Get(
      "/metrics", [registry](const httplib::Request&, httplib::Response& res) {
        res.set_content(registry->Render(), "text/plain; version=0.0.4");
      });
  if (extra_routes) extra_routes(m->server_.get());
  const std::string bind_host = host == "[::1]" ? "::1" : host;
  if (port == 0) {
    m->port_ = m->server_->bind_to_any_port(bind_host);
  } else if (m->server_->bind_to_port(bind_host, port)) {
    m->port_ = port;
  }
  if (m->port_ <= 0) {
    return absl::UnavailableError(
        absl::StrCat(flag, ": cannot listen on ", listen));
  }
  httplib::Server* s = m->server_.get();
  m->thread_ = std::thread([s] { s->listen_after_bind(); });
  return m;
}

MetricsServer::~MetricsServer() { Stop(); }

void MetricsServer::Stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace joule::metrics
