#include "tests/storage/etcd_fixture.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "storage/etcd_client.h"

extern char** environ;

namespace joule::testing {
namespace {

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

}  // namespace

std::string EtcdBinary() {
  if (const char* b = std::getenv("JOULE_ETCD_BIN"); b != nullptr && *b) {
    return b;
  }
  const char* path = std::getenv("PATH");
  for (absl::string_view d :
       absl::StrSplit(path != nullptr ? path : "/usr/bin:/bin", ':')) {
    std::string p = absl::StrCat(d, "/etcd");
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

EtcdCluster::EtcdCluster(Options options) : options_(options) {
  std::string tmpl =
      std::filesystem::temp_directory_path() / "joule-etcd-XXXXXX";
  dir_ = mkdtemp(tmpl.data());
  for (int i = 0; i < options_.members; ++i) {
    Member m;
    m.name = absl::StrCat("m", i);
    m.client_port = FreePort();
    m.peer_port = FreePort();
    members_.push_back(m);
  }
}

EtcdCluster::~EtcdCluster() {
  for (int i = 0; i < size(); ++i) {
    if (Running(i)) Kill(i, SIGKILL);
  }
  std::filesystem::remove_all(dir_);
}

std::string EtcdCluster::ClientUrl(int i) const {
  return absl::StrCat(options_.tls_dir.empty() ? "http" : "https",
                      "://127.0.0.1:", members_[i].client_port);
}

bool MakeTestCerts(const std::string& dir) {
  const std::string cmd = absl::StrCat(
      "cd '", dir, "' && (",
      "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=joule-ca "
      "-keyout ca.key -out ca.pem && ",
      "printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth,"
      "clientAuth\\n' > ext.cnf && ",
      "for n in server client; do "
      "openssl req -newkey rsa:2048 -nodes -subj /CN=$n -keyout $n.key "
      "-out $n.csr && "
      "openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
      "-days 2 -extfile ext.cnf -out $n.pem || exit 1; done",
      ") >certs.log 2>&1");
  return std::system(cmd.c_str()) == 0;
}

std::vector<std::string> EtcdCluster::EndpointList() const {
  std::vector<std::string> out;
  for (int i = 0; i < size(); ++i) out.push_back(ClientUrl(i));
  return out;
}

std::string EtcdCluster::Endpoints() const {
  return absl::StrJoin(EndpointList(), ",");
}

std::string EtcdCluster::Log(int i) const {
  std::ifstream in(absl::StrCat(dir_, "/", members_[i].name, ".log"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void EtcdCluster::Spawn(int i, bool initial) {
  Member& m = members_[i];
  std::vector<std::string> peers;
  for (const Member& o : members_) {
    peers.push_back(absl::StrCat(o.name, "=http://127.0.0.1:", o.peer_port));
  }
  const std::string peer_url = absl::StrCat("http://127.0.0.1:", m.peer_port);
  std::vector<std::string> argv = {EtcdBinary(),
                                   "--name",
                                   m.name,
                                   "--data-dir",
                                   absl::StrCat(dir_, "/", m.name),
                                   "--listen-client-urls",
                                   ClientUrl(i),
                                   "--advertise-client-urls",
                                   ClientUrl(i),
                                   "--listen-peer-urls",
                                   peer_url,
                                   "--initial-advertise-peer-urls",
                                   peer_url,
                                   "--initial-cluster",
                                   absl::StrJoin(peers, ","),
                                   "--initial-cluster-state",
                                   "new",
                                   "--initial-cluster-token",
                                   "joule-test",
                                   "--max-txn-ops",
                                   absl::StrCat(options_.max_txn_ops),
                                   "--max-request-bytes",
                                   absl::StrCat(options_.max_request_bytes),
                                   "--logger",
                                   "zap",
                                   "--log-level",
                                   "warn"};
  if (!options_.tls_dir.empty()) {
    const std::string& d = options_.tls_dir;
    for (std::string a :
         {"--cert-file=" + d + "/server.pem", "--key-file=" + d + "/server.key",
          "--trusted-ca-file=" + d + "/ca.pem",
          std::string("--client-cert-auth")}) {
      argv.push_back(a);
    }
  }
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  const std::string log = absl::StrCat(dir_, "/", m.name, ".log");
  const pid_t pid = fork();
  if (pid == 0) {
    // The member dies with the test, even when the test is killed.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int in = open("/dev/null", O_RDONLY);
    int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(in, 0);
    dup2(out, 1);
    dup2(out, 2);
    execv(args[0], args.data());
    _exit(127);
  }
  m.pid = pid;
}

bool Accepts(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  const bool ok =
      connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

absl::Status EtcdCluster::WaitReady(int i, absl::Duration timeout) {
  // gRPC backs off for seconds after a refused connection: wait for the
  // port first.
  const absl::Time port_deadline = absl::Now() + timeout;
  while (!Accepts(members_[i].client_port) && absl::Now() < port_deadline) {
    if (!Running(i)) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  storage::EtcdClientOptions o;
  o.endpoints = {ClientUrl(i)};
  o.timeout = absl::Seconds(1);
  if (!options_.tls_dir.empty()) {
    o.ca_file = options_.tls_dir + "/ca.pem";
    o.cert_file = options_.tls_dir + "/client.pem";
    o.key_file = options_.tls_dir + "/client.key";
  }
  auto client = storage::EtcdClient::Create(o);
  if (!client.ok()) return client.status();
  const absl::Time deadline = absl::Now() + timeout;
  absl::Status last;
  while (absl::Now() < deadline) {
    if (!Running(i)) {
      return absl::InternalError(
          absl::StrCat("etcd ", members_[i].name, " exited: ", Log(i)));
    }
    auto s = (*client)->Status();
    if (s.ok() && s->leader() != 0) return absl::OkStatus();
    last = s.status();
    absl::SleepFor(absl::Milliseconds(50));
  }
  return absl::DeadlineExceededError(absl::StrCat(
      "etcd ", members_[i].name, " not ready: ", last.message(), "\n", Log(i)));
}

absl::Status EtcdCluster::Start() {
  if (EtcdBinary().empty()) return absl::NotFoundError("no etcd binary");
  for (int i = 0; i < size(); ++i) Spawn(i, true);
  for (int i = 0; i < size(); ++i) {
    if (absl::Status s = WaitReady(i, absl::Seconds(30)); !s.ok()) return s;
  }
  return absl::OkStatus();
}

bool EtcdCluster::Running(int i) {
  Member& m = members_[i];
  if (m.pid <= 0) return false;
  int st = 0;
  if (waitpid(m.pid, &st, WNOHANG) == m.pid) {
    m.pid = -1;
    return false;
  }
  return true;
}

void EtcdCluster::Kill(int i, int sig) {
  Member& m = members_[i];
  if (m.pid <= 0) return;
  kill(m.pid, sig);
  if (sig == SIGSTOP || sig == SIGCONT) return;
  int st = 0;
  waitpid(m.pid, &st, 0);
  m.pid = -1;
}

absl::Status EtcdCluster::Restart(int i) {
  if (Running(i)) return absl::OkStatus();
  Spawn(i, false);
  // A member alone cannot elect a leader; wait only for the process.
  absl::SleepFor(absl::Milliseconds(200));
  if (!Running(i)) {
    return absl::InternalError(absl::StrCat("etcd restart failed: ", Log(i)));
  }
  return absl::OkStatus();
}

}  // namespace joule::testing
