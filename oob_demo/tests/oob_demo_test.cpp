// Every claim oob_demo prints, asserted against what this kernel does.
#include <gtest/gtest.h>

#include <cerrno>

#include "oob_lesson.hpp"
#include "process.hpp"

namespace muxlab::oob {
namespace {

TEST(OobDemo, OnlyTheLastByteOfAnOobSendIsUrgent) {
  const auto r = only_last_byte_is_urgent();
  EXPECT_EQ(r.normal, "ab");
  EXPECT_EQ(r.urgent, std::optional<char>('c'));
}

TEST(OobDemo, ReadStopsAtTheMarkAndSockatmarkSaysSo) {
  const auto r = read_stops_at_the_mark();
  EXPECT_FALSE(r.at_mark_before_reading);
  EXPECT_EQ(r.first_read, "xy");
  EXPECT_TRUE(r.at_mark_after_first_read);
  EXPECT_EQ(r.urgent, std::optional<char>('Z'));
  EXPECT_EQ(r.second_read, "w");
}

TEST(OobDemo, OobinlineLeavesTheByteInTheStream) {
  const auto r = oobinline_keeps_the_byte_in_the_stream();
  EXPECT_EQ(r.oob_recv_errno, EINVAL);
  EXPECT_EQ(r.normal, "abcd");
}

TEST(OobDemo, SecondUrgentByteReplacesTheFirstWhichIsLost) {
  const auto r = second_urgent_byte_replaces_the_first();
  EXPECT_EQ(r.urgent, std::optional<char>('2'));
  // Linux skips the unread old urgent byte; it never reaches the normal stream.
  EXPECT_EQ(r.normal, "end");
}

TEST(OobDemo, SelectReportsUrgentDataInExceptfds) {
  const auto r = select_reports_urgent_data_as_exception();
  EXPECT_FALSE(r.exception_before);
  EXPECT_TRUE(r.exception_while_pending);
  EXPECT_FALSE(r.exception_after_reading);
}

TEST(OobDemo, SigurgReachesTheOwner) {
  const auto r = sigurg_reaches_the_owner();
  EXPECT_EQ(r.signals_after, r.signals_before + 1);
}

TEST(OobDemo, ProgramPrintsEveryClaimAndExitsZero) {
  const auto result = test::run_command(OOB_DEMO_PATH, {});
  EXPECT_EQ(result.status.code, 0) << result.out << result.err;
  int holds = 0;
  for (std::size_t at = 0; (at = result.out.find("[holds]", at)) != std::string::npos; ++at)
    ++holds;
  EXPECT_EQ(holds, 6) << result.out;
  EXPECT_EQ(test::run_command(OOB_DEMO_PATH, {"--bogus"}).status.code, 2);
}

}  // namespace
}  // namespace muxlab::oob
