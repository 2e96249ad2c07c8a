// Issue 14, end to end: `joulectl session` (cli/session.h) as a real
// process between joulectl and a real jouled with agents over TLS. Calls
// made with JOULE_SESSION (and no transport flags) go through it: jobs are
// submitted, listed, shown and waited for (a server stream), errors come
// back as the same line and exit code as a direct call, authorization is
// still jouled's with the session's token, and the socket's directory and
// lifetime are as docs/cli.md "Sessions" says.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/fsuid.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "tests/e2e/fixtures.h"
#include "tests/e2e/harness.h"

extern char** environ;

namespace joule::e2e {
namespace {

// Runs joulectl ARGS with this test's environment, less every JOULE_*
// variable, plus `env` ("NAME=VALUE"): no --server, --ca or --token.
CtlResult RunCtl(const Cluster& c, const std::vector<std::string>& args,
                 const std::vector<std::string>& env) {
  static int n = 0;
  const std::string out = absl::StrCat(c.dir(), "/srun.", ++n, ".out");
  const std::string err = absl::StrCat(c.dir(), "/srun.", n, ".err");
  std::vector<std::string> argv = {Bin("joulectl")};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<std::string> envs = env;
  for (char** e = environ; *e != nullptr; ++e) {
    if (!absl::StartsWith(*e, "JOULE_")) envs.push_back(*e);
  }
  std::vector<char*> cargs, cenv;
  for (auto& a : argv) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  for (auto& e : envs) cenv.push_back(e.data());
  cenv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT,
                                   0644);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT,
                                   0644);
  pid_t pid = 0;
  CtlResult r;
  if (posix_spawn(&pid, cargs[0], &fa, nullptr, cargs.data(), cenv.data()) ==
      0) {
    int st = 0;
    waitpid(pid, &st, 0);
    r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }
  posix_spawn_file_actions_destroy(&fa);
  r.out = ReadFile(out);
  r.err = ReadFile(err);
  return r;
}

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

// A cluster with one ready agent, tenants acme and other, and a tenant
// token for acme; sessions live in a 0700 dir of the cluster's.
class SessionE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    Cluster::Options o;
    o.config_text = ConfigBuilder(/*hgx=*/false).Node("s1", "site").Text();
    c_ = std::make_unique<Cluster>(o);
    c_->StartDaemon();
    c_->StartAgent("s1");
    ASSERT_TRUE(WaitForReadyNodes(*c_, 1));
    ASSERT_EQ(c_->Ctl({"tenant", "create", "acme"}).exit_code, 0);
    ASSERT_EQ(c_->Ctl({"tenant", "create", "other"}).exit_code, 0);
    acme_token_ = c_->CreateToken("tenant", "acme");
    dir_ = c_->dir() + "/sess";
    ASSERT_EQ(mkdir(dir_.c_str(), 0700), 0);
    sock_ = dir_ + "/s.sock";
  }

  // joulectl --server ... --ca ... --token TOKEN session start --socket
  // sock_ --foreground, as a process of this test; waits until it answers.
  std::unique_ptr<Process> StartSession(const std::string& token,
                                        std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = c_->CtlCommand();
    argv.resize(argv.size() - 2);  // the operator's --token
    argv.insert(argv.end(), extra.begin(), extra.end());
    if (!token.empty()) argv.insert(argv.end(), {"--token", token});
    argv.insert(argv.end(),
                {"session", "start", "--socket", sock_, "--foreground"});
    auto p = std::make_unique<Process>(argv, c_->dir() + "/session.log");
    EXPECT_TRUE(WaitFor([&] {
      return RunCtl(*c_, {"session", "status", "--socket", sock_}, {})
                 .exit_code == 0;
    })) << p->Log();
    return p;
  }

  CtlResult ViaSession(const std::vector<std::string>& args) {
    return RunCtl(*c_, args, {"JOULE_SESSION=" + sock_});
  }

  std::unique_ptr<Cluster> c_;
  std::string acme_token_;
  std::string dir_;
  std::string sock_;
};

