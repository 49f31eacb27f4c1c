/* Private to weft: the hooks that keep ThreadSanitizer, AddressSanitizer and valgrind informed
 * of stack switches. Each is a no-op in a build without that tool. */
#ifndef WEFT_SANITIZE_H
#define WEFT_SANITIZE_H

#include <stddef.h>

#ifndef __has_feature
#define __has_feature(x) 0
#endif

#if defined(__SANITIZE_THREAD__) || __has_feature(thread_sanitizer)
#define WEFT_TSAN 1
#include <sanitizer/tsan_interface.h>
#else
#define WEFT_TSAN 0
#endif

#if defined(__SANITIZE_ADDRESS__) || __has_feature(address_sanitizer)
#define WEFT_ASAN 1
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#else
#define WEFT_ASAN 0
#endif

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define WEFT_VALGRIND 1
#endif
#endif
#ifndef WEFT_VALGRIND
#define WEFT_VALGRIND 0
#endif

#if WEFT_ASAN
#define WEFT_UNPOISON(addr, size) ASAN_UNPOISON_MEMORY_REGION((addr), (size))
#else
#define WEFT_UNPOISON(addr, size) ((void)(addr), (void)(size))
#endif

#endif /* WEFT_SANITIZE_H */
