// The C++ weight packing (cc/kernels/packing.h) as a Python module, so the exporter, the
// quantizers and the kernels share one definition of the format.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "cc/kernels/packing.h"

namespace py = pybind11;

namespace {

using Int8Array = py::array_t<int8_t, py::array::c_style | py::array::forcecast>;
using Uint8Array = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;

tvlm::WeightFormat ParseFormat(const std::string& name) {
  for (int f = 0; f < tvlm::kWeightFormats; ++f) {
    const auto format = static_cast<tvlm::WeightFormat>(f);
    if (name == tvlm::FormatInfo(format).name) return format;
  }
  std::string known;
  for (int f = 0; f < tvlm::kWeightFormats; ++f) {
    known += std::string(f ? ", " : "") + tvlm::FormatInfo(static_cast<tvlm::WeightFormat>(f)).name;
  }
  throw py::value_error("unknown weight format '" + name + "' (known: " + known + ")");
}

void Check(const tvlm::Status& status) {
  if (!status.ok()) throw py::value_error(status.message());
}

py::array_t<uint8_t> Pack(Int8Array values, const std::string& format_name) {
  const auto format = ParseFormat(format_name);
  if (values.ndim() != 2) {
    throw py::value_error("pack: values must be 2-D [rows, k], got " +
                          std::to_string(values.ndim()) + "-D");
  }
  const size_t rows = values.shape(0), k = values.shape(1);
  py::array_t<uint8_t> out({rows, tvlm::RowBytes(format, k)});
  tvlm::Status status = tvlm::Status::Ok();
  {
    py::gil_scoped_release release;
    status = tvlm::Pack(format, values.data(), rows, k, out.mutable_data());
  }
  Check(status);
  return out;
}

py::array_t<int8_t> Unpack(Uint8Array packed, size_t k, const std::string& format_name) {
  const auto format = ParseFormat(format_name);
  if (packed.ndim() != 2) {
    throw py::value_error("unpack: packed must be 2-D [rows, row_bytes], got " +
                          std::to_string(packed.ndim()) + "-D");
  }
  const size_t rows = packed.shape(0);
  const size_t want = tvlm::RowBytes(format, k);
  if (static_cast<size_t>(packed.shape(1)) != want) {
    throw py::value_error("unpack: packed rows have " + std::to_string(packed.shape(1)) +
                          " bytes, " + format_name + " with k = " + std::to_string(k) +
                          " needs " + std::to_string(want));
  }
  py::array_t<int8_t> out({rows, k});
  tvlm::Status status = tvlm::Status::Ok();
  {
    py::gil_scoped_release release;
    status = tvlm::Unpack(format, packed.data(), rows, k, out.mutable_data());
  }
  Check(status);
  return out;
}

py::list Formats() {
  py::list formats;
  for (int f = 0; f < tvlm::kWeightFormats; ++f) {
    const auto& info = tvlm::FormatInfo(static_cast<tvlm::WeightFormat>(f));
    py::dict d;
    d["name"] = info.name;
    d["weights_per_byte"] = info.weights_per_byte;
    d["bits_per_weight"] = info.bits_per_weight_x100 / 100.0;
    formats.append(d);
  }
  return formats;
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "Weight packing shared with the C++ kernels (cc/kernels/packing.h).";
  m.def("formats", &Formats, "The packing format table: name, weights_per_byte, bits_per_weight.");
  m.def("row_bytes",
        [](const std::string& format, size_t k) { return tvlm::RowBytes(ParseFormat(format), k); },
        py::arg("format"), py::arg("k"));
  m.def("pack", &Pack, py::arg("values"), py::arg("format"),
        "int8 [rows, k] in the format's alphabet -> uint8 [rows, row_bytes].");
  m.def("unpack", &Unpack, py::arg("packed"), py::arg("k"), py::arg("format"),
        "uint8 [rows, row_bytes] -> int8 [rows, k]; rejects invalid codes and padding.");
}