TEST_F(SessionE2E, SubmitsListsShowsWaitsAndStops) {
  auto session = StartSession(acme_token_);
  // The socket is the user's alone.
  struct stat st;
  ASSERT_EQ(lstat(sock_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 077, 0u);
  // Its --token is not on its command line (/proc/PID/cmdline is
  // readable by every user).
  const std::string cmdline =
      ReadFile(absl::StrCat("/proc/", session->pid(), "/cmdline"));
  EXPECT_TRUE(absl::StrContains(cmdline, "--token")) << cmdline;
  EXPECT_FALSE(absl::StrContains(cmdline, acme_token_)) << cmdline;

  CtlResult who = ViaSession({"whoami"});
  ASSERT_EQ(who.exit_code, 0) << who.err;
  EXPECT_TRUE(absl::StrContains(who.out, "tenant acme")) << who.out;

  CtlResult sub = ViaSession({"job", "submit", "--gpus", "1", "--", "true"});
  ASSERT_EQ(sub.exit_code, 0) << sub.err;
  const std::string id(absl::StripAsciiWhitespace(sub.out));
  ASSERT_TRUE(absl::StartsWith(id, "job-")) << sub.out;
  // job wait follows the WatchEvents server stream through the session.
  CtlResult wait = ViaSession({"job", "wait", id});
  EXPECT_EQ(wait.exit_code, 0) << wait.out << wait.err;
  EXPECT_TRUE(absl::StrContains(wait.out, "succeeded")) << wait.out;
  CtlResult list = ViaSession({"job", "list"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_TRUE(absl::StrContains(list.out, id)) << list.out;
  CtlResult show = ViaSession({"-o", "json", "job", "show", id});
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_TRUE(absl::StrContains(show.out, "JOB_STATE_SUCCEEDED")) << show.out;
  // submit --wait: the submit and the stream in one command.
  CtlResult sw = ViaSession({"job", "submit", "--gpus", "1", "--wait", "--",
                             "/bin/sh", "-c", "exit 3"});
  EXPECT_NE(sw.exit_code, 0) << sw.out << sw.err;
  EXPECT_NE(sw.exit_code, 3) << "a failed job is not 'unreachable': " << sw.err;

  // A watching caller that dies: its upstream stream ends too (the
  // session counts a forwarded call until its upstream call has ended).
  {
    ASSERT_EQ(setenv("JOULE_SESSION", sock_.c_str(), 1), 0);
    Process watch({Bin("joulectl"), "events", "--watch"},
                  c_->dir() + "/watch.log");
    unsetenv("JOULE_SESSION");
    auto status = [&] {
      return RunCtl(*c_, {"session", "status", "--socket", sock_}, {}).out;
    };
    EXPECT_TRUE(WaitFor([&] {
      return absl::StrContains(status(), " 1 in flight");
    })) << status()
        << watch.Log();
    watch.Signal(SIGKILL);
    watch.Wait();
    EXPECT_TRUE(WaitFor([&] {
      return absl::StrContains(status(), " 0 in flight");
    })) << status();
  }

  CtlResult stop = ViaSession({"session", "stop"});
  ASSERT_EQ(stop.exit_code, 0) << stop.err;
  EXPECT_FALSE(Exists(sock_)) << "stop returns after the socket is removed";
  EXPECT_EQ(session->Wait(), 0) << session->Log();
  // Now nothing answers: exit 3, one line naming JOULE_SESSION.
  CtlResult gone = ViaSession({"job", "list"});
  EXPECT_EQ(gone.exit_code, 3) << gone.err;
  EXPECT_TRUE(absl::StrContains(gone.err, "JOULE_SESSION")) << gone.err;
}

TEST_F(SessionE2E, ErrorsPassThroughAsTheSameLineAndCode) {
  auto session = StartSession(acme_token_);
  const std::vector<std::vector<std::string>> cases = {
      // jouled's INVALID_ARGUMENT (exit 1 as for any refused call)
      {"job", "submit", "--gpus", "100", "--", "true"},
      {"job", "submit", "--gpus", "1", "--name", std::string(300, 'x'), "--",
       "true"},
      // bad command line: exit 2 before any call
      {"job", "list", "--state", "bogus"},
      // NOT_FOUND
      {"job", "show", "job-999999"},
      // PERMISSION_DENIED: a tenant may not create tenants
      {"tenant", "create", "nope"},
  };
  for (const auto& args : cases) {
    CtlResult via = ViaSession(args);
    std::vector<std::string> direct_args = {"--token", acme_token_};
    direct_args.insert(direct_args.end(), args.begin(), args.end());
    CtlResult direct = c_->Ctl(direct_args);
    EXPECT_NE(direct.exit_code, 0) << args[0] << " " << args[1];
    EXPECT_EQ(via.exit_code, direct.exit_code) << via.err;
    EXPECT_EQ(via.err, direct.err);
    EXPECT_EQ(std::count(via.err.begin(), via.err.end(), '\n'), 1) << via.err;
  }
  CtlResult bad = ViaSession({"job", "list", "--state", "bogus"});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
}

TEST_F(SessionE2E, ATenantSessionSeesOnlyItsTenantsJobs) {
  CtlResult theirs = c_->Ctl({"job", "submit", "--tenant", "other", "--gpus",
                              "1", "--", "sleep", "30"});
  ASSERT_EQ(theirs.exit_code, 0) << theirs.err;
  const std::string id(absl::StripAsciiWhitespace(theirs.out));
  auto session = StartSession(acme_token_);
  CtlResult list = ViaSession({"job", "list", "--tenant", "other"});
  EXPECT_FALSE(absl::StrContains(list.out, id)) << list.out;
  CtlResult all = ViaSession({"job", "list"});
  EXPECT_FALSE(absl::StrContains(all.out, id)) << all.out;
  CtlResult show = ViaSession({"job", "show", id});
  EXPECT_EQ(show.exit_code, 1) << show.out;
  CtlResult cancel = ViaSession({"job", "cancel", id});
  EXPECT_EQ(cancel.exit_code, 1) << cancel.out;
  // A token the caller passes is not what the session sends: a flag makes
  // the call direct, and the session never forwards the caller's own.
  CtlResult as = ViaSession({"--as-tenant", "other", "job", "list"});
  EXPECT_EQ(as.exit_code, 1) << as.out;
  EXPECT_TRUE(absl::StrContains(as.err, "only an operator")) << as.err;
  ASSERT_EQ(c_->Ctl({"job", "cancel", id}).exit_code, 0);
}

TEST_F(SessionE2E, ReadsAChangedTokenFileAgain) {
  const std::string file = c_->dir() + "/tok";
  { std::ofstream(file) << acme_token_ << "\n"; }
  chmod(file.c_str(), 0600);
  auto session = StartSession("", {"--token-file", file});
  CtlResult who = ViaSession({"whoami"});
  ASSERT_EQ(who.exit_code, 0) << who.err;
  EXPECT_TRUE(absl::StrContains(who.out, "tenant acme")) << who.out;
  const std::string other = c_->CreateToken("tenant", "other");
  { std::ofstream(file + ".new") << other << "\n"; }
  std::filesystem::rename(file + ".new", file);
  who = ViaSession({"whoami"});
  ASSERT_EQ(who.exit_code, 0) << who.err;
  EXPECT_TRUE(absl::StrContains(who.out, "tenant other")) << who.out;
  // Truncated (a writer that has not written yet): the last token stays.
  { std::ofstream truncate(file); }
  who = ViaSession({"whoami"});
  EXPECT_EQ(who.exit_code, 0) << who.err;
  EXPECT_TRUE(absl::StrContains(who.out, "tenant other")) << who.out;
  // A FIFO in its place is not waited on (no call stalls), nor a token
  // bigger than any: the last token stays.
  ASSERT_EQ(mkfifo((file + ".fifo").c_str(), 0600), 0);
  std::filesystem::rename(file + ".fifo", file);
  who = ViaSession({"--timeout", "5s", "whoami"});
  EXPECT_EQ(who.exit_code, 0) << who.err;
  EXPECT_TRUE(absl::StrContains(who.out, "tenant other")) << who.out;
  // And a good file again is read.
  { std::ofstream(file + ".new") << acme_token_ << "\n"; }
  std::filesystem::rename(file + ".new", file);
  who = ViaSession({"whoami"});
  EXPECT_EQ(who.exit_code, 0) << who.err;
  EXPECT_TRUE(absl::StrContains(who.out, "tenant acme")) << who.out;
}

TEST_F(SessionE2E, UnreachableJouledIsExit3ThroughTheSession) {
  std::vector<std::string> argv = {Bin("joulectl"),
                                   "--server",
                                   absl::StrCat("127.0.0.1:", FreePort()),
                                   "--ca",
                                   c_->pki() + "/ca.crt",
                                   "--token",
                                   acme_token_,
                                   "session",
                                   "start",
                                   "--socket",
                                   sock_,
                                   "--foreground"};
  Process session(argv, c_->dir() + "/session-dead.log");
  ASSERT_TRUE(WaitFor([&] {
    return RunCtl(*c_, {"session", "status", "--socket", sock_}, {})
               .exit_code == 0;
  })) << session.Log();
  CtlResult r = ViaSession({"--timeout", "3s", "job", "list"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err,
                                "cannot reach jouled through the "
                                "session at " +
                                    sock_))
      << r.err;
  session.Signal(SIGTERM);
  EXPECT_EQ(session.Wait(), 0);
  EXPECT_FALSE(Exists(sock_));
}

TEST_F(SessionE2E, FollowsTheServerListLikeJoulectl) {
  // The first endpoint is dead: the session's first call moves on to the
  // second and retries there, as joulectl does with --server a,b.
  const std::string list =
      absl::StrCat("127.0.0.1:", FreePort(), ",", c_->server());
  std::vector<std::string> argv = {
      Bin("joulectl"), "--server",    list,      "--ca",  c_->pki() + "/ca.crt",
      "--token",       acme_token_,   "session", "start", "--socket",
      sock_,           "--foreground"};
  Process session(argv, c_->dir() + "/session-list.log");
  ASSERT_TRUE(WaitFor([&] {
    return RunCtl(*c_, {"session", "status", "--socket", sock_}, {})
               .exit_code == 0;
  })) << session.Log();
  CtlResult r = ViaSession({"job", "list"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  CtlResult st = RunCtl(*c_, {"session", "status", "--socket", sock_}, {});
  EXPECT_TRUE(absl::StrContains(st.out, "jouled at " + c_->server())) << st.out;
  session.Signal(SIGTERM);
  EXPECT_EQ(session.Wait(), 0);
}

// What a peer gets from the session's socket: the first bytes the
// session sends after the HTTP/2 client preface (its SETTINGS frame), or
// 0 when it closes the connection (EOF or reset), < 0 on a local error
// or a 5 s silence. Connects as `uid` (root only:
// a child with that effective uid and fsuid 0, so that the 0700 directory
// does not stop it first and only the session's SO_PEERCRED check can).
ssize_t FirstBytesAs(uid_t uid, const std::string& path) {
  int p[2];
  if (pipe(p) != 0) return -2;
  const pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    ssize_t n = -3;
    errno = 0;
    if (setresgid(uid, uid, 0) == 0 && setresuid(uid, uid, 0) == 0) {
      setfsuid(0);
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
      const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
      if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
        static const char kPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        timeval tv{5, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        char buf[64];
        if (send(fd, kPreface, sizeof(kPreface) - 1, MSG_NOSIGNAL) > 0) {
          n = read(fd, buf, sizeof(buf));
        }
        // Closed already, or with our preface unread (a reset): as an EOF.
        if (n < 0) n = errno == ECONNRESET || errno == EPIPE ? 0 : -7;
      } else {
        n = -5;
      }
    }
    (void)!write(p[1], &n, sizeof(n));
    _exit(0);
  }
  close(p[1]);
  ssize_t n = -6;
  if (read(p[0], &n, sizeof(n)) != sizeof(n)) n = -6;
  close(p[0]);
  waitpid(pid, nullptr, 0);
  return n;
}

TEST_F(SessionE2E, ClosesConnectionsOfOtherUsers) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to connect as another uid";
  auto session = StartSession(acme_token_);
  // root (the session's own uid here): the session speaks HTTP/2.
  EXPECT_GT(FirstBytesAs(0, sock_), 0);
  // nobody: connected (fsuid 0 passes the directory), then closed unread.
  EXPECT_EQ(FirstBytesAs(65534, sock_), 0);
  // The session still serves its own user.
  EXPECT_EQ(ViaSession({"whoami"}).exit_code, 0);
}

TEST_F(SessionE2E, IdleExitEndsAQuietSessionButNotABusyOne) {
  auto session = StartSession(acme_token_, {});
  session->Signal(SIGTERM);  // the fixture's default has no --idle-exit
  ASSERT_EQ(session->Wait(), 0);
  std::vector<std::string> argv = c_->CtlCommand();
  argv.resize(argv.size() - 2);
  argv.insert(argv.end(),
              {"--token", acme_token_, "session", "start", "--socket", sock_,
               "--foreground", "--idle-exit", "2s"});
  Process idle(argv, c_->dir() + "/session-idle.log");
  ASSERT_TRUE(WaitFor([&] {
    return RunCtl(*c_, {"session", "status", "--socket", sock_}, {})
               .exit_code == 0;
  })) << idle.Log();
  // A watch in flight keeps it past its 2 s (status calls count as
  // activity, so the polls below keep it until the watch is in).
  ASSERT_EQ(setenv("JOULE_SESSION", sock_.c_str(), 1), 0);
  Process watch({Bin("joulectl"), "events", "--watch"},
                c_->dir() + "/watch-idle.log");
  unsetenv("JOULE_SESSION");
  ASSERT_TRUE(WaitFor([&] {
    return absl::StrContains(
        RunCtl(*c_, {"session", "status", "--socket", sock_}, {}).out,
        " 1 in flight");
  })) << watch.Log();
  absl::SleepFor(absl::Seconds(3));
  EXPECT_TRUE(idle.Running()) << idle.Log();
  watch.Signal(SIGKILL);
  watch.Wait();
  // Then nothing: it ends by itself and removes its socket.
  EXPECT_EQ(idle.Wait(absl::Seconds(20)), 0) << idle.Log();
  EXPECT_FALSE(Exists(sock_));
  CtlResult bad = RunCtl(*c_,
                         {"--server", c_->server(), "session", "start",
                          "--socket", sock_, "--idle-exit", "soon"},
                         {});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_TRUE(absl::StrContains(bad.err, "--idle-exit")) << bad.err;
}

TEST_F(SessionE2E, StartRefusesADirWithGroupOrOtherPermissions) {
  ASSERT_EQ(chmod(dir_.c_str(), 0750), 0);
  std::vector<std::string> args = {
      "--server", c_->server(), "--ca",    c_->pki() + "/ca.crt",
      "--token",  acme_token_,  "session", "start",
      "--socket", sock_};
  CtlResult r = RunCtl(*c_, args, {});
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "chmod 700")) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_FALSE(Exists(sock_));
  EXPECT_TRUE(r.out.empty()) << r.out;
}

TEST_F(SessionE2E, DaemonizesIntoTheDefaultDirAndPrintsAnEvalLine) {
  const std::string xdg = c_->dir() + "/xdg";
  ASSERT_EQ(mkdir(xdg.c_str(), 0700), 0);
  const std::string sock = xdg + "/joule/session.sock";
  std::vector<std::string> args = {
      "--server", c_->server(), "--ca",    c_->pki() + "/ca.crt",
      "--token",  acme_token_,  "session", "start"};
  CtlResult r = RunCtl(*c_, args, {"XDG_RUNTIME_DIR=" + xdg});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(
      r.out, absl::StrCat("JOULE_SESSION='", sock, "'; export JOULE_SESSION;")))
      << r.out;
  int pid = 0;
  for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
    if (absl::ConsumePrefix(&line, "JOULE_SESSION_PID=")) {
      ASSERT_TRUE(absl::SimpleAtoi(line.substr(0, line.find(';')), &pid));
    }
  }
  ASSERT_GT(pid, 0) << r.out;
  struct stat st;
  ASSERT_EQ(lstat((xdg + "/joule").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  // A second start on the same socket is refused while the first runs.
  CtlResult again = RunCtl(*c_, args, {"XDG_RUNTIME_DIR=" + xdg});
  EXPECT_EQ(again.exit_code, 1) << again.err;
  EXPECT_TRUE(absl::StrContains(again.err, "already runs")) << again.err;
  CtlResult sub = RunCtl(*c_, {"job", "submit", "--gpus", "1", "--", "true"},
                         {"JOULE_SESSION=" + sock});
  EXPECT_EQ(sub.exit_code, 0) << sub.err;
  // stop with the default socket (no JOULE_SESSION, same XDG dir).
  CtlResult stop = RunCtl(*c_, {"session", "stop"}, {"XDG_RUNTIME_DIR=" + xdg});
  EXPECT_EQ(stop.exit_code, 0) << stop.err;
  EXPECT_FALSE(Exists(sock));
  // The daemon this test started exits; killed by pid if it did not.
  const bool exited = WaitFor([&] {
    std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
    std::string s((std::istreambuf_iterator<char>(in)), {});
    return s.empty() || absl::StrContains(s, ") Z ");
  });
  if (!exited) kill(pid, SIGKILL);
  EXPECT_TRUE(exited);
}

// The pid in a `session start` eval line (0 when there is none).
int SessionPid(const std::string& out) {
  int pid = 0;
  for (absl::string_view line : absl::StrSplit(out, '\n')) {
    if (absl::ConsumePrefix(&line, "JOULE_SESSION_PID=")) {
      if (!absl::SimpleAtoi(line.substr(0, line.find(';')), &pid)) pid = 0;
    }
  }
  return pid;
}

// Waits for a session daemon this test started to end; kills it by pid
// if it does not. True when it ended by itself.
bool DaemonEnds(int pid) {
  const bool exited = WaitFor([&] {
    std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
    std::string s((std::istreambuf_iterator<char>(in)), {});
    return s.empty() || absl::StrContains(s, ") Z ");
  });
  if (!exited) kill(pid, SIGKILL);
  return exited;
}

TEST_F(SessionE2E, ALiveSessionsPathIsNeverTakenOver) {
  auto a = StartSession(acme_token_);
  const std::vector<std::string> start = {
      "--server", c_->server(), "--ca",    c_->pki() + "/ca.crt",
      "--token",  acme_token_,  "session", "start",
      "--socket", sock_};
  // Its socket deleted (as tmp cleaners do) while it runs: a second start
  // on the path is still refused, naming the live session's pid.
  ASSERT_EQ(unlink(sock_.c_str()), 0);
  CtlResult b = RunCtl(*c_, start, {});
  if (int pid = SessionPid(b.out); pid > 0) {
    kill(pid, SIGTERM);
    DaemonEnds(pid);
  }
  EXPECT_EQ(b.exit_code, 1) << b.out << b.err;
  EXPECT_TRUE(absl::StrContains(b.err, "already runs")) << b.err;
  EXPECT_TRUE(absl::StrContains(b.err, absl::StrCat("pid ", a->pid())))
      << b.err;
  // A socket someone else put at the path is not removed by the session
  // when it ends: only the one it bound.
  const int other = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, sock_.c_str(), sock_.size() + 1);
  ASSERT_EQ(bind(other, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  a->Signal(SIGTERM);
  EXPECT_EQ(a->Wait(), 0) << a->Log();
  EXPECT_TRUE(Exists(sock_)) << "the session removed a socket not its own";
  close(other);
  // That socket is stale (nobody listens): a new start replaces it, and
  // right after `session stop` returns, the path is free for the next.
  CtlResult c = RunCtl(*c_, start, {});
  ASSERT_EQ(c.exit_code, 0) << c.err;
  const int c_pid = SessionPid(c.out);
  EXPECT_EQ(ViaSession({"session", "stop"}).exit_code, 0);
  CtlResult d = RunCtl(*c_, start, {});
  EXPECT_EQ(d.exit_code, 0) << d.err;
  const int d_pid = SessionPid(d.out);
  EXPECT_EQ(ViaSession({"session", "stop"}).exit_code, 0);
  EXPECT_TRUE(c_pid > 0 && DaemonEnds(c_pid));
  EXPECT_TRUE(d_pid > 0 && DaemonEnds(d_pid));
  EXPECT_FALSE(Exists(sock_));
  EXPECT_FALSE(Exists(sock_ + ".lock"));
}

TEST_F(SessionE2E, ACallerRefusesASocketAnotherUserCouldHavePlaced) {
  auto session = StartSession(acme_token_);
  ASSERT_EQ(ViaSession({"whoami"}).exit_code, 0);
  // A directory others may write: anyone could have put the socket there.
  ASSERT_EQ(chmod(dir_.c_str(), 0755), 0);
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"whoami"}, {"session", "status"}, {"session", "stop"}}) {
    CtlResult r = ViaSession(args);
    EXPECT_EQ(r.exit_code, 2) << args[0] << ": " << r.out << r.err;
    EXPECT_TRUE(absl::StrContains(r.err, "chmod 700")) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  ASSERT_EQ(chmod(dir_.c_str(), 0700), 0);
  if (geteuid() == 0) {  // a socket of another uid
    ASSERT_EQ(chown(sock_.c_str(), 65534, 65534), 0);
    CtlResult r = ViaSession({"whoami"});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_TRUE(absl::StrContains(r.err, "owned by uid 65534")) << r.err;
    ASSERT_EQ(chown(sock_.c_str(), 0, 0), 0);
  }
  EXPECT_EQ(ViaSession({"whoami"}).exit_code, 0);
  EXPECT_TRUE(session->Running());
}

