#pragma once

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace joule::daemon {

// The one place where absl::Status becomes grpc::Status: same code, same
// message.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace joule::daemon
