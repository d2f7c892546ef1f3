// abi_common.h: helpers for implementing C ABI functions: run a C++ body, turn any
// exception into a crate_status and remember the message for crate_last_error().
#pragma once
#include <new>
#include <string>

#include "../core/common.h"
#include "crate/crate.h"

namespace crate::abi {

void set_last_error(const std::string& msg);
const char* last_error();

template <class F>
crate_status guard(const char* fn, F&& body) {
  try {
    body();
    return CRATE_OK;
  } catch (const crate::NumericalError& e) {
    set_last_error(std::string(fn) + ": " + e.what());
    return CRATE_ERR_NUMERICAL;
  } catch (const crate::Error& e) {
    set_last_error(std::string(fn) + ": " + e.what());
    return CRATE_ERR_INVALID_ARGUMENT;
  } catch (const std::bad_alloc&) {
    set_last_error(std::string(fn) + ": out of memory");
    return CRATE_ERR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    set_last_error(std::string(fn) + ": " + e.what());
    return CRATE_ERR_INTERNAL;
  } catch (...) {
    set_last_error(std::string(fn) + ": unknown native exception");
    return CRATE_ERR_INTERNAL;
  }
}

}  // namespace crate::abi
