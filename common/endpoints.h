#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace joule {

// Splits "a,b,c" (spaces around commas allowed) into endpoints.
// INVALID_ARGUMENT naming `flag` when the list or one of its items is empty.
absl::StatusOr<std::vector<std::string>> ParseEndpoints(std::string_view list,
                                                        std::string_view flag);

// The leader address in a standby jouled's UNAVAILABLE message
// ("... the leader is at HOST:PORT"); empty if none.
std::string LeaderHint(std::string_view message);

// Which of several jouled endpoints to call: the one that last answered,
// the leader a standby named, or else the next one in the list. gRPC-free:
// callers pass the status code (as int) and message of a failed call.
// Thread-safe.
class EndpointFollower {
 public:
  explicit EndpointFollower(std::vector<std::string> endpoints);

  // The endpoint to call now.
  std::string Current() const;
  size_t size() const { return endpoints_.size(); }
  // After a call to Current() failed with UNAVAILABLE (14), DEADLINE_EXCEEDED
  // (4) or a broken stream: moves to the leader the message names, else to
  // the next endpoint. Returns true when the failure was of that kind (the
  // caller may retry on Current()); other codes leave it where it is.
  bool OnFailure(int grpc_code, std::string_view message);

 private:
  const std::vector<std::string> endpoints_;
  mutable absl::Mutex mu_;
  std::string current_ ABSL_GUARDED_BY(mu_);
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;  // index of current_ in the list
};

}  // namespace joule
