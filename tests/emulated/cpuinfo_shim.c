// LD_PRELOAD shim for the emulated ARM64 device. qemu-user (7.2) shows the guest the *host's*
// /proc/cpuinfo (x86), and the cpuinfo library inside LiteRT (used by its CPU backend, not only
// XNNPACK) crashes parsing it for an ARM build. This serves the file named by TVLM_FAKE_CPUINFO
// (an ARM description) in its place. Only the guest process loads it: qemu -E LD_PRELOAD=...
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char* Redirect(const char* path) {
  const char* fake = getenv("TVLM_FAKE_CPUINFO");
  return (fake != NULL && path != NULL && strcmp(path, "/proc/cpuinfo") == 0) ? fake : path;
}

static mode_t ModeArg(int flags, va_list args) {
  return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(args, int) : 0;
}

#define FORWARD_OPEN(name)                                                   \
  int name(const char* path, int flags, ...) {                               \
    static int (*real)(const char*, int, ...);                               \
    if (!real) real = (int (*)(const char*, int, ...))dlsym(RTLD_NEXT, #name); \
    va_list args;                                                            \
    va_start(args, flags);                                                   \
    mode_t mode = ModeArg(flags, args);                                      \
    va_end(args);                                                            \
    return real(Redirect(path), flags, mode);                                \
  }

#define FORWARD_OPENAT(name)                                                        \
  int name(int dir, const char* path, int flags, ...) {                             \
    static int (*real)(int, const char*, int, ...);                                 \
    if (!real) real = (int (*)(int, const char*, int, ...))dlsym(RTLD_NEXT, #name); \
    va_list args;                                                                   \
    va_start(args, flags);                                                          \
    mode_t mode = ModeArg(flags, args);                                             \
    va_end(args);                                                                   \
    return real(dir, Redirect(path), flags, mode);                                  \
  }

#define FORWARD_FOPEN(name)                                                          \
  FILE* name(const char* path, const char* how) {                                    \
    static FILE* (*real)(const char*, const char*);                                  \
    if (!real) real = (FILE * (*)(const char*, const char*)) dlsym(RTLD_NEXT, #name); \
    return real(Redirect(path), how);                                                \
  }

FORWARD_OPEN(open)
FORWARD_OPEN(open64)
FORWARD_OPENAT(openat)
FORWARD_OPENAT(openat64)
FORWARD_FOPEN(fopen)
FORWARD_FOPEN(fopen64)
