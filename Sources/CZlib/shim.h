#pragma once
#include <zlib.h>

/// deflateInit2 is a macro; Swift needs a function. windowBits 15 + 16 selects
/// the gzip wrapper (RFC 1952) that HTTP's Content-Encoding: gzip expects.
static inline int flujo_deflate_init_gzip(z_streamp stream, int level) {
  return deflateInit2(stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
}
