#include "cli/deferred_descriptors.h"

#ifdef JOULE_RUNNER_CTOR
#include "google/protobuf/generated_message_reflection.h"

// JOULE_RUNNER_CTOR (cli/CMakeLists.txt) is the symbol of the constructor
// google::protobuf::internal::AddDescriptorsRunner(const DescriptorTable*),
// which each generated file's static initializer calls to register its
// table. Linked with `-Wl,--wrap=` on it, those calls land in
// __wrap_<symbol>; __real_<symbol> is protobuf's constructor.
#define JOULE_PASTE_(a, b) a##b
#define JOULE_PASTE(a, b) JOULE_PASTE_(a, b)
#define JOULE_REAL_RUNNER JOULE_PASTE(__real_, JOULE_RUNNER_CTOR)
#define JOULE_WRAP_RUNNER JOULE_PASTE(__wrap_, JOULE_RUNNER_CTOR)

using google::protobuf::internal::DescriptorTable;

extern "C" void JOULE_REAL_RUNNER(void* self, const DescriptorTable* table);
extern "C" void JOULE_WRAP_RUNNER(void* self, const DescriptorTable* table);

namespace {

// The files noted before main() (static initializers run one at a time);
// constant-initialized, so usable from initializers that run before this
// file's.
constexpr int kMaxDeferred = 64;
constinit const DescriptorTable* deferred[kMaxDeferred] = {};
constinit int deferred_count = 0;

}  // namespace

void JOULE_WRAP_RUNNER(void* self, const DescriptorTable* table) {
  if (deferred_count == kMaxDeferred) {  // more files than foreseen: now
    JOULE_REAL_RUNNER(self, table);
    return;
  }
  deferred[deferred_count++] = table;
}

namespace joule::cli {

void RegisterDeferredDescriptors() {
  // The runner is an empty object; its constructor registers the table
  // unless protobuf already has (DescriptorTable::is_initialized).
  char runner = 0;
  for (int i = 0; i < deferred_count; ++i) {
    JOULE_REAL_RUNNER(&runner, deferred[i]);
  }
}

}  // namespace joule::cli

#else  // protobuf registers every file at static initialization

namespace joule::cli {

void RegisterDeferredDescriptors() {}

}  // namespace joule::cli

#endif
