#ifndef TERNARY_VLM_CC_KERNELS_STATUS_H_
#define TERNARY_VLM_CC_KERNELS_STATUS_H_

#include <string>
#include <utility>

namespace tvlm {

// Result of an operation that can fail on bad input: ok, or a one-line message naming the problem.
class Status {
 public:
  static Status Ok() { return Status(); }
  static Status Error(std::string message) { return Status(std::move(message)); }

  bool ok() const { return message_.empty(); }
  const std::string& message() const { return message_; }

 private:
  Status() = default;
  explicit Status(std::string message) : message_(std::move(message)) {
    if (message_.empty()) message_ = "unknown error";
  }
  std::string message_;
};

}  // namespace tvlm

#endif  // TERNARY_VLM_CC_KERNELS_STATUS_H_
