#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "storage/store.h"

namespace joule::daemon {

// Deletes the `events` records whose time is before `cutoff`, oldest first
// (the table is keyed by sequence number, so in time order), in batches of
// at most `max_batch_ops` deletes (0: 1,000), and stops at the first event
// at or after `cutoff`. Returns how many it deleted. Events are only read
// from the store (ListEvents), and the event counter lives in `meta`, so
// deleting old ones changes nothing else. Used by HaDaemon with
// --event-retention (docs/ha.md#sizing). Thread-safe as the store is.
absl::StatusOr<int64_t> CompactEvents(storage::Store* store, absl::Time cutoff,
                                      int64_t max_batch_ops);

}  // namespace joule::daemon
