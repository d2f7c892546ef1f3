// cublas_loader.h: cuBLASLt (else cuBLAS) found at run time with dlopen, so libcrate_cuda.so
// builds without cuBLAS headers and loads on machines without cuBLAS (the GEMM then uses its own
// kernels). Host-only and free of CUDA headers: CMake compiles this .cc with the C++ compiler,
// which does not see the CUDA include folder.
//
// The handful of types and constants used are declared here; the numeric values are those of
// NVIDIA's public headers (cublas_api.h, cublasLt.h, library_types.h), which do not change
// between cuBLAS 11, 12 and 13:
//   cublasStatus_t        CUBLAS_STATUS_SUCCESS 0, ALLOC_FAILED 3, NOT_SUPPORTED 15
//   cublasOperation_t     CUBLAS_OP_N 0, CUBLAS_OP_T 1
//   cudaDataType_t        CUDA_R_32F 0, CUDA_R_16BF 14
//   cublasComputeType_t   CUBLAS_COMPUTE_32F 68, CUBLAS_COMPUTE_32F_FAST_TF32 77
//   cublasGemmAlgo_t      CUBLAS_GEMM_DEFAULT -1
//   cublasLtMatmulDescAttributes_t        TRANSA 3, TRANSB 4 (int32_t values)
//   cublasLtMatrixLayoutAttribute_t       BATCH_COUNT 5 (int32_t), STRIDED_BATCH_OFFSET 6 (int64_t)
//   cublasLtMatmulPreferenceAttributes_t  MAX_WORKSPACE_BYTES 1 (uint64_t),
//                                         MIN_ALIGNMENT_A/B/C/D_BYTES 5/6/7/8 (uint32_t)
//   libraryPropertyType   MAJOR_VERSION 0, MINOR_VERSION 1, PATCH_LEVEL 2
//   cublasLtMatmulHeuristicResult_t: { uint64_t algo[8]; size_t workspaceSize; int state;
//                                      float wavesCount; int reserved[4]; } (96 bytes)
//
// Search order (each library; the first that loads and has every entry point wins):
//   1. $CRATE_CUBLASLT_LIB / $CRATE_CUBLAS_LIB (a file path or a soname)
//   2. the sonames .so.13, .so.12, .so.11, .so through the default dlopen search
//      (LD_LIBRARY_PATH, the ld.so cache, /lib, /usr/lib)
//   3. those sonames in: $CUDA_HOME/lib64, $CUDA_PATH/lib64, /usr/local/cuda/lib64,
//      /usr/local/cuda/targets/x86_64-linux/lib, /usr/local/cuda-*/lib64 (newest first),
//      /usr/lib/x86_64-linux-gnu, $CONDA_PREFIX/lib, and nvidia/cu13/lib (CUDA 13 wheels) and
//      nvidia/cublas/lib (CUDA 11/12 wheels) under every Python package folder found:
//      each $PYTHONPATH entry, $VIRTUAL_ENV/lib/python3*/site-packages,
//      $CONDA_PREFIX/lib/python3*/site-packages, $HOME/.local/lib/python3*/site-packages,
//      /usr/local/lib/python3*/{dist,site}-packages, /usr/lib/python3*/{dist,site}-packages.
// cuBLAS (not Lt) is only looked for when no cuBLASLt loads.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace crate::cuda::blas {

using Status = int;  // cublasStatus_t
constexpr Status kStatusSuccess = 0;
constexpr Status kStatusAllocFailed = 3;
constexpr Status kStatusNotSupported = 15;

constexpr int kOpN = 0;  // cublasOperation_t
constexpr int kOpT = 1;

constexpr int kR32F = 0;  // cudaDataType_t
constexpr int kR16BF = 14;
constexpr int kR16F = 2;

constexpr int kCompute32F = 68;  // cublasComputeType_t
constexpr int kCompute32FFastTF32 = 77;

constexpr int kGemmDefault = -1;  // cublasGemmAlgo_t

constexpr int kLtDescTransA = 3;  // cublasLtMatmulDescAttributes_t
constexpr int kLtDescTransB = 4;

constexpr int kLtLayoutBatchCount = 5;  // cublasLtMatrixLayoutAttribute_t
constexpr int kLtLayoutStridedBatchOffset = 6;

