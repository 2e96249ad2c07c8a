#include "cli/session.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <thread>
#include <variant>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "cli/output.h"
#include "cli/session_frames.h"
#include "cli/session_path.h"
#include "cli/session_proxy.h"
#include "cli/session_wire.h"
#include "common/units.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/server_posix.h"

namespace joule::cli {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

// Why a session start failed: its exit code and one line.
struct StartError {
  int code;
  std::string message;
};

// A socket this session bound: its fd and the inode (what it may remove
// again).
struct Bound {
  int fd = -1;
  dev_t dev = 0;
  ino_t ino = 0;
};

// A listening session's hold on its path: the gRPC socket at PATH, the
// frames socket at PATH.frames (cli/session_wire.h) and the lock on
// PATH.lock, held for the session's life (it holds the session's pid).
struct Listening {
  Bound grpc;
  Bound frames;
  int lock_fd = -1;
};

std::string LockPath(const std::string& path) {
  return absl::StrCat(path, ".lock");
}

// Removes `path` only when it is still the socket this session bound: a
// socket another session put there since (after ours was deleted) stays.
void RemoveOwnSocket(const std::string& path, const Bound& b) {
  struct stat st;
  if (lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) &&
      st.st_dev == b.dev && st.st_ino == b.ino) {
    unlink(path.c_str());
  }
}

// Takes the lock on PATH.lock: its fd, or the error (another session
// holds it: exit 1 naming its pid). A lock file that was removed and
// re-created between open and flock is opened again.
std::variant<int, StartError> Lock(const std::string& path) {
  const std::string lock = LockPath(path);
  for (int tries = 0; tries < 5; ++tries) {
    const int fd =
        open(lock.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
      return StartError{
          1, absl::StrCat("cannot open ", lock, ": ", std::strerror(errno))};
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      char buf[32] = {};
      const ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
      close(fd);
      int pid = 0;
      std::string who;
      if (n > 0 && absl::SimpleAtoi(absl::StripAsciiWhitespace(buf), &pid)) {
        who = absl::StrCat("pid ", pid, "; ");
      }
      return StartError{1, absl::StrCat("a session already runs at ", path,
                                        " (", who, "joulectl session stop)")};
    }
    struct stat held, now;
    if (fstat(fd, &held) == 0 && lstat(lock.c_str(), &now) == 0 &&
        held.st_dev == now.st_dev && held.st_ino == now.st_ino) {
      const std::string pid = absl::StrCat(getpid(), "\n");
      if (ftruncate(fd, 0) != 0 || pwrite(fd, pid.data(), pid.size(), 0) !=
                                       static_cast<ssize_t>(pid.size())) {
        // The pid is for the "already runs" line only; the lock holds.
      }
      return fd;
    }
    close(fd);  // removed by the session that held it: open the new one
  }
  return StartError{1, absl::StrCat("cannot lock ", lock)};
}

// Binds and listens on `path` (mode 0600), under the lock: a socket left
// there by a session that died is replaced; one that still answers (a
// joulectl without the lock) is not taken over.
std::variant<Bound, StartError> BindSocket(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return StartError{2, absl::StrCat(path, " exists and is not a socket")};
    }
    if (int fd = ConnectUnix(path); fd >= 0) {
      close(fd);
      return StartError{1, absl::StrCat("a session already runs at ", path,
                                        " (joulectl session stop)")};
    }
    unlink(path.c_str());
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  Bound b;
  b.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const mode_t old = umask(0177);
  const bool bound = b.fd >= 0 && bind(b.fd, reinterpret_cast<sockaddr*>(&addr),
                                       sizeof(addr)) == 0;
  umask(old);
  if (!bound || listen(b.fd, 128) != 0 || lstat(path.c_str(), &st) != 0) {
    const std::string why = std::strerror(errno);
    if (bound) unlink(path.c_str());
    if (b.fd >= 0) close(b.fd);
    return StartError{1, absl::StrCat("cannot listen on ", path, ": ", why)};
  }
  b.dev = st.st_dev;
  b.ino = st.st_ino;
  return b;
}

