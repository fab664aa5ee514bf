#include "byte_queue.hpp"

#include <algorithm>
#include <cstring>

namespace muxlab {

void ByteQueue::consume(std::size_t n) {
  head_ += std::min(n, size());
  if (head_ != tail_) return;
  head_ = tail_ = 0;
  if (capacity_ > kKeepWhenEmpty) {
    data_.reset();
    capacity_ = 0;
  }
}

std::span<char> ByteQueue::reserve(std::size_t n) {
  if (capacity_ - tail_ < n) {
    const std::size_t used = size();
    if (capacity_ - used >= n && head_ > 0) {
      std::memmove(data_.get(), data_.get() + head_, used);
    } else {
      std::size_t grown = std::max<std::size_t>(capacity_ * 2, 4096);
      while (grown - used < n) grown *= 2;
      auto bigger = std::make_unique_for_overwrite<char[]>(grown);
      if (used > 0) std::memcpy(bigger.get(), data_.get() + head_, used);
      data_ = std::move(bigger);
      capacity_ = grown;
    }
    head_ = 0;
    tail_ = used;
  }
  return {data_.get() + tail_, capacity_ - tail_};
}

}  // namespace muxlab
