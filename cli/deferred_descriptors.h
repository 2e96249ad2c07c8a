#pragma once

// joulectl's protobuf descriptors, registered when first needed instead of
// at static initialization.
//
// Every generated .pb.cc registers its file's serialized descriptor with
// protobuf's generated pool from a static initializer, and that parses the
// whole FileDescriptorProto: about 2.3 M instructions per joulectl process
// for joule.proto, auth.proto and the well-known types, most of a short
// call's start (bench/README.md, "Joule and Slurm"). A call that prints a
// table uses no descriptor. Where joulectl is linked statically
// (JOULE_STATIC_CLI, protobuf 3.21's generated code), the link redirects those
// initializers here
// (`-Wl,--wrap`, cli/CMakeLists.txt): each one only notes its file. A file
// is then registered by protobuf itself the first time one of its types'
// descriptor() or reflection is used (AssignDescriptors registers the file
// and its imports; -o json, -o yaml, enum names all go that way), or by
// RegisterDeferredDescriptors() below. Elsewhere (a dynamic joulectl)
// registration is protobuf's own and RegisterDeferredDescriptors() does
// nothing.

namespace joule::cli {

// Registers every file noted so far, as the static initializers would have:
// needed before a lookup by name that no descriptor() call precedes
// (DescriptorPool::generated_pool()->FindMethodByName, as the session's
// proxy does). Call from main() before any thread is started (protobuf's
// registration is not thread-safe against itself). Idempotent.
void RegisterDeferredDescriptors();

}  // namespace joule::cli
