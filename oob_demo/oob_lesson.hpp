// The facts about TCP urgent ("out-of-band") data that oob_demo prints and its
// tests assert. Each function sets up a fresh loopback connection, performs
// one experiment and returns what the kernel reported; nothing is assumed.
#pragma once

#include <optional>
#include <string>

namespace muxlab::oob {

// send("abc", MSG_OOB): which byte became urgent, what the normal stream holds.
struct LastByteResult {
  std::string normal;          // what read() returned
  std::optional<char> urgent;  // what recv(MSG_OOB) returned
};
LastByteResult only_last_byte_is_urgent();

// "xy" + urgent 'Z' + "w": read() stops at the mark; sockatmark() tells where.
struct MarkResult {
  bool at_mark_before_reading = true;
  std::string first_read;  // up to the mark
  bool at_mark_after_first_read = false;
  std::optional<char> urgent;
  std::string second_read;  // after the mark
};
MarkResult read_stops_at_the_mark();

// The same bytes with SO_OOBINLINE on the receiver.
struct InlineResult {
  int oob_recv_errno = 0;  // recv(MSG_OOB) fails: the byte stays in the stream
  std::string normal;      // every byte, the urgent one in its place
};
InlineResult oobinline_keeps_the_byte_in_the_stream();

// Urgent '1', then urgent '2' and "end" before the first was read.
struct ReplaceResult {
  std::optional<char> urgent;  // the byte recv(MSG_OOB) returns
  std::string normal;          // what the normal stream delivered
};
ReplaceResult second_urgent_byte_replaces_the_first();

// select(): the exception set before, while and after urgent data is pending.
struct SelectResult {
  bool exception_before = true;
  bool exception_while_pending = false;
  bool exception_after_reading = true;
};
SelectResult select_reports_urgent_data_as_exception();

// F_SETOWN: the owner gets SIGURG when urgent data arrives.
struct SigurgResult {
  int signals_before = -1;
  int signals_after = 0;
};
SigurgResult sigurg_reaches_the_owner();

}  // namespace muxlab::oob