TEST_F(SessionE2E, RefusesCallsBeyondMaxCalls) {
  std::vector<std::string> argv = c_->CtlCommand();
  argv.resize(argv.size() - 2);
  argv.insert(argv.end(),
              {"--token", acme_token_, "session", "start", "--socket", sock_,
               "--foreground", "--max-calls", "1"});
  Process session(argv, c_->dir() + "/session-max.log");
  auto status = [&] {
    return RunCtl(*c_, {"session", "status", "--socket", sock_}, {}).out;
  };
  ASSERT_TRUE(WaitFor([&] { return !status().empty(); })) << session.Log();
  ASSERT_EQ(setenv("JOULE_SESSION", sock_.c_str(), 1), 0);
  Process watch({Bin("joulectl"), "events", "--watch"},
                c_->dir() + "/watch-max.log");
  unsetenv("JOULE_SESSION");
  ASSERT_TRUE(WaitFor([&] {
    return absl::StrContains(status(), " 1 in flight");
  })) << watch.Log();
  CtlResult r = ViaSession({"job", "list"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err << status() << session.Log();
  EXPECT_TRUE(absl::StrContains(r.err, "--max-calls")) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  watch.Signal(SIGKILL);
  watch.Wait();
  ASSERT_TRUE(WaitFor([&] {
    return absl::StrContains(status(), " 0 in flight");
  })) << status();
  EXPECT_EQ(ViaSession({"job", "list"}).exit_code, 0);
  CtlResult bad = RunCtl(*c_,
                         {"--server", c_->server(), "session", "start",
                          "--socket", sock_, "--max-calls", "0"},
                         {});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_TRUE(absl::StrContains(bad.err, "--max-calls")) << bad.err;
  session.Signal(SIGTERM);
  EXPECT_EQ(session.Wait(), 0);
}

// A daemonized session keeps nothing of the process that started it: it
// runs in / (its relative --socket and files made absolute), holds no fd
// it inherited but stdio, and shows no --token on its command line.
TEST_F(SessionE2E, ADaemonKeepsNothingOfItsStarter) {
  const std::string held = c_->dir() + "/held";
  const std::string tok = c_->dir() + "/tok";
  { std::ofstream(tok) << acme_token_ << "\n"; }
  std::vector<std::string> argv = {Bin("joulectl"),
                                   "--server",
                                   c_->server(),
                                   "--ca",
                                   c_->pki() + "/ca.crt",
                                   "--token",
                                   acme_token_,
                                   "--token-file",
                                   "tok",
                                   "session",
                                   "start",
                                   "--socket",
                                   "sess/s.sock"};
  std::vector<char*> cargs;
  for (auto& a : argv) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  const std::string out = c_->dir() + "/daemon.out";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addchdir_np(&fa, c_->dir().c_str());
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  // An fd the starter holds (a lock, a pipe a CI step waits on).
  posix_spawn_file_actions_addopen(&fa, 9, held.c_str(), O_WRONLY | O_CREAT,
                                   0644);
  pid_t starter = 0;
  ASSERT_EQ(
      posix_spawn(&starter, cargs[0], &fa, nullptr, cargs.data(), environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  int st = 0;
  waitpid(starter, &st, 0);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << ReadFile(out);
  const std::string printed = ReadFile(out);
  const int pid = SessionPid(printed);
  ASSERT_GT(pid, 0) << printed;
  EXPECT_TRUE(absl::StrContains(printed, "JOULE_SESSION='" + sock_ + "'"))
      << printed;
  std::error_code ec;
  EXPECT_EQ(
      std::filesystem::read_symlink(absl::StrCat("/proc/", pid, "/cwd"), ec)
          .string(),
      "/");
  // (fd 9 may be one the session opened since: not the starter's file.)
  EXPECT_NE(
      std::filesystem::read_symlink(absl::StrCat("/proc/", pid, "/fd/9"), ec)
          .string(),
      held);
  const std::string cmdline = ReadFile(absl::StrCat("/proc/", pid, "/cmdline"));
  EXPECT_FALSE(absl::StrContains(cmdline, acme_token_)) << cmdline;
  // It works from anywhere through the absolute path it printed, and
  // reads its token file, named relative to where it started, again.
  CtlResult who = ViaSession({"whoami"});
  EXPECT_TRUE(absl::StrContains(who.out, "tenant acme")) << who.out << who.err;
  { std::ofstream(tok + ".new") << c_->CreateToken("tenant", "other") << "\n"; }
  std::filesystem::rename(tok + ".new", tok);
  who = ViaSession({"whoami"});
  EXPECT_TRUE(absl::StrContains(who.out, "tenant other")) << who.out << who.err;
  EXPECT_EQ(ViaSession({"session", "stop"}).exit_code, 0);
  EXPECT_TRUE(DaemonEnds(pid));
}

}  // namespace
}  // namespace joule::e2e
