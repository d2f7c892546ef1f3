# binding.gyp: the CPU-only build of the addon with node-gyp (fallback when cmake is missing,
# and what prebuildify drives). Sources come from native/sources.json, like CMakeLists.txt.
{
  "targets": [
    {
      "target_name": "crate",
      "sources": [
        "<!@(node -p \"const s=require('./native/sources.json');[...s.core,...s.cpu,...s.binding].join(' ')\")"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native/include",
        "native"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NODE_ADDON_API_CPP_EXCEPTIONS",
        "NODE_ADDON_API_CPP_EXCEPTIONS_ALL",
        "NODE_ADDON_API_DISABLE_DEPRECATED"
      ],
      "cflags!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++14"],
      "cflags_cc": ["-std=c++17", "-O3", "-fopenmp-simd", "-fexceptions", "-fvisibility=hidden"],
      "libraries": ["-ldl", "-lpthread"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17"
      }
    }
  ]
}