// Binds both sockets in their private directory, under the lock on
// PATH.lock: while a session runs (holds the lock) its path is refused.
std::variant<Listening, StartError> Listen(const std::string& path,
                                           bool create) {
  sockaddr_un addr{};
  // The longer of the two names must fit a socket address.
  const size_t most = sizeof(addr.sun_path) - 1 - (FramesPath("").size());
  if (path.size() > most) {
    return StartError{2, absl::StrCat("--socket: \"", path,
                                      "\" is longer than ", most, " bytes")};
  }
  const std::string dir = SocketDir(path);
  if (absl::Status s = EnsurePrivateDir(dir, geteuid(), create); !s.ok()) {
    return StartError{2, std::string(s.message())};
  }
  auto locked = Lock(path);
  if (auto* e = std::get_if<StartError>(&locked)) return *e;
  Listening l;
  l.lock_fd = std::get<int>(locked);
  auto fail = [&](StartError e) -> std::variant<Listening, StartError> {
    if (l.grpc.fd >= 0) {
      close(l.grpc.fd);
      RemoveOwnSocket(path, l.grpc);
    }
    unlink(LockPath(path).c_str());
    close(l.lock_fd);
    return e;
  };
  auto grpc_socket = BindSocket(path);
  if (auto* e = std::get_if<StartError>(&grpc_socket)) return fail(*e);
  l.grpc = std::get<Bound>(grpc_socket);
  auto frames = BindSocket(FramesPath(path));
  if (auto* e = std::get_if<StartError>(&frames)) return fail(*e);
  l.frames = std::get<Bound>(frames);
  return l;
}

// Ends a session's hold on `path`, once (from `session stop`'s call or
// the main thread): its sockets (if still its own), then the lock file
// (removed while held; Lock() copes), then the lock. After it, a new
// session may start on `path` while this one finishes its calls.
class PathHold {
 public:
  PathHold(std::string path, const Listening& l)
      : path_(std::move(path)), l_(l) {}
  void Release() {
    if (released_.exchange(true)) return;
    RemoveOwnSocket(path_, l_.grpc);
    RemoveOwnSocket(FramesPath(path_), l_.frames);
    unlink(LockPath(path_).c_str());
    close(l_.lock_fd);
  }

 private:
  const std::string path_;
  const Listening l_;
  std::atomic<bool> released_{false};
};