constexpr int kLtPrefMaxWorkspaceBytes = 1;  // cublasLtMatmulPreferenceAttributes_t
constexpr int kLtPrefMinAlignmentA = 5;
constexpr int kLtPrefMinAlignmentB = 6;
constexpr int kLtPrefMinAlignmentC = 7;
constexpr int kLtPrefMinAlignmentD = 8;

constexpr int kPropMajor = 0;  // libraryPropertyType
constexpr int kPropMinor = 1;
constexpr int kPropPatch = 2;

struct LtMatmulAlgo {
  uint64_t data[8];
};
struct LtHeuristicResult {
  LtMatmulAlgo algo;
  size_t workspaceSize;
  Status state;
  float wavesCount;
  int reserved[4];
};
static_assert(sizeof(LtHeuristicResult) == 96, "cublasLtMatmulHeuristicResult_t is 96 bytes");

using LtHandle = void*;  // cublasLtHandle_t (opaque pointers, all of them)
using LtDesc = void*;    // cublasLtMatmulDesc_t
using LtLayout = void*;  // cublasLtMatrixLayout_t
using LtPref = void*;    // cublasLtMatmulPreference_t
using Handle = void*;    // cublasHandle_t
using Stream = void*;    // cudaStream_t

struct Api {
  // cuBLASLt (lt == true)
  Status (*ltCreate)(LtHandle*) = nullptr;
  Status (*ltDestroy)(LtHandle) = nullptr;
  size_t (*ltGetVersion)() = nullptr;
  const char* (*ltGetStatusString)(Status) = nullptr;  // optional
  Status (*ltMatmulDescCreate)(LtDesc*, int compute_type, int scale_type) = nullptr;
  Status (*ltMatmulDescDestroy)(LtDesc) = nullptr;
  Status (*ltMatmulDescSetAttribute)(LtDesc, int attr, const void* buf, size_t size) = nullptr;
  Status (*ltMatrixLayoutCreate)(LtLayout*, int type, uint64_t rows, uint64_t cols, int64_t ld) = nullptr;
  Status (*ltMatrixLayoutDestroy)(LtLayout) = nullptr;
  Status (*ltMatrixLayoutSetAttribute)(LtLayout, int attr, const void* buf, size_t size) = nullptr;
  Status (*ltMatmulPreferenceCreate)(LtPref*) = nullptr;
  Status (*ltMatmulPreferenceDestroy)(LtPref) = nullptr;
  Status (*ltMatmulPreferenceSetAttribute)(LtPref, int attr, const void* buf, size_t size) = nullptr;
  Status (*ltMatmulAlgoGetHeuristic)(LtHandle, LtDesc, LtLayout a, LtLayout b, LtLayout c, LtLayout d, LtPref,
                                     int requested, LtHeuristicResult* results, int* returned) = nullptr;
  Status (*ltMatmul)(LtHandle, LtDesc, const void* alpha, const void* A, LtLayout, const void* B, LtLayout,
                     const void* beta, const void* C, LtLayout, void* D, LtLayout, const LtMatmulAlgo* algo,
                     void* workspace, size_t workspace_bytes, Stream stream) = nullptr;

  // cuBLAS (blas == true; only loaded when cuBLASLt is not)
  Status (*create)(Handle*) = nullptr;                    // cublasCreate_v2
  Status (*destroy)(Handle) = nullptr;                    // cublasDestroy_v2
  Status (*setStream)(Handle, Stream) = nullptr;          // cublasSetStream_v2
  Status (*getProperty)(int type, int* value) = nullptr;  // cublasGetProperty (optional)
  Status (*gemmStridedBatchedEx)(Handle, int transa, int transb, int m, int n, int k, const void* alpha, const void* A,
                                 int Atype, int lda, long long strideA, const void* B, int Btype, int ldb,
                                 long long strideB, const void* beta, void* C, int Ctype, int ldc, long long strideC,
                                 int batch, int compute_type, int algo) = nullptr;

  bool lt = false;
  bool blas = false;
  std::string path;      // the file that was loaded
  std::string version;   // "13.0.2"
  std::string attempts;  // every place tried, and why it failed ("" when the first try loaded)
};

/** Loads once (thread-safe). */
const Api& api();

/** "cublasLt 13.0.2 (/usr/local/cuda/lib64/libcublasLt.so.13)", or "" when none loaded. */
std::string describe(const Api& a);

/** "CUBLAS_STATUS_NOT_SUPPORTED (15)". */
std::string status_name(Status s);

}  // namespace crate::cuda::blas
