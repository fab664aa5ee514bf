// ByteQueue: a contiguous FIFO of bytes that grows on demand and gives memory
// back when it empties, so ten thousand idle connections cost almost nothing.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <utility>

namespace muxlab {

class ByteQueue {
 public:
  ByteQueue() = default;
  // A moved-from queue is empty and owns nothing (the defaults would leave
  // it claiming the capacity it gave away).
  ByteQueue(ByteQueue&& other) noexcept { *this = std::move(other); }
  ByteQueue& operator=(ByteQueue&& other) noexcept {
    data_ = std::move(other.data_);
    capacity_ = std::exchange(other.capacity_, 0);
    head_ = std::exchange(other.head_, 0);
    tail_ = std::exchange(other.tail_, 0);
    return *this;
  }

  std::size_t size() const { return tail_ - head_; }
  bool empty() const { return head_ == tail_; }
  std::size_t capacity() const { return capacity_; }

  std::span<const char> readable() const { return {data_.get() + head_, size()}; }
  void consume(std::size_t n);

  // Space for at least `n` more bytes at the tail; commit() what was filled.
  std::span<char> reserve(std::size_t n);
  void commit(std::size_t n) { tail_ += n; }

 private:
  static constexpr std::size_t kKeepWhenEmpty = 64 * 1024;

  std::unique_ptr<char[]> data_;
  std::size_t capacity_ = 0;
  std::size_t head_ = 0;
  std::size_t tail_ = 0;
};

}  // namespace muxlab
