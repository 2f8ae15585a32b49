// Plain-text tables for cdcctl's human output.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace cdcp11::cdcctl {

class Table {
 public:
  explicit Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void print(std::ostream& out) const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace cdcp11::cdcctl
