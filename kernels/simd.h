// CPU vectors for the kernels (attention.cpp, gelu.cpp, the chapter 12 families): vec<W> is W
// floats in one register when W matches the instruction set (AVX-512 16, AVX2 8, SSE2 4), and
// the instruction set a kernel's per-ISA copies run with (best available, or the one simd.cpp's
// `set_cpu_isa` picked).
//
// Why W must match: GCC's vector extension splits a vector wider than the machine's registers
// into several, and an inner loop that keeps 8 wide vectors in flight then spills them to the
// stack on every step (chapter 11, section 11: 16-float vectors on AVX2 ran attention's tiled
// kernel 21 times slower). Each kernel compiles one copy per instruction set with
// TT_ENTRY("avx2,fma") etc. and picks with current_isa(); TT_FOR_EACH_ISA and TT_PICK_ISA
// (at the end of this file) write that once for the families.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

// The vector helpers are inlined into each per-ISA entry point; GCC warns that their (never
// exported) calling convention would differ between instruction sets.
#pragma GCC diagnostic ignored "-Wpsabi"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define TT_X86 1
#define TT_ENTRY(isa) __attribute__((target(isa), flatten))
#define TT_BASE_ENTRY __attribute__((flatten))
#else
#define TT_X86 0
#define TT_ENTRY(isa)
#define TT_BASE_ENTRY
#endif

namespace tt {
namespace simd {

template <int W>
struct VecTypes {
    typedef float f __attribute__((vector_size(4 * W)));
    typedef std::int32_t i __attribute__((vector_size(4 * W)));
};
template <int W>
using vec = typename VecTypes<W>::f;  // W floats
template <int W>
using ivec = typename VecTypes<W>::i;

template <int W>
inline vec<W> vload(const float* p) {
    vec<W> x;
    std::memcpy(&x, p, sizeof x);
    return x;
}
template <int W>
inline void vstore(float* p, const vec<W>& x) {
    std::memcpy(p, &x, sizeof x);
}
template <int W>
inline vec<W> vmax(vec<W> a, vec<W> b) {
    return a > b ? a : b;
}
template <int W>
inline vec<W> vmin(vec<W> a, vec<W> b) {
    return a < b ? a : b;
}
template <int W>
inline float hmax(vec<W> a) {
    float m = a[0];
    for (int i = 1; i < W; ++i) m = std::max(m, a[i]);
    return m;
}
template <int W>
inline float hsum(vec<W> a) {
    float t = 0.f;
    for (int i = 0; i < W; ++i) t += a[i];
    return t;
}

// 2^x for x <= 0 (and -inf), on W lanes at once: x = n + f with n an integer, |f| <= 1/2,
// 2^f by a degree-7 Taylor polynomial (relative error < 2e-7), 2^n built in the exponent bits.
// Below 2^-126 it returns 0, so masked scores (-inf) give exactly 0.
template <int W>
inline vec<W> vexp2_neg(vec<W> x) {
    x = x < -127.f ? vec<W>{} - 127.f : x;
    ivec<W> n = __builtin_convertvector(x - 0.5f, ivec<W>);
    vec<W> f = x - __builtin_convertvector(n, vec<W>);
    vec<W> p = 1.5252734e-5f + vec<W>{};
    p = p * f + 1.5403530e-4f;
    p = p * f + 1.3333558e-3f;
    p = p * f + 9.6181291e-3f;
    p = p * f + 5.5504109e-2f;
    p = p * f + 2.4022651e-1f;
    p = p * f + 6.9314718e-1f;
    p = p * f + 1.0f;
    ivec<W> bits = (n + 127) << 23;
    vec<W> scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

// The instruction sets the per-ISA copies exist for, best first.
enum class Isa { avx512, avx2, base };
constexpr Isa kIsas[] = {Isa::avx512, Isa::avx2, Isa::base};

inline const char* isa_name(Isa i) {
    return i == Isa::avx512 ? "avx512" : i == Isa::avx2 ? "avx2" : "base";
}

inline bool isa_supported(Isa isa) {
#if TT_X86
    __builtin_cpu_init();
    if (isa == Isa::avx512) return __builtin_cpu_supports("avx512f");
    if (isa == Isa::avx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return isa == Isa::base;
}

// The one every kernel uses (shared by the whole module): the best, unless set_cpu_isa chose a
// lesser one (to compare them, and to test every copy this CPU can run).
inline Isa& current_isa() {
    static Isa isa = isa_supported(Isa::avx512) ? Isa::avx512
                     : isa_supported(Isa::avx2) ? Isa::avx2
                                                : Isa::base;
    return isa;
}

// The copy of a kernel for current_isa() (x86-64 only: elsewhere there is just the baseline).
template <class Fn>
inline Fn pick(Fn avx512, Fn avx2, Fn base) {
    switch (current_isa()) {
        case Isa::avx512: return avx512;
        case Isa::avx2: return avx2;
        default: return base;
    }
}

}  // namespace simd
}  // namespace tt

// A family's entry points, one copy per instruction set. ENTRIES(isa, attr, W) is the family's
// macro: it defines its functions (or a table of them) named <name>_##isa, with `attr` on each
// function and vec<W> inside. TT_FOR_EACH_ISA(ENTRIES) instantiates it for AVX-512 and AVX2
// (each with FMA; x86-64 with GCC only) and for the baseline (x86-64's SSE2, or the plain build
// elsewhere, e.g. 128-bit NEON on ARM). TT_PICK_ISA(name) is the address of the copy
// current_isa() selects (&name_avx512, &name_avx2 or &name_base; only &name_base elsewhere);
// copies that are templates take their arguments after the name: TT_PICK_ISA(v3_fwd, <D>).
#if TT_X86
#define TT_FOR_EACH_ISA(ENTRIES)                \
    ENTRIES(avx512, TT_ENTRY("avx512f,fma"), 16) \
    ENTRIES(avx2, TT_ENTRY("avx2,fma"), 8)       \
    ENTRIES(base, TT_BASE_ENTRY, 4)
#define TT_PICK_ISA(name, ...)                                                  \
    ::tt::simd::pick(&name##_avx512 __VA_ARGS__, &name##_avx2 __VA_ARGS__,      \
                     &name##_base __VA_ARGS__)
#else
#define TT_FOR_EACH_ISA(ENTRIES) ENTRIES(base, TT_BASE_ENTRY, 4)
#define TT_PICK_ISA(name, ...) (&name##_base __VA_ARGS__)
#endif