// Hands each connection of a peer with the session's uid (or root) to
// `server`; closes the others. Returns when `listen_fd` is shut down.
void AcceptLoop(int listen_fd, grpc::Server* server) {
  int fd;
  while ((fd = AcceptPeer(listen_fd, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
    grpc::AddInsecureChannelFromFd(server, fd);
  }
}

// Runs the session: listens, opens the upstream channel, reports "ready"
// through `ready` (the eval line, or the error), then serves until
// `session stop` or SIGTERM/SIGINT/SIGHUP. Returns the exit code.
int Serve(const std::string& path, bool create_dir, absl::Duration idle_exit,
          int max_calls, const std::string& servers,
          const transport::ClientOptions& transport,
          const std::function<void(int code, const std::string&)>& ready) {
  auto listening = Listen(path, create_dir);
  if (auto* e = std::get_if<StartError>(&listening)) {
    ready(e->code, e->message);
    return e->code;
  }
  const Listening l = std::get<Listening>(listening);
  const int listen_fd = l.grpc.fd;
  PathHold hold(path, l);
  auto close_listeners = [&] {
    close(listen_fd);
    close(l.frames.fd);
  };
  signal(SIGPIPE, SIG_IGN);  // a caller or the start pipe gone: not fatal
  // Every thread gRPC starts inherits this mask; the main thread waits
  // for the signals below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&stop_signals, sig);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  auto upstream = SessionUpstream::Open(servers, transport);
  if (!upstream.ok()) {
    hold.Release();
    close_listeners();
    ready(2, std::string(upstream.status().message()));
    return 2;
  }
  const pid_t pid = getpid();
  SessionService service(
      upstream->get(), absl::StrCat("session at ", path, ": pid ", pid),
      [&hold, pid] {
        hold.Release();  // before the caller sees the answer
        kill(pid, SIGTERM);
      },
      max_calls);
  grpc::ServerBuilder builder;
  builder.RegisterCallbackGenericService(&service);
  builder.SetMaxReceiveMessageSize(64 << 20);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    hold.Release();
    close_listeners();
    ready(1, "cannot start the session's gRPC server");
    return 1;
  }
  std::thread acceptor(AcceptLoop, listen_fd, server.get());
  FrameServer frames(&service, l.frames.fd);
  frames.Start();
  ready(0, "");
  // Until a signal (session stop sends SIGTERM), or --idle-exit.
  const bool idle = idle_exit > absl::ZeroDuration();
  while (true) {
    timespec tick{0, 200 * 1000 * 1000};
    if (sigtimedwait(&stop_signals, nullptr, idle ? &tick : nullptr) > 0) break;
    if (idle && service.IdleFor(idle_exit)) break;
  }
  // The socket goes first: a new joulectl gets "no session", not a hang.
  hold.Release();
  shutdown(listen_fd, SHUT_RDWR);
  acceptor.join();
  // The frames' calls end (2 s at most) while gRPC's calls end too.
  std::thread frames_end([&frames] { frames.Stop(); });
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  frames_end.join();
  close_listeners();
  return 0;
}

void Say(const std::string& line) {
  std::fprintf(stderr, "joulectl: %s\n", line.c_str());
}

// What `session start` was asked for.
struct StartOptions {
  std::string path;  // absolute
  bool create_dir = false;
  bool foreground = false;
  absl::Duration idle_exit = absl::ZeroDuration();
  int max_calls = 0;
};

int Start(const StartOptions& o, const std::string& servers,
          const transport::ClientOptions& transport) {
  if (o.foreground) {
    return Serve(o.path, o.create_dir, o.idle_exit, o.max_calls, servers,
                 transport, [&](int code, const std::string& message) {
                   if (code != 0) return Say(message);
                   std::printf(
                       "%s\nJOULE_SESSION_PID=%d; export "
                       "JOULE_SESSION_PID;\n",
                       SessionEvalLine(o.path).c_str(), getpid());
                   std::fflush(stdout);
                 });
  }
  // Daemon: the child does everything (gRPC only ever starts there) and
  // tells the parent "ready" or its error through a pipe.
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) {
    Say(absl::StrCat("session start: pipe: ", std::strerror(errno)));
    return 1;
  }
  std::fflush(stdout);
  const pid_t child = fork();
  if (child < 0) {
    Say(absl::StrCat("session start: fork: ", std::strerror(errno)));
    return 1;
  }
  if (child == 0) {
    close(p[0]);
    // A daemon keeps nothing of its starter: no controlling terminal, no
    // working directory (paths were made absolute), no inherited fd but
    // stdio (a caller's lock or pipe would otherwise stay held for the
    // session's life), stdio on /dev/null.
    setsid();
    if (chdir("/") != 0) ExitNow(1);
    int wfd = p[1];
    if (wfd != 3) {
      wfd = dup2(p[1], 3);
      close(p[1]);
    }
    fcntl(wfd, F_SETFD, FD_CLOEXEC);
    if (close_range(4, ~0U, 0) != 0) {  // kernels before 5.9
      const long max = sysconf(_SC_OPEN_MAX);
      for (int fd = 4; fd < (max > 0 && max < 65536 ? max : 65536); ++fd) {
        close(fd);
      }
    }
    const int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    dup2(null, 0);
    dup2(null, 1);
    const int rc =
        Serve(o.path, o.create_dir, o.idle_exit, o.max_calls, servers,
              transport, [&](int code, const std::string& message) {
                const std::string r = absl::StrCat(code, " ", message, "\n");
                (void)!write(wfd, r.data(), r.size());
                close(wfd);
                dup2(null, 2);
              });
    ExitNow(rc);
  }
  close(p[1]);
  std::string reply;
  char buf[512];
  ssize_t n;
  while ((n = read(p[0], buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) reply.append(buf, n);
  }
  close(p[0]);
  int code = 1;
  const size_t space = reply.find(' ');
  if (space == std::string::npos ||
      !absl::SimpleAtoi(reply.substr(0, space), &code)) {
    Say("session start: the session exited before it was ready");
    return 1;
  }
  if (code != 0) {
    Say(std::string(
        absl::StripTrailingAsciiWhitespace(reply.substr(space + 1))));
    return code;
  }
  std::printf("%s\nJOULE_SESSION_PID=%d; export JOULE_SESSION_PID;\n",
              SessionEvalLine(o.path).c_str(), child);
  return 0;
}

// Calls a local method of the session at `path`; prints its line.
int Local(const std::string& path, const char* method, bool stop) {
  if (absl::Status s = CheckSessionSocket(path, geteuid()); !s.ok()) {
    Say(std::string(s.message()));
    return 2;
  }
  auto channel = grpc::CreateChannel(absl::StrCat("unix:", path),
                                     grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::ByteBuffer req, resp;
  grpc::Slice empty("");
  req = grpc::ByteBuffer(&empty, 1);
  absl::Notification done;
  grpc::Status status;
  stub.UnaryCall(&ctx, method, grpc::StubOptions(), &req, &resp,
                 [&](grpc::Status s) {
                   status = std::move(s);
                   done.Notify();
                 });
  done.WaitForNotification();
  if (!status.ok()) {
    Say(status.error_code() == grpc::StatusCode::UNAVAILABLE
            ? SessionUnreachable(path, status.error_message())
            : status.error_message());
    return status.error_code() == grpc::StatusCode::UNAVAILABLE ? 3 : 1;
  }
  std::vector<grpc::Slice> slices;
  std::string line;
  if (resp.Dump(&slices).ok()) {
    for (const auto& s : slices) {
      line.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  if (stop) {
    std::printf("session at %s stopped\n", path.c_str());
  } else {
    std::printf("%s\n", line.c_str());
  }
  return 0;
}

}  // namespace

std::string SessionUnreachable(const std::string& session,
                               const std::string& why) {
  const int fd = ConnectUnix(session);
  if (fd < 0) {
    return absl::StrCat("no joulectl session at ", session,
                        " (JOULE_SESSION): ", std::strerror(errno),
                        "; start one with `eval \"$(joulectl session start)\"` "
                        "or unset JOULE_SESSION");
  }
  close(fd);
  std::string w = why;
  if (absl::StrContains(absl::AsciiStrToLower(w), "connection refused")) {
    w = "connection refused";
  }
  return absl::StrCat("cannot reach jouled through the session at ", session,
                      ": ", w);
}

SessionCommands::SessionCommands(CLI::App& app) {
  CLI::App* session = app.add_subcommand(
      "session", "a resident client that holds the TLS channel and token");
  start_ = session->add_subcommand(
      "start", "start a session; prints JOULE_SESSION=... for eval");
  start_->add_option("--socket", socket_,
                     "its Unix socket (default "
                     "$XDG_RUNTIME_DIR/joule/session.sock, else "
                     "/tmp/joule-UID/session.sock)");
  start_->add_option("--idle-exit", idle_exit_,
                     "exit after this long with no call, e.g. 8h (default: "
                     "never)");
  start_
      ->add_option("--max-calls", max_calls_,
                   "most calls forwarded at once; more are refused with "
                   "RESOURCE_EXHAUSTED")
      ->default_val(256)
      ->check(CLI::Range(1, 100000));
  start_->add_flag("--foreground", foreground_,
                   "stay in the foreground (default: daemonize)");
  stop_ = session->add_subcommand("stop", "stop the session");
  stop_->add_option("--socket", socket_, "default $JOULE_SESSION");
  status_ = session->add_subcommand("status", "the session's pid and jouled");
  status_->add_option("--socket", socket_, "default $JOULE_SESSION");
}

bool SessionCommands::ExplicitTransport(const CLI::App& app) {
  for (const char* flag :
       {"--server", "--token", "--token-file", "--ca", "--insecure"}) {
    if (app.count(flag) > 0) return true;
  }
  return false;
}

void SessionCommands::HideSecrets(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    char* a = argv[i];
    if (std::strcmp(a, "--") == 0) return;
    char* secret = nullptr;
    if (std::strcmp(a, "--token") == 0 && i + 1 < argc) {
      secret = argv[++i];
    } else if (std::strncmp(a, "--token=", 8) == 0) {
      secret = a + 8;
    }
    if (secret != nullptr) std::memset(secret, 'x', std::strlen(secret));
  }
}

std::optional<int> SessionCommands::Run(
    const std::string& servers, const transport::ClientOptions& transport,
    int argc, char** argv) {
  const std::string fallback =
      DefaultSessionSocket(Env("XDG_RUNTIME_DIR"), geteuid());
  if (start_->parsed()) {
    // A session lives long: its --token must not stay readable by every
    // user in /proc/PID/cmdline (CLI11 has copied it already).
    HideSecrets(argc, argv);
    StartOptions o;
    o.create_dir = socket_.empty();
    o.foreground = foreground_;
    o.max_calls = max_calls_;
    if (!idle_exit_.empty()) {
      auto d = ParseNonNegativeDuration(idle_exit_, "--idle-exit");
      if (!d.ok()) {
        Say(std::string(d.status().message()));
        return 2;
      }
      o.idle_exit = *d;
    }
    // The daemon runs in /: every path it keeps using is made absolute.
    char cwd_buf[4096];
    const std::string cwd =
        getcwd(cwd_buf, sizeof(cwd_buf)) != nullptr ? cwd_buf : "/";
    o.path = AbsolutePath(cwd, o.create_dir ? fallback : socket_);
    transport::ClientOptions t = transport;
    for (std::string* f :
         {&t.ca_file, &t.cert_file, &t.key_file, &t.token_file}) {
      *f = AbsolutePath(cwd, *f);
    }
    return Start(o, servers, t);
  }
  if (!stop_->parsed() && !status_->parsed()) return std::nullopt;
  std::string path = socket_;
  if (path.empty()) path = Env("JOULE_SESSION");
  if (path.empty()) path = fallback;
  return Local(path,
               stop_->parsed() ? kSessionStopMethod : kSessionStatusMethod,
               stop_->parsed());
}

}  // namespace joule::cli
