#include "common/endpoints.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace joule {

absl::StatusOr<std::vector<std::string>> ParseEndpoints(std::string_view list,
                                                        std::string_view flag) {
  std::vector<std::string> out;
  for (absl::string_view item :
       absl::StrSplit(absl::string_view(list.data(), list.size()), ',')) {
    item = absl::StripAsciiWhitespace(item);
    if (item.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          std::string(flag), ": empty address in \"", std::string(list),
          "\" (want HOST:PORT[,HOST:PORT...])"));
    }
    out.emplace_back(item);
  }
  return out;
}

std::string LeaderHint(std::string_view message) {
  constexpr std::string_view kMarker = "the leader is at ";
  const size_t at = message.find(kMarker);
  if (at == std::string_view::npos) return "";
  std::string_view rest = message.substr(at + kMarker.size());
  const size_t end = rest.find_first_of(" ;,)\n");
  return std::string(rest.substr(0, end));
}

EndpointFollower::EndpointFollower(std::vector<std::string> endpoints)
    : endpoints_(std::move(endpoints)) {
  if (!endpoints_.empty()) current_ = endpoints_[0];
}

std::string EndpointFollower::Current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

bool EndpointFollower::OnFailure(int grpc_code, std::string_view message) {
  constexpr int kDeadlineExceeded = 4;
  constexpr int kUnavailable = 14;
  if (grpc_code != kUnavailable && grpc_code != kDeadlineExceeded) {
    return false;
  }
  absl::MutexLock lock(&mu_);
  if (endpoints_.empty()) return true;
  const std::string hint = LeaderHint(message);
  if (!hint.empty() && hint != current_) {
    current_ = hint;  // may be outside the list: the leader knows best
    for (size_t i = 0; i < endpoints_.size(); ++i) {
      if (endpoints_[i] == hint) next_ = i;
    }
    return true;
  }
  next_ = (next_ + 1) % endpoints_.size();
  current_ = endpoints_[next_];
  return true;
}

}  // namespace joule
