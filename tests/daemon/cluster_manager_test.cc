#include "daemon/cluster_manager.h"
#include "gtest/gtest.h"
TEST(Stub, Stub) {}
