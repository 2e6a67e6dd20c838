// libternary_ops.so as a native app sees it: dlopen'ed, only the documented symbols resolved
// (c_api.h and the TFLite delegate plugin entry points), each of them present, nothing else
// exported; tvlm_pack / tvlm_unpack against the format written out by hand from packing.h's
// specification; every registration named as documented; one TernaryMatMul run through the resolved
// registration.
#include <dlfcn.h>
#include <elf.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "cc/tflite/tests/fake_interpreter.h"
#include "gtest/gtest.h"
#include "third_party/tflite_abi/tflite_abi.h"

namespace tvlm {
namespace {

const char* library_path = nullptr;  // argv[1]: the library's runfiles path

const std::set<std::string> kDocumented = {"tvlm_register_ternary_matmul",
                                           "tvlm_register_binary_matmul",
                                           "tvlm_register_unpack_ternary",
                                           "tvlm_register_kv_cache_attention",
                                           "tvlm_register_int8_matmul",
                                           "tvlm_row_bytes",
                                           "tvlm_pack",
                                           "tvlm_unpack",
                                           "tflite_plugin_create_delegate",
                                           "tflite_plugin_destroy_delegate"};

// Defined global and weak symbols of the ELF file's dynamic symbol table (ELF32 or ELF64).
template <typename Ehdr, typename Shdr, typename Sym, unsigned char (*Bind)(unsigned char)>
std::set<std::string> ExportedSymbols(const std::vector<char>& file) {
  std::set<std::string> names;
  const auto* eh = reinterpret_cast<const Ehdr*>(file.data());
  const auto* sections = reinterpret_cast<const Shdr*>(file.data() + eh->e_shoff);
  for (int i = 0; i < eh->e_shnum; ++i) {
    if (sections[i].sh_type != SHT_DYNSYM) continue;
    const char* strings = file.data() + sections[sections[i].sh_link].sh_offset;
    const auto* syms = reinterpret_cast<const Sym*>(file.data() + sections[i].sh_offset);
    for (size_t s = 0; s < sections[i].sh_size / sizeof(Sym); ++s) {
      const unsigned char bind = Bind(syms[s].st_info);
      if (syms[s].st_shndx != SHN_UNDEF && (bind == STB_GLOBAL || bind == STB_WEAK)) {
        names.insert(strings + syms[s].st_name);
      }
    }
  }
  return names;
}
unsigned char Bind32(unsigned char info) { return ELF32_ST_BIND(info); }
unsigned char Bind64(unsigned char info) { return ELF64_ST_BIND(info); }

class CApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(library_path, nullptr) << "usage: c_api_test path/to/libternary_ops.so";
    handle_ = dlopen(library_path, RTLD_NOW | RTLD_LOCAL);
    ASSERT_NE(handle_, nullptr) << dlerror();
  }
  void TearDown() override {
    if (handle_) dlclose(handle_);
  }
  template <typename F>
  F* Resolve(const char* name) {
    void* symbol = dlsym(handle_, name);
    EXPECT_NE(symbol, nullptr) << name << " is documented but not exported";
    return reinterpret_cast<F*>(symbol);
  }
  void* handle_ = nullptr;
};

