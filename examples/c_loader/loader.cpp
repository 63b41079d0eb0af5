// The same check as loader.c, from C++: load the kernels exported in net/, run them on the inputs written by
// make_data.py, compare with the numpy references. Usage: loader_cpp DATA_DIR. Exit 0 if both match.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>

#include "net.h"  // extern "C" inside

namespace {

struct Free { void operator()(void* p) const { std::free(p); } };
template <class T> using Buffer = std::unique_ptr<T[], Free>;

// 64-byte aligned, as the kernels require.
template <class T> Buffer<T> alloc64(std::size_t n) {
  void* p = std::aligned_alloc(64, (n * sizeof(T) + 63) / 64 * 64);
  if (!p) throw std::bad_alloc();
  return Buffer<T>(static_cast<T*>(p));
}

template <class T> Buffer<T> read(const std::string& dir, const std::string& name, std::size_t n) {
  std::ifstream f(dir + "/" + name, std::ios::binary | std::ios::ate);
  if (!f) throw std::runtime_error("cannot open " + dir + "/" + name);
  if (static_cast<std::size_t>(f.tellg()) != n * sizeof(T)) throw std::runtime_error(name + ": wrong size");
  f.seekg(0);
  auto b = alloc64<T>(n);
  f.read(reinterpret_cast<char*>(b.get()), static_cast<std::streamsize>(n * sizeof(T)));
  return b;
}

void ok_or_throw(int rc, const char* what) {
  if (rc != 0) throw std::runtime_error(std::string(what) + ": " + net_last_error());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) { std::cerr << "usage: " << argv[0] << " DATA_DIR\n"; return 1; }
  const std::string dir = argv[1];
  try {
    ok_or_throw(net_check_cpu(), "net_check_cpu");
    double rtol = 0, atol = 0;
    std::ifstream(dir + "/conv_tol.txt") >> rtol >> atol;

    auto x = read<float>(dir, "conv_x.bin", NET_CONV_X_SIZE);
    auto w = read<float>(dir, "conv_w.bin", NET_CONV_W_SIZE);
    auto ref = read<float>(dir, "conv_ref.bin", NET_CONV_Y_SIZE);
    auto y = alloc64<float>(NET_CONV_Y_SIZE);
    ok_or_throw(net_conv(x.get(), w.get(), y.get()), "net_conv");
    long bad = 0;
    for (long i = 0; i < NET_CONV_Y_SIZE; i++)
      bad += !(std::fabs(double(y[i]) - double(ref[i])) <= atol + rtol * std::fabs(double(ref[i])));
    std::cout << "c++ conv: " << (bad ? "MISMATCH" : "OK") << " (" << bad << " outside tolerance)\n";

    auto bx = read<std::uint64_t>(dir, "bconv_x.bin", NET_BCONV_X_SIZE);
    auto bw = read<std::uint64_t>(dir, "bconv_w.bin", NET_BCONV_W_SIZE);
    auto bref = read<std::int32_t>(dir, "bconv_ref.bin", NET_BCONV_Y_SIZE);
    auto by = alloc64<std::int32_t>(NET_BCONV_Y_SIZE);
    ok_or_throw(net_bconv(bx.get(), bw.get(), by.get()), "net_bconv");
    long bbad = 0;
    for (long i = 0; i < NET_BCONV_Y_SIZE; i++) bbad += by[i] != bref[i];
    std::cout << "c++ bconv: " << (bbad ? "MISMATCH" : "OK") << " (" << bbad << " differ; exact)\n";
    return (bad || bbad) ? 1 : 0;
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 2;
  }
}
