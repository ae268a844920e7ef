// sparseforge VM runner: loads a compiled Relax VM library with TVM's C++ runtime and runs `main`.
//
// usage: vm_runner LIB.so OUT_PREFIX THREADS SPEC...
//   SPEC = DTYPE:D0,D1,...:FILE   raw little-endian input tensor (DTYPE: float32, int64, int32, ...)
// Writes every output tensor to OUT_PREFIX.<i>.bin and prints one line per output: "output <i> <dtype> <d0,d1,..>".
// Exit code 0 on success, 1 on a usage error, 2 on a runtime error (message on stderr).
#include <tvm/ffi/any.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/string.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace ffi = tvm::ffi;

struct AlignedAlloc {
  void AllocData(DLTensor* t) {
    size_t size = ffi::GetDataSize(*t);
    void* p = nullptr;
    if (posix_memalign(&p, 64, size ? size : 64) != 0) p = nullptr;
    t->data = p;
  }
  void FreeData(DLTensor* t) { free(t->data); }
};

static bool ParseDType(const std::string& s, DLDataType* out) {
  struct { const char* name; uint8_t code; uint8_t bits; } table[] = {
      {"float32", kDLFloat, 32}, {"float64", kDLFloat, 64}, {"float16", kDLFloat, 16},
      {"int64", kDLInt, 64},     {"int32", kDLInt, 32},     {"int8", kDLInt, 8},
      {"int16", kDLInt, 16},     {"uint8", kDLUInt, 8},     {"uint16", kDLUInt, 16},
      {"uint32", kDLUInt, 32},   {"uint64", kDLUInt, 64},   {"bool", kDLBool, 8}};
  for (auto& e : table) {
    if (s == e.name) { *out = DLDataType{e.code, e.bits, 1}; return true; }
  }
  return false;
}

static std::string DTypeName(DLDataType t) {
  if (t.code == kDLFloat) return "float" + std::to_string(t.bits);
  if (t.code == kDLInt) return "int" + std::to_string(t.bits);
  if (t.code == kDLUInt) return "uint" + std::to_string(t.bits);
  if (t.code == kDLBool) return "bool";
  return "unknown";
}

static void Collect(const ffi::Any& value, std::vector<ffi::Tensor>* out) {
  if (auto t = value.try_cast<ffi::Tensor>()) { out->push_back(*t); return; }
  if (auto arr = value.try_cast<ffi::Array<ffi::Any>>()) {
    for (const ffi::Any& item : *arr) Collect(item, out);
    return;
  }
  throw std::runtime_error("unsupported output type");
}

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: vm_runner LIB.so OUT_PREFIX THREADS DTYPE:SHAPE:FILE...\n";
    return 1;
  }
  try {
    std::string threads = argv[3];
    setenv("TVM_NUM_THREADS", threads.c_str(), 1);
    ffi::Module lib = ffi::Module::LoadFromFile(argv[1]);
    ffi::Module vm = lib->GetFunction("vm_load_executable").value()().cast<ffi::Module>();
    vm->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, 2,
                                                 static_cast<int>(kDLCPU), 0, 2);
    ffi::Function f = vm->GetFunction("main").value();
    DLDevice cpu{kDLCPU, 0};
    std::vector<ffi::Any> args;
    for (int i = 4; i < argc; ++i) {
      std::string spec = argv[i];
      size_t a = spec.find(':'), b = spec.find(':', a + 1);
      if (a == std::string::npos || b == std::string::npos) {
        std::cerr << "bad tensor spec: " << spec << "\n";
        return 1;
      }
      DLDataType dtype;
      if (!ParseDType(spec.substr(0, a), &dtype)) {
        std::cerr << "unknown dtype in: " << spec << "\n";
        return 1;
      }
      std::vector<int64_t> shape;
      std::stringstream ss(spec.substr(a + 1, b - a - 1));
      for (std::string d; std::getline(ss, d, ',');) if (!d.empty()) shape.push_back(std::stoll(d));
      ffi::Tensor t = ffi::Tensor::FromNDAlloc(AlignedAlloc(), ffi::ShapeView(shape.data(), shape.size()), dtype, cpu);
      size_t nbytes = ffi::GetDataSize(t);
      std::ifstream in(spec.substr(b + 1), std::ios::binary);
      in.read(static_cast<char*>(t.GetDLTensorPtr()->data), static_cast<std::streamsize>(nbytes));
      if (static_cast<size_t>(in.gcount()) != nbytes) {
        std::cerr << "input file too short: " << spec << "\n";
        return 1;
      }
      args.push_back(t);
    }
    ffi::Any ret;
    f.CallPacked(ffi::PackedArgs(reinterpret_cast<const ffi::AnyView*>(args.data()),
                                 static_cast<int32_t>(args.size())), &ret);
    std::vector<ffi::Tensor> outputs;
    Collect(ret, &outputs);
    for (size_t i = 0; i < outputs.size(); ++i) {
      const DLTensor* t = outputs[i].GetDLTensorPtr();
      std::string path = std::string(argv[2]) + "." + std::to_string(i) + ".bin";
      std::ofstream out(path, std::ios::binary);
      out.write(static_cast<const char*>(t->data) + t->byte_offset,
                static_cast<std::streamsize>(ffi::GetDataSize(*t)));
      std::cout << "output " << i << " " << DTypeName(t->dtype) << " ";
      for (int d = 0; d < t->ndim; ++d) std::cout << (d ? "," : "") << t->shape[d];
      std::cout << "\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "runtime error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
