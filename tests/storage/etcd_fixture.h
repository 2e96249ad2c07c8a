#pragma once

// Test fixture: real etcd members on loopback, in a temp dir, started and
// stopped by pid. Used by the Store conformance suite and the HA tests.

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace joule::testing {

// Where the etcd binary is (JOULE_ETCD_BIN, else etcd on PATH); empty if
// there is none.
std::string EtcdBinary();

// Writes ca.pem, server.pem/key (for 127.0.0.1) and client.pem/key into
// `dir` with openssl; false if openssl is missing or fails.
bool MakeTestCerts(const std::string& dir);

// An etcd cluster of `members` processes, each with its own client and peer
// port on 127.0.0.1 and a data dir under dir(). Killed (SIGKILL) and removed
// on destruction. Not thread-safe.
class EtcdCluster {
 public:
  struct Options {
    int members = 1;
    // Passed to every member (etcd's defaults are 128 and 1.5 MiB).
    int max_txn_ops = 10240;
    int max_request_bytes = 10 * 1024 * 1024;
    // When set: clients must use TLS (https) with a certificate signed by
    // `tls_dir`/ca.pem; the member serves `tls_dir`/server.pem + server.key.
    std::string tls_dir;
  };
  explicit EtcdCluster(Options options);
  ~EtcdCluster();

  // Starts every member; OK once all of them answer.
  absl::Status Start();
  // Member i: stop with a signal (and reap), start again on the same dirs.
  void Kill(int i, int sig = 9);
  absl::Status Restart(int i);
  bool Running(int i);

  // "http://127.0.0.1:P,..." for --etcd-endpoints.
  std::string Endpoints() const;
  std::vector<std::string> EndpointList() const;
  std::string ClientUrl(int i) const;
  const std::string& dir() const { return dir_; }
  std::string Log(int i) const;
  int size() const { return static_cast<int>(members_.size()); }

 private:
  struct Member {
    std::string name;
    int client_port = 0;
    int peer_port = 0;
    pid_t pid = -1;
  };
  void Spawn(int i, bool initial);
  absl::Status WaitReady(int i, absl::Duration timeout);

  Options options_;
  std::string dir_;
  std::vector<Member> members_;
};

}  // namespace joule::testing