TEST_F(CApiTest, ExportsExactlyTheDocumentedSymbols) {
  std::ifstream in(library_path, std::ios::binary);
  const std::vector<char> file((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
  ASSERT_GT(file.size(), sizeof(Elf64_Ehdr));
  ASSERT_EQ(std::memcmp(file.data(), ELFMAG, SELFMAG), 0);
  const std::set<std::string> exported =
      file[EI_CLASS] == ELFCLASS64
          ? ExportedSymbols<Elf64_Ehdr, Elf64_Shdr, Elf64_Sym, Bind64>(file)
          : ExportedSymbols<Elf32_Ehdr, Elf32_Shdr, Elf32_Sym, Bind32>(file);
  EXPECT_EQ(exported, kDocumented);
  for (const std::string& name : kDocumented)
    EXPECT_NE(dlsym(handle_, name.c_str()), nullptr) << name;
}

TEST_F(CApiTest, PackAndUnpackFollowTheDocumentedFormat) {
  auto* row_bytes = Resolve<size_t(int, size_t)>("tvlm_row_bytes");
  auto* pack =
      Resolve<int(int, const int8_t*, size_t, size_t, uint8_t*, char*, size_t)>("tvlm_pack");
  auto* unpack =
      Resolve<int(int, const uint8_t*, size_t, size_t, int8_t*, char*, size_t)>("tvlm_unpack");
  ASSERT_TRUE(row_bytes && pack && unpack);
  EXPECT_EQ(row_bytes(0, 9), 3u);
  EXPECT_EQ(row_bytes(1, 9), 2u);
  EXPECT_EQ(row_bytes(7, 9), 0u);
  // Ternary: code t + 1, least significant pair first, padding 0b01. Binary: 1 = +1, bit k % 8,
  // padding 0.
  const int8_t t[5] = {-1, 0, 1, 1, -1};
  uint8_t packed[2] = {0, 0};
  char error[128] = "";
  ASSERT_EQ(pack(0, t, 1, 5, packed, error, sizeof(error)), 0) << error;
  EXPECT_EQ(packed[0], 0b10100100);
  EXPECT_EQ(packed[1], 0b01010100);
  const int8_t b[9] = {1, -1, -1, 1, 1, 1, -1, 1, 1};
  ASSERT_EQ(pack(1, b, 1, 9, packed, error, sizeof(error)), 0) << error;
  EXPECT_EQ(packed[0], 0b10111001);
  EXPECT_EQ(packed[1], 0b00000001);
  int8_t back[9] = {};
  ASSERT_EQ(unpack(1, packed, 1, 9, back, error, sizeof(error)), 0) << error;
  EXPECT_EQ(std::vector<int8_t>(back, back + 9), std::vector<int8_t>(b, b + 9));
  const uint8_t invalid[1] = {0b11};
  EXPECT_EQ(unpack(0, invalid, 1, 4, back, error, sizeof(error)), -1);
  EXPECT_NE(std::string(error), "");
  const int8_t two[1] = {2};
  EXPECT_EQ(pack(0, two, 1, 1, packed, error, sizeof(error)), -1);
}

TEST_F(CApiTest, RegistrationsAreNamedAndRun) {
  const std::pair<const char*, const char*> ops[] = {
      {"tvlm_register_ternary_matmul", "TernaryMatMul"},
      {"tvlm_register_binary_matmul", "BinaryMatMul"},
      {"tvlm_register_unpack_ternary", "UnpackTernary"},
      {"tvlm_register_kv_cache_attention", "KVCacheAttention"},
      {"tvlm_register_int8_matmul", "Int8MatMul"}};
  for (const auto& [symbol, name] : ops) {
    auto* registration = Resolve<TfLiteRegistration*()>(symbol);
    ASSERT_NE(registration, nullptr);
    const TfLiteRegistration* r = registration();
    ASSERT_NE(r, nullptr) << symbol;
    EXPECT_STREQ(r->custom_name, name);
    EXPECT_TRUE(r->init && r->free && r->prepare && r->invoke) << symbol;
  }
  // y = (x · w) * scale for a 3 x 5 ternary layer, through the library's registration.
  auto* pack =
      Resolve<int(int, const int8_t*, size_t, size_t, uint8_t*, char*, size_t)>("tvlm_pack");
  const int8_t w[15] = {1, 0, -1, 1, 1, -1, -1, 0, 0, 1, 0, 1, 1, -1, 0};
  std::vector<uint8_t> packed(3 * 2);
  ASSERT_EQ(pack(0, w, 3, 5, packed.data(), nullptr, 0), 0);
  std::vector<float> x = {0.5f, -1.0f, 2.0f, 0.25f, 3.0f}, scale = {1.0f, 0.5f, 2.0f};
  FakeInterpreter interp;
  const int xi = interp.AddTensor(kTfLiteFloat32, {1, 5}, x.data(), 20, false);
  const int pi = interp.AddTensor(kTfLiteUInt8, {3, 2}, packed.data(), packed.size(), true);
  const int si = interp.AddTensor(kTfLiteFloat32, {3}, scale.data(), 12, true);
  const int yi = interp.AddTensor(kTfLiteFloat32, {1}, nullptr, 0, false);
  std::vector<float> y;
  auto* ternary = Resolve<TfLiteRegistration*()>("tvlm_register_ternary_matmul");
  ASSERT_EQ(interp.Run(ternary(), {xi, pi, si}, yi, &y), kTfLiteOk) << interp.error();
  ASSERT_EQ(y.size(), 3u);
  for (int o = 0; o < 3; ++o) {
    double want = 0;
    for (int c = 0; c < 5; ++c) want += double{x[c]} * w[o * 5 + c];
    EXPECT_NEAR(y[o], want * scale[o], 1e-6) << "output " << o;
  }
}

}  // namespace
}  // namespace tvlm

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc > 1) tvlm::library_path = argv[1];
  return RUN_ALL_TESTS();
}
