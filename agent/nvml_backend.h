#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "agent/gpu_backend.h"

namespace joule::agent {

// How to reach the NVIDIA driver's management library.
struct NvmlOptions {
  // Passed to dlopen(): a bare name is looked up on the library path
  // (LD_LIBRARY_PATH, ld.so.cache), a name with a '/' is opened as is.
  std::string library = "libnvidia-ml.so.1";
};

// Opens NVML at run time (dlopen; nothing of CUDA or NVML is needed to build),
// initializes it and discovers the GPUs. The returned backend ("nvml") owns the
// library handle and NVML's initialization until it is destroyed; it is
// thread-safe.
//
// Fails, with a message naming what is missing, when the library cannot be
// loaded (NotFound), a required symbol is absent (FailedPrecondition),
// nvmlInit_v2 fails (Unavailable, or PermissionDenied), no GPU is found
// (NotFound) or a GPU cannot be opened for lack of permission
// (PermissionDenied). Never falls back to anything else.
absl::StatusOr<std::unique_ptr<GpuBackend>> NewNvmlBackend(
    const NvmlOptions& options = NvmlOptions());

}  // namespace joule::agent
